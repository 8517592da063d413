package vrrptest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/fulcrum-lb/fulcrum/vrrp"
)

// Wire is an in-memory link for vrrp.Instance: what one FakeTransport sends
// to a multicast address reaches every other transport on the wire, what it
// sends to a unicast address reaches the transport with that address.
// Delivery is synchronous (queued before Send returns), in order, with TTL
// 255, so a test on a FakeClock decides exactly when packets are read (see
// FakeTransport.WaitIdle).
type Wire struct {
	mu   sync.Mutex
	ends []*FakeTransport
	down bool
}

// NewWire returns an empty wire.
func NewWire() *Wire { return &Wire{} }

// SetDown cuts (true) or restores the wire; while cut, packets are lost.
func (w *Wire) SetDown(down bool) {
	w.mu.Lock()
	w.down = down
	w.mu.Unlock()
}

// Transport attaches a transport with address addr.
func (w *Wire) Transport(addr netip.Addr) *FakeTransport {
	t := &FakeTransport{wire: w, addr: addr, wake: make(chan struct{}, 1)}
	w.mu.Lock()
	w.ends = append(w.ends, t)
	w.mu.Unlock()
	return t
}

// Sent is one recorded Send.
type Sent struct {
	Payload []byte
	Dst     netip.Addr
}

// FakeTransport is a vrrp.Transport on a Wire. Inject queues any packet
// (a bad TTL, a malformed payload).
type FakeTransport struct {
	wire *Wire
	addr netip.Addr
	wake chan struct{}

	mu      sync.Mutex
	queue   []vrrp.Received
	waiting bool // a Recv is blocked on an empty queue
	closed  bool
	sent    []Sent
	sendErr error
}

var _ vrrp.Transport = (*FakeTransport)(nil)

// Addr is the transport's address, the source of what it sends.
func (t *FakeTransport) Addr() netip.Addr { return t.addr }

func (t *FakeTransport) signal() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// Recv implements vrrp.Transport.
func (t *FakeTransport) Recv(ctx context.Context) (vrrp.Received, error) {
	for {
		t.mu.Lock()
		if t.closed {
			t.waiting = false
			t.mu.Unlock()
			return vrrp.Received{}, fmt.Errorf("vrrptest: recv on %s: %w", t.addr, net.ErrClosed)
		}
		if len(t.queue) > 0 {
			r := t.queue[0]
			t.queue = t.queue[1:]
			t.waiting = false
			t.mu.Unlock()
			return r, nil
		}
		t.waiting = true
		t.mu.Unlock()
		select {
		case <-t.wake:
		case <-ctx.Done():
			t.mu.Lock()
			t.waiting = false
			t.mu.Unlock()
			return vrrp.Received{}, ctx.Err()
		}
	}
}

// SetSendError makes every later Send fail with err (nil: succeed again).
func (t *FakeTransport) SetSendError(err error) {
	t.mu.Lock()
	t.sendErr = err
	t.mu.Unlock()
}

// Send implements vrrp.Transport.
func (t *FakeTransport) Send(payload []byte, dst netip.Addr) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return fmt.Errorf("vrrptest: send from %s: %w", t.addr, net.ErrClosed)
	}
	if t.sendErr != nil {
		err := t.sendErr
		t.mu.Unlock()
		return err
	}
	t.sent = append(t.sent, Sent{Payload: slices.Clone(payload), Dst: dst})
	t.mu.Unlock()
	w := t.wire
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.down {
		return nil
	}
	for _, r := range w.ends {
		if r == t || (!dst.IsMulticast() && r.addr != dst) || r.addr.Is4() != t.addr.Is4() {
			continue
		}
		r.Inject(vrrp.Received{Payload: slices.Clone(payload), Src: t.addr, Dst: dst, TTL: 255})
	}
	return nil
}

// Inject queues r as if it had arrived.
func (t *FakeTransport) Inject(r vrrp.Received) {
	t.mu.Lock()
	if !t.closed {
		t.queue = append(t.queue, r)
	}
	t.mu.Unlock()
	t.signal()
}

