package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/fulcrum-lb/fulcrum/lab/require"
)

// Options tune a LAN, a Pair or a bare host. The zero value is what most tests want.
type Options struct {
	// MTU of the links made; 0 keeps the kernel's default (1500).
	MTU int
	// KeepDAD keeps IPv6 duplicate address detection on. By default it is off in every host
	// (net.ipv6.conf.{all,default}.accept_dad=0, set before any link exists, and IFA_F_NODAD
	// on the addresses given here), so IPv6 addresses, link-local ones included, are usable
	// the moment AddHost returns, and so are addresses a daemon adds later (a VRRP VIP).
	KeepDAD bool
}

// Host is a network namespace playing one machine. Its exported fields describe its first
// interface and never change after the host is returned.
type Host struct {
	// Name is the name the test gave, e.g. "lb1".
	Name string
	// NSName is the real namespace name in /run/netns, unique on the machine, e.g.
	// "fl-4711-1-lb1": `ip netns exec <NSName> ...` and `ip -n <NSName> ...` work with it.
	NSName string
	// Iface is the host's first interface ("eth0"); "" for a bare host from NewHost.
	Iface string
	// Addrs are the addresses given for Iface, in order.
	Addrs []netip.Prefix
	// MAC is Iface's hardware address.
	MAC net.HardwareAddr

	tb   testing.TB
	ns   *namespace
	opts Options

	mu        sync.Mutex
	links     []Link
	cleanups  []func() // run before the namespace goes (idle HTTP connections, say)
	removed   bool
	nextIface int
}

// Link is one interface of a host.
type Link struct {
	// Name inside the host: "eth0", "eth1", ...
	Name string
	// Addrs given when the link was made.
	Addrs []netip.Prefix
	// MAC is the link's hardware address.
	MAC net.HardwareAddr
	// Peer is the name of the other end: a port of the LAN's bridge in its switch namespace, or
	// the other host's interface for a Pair.
	Peer string
}

// validHostName: 1 to 32 of [A-Za-z0-9_.-], starting with a letter or digit.
func validHostName(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i, c := range s {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || !strings.ContainsRune("_.-", c)) {
			return false
		}
	}
	return true
}

