package keepalived_test

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/fulcrum-lb/fulcrum/lab/keepalived"
	"github.com/fulcrum-lb/fulcrum/lab/netns"
	"github.com/fulcrum-lb/fulcrum/lab/require"
)

const vi = "VI_1"

var (
	vip    = netip.MustParsePrefix("192.0.2.100/24")
	vipV6  = netip.MustParsePrefix("2001:db8::100/64")
	fast   = 100 * time.Millisecond
	settle = 10 * time.Second // start-up to a stable MASTER, with a wide margin
)

func needKeepalived(t *testing.T) {
	t.Helper()
	require.Root(t)
	require.Kernel(t, require.Bridge)
	require.Binary(t, "ip")
	require.Binary(t, "keepalived")
}

// v3 is a VRRPv3 multicast node with 100ms adverts holding vip on eth0.
func v3(prio int) keepalived.Config {
	return keepalived.Config{
		Version: 3,
		Instances: []keepalived.Instance{{
			Name: vi, Interface: "eth0", VRID: 51, Priority: prio, AdvertInt: fast,
			VIPs: []keepalived.VIP{{Addr: vip, Dev: "eth0"}},
		}},
	}
}

// converge waits until k1 is MASTER with the VIP and k2 BACKUP without it, and checks that
// nothing changes for 10 advert intervals: exactly one master.
func converge(t *testing.T, k1, k2 *keepalived.Node, interval time.Duration) keepalived.Notice {
	t.Helper()
	m := k1.WaitState(t, vi, keepalived.Master, settle)
	k2.WaitState(t, vi, keepalived.Backup, settle)
	keepalived.WaitVIP(t, k1.Host, vip.Addr(), true, 2*time.Second)
	keepalived.WaitVIP(t, k2.Host, vip.Addr(), false, 2*time.Second)
	n1, n2 := len(k1.Notices()), len(k2.Notices())
	time.Sleep(10 * interval)
	if s1, s2 := k1.State(vi), k2.State(vi); s1 != keepalived.Master || s2 != keepalived.Backup {
		t.Fatalf("after 10 adverts: %s is %s, %s is %s", k1.Host, s1, k2.Host, s2)
	}
	if len(k1.Notices()) != n1 || len(k2.Notices()) != n2 {
		t.Fatalf("states flapped: %s %v, %s %v", k1.Host, k1.Notices(), k2.Host, k2.Notices())
	}
	if !keepalived.HasVIP(k1.Host, vip.Addr()) || keepalived.HasVIP(k2.Host, vip.Addr()) {
		t.Fatalf("VIP not held by the master alone")
	}
	return m
}

// TestV3MulticastFailover: two keepalived nodes on a bridge, VRRPv3 multicast with 100ms
// adverts; one MASTER holds the VIP; after a SIGKILL of the master the backup takes over.
func TestV3MulticastFailover(t *testing.T) {
	needKeepalived(t)
	lan := netns.NewLAN(t, netns.Options{})
	lb1 := lan.AddHost("lb1", "192.0.2.11/24")
	lb2 := lan.AddHost("lb2", "192.0.2.12/24")
	k1 := keepalived.Start(t, lb1, v3(150))
	k2 := keepalived.Start(t, lb2, v3(100))
	m := converge(t, k1, k2, fast)
	t.Logf("measured: %s MASTER %v after Start (VRRPv3, advert_int 100ms, priority 150)", lb1, m.Time.Sub(k1.Started).Round(time.Millisecond))

	killed := time.Now()
	if err := k1.Kill(); err != nil {
		t.Fatal(err)
	}
	m2 := k2.WaitState(t, vi, keepalived.Master, 5*time.Second)
	vipAt := keepalived.WaitVIP(t, lb2, vip.Addr(), true, 2*time.Second)
	takeover := m2.Time.Sub(killed)
	t.Logf("measured: takeover after SIGKILL: %v to %s's MASTER notice, %v until it held the VIP (master down interval 3*100ms + skew %v)",
		takeover.Round(time.Millisecond), lb2, vipAt.Sub(killed).Round(time.Millisecond), skew3(100, fast))
	if takeover > 3*time.Second {
		t.Errorf("takeover took %v", takeover)
	}
	// A crashed keepalived leaves its addresses behind: nothing removes them.
	t.Logf("after the crash %s still holds the VIP: %v", lb1, keepalived.HasVIP(lb1, vip.Addr()))
}

