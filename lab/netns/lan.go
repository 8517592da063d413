package netns

import (
	"fmt"
	"net/netip"
	"os"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"
)

// BridgeName is the name of a LAN's bridge inside its switch namespace.
const BridgeName = "br0"

// LAN is an Ethernet segment: a bridge in a "switch" namespace of its own, with a veth port for
// each host attached. Nothing of it lives in the root namespace.
type LAN struct {
	tb   testing.TB
	opts Options
	sw   *Host

	mu    sync.Mutex
	hosts []*Host
	ports map[*Host]lanPort
	next  int
}

// lanPort is a host's attachment to a LAN.
type lanPort struct {
	port  string // in the switch namespace
	iface string // in the host
}

// NewLAN makes an empty LAN; add hosts with AddHost. Everything is removed by tb's cleanup.
// Call it from the test's goroutine: it fails the test on error.
func NewLAN(tb testing.TB, opts Options) *LAN {
	tb.Helper()
	sw, err := newHost(tb, "sw", opts, func() error {
		// The switch only bridges: no IPv6 on its own links (no router solicitations, MLD or
		// NDP of its own on the segment).
		for _, dev := range []string{"all", "default"} {
			_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+dev+"/disable_ipv6", []byte("1"), 0)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	snooping := false
	err = sw.Netlink(func(nl *netlink.Handle) error {
		br := &netlink.Bridge{
			LinkAttrs: netlink.LinkAttrs{Name: BridgeName, MTU: opts.MTU},
			// Flood all multicast: VRRP adverts (224.0.0.18, ff02::12) and anything a test
			// sends reach every port without IGMP/MLD state.
			MulticastSnooping: &snooping,
		}
		if err := nl.LinkAdd(br); err != nil {
			return err
		}
		return nl.LinkSetUp(br)
	})
	if err != nil {
		tb.Fatalf("netns: create bridge in %s: %v", sw.NSName, err)
	}
	sw.Iface = BridgeName
	return &LAN{tb: tb, opts: opts, sw: sw, ports: map[*Host]lanPort{}}
}

// AddHost makes a host on the LAN: a new namespace with lo up and eth0, a veth whose peer is a
// port of the bridge, carrying addrs ("192.0.2.11/24", "2001:db8::11/64"; only documentation
// ranges, see ParseAddrs). Host names must be unique on the LAN. Call it from the test's
// goroutine: it fails the test on error.
func (l *LAN) AddHost(name string, addrs ...string) *Host {
	l.tb.Helper()
	ps, err := ParseAddrs(addrs...)
	if err != nil {
		l.tb.Fatal(err)
	}
	if l.Host(name) != nil {
		l.tb.Fatalf("netns: the LAN already has a host %q", name)
	}
	h := NewHost(l.tb, name, l.opts)
	link, err := l.attach(h, ps)
	if err != nil {
		l.tb.Fatal(err)
	}
	h.Iface, h.Addrs, h.MAC = link.Name, link.Addrs, link.MAC
	return h
}

// Attach connects an existing host (a bare one from NewHost, or a host of another LAN) to this
// LAN with a new interface (eth1, eth2, ...) carrying addrs, and returns it. This is how a load
// balancer gets a client side and a server side. Call it from the test's goroutine.
func (l *LAN) Attach(h *Host, addrs ...string) Link {
	l.tb.Helper()
	ps, err := ParseAddrs(addrs...)
	if err != nil {
		l.tb.Fatal(err)
	}
	link, err := l.attach(h, ps)
	if err != nil {
		l.tb.Fatal(err)
	}
	return link
}

func (l *LAN) attach(h *Host, ps []netip.Prefix) (Link, error) {
	l.mu.Lock()
	if _, dup := l.ports[h]; dup {
		l.mu.Unlock()
		return Link{}, fmt.Errorf("netns: host %s is already on this LAN", h.Name)
	}
	l.next++
	port := fmt.Sprintf("p%d-%s", l.next, h.Name)
	if len(port) > 15 { // IFNAMSIZ-1
		port = port[:15]
	}
	iface := h.newIface()
	l.ports[h] = lanPort{port: port, iface: iface}
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()

	_, mac, err := makeVeth(
		vethEnd{ns: l.sw.ns, name: port, master: BridgeName},
		vethEnd{ns: h.ns, name: iface, addrs: ps},
		l.opts)
	if err != nil {
		return Link{}, err
	}
	link := Link{Name: iface, Addrs: ps, MAC: mac, Peer: port}
	h.addLink(link)
	return link, nil
}

// Hosts returns the hosts on the LAN in the order they joined.
func (l *LAN) Hosts() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Host(nil), l.hosts...)
}

// Host returns the LAN's host of that name, or nil.
func (l *LAN) Host(name string) *Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range l.hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Switch is the LAN's switch namespace as a Host (Iface is the bridge, BridgeName), for
// watching the segment: lan.Switch().Start(t, "tcpdump", "-nei", netns.BridgeName).
func (l *LAN) Switch() *Host { return l.sw }

// Port is the name of h's port on the bridge, in the switch namespace ("" if h is not on the LAN).
func (l *LAN) Port(h *Host) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ports[h].port
}

// Unplug pulls h's cable: its bridge port goes down, so h's interface loses carrier and nothing
// passes either way until Plug. For failover tests.
func (l *LAN) Unplug(h *Host) error {
	p, err := l.port(h)
	if err != nil {
		return err
	}
	return l.sw.SetLinkUp(p.port, false)
}

// Plug reverses Unplug and returns once h's interface has carrier again.
func (l *LAN) Plug(h *Host) error {
	p, err := l.port(h)
	if err != nil {
		return err
	}
	if err := l.sw.SetLinkUp(p.port, true); err != nil {
		return err
	}
	return waitReady(vethEnd{ns: h.ns, name: p.iface})
}

func (l *LAN) port(h *Host) (lanPort, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, ok := l.ports[h]
	if !ok {
		return p, fmt.Errorf("netns: host %s is not on this LAN", h.Name)
	}
	return p, nil
}
