package netio

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// VIP is a virtual address as installed on the interface.
type VIP struct {
	// Prefix is the address with its prefix length: 192.0.2.100/32,
	// 192.0.2.100/24, 2001:db8::100/64. Unlike keepalived, no default length
	// is guessed: use HostVIP for /32 or /128.
	Prefix netip.Prefix
	// Label is the IPv4 address label, "eth0:vip" style, shown by
	// `ip addr` and by ifconfig as an alias. It must start with the
	// interface's name and fit IFNAMSIZ (15 bytes). IPv6 has no labels.
	Label string
}

// HostVIP is addr as a host route: /32 or /128, no label.
func HostVIP(addr netip.Addr) VIP {
	addr = addr.Unmap()
	return VIP{Prefix: netip.PrefixFrom(addr, addr.BitLen())}
}

// Addr is the VIP's address.
func (v VIP) Addr() netip.Addr { return v.Prefix.Addr() }

// String renders "192.0.2.100/32" or "192.0.2.100/32 label eth0:vip".
func (v VIP) String() string {
	if v.Label == "" {
		return v.Prefix.String()
	}
	return v.Prefix.String() + " label " + v.Label
}

// validate checks v for installation on iface.
func (v VIP) validate(iface string) error {
	if !v.Prefix.IsValid() {
		return fmt.Errorf("netio: VIP %v: not a valid address/prefix", v.Prefix)
	}
	a := v.Prefix.Addr()
	if a.Is4In6() || a.Zone() != "" {
		return fmt.Errorf("netio: VIP %s: use a plain IPv4 or IPv6 address without zone", v.Prefix)
	}
	if a.IsMulticast() || a.IsUnspecified() || a.IsLoopback() {
		return fmt.Errorf("netio: VIP %s is not a unicast address", v.Prefix)
	}
	if v.Label == "" {
		return nil
	}
	if a.Is6() {
		return fmt.Errorf("netio: VIP %s: IPv6 addresses have no label (%q)", v.Prefix, v.Label)
	}
	if !strings.HasPrefix(v.Label, iface) {
		return fmt.Errorf("netio: VIP %s: label %q must start with the interface name %q", v.Prefix, v.Label, iface)
	}
	if len(v.Label) >= unix.IFNAMSIZ {
		return fmt.Errorf("netio: VIP %s: label %q is longer than %d bytes", v.Prefix, v.Label, unix.IFNAMSIZ-1)
	}
	return nil
}

// VIPs installs and removes virtual addresses on one interface. Both the real
// VIPManager and netiotest.FakeVIPs implement it.
type VIPs interface {
	// Add installs v; adding an address already there is not an error.
	Add(v VIP) error
	// Remove removes v's address, whatever its prefix length or label; an
	// address not there is not an error.
	Remove(v VIP) error
	// Present reports whether addr is on the interface.
	Present(addr netip.Addr) (bool, error)
}

// VIPManager installs virtual addresses on one interface with netlink
// (CAP_NET_ADMIN), in the namespace of the handle it was given. It remembers
// the VIPs it added (until it removes them) so that Watch can report the
// ones that disappear behind its back. It is safe for concurrent use.
type VIPManager struct {
	nl    *netlink.Handle
	iface string

	mu    sync.Mutex
	owned map[netip.Addr]VIP
}

var _ VIPs = (*VIPManager)(nil)

// NewVIPManager manages the VIPs of iface through nl, a handle opened in the
// interface's network namespace (netlink.NewHandleAt). The manager does not
// close nl. The interface need not exist yet: it is looked up by name at
// every call, so a re-created interface is found again.
func NewVIPManager(nl *netlink.Handle, iface string) (*VIPManager, error) {
	if nl == nil {
		return nil, errors.New("netio: NewVIPManager: nil netlink handle")
	}
	if iface == "" || len(iface) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("netio: NewVIPManager: bad interface name %q", iface)
	}
	return &VIPManager{nl: nl, iface: iface, owned: map[netip.Addr]VIP{}}, nil
}

// Interface is the name of the managed interface.
func (m *VIPManager) Interface() string { return m.iface }

// Owned returns the VIPs added through m and not removed through m, sorted.
func (m *VIPManager) Owned() []VIP {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]VIP, 0, len(m.owned))
	for _, v := range m.owned {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b VIP) int { return a.Addr().Compare(b.Addr()) })
	return out
}

func (m *VIPManager) owns(a netip.Addr) (VIP, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.owned[a]
	return v, ok
}