// Close implements vrrp.Transport.
func (t *FakeTransport) Close() error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.signal()
	return nil
}

// Closed reports whether Close was called.
func (t *FakeTransport) Closed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// Sent returns every successful Send so far.
func (t *FakeTransport) Sent() []Sent {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.sent)
}

// Idle reports whether every queued packet has been read and fully handled:
// the queue is empty and the reader is blocked in Recv again (or the
// transport is closed).
func (t *FakeTransport) Idle() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed || (len(t.queue) == 0 && t.waiting)
}

// WaitIdle waits until Idle or ctx ends.
func (t *FakeTransport) WaitIdle(ctx context.Context) error {
	for !t.Idle() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("vrrptest: %s not idle: %w", t.addr, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

// AddrOp is one recorded FakeAddresses call.
type AddrOp struct {
	Op   string // "add" or "remove"
	VIPs []vrrp.VIP
	Err  error
}

// String renders "add 192.0.2.1/32" / "remove 192.0.2.1/32,...".
func (o AddrOp) String() string {
	s := o.Op
	for k, v := range o.VIPs {
		if k == 0 {
			s += " "
		} else {
			s += ","
		}
		s += v.Prefix.String()
	}
	return s
}

// FakeAddresses is a vrrp.AddressManager and vrrp.AddressWatcher that keeps
// addresses in memory and records every call.
type FakeAddresses struct {
	mu        sync.Mutex
	installed map[netip.Addr]vrrp.VIP
	ops       []AddrOp
	addErr    error
	watchers  map[int]func(netip.Addr)
	nextID    int
}

var (
	_ vrrp.AddressManager = (*FakeAddresses)(nil)
	_ vrrp.AddressWatcher = (*FakeAddresses)(nil)
)

// NewFakeAddresses returns an empty FakeAddresses.
func NewFakeAddresses() *FakeAddresses {
	return &FakeAddresses{installed: map[netip.Addr]vrrp.VIP{}, watchers: map[int]func(netip.Addr){}}
}

func (f *FakeAddresses) record(op AddrOp) { f.ops = append(f.ops, op) }

// SetAddError makes every later Add fail with err (nil: succeed again).
func (f *FakeAddresses) SetAddError(err error) {
	f.mu.Lock()
	f.addErr = err
	f.mu.Unlock()
}

// Add implements vrrp.AddressManager.
func (f *FakeAddresses) Add(_ context.Context, vips []vrrp.VIP) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.addErr
	f.record(AddrOp{Op: "add", VIPs: slices.Clone(vips), Err: err})
	if err != nil {
		return err
	}
	for _, v := range vips {
		f.installed[v.Addr()] = v
	}
	return nil
}

// Remove implements vrrp.AddressManager.
func (f *FakeAddresses) Remove(_ context.Context, vips []vrrp.VIP) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record(AddrOp{Op: "remove", VIPs: slices.Clone(vips)})
	for _, v := range vips {
		delete(f.installed, v.Addr())
	}
	return nil
}

// WatchRemoved implements vrrp.AddressWatcher.
func (f *FakeAddresses) WatchRemoved(ctx context.Context, removed func(netip.Addr)) error {
	f.mu.Lock()
	id := f.nextID
	f.nextID++
	f.watchers[id] = removed
	f.mu.Unlock()
	<-ctx.Done()
	f.mu.Lock()
	delete(f.watchers, id)
	f.mu.Unlock()
	return ctx.Err()
}

// Watchers counts the running WatchRemoved calls.
func (f *FakeAddresses) Watchers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.watchers)
}

// RemoveBehindBack deletes addr as another program would and tells the
// watchers, synchronously. It reports whether addr was installed.
func (f *FakeAddresses) RemoveBehindBack(addr netip.Addr) bool {
	f.mu.Lock()
	_, ok := f.installed[addr]
	delete(f.installed, addr)
	ws := make([]func(netip.Addr), 0, len(f.watchers))
	for _, w := range f.watchers {
		ws = append(ws, w)
	}
	f.mu.Unlock()
	if ok {
		for _, w := range ws {
			w(addr)
		}
	}
	return ok
}

