package netiotest

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/fulcrum-lb/fulcrum/vrrp/netio"
)

// Round is one recorded Announce call.
type Round struct {
	At   time.Time
	VIPs []netip.Addr
	Err  error // what the call returned
}

// FakeAnnouncer is a netio.Announcer that records every round.
type FakeAnnouncer struct {
	mu     sync.Mutex
	rounds []Round
	err    error
	notify chan struct{} // closed and replaced at every round
}

var _ netio.Announcer = (*FakeAnnouncer)(nil)

// NewFakeAnnouncer returns a FakeAnnouncer with no rounds.
func NewFakeAnnouncer() *FakeAnnouncer { return &FakeAnnouncer{notify: make(chan struct{})} }

// SetError makes every later Announce return err (nil: succeed again).
func (a *FakeAnnouncer) SetError(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.err = err
}

// Announce implements netio.Announcer: it records the round and returns
// the configured error, or ctx.Err() if ctx has ended.
func (a *FakeAnnouncer) Announce(ctx context.Context, vips []netip.Addr) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	err := a.err
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	a.rounds = append(a.rounds, Round{At: time.Now(), VIPs: slices.Clone(vips), Err: err})
	close(a.notify)
	a.notify = make(chan struct{})
	return err
}

// Rounds returns every round so far, in order.
func (a *FakeAnnouncer) Rounds() []Round {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.rounds)
}

// WaitRounds blocks until at least n rounds were recorded (true) or ctx ends
// (false): for runners that announce on goroutines of their own.
func (a *FakeAnnouncer) WaitRounds(ctx context.Context, n int) bool {
	for {
		a.mu.Lock()
		got, ch := len(a.rounds), a.notify
		a.mu.Unlock()
		if got >= n {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}
