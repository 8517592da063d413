package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/fulcrum-lb/fulcrum/lab/keepalived"
	"github.com/fulcrum-lb/fulcrum/lab/netns"
	"github.com/fulcrum-lb/fulcrum/lab/require"
)

// Interoperability of `fulcrum agent` with keepalived 2.2.7 (Debian's), the reference VRRP
// peer: one fulcrum and one keepalived on a bridge with a client, every combination of VRRP
// version, transport, authentication and which side wins the election. Each pair must
// converge to exactly one master holding the VIP, stay there, and the survivor must take over
// when the master is killed; fulcrum's drop counters prove that it accepted every packet
// keepalived sent, and keepalived's log that it accepted every packet fulcrum sent.

const (
	// interopName is the instance's name on both sides (names never go on the wire).
	interopName = "VI_1"
	// interopHigh and interopLow are the priorities of the winner and the loser.
	interopHigh = 200
	interopLow  = 100
	// interopPass8 and interopPass6 are the v2 simple passwords: 8 octets fill the
	// Authentication Data (RFC 3768 §5.3.10), 6 are zero-padded by both sides.
	interopPass8 = "fulcrum1"
	interopPass6 = "s3cret"
	// interopSettle bounds start-up to a converged pair; generous, it only catches hangs.
	interopSettle = 20 * time.Second
)

var (
	interopVIP4 = netip.MustParsePrefix("192.0.2.200/24")
	interopVIP6 = netip.MustParsePrefix("2001:db8::100/64")
)

// interopCase is one row of the matrix.
type interopCase struct {
	name    string
	version int
	unicast bool
	auth    bool // v2 PASS authentication
	ipv6    bool // v3 multicast over IPv6
	// fulcrumHigh: fulcrum has the higher priority and is the master that gets killed;
	// otherwise keepalived is, and fulcrum takes over.
	fulcrumHigh bool
	vrid        int
}

// interval is the advertisement interval: whole seconds for v2 (the least is 1 s), 100 ms
// for v3.
func (c interopCase) interval() time.Duration {
	if c.version == 2 {
		return time.Second
	}
	return 100 * time.Millisecond
}

// password is the PASS password of an authenticated row: padded on multicast rows, full on
// unicast rows, so both encodings meet keepalived.
func (c interopCase) password() string {
	if c.unicast {
		return interopPass8
	}
	return interopPass6
}

func (c interopCase) vip() netip.Prefix {
	if c.ipv6 {
		return interopVIP6
	}
	return interopVIP4
}

// interopMatrix is version {2, 3} × transport {multicast, unicast} × auth {none, PASS (v2
// only)} × roles {fulcrum higher, keepalived higher}, plus IPv6 (v3 multicast) in both roles.
// Every row gets a VRID of its own.
func interopMatrix() []interopCase {
	var cs []interopCase
	vrid := 21
	for _, version := range []int{2, 3} {
		for _, unicast := range []bool{false, true} {
			for _, auth := range []bool{false, true} {
				if auth && version == 3 {
					continue // VRRPv3 has no authentication (RFC 5798 §9)
				}
				for _, fulcrumHigh := range []bool{true, false} {
					c := interopCase{version: version, unicast: unicast, auth: auth, fulcrumHigh: fulcrumHigh, vrid: vrid}
					vrid++
					c.name = c.label()
					cs = append(cs, c)
				}
			}
		}
	}
	for _, fulcrumHigh := range []bool{true, false} {
		c := interopCase{version: 3, ipv6: true, fulcrumHigh: fulcrumHigh, vrid: vrid}
		vrid++
		c.name = c.label()
		cs = append(cs, c)
	}
	return cs
}

func (c interopCase) label() string {
	parts := []string{fmt.Sprintf("v%d", c.version)}
	if c.ipv6 {
		parts = append(parts, "ipv6")
	}
	if c.unicast {
		parts = append(parts, "unicast")
	} else {
		parts = append(parts, "multicast")
	}
	if c.auth {
		parts = append(parts, "pass")
	} else if c.version == 2 {
		parts = append(parts, "noauth")
	}
	if c.fulcrumHigh {
		parts = append(parts, "fulcrum-master")
	} else {
		parts = append(parts, "keepalived-master")
	}
	return strings.Join(parts, "-")
}

