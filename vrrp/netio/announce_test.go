package netio_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"

	"github.com/fulcrum-lb/fulcrum/lab/netns"
	"github.com/fulcrum-lb/fulcrum/lab/require"
	"github.com/fulcrum-lb/fulcrum/vrrp/netio"
	"github.com/fulcrum-lb/fulcrum/vrrp/netio/netiotest"
)

// capture records the Ethernet frames of one ethertype that reach h's
// interface, on an AF_PACKET socket of its own, until the test ends.
type capture struct {
	mu     sync.Mutex
	frames []ethernet.Frame
}

func startCapture(t *testing.T, h *netns.Host, iface string, ethertype ethernet.EtherType) *capture {
	t.Helper()
	var conn *packet.Conn
	err := h.Do(func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		conn, err = packet.Listen(ifi, packet.Raw, int(ethertype), nil)
		return err
	})
	if err != nil {
		t.Fatalf("%s: capture: %v", h, err)
	}
	c := &capture{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			var f ethernet.Frame
			if f.UnmarshalBinary(buf[:n]) == nil {
				c.mu.Lock()
				c.frames = append(c.frames, f)
				c.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return c
}

// from returns the captured frames whose Ethernet source is mac.
func (c *capture) from(mac net.HardwareAddr) []ethernet.Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []ethernet.Frame
	for _, f := range c.frames {
		if bytes.Equal(f.Source, mac) {
			out = append(out, f)
		}
	}
	return out
}