// NewHost makes a bare host: a new network namespace with only lo, up. Give it interfaces with
// LAN.Attach. It is removed by tb's cleanup, with every process still running inside.
// Call it from the test's goroutine: it fails the test on error.
func NewHost(tb testing.TB, name string, opts Options) *Host {
	tb.Helper()
	h, err := newHost(tb, name, opts, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

func newHost(tb testing.TB, name string, opts Options, extraSetup nsSetup) (*Host, error) {
	tb.Helper()
	require.Root(tb)
	if !validHostName(name) {
		return nil, fmt.Errorf("netns: bad host name %q: want 1 to 32 of [A-Za-z0-9_.-], starting with a letter or digit", name)
	}
	if removed, err := Sweep(); err != nil {
		tb.Logf("netns: sweeping stale namespaces: %v", err)
	} else if len(removed) > 0 {
		tb.Logf("netns: removed stale namespaces of dead test processes: %s", strings.Join(removed, " "))
	}
	ns, err := createNamespace(name, func() error {
		if !opts.KeepDAD {
			for _, dev := range []string{"all", "default"} {
				err := os.WriteFile("/proc/sys/net/ipv6/conf/"+dev+"/accept_dad", []byte("0"), 0)
				if err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
			}
		}
		if extraSetup != nil {
			return extraSetup()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	h := &Host{Name: name, NSName: ns.name, tb: tb, ns: ns, opts: opts}
	tb.Cleanup(h.remove)
	err = ns.handle(func(nl *netlink.Handle) error {
		lo, err := nl.LinkByName("lo")
		if err != nil {
			return err
		}
		return nl.LinkSetUp(lo)
	})
	if err != nil {
		return nil, fmt.Errorf("netns: %s: bring lo up: %w", name, err)
	}
	return h, nil
}

// remove is the host's cleanup: stray processes are killed, links deleted (so their peers in other
// namespaces go at once) and the namespace unmounted.
func (h *Host) remove() {
	h.mu.Lock()
	h.removed = true
	cleanups := h.cleanups
	h.cleanups = nil
	h.mu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	_ = h.ns.handle(func(nl *netlink.Handle) error {
		links, err := retryDump(nl.LinkList)
		if err != nil {
			return err
		}
		for _, l := range links {
			if l.Type() == "veth" {
				_ = nl.LinkDel(l)
			}
		}
		return nil
	})
	killed, err := h.ns.remove()
	if len(killed) > 0 {
		h.tb.Logf("netns: host %s: killed processes still running in its namespace: %s", h.Name, strings.Join(killed, "; "))
	}
	if err != nil {
		h.tb.Errorf("netns: host %s: remove namespace %s: %v", h.Name, h.NSName, err)
	}
}

func (h *Host) onRemove(fn func()) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.removed {
		return false
	}
	h.cleanups = append(h.cleanups, fn)
	return true
}

// Path is the namespace file, "/run/netns/<NSName>", for nsenter --net=PATH or setns.
func (h *Host) Path() string { return h.ns.path }

// String returns the host's name.
func (h *Host) String() string { return h.Name }

// Links returns the host's interfaces in the order they were made (lo excluded).
func (h *Host) Links() []Link {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Link(nil), h.links...)
}

// Addr4 is the first IPv4 address of Addrs (the zero Addr if none).
func (h *Host) Addr4() netip.Addr { return firstAddr(h.Addrs, true) }

// Addr6 is the first IPv6 address of Addrs (the zero Addr if none).
func (h *Host) Addr6() netip.Addr { return firstAddr(h.Addrs, false) }

func firstAddr(ps []netip.Prefix, v4 bool) netip.Addr {
	for _, p := range ps {
		if p.Addr().Is4() == v4 {
			return p.Addr()
		}
	}
	return netip.Addr{}
}

// Do runs fn inside the host's network namespace and returns its error.
//
// fn runs on a fresh goroutine locked to an OS thread that has joined the namespace; the call
// blocks until fn returns. Afterwards the thread moves back to its original namespace and returns
// to the runtime's pool, or, if it cannot move back, is terminated (never reused). Sockets
// created inside fn belong to the namespace for their whole life and may be used from any
// goroutine afterwards. Goroutines that fn starts do NOT run in the namespace, and neither does
// name resolution in the Go resolver (it uses goroutines): use IP literals. Do not start
// long-lived child processes from fn (their parent-death signal is tied to the thread); use
// Command or Start. A panic in fn is re-raised in the caller; t.FailNow in fn ends the caller
// too. Do is safe for concurrent use.
func (h *Host) Do(fn func() error) error { return h.ns.do(fn) }

// Command returns a command that runs name in the host's namespace, through
// `ip netns exec NSName name args...`. Like exec.CommandContext, ctx kills the process.
// The process sees the namespace's interfaces both through netlink and through /sys (which
// `ip netns exec` remounts). It is not tied to the test's cleanup; Start is.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	ip := "ip"
	for _, p := range []string{"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"} {
		if _, err := os.Stat(p); err == nil {
			ip = p
			break
		}
	}
	return exec.CommandContext(ctx, ip, append([]string{"netns", "exec", h.NSName, name}, args...)...)
}

// Start starts name in the host's namespace as a background process tied to tb: tb's cleanup
// stops it (SIGTERM to its process group, SIGKILL after a grace period) and waits for it, and if
// the test failed logs its combined output. A missing binary (or missing iproute2) skips the test
// outside CI and fails it under CI=true, via lab/require. Call it from the test's goroutine.
func (h *Host) Start(tb testing.TB, name string, args ...string) *Proc {
	tb.Helper()
	require.Binary(tb, "ip")
	bin := require.Binary(tb, name)
	cmd := h.Command(context.Background(), bin, args...)
	p, err := startProc(tb, h.Name+": "+filepath.Base(name), cmd)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// Sysctl reads a sysctl of the host's namespace. key is dotted ("net.ipv4.ip_forward") or a path
// below /proc/sys ("net/ipv6/conf/eth0.100/forwarding").
func (h *Host) Sysctl(key string) (string, error) {
	var v []byte
	err := h.Do(func() error {
		var err error
		v, err = os.ReadFile(sysctlPath(key))
		return err
	})
	return strings.TrimSpace(string(v)), err
}

// SetSysctl writes a sysctl of the host's namespace (see Sysctl for key).
// /proc/sys/net follows the network namespace of the thread that opens the file, so this writes
// the namespace's copy, never the root namespace's.
func (h *Host) SetSysctl(key, value string) error {
	return h.Do(func() error { return os.WriteFile(sysctlPath(key), []byte(value), 0) })
}

func sysctlPath(key string) string {
	if !strings.Contains(key, "/") {
		key = strings.ReplaceAll(key, ".", "/")
	}
	return filepath.Join("/proc/sys", filepath.Clean("/"+key))
}

// Netlink runs fn with a netlink handle inside the host's namespace, for what the helpers here
// do not cover (routes, neighbours, link settings). Do not keep the handle beyond fn: after the
// host is removed a closed handle would fall back to the caller's namespace.
func (h *Host) Netlink(fn func(nl *netlink.Handle) error) error { return h.ns.handle(fn) }

// SetLinkUp sets an interface of the host up or down.
func (h *Host) SetLinkUp(iface string, up bool) error {
	return h.Netlink(func(nl *netlink.Handle) error {
		l, err := nl.LinkByName(iface)
		if err != nil {
			return fmt.Errorf("netns: %s: %s: %w", h.Name, iface, err)
		}
		if up {
			return nl.LinkSetUp(l)
		}
		return nl.LinkSetDown(l)
	})
}

// AddAddr adds an address (e.g. "192.0.2.100/32") to an interface of the host. Like every
// address this package sets, it must lie in a documentation range (see ParseAddrs).
func (h *Host) AddAddr(iface, prefix string) error {
	ps, err := ParseAddrs(prefix)
	if err != nil {
		return err
	}
	return h.Netlink(func(nl *netlink.Handle) error { return addAddrs(nl, iface, ps, h.opts) })
}

// DelAddr removes an address from an interface of the host.
func (h *Host) DelAddr(iface, prefix string) error {
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		return err
	}
	return h.Netlink(func(nl *netlink.Handle) error {
		l, err := nl.LinkByName(iface)
		if err != nil {
			return err
		}
		return nl.AddrDel(l, nlAddr(p, h.opts))
	})
}

// ListAddrs returns the addresses now on iface, or on every interface but lo if iface is "".
// It sees addresses that daemons added (a VRRP VIP) as well as the ones given here.
func (h *Host) ListAddrs(iface string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	err := h.Netlink(func(nl *netlink.Handle) error {
		links, err := retryDump(nl.LinkList)
		if err != nil {
			return err
		}
		for _, l := range links {
			name := l.Attrs().Name
			if (iface == "" && name == "lo") || (iface != "" && name != iface) {
				continue
			}
			addrs, err := retryDump(func() ([]netlink.Addr, error) { return nl.AddrList(l, netlink.FAMILY_ALL) })
			if err != nil {
				return err
			}
			for _, a := range addrs {
				ip, ok := netip.AddrFromSlice(a.IP)
				if !ok {
					continue
				}
				ones, _ := a.Mask.Size()
				out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
			}
		}
		return nil
	})
	return out, err
}

// HasAddr reports whether any interface of the host (lo excluded) now holds addr.
func (h *Host) HasAddr(addr netip.Addr) (bool, error) {
	ps, err := h.ListAddrs("")
	for _, p := range ps {
		if p.Addr() == addr {
			return true, err
		}
	}
	return false, err
}

// AddRoute adds a route in the host's namespace: dst is a prefix in a documentation range or
// "default" (IPv4; "default6" for IPv6), via a gateway address on a connected network.
// The route exists only inside the namespace, which has no path out of the test's topology.
func (h *Host) AddRoute(dst, via string) error {
	gw, err := netip.ParseAddr(via)
	if err != nil {
		return fmt.Errorf("netns: route via %q: %w", via, err)
	}
	r := &netlink.Route{Gw: gw.AsSlice()}
	switch dst {
	case "default":
		r.Dst = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	case "default6":
		r.Dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	default:
		ps, err := ParseAddrs(dst)
		if err != nil {
			return err
		}
		p := ps[0].Masked()
		r.Dst = &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
	}
	if !isDocAddr(gw) {
		return fmt.Errorf("netns: gateway %s is not in a documentation range", gw)
	}
	return h.Netlink(func(nl *netlink.Handle) error { return nl.RouteAdd(r) })
}

// docRanges are the only ranges the lab puts on interfaces: RFC 5737 and RFC 3849, plus IPv6
// link-local.
func docRanges() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("192.0.2.0/24"),
		netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("203.0.113.0/24"),
		netip.MustParsePrefix("2001:db8::/32"),
		netip.MustParsePrefix("fe80::/10"),
	}
}