// interopBed is one LAN: fulcrum in "ful", keepalived in "kad", a client in "cli".
type interopBed struct {
	c                 interopCase
	fh, kh, client    *netns.Host
	ful               *vrrpNode
	ka                *keepalived.Node
	fulPrio, kaPrio   int
	fulAddr, kaAddr   netip.Addr // the source of each side's adverts
	fulStart, kaStart time.Time
	drops             uint64 // fulcrum's drops at the last checkDrops
}

func newInteropBed(t *testing.T, c interopCase) *interopBed {
	t.Helper()
	lan := netns.NewLAN(t, netns.Options{})
	b := &interopBed{c: c, fulPrio: interopLow, kaPrio: interopHigh}
	if c.fulcrumHigh {
		b.fulPrio, b.kaPrio = interopHigh, interopLow
	}
	if c.ipv6 {
		b.fh = lan.AddHost("ful", "2001:db8::11/64")
		b.kh = lan.AddHost("kad", "2001:db8::12/64")
		b.client = lan.AddHost("cli", "2001:db8::50/64")
		b.fulAddr, b.kaAddr = interopLinkLocal(t, b.fh), interopLinkLocal(t, b.kh)
	} else {
		b.fh = lan.AddHost("ful", "192.0.2.11/24")
		b.kh = lan.AddHost("kad", "192.0.2.12/24")
		b.client = lan.AddHost("cli", "192.0.2.100/24")
		b.fulAddr, b.kaAddr = b.fh.Addr4(), b.kh.Addr4()
	}
	return b
}

// interopLinkLocal is the host's IPv6 link-local address on its first interface, which
// VRRP over IPv6 sends from (RFC 5798 §5.1.2.1).
func interopLinkLocal(t *testing.T, h *netns.Host) netip.Addr {
	t.Helper()
	ps, err := h.ListAddrs(h.Iface)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Addr().Is6() && p.Addr().IsLinkLocalUnicast() {
			return p.Addr()
		}
	}
	t.Fatalf("%s has no IPv6 link-local address on %s: %v", h.Name, h.Iface, ps)
	return netip.Addr{}
}

// fulcrumConfig is the node file of the fulcrum side.
func (b *interopBed) fulcrumConfig(socket string, prio int) string {
	c := b.c
	var in strings.Builder
	fmt.Fprintf(&in, "\nvrrp_instance %q {\n", interopName)
	fmt.Fprintf(&in, "  interface         = \"eth0\"\n")
	fmt.Fprintf(&in, "  virtual_router_id = %d\n", c.vrid)
	fmt.Fprintf(&in, "  priority          = %d\n", prio)
	fmt.Fprintf(&in, "  version           = %d\n", c.version)
	fmt.Fprintf(&in, "  advert_interval   = %q\n", c.interval().String())
	fmt.Fprintf(&in, "  virtual_ips       = [%q]\n", c.vip().String())
	if c.unicast {
		fmt.Fprintf(&in, "  unicast {\n    source_address = %q\n    peers          = [%q]\n  }\n", b.fulAddr, b.kaAddr)
	}
	if c.auth {
		fmt.Fprintf(&in, "  authentication {\n    type     = \"pass\"\n    password = %q\n  }\n", c.password())
	}
	in.WriteString("}\n")
	return validConfig(b.fh.Name, socket) + in.String()
}

