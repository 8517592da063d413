package ipvs

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Errors callers branch on.
var (
	// ErrUnavailable: the kernel has no IPVS (Probe, Open).
	ErrUnavailable = errors.New("IPVS not available")
	// ErrInvalid: the desired state (or an argument) is invalid; nothing was applied. The
	// error is a *ValidationError listing every problem.
	ErrInvalid = errors.New("invalid IPVS desired state")
	// ErrUnknownService and ErrUnknownDestination: SetHealth or SetOverride named a service or
	// destination that is not in the desired state.
	ErrUnknownService     = errors.New("service not in the desired state")
	ErrUnknownDestination = errors.New("destination not in the desired state")
	// ErrClosed: the Reconciler was shut down.
	ErrClosed = errors.New("IPVS reconciler shut down")
	// ErrStateFile: the ownership state file could not be read or written.
	ErrStateFile = errors.New("IPVS ownership state file")
)

// ValidationError lists every problem of a rejected desired state. errors.Is(err, ErrInvalid)
// holds.
type ValidationError struct {
	Problems []string
}

func (e *ValidationError) Error() string {
	if len(e.Problems) == 1 {
		return "invalid IPVS desired state: " + e.Problems[0]
	}
	return fmt.Sprintf("invalid IPVS desired state (%d problems): %s", len(e.Problems), strings.Join(e.Problems, "; "))
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// OpKind names a kernel operation, for counters and errors.
type OpKind string

// The kernel operations.
const (
	OpGetServices       OpKind = "get_services"
	OpGetService        OpKind = "get_service"
	OpGetDestinations   OpKind = "get_destinations"
	OpNewService        OpKind = "new_service"
	OpUpdateService     OpKind = "update_service"
	OpDelService        OpKind = "del_service"
	OpNewDestination    OpKind = "new_destination"
	OpUpdateDestination OpKind = "update_destination"
	OpDelDestination    OpKind = "del_destination"
	OpGetConfig         OpKind = "get_config"
	OpSetConfig         OpKind = "set_config"
)

// OpKinds lists every OpKind.
func OpKinds() []OpKind {
	return []OpKind{
		OpGetServices, OpGetService, OpGetDestinations, OpNewService, OpUpdateService,
		OpDelService, OpNewDestination, OpUpdateDestination, OpDelDestination, OpGetConfig,
		OpSetConfig,
	}
}

// Mutating reports whether the operation changes kernel state.
func (k OpKind) Mutating() bool {
	switch k {
	case OpNewService, OpUpdateService, OpDelService, OpNewDestination, OpUpdateDestination,
		OpDelDestination, OpSetConfig:
		return true
	}
	return false
}

// OpError is a failed kernel operation. It unwraps to the Kernel's error, so errors.Is works
// with ErrExists, ErrNoService, syscall.Errno values and so on.
type OpError struct {
	Op          OpKind
	Service     ServiceKey     // zero for global operations
	Destination netip.AddrPort // zero unless a destination operation
	Err         error
}

func (e *OpError) Error() string {
	var b strings.Builder
	b.WriteString("ipvs ")
	b.WriteString(string(e.Op))
	if e.Service != (ServiceKey{}) {
		b.WriteString(" ")
		b.WriteString(e.Service.String())
	}
	if e.Destination.IsValid() {
		b.WriteString(" -> ")
		b.WriteString(e.Destination.String())
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *OpError) Unwrap() error { return e.Err }

// maxJoined caps how many errors one call returns in detail.
const maxJoined = 10

// ReconcileError collects the failures of one reconciliation pass, which goes on past a
// failed operation with the other services. It unwraps to the (first few) errors.
type ReconcileError struct {
	Failed int     // how many operations (or state-file writes) failed
	Errs   []error // the first of them, at most 10
}

func (e *ReconcileError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	s := strings.Join(msgs, "; ")
	if e.Failed > len(e.Errs) {
		s += fmt.Sprintf("; and %d more", e.Failed-len(e.Errs))
	}
	if e.Failed == 1 {
		return s
	}
	return fmt.Sprintf("%d IPVS operations failed: %s", e.Failed, s)
}

func (e *ReconcileError) Unwrap() []error { return e.Errs }

// errList accumulates errors for a ReconcileError.
type errList struct {
	failed int
	errs   []error
}

func (l *errList) add(err error) {
	if err == nil {
		return
	}
	l.failed++
	if len(l.errs) < maxJoined {
		l.errs = append(l.errs, err)
	}
}

func (l *errList) err() error {
	if l.failed == 0 {
		return nil
	}
	return &ReconcileError{Failed: l.failed, Errs: l.errs}
}
