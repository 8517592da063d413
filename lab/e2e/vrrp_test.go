package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/fulcrum-lb/fulcrum/lab/netns"
	"github.com/fulcrum-lb/fulcrum/lab/require"
)

// vrrpVIP is the virtual address the two agents share.
var vrrpVIP = netip.MustParseAddr("192.0.2.200")

// vrrpNode is one agent in a namespace.
type vrrpNode struct {
	*node
	host *netns.Host
}

// vrrpInstance is what the test reads of an instance's status.
type vrrpInstance struct {
	Name           string `json:"name"`
	State          string `json:"state"`
	Priority       int    `json:"priority"`
	BasePriority   int    `json:"base_priority"`
	PrimaryAddress string `json:"primary_address"`
	MasterAddress  string `json:"master_address"`
	MasterPriority int    `json:"master_priority"`
	VIPsInstalled  int    `json:"vips_installed"`
	LastTransition *struct {
		From   string    `json:"from"`
		To     string    `json:"to"`
		Reason string    `json:"reason"`
		At     time.Time `json:"at"`
	} `json:"last_transition"`
	Master *struct {
		Since          time.Time  `json:"since"`
		VIPsAdded      *time.Time `json:"vips_added"`
		FirstAnnounce  *time.Time `json:"first_announce"`
		AnnounceRounds int        `json:"announce_rounds"`
	} `json:"master"`
	Trackers []struct {
		Name   string `json:"name"`
		Up     bool   `json:"up"`
		Weight int    `json:"weight"`
	} `json:"trackers"`
	Counters struct {
		AdvertsIn      uint64            `json:"adverts_in"`
		AdvertsOut     uint64            `json:"adverts_out"`
		Priority0In    uint64            `json:"priority0_in"`
		Priority0Out   uint64            `json:"priority0_out"`
		Transitions    uint64            `json:"transitions"`
		AnnounceRounds uint64            `json:"announce_rounds"`
		NotifyRuns     uint64            `json:"notify_runs"`
		NotifyFailures uint64            `json:"notify_failures"`
		Drops          map[string]uint64 `json:"drops"`
	} `json:"counters"`
}

// vrrpConfig is a node with one VRRPv3 instance at 100 ms on eth0.
func vrrpConfig(name, socket string, priority int) string {
	return validConfig(name, socket) + fmt.Sprintf(`
vrrp_instance "VI_1" {
  interface         = "eth0"
  virtual_router_id = 51
  priority          = %d
  advert_interval   = "100ms"
  virtual_ips       = ["%s/24"]
}
`, priority, vrrpVIP)
}

func startVRRPNode(t *testing.T, h *netns.Host, priority int) *vrrpNode {
	t.Helper()
	dir := t.TempDir()
	n := &node{dir: dir, config: filepath.Join(dir, "node.hcl"), socket: filepath.Join(dir, "run", "fulcrum.sock")}
	writeFile(t, n.config, vrrpConfig(h.Name, n.socket, priority))
	n.start(t, h.Command(context.Background(), binary, "agent", "-config", n.config, "-log-target", "stderr"))
	return &vrrpNode{node: n, host: h}
}