// keepalivedConfig is keepalived.conf of the keepalived side, the same virtual router.
func (b *interopBed) keepalivedConfig(prio int) keepalived.Config {
	c := b.c
	in := keepalived.Instance{
		Name: interopName, Interface: "eth0", VRID: c.vrid, Priority: prio, AdvertInt: c.interval(),
		VIPs: []keepalived.VIP{{Addr: c.vip(), Dev: "eth0"}},
	}
	if c.unicast {
		in.UnicastSrc, in.UnicastPeers = b.kaAddr, []netip.Addr{b.fulAddr}
	}
	if c.auth {
		in.AuthPass = c.password()
	}
	return keepalived.Config{Version: c.version, Instances: []keepalived.Instance{in}}
}

// startFulcrum runs `fulcrum agent` in the fulcrum host with priority prio.
func (b *interopBed) startFulcrum(t *testing.T, prio int) {
	t.Helper()
	dir := t.TempDir()
	n := &node{dir: dir, config: filepath.Join(dir, "node.hcl"), socket: filepath.Join(dir, "run", "fulcrum.sock")}
	writeFile(t, n.config, b.fulcrumConfig(n.socket, prio))
	b.fulStart = time.Now()
	n.start(t, b.fh.Command(context.Background(), binary, "agent", "-config", n.config, "-log-target", "stderr"))
	b.ful = &vrrpNode{node: n, host: b.fh}
}

func (b *interopBed) startKeepalived(t *testing.T, prio int) {
	t.Helper()
	b.ka = keepalived.Start(t, b.kh, b.keepalivedConfig(prio))
	b.kaStart = b.ka.Started
}

// interopInst is what the test reads of fulcrum's instance status: more than vrrpInstance,
// for the counters.
type interopInst struct {
	Name                 string `json:"name"`
	VRID                 int    `json:"vrid"`
	Version              int    `json:"version"`
	State                string `json:"state"`
	Priority             int    `json:"priority"`
	PrimaryAddress       string `json:"primary_address"`
	MasterAddress        string `json:"master_address"`
	MasterPriority       int    `json:"master_priority"`
	AdvertInterval       string `json:"advert_interval"`
	MasterAdvertInterval string `json:"master_advert_interval"`
	VIPsInstalled        int    `json:"vips_installed"`
	LastTransition       *struct {
		From   string    `json:"from"`
		To     string    `json:"to"`
		Reason string    `json:"reason"`
		At     time.Time `json:"at"`
	} `json:"last_transition"`
	Counters struct {
		Received     uint64            `json:"received"`
		AdvertsIn    uint64            `json:"adverts_in"`
		AdvertsOut   uint64            `json:"adverts_out"`
		Priority0In  uint64            `json:"priority0_in"`
		Priority0Out uint64            `json:"priority0_out"`
		Transitions  uint64            `json:"transitions"`
		Drops        map[string]uint64 `json:"drops"`
		SendErrors   uint64            `json:"send_errors"`
		RecvErrors   uint64            `json:"recv_errors"`
		VIPErrors    uint64            `json:"vip_errors"`
	} `json:"counters"`
}

func (in interopInst) counters() string {
	c := in.Counters
	var drops []string
	for r, n := range c.Drops {
		drops = append(drops, fmt.Sprintf("%s=%d", r, n))
	}
	sort.Strings(drops)
	return fmt.Sprintf("received %d, adverts in %d out %d, priority-0 in %d out %d, transitions %d, drops {%s}, errors send %d recv %d vip %d",
		c.Received, c.AdvertsIn, c.AdvertsOut, c.Priority0In, c.Priority0Out, c.Transitions, strings.Join(drops, " "),
		c.SendErrors, c.RecvErrors, c.VIPErrors)
}

