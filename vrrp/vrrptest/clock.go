// Package vrrptest holds test doubles for package vrrp: a fake clock that
// fires timers only when told to, a Recorder of the Machine's actions, and a
// simulated LAN on which several Machines exchange advertisements through
// the fake clock. Any package may use them in tests.
package vrrptest

import (
	"sync"
	"time"

	"github.com/fulcrum-lb/fulcrum/vrrp"
)

// FakeClock is a vrrp.Clock whose time moves only when Advance, AdvanceTo or
// Step is called. Timers fire in the goroutine that advances the clock, in
// order of deadline and, for equal deadlines, of creation, with Now set to
// their deadline while they run. A callback may create and stop timers; one
// that falls due within the current advance fires in the same advance. It is
// safe for concurrent use.
type FakeClock struct {
	mu     sync.Mutex
	now    time.Time
	seq    uint64
	timers []*fakeTimer
}

type fakeTimer struct {
	c    *FakeClock
	when time.Time
	seq  uint64
	f    func()
}

// NewFakeClock returns a clock reading start. A zero start is replaced by a
// fixed, arbitrary instant so that time.Time.IsZero never confuses callers.
func NewFakeClock(start time.Time) *FakeClock {
	if start.IsZero() {
		start = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return &FakeClock{now: start}
}

// Now implements vrrp.Clock.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc implements vrrp.Clock. f never runs inside AfterFunc, even for
// d <= 0: it runs at the next Advance, AdvanceTo or Step.
func (c *FakeClock) AfterFunc(d time.Duration, f func()) vrrp.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d < 0 {
		d = 0
	}
	c.seq++
	t := &fakeTimer{c: c, when: c.now.Add(d), seq: c.seq, f: f}
	c.timers = append(c.timers, t)
	return t
}

// Stop implements vrrp.Timer.
func (t *fakeTimer) Stop() bool {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.timers {
		if x == t {
			c.timers = append(c.timers[:i], c.timers[i+1:]...)
			return true
		}
	}
	return false
}

// next removes and returns the earliest timer due at or before limit, or nil.
// c.mu must be held.
func (c *FakeClock) next(limit time.Time) *fakeTimer {
	best := -1
	for i, t := range c.timers {
		if t.when.After(limit) {
			continue
		}
		if best < 0 || t.when.Before(c.timers[best].when) ||
			(t.when.Equal(c.timers[best].when) && t.seq < c.timers[best].seq) {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	t := c.timers[best]
	c.timers = append(c.timers[:best], c.timers[best+1:]...)
	return t
}

// Advance moves the clock forward by d, firing every timer that falls due.
func (c *FakeClock) Advance(d time.Duration) {
	c.AdvanceTo(c.Now().Add(d))
}

// AdvanceTo moves the clock to t (never backwards), firing every timer due
// at or before t.
func (c *FakeClock) AdvanceTo(t time.Time) {
	for {
		c.mu.Lock()
		x := c.next(t)
		if x == nil {
			if t.After(c.now) {
				c.now = t
			}
			c.mu.Unlock()
			return
		}
		if x.when.After(c.now) {
			c.now = x.when
		}
		c.mu.Unlock()
		x.f()
	}
}

// Step advances to the earliest pending timer and fires every timer due at
// that instant. It reports false, without moving, if none is pending.
func (c *FakeClock) Step() bool {
	c.mu.Lock()
	if len(c.timers) == 0 {
		c.mu.Unlock()
		return false
	}
	when := c.timers[0].when
	for _, t := range c.timers[1:] {
		if t.when.Before(when) {
			when = t.when
		}
	}
	c.mu.Unlock()
	c.AdvanceTo(when)
	return true
}

// Pending returns the number of timers not yet fired or stopped.
func (c *FakeClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// NextDeadline returns the earliest pending deadline.
func (c *FakeClock) NextDeadline() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var when time.Time
	for i, t := range c.timers {
		if i == 0 || t.when.Before(when) {
			when = t.when
		}
	}
	return when, len(c.timers) > 0
}