func skew3(prio int, interval time.Duration) time.Duration {
	return time.Duration(256-prio) * interval / 256
}

// TestV2UnicastPassFailover: VRRPv2 with PASS authentication and unicast peers.
func TestV2UnicastPassFailover(t *testing.T) {
	needKeepalived(t)
	lan := netns.NewLAN(t, netns.Options{})
	lb1 := lan.AddHost("lb1", "192.0.2.11/24")
	lb2 := lan.AddHost("lb2", "192.0.2.12/24")
	cfg := func(prio int, self, peer *netns.Host) keepalived.Config {
		return keepalived.Config{
			Version: 2,
			Instances: []keepalived.Instance{{
				Name: vi, Interface: "eth0", VRID: 52, Priority: prio, AdvertInt: time.Second,
				UnicastSrc: self.Addr4(), UnicastPeers: []netip.Addr{peer.Addr4()},
				AuthPass: "fulcrum1",
				VIPs:     []keepalived.VIP{{Addr: vip, Dev: "eth0"}},
			}},
		}
	}
	k1 := keepalived.Start(t, lb1, cfg(150, lb1, lb2))
	k2 := keepalived.Start(t, lb2, cfg(100, lb2, lb1))
	m := converge(t, k1, k2, 200*time.Millisecond)
	t.Logf("measured: %s MASTER %v after Start (VRRPv2 unicast, advert_int 1s)", lb1, m.Time.Sub(k1.Started).Round(time.Millisecond))

	// The unicast advert, as lb2 receives it.
	a := keepalived.Capture(t, lb2, false, 5*time.Second)
	t.Logf("unicast advert: %s -> %s ttl %d tos %#x df %v: % x", a.Src, a.Dst, a.TTL, a.TOS, a.DontFragment, a.Payload)
	if a.Src != lb1.Addr4() || a.Dst != lb2.Addr4() || a.TTL != 255 {
		t.Errorf("unicast advert %s -> %s ttl %d, want %s -> %s ttl 255", a.Src, a.Dst, a.TTL, lb1.Addr4(), lb2.Addr4())
	}
	if len(a.Payload) < 8 || a.Payload[0] != 0x21 || a.Payload[1] != 52 || a.Payload[2] != 150 || a.Payload[4] != 1 ||
		!strings.HasSuffix(string(a.Payload), "fulcrum1") {
		t.Errorf("not a VRRPv2 advert of VRID 52, priority 150, auth PASS fulcrum1: % x", a.Payload)
	}

	killed := time.Now()
	if err := k1.Kill(); err != nil {
		t.Fatal(err)
	}
	m2 := k2.WaitState(t, vi, keepalived.Master, 10*time.Second)
	keepalived.WaitVIP(t, lb2, vip.Addr(), true, 2*time.Second)
	t.Logf("measured: takeover after SIGKILL: %v (VRRPv2, master down interval 3s + skew %v)",
		m2.Time.Sub(killed).Round(time.Millisecond), time.Duration(256-100)*time.Second/256)
}