func isDocAddr(a netip.Addr) bool {
	for _, r := range docRanges() {
		if r.Contains(a.WithZone("")) {
			return true
		}
	}
	return false
}

// ParseAddrs parses interface addresses such as "192.0.2.11/24" or "2001:db8::11/64". A bare
// address gets /32 or /128. Every prefix must lie wholly inside 192.0.2.0/24, 198.51.100.0/24,
// 203.0.113.0/24, 2001:db8::/32 or fe80::/10: the lab's network rules allow no other address
// inside its namespaces.
func ParseAddrs(addrs ...string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range addrs {
		var p netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(s)
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if err != nil {
			return nil, fmt.Errorf("netns: address %q: %w", s, err)
		}
		ok := false
		for _, r := range docRanges() {
			if r.Contains(p.Addr()) && p.Bits() >= r.Bits() {
				ok = true
				break
			}
		}
		if !ok {
			return nil, fmt.Errorf("netns: address %s is outside the documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32, fe80::/10) that the lab may use", p)
		}
		out = append(out, p)
	}
	return out, nil
}

func nlAddr(p netip.Prefix, opts Options) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() && !opts.KeepDAD {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// retryDump runs a netlink dump again, up to five times, while the kernel
// reports it interrupted (the table changed while it was sent).
func retryDump[T any](dump func() (T, error)) (T, error) {
	for i := 1; ; i++ {
		v, err := dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) || i == 5 {
			return v, err
		}
	}
}