func (m *VIPManager) link() (netlink.Link, error) {
	l, err := m.nl.LinkByName(m.iface)
	if err != nil {
		return nil, fmt.Errorf("netio: interface %s: %w", m.iface, err)
	}
	return l, nil
}

// Add installs v with RTM_NEWADDR and NLM_F_REPLACE, so adding it again is
// not an error. IPv6 VIPs get IFA_F_NODAD: no duplicate address detection
// (RFC 4862 §5.4), which would otherwise leave the address "tentative",
// unusable, for about a second after a takeover; VRRP itself decides who
// owns the address.
func (m *VIPManager) Add(v VIP) error {
	if err := v.validate(m.iface); err != nil {
		return err
	}
	l, err := m.link()
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.owned[v.Addr()] = v
	m.mu.Unlock()
	if err := m.nl.AddrReplace(l, nlAddr(v)); err != nil {
		return fmt.Errorf("netio: add VIP %s to %s: %w", v, m.iface, err)
	}
	return nil
}

func nlAddr(v VIP) *netlink.Addr {
	a := v.Prefix.Addr()
	na := &netlink.Addr{
		IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(v.Prefix.Bits(), a.BitLen())},
		Label: v.Label,
	}
	if a.Is6() {
		na.Flags = unix.IFA_F_NODAD
	}
	return na
}

// Remove removes every entry of v's address from the interface, whatever
// its prefix length and label, and forgets v. An address (or interface)
// that is not there is not an error.
func (m *VIPManager) Remove(v VIP) error {
	a := v.Prefix.Addr().Unmap()
	if !a.IsValid() {
		return fmt.Errorf("netio: remove VIP %v: not a valid address", v.Prefix)
	}
	m.mu.Lock()
	delete(m.owned, a)
	m.mu.Unlock()
	l, err := m.nl.LinkByName(m.iface)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("netio: remove VIP %s: interface %s: %w", a, m.iface, err)
	}
	entries, err := m.find(l, a)
	if err != nil {
		return err
	}
	for _, e := range entries {
		err := m.nl.AddrDel(l, &e)
		if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("netio: remove VIP %s from %s: %w", a, m.iface, err)
		}
	}
	return nil
}

// dumpAttempts bounds retryDump: an interrupted dump means the table changed
// while the kernel sent it (NLM_F_DUMP_INTR); on a busy host a second or
// third try gets a consistent one.
const dumpAttempts = 5

// retryDump runs a netlink dump again while the kernel reports it
// interrupted (netlink.ErrDumpInterrupted: results may be inconsistent).
func retryDump[T any](dump func() (T, error)) (T, error) {
	for i := 1; ; i++ {
		v, err := dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) || i == dumpAttempts {
			return v, err
		}
	}
}

// find lists the entries of address a on link l.
func (m *VIPManager) find(l netlink.Link, a netip.Addr) ([]netlink.Addr, error) {
	family := netlink.FAMILY_V4
	if a.Is6() {
		family = netlink.FAMILY_V6
	}
	list, err := retryDump(func() ([]netlink.Addr, error) { return m.nl.AddrList(l, family) })
	if err != nil {
		return nil, fmt.Errorf("netio: addresses of %s: %w", m.iface, err)
	}
	var out []netlink.Addr
	for _, e := range list {
		if e.IPNet != nil && ipAddr(e.IP) == a {
			out = append(out, e)
		}
	}
	return out, nil
}

// Present reports whether addr is on the interface (and, for IPv6, has not
// failed duplicate address detection). A missing interface holds nothing.
func (m *VIPManager) Present(addr netip.Addr) (bool, error) {
	addr = addr.Unmap().WithZone("")
	l, err := m.nl.LinkByName(m.iface)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return false, nil
		}
		return false, fmt.Errorf("netio: interface %s: %w", m.iface, err)
	}
	entries, err := m.find(l, addr)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if e.Flags&unix.IFA_F_DADFAILED == 0 {
			return true, nil
		}
	}
	return false, nil
}

// WatchOptions configures Watch and WatchLinks.
type WatchOptions struct {
	// Namespace is the network namespace to watch (netns.GetFromPath); nil
	// means the namespace of the calling thread. It must be the namespace of
	// the VIPManager's handle. The caller keeps it open while watching.
	Namespace *netns.NsHandle
	// Buffer is the capacity of the returned channel; 0 means 16.
	Buffer int
	// OnError, if set, is told of subscription failures (a netlink socket
	// overrun, say). The watch then subscribes again and re-checks, so no
	// removal is missed; it may be reported twice. A subscription that ended
	// is reported wrapping ErrSubscriptionLost. What the netlink library
	// reports while its subscription runs wraps ErrSubscriptionNotice: mostly
	// single messages it skipped (one from a sender that is not the kernel,
	// say), worth a debug line; a receive error among them is followed by an
	// ErrSubscriptionLost report.
	OnError func(error)
}

