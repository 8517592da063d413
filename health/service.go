package health

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
)

// HealthSource tells whether a check is up; *Scheduler implements it.
type HealthSource interface {
	Healthy(id string) bool
}

// Mode is how a service's checks combine.
type Mode uint8

const (
	// ModeAll: the service is healthy when every check is up (the zero value).
	ModeAll Mode = iota
	// ModeAny: the service is healthy when at least one check is up.
	ModeAny
	// ModeQuorum: the service is healthy when at least Quorum checks are up.
	ModeQuorum
)

// String returns "all", "any" or "quorum".
func (m Mode) String() string {
	switch m {
	case ModeAll:
		return "all"
	case ModeAny:
		return "any"
	case ModeQuorum:
		return "quorum"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// ServicePolicy is a service as a set of checks and the rule that combines them. A check
// unknown to the source counts as down.
type ServicePolicy struct {
	IDs    []string
	Mode   Mode
	Quorum int // for ModeQuorum: 1 <= Quorum <= len(IDs)
}

// Validate reports a policy that cannot be evaluated.
func (p ServicePolicy) Validate() error {
	if len(p.IDs) == 0 {
		return errors.New("no checks")
	}
	switch p.Mode {
	case ModeAll, ModeAny:
		return nil
	case ModeQuorum:
		if p.Quorum < 1 || p.Quorum > len(p.IDs) {
			return fmt.Errorf("quorum %d out of 1..%d", p.Quorum, len(p.IDs))
		}
		return nil
	}
	return fmt.Errorf("bad mode %v", p.Mode)
}

// Healthy evaluates the policy against src.
func (p ServicePolicy) Healthy(src HealthSource) bool {
	up := 0
	for _, id := range p.IDs {
		if src.Healthy(id) {
			up++
		} else if p.Mode == ModeAll {
			return false
		}
		if p.Mode == ModeAny && up > 0 {
			return true
		}
	}
	switch p.Mode {
	case ModeAll:
		return len(p.IDs) > 0
	case ModeQuorum:
		return up >= p.Quorum
	}
	return false
}

// ErrUnknownService is returned (wrapped) by ServiceHealthy for a name not set.
var ErrUnknownService = errors.New("health: unknown service")

// ServiceHealth answers "is this service healthy?" for named services made of checks. Its
// ServiceHealthy method fits VRRP's track_service interface (vrrp.ServiceHealth), which the
// agent wires to it. It is safe for concurrent use.
type ServiceHealth struct {
	src      HealthSource
	mu       sync.RWMutex
	services map[string]ServicePolicy
}

// NewServiceHealth returns a ServiceHealth over src with no services.
func NewServiceHealth(src HealthSource) *ServiceHealth {
	return &ServiceHealth{src: src, services: map[string]ServicePolicy{}}
}

// Set replaces the services. If any policy is invalid it returns the problems and changes
// nothing.
func (h *ServiceHealth) Set(services map[string]ServicePolicy) error {
	var errs []error
	m := make(map[string]ServicePolicy, len(services))
	for name, p := range services {
		if err := p.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("health: service %q: %w", name, err))
			continue
		}
		p.IDs = append([]string(nil), p.IDs...)
		m[name] = p
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	h.mu.Lock()
	h.services = m
	h.mu.Unlock()
	return nil
}

// ServiceHealthy reports whether the named service is healthy.
func (h *ServiceHealth) ServiceHealthy(name string) (bool, error) {
	h.mu.RLock()
	p, ok := h.services[name]
	h.mu.RUnlock()
	if !ok {
		return false, fmt.Errorf("%w %q", ErrUnknownService, name)
	}
	return p.Healthy(h.src), nil
}