// fulcrum reads VI_1 from `fulcrum status -json`.
func (b *interopBed) fulcrum(t *testing.T) interopInst {
	t.Helper()
	out, code := b.ful.cli(t, "status", "-json")
	if code != 0 {
		t.Fatalf("fulcrum status -json exited %d: %s", code, out)
	}
	var st struct {
		Subsystems []struct {
			Name   string `json:"name"`
			Detail struct {
				Instances []interopInst `json:"instances"`
			} `json:"detail"`
		} `json:"subsystems"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status is not JSON: %v\n%s", err, out)
	}
	for _, s := range st.Subsystems {
		for _, in := range s.Detail.Instances {
			if s.Name == "vrrp" && in.Name == interopName {
				return in
			}
		}
	}
	t.Fatalf("no %s in fulcrum's status:\n%s", interopName, out)
	return interopInst{}
}

// waitFulcrum polls fulcrum's status until its instance is in state.
func (b *interopBed) waitFulcrum(t *testing.T, state string, timeout time.Duration) interopInst {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		in := b.fulcrum(t)
		if in.State == state {
			return in
		}
		if time.Now().After(deadline) {
			t.Fatalf("fulcrum's %s is %s after %v, want %s (%s)\nkeepalived notices: %v", interopName, in.State, timeout, state,
				in.counters(), b.ka.Notices())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkDrops fails unless fulcrum dropped nothing and had no socket errors: every packet
// keepalived sent passed every receive check (the only VRRP sender on the LAN besides
// fulcrum, whose own multicast does not loop back).
func (b *interopBed) checkDrops(t *testing.T, in interopInst) {
	t.Helper()
	var drops uint64
	for _, n := range in.Counters.Drops {
		drops += n
	}
	b.drops = drops
	if drops != 0 || in.Counters.RecvErrors != 0 || in.Counters.SendErrors != 0 || in.Counters.VIPErrors != 0 {
		t.Errorf("fulcrum dropped keepalived's packets or failed: %s\nagent output:\n%s", in.counters(), b.ful.proc.Output())
	}
	if in.Counters.Received != in.Counters.AdvertsIn {
		t.Errorf("fulcrum received %d packets but accepted %d adverts: %s", in.Counters.Received, in.Counters.AdvertsIn, in.counters())
	}
}

// interopKARejects are the lines keepalived 2.2.7 logs when it discards a received advert
// or its fields disagree with the configuration (vrrp_check_packet and friends).
var interopKARejects = []string{
	"invalid TTL/HL", "wrong version", "auth, expecting", "invalid passwd", "advertisement interval mismatch",
	"Invalid packet type", "unexpected ip number count", "ip_tot_len mismatch", "Invalid VRRPv3 checksum",
	"Invalid VRRPv2 checksum", "VRRPv3 checksum to old version", "vrrp packet too", "packet too short",
	"Discarding bogus packet", "VIPs but received", "not present in MASTER advert", "not a unicast peer",
	"not in range", "Expected multicast packet", "Expected unicast packet", "advertisement interval updated",
	"changing advert interval", "AH header", "send advert error", "Cant send advert",
}

// interopKARejected returns keepalived's log lines about adverts it refused.
func interopKARejected(ka *keepalived.Node) []string {
	var bad []string
	for _, l := range strings.Split(ka.Output(), "\n") {
		for _, r := range interopKARejects {
			if strings.Contains(l, r) {
				bad = append(bad, l)
				break
			}
		}
	}
	return bad
}

// checkKeepalived fails if keepalived complained about anything fulcrum sent.
func (b *interopBed) checkKeepalived(t *testing.T, ka *keepalived.Node) {
	t.Helper()
	if bad := interopKARejected(ka); len(bad) > 0 {
		t.Errorf("keepalived rejected fulcrum's adverts:\n%s", strings.Join(bad, "\n"))
	}
}

// fatalf fails the row with what each side thought of the other's packets: fulcrum's
// counters (its drops by reason) and keepalived's complaints.
func (b *interopBed) fatalf(t *testing.T, format string, args ...any) {
	t.Helper()
	select {
	case <-b.ful.proc.Done():
	default:
		t.Logf("fulcrum: %s", b.fulcrum(t).counters())
	}
	t.Logf("keepalived's complaints: %q", interopKARejected(b.ka))
	t.Fatalf(format, args...)
}

// holders are the VRRP hosts that hold the VIP now.
func (b *interopBed) holders() []string {
	var hs []string
	for _, h := range []*netns.Host{b.fh, b.kh} {
		if keepalived.HasVIP(h, b.c.vip().Addr()) {
			hs = append(hs, h.Name)
		}
	}
	return hs
}

// interopNeigh is the client's neighbour entry (ARP or NDP) for addr; nil if none.
func interopNeigh(t *testing.T, client *netns.Host, addr netip.Addr) net.HardwareAddr {
	t.Helper()
	family := netlink.FAMILY_V4
	if addr.Is6() {
		family = netlink.FAMILY_V6
	}
	var mac net.HardwareAddr
	err := client.Netlink(func(nl *netlink.Handle) error {
		l, err := nl.LinkByName(client.Iface)
		if err != nil {
			return err
		}
		neighs, err := nl.NeighList(l.Attrs().Index, family)
		if err != nil {
			return err
		}
		for _, n := range neighs {
			if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == addr && n.HardwareAddr != nil {
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

// interopWaitNeigh waits until the client's entry for addr is want's MAC.
func interopWaitNeigh(t *testing.T, client *netns.Host, addr netip.Addr, want *netns.Host, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := interopNeigh(t, client, addr)
		if got.String() == want.MAC.String() {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("client's neighbour entry for %v is %v after %v, want %s's %v", addr, got, timeout, want.Name, want.MAC)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func interopPing(t *testing.T, client *netns.Host, addr netip.Addr) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.Ping(ctx, addr); err != nil {
		t.Fatalf("ping %v from the client: %v", addr, err)
	}
}

// interopSkew is Skew_Time: (256 - priority) / 256 of the interval (RFC 5798 §6.1; for v2 with the
// 1 s interval of these tests RFC 3768 §6.1 gives the same).
func interopSkew(prio int, interval time.Duration) time.Duration {
	return time.Duration(256-prio) * interval / 256
}

// interopMasterDown is Master_Down_Interval = 3 * interval + Skew_Time.
func interopMasterDown(prio int, interval time.Duration) time.Duration {
	return 3*interval + interopSkew(prio, interval)
}

// converge waits until the side with the higher priority is master holding the VIP and the
// other backup without it, then checks for more than three advert intervals that nothing
// moves: one master, one holder, no transition on either side.
func (b *interopBed) converge(t *testing.T) (elected time.Duration) {
	t.Helper()
	c := b.c
	vip := c.vip().Addr()
	var masterHost, backupHost *netns.Host
	var since time.Time
	if c.fulcrumHigh {
		in := b.waitFulcrum(t, "master", interopSettle)
		b.ka.WaitState(t, interopName, keepalived.Backup, interopSettle)
		masterHost, backupHost = b.fh, b.kh
		since = in.LastTransition.At
		elected = since.Sub(b.fulStart)
		t.Logf("fulcrum master %v after its start (%s; Master_Down_Interval %v)", since.Sub(b.fulStart).Round(time.Millisecond),
			in.LastTransition.Reason, interopMasterDown(b.fulPrio, c.interval()).Round(time.Millisecond))
	} else {
		no := b.ka.WaitState(t, interopName, keepalived.Master, interopSettle)
		b.waitFulcrum(t, "backup", interopSettle)
		masterHost, backupHost = b.kh, b.fh
		since = no.Time
		elected = since.Sub(b.kaStart)
		t.Logf("keepalived master %v after its start (Master_Down_Interval %v)", since.Sub(b.kaStart).Round(time.Millisecond),
			interopMasterDown(b.kaPrio, c.interval()).Round(time.Millisecond))
	}
	keepalived.WaitVIP(t, masterHost, vip, true, 5*time.Second)
	keepalived.WaitVIP(t, backupHost, vip, false, 5*time.Second)

	// The client reaches the VIP at the master's MAC.
	interopPing(t, b.client, vip)
	interopWaitNeigh(t, b.client, vip, masterHost, 5*time.Second)

	// No flapping: more than three advert intervals (and past the client's neighbour lock
	// time of 1 s) with the same single master.
	window := max(3*c.interval()+c.interval()/2, 1200*time.Millisecond)
	f0, k0 := b.fulcrum(t), len(b.ka.Notices())
	end := time.Now().Add(window)
	for time.Now().Before(end) {
		if hs := b.holders(); len(hs) != 1 || hs[0] != masterHost.Name {
			b.fatalf(t, "VIP held by %v during the stable window, want only %s", hs, masterHost.Name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	f1, k1 := b.fulcrum(t), b.ka.Notices()
	if f1.State != f0.State || f1.Counters.Transitions != f0.Counters.Transitions {
		b.fatalf(t, "fulcrum moved during %v: %s (%d transitions) -> %s (%d transitions)", window, f0.State, f0.Counters.Transitions,
			f1.State, f1.Counters.Transitions)
	}
	if len(k1) != k0 {
		b.fatalf(t, "keepalived moved during %v: %v", window, k1[k0:])
	}
	wantKA := keepalived.Backup
	if !c.fulcrumHigh {
		wantKA = keepalived.Master
	}
	if s := b.ka.State(interopName); s != wantKA {
		b.fatalf(t, "keepalived is %s, want %s", s, wantKA)
	}
	// Each side knows the other for what it is.
	if f1.PrimaryAddress != b.fulAddr.String() {
		t.Errorf("fulcrum advertises from %s, want %s", f1.PrimaryAddress, b.fulAddr)
	}
	if !c.fulcrumHigh {
		if f1.MasterAddress != b.kaAddr.String() || f1.MasterPriority != b.kaPrio || f1.MasterAdvertInterval != c.interval().String() {
			t.Errorf("fulcrum sees master %s priority %d interval %s, want keepalived's %s %d %v",
				f1.MasterAddress, f1.MasterPriority, f1.MasterAdvertInterval, b.kaAddr, b.kaPrio, c.interval())
		}
		// The window's worth of keepalived's adverts (less one for timer jitter), all accepted.
		if want := uint64(window/c.interval() - 1); f1.Counters.AdvertsIn-f0.Counters.AdvertsIn < want {
			t.Errorf("fulcrum accepted %d of keepalived's adverts in %v, want at least %d", f1.Counters.AdvertsIn-f0.Counters.AdvertsIn, window, want)
		}
	} else if f1.Counters.AdvertsOut-f0.Counters.AdvertsOut < uint64(window/c.interval()-1) {
		t.Errorf("fulcrum sent %d adverts in %v as master", f1.Counters.AdvertsOut-f0.Counters.AdvertsOut, window)
	}
	t.Logf("stable for %v; fulcrum (%s, priority %d): %s", window, f1.State, f1.Priority, f1.counters())
	b.checkDrops(t, f1)
	b.checkKeepalived(t, b.ka)
	return elected
}

// interopResult is one row's measurements, for the summary table.
type interopResult struct {
	elected, takeover, masterDown, neigh time.Duration
	drops                                uint64
}

// runInterop is one row: converge, kill the master, the other side takes over.
func runInterop(t *testing.T, c interopCase) (res interopResult) {
	if c.ipv6 {
		require.Kernel(t, require.IPv6)
	}
	b := newInteropBed(t, c)
	b.startKeepalived(t, b.kaPrio)
	b.startFulcrum(t, b.fulPrio)
	res.elected = b.converge(t)

	vip := c.vip().Addr()
	interval := c.interval()
	var takeover time.Duration
	var survivor *netns.Host
	killed := time.Now()
	if c.fulcrumHigh {
		// SIGKILL of the agent: no priority-0 advert, the VIP stays behind on its host.
		if err := b.ful.proc.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-b.ful.proc.Done()
		no := b.ka.WaitState(t, interopName, keepalived.Master, interopSettle)
		takeover, survivor = no.Time.Sub(killed), b.kh
	} else {
		if err := b.ka.Kill(); err != nil {
			t.Fatal(err)
		}
		in := b.waitFulcrum(t, "master", interopSettle)
		if in.LastTransition == nil || in.LastTransition.Reason != "master_down" {
			t.Errorf("fulcrum became master for %+v, want master_down", in.LastTransition)
		}
		takeover, survivor = in.LastTransition.At.Sub(killed), b.fh
	}
	keepalived.WaitVIP(t, survivor, vip, true, 5*time.Second)
	seen := interopWaitNeigh(t, b.client, vip, survivor, 10*time.Second)
	interopPing(t, b.client, vip)

	survivorPrio := b.kaPrio
	if !c.fulcrumHigh {
		survivorPrio = b.fulPrio
	}
	md := interopMasterDown(survivorPrio, interval)
	t.Logf("SIGKILL of the %s master -> %s master after %v (Master_Down_Interval %v); client's neighbour entry at %s's MAC after %v",
		map[bool]string{true: "fulcrum", false: "keepalived"}[c.fulcrumHigh], survivor.Name, takeover.Round(time.Millisecond),
		md.Round(time.Millisecond), survivor.Name, seen.Sub(killed).Round(time.Millisecond))
	// The survivor heard the master about one interval before the kill at most, so it waits
	// Master_Down_Interval less up to that interval: the lower bound (less two intervals, for
	// a late advert on a loaded machine) is far above Skew_Time alone, and the upper bound is
	// generous.
	if lo, hi := md-2*interval, md+max(2*time.Second, md/2); takeover < lo || takeover > hi {
		t.Errorf("takeover after %v, want %v to %v (Master_Down_Interval %v)", takeover, lo, hi, md)
	}
	if !c.fulcrumHigh {
		in := b.fulcrum(t)
		t.Logf("fulcrum after the takeover: %s", in.counters())
		b.checkDrops(t, in)
	}
	res.drops = b.drops
	b.checkKeepalived(t, b.ka)
	res.takeover, res.masterDown, res.neigh = takeover, md, seen.Sub(killed)
	return res
}

// TestInteropKeepalived runs fulcrum against keepalived 2.2.7 for every row of the matrix,
// one row at a time (CPU is scarce), then the graceful stops.
func TestInteropKeepalived(t *testing.T) {
	if testing.Short() {
		t.Skip("namespace interoperability test; skipped with -short")
	}
	require.Root(t)
	require.Kernel(t, require.Veth)
	require.Kernel(t, require.Bridge)
	require.Binary(t, "keepalived")
	start := time.Now()
	var table strings.Builder
	fmt.Fprintf(&table, "%-37s %-6s %9s %9s %9s %9s %6s %8s\n", "row", "result", "elected", "takeover", "down_int", "neigh", "drops", "took")
	for _, c := range interopMatrix() {
		var res interopResult
		ran := false
		began := time.Now()
		ok := t.Run(c.name, func(t *testing.T) {
			ran = true
			res = runInterop(t, c)
		})
		if !ran {
			continue // not selected by -run
		}
		verdict := "PASS"
		if !ok {
			verdict = "FAIL"
		}
		ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
		fmt.Fprintf(&table, "%-37s %-6s %9s %9s %9s %9s %6d %8s\n", c.name, verdict, ms(res.elected), ms(res.takeover),
			ms(res.masterDown), ms(res.neigh), res.drops, ms(time.Since(began)))
	}
	t.Logf("matrix (elected: start to master; takeover: SIGKILL to new master; neigh: SIGKILL to the client's entry at the new MAC):\n%s", table.String())
	t.Run("graceful-stop", func(t *testing.T) {
		began := time.Now()
		runInteropGraceful(t)
		t.Logf("graceful-stop took %v", time.Since(began).Round(time.Millisecond))
	})
	t.Logf("the rows run and the graceful stops took %v", time.Since(start).Round(time.Millisecond))
}

// runInteropGraceful checks a clean stop of each side (VRRPv2 multicast, 1 s adverts, where
// Skew_Time and Master_Down_Interval are far apart): the stopping master sends priority 0
// and removes its VIP, and the other side takes over after its Skew_Time instead of its
// Master_Down_Interval.
func runInteropGraceful(t *testing.T) {
	c := interopCase{name: "graceful-stop", version: 2, vrid: 99}
	interval := c.interval()
	vip := c.vip().Addr()
	b := newInteropBed(t, c)

	// keepalived (200) is master, fulcrum (100) backup; keepalived stops.
	b.startKeepalived(t, b.kaPrio)
	b.startFulcrum(t, b.fulPrio)
	b.converge(t)
	stopped := time.Now()
	if err := b.ka.Stop(); err != nil {
		t.Errorf("keepalived's stop: %v", err)
	}
	in := b.waitFulcrum(t, "master", interopSettle)
	gap := in.LastTransition.At.Sub(stopped)
	t.Logf("keepalived SIGTERM -> fulcrum master after %v (%s; Skew_Time %v, Master_Down_Interval %v)", gap.Round(time.Millisecond),
		in.LastTransition.Reason, interopSkew(b.fulPrio, interval).Round(time.Millisecond), interopMasterDown(b.fulPrio, interval).Round(time.Millisecond))
	if in.LastTransition.Reason != "master_resigned" || in.Counters.Priority0In != 1 {
		t.Errorf("fulcrum became master for %s with %d priority-0 adverts in, want master_resigned after 1", in.LastTransition.Reason, in.Counters.Priority0In)
	}
	if gap > 2*interval {
		t.Errorf("takeover after a graceful stop took %v, want about Skew_Time %v", gap, interopSkew(b.fulPrio, interval))
	}
	if got := b.ka.State(interopName); got != keepalived.Stopped {
		t.Errorf("keepalived's state after its stop is %q, want %s", got, keepalived.Stopped)
	}
	keepalived.WaitVIP(t, b.kh, vip, false, 5*time.Second)
	keepalived.WaitVIP(t, b.fh, vip, true, 5*time.Second)
	interopWaitNeigh(t, b.client, vip, b.fh, 10*time.Second)
	b.checkDrops(t, b.fulcrum(t))
	b.checkKeepalived(t, b.ka)

	// A new keepalived (50) joins as backup behind fulcrum (100); then fulcrum stops.
	const kaLow = 50
	b.ka = keepalived.Start(t, b.kh, b.keepalivedConfig(kaLow))
	b.ka.WaitState(t, interopName, keepalived.Backup, interopSettle)
	time.Sleep(3 * interval / 2) // keepalived hears fulcrum's adverts and stays backup
	if s := b.ka.State(interopName); s != keepalived.Backup {
		t.Fatalf("the new keepalived is %s behind fulcrum, want BACKUP", s)
	}
	before := b.fulcrum(t)
	stopped = time.Now()
	b.ful.stop(t) // SIGTERM; checks a clean exit
	no := b.ka.WaitState(t, interopName, keepalived.Master, interopSettle)
	gap = no.Time.Sub(stopped)
	t.Logf("fulcrum SIGTERM -> keepalived master after %v (Skew_Time %v, Master_Down_Interval %v)", gap.Round(time.Millisecond),
		interopSkew(kaLow, interval).Round(time.Millisecond), interopMasterDown(kaLow, interval).Round(time.Millisecond))
	if gap > 2*interval {
		t.Errorf("takeover after fulcrum's graceful stop took %v, want about Skew_Time %v", gap, interopSkew(kaLow, interval))
	}
	if !strings.Contains(b.ka.Output(), "Backup received priority 0 advertisement") {
		t.Errorf("keepalived did not log fulcrum's priority-0 advert:\n%s", b.ka.Output())
	}
	keepalived.WaitVIP(t, b.fh, vip, false, 5*time.Second)
	keepalived.WaitVIP(t, b.kh, vip, true, 5*time.Second)
	interopWaitNeigh(t, b.client, vip, b.kh, 10*time.Second)
	interopPing(t, b.client, vip)
	t.Logf("fulcrum before its stop: %s", before.counters())
	b.checkKeepalived(t, b.ka)
}