// ErrSubscriptionNotice marks OnError reports that the netlink library made
// while its subscription went on.
var ErrSubscriptionNotice = errors.New("netlink subscription notice")

// ErrSubscriptionLost marks OnError reports of a netlink subscription that
// ended while the watch was still wanted (a socket overrun or a receive
// error): the watch is subscribing again.
var ErrSubscriptionLost = errors.New("netlink subscription lost")

func (o *WatchOptions) buffer() int {
	if o.Buffer > 0 {
		return o.Buffer
	}
	return 16
}

func (o *WatchOptions) fail(err error) {
	if o.OnError != nil {
		o.OnError(err)
	}
}

// VIPEvent reports a VIP that disappeared from the interface while m owned
// it: deleted by someone else (`ip addr del`, a network manager, the
// interface going administratively down for IPv6).
type VIPEvent struct {
	VIP  VIP
	Time time.Time
}

// resubscribeDelay paces new subscriptions after a failure.
const resubscribeDelay = 200 * time.Millisecond

// Watch reports, until ctx ends, every VIP that m owns and that disappears
// from the interface without m removing it, so that a Master can put it
// back. It listens to RTM_DELADDR (netlink.AddrSubscribeWithOptions) and
// checks each candidate with Present, so an address leaving another
// interface, or coming back at once, is not reported. The channel is
// closed when ctx ends. Read it promptly: while it is full, netlink
// notifications queue in the kernel, and an overrun makes Watch resubscribe
// and re-check every owned VIP.
func (m *VIPManager) Watch(ctx context.Context, opts WatchOptions) (<-chan VIPEvent, error) {
	sub, err := subscribeAddrs(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("netio: watch addresses: %w", err)
	}
	out := make(chan VIPEvent, opts.buffer())
	go func() {
		defer close(out)
		for {
			for u := range sub.ch {
				if u.NewAddr || u.LinkAddress.IP == nil || ctx.Err() != nil {
					continue
				}
				if v, ok := m.checkGone(ipAddr(u.LinkAddress.IP), opts); ok {
					if !send(ctx, out, VIPEvent{VIP: v, Time: time.Now()}) {
						sub.stop()
					}
				}
			}
			sub.stop()
			if ctx.Err() != nil {
				return
			}
			// The subscription failed: subscribe again, then look for what
			// was lost meanwhile.
			opts.fail(fmt.Errorf("netio: watch addresses: %w; subscribing again", ErrSubscriptionLost))
			for {
				if !sleepCtx(ctx, resubscribeDelay) {
					return
				}
				if sub, err = subscribeAddrs(ctx, opts); err == nil {
					break
				}
				opts.fail(fmt.Errorf("netio: watch addresses: resubscribe: %w: %w", ErrSubscriptionLost, err))
			}
			for _, v := range m.Owned() {
				if v, ok := m.checkGone(v.Addr(), opts); ok {
					send(ctx, out, VIPEvent{VIP: v, Time: time.Now()})
				}
			}
		}
	}()
	return out, nil
}

// checkGone reports an owned VIP whose address is no longer on the interface.
func (m *VIPManager) checkGone(a netip.Addr, opts WatchOptions) (VIP, bool) {
	v, ok := m.owns(a)
	if !ok {
		return VIP{}, false
	}
	present, err := m.Present(a)
	if err != nil {
		opts.fail(err)
		return VIP{}, false
	}
	if present {
		return VIP{}, false
	}
	// Still ours? Remove may have run meanwhile.
	v, ok = m.owns(a)
	return v, ok
}

// addrSub is one netlink address subscription.
type addrSub struct {
	ch   chan netlink.AddrUpdate
	done chan struct{}
	once sync.Once
}

func (s *addrSub) stop() { s.once.Do(func() { close(s.done) }) }