func addAddrs(nl *netlink.Handle, iface string, ps []netip.Prefix, opts Options) error {
	l, err := nl.LinkByName(iface)
	if err != nil {
		return err
	}
	for _, p := range ps {
		if err := nl.AddrAdd(l, nlAddr(p, opts)); err != nil {
			return fmt.Errorf("add %s to %s: %w", p, iface, err)
		}
	}
	return nil
}

func ipv6Enabled() bool {
	_, err := os.Stat("/proc/net/if_inet6")
	return err == nil
}

// vethEnd is one end of a veth pair being made.
type vethEnd struct {
	ns     *namespace
	name   string
	master string // bridge to enslave to, in ns
	addrs  []netip.Prefix
}

// makeVeth creates a veth pair with end a in a.ns and end b in b.ns, sets addresses, brings both
// up and returns their MACs. The pair is created in a.ns with the peer placed straight into b.ns,
// so it never appears in the root namespace.
func makeVeth(a, b vethEnd, opts Options) (macA, macB net.HardwareAddr, err error) {
	err = a.ns.handle(func(nla *netlink.Handle) error {
		attrs := netlink.LinkAttrs{Name: a.name, MTU: opts.MTU}
		if a.master != "" {
			br, err := nla.LinkByName(a.master)
			if err != nil {
				return err
			}
			attrs.MasterIndex = br.Attrs().Index
		}
		// Give end a an ifindex far from the small one the kernel picks for b. A veth whose
		// ifindex equals its peer's (both 2 in two fresh namespaces, say) does not count as a
		// stacked device for linkwatch, so its carrier change is delayed up to a second, and
		// IPv6 stays tentative (no neighbour advertisements) until then.
		links, err := retryDump(nla.LinkList)
		if err != nil {
			return err
		}
		attrs.Index = 1001
		for _, l := range links {
			attrs.Index = max(attrs.Index, l.Attrs().Index+1)
		}
		b.ns.mu.RLock()
		defer b.ns.mu.RUnlock()
		if b.ns.closed {
			return ErrRemoved
		}
		return nla.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: b.name, PeerNamespace: netlink.NsFd(b.ns.fd)})
	})
	if err != nil {
		return nil, nil, fmt.Errorf("netns: veth %s/%s <-> %s/%s: %w", a.ns.name, a.name, b.ns.name, b.name, err)
	}
	up := func(e vethEnd) (mac net.HardwareAddr, err error) {
		err = e.ns.handle(func(nl *netlink.Handle) error {
			l, err := nl.LinkByName(e.name)
			if err != nil {
				return err
			}
			if err := addAddrs(nl, e.name, e.addrs, opts); err != nil {
				return err
			}
			if err := nl.LinkSetUp(l); err != nil {
				return err
			}
			mac = l.Attrs().HardwareAddr
			return nil
		})
		if err != nil {
			err = fmt.Errorf("netns: %s in %s: %w", e.name, e.ns.name, err)
		}
		return mac, err
	}
	if macB, err = up(b); err != nil {
		return nil, nil, err
	}
	if macA, err = up(a); err != nil {
		return nil, nil, err
	}
	for _, e := range []vethEnd{a, b} {
		if e.master == "" {
			if err := waitReady(e); err != nil {
				return nil, nil, err
			}
		}
	}
	return macA, macB, nil
}

