package vrrp

import "time"

// Clock is the machine's only source of time. The production clock is
// SystemClock; tests use vrrptest.FakeClock, which fires timers only when
// the test advances it, so a whole failover runs in microseconds and the
// exact instant of every transition can be asserted.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine (or, for a fake clock, in the
	// goroutine that advances the clock) once d has elapsed. f must be
	// called at most once, and not from within AfterFunc itself.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop prevents the call if it has not started and reports whether it
	// did. As with time.Timer, a callback may already be running or about
	// to run when Stop returns false; the Machine guards against such stale
	// callbacks itself.
	Stop() bool
}

// SystemClock returns a Clock backed by package time.
func SystemClock() Clock { return systemClock{} }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
