// Package healthtest holds test doubles for package health: a fake clock that fires timers only
// when told to, a fake probe whose results the test sets (with an optional duration on the fake
// clock, and counters of calls and concurrency), and a Sink that records changes. Any package
// may use them in tests.
package healthtest

import (
	"container/heap"
	"sync"
	"time"

	"github.com/fulcrum-lb/fulcrum/health"
)

// FakeClock is a health.Clock whose time moves only when Advance, AdvanceTo or Step is called.
// Timers fire in the goroutine that advances the clock, in order of deadline and, for equal
// deadlines, of creation, with Now set to their deadline while they run. A callback may create
// and stop timers; one that falls due within the current advance fires in the same advance. It is
// safe for concurrent use.
type FakeClock struct {
	mu     sync.Mutex
	now    time.Time
	seq    uint64
	timers timerHeap
}

type fakeTimer struct {
	c     *FakeClock
	when  time.Time
	seq   uint64
	f     func()
	index int
}

// NewFakeClock returns a clock reading start; a zero start is replaced by a fixed instant.
func NewFakeClock(start time.Time) *FakeClock {
	if start.IsZero() {
		start = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return &FakeClock{now: start}
}

// Now implements health.Clock.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Since returns the time elapsed since t on this clock.
func (c *FakeClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// AfterFunc implements health.Clock. f never runs inside AfterFunc, even for d <= 0: it runs at
// the next Advance, AdvanceTo or Step.
func (c *FakeClock) AfterFunc(d time.Duration, f func()) health.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &fakeTimer{c: c, when: c.now.Add(max(d, 0)), seq: c.seq, f: f}
	heap.Push(&c.timers, t)
	return t
}

// Stop implements health.Timer.
func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.index < 0 {
		return false
	}
	heap.Remove(&t.c.timers, t.index)
	return true
}

// Advance moves the clock forward by d, firing every timer that falls due.
func (c *FakeClock) Advance(d time.Duration) { c.AdvanceTo(c.Now().Add(d)) }

// AdvanceTo moves the clock to t (never backwards), firing every timer due at or before t.
func (c *FakeClock) AdvanceTo(t time.Time) {
	for {
		c.mu.Lock()
		if len(c.timers) == 0 || c.timers[0].when.After(t) {
			if t.After(c.now) {
				c.now = t
			}
			c.mu.Unlock()
			return
		}
		x := heap.Pop(&c.timers).(*fakeTimer)
		if x.when.After(c.now) {
			c.now = x.when
		}
		c.mu.Unlock()
		x.f()
	}
}

// Next returns the deadline of the earliest pending timer, if any.
func (c *FakeClock) Next() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.timers) == 0 {
		return time.Time{}, false
	}
	return c.timers[0].when, true
}

// Step advances to the earliest pending timer and fires every timer due at that instant. It
// reports false, without moving, if none is pending.
func (c *FakeClock) Step() bool {
	when, ok := c.Next()
	if ok {
		c.AdvanceTo(when)
	}
	return ok
}

// Pending returns the number of timers not yet fired or stopped.
func (c *FakeClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

type timerHeap []*fakeTimer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if !h[i].when.Equal(h[j].when) {
		return h[i].when.Before(h[j].when)
	}
	return h[i].seq < h[j].seq
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *timerHeap) Push(x any) {
	t := x.(*fakeTimer)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.index = -1
	return t
}