// newAnnouncer opens an announcer inside h, closed by the test's cleanup.
func newAnnouncer(t *testing.T, h *netns.Host, opts netio.AnnouncerOptions) *netio.RawAnnouncer {
	t.Helper()
	var a *netio.RawAnnouncer
	err := h.Do(func() (err error) {
		a, err = netio.NewAnnouncer(context.Background(), opts)
		return err
	})
	if err != nil {
		t.Fatalf("%s: NewAnnouncer: %v", h, err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// vipManager returns a VIPManager for h's eth0.
func vipManager(t *testing.T, h *netns.Host) *netio.VIPManager {
	t.Helper()
	nl, _ := handleIn(t, h)
	m, err := netio.NewVIPManager(nl, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// neighMAC reads h's neighbour entry for ip on eth0 through netlink (nil if
// none).
func neighMAC(t *testing.T, h *netns.Host, ip netip.Addr) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	err := h.Netlink(func(nl *netlink.Handle) error {
		l, err := nl.LinkByName("eth0")
		if err != nil {
			return err
		}
		family := netlink.FAMILY_V4
		if ip.Is6() {
			family = netlink.FAMILY_V6
		}
		neighs, err := nl.NeighList(l.Attrs().Index, family)
		if err != nil {
			return err
		}
		for _, n := range neighs {
			if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == ip && n.State&(netlink.NUD_INCOMPLETE|netlink.NUD_FAILED) == 0 {
				mac = n.HardwareAddr
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: neighbours: %v", h, err)
	}
	return mac
}

// waitNeigh waits until h's entry for ip has mac, and checks `ip neigh` agrees.
func waitNeigh(t *testing.T, h *netns.Host, ip netip.Addr, mac net.HardwareAddr, what string) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !bytes.Equal(neighMAC(t, h, ip), mac) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s's neighbour entry for %s is %v, want %s", what, h, ip, neighMAC(t, h, ip), mac)
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.Binary(t, "ip")
	out, err := h.Command(ctxT(t, waitFor), "ip", "neigh", "show", ip.String(), "dev", "eth0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "lladdr "+mac.String()) {
		t.Fatalf("%s: ip neigh on %s says %q (%v), want lladdr %s", what, h, out, err, mac)
	}
}

// expectNeigh checks that h's entry for ip is still mac.
func expectNeigh(t *testing.T, h *netns.Host, ip netip.Addr, mac net.HardwareAddr, what string) {
	t.Helper()
	if got := neighMAC(t, h, ip); !bytes.Equal(got, mac) {
		t.Fatalf("%s: %s's neighbour entry for %s is %v, want still %s", what, h, ip, got, mac)
	}
}

// checkGARPs asserts that the capture holds, from mac, a gratuitous ARP
// request and a gratuitous ARP reply for vip, both broadcast.
func checkGARPs(t *testing.T, c *capture, mac net.HardwareAddr, vip netip.Addr) {
	t.Helper()
	var req, rep int
	deadline := time.Now().Add(waitFor)
	for (req == 0 || rep == 0) && time.Now().Before(deadline) {
		req, rep = 0, 0
		for _, f := range c.from(mac) {
			var p arp.Packet
			if f.EtherType != ethernet.EtherTypeARP || p.UnmarshalBinary(f.Payload) != nil {
				continue
			}
			if !bytes.Equal(f.Destination, ethernet.Broadcast) || !bytes.Equal(p.SenderHardwareAddr, mac) || p.SenderIP != vip || p.TargetIP != vip {
				t.Errorf("unexpected ARP frame from %s: %s -> %s %+v", mac, f.Source, f.Destination, p)
				continue
			}
			switch p.Operation {
			case arp.OperationRequest:
				req++
				if !bytes.Equal(p.TargetHardwareAddr, net.HardwareAddr{0, 0, 0, 0, 0, 0}) {
					t.Errorf("gratuitous request: target hardware address %s, want zero", p.TargetHardwareAddr)
				}
			case arp.OperationReply:
				rep++
				if !bytes.Equal(p.TargetHardwareAddr, mac) {
					t.Errorf("gratuitous reply: target hardware address %s, want %s", p.TargetHardwareAddr, mac)
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if req != 1 || rep != 1 {
		t.Errorf("captured %d gratuitous ARP requests and %d replies from %s for %s, want 1 and 1", req, rep, mac, vip)
	}
}

// TestAnnounceARPTakeover: lb1 and lb2 have no IPv4 address but the VIP. A
// client with arp_accept learns the VIP from lb1's gratuitous ARP; a client
// without it, which has talked to the VIP, keeps lb1's MAC until lb2
// takes the VIP over and announces it, then both switch to lb2's MAC.
func TestAnnounceARPTakeover(t *testing.T) {
	lan := netns.NewLAN(t, netns.Options{})
	lb1 := lan.AddHost("lb1", "2001:db8::11/64")
	lb2 := lan.AddHost("lb2", "2001:db8::12/64")
	c1 := lan.AddHost("c1", "192.0.2.101/24")
	c2 := lan.AddHost("c2", "192.0.2.102/24")
	for _, key := range []string{"net.ipv4.conf.all.arp_accept", "net.ipv4.conf.eth0.arp_accept"} {
		if err := c1.SetSysctl(key, "1"); err != nil {
			t.Fatal(err)
		}
	}
	vip := netio.VIP{Prefix: netip.MustParsePrefix("192.0.2.50/24")}
	ann1 := newAnnouncer(t, lb1, netio.AnnouncerOptions{Interface: "eth0"}) // no IPv4 on eth0 yet
	ann2 := newAnnouncer(t, lb2, netio.AnnouncerOptions{Interface: "eth0"})
	m1, m2 := vipManager(t, lb1), vipManager(t, lb2)
	cap1 := startCapture(t, c1, "eth0", ethernet.EtherTypeARP)

	// lb1 is Master; c2 talks to the VIP, which gives it an ARP entry.
	if err := m1.Add(vip); err != nil {
		t.Fatal(err)
	}
	added := time.Now()
	if err := c2.Ping(ctxT(t, waitFor), vip.Addr()); err != nil {
		t.Fatalf("c2 ping %s: %v", vip.Addr(), err)
	}
	expectNeigh(t, c2, vip.Addr(), lb1.MAC, "after ping")
	if got := neighMAC(t, c1, vip.Addr()); got != nil {
		t.Fatalf("c1 has an entry for %s before any announcement: %s", vip.Addr(), got)
	}

	before := time.Now()
	if err := ann1.Announce(ctxT(t, waitFor), []netip.Addr{vip.Addr()}); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	st := ann1.Stats()
	if st.Rounds != 1 || st.Frames != 2 || st.Errors != 0 {
		t.Errorf("Stats() = %+v, want 1 round, 2 frames, no error", st)
	}
	if st.RoundFirstFrame.Before(before) || st.RoundFirstFrame.After(after) || !st.FirstFrame.Equal(st.RoundFirstFrame) {
		t.Errorf("first frame at %v, want within the Announce call [%v, %v]", st.RoundFirstFrame, before, after)
	}
	t.Logf("VIP added to first gratuitous ARP (with a ping between): %v", st.RoundFirstFrame.Sub(added))
	waitNeigh(t, c1, vip.Addr(), lb1.MAC, "lb1's GARP with arp_accept=1")
	checkGARPs(t, cap1, lb1.MAC, vip.Addr())

	// Takeover: lb1 releases the VIP, lb2 installs it. Nothing changes on the
	// clients until lb2 announces.
	if err := m1.Remove(vip); err != nil {
		t.Fatal(err)
	}
	if err := m2.Add(vip); err != nil {
		t.Fatal(err)
	}
	time.Sleep(quiet)
	expectNeigh(t, c1, vip.Addr(), lb1.MAC, "takeover before announcing")
	expectNeigh(t, c2, vip.Addr(), lb1.MAC, "takeover before announcing")
	if err := ann2.Announce(ctxT(t, waitFor), []netip.Addr{vip.Addr()}); err != nil {
		t.Fatal(err)
	}
	waitNeigh(t, c1, vip.Addr(), lb2.MAC, "lb2's GARP, client with arp_accept=1")
	waitNeigh(t, c2, vip.Addr(), lb2.MAC, "lb2's GARP, client with the default arp_accept=0")
	checkGARPs(t, cap1, lb2.MAC, vip.Addr())
	if err := c2.Ping(ctxT(t, waitFor), vip.Addr()); err != nil {
		t.Errorf("c2 ping %s after the takeover: %v", vip.Addr(), err)
	}
}

// TestAnnounceNATakeover: IPv6 only. A client that talked to the VIP on lb1
// switches to lb2's MAC when lb2 takes the VIP over and sends an unsolicited
// Neighbor Advertisement; the captured NA has the RFC 4861 §7.2.6 form.
func TestAnnounceNATakeover(t *testing.T) {
	lan := netns.NewLAN(t, netns.Options{})
	lb1 := lan.AddHost("lb1", "2001:db8::11/64")
	lb2 := lan.AddHost("lb2", "2001:db8::12/64")
	c := lan.AddHost("c", "2001:db8::100/64")
	vip := netio.VIP{Prefix: netip.MustParsePrefix("2001:db8::50/64")}
	m1, m2 := vipManager(t, lb1), vipManager(t, lb2)
	ann2 := newAnnouncer(t, lb2, netio.AnnouncerOptions{Interface: "eth0"})
	capc := startCapture(t, c, "eth0", ethernet.EtherTypeIPv6)

	if err := m1.Add(vip); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctxT(t, waitFor), vip.Addr()); err != nil {
		t.Fatalf("ping %s: %v", vip.Addr(), err)
	}
	expectNeigh(t, c, vip.Addr(), lb1.MAC, "after ping")

	if err := m1.Remove(vip); err != nil {
		t.Fatal(err)
	}
	if err := m2.Add(vip); err != nil {
		t.Fatal(err)
	}
	time.Sleep(quiet)
	expectNeigh(t, c, vip.Addr(), lb1.MAC, "takeover before announcing")
	if err := ann2.Announce(ctxT(t, waitFor), []netip.Addr{vip.Addr()}); err != nil {
		t.Fatal(err)
	}
	waitNeigh(t, c, vip.Addr(), lb2.MAC, "lb2's unsolicited NA")
	if st := ann2.Stats(); st.Frames != 1 || st.Errors != 0 {
		t.Errorf("Stats() = %+v, want 1 frame", st)
	}

	// The frame as the client saw it.
	var nas int
	for _, f := range capc.from(lb2.MAC) {
		ip := f.Payload
		if len(ip) < 40 || ip[6] != 58 {
			continue
		}
		end := 40 + (int(ip[4])<<8 | int(ip[5]))
		if end > len(ip) {
			continue
		}
		icmp := ip[40:end]
		m, err := ndp.ParseMessage(icmp)
		if err != nil {
			continue
		}
		na, ok := m.(*ndp.NeighborAdvertisement)
		if !ok || na.TargetAddress != vip.Addr() {
			continue
		}
		nas++
		src, _ := netip.AddrFromSlice(ip[8:24])
		dst, _ := netip.AddrFromSlice(ip[24:40])
		if !bytes.Equal(f.Destination, net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}) || ip[7] != 255 || src != vip.Addr() || dst != netip.MustParseAddr("ff02::1") {
			t.Errorf("NA frame to %s, hop limit %d, %s -> %s; want 33:33:00:00:00:01, 255, %s -> ff02::1", f.Destination, ip[7], src, dst, vip.Addr())
		}
		if !na.Override || na.Solicited || na.Router {
			t.Errorf("NA flags O=%v S=%v R=%v, want O set, S and R clear", na.Override, na.Solicited, na.Router)
		}
		var tlla net.HardwareAddr
		for _, o := range na.Options {
			if l, ok := o.(*ndp.LinkLayerAddress); ok && l.Direction == ndp.Target {
				tlla = l.Addr
			}
		}
		if !bytes.Equal(tlla, lb2.MAC) {
			t.Errorf("NA target link-layer address %s, want %s", tlla, lb2.MAC)
		}
		if sum := ipv6Checksum(src, dst, 58, icmp); sum != 0xffff {
			t.Errorf("NA checksum does not verify (sum %#04x)", sum)
		}
	}
	if nas != 1 {
		t.Errorf("captured %d NAs for %s from %s, want 1", nas, vip.Addr(), lb2.MAC)
	}
}

// TestAnnounceMixedAndErrors: one round announces IPv4 and IPv6 VIPs
// together; a bad VIP fails alone; a cancelled context stops the round.
func TestAnnounceMixedAndErrors(t *testing.T) {
	lan := netns.NewLAN(t, netns.Options{})
	lb := lan.AddHost("lb") // no address at all
	c := lan.AddHost("c", "192.0.2.101/24")
	ann := newAnnouncer(t, lb, netio.AnnouncerOptions{Interface: "eth0"})
	if !bytes.Equal(ann.HardwareAddr(), lb.MAC) {
		t.Errorf("HardwareAddr() = %s, want %s", ann.HardwareAddr(), lb.MAC)
	}
	capArp := startCapture(t, c, "eth0", ethernet.EtherTypeARP)
	v4, v6 := netip.MustParseAddr("192.0.2.50"), netip.MustParseAddr("2001:db8::50")
	err := ann.Announce(ctxT(t, waitFor), []netip.Addr{v4, {}, v6})
	if err == nil {
		t.Error("Announce with an invalid address returned no error")
	}
	if st := ann.Stats(); st.Frames != 3 {
		t.Errorf("Stats() = %+v, want 3 frames (2 ARP + 1 NA) despite the bad VIP", st)
	}
	checkGARPs(t, capArp, lb.MAC, v4)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ann.Announce(ctx, []netip.Addr{v4}); !errors.Is(err, context.Canceled) {
		t.Errorf("Announce with a cancelled context: %v, want context.Canceled", err)
	}

	// A custom hardware address is what gets announced.
	vmac := net.HardwareAddr{0x00, 0x00, 0x5e, 0x00, 0x01, 0x07} // VRRP virtual MAC of VRID 7 (RFC 5798 §7.3)
	annV := newAnnouncer(t, lb, netio.AnnouncerOptions{Interface: "eth0", HardwareAddr: vmac})
	if err := annV.Announce(ctxT(t, waitFor), []netip.Addr{v4}); err != nil {
		t.Fatal(err)
	}
	checkGARPs(t, capArp, vmac, v4)
}

func TestNewAnnouncerErrors(t *testing.T) {
	lan := netns.NewLAN(t, netns.Options{})
	h := lan.AddHost("h", "192.0.2.1/24")
	err := h.Do(func() error {
		if _, err := netio.NewAnnouncer(context.Background(), netio.AnnouncerOptions{Interface: "nosuch0"}); err == nil {
			return errors.New("NewAnnouncer on a missing interface succeeded")
		}
		if _, err := netio.NewAnnouncer(context.Background(), netio.AnnouncerOptions{Interface: "lo"}); !errors.Is(err, netio.ErrNoLinkLayer) {
			return errors.New("NewAnnouncer on lo: want ErrNoLinkLayer, got " + errString(err))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

// TestBurst paces rounds with the injected clock, keeps going after a
// failed round, and stops when its context ends.
func TestBurst(t *testing.T) {
	vips := []netip.Addr{netip.MustParseAddr("192.0.2.50")}
	var waits []time.Duration
	instant := func(d time.Duration) <-chan time.Time {
		waits = append(waits, d)
		ch := make(chan time.Time, 1)
		ch <- time.Time{}
		return ch
	}

	fa := netiotest.NewFakeAnnouncer()
	if err := netio.Burst(context.Background(), fa, vips, netio.BurstOptions{Count: 3, Interval: 100 * time.Millisecond, After: instant}); err != nil {
		t.Fatal(err)
	}
	if n := len(fa.Rounds()); n != 3 {
		t.Errorf("%d rounds, want 3", n)
	}
	if len(waits) != 2 || waits[0] != 100*time.Millisecond || waits[1] != 100*time.Millisecond {
		t.Errorf("waits %v, want two of 100ms", waits)
	}

	// Count 0 is one round; interval 0 never waits.
	waits = nil
	fa = netiotest.NewFakeAnnouncer()
	if err := netio.Burst(context.Background(), fa, vips, netio.BurstOptions{After: instant}); err != nil || len(fa.Rounds()) != 1 || len(waits) != 0 {
		t.Errorf("default burst: err %v, %d rounds, waits %v; want one round, no wait", err, len(fa.Rounds()), waits)
	}

	// Failed rounds do not stop the burst; their errors are joined.
	boom := errors.New("boom")
	fa = netiotest.NewFakeAnnouncer()
	fa.SetError(boom)
	err := netio.Burst(context.Background(), fa, vips, netio.BurstOptions{Count: 2, After: instant})
	if !errors.Is(err, boom) || len(fa.Rounds()) != 2 {
		t.Errorf("failing burst: err %v after %d rounds; want boom after 2", err, len(fa.Rounds()))
	}

	// A context that ends while waiting stops the burst.
	fa = netiotest.NewFakeAnnouncer()
	ctx, cancel := context.WithCancel(context.Background())
	never := func(time.Duration) <-chan time.Time { cancel(); return nil }
	err = netio.Burst(ctx, fa, vips, netio.BurstOptions{Count: 5, Interval: time.Second, After: never})
	if !errors.Is(err, context.Canceled) || len(fa.Rounds()) != 1 {
		t.Errorf("cancelled burst: err %v after %d rounds; want context.Canceled after 1", err, len(fa.Rounds()))
	}

	// Real time, briefly: the rounds are spaced by Interval.
	fa = netiotest.NewFakeAnnouncer()
	start := time.Now()
	if err := netio.Burst(context.Background(), fa, vips, netio.BurstOptions{Count: 3, Interval: 20 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	r := fa.Rounds()
	if len(r) != 3 {
		t.Fatalf("real-time burst: %d rounds, want 3", len(r))
	}
	if d := r[2].At.Sub(start); d < 40*time.Millisecond {
		t.Errorf("real-time burst: last round after %v, want >= 2 intervals (40ms)", d)
	}
}