// subscribeAddrs subscribes to address changes. The subscription's channel
// is closed once it ends, on failure or after stop, and must be drained
// until then: the netlink library's reader blocks on it.
func subscribeAddrs(ctx context.Context, opts WatchOptions) (*addrSub, error) {
	s := &addrSub{ch: make(chan netlink.AddrUpdate, 64), done: make(chan struct{})}
	err := netlink.AddrSubscribeWithOptions(s.ch, s.done, netlink.AddrSubscribeOptions{
		Namespace: opts.Namespace,
		ErrorCallback: func(err error) {
			if ctx.Err() == nil {
				opts.fail(fmt.Errorf("netio: address subscription: %w: %w", ErrSubscriptionNotice, err))
			}
		},
		ReceiveBufferSize: 1 << 20,
	})
	if err != nil {
		return nil, err
	}
	go stopOnDone(ctx, s.done, s.stop)
	return s, nil
}

// stopOnDone calls stop when ctx ends, unless the subscription's done
// channel closes first.
func stopOnDone(ctx context.Context, done <-chan struct{}, stop func()) {
	select {
	case <-ctx.Done():
		stop()
	case <-done:
	}
}

// LinkEvent is the state of a link: reported once for each watched link
// when the watch starts, then whenever it changes.
type LinkEvent struct {
	// Name and Index identify the link.
	Name  string
	Index int
	// Up is true when the link is administratively up and running (IFF_UP
	// and IFF_RUNNING: operationally up, carrier present), as keepalived's
	// interface tracking reads it.
	Up bool
	// Deleted is true when the link went away (or left the namespace).
	Deleted bool
	Time    time.Time
}

// WatchLinks reports link state, until ctx ends, for the named links (all
// links if names is empty) with netlink.LinkSubscribeWithOptions: first the
// current state of each, then every change of Up, and deletions. The
// channel is closed when ctx ends. A subscription failure (socket overrun)
// is repaired by subscribing again, which re-lists every link; only real
// changes are reported.
func WatchLinks(ctx context.Context, opts WatchOptions, names ...string) (<-chan LinkEvent, error) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	sub, err := subscribeLinks(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("netio: watch links: %w", err)
	}
	out := make(chan LinkEvent, opts.buffer())
	go func() {
		defer close(out)
		type state struct {
			up, deleted bool
		}
		last := map[string]state{}
		for {
			for u := range sub.ch {
				if ctx.Err() != nil || u.Link == nil || u.Attrs() == nil {
					continue
				}
				a := u.Attrs()
				if len(want) > 0 && !want[a.Name] {
					continue
				}
				st := state{deleted: u.Header.Type == unix.RTM_DELLINK}
				st.up = !st.deleted && u.IfInfomsg.Flags&unix.IFF_UP != 0 && u.IfInfomsg.Flags&unix.IFF_RUNNING != 0
				if prev, seen := last[a.Name]; seen && prev == st {
					continue
				}
				last[a.Name] = st
				ev := LinkEvent{Name: a.Name, Index: int(u.IfInfomsg.Index), Up: st.up, Deleted: st.deleted, Time: time.Now()}
				if !send(ctx, out, ev) {
					sub.stop()
				}
			}
			sub.stop()
			if ctx.Err() != nil {
				return
			}
			opts.fail(fmt.Errorf("netio: watch links: %w; subscribing again", ErrSubscriptionLost))
			for {
				if !sleepCtx(ctx, resubscribeDelay) {
					return
				}
				if sub, err = subscribeLinks(ctx, opts); err == nil {
					break
				}
				opts.fail(fmt.Errorf("netio: watch links: resubscribe: %w: %w", ErrSubscriptionLost, err))
			}
		}
	}()
	return out, nil
}

// linkSub is one netlink link subscription.
type linkSub struct {
	ch   chan netlink.LinkUpdate
	done chan struct{}
	once sync.Once
}

func (s *linkSub) stop() { s.once.Do(func() { close(s.done) }) }

func subscribeLinks(ctx context.Context, opts WatchOptions) (*linkSub, error) {
	s := &linkSub{ch: make(chan netlink.LinkUpdate, 64), done: make(chan struct{})}
	err := netlink.LinkSubscribeWithOptions(s.ch, s.done, netlink.LinkSubscribeOptions{
		Namespace: opts.Namespace,
		ErrorCallback: func(err error) {
			if ctx.Err() == nil {
				opts.fail(fmt.Errorf("netio: link subscription: %w: %w", ErrSubscriptionNotice, err))
			}
		},
		ListExisting:      true,
		ReceiveBufferSize: 1 << 20,
	})
	if err != nil {
		return nil, err
	}
	go stopOnDone(ctx, s.done, s.stop)
	return s, nil
}

// send delivers v on out unless ctx ends first.
func send[T any](ctx context.Context, out chan<- T, v T) bool {
	select {
	case out <- v:
		return true
	case <-ctx.Done():
		return false
	}
}

// sleepCtx waits d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