// TestClientSeesGARPAfterTakeover: a client that reached the VIP through the master learns the
// new master's MAC from its gratuitous ARPs after a takeover, without asking.
func TestClientSeesGARPAfterTakeover(t *testing.T) {
	needKeepalived(t)
	lan := netns.NewLAN(t, netns.Options{})
	lb1 := lan.AddHost("lb1", "192.0.2.11/24")
	lb2 := lan.AddHost("lb2", "192.0.2.12/24")
	client := lan.AddHost("client", "192.0.2.50/24")
	k1 := keepalived.Start(t, lb1, v3(150))
	k2 := keepalived.Start(t, lb2, v3(100))
	converge(t, k1, k2, fast)

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := client.Ping(ctx, vip.Addr()); err != nil {
		t.Fatal(err)
	}
	if mac := neighbour(t, client, vip.Addr()); mac != lb1.MAC.String() {
		t.Fatalf("client: %s is at %q, want %s's %s", vip.Addr(), mac, lb1, lb1.MAC)
	}
	// Past the neighbour lock time (1s by default), so an ordinary ARP update would be taken
	// too; keepalived's are gratuitous and would override it anyway.
	time.Sleep(1100 * time.Millisecond)

	killed := time.Now()
	if err := k1.Kill(); err != nil {
		t.Fatal(err)
	}
	k2.WaitState(t, vi, keepalived.Master, 5*time.Second)
	deadline := time.Now().Add(3 * time.Second)
	for {
		mac := neighbour(t, client, vip.Addr())
		if mac == lb2.MAC.String() {
			t.Logf("measured: client's neighbour entry for %s moved to %s %v after the SIGKILL", vip.Addr(), lb2, time.Since(killed).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("client: %s still at %q 3s after the takeover, want %s's %s", vip.Addr(), mac, lb2, lb2.MAC)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// neighbour returns the MAC address in h's neighbour table for addr ("" if none).
func neighbour(t *testing.T, h *netns.Host, addr netip.Addr) string {
	t.Helper()
	var mac string
	err := h.Netlink(func(nl *netlink.Handle) error {
		l, err := nl.LinkByName(h.Iface)
		if err != nil {
			return err
		}
		ns, err := nl.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, n := range ns {
			if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == addr && n.HardwareAddr != nil {
				mac = n.HardwareAddr.String()
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return mac
}

// TestStopAndUpdate: a reload that raises the backup's priority makes it preempt; a graceful
// stop sends priority 0 so the other node takes over within its skew time, and the VIP goes.
func TestStopAndUpdate(t *testing.T) {
	needKeepalived(t)
	lan := netns.NewLAN(t, netns.Options{})
	lb1 := lan.AddHost("lb1", "192.0.2.11/24")
	lb2 := lan.AddHost("lb2", "192.0.2.12/24")
	k1 := keepalived.Start(t, lb1, v3(150))
	k2 := keepalived.Start(t, lb2, v3(100))
	converge(t, k1, k2, fast)

	reload := time.Now()
	if err := k2.Update(v3(200)); err != nil {
		t.Fatal(err)
	}
	m := k2.WaitState(t, vi, keepalived.Master, 5*time.Second)
	k1.WaitState(t, vi, keepalived.Backup, 5*time.Second)
	keepalived.WaitVIP(t, lb2, vip.Addr(), true, 2*time.Second)
	keepalived.WaitVIP(t, lb1, vip.Addr(), false, 2*time.Second)
	t.Logf("measured: preemption after a reload to priority 200: %v", m.Time.Sub(reload).Round(time.Millisecond))
	if got := k2.Config().Instances[0].Priority; got != 200 {
		t.Errorf("Config after Update has priority %d", got)
	}
	if err := k2.Update(keepalived.Config{Version: 5}); err == nil {
		t.Error("Update accepted an invalid configuration")
	}

	stopped := time.Now()
	if err := k2.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	m1 := k1.WaitState(t, vi, keepalived.Master, 5*time.Second)
	t.Logf("measured: takeover after SIGTERM (priority 0 advert): %v to %s's MASTER notice; stop took %v",
		m1.Time.Sub(stopped).Round(time.Millisecond), lb1, time.Since(stopped).Round(time.Millisecond))
	if got := k2.State(vi); got != keepalived.Stopped {
		t.Errorf("%s after Stop: state %q, want %s", lb2, got, keepalived.Stopped)
	}
	if keepalived.HasVIP(lb2, vip.Addr()) {
		t.Errorf("%s kept the VIP after a graceful stop", lb2)
	}
	if !strings.Contains(k2.Output(), "sent 0 priority") {
		t.Errorf("no priority-0 advert in the output:\n%s", k2.Output())
	}
	// keepalived removes its own pid files on a clean exit.
	for _, f := range []string{"keepalived.pid", "vrrp.pid"} {
		if _, err := os.Stat(filepath.Join(k2.Dir, f)); err == nil {
			t.Errorf("%s left behind after a clean stop", f)
		}
	}
}

// TestConfigTest: keepalived --config-test accepts what Render makes of every field, LVS
// virtual servers included.
func TestConfigTest(t *testing.T) {
	needKeepalived(t)
	h := netns.NewLAN(t, netns.Options{}).AddHost("kt", "192.0.2.11/24")
	netns.NewLAN(t, netns.Options{}).Attach(h, "198.51.100.11/24") // eth1
	g := keepalived.DefaultGARP()
	g.MasterDelay = 1
	cfg := keepalived.Config{
		RouterID: "kt", Version: 3, GARP: &g, SkipCheckAdvAddr: true,
		Instances: []keepalived.Instance{{
			Name: "VI_1", Interface: "eth0", VRID: 51, Priority: 150, AdvertInt: fast,
			PreemptDelay:    2 * time.Second,
			VIPs:            []keepalived.VIP{{Addr: vip, Dev: "eth0"}, {Addr: netip.MustParsePrefix("192.0.2.101/32"), Dev: "eth1"}},
			TrackInterfaces: []string{"eth1"}, GARP: &g,
		}, {
			Name: "VI_2", Interface: "eth0", State: "MASTER", VRID: 52, Version: 2, AdvertInt: time.Second,
			UnicastSrc: netip.MustParseAddr("192.0.2.11"), UnicastPeers: []netip.Addr{netip.MustParseAddr("192.0.2.12")},
			AuthPass: "fulcrum1", VIPs: []keepalived.VIP{{Addr: netip.MustParsePrefix("192.0.2.102/24")}},
		}, {
			Name: "VI_6", Interface: "eth0", VRID: 53, AdvertInt: fast,
			VIPs: []keepalived.VIP{{Addr: vipV6}},
		}, {
			Name: "VI_7", Interface: "eth1", VRID: 54, NoPreempt: true,
			VIPs: []keepalived.VIP{{Addr: netip.MustParsePrefix("198.51.100.100/24")}},
		}},
		VirtualServers: []keepalived.VS{{
			Addr: netip.MustParseAddrPort("192.0.2.100:80"), DelayLoop: time.Second,
			Reals: []keepalived.Real{{Addr: netip.MustParseAddrPort("198.51.100.21:8080"), Weight: 1,
				Check: &keepalived.TCPCheck{ConnectTimeout: time.Second, Retry: 1, DelayBeforeRetry: time.Second, Warmup: keepalived.NoWarmup}}},
		}},
	}
	text, err := cfg.Render()
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "keepalived.conf")
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := h.Command(t.Context(), "keepalived", "--config-test", "--use-file="+conf).CombinedOutput()
	if err != nil {
		t.Fatalf("keepalived --config-test: %v\n%s\n%s", err, out, text)
	}
	// And it does notice a mistake.
	bad := strings.Replace(text, "virtual_router_id 51", "virtual_router_id 51x", 1)
	if err := os.WriteFile(conf, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = h.Command(t.Context(), "keepalived", "--config-test", "--use-file="+conf).CombinedOutput()
	if _, ok := err.(*exec.ExitError); !ok {
		t.Errorf("keepalived --config-test accepted virtual_router_id 51x (%v):\n%s", err, out)
	}
}