// Installed returns the installed addresses, sorted.
func (f *FakeAddresses) Installed() []netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]netip.Addr, 0, len(f.installed))
	for a := range f.installed {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Has reports whether addr is installed.
func (f *FakeAddresses) Has(addr netip.Addr) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.installed[addr]
	return ok
}

// Ops returns every call so far.
func (f *FakeAddresses) Ops() []AddrOp {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ops)
}

// Round is one recorded announcement.
type Round struct {
	At    time.Time
	Addrs []netip.Addr
}

// FakeAnnouncer is a vrrp.Announcer that records every round, stamped with
// Clock's time when Clock is set.
type FakeAnnouncer struct {
	Clock vrrp.Clock

	mu     sync.Mutex
	rounds []Round
}

var _ vrrp.Announcer = (*FakeAnnouncer)(nil)

// Announce implements vrrp.Announcer.
func (a *FakeAnnouncer) Announce(_ context.Context, addrs []netip.Addr) error {
	r := Round{Addrs: slices.Clone(addrs)}
	if a.Clock != nil {
		r.At = a.Clock.Now()
	}
	a.mu.Lock()
	a.rounds = append(a.rounds, r)
	a.mu.Unlock()
	return nil
}

// Rounds returns every round so far.
func (a *FakeAnnouncer) Rounds() []Round {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.rounds)
}

// FakeLinks is a vrrp.LinkWatcher whose links the test sets.
type FakeLinks struct {
	mu       sync.Mutex
	up       map[string]bool
	watchers map[int]fakeLinkWatch
	nextID   int
}

type fakeLinkWatch struct {
	names []string
	fn    func(string, bool)
}

var _ vrrp.LinkWatcher = (*FakeLinks)(nil)

// NewFakeLinks returns links with the given ones up; others are down.
func NewFakeLinks(up ...string) *FakeLinks {
	l := &FakeLinks{up: map[string]bool{}, watchers: map[int]fakeLinkWatch{}}
	for _, n := range up {
		l.up[n] = true
	}
	return l
}

// LinkUp implements vrrp.LinkWatcher.
func (l *FakeLinks) LinkUp(name string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.up[name], nil
}

// WatchLinks implements vrrp.LinkWatcher.
func (l *FakeLinks) WatchLinks(ctx context.Context, names []string, changed func(string, bool)) error {
	l.mu.Lock()
	id := l.nextID
	l.nextID++
	l.watchers[id] = fakeLinkWatch{names: slices.Clone(names), fn: changed}
	l.mu.Unlock()
	<-ctx.Done()
	l.mu.Lock()
	delete(l.watchers, id)
	l.mu.Unlock()
	return ctx.Err()
}

// Watchers counts the running WatchLinks calls.
func (l *FakeLinks) Watchers() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.watchers)
}

// Set changes a link and tells the watchers of it, synchronously.
func (l *FakeLinks) Set(name string, up bool) {
	l.mu.Lock()
	l.up[name] = up
	var fns []func(string, bool)
	for _, w := range l.watchers {
		if slices.Contains(w.names, name) {
			fns = append(fns, w.fn)
		}
	}
	l.mu.Unlock()
	for _, fn := range fns {
		fn(name, up)
	}
}

// FakeServices is a vrrp.ServiceHealth whose services the test sets.
type FakeServices struct {
	mu sync.Mutex
	up map[string]bool
}

var _ vrrp.ServiceHealth = (*FakeServices)(nil)

// Set marks a service healthy or not.
func (s *FakeServices) Set(name string, up bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.up == nil {
		s.up = map[string]bool{}
	}
	s.up[name] = up
}

// ServiceHealthy implements vrrp.ServiceHealth; unknown services are an
// error.
func (s *FakeServices) ServiceHealthy(name string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	up, ok := s.up[name]
	if !ok {
		return false, fmt.Errorf("vrrptest: unknown service %q", name)
	}
	return up, nil
}
