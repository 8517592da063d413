package agent

import (
	"context"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fulcrum-lb/fulcrum/config"
)

// SubsystemStatus is one subsystem's entry in Status.
type SubsystemStatus struct {
	Name       string `json:"name"`
	Configured int    `json:"configured"`
	State      string `json:"state"`
	// Detail holds subsystem-specific facts (instance states, for example),
	// printed one per line by `fulcrum status`. Absent when empty.
	Detail map[string]any `json:"detail,omitempty"`
}

// StateNoneConfigured is the state of a subsystem with nothing configured.
const StateNoneConfigured = "none configured"

// subsystem is one part of the node the agent runs (vrrp, ipvs, health,
// l7proxy). The agent calls Apply with the initial config before Run, and
// again on every successful reload; Apply must take its own part of cfg and
// either apply it entirely or return an error leaving the old state. Run
// blocks until ctx is cancelled (return nil) or the subsystem fails (return
// the error; the agent then shuts down). Status is called concurrently with
// everything else.
type subsystem interface {
	Name() string
	Apply(ctx context.Context, cfg *config.Config) error
	Status() SubsystemStatus
	Run(ctx context.Context) error
}

// subsystemDeps is what the agent hands a subsystem when building it.
type subsystemDeps struct {
	Log     *slog.Logger          // already carries subsystem=<name>
	Events  Publisher             // the agent's event bus
	Metrics prometheus.Registerer // the agent's registry
}

// subsystemFactory builds one subsystem.
type subsystemFactory struct {
	name string
	new  func(subsystemDeps) subsystem
}

// defaultSubsystems lists the subsystems in start order; they stop in
// reverse. vrrp, ipvs and l7proxy are real; a later issue replaces the
// health placeholder with the health package's adapter.
func defaultSubsystems() []subsystemFactory {
	return []subsystemFactory{
		{"vrrp", func(d subsystemDeps) subsystem {
			return newVRRPSubsystem(d, newNetioFactory(d.Log))
		}},
		{"ipvs", func(d subsystemDeps) subsystem {
			return newIPVSSubsystem(d, ipvsOptions{})
		}},
		{"health", func(subsystemDeps) subsystem {
			// Health checks live inside virtual_server blocks; this build
			// refuses them (buildChecks). The health issue counts them.
			return newPlaceholder("health", func(*config.Config) int { return 0 })
		}},
		{"l7proxy", func(d subsystemDeps) subsystem {
			return newProxySubsystem(d)
		}},
	}
}

// placeholder stands in for a subsystem this build does not implement. It
// counts its blocks (always 0 today: config rejects them) and idles.
type placeholder struct {
	name  string
	count func(*config.Config) int

	mu         sync.Mutex
	configured int
}

func newPlaceholder(name string, count func(*config.Config) int) *placeholder {
	return &placeholder{name: name, count: count}
}

func (p *placeholder) Name() string { return p.name }

func (p *placeholder) Apply(_ context.Context, cfg *config.Config) error {
	n := p.count(cfg)
	p.mu.Lock()
	p.configured = n
	p.mu.Unlock()
	return nil
}

func (p *placeholder) Status() SubsystemStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := SubsystemStatus{Name: p.name, Configured: p.configured, State: StateNoneConfigured}
	if p.configured > 0 {
		st.State = "not supported by this build"
	}
	return st
}

func (p *placeholder) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