// instance reads VI_1 from `fulcrum status -json`.
func (n *vrrpNode) instance(t *testing.T) vrrpInstance {
	t.Helper()
	out, code := n.cli(t, "status", "-json")
	if code != 0 {
		t.Fatalf("%s: fulcrum status -json exited %d: %s", n.host.Name, code, out)
	}
	var st struct {
		Subsystems []struct {
			Name   string `json:"name"`
			Detail struct {
				Instances []vrrpInstance `json:"instances"`
			} `json:"detail"`
		} `json:"subsystems"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status is not JSON: %v\n%s", err, out)
	}
	for _, s := range st.Subsystems {
		if s.Name == "vrrp" {
			for _, in := range s.Detail.Instances {
				if in.Name == "VI_1" {
					return in
				}
			}
		}
	}
	t.Fatalf("%s: no VI_1 in status:\n%s", n.host.Name, out)
	return vrrpInstance{}
}

func (n *vrrpNode) waitState(t *testing.T, state string) vrrpInstance {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		in := n.instance(t)
		if in.State == state {
			return in
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: VI_1 is %s, waited for %s\n%s", n.host.Name, in.State, state, n.proc.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// holdsVIP reports whether the host has the VIP on an interface.
func holdsVIP(t *testing.T, h *netns.Host) bool {
	t.Helper()
	ok, err := h.HasAddr(vrrpVIP)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// onlyHolder checks that exactly want (of hosts) holds the VIP, waiting
// for the loser to remove it.
func onlyHolder(t *testing.T, want *netns.Host, hosts ...*netns.Host) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		var holders []string
		for _, h := range hosts {
			if holdsVIP(t, h) {
				holders = append(holders, h.Name)
			}
		}
		if len(holders) == 1 && holders[0] == want.Name {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("VIP held by %v, want only %s", holders, want.Name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// neighMAC is the client's neighbour entry for the VIP.
func neighMAC(t *testing.T, client *netns.Host) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	err := client.Netlink(func(nl *netlink.Handle) error {
		l, err := nl.LinkByName(client.Iface)
		if err != nil {
			return err
		}
		neighs, err := nl.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, n := range neighs {
			if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == vrrpVIP {
				mac = n.HardwareAddr
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return mac
}

// waitNeigh waits until the client's entry for the VIP is want's MAC.
func waitNeigh(t *testing.T, client, want *netns.Host) time.Time {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		if got := neighMAC(t, client); got.String() == want.MAC.String() {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("client's neighbour entry for %v is %v, want %s's %v", vrrpVIP, neighMAC(t, client), want.Name, want.MAC)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestVRRPNamespaces runs two `fulcrum agent` processes with one VRRPv3
// instance (100 ms) on a bridge with a client: one Master holds the VIP;
// `fulcrum failover -wait` moves it and reports the gaps; SIGKILL of the
// Master makes the Backup take over; each time the client's neighbour table
// follows the gratuitous ARP to the new Master's MAC.
func TestVRRPNamespaces(t *testing.T) {
	if testing.Short() {
		t.Skip("namespace end-to-end test; skipped with -short")
	}
	require.Root(t)
	require.Kernel(t, require.Veth)
	lan := netns.NewLAN(t, netns.Options{})
	h1 := lan.AddHost("lb1", "192.0.2.11/24")
	h2 := lan.AddHost("lb2", "192.0.2.12/24")
	client := lan.AddHost("client", "192.0.2.100/24")

	lb1 := startVRRPNode(t, h1, 200)
	lb2 := startVRRPNode(t, h2, 100)

	// Election: lb1 (200) wins after 3*100ms + 56/256*100ms (RFC 5798 §6.1).
	in1 := lb1.waitState(t, "master")
	lb2.waitState(t, "backup")
	onlyHolder(t, h1, h1, h2)
	if in1.PrimaryAddress != "192.0.2.11" {
		t.Errorf("lb1 advertises from %s", in1.PrimaryAddress)
	}
	// The client learns the VIP at lb1's MAC.
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if err := client.Ping(ctx, vrrpVIP); err != nil {
		t.Fatalf("ping %v: %v", vrrpVIP, err)
	}
	waitNeigh(t, client, h1)

	// Drill: lb1 hands over and holds Backup for 3 s.
	out, code := lb1.cli(t, "failover", "VI_1", "--wait", "--hold", "3s", "--timeout", "10s")
	t.Logf("fulcrum failover on lb1:\n%s", out)
	if code != 0 || !strings.Contains(out, "master -> backup (force_backup, hold 3s)") || !strings.Contains(out, "new master 192.0.2.12") ||
		!strings.Contains(out, "advert gap") {
		t.Fatalf("fulcrum failover exited %d:\n%s", code, out)
	}
	in2 := lb2.waitState(t, "master")
	onlyHolder(t, h2, h1, h2)
	garpSeen := waitNeigh(t, client, h2)
	if m := in2.Master; m != nil && m.VIPsAdded != nil && m.FirstAnnounce != nil {
		t.Logf("lb2 took over (%s): VIP added %s, first GARP %s later, %d rounds; client saw lb2's MAC %s after the VIP add (polled)",
			in2.LastTransition.Reason, m.VIPsAdded.Format("15:04:05.000000"), m.FirstAnnounce.Sub(*m.VIPsAdded), m.AnnounceRounds,
			garpSeen.Sub(*m.VIPsAdded).Round(time.Millisecond))
	}
	if err := client.Ping(ctx, vrrpVIP); err != nil {
		t.Fatalf("ping %v after the drill: %v", vrrpVIP, err)
	}

	// The hold ends and lb1, preempting, takes the role back.
	lb1.waitState(t, "master")
	lb2.waitState(t, "backup")
	onlyHolder(t, h1, h1, h2)
	waitNeigh(t, client, h1)

	// SIGKILL of the Master: no priority-0 advert, so lb2 waits its whole
	// Master_Down_Interval, 3*100ms + 156/256*100ms = 360.9ms.
	killed := time.Now()
	if err := lb1.proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	in2 = lb2.waitState(t, "master")
	seen := waitNeigh(t, client, h2)
	if in2.LastTransition == nil || in2.LastTransition.Reason != "master_down" {
		t.Fatalf("lb2 became master for %+v", in2.LastTransition)
	}
	t.Logf("SIGKILL of lb1 -> lb2 master after %s (Master_Down_Interval 360.9ms); client's neighbour entry at lb2's MAC %s after the kill",
		in2.LastTransition.At.Sub(killed).Round(time.Millisecond), seen.Sub(killed).Round(time.Millisecond))
	if !holdsVIP(t, h2) {
		t.Fatal("lb2 does not hold the VIP")
	}
	if err := client.Ping(ctx, vrrpVIP); err != nil {
		t.Fatalf("ping %v after the kill: %v", vrrpVIP, err)
	}
	if in2.Counters.Drops["bad_ttl"]+in2.Counters.Drops["bad_checksum"] != 0 {
		t.Errorf("lb2 dropped packets: %v", in2.Counters.Drops)
	}

	// `fulcrum status` shows the section; a failover without a peer fails.
	if out, code := lb2.cli(t, "status"); code != 0 || !strings.Contains(out, "instance VI_1: MASTER") {
		t.Fatalf("fulcrum status exited %d:\n%s", code, out)
	}
	out, code = lb2.cli(t, "failover", "-wait", "-hold", "2s", "-timeout", "1s")
	if code != 1 || !strings.Contains(out, "FAILED") {
		t.Fatalf("failover with no peer exited %d:\n%s", code, out)
	}
	lb2.stop(t)
	if holdsVIP(t, h2) {
		t.Error("lb2 left the VIP behind on a clean stop")
	}
}
