package netiotest

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/fulcrum-lb/fulcrum/vrrp/netio"
)

// Op names a recorded call.
type Op string

// The recorded operations.
const (
	OpAdd     Op = "add"
	OpRemove  Op = "remove"
	OpPresent Op = "present"
)

// Call is one recorded FakeVIPs call.
type Call struct {
	At  time.Time
	Op  Op
	VIP netio.VIP // for OpPresent, only the address is set (as a host prefix)
	Err error     // what the call returned
}

// FakeVIPs is a netio.VIPs that keeps the installed VIPs in memory and
// records every call. Like netio.VIPManager, it reports VIPs removed behind
// its back (RemoveBehindBack) on the channel of Watch.
type FakeVIPs struct {
	mu        sync.Mutex
	installed map[netip.Addr]netio.VIP
	calls     []Call
	errs      map[Op]error
	watchers  []chan netio.VIPEvent
}

var _ netio.VIPs = (*FakeVIPs)(nil)

// NewFakeVIPs returns a FakeVIPs with nothing installed.
func NewFakeVIPs() *FakeVIPs {
	return &FakeVIPs{installed: map[netip.Addr]netio.VIP{}, errs: map[Op]error{}}
}

// SetError makes every later call of op fail with err (nil: succeed again).
// A failed Add or Remove changes nothing.
func (f *FakeVIPs) SetError(op Op, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[op] = err
}

func (f *FakeVIPs) record(op Op, v netio.VIP) error {
	err := f.errs[op]
	f.calls = append(f.calls, Call{At: time.Now(), Op: op, VIP: v, Err: err})
	return err
}

// Add implements netio.VIPs.
func (f *FakeVIPs) Add(v netio.VIP) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(OpAdd, v); err != nil {
		return err
	}
	f.installed[v.Addr()] = v
	return nil
}

// Remove implements netio.VIPs.
func (f *FakeVIPs) Remove(v netio.VIP) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(OpRemove, v); err != nil {
		return err
	}
	delete(f.installed, v.Addr())
	return nil
}

// Present implements netio.VIPs.
func (f *FakeVIPs) Present(addr netip.Addr) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(OpPresent, netio.HostVIP(addr)); err != nil {
		return false, err
	}
	_, ok := f.installed[addr]
	return ok, nil
}

// Installed returns the VIPs installed now, sorted by address.
func (f *FakeVIPs) Installed() []netio.VIP {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]netio.VIP, 0, len(f.installed))
	for _, v := range f.installed {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b netio.VIP) int { return a.Addr().Compare(b.Addr()) })
	return out
}

// Calls returns every call so far, in order.
func (f *FakeVIPs) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// Watch returns a channel on which RemoveBehindBack reports removals, until
// ctx ends (then it is closed), like netio.VIPManager.Watch.
func (f *FakeVIPs) Watch(ctx context.Context) <-chan netio.VIPEvent {
	ch := make(chan netio.VIPEvent, QueueLen)
	f.mu.Lock()
	f.watchers = append(f.watchers, ch)
	f.mu.Unlock()
	context.AfterFunc(ctx, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if i := slices.Index(f.watchers, ch); i >= 0 {
			f.watchers = slices.Delete(f.watchers, i, i+1)
			close(ch)
		}
	})
	return ch
}

// RemoveBehindBack removes addr as another program would (not recorded as a
// call) and, if it was installed, reports it to every watcher. It reports
// whether addr was installed.
func (f *FakeVIPs) RemoveBehindBack(addr netip.Addr) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.installed[addr]
	if !ok {
		return false
	}
	delete(f.installed, addr)
	ev := netio.VIPEvent{VIP: v, Time: time.Now()}
	for _, ch := range f.watchers {
		select {
		case ch <- ev:
		default: // a watcher that does not read loses events, as with a full netlink socket
		}
	}
	return true
}