// waitReady waits until a host's new link is usable: operationally up, with an IPv6 link-local
// address and no tentative IPv6 address (immediate with DAD off, a second or two with KeepDAD).
func waitReady(e vethEnd) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		var why string
		err := e.ns.handle(func(nl *netlink.Handle) error {
			l, err := nl.LinkByName(e.name)
			if err != nil {
				return err
			}
			if l.Attrs().OperState != netlink.OperUp {
				why = "operstate " + l.Attrs().OperState.String()
				return nil
			}
			addrs, err := nl.AddrList(l, netlink.FAMILY_V6)
			if errors.Is(err, netlink.ErrDumpInterrupted) {
				why = "address dump interrupted" // addresses are changing: look again
				return nil
			}
			if err != nil {
				return err
			}
			linkLocal := false
			for _, a := range addrs {
				if a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
					why = "tentative IPv6 address " + a.IPNet.String()
					return nil
				}
				linkLocal = linkLocal || a.IP.IsLinkLocalUnicast()
			}
			if !linkLocal && ipv6Enabled() {
				why = "no IPv6 link-local address yet"
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("netns: %s in %s: %w", e.name, e.ns.name, err)
		}
		if why == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("netns: %s in %s not ready after 5s: %s", e.name, e.ns.name, why)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// newIface reserves the next ethN name in h.
func (h *Host) newIface() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	name := fmt.Sprintf("eth%d", h.nextIface)
	h.nextIface++
	return name
}

func (h *Host) addLink(l Link) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.links = append(h.links, l)
}

// Pair makes two hosts joined by one veth pair, without a bridge: each gets eth0 with the
// addresses given. For two hosts this is the cheapest topology.
//
//	a, b := netns.Pair(t, netns.Options{},
//		netns.HostSpec{Name: "a", Addrs: []string{"192.0.2.1/24"}},
//		netns.HostSpec{Name: "b", Addrs: []string{"192.0.2.2/24"}})
func Pair(tb testing.TB, opts Options, a, b HostSpec) (*Host, *Host) {
	tb.Helper()
	pa, err := ParseAddrs(a.Addrs...)
	if err != nil {
		tb.Fatal(err)
	}
	pb, err := ParseAddrs(b.Addrs...)
	if err != nil {
		tb.Fatal(err)
	}
	ha := NewHost(tb, a.Name, opts)
	hb := NewHost(tb, b.Name, opts)
	ia, ib := ha.newIface(), hb.newIface()
	macA, macB, err := makeVeth(vethEnd{ns: ha.ns, name: ia, addrs: pa}, vethEnd{ns: hb.ns, name: ib, addrs: pb}, opts)
	if err != nil {
		tb.Fatal(err)
	}
	ha.Iface, ha.Addrs, ha.MAC = ia, pa, macA
	hb.Iface, hb.Addrs, hb.MAC = ib, pb, macB
	ha.addLink(Link{Name: ia, Addrs: pa, MAC: macA, Peer: ib})
	hb.addLink(Link{Name: ib, Addrs: pb, MAC: macB, Peer: ia})
	return ha, hb
}

// HostSpec names a host and its addresses, for Pair.
type HostSpec struct {
	Name  string
	Addrs []string
}
