package health

import (
	"strconv"
	"time"
)

// State is a check's verdict on its target.
type State uint8

const (
	// StateDown: the target must not get traffic. It is the zero value, so a check starts down
	// until proven up unless Spec.Initial says otherwise.
	StateDown State = iota
	// StateUp: the target may get traffic.
	StateUp
)

// String returns "down" or "up".
func (s State) String() string {
	switch s {
	case StateDown:
		return "down"
	case StateUp:
		return "up"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText encodes the state as its String, for JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Change is a change of a check's state, or of its dynamic weight (then From == To).
type Change struct {
	ID       string
	From, To State
	// Result is the result that caused the change. For a reset by Update it has OutcomeNone
	// and ReasonReconfigured; for a passive check that comes back after fail_timeout,
	// OutcomeHealthy and ReasonFailTimeout.
	Result Result
	// Successes and Failures are the consecutive counts after the result.
	Successes, Failures int
	// Weight is the check's dynamic weight after the change (nil: none set).
	Weight *int
	// At is when the change happened, by the Scheduler's clock.
	At time.Time
}

// Sink receives changes. The Scheduler calls OnChange from one goroutine of its own, one change
// at a time, in the order the changes happened. OnChange may call the Scheduler's methods
// (Status, Healthy, even Update) but should return promptly: changes queue up behind it.
// Changes still queued when Run returns are dropped.
type Sink interface {
	OnChange(Change)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(Change)

// OnChange calls f(c).
func (f SinkFunc) OnChange(c Change) { f(c) }

// Status is a snapshot of one check.
type Status struct {
	ID    string
	Kind  string
	State State
	// Successes and Failures are the consecutive counts (for a passive check, Failures is
	// nginx's fails counter).
	Successes, Failures int
	// Last is the last result (zero before the first run).
	Last Result
	// LastChecked is when the last result came in (zero before the first run).
	LastChecked time.Time
	// NextCheck is when the next run is due (zero while running, and for passive checks that
	// are not waiting for fail_timeout).
	NextCheck time.Time
	// Running reports whether a run is in progress.
	Running bool
	// Checks counts the results since the check was created or last reset.
	Checks uint64
	// Weight is the dynamic weight last set (nil: none).
	Weight *int
}

// counters is the hysteresis of one check: consecutive results against rise and fall.
type counters struct {
	state               State
	successes, failures int
}

// record applies one result and reports the state before and after.
func (c *counters) record(ok bool, rise, fall int) (from, to State) {
	from = c.state
	if ok {
		c.successes++
		c.failures = 0
		if c.state == StateDown && c.successes >= rise {
			c.state = StateUp
		}
	} else {
		c.failures++
		c.successes = 0
		if c.state == StateUp && c.failures >= fall {
			c.state = StateDown
		}
	}
	return from, c.state
}

func cloneInt(p *int) *int {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func equalInt(a, b *int) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}
