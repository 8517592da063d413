package netio_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/fulcrum-lb/fulcrum/lab/netns"
	"github.com/fulcrum-lb/fulcrum/vrrp/netio"
)

// TestConnMulticast4: A's advert reaches B with TTL 255, A's address as
// source, the group as destination and B's interface index; A does not hear
// itself; and an independent raw socket on B sees the IP header the kernel
// built (TTL 255, TOS 0xc0, protocol 112).
func TestConnMulticast4(t *testing.T) {
	lan := netns.NewLAN(t, netns.Options{})
	a := lan.AddHost("a", "192.0.2.11/24")
	b := lan.AddHost("b", "192.0.2.12/24")
	ca := listen(t, a, netio.ConnOptions{Family: 4, Interface: "eth0"})
	cb := listen(t, b, netio.ConnOptions{Family: 4, Interface: "eth0"})

	if got := ca.Source(); got != a.Addr4() {
		t.Errorf("Source() = %s, want the interface's address %s", got, a.Addr4())
	}
	if got := ca.Destinations(); !slices.Equal(got, []netip.Addr{netio.Group4()}) {
		t.Errorf("Destinations() = %v, want [224.0.0.18]", got)
	}

	// The witness: a plain raw socket (IP_MULTICAST_ALL on by default, so it
	// sees the group cb joined) that reads whole IP headers.
	var witness *ipv4.RawConn
	err := b.Do(func() error {
		pc, err := net.ListenPacket("ip4:112", "0.0.0.0")
		if err != nil {
			return err
		}
		witness, err = ipv4.NewRawConn(pc)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer witness.Close()

	msg := vrrpLike(7, netip.MustParseAddr("192.0.2.100"))
	if err := ca.Send(msg, netio.Group4()); err != nil {
		t.Fatal(err)
	}
	p := recv(t, cb)
	want := netio.Packet{Payload: msg, Src: a.Addr4(), Dst: netio.Group4(), TTL: 255, IfIndex: ifIndex(t, b, "eth0")}
	if !bytes.Equal(p.Payload, want.Payload) || p.Src != want.Src || p.Dst != want.Dst || p.TTL != want.TTL || p.IfIndex != want.IfIndex {
		t.Errorf("B received %+v, want %+v", p, want)
	}
	expectNothing(t, ca, "A must not hear its own advert (IP_MULTICAST_LOOP=0)")

	witness.SetReadDeadline(time.Now().Add(waitFor))
	buf := make([]byte, 1500)
	h, payload, _, err := witness.ReadFrom(buf)
	if err != nil {
		t.Fatalf("witness: %v", err)
	}
	if h.TTL != 255 || h.TOS != 0xc0 || h.Protocol != 112 || !h.Dst.Equal(net.IPv4(224, 0, 0, 18)) || !h.Src.Equal(a.Addr4().AsSlice()) || !bytes.Equal(payload, msg) {
		t.Errorf("witness saw header %v payload %x; want TTL 255, TOS 0xc0, protocol 112, %s -> 224.0.0.18, payload %x", h, payload, a.Addr4(), msg)
	}
}

// TestConnTTL64: a packet sent with TTL 64 is delivered with TTL 64; the
// transport reports it, the caller drops it (RFC 5798 §7.1).
func TestConnTTL64(t *testing.T) {
	lan := netns.NewLAN(t, netns.Options{})
	b := lan.AddHost("b", "192.0.2.12/24")
	c := lan.AddHost("c", "192.0.2.13/24")
	cb := listen(t, b, netio.ConnOptions{Family: 4, Interface: "eth0"})

	msg := vrrpLike(9)
	err := c.Do(func() error {
		pc, err := net.ListenPacket("ip4:112", "0.0.0.0")
		if err != nil {
			return err
		}
		defer pc.Close()
		p := ipv4.NewPacketConn(pc)
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		if err := p.SetMulticastInterface(ifi); err != nil {
			return err
		}
		if err := p.SetMulticastTTL(64); err != nil {
			return err
		}
		_, err = p.WriteTo(msg, nil, &net.IPAddr{IP: net.IPv4(224, 0, 0, 18)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	p := recv(t, cb)
	if p.TTL != 64 || p.Src != c.Addr4() || !bytes.Equal(p.Payload, msg) {
		t.Errorf("got TTL %d from %s payload %x; want TTL 64 from %s payload %x", p.TTL, p.Src, p.Payload, c.Addr4(), msg)
	}
}

// TestConnUnicast4: unicast mode sends to the peer from the configured
// source with TTL 255, drops packets from non-peers, and does not see
// multicast adverts even when another socket joined the group on the same
// interface (IP_MULTICAST_ALL=0).
func TestConnUnicast4(t *testing.T) {
	lan := netns.NewLAN(t, netns.Options{})
	a := lan.AddHost("a", "192.0.2.11/24")
	b := lan.AddHost("b", "192.0.2.12/24", "192.0.2.22/24")
	c := lan.AddHost("c", "192.0.2.13/24")
	d := lan.AddHost("d", "192.0.2.14/24")

	bSrc := netip.MustParseAddr("192.0.2.22") // B's second address: Source is honoured
	ua := listen(t, a, netio.ConnOptions{Family: 4, Interface: "eth0", Unicast: true, Peers: []netip.Addr{bSrc}})
	ub := listen(t, b, netio.ConnOptions{Family: 4, Interface: "eth0", Unicast: true, Source: bSrc, Peers: []netip.Addr{a.Addr4(), d.Addr4()}})
	mb := listen(t, b, netio.ConnOptions{Family: 4, Interface: "eth0"}) // joins 224.0.0.18 on B's eth0
	md := listen(t, d, netio.ConnOptions{Family: 4, Interface: "eth0"})

	// D (a peer of ub) multicasts: mb gets it, ub must not.
	if err := md.Send(vrrpLike(1), netio.Group4()); err != nil {
		t.Fatal(err)
	}
	if p := recv(t, mb); p.Src != d.Addr4() {
		t.Fatalf("multicast conn got a packet from %s, want %s", p.Src, d.Addr4())
	}

	// C (no peer) sends unicast to B: dropped and counted.
	got := make(chan netio.Packet, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
		defer cancel()
		p, err := ub.Recv(ctx)
		if err != nil {
			t.Errorf("unicast Recv: %v", err)
		}
		got <- p
	}()
	err := c.Do(func() error {
		pc, err := net.ListenPacket("ip4:112", "0.0.0.0")
		if err != nil {
			return err
		}
		defer pc.Close()
		_, err = pc.WriteTo(vrrpLike(2), &net.IPAddr{IP: bSrc.AsSlice()})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitFor)
	for ub.Filtered() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := ub.Filtered(); n != 1 {
		select {
		case p := <-got:
			t.Fatalf("the unicast conn returned a packet %s -> %s before any peer sent (want D's multicast unseen and C's packet dropped)", p.Src, p.Dst)
		default:
		}
		t.Fatalf("Filtered() = %d after a packet from a non-peer, want 1", n)
	}

	// A sends to its peer.
	msg := vrrpLike(3, netip.MustParseAddr("192.0.2.100"))
	if dsts := ua.Destinations(); !slices.Equal(dsts, []netip.Addr{bSrc}) {
		t.Fatalf("Destinations() = %v, want [%s]", dsts, bSrc)
	}
	if err := ua.Send(msg, bSrc); err != nil {
		t.Fatal(err)
	}
	p := <-got
	if p.Src != a.Addr4() || p.Dst != bSrc || p.TTL != 255 || !bytes.Equal(p.Payload, msg) {
		t.Errorf("B got %+v; want %s -> %s TTL 255 payload %x (the first packet must not be D's multicast or C's)", p, a.Addr4(), bSrc, msg)
	}

	// And back, from the configured source.
	if err := ub.Send(msg, a.Addr4()); err != nil {
		t.Fatal(err)
	}
	if p := recv(t, ua); p.Src != bSrc || p.Dst != a.Addr4() || p.TTL != 255 {
		t.Errorf("A got %s -> %s TTL %d; want %s -> %s TTL 255", p.Src, p.Dst, p.TTL, bSrc, a.Addr4())
	}
}

// TestConnIPv6LinkLocalAndChecksum: an IPv6 advert leaves from the
// link-local address with Hop Limit 255 to ff02::12, and the checksum the
// kernel wrote (IPV6_CHECKSUM=6) is the RFC 5798 §5.2.8 one, computed here
// independently over the RFC 8200 §8.1 pseudo-header. The receiving Conn
// gets it; a packet with a bad checksum is dropped by its kernel.
func TestConnIPv6LinkLocalAndChecksum(t *testing.T) {
	lan := netns.NewLAN(t, netns.Options{})
	a := lan.AddHost("a", "2001:db8::11/64")
	b := lan.AddHost("b", "2001:db8::12/64")
	c := lan.AddHost("c", "2001:db8::13/64")
	aLL, cLL := linkLocal(t, a, "eth0"), linkLocal(t, c, "eth0")

	ca := listen(t, a, netio.ConnOptions{Family: 6, Interface: "eth0"})
	if ca.Source() != aLL {
		t.Fatalf("Source() = %s, want the link-local %s", ca.Source(), aLL)
	}
	cb := listen(t, b, netio.ConnOptions{Family: 6, Interface: "eth0"})

	// The witness on B: a raw socket without IPV6_CHECKSUM, so the kernel
	// neither checks nor touches the checksum.
	var witness *ipv6.PacketConn
	err := b.Do(func() error {
		pc, err := net.ListenPacket("ip6:112", "::")
		if err != nil {
			return err
		}
		witness = ipv6.NewPacketConn(pc)
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		if err := witness.JoinGroup(ifi, &net.IPAddr{IP: netio.Group6().AsSlice()}); err != nil {
			return err
		}
		return witness.SetControlMessage(ipv6.FlagDst|ipv6.FlagHopLimit, true)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer witness.Close()

	msg := vrrpLike(5, netip.MustParseAddr("2001:db8::100"))
	if err := ca.Send(msg, netio.Group6()); err != nil {
		t.Fatal(err)
	}
	witness.SetReadDeadline(time.Now().Add(waitFor))
	buf := make([]byte, 1500)
	n, cm, src, err := witness.ReadFrom(buf)
	if err != nil {
		t.Fatalf("witness: %v", err)
	}
	wire := buf[:n]
	srcAddr, _ := netip.AddrFromSlice(src.(*net.IPAddr).IP)
	dstAddr, _ := netip.AddrFromSlice(cm.Dst)
	if srcAddr != aLL || dstAddr != netio.Group6() || cm.HopLimit != 255 {
		t.Errorf("witness: %s -> %s hop limit %d; want %s -> ff02::12 hop limit 255", srcAddr, dstAddr, cm.HopLimit, aLL)
	}
	if sum := ipv6Checksum(srcAddr, dstAddr, 112, wire); sum != 0xffff {
		t.Errorf("checksum field %#04x does not verify over the pseudo-header (sum %#04x, want 0xffff)", wire[6:8], sum)
	}
	if bytes.Equal(wire[6:8], msg[6:8]) {
		t.Errorf("checksum field still %x: the kernel did not fill it", wire[6:8])
	}
	if !bytes.Equal(wire[:6], msg[:6]) || !bytes.Equal(wire[8:], msg[8:]) {
		t.Errorf("payload changed beyond the checksum: sent %x, got %x", msg, wire)
	}

	p := recv(t, cb)
	if p.Src != aLL || p.Dst != netio.Group6() || p.TTL != 255 || !bytes.Equal(p.Payload, wire) || p.IfIndex != ifIndex(t, b, "eth0") {
		t.Errorf("B got %+v; want %s -> ff02::12 hop limit 255 payload %x", p, aLL, wire)
	}

	// C sends, without IPV6_CHECKSUM, first a packet with a bad checksum,
	// then one whose checksum it computes itself: B's Conn sees only the
	// second.
	bad := vrrpLike(66)
	good := vrrpLike(67)
	good[6], good[7] = 0, 0
	sum := ^ipv6Checksum(cLL, netio.Group6(), 112, good)
	good[6], good[7] = byte(sum>>8), byte(sum)
	err = c.Do(func() error {
		pc, err := net.ListenPacket("ip6:112", "::")
		if err != nil {
			return err
		}
		defer pc.Close()
		p := ipv6.NewPacketConn(pc)
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		if err := p.SetMulticastHopLimit(255); err != nil {
			return err
		}
		cm := &ipv6.ControlMessage{Src: cLL.AsSlice(), IfIndex: ifi.Index}
		for _, m := range [][]byte{bad, good} {
			if _, err := p.WriteTo(m, cm, &net.IPAddr{IP: netio.Group6().AsSlice()}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if p := recv(t, cb); p.Src != cLL || !bytes.Equal(p.Payload, good) {
		t.Errorf("B got %x from %s; want only the good-checksum packet %x from %s", p.Payload, p.Src, good, cLL)
	}
}

// TestConnUnicast6: unicast mode over IPv6 between link-local peers.
func TestConnUnicast6(t *testing.T) {
	lan := netns.NewLAN(t, netns.Options{})
	a := lan.AddHost("a", "2001:db8::11/64")
	b := lan.AddHost("b", "2001:db8::12/64")
	aLL, bLL := linkLocal(t, a, "eth0"), linkLocal(t, b, "eth0")
	ua := listen(t, a, netio.ConnOptions{Family: 6, Interface: "eth0", Unicast: true, Peers: []netip.Addr{bLL}})
	ub := listen(t, b, netio.ConnOptions{Family: 6, Interface: "eth0", Unicast: true, Peers: []netip.Addr{aLL}})
	msg := vrrpLike(8)
	if err := ua.Send(msg, bLL); err != nil {
		t.Fatal(err)
	}
	p := recv(t, ub)
	if p.Src != aLL || p.Dst != bLL || p.TTL != 255 {
		t.Errorf("B got %s -> %s hop limit %d; want %s -> %s hop limit 255", p.Src, p.Dst, p.TTL, aLL, bLL)
	}
	if sum := ipv6Checksum(p.Src, p.Dst, 112, p.Payload); sum != 0xffff {
		t.Errorf("unicast checksum does not verify (sum %#04x)", sum)
	}
}

// TestConnBindToDevice: a host on two LANs with a Conn on each interface;
// each Conn sees only its own LAN's adverts.
func TestConnBindToDevice(t *testing.T) {
	lan1 := netns.NewLAN(t, netns.Options{})
	lan2 := netns.NewLAN(t, netns.Options{})
	a := lan1.AddHost("a", "192.0.2.11/24")
	c := lan1.AddHost("c", "192.0.2.13/24")
	lan2.Attach(c, "198.51.100.13/24") // eth1
	d := lan2.AddHost("d", "198.51.100.14/24")

	c0 := listen(t, c, netio.ConnOptions{Family: 4, Interface: "eth0"})
	c1 := listen(t, c, netio.ConnOptions{Family: 4, Interface: "eth1"})
	if c1.Source() != netip.MustParseAddr("198.51.100.13") {
		t.Errorf("eth1 Source() = %s, want 198.51.100.13", c1.Source())
	}
	ca := listen(t, a, netio.ConnOptions{Family: 4, Interface: "eth0"})
	cd := listen(t, d, netio.ConnOptions{Family: 4, Interface: "eth0"})

	if err := ca.Send(vrrpLike(1), netio.Group4()); err != nil {
		t.Fatal(err)
	}
	if p := recv(t, c0); p.Src != a.Addr4() || p.IfIndex != ifIndex(t, c, "eth0") {
		t.Errorf("eth0 conn got %s on ifindex %d; want %s on eth0", p.Src, p.IfIndex, a.Addr4())
	}
	if err := cd.Send(vrrpLike(2), netio.Group4()); err != nil {
		t.Fatal(err)
	}
	// If eth1's Conn had seen A's advert, it would come first.
	if p := recv(t, c1); p.Src != d.Addr4() || p.IfIndex != ifIndex(t, c, "eth1") {
		t.Errorf("eth1 conn got %s on ifindex %d; want only %s on eth1", p.Src, p.IfIndex, d.Addr4())
	}
	expectNothing(t, c0, "eth0 conn must not see LAN 2's advert")
}

// TestConnLifetime: Recv ends with its context and leaves the Conn usable;
// the Listen context closes the Conn; Close is idempotent.
func TestConnLifetime(t *testing.T) {
	lan := netns.NewLAN(t, netns.Options{})
	a := lan.AddHost("a", "192.0.2.11/24")
	b := lan.AddHost("b", "192.0.2.12/24")
	ca := listen(t, a, netio.ConnOptions{Family: 4, Interface: "eth0"})

	lctx, lcancel := context.WithCancel(context.Background())
	defer lcancel()
	var cb *netio.RawConn
	if err := b.Do(func() (err error) {
		cb, err = netio.Listen(lctx, netio.ConnOptions{Family: 4, Interface: "eth0"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer cb.Close()

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := cb.Recv(ctx)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Recv after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Recv did not return after its context was cancelled")
	}

	// Still usable: the deadline used to interrupt it was cleared.
	if err := ca.Send(vrrpLike(4), netio.Group4()); err != nil {
		t.Fatal(err)
	}
	if p := recv(t, cb); p.Src != a.Addr4() {
		t.Errorf("after a cancelled Recv: got a packet from %s, want %s", p.Src, a.Addr4())
	}

	// Ending the Listen context closes the Conn.
	go func() {
		_, err := cb.Recv(context.Background())
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	lcancel()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Recv after the Listen context ended: %v, want net.ErrClosed", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Recv did not return after the Listen context ended")
	}
	if err := cb.Send(vrrpLike(4), netio.Group4()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Send on a closed Conn: %v, want net.ErrClosed", err)
	}
	if err := cb.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestListenErrors: bad options are refused before any socket is made.
func TestListenErrors(t *testing.T) {
	ll := netip.MustParseAddr("fe80::1")
	for _, tc := range []struct {
		name string
		opts netio.ConnOptions
	}{
		{"family", netio.ConnOptions{Family: 5, Interface: "eth0"}},
		{"no interface", netio.ConnOptions{Family: 4}},
		{"long interface", netio.ConnOptions{Family: 4, Interface: "a-very-long-interface-name"}},
		{"v6 source on v4", netio.ConnOptions{Family: 4, Interface: "eth0", Source: ll}},
		{"global v6 source in multicast mode", netio.ConnOptions{Family: 6, Interface: "eth0", Source: netip.MustParseAddr("2001:db8::1")}},
		{"multicast source", netio.ConnOptions{Family: 4, Interface: "eth0", Source: netio.Group4()}},
		{"unicast without peers", netio.ConnOptions{Family: 4, Interface: "eth0", Unicast: true}},
		{"peers without unicast", netio.ConnOptions{Family: 4, Interface: "eth0", Peers: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}},
		{"peer of the wrong family", netio.ConnOptions{Family: 4, Interface: "eth0", Unicast: true, Peers: []netip.Addr{ll}}},
		{"multicast peer", netio.ConnOptions{Family: 6, Interface: "eth0", Unicast: true, Peers: []netip.Addr{netio.Group6()}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := netio.Listen(context.Background(), tc.opts)
			if err == nil {
				c.Close()
				t.Fatalf("Listen(%+v) succeeded, want an error", tc.opts)
			}
		})
	}
}
