package health

import "time"

// Clock is the Scheduler's only source of time. The production clock is SystemClock; tests use
// healthtest.FakeClock, which fires timers only when the test advances it.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f once d has elapsed, in its own goroutine (or, for a fake clock, in the
	// goroutine that advances the clock). f must not block.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop prevents the call if it has not started and reports whether it did.
	Stop() bool
}

// SystemClock returns a Clock backed by package time.
func SystemClock() Clock { return systemClock{} }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
