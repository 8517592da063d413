package e2e

// VRRP scenarios on real sockets: two `fulcrum agent` processes in two
// namespaces on a bridge, with a client namespace, VRRPv3 at 100 ms.
// vrrp_test.go covers the election, the failover drill and a SIGKILL
// takeover over IPv4; these add preemption, nopreempt, the priority-0
// handover of a graceful stop, link loss (implicit and explicit interface
// tracking), a partition and its healing, IPv6, reload and the event
// stream. Each checks what a client on the segment sees: who holds the
// VIP, and which MAC its neighbour entry for the VIP points at.
//
// Identifiers here start with sc (scenario) so as not to collide with the
// other files of the package.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/fulcrum-lb/fulcrum/lab/netns"
	"github.com/fulcrum-lb/fulcrum/lab/require"
)

// The protocol's timings at advert_interval 100ms (RFC 5798 §6.1):
// Skew_Time = (256-priority)*interval/256, Master_Down_Interval =
// 3*interval + Skew_Time.
const scAdvert = 100 * time.Millisecond

func scSkew(priority int) time.Duration {
	return time.Duration(256-priority) * scAdvert / 256
}

func scMasterDown(priority int) time.Duration { return 3*scAdvert + scSkew(priority) }

// scVIP4 and scVIP6 are the virtual addresses of the scenarios.
var (
	scVIP4 = netip.MustParsePrefix("192.0.2.200/24")
	scVIP6 = netip.MustParsePrefix("2001:db8::100/64")
)

// scInst is what the scenarios read of VI_1 in `fulcrum status -json`.
type scInst = vrrpInstance

// reason is the last transition's reason, "" before any.
func (in scInst) reason() string {
	if in.LastTransition == nil {
		return ""
	}
	return in.LastTransition.Reason
}

// changedAt is the time of the last transition (zero before any).
func (in scInst) changedAt() time.Time {
	if in.LastTransition == nil {
		return time.Time{}
	}
	return in.LastTransition.At
}

func (in scInst) tracker(name string) (up bool, ok bool) {
	for _, tr := range in.Trackers {
		if tr.Name == name {
			return tr.Up, true
		}
	}
	return false, false
}

// scPrereqs skips or fails (CI) without what the scenarios need.
func scPrereqs(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("namespace end-to-end test; skipped with -short")
	}
	require.Root(t)
	require.Kernel(t, require.Veth)
	require.Kernel(t, require.Bridge)
}

// scLAN4 is the IPv4 segment: lb1 .11, lb2 .12, client .100.
func scLAN4(t *testing.T) (lan *netns.LAN, h1, h2, client *netns.Host) {
	t.Helper()
	scPrereqs(t)
	lan = netns.NewLAN(t, netns.Options{})
	h1 = lan.AddHost("lb1", "192.0.2.11/24")
	h2 = lan.AddHost("lb2", "192.0.2.12/24")
	client = lan.AddHost("client", "192.0.2.100/24")
	return lan, h1, h2, client
}

// scBlock is a VRRPv3 instance VI_1 (VRID 51, 100 ms) on eth0 holding
// vip, with extra lines inside the block.
func scBlock(priority int, vip netip.Prefix, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nvrrp_instance \"VI_1\" {\n  interface         = \"eth0\"\n  virtual_router_id = 51\n  priority          = %d\n  advert_interval   = %q\n  virtual_ips       = [%q]\n",
		priority, scAdvert.String(), vip.String())
	for _, e := range extra {
		b.WriteString("  " + e + "\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// scStart runs an agent in h whose config is the usual node, control and
// log blocks plus body.
func scStart(t *testing.T, h *netns.Host, body string) *vrrpNode {
	t.Helper()
	dir := t.TempDir()
	n := &node{dir: dir, config: filepath.Join(dir, "node.hcl"), socket: filepath.Join(dir, "run", "fulcrum.sock")}
	writeFile(t, n.config, validConfig(h.Name, n.socket)+body)
	n.start(t, h.Command(context.Background(), binary, "agent", "-config", n.config, "-log-target", "stderr"))
	return &vrrpNode{node: n, host: h}
}

// scRead reads VI_1 from `fulcrum status -json`.
func scRead(t *testing.T, n *vrrpNode) scInst {
	t.Helper()
	return n.instance(t)
}

// scWait polls n's VI_1 until ok holds.
func scWait(t *testing.T, n *vrrpNode, what string, ok func(scInst) bool) scInst {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		in := scRead(t, n)
		if ok(in) {
			return in
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: timed out waiting for %s; VI_1 is %s (%+v)\nagent output:\n%s", n.host.Name, what, in.State, in.LastTransition, n.proc.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// scWaitState waits for state reached by a transition after since.
func scWaitState(t *testing.T, n *vrrpNode, state string, since time.Time) scInst {
	t.Helper()
	return scWait(t, n, fmt.Sprintf("%s after %s", state, since.Format("15:04:05.000")), func(in scInst) bool {
		return in.State == state && in.LastTransition != nil && !in.LastTransition.At.Before(since)
	})
}

// scExpectReason fails unless in's last transition has one of reasons.
func scExpectReason(t *testing.T, n *vrrpNode, in scInst, reasons ...string) {
	t.Helper()
	if !slices.Contains(reasons, in.reason()) {
		t.Errorf("%s became %s for %+v, want reason %v", n.host.Name, in.State, in.LastTransition, reasons)
	}
}

// scHolders lists the hosts that hold addr.
func scHolders(t *testing.T, addr netip.Addr, hosts ...*netns.Host) []string {
	t.Helper()
	var out []string
	for _, h := range hosts {
		ok, err := h.HasAddr(addr)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			out = append(out, h.Name)
		}
	}
	return out
}

// scWaitHolders waits until exactly want (host names, in the order of
// hosts) hold addr.
func scWaitHolders(t *testing.T, addr netip.Addr, want []string, hosts ...*netns.Host) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		got := scHolders(t, addr, hosts...)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v held by %v, want %v", addr, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// scOnly waits until want is the only one of hosts holding addr.
func scOnly(t *testing.T, addr netip.Addr, want *netns.Host, hosts ...*netns.Host) {
	t.Helper()
	scWaitHolders(t, addr, []string{want.Name}, hosts...)
}

// scNeigh is the client's neighbour entry for addr (ARP or NDP), nil if
// none has a link-layer address.
func scNeigh(t *testing.T, client *netns.Host, addr netip.Addr) net.HardwareAddr {
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
			if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == addr {
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

// scWaitNeigh waits until the client's entry for addr is want's MAC and
// returns when it saw it.
func scWaitNeigh(t *testing.T, client *netns.Host, addr netip.Addr, want *netns.Host) time.Time {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		if got := scNeigh(t, client, addr); got.String() == want.MAC.String() {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("client's neighbour entry for %v is %v, want %s's %v", addr, scNeigh(t, client, addr), want.Name, want.MAC)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// scPing pings addr from the client: it makes (or refreshes) the client's
// neighbour entry, and proves the VIP answers.
func scPing(t *testing.T, client *netns.Host, addr netip.Addr) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if err := client.Ping(ctx, addr); err != nil {
		t.Fatalf("ping %v: %v", addr, err)
	}
}

// scElected waits until master is Master and every backup Backup, master
// the only holder of vip, and the client's entry for the VIP (after a
// ping) at master's MAC.
func scElected(t *testing.T, client *netns.Host, vip netip.Addr, master *vrrpNode, backups ...*vrrpNode) scInst {
	t.Helper()
	in := scWait(t, master, "master", func(in scInst) bool { return in.State == "master" })
	hosts := []*netns.Host{master.host}
	for _, b := range backups {
		scWait(t, b, "backup", func(in scInst) bool { return in.State == "backup" })
		hosts = append(hosts, b.host)
	}
	scOnly(t, vip, master.host, hosts...)
	scPing(t, client, vip)
	scWaitNeigh(t, client, vip, master.host)
	return in
}

// scSteady checks for d that master stays the only Master and VIP holder,
// the others stay Backup, and nobody changes state.
func scSteady(t *testing.T, d time.Duration, vip netip.Addr, master *vrrpNode, others ...*vrrpNode) {
	t.Helper()
	all := append([]*vrrpNode{master}, others...)
	var hosts []*netns.Host
	before := map[*vrrpNode]uint64{}
	for _, n := range all {
		before[n] = scRead(t, n).Counters.Transitions
		hosts = append(hosts, n.host)
	}
	end := time.Now().Add(d)
	for {
		for _, n := range all {
			in := scRead(t, n)
			want := "backup"
			if n == master {
				want = "master"
			}
			if in.State != want || in.Counters.Transitions != before[n] {
				t.Fatalf("%s: VI_1 %s with %d transitions (was %d), want a steady %s; last %+v\n%s",
					n.host.Name, in.State, in.Counters.Transitions, before[n], want, in.LastTransition, n.proc.Output())
			}
		}
		if got := scHolders(t, vip, hosts...); !slices.Equal(got, []string{master.host.Name}) {
			t.Fatalf("%v held by %v, want only %s", vip, got, master.host.Name)
		}
		if time.Now().After(end) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scWaitExit waits for n's process to end (after a signal) and checks a
// clean exit.
func scWaitExit(t *testing.T, n *vrrpNode) {
	t.Helper()
	select {
	case <-n.proc.Done():
	case <-time.After(hangGuard):
		t.Fatalf("%s: agent did not stop\n%s", n.host.Name, n.proc.Output())
	}
	if err := n.proc.Err(); err != nil {
		t.Fatalf("%s: agent exited with %v\n%s", n.host.Name, err, n.proc.Output())
	}
}

// scReload rewrites n's config with body, sends SIGHUP and waits for the
// next generation.
func scReload(t *testing.T, n *vrrpNode, body string) status {
	t.Helper()
	gen := n.status(t).Config.Generation
	writeFile(t, n.config, validConfig(n.host.Name, n.socket)+body)
	if err := n.proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	st := n.waitStatus(t, "the reload", func(s status) bool {
		return s.Config.Generation > gen || (s.Config.LastReload != nil && !s.Config.LastReload.OK)
	})
	if st.Config.Generation != gen+1 || st.Config.LastReload == nil || !st.Config.LastReload.OK {
		t.Fatalf("%s: reload not applied: %+v", n.host.Name, st.Config)
	}
	return st
}

// logTimeRe finds the time of a slog text line.
var logTimeRe = regexp.MustCompile(`^time=(\S+) `)

// scLogTime is the time of the first line of n's log that contains every
// one of parts; zero if none does.
func scLogTime(n *vrrpNode, parts ...string) time.Time {
	sc := bufio.NewScanner(strings.NewReader(n.proc.Output()))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
lines:
	for sc.Scan() {
		line := sc.Text()
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue lines
			}
		}
		if m := logTimeRe.FindStringSubmatch(line); m != nil {
			if at, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
				return at
			}
		}
	}
	return time.Time{}
}

// scEvent is one line of `fulcrum events`.
type scEvent struct {
	Seq       uint64         `json:"seq"`
	Time      time.Time      `json:"time"`
	Subsystem string         `json:"subsystem"`
	Type      string         `json:"type"`
	Attrs     map[string]any `json:"attrs"`
}

// scStream is a running `fulcrum events` against one agent.
type scStream struct {
	n *vrrpNode
	p *netns.Proc
}

// scWatchEvents starts `fulcrum events` against n and returns once the
// stream is subscribed: it reloads the unchanged config until the stream
// shows a config_reloaded event (a subscription sees only later events).
func scWatchEvents(t *testing.T, n *vrrpNode) *scStream {
	t.Helper()
	s := &scStream{n: n, p: netns.StartCmd(t, n.host.Name+": fulcrum events", exec.Command(binary, "events", "-socket", n.socket))}
	deadline := time.Now().Add(hangGuard)
	for {
		if out, code := n.cli(t, "reload"); code != 0 {
			t.Fatalf("%s: fulcrum reload exited %d: %s", n.host.Name, code, out)
		}
		wait := time.Now().Add(time.Second)
		for time.Now().Before(wait) {
			for _, e := range s.events(t) {
				if e.Type == "config_reloaded" {
					return s
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: fulcrum events showed no config_reloaded:\n%s", n.host.Name, s.p.Output())
		}
	}
}

// events parses the stream so far (complete lines only).
func (s *scStream) events(t *testing.T) []scEvent {
	t.Helper()
	var out []scEvent
	for _, line := range strings.Split(s.p.Output(), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var e scEvent
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			continue // a line still being written
		}
		out = append(out, e)
	}
	return out
}

// transitions is the stream's vrrp_state_changed events of VI_1 as
// "from>to:reason", after checking that sequence numbers strictly
// increase and times never go back.
func (s *scStream) transitions(t *testing.T) []string {
	t.Helper()
	var out []string
	evs := s.events(t)
	for k, e := range evs {
		if k > 0 && (e.Seq <= evs[k-1].Seq || e.Time.Before(evs[k-1].Time)) {
			t.Errorf("%s: event %d (seq %d, %s) after seq %d (%s): out of order", s.n.host.Name, k, e.Seq, e.Time, evs[k-1].Seq, evs[k-1].Time)
		}
		if e.Type != "vrrp_state_changed" {
			continue
		}
		if e.Subsystem != "vrrp" || e.Attrs["instance"] != "VI_1" {
			t.Errorf("%s: unexpected event %+v", s.n.host.Name, e)
		}
		if _, ok := e.Attrs["priority"].(float64); !ok {
			t.Errorf("%s: vrrp_state_changed without a priority: %+v", s.n.host.Name, e)
		}
		out = append(out, fmt.Sprintf("%v>%v:%v", e.Attrs["from"], e.Attrs["to"], e.Attrs["reason"]))
	}
	return out
}

// waitTransitions waits until the stream shows at least n transitions.
func (s *scStream) waitTransitions(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		got := s.transitions(t)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d vrrp_state_changed events, want %d:\n%s", s.n.host.Name, len(got), n, s.p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestVRRPScenarioPreempt: lb2 (100) alone becomes Master; lb1 (200, preempt
// by default) joins, waits out its Master_Down_Interval while discarding
// lb2's lower-priority adverts and takes over; lb2 steps down on lb1's
// first advert; the client's neighbour entry follows lb1's gratuitous ARP.
func TestVRRPScenarioPreempt(t *testing.T) {
	_, h1, h2, client := scLAN4(t)
	vip := scVIP4.Addr()

	lb2 := scStart(t, h2, scBlock(100, scVIP4))
	in2 := scElected(t, client, vip, lb2)
	scExpectReason(t, lb2, in2, "master_down")

	started := time.Now()
	lb1 := scStart(t, h1, scBlock(200, scVIP4))
	in1 := scWaitState(t, lb1, "master", started)
	scExpectReason(t, lb1, in1, "preempt")
	in2 = scWaitState(t, lb2, "backup", started)
	scExpectReason(t, lb2, in2, "higher_priority")
	if in2.MasterAddress != "192.0.2.11" || in2.MasterPriority != 200 {
		t.Errorf("lb2 follows %s priority %d, want 192.0.2.11 priority 200", in2.MasterAddress, in2.MasterPriority)
	}
	scOnly(t, vip, h1, h1, h2)
	seen := scWaitNeigh(t, client, vip, h1)
	t.Logf("lb1 (200) preempted lb2 (100): lb1 Backup at %s, Master %s later (Master_Down_Interval %s); lb2 stepped down %s after lb1 became Master; client at lb1's MAC %s after lb1 became Master (polled)",
		scLogTime(lb1, `msg="vrrp state changed"`, "to=backup").Format("15:04:05.000"),
		in1.changedAt().Sub(scLogTime(lb1, `msg="vrrp state changed"`, "to=backup")).Round(time.Millisecond), scMasterDown(200),
		in2.changedAt().Sub(in1.changedAt()).Round(time.Millisecond), seen.Sub(in1.changedAt()).Round(time.Millisecond))
	scPing(t, client, vip)
	scSteady(t, time.Second, vip, lb1, lb2)
}

// TestVRRPScenarioNoPreempt: as TestVRRPScenarioPreempt with lb1
// `preempt = false`: lb1 stays Backup behind the lower-priority Master;
// a graceful stop of lb2 (priority 0) hands the VIP to lb1.
func TestVRRPScenarioNoPreempt(t *testing.T) {
	_, h1, h2, client := scLAN4(t)
	vip := scVIP4.Addr()

	lb2 := scStart(t, h2, scBlock(100, scVIP4))
	scElected(t, client, vip, lb2)

	started := time.Now()
	lb1 := scStart(t, h1, scBlock(200, scVIP4, "preempt = false"))
	scWaitState(t, lb1, "backup", started)
	// Ten adverts, about three of lb1's Master_Down_Intervals: no takeover.
	scSteady(t, 10*scAdvert, vip, lb2, lb1)
	in1 := scRead(t, lb1)
	if in1.MasterAddress != "192.0.2.12" || in1.MasterPriority != 100 || in1.Priority != 200 {
		t.Errorf("lb1 (priority %d) follows %s priority %d, want 192.0.2.12 priority 100", in1.Priority, in1.MasterAddress, in1.MasterPriority)
	}
	if got := scNeigh(t, client, vip); got.String() != h2.MAC.String() {
		t.Errorf("client's entry for the VIP moved to %v while lb2 stayed Master", got)
	}

	stopped := time.Now()
	lb2.stop(t)
	in1 = scWaitState(t, lb1, "master", stopped)
	scExpectReason(t, lb1, in1, "master_resigned")
	scOnly(t, vip, h1, h1, h2)
	seen := scWaitNeigh(t, client, vip, h1)
	t.Logf("nopreempt lb1 (200) stayed Backup behind lb2 (100); lb2 stopped -> lb1 Master %s after SIGTERM, client at lb1's MAC %s after SIGTERM (polled)",
		in1.changedAt().Sub(stopped).Round(time.Millisecond), seen.Sub(stopped).Round(time.Millisecond))
	scPing(t, client, vip)
}

// TestVRRPScenarioGracefulStop: SIGTERM of the Master sends priority 0
// (RFC 5798 §6.4.3), so the Backup takes over after its Skew_Time rather
// than its Master_Down_Interval; the stopped Master removed its VIP.
func TestVRRPScenarioGracefulStop(t *testing.T) {
	_, h1, h2, client := scLAN4(t)
	vip := scVIP4.Addr()
	lb1 := scStart(t, h1, scBlock(200, scVIP4))
	lb2 := scStart(t, h2, scBlock(100, scVIP4))
	scElected(t, client, vip, lb1, lb2)
	p0 := scRead(t, lb2).Counters.Priority0In

	signalled := time.Now()
	if err := lb1.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	in2 := scWaitState(t, lb2, "master", signalled)
	scExpectReason(t, lb2, in2, "master_resigned")
	if in2.Counters.Priority0In <= p0 {
		t.Errorf("lb2 counted no priority-0 advert (%d before, %d after)", p0, in2.Counters.Priority0In)
	}
	scWaitExit(t, lb1)
	if held := scHolders(t, vip, h1); len(held) != 0 {
		t.Error("lb1 left the VIP behind on a graceful stop")
	}
	scOnly(t, vip, h2, h1, h2)
	seen := scWaitNeigh(t, client, vip, h2)

	// lb1's log dates its resignation (the priority-0 advert goes out in the
	// same step, just before the log line).
	resigned := scLogTime(lb1, `msg="vrrp state changed"`, "from=master", "to=initialize")
	if resigned.IsZero() {
		t.Fatalf("lb1 did not log its resignation:\n%s", lb1.proc.Output())
	}
	gap := in2.changedAt().Sub(resigned)
	t.Logf("SIGTERM of lb1 -> lb1 resigned after %s (its log has 1ms resolution) -> lb2 Master %s later (Skew_Time %s, Master_Down_Interval %s); client at lb2's MAC %s after SIGTERM (polled)",
		resigned.Sub(signalled).Round(time.Millisecond), gap.Round(time.Millisecond), scSkew(100), scMasterDown(100), seen.Sub(signalled).Round(time.Millisecond))
	// Generous: the reason already says Master_Down_Timer ran for Skew_Time
	// only; this catches a takeover that waited for something else.
	if gap > time.Second {
		t.Errorf("lb2 took over %s after lb1 resigned; Skew_Time is %s", gap, scSkew(100))
	}
	scPing(t, client, vip)
}

// TestVRRPScenarioLinkDown: the Master's cable is pulled on the switch
// side. Its interface (tracked implicitly, weight 0) loses carrier: it goes
// to Fault and removes its VIP; the Backup stops hearing adverts and takes
// over. Plugged back, the old Master recovers, preempts, and one Master
// remains.
func TestVRRPScenarioLinkDown(t *testing.T) {
	lan, h1, h2, client := scLAN4(t)
	vip := scVIP4.Addr()
	lb1 := scStart(t, h1, scBlock(200, scVIP4))
	lb2 := scStart(t, h2, scBlock(100, scVIP4))
	scElected(t, client, vip, lb1, lb2)

	unplugged := time.Now()
	if err := lan.Unplug(h1); err != nil {
		t.Fatal(err)
	}
	in1 := scWaitState(t, lb1, "fault", unplugged)
	scExpectReason(t, lb1, in1, "fault")
	if up, ok := in1.tracker("interface:eth0"); !ok || up {
		t.Errorf("lb1's tracker interface:eth0 up=%v (present %v), want down: %+v", up, ok, in1.Trackers)
	}
	// lb1's priority-0 advert goes out of a link without carrier: lb2
	// waits out its Master_Down_Interval.
	in2 := scWaitState(t, lb2, "master", unplugged)
	scExpectReason(t, lb2, in2, "master_down")
	scOnly(t, vip, h2, h1, h2)
	seen := scWaitNeigh(t, client, vip, h2)
	t.Logf("lb1 unplugged: lb1 in Fault after %s, lb2 Master (%s) after %s (Master_Down_Interval %s), client at lb2's MAC after %s (polled)",
		in1.changedAt().Sub(unplugged).Round(time.Millisecond), in2.reason(), in2.changedAt().Sub(unplugged).Round(time.Millisecond),
		scMasterDown(100), seen.Sub(unplugged).Round(time.Millisecond))
	scPing(t, client, vip)

	plugged := time.Now()
	if err := lan.Plug(h1); err != nil {
		t.Fatal(err)
	}
	in1 = scWaitState(t, lb1, "master", plugged)
	scExpectReason(t, lb1, in1, "preempt")
	in2 = scWaitState(t, lb2, "backup", plugged)
	scExpectReason(t, lb2, in2, "higher_priority")
	scOnly(t, vip, h1, h1, h2)
	seen = scWaitNeigh(t, client, vip, h1)
	recovered := scLogTime(lb1, `msg="vrrp state changed"`, "from=fault", "reason=recovered")
	t.Logf("lb1 plugged back: out of Fault after %s, Master after %s, client at lb1's MAC after %s (polled)",
		recovered.Sub(plugged).Round(time.Millisecond), in1.changedAt().Sub(plugged).Round(time.Millisecond), seen.Sub(plugged).Round(time.Millisecond))
	scSteady(t, time.Second, vip, lb1, lb2)
	scPing(t, client, vip)
}

// TestVRRPScenarioTrackInterface: lb1 also sits on a second LAN and tracks
// that interface (eth1) with weight -150. Unplugging eth1 drops lb1's
// effective priority to 50, below lb2's 100: lb2 (preempt) takes over and
// holds the VIP. Plugged back, lb1 (200) preempts again.
func TestVRRPScenarioTrackInterface(t *testing.T) {
	_, h1, h2, client := scLAN4(t)
	vip := scVIP4.Addr()
	lan2 := netns.NewLAN(t, netns.Options{})
	if l := lan2.Attach(h1, "198.51.100.11/24"); l.Name != "eth1" {
		t.Fatalf("lb1's second link is %s, want eth1", l.Name)
	}
	lb1 := scStart(t, h1, scBlock(200, scVIP4, `track_interface "eth1" { weight = -150 }`))
	lb2 := scStart(t, h2, scBlock(100, scVIP4))
	scElected(t, client, vip, lb1, lb2)
	if in1 := scRead(t, lb1); in1.Priority != 200 {
		t.Fatalf("lb1's priority is %d with eth1 up, want 200", in1.Priority)
	}

	unplugged := time.Now()
	if err := lan2.Unplug(h1); err != nil {
		t.Fatal(err)
	}
	in2 := scWaitState(t, lb2, "master", unplugged)
	scExpectReason(t, lb2, in2, "preempt")
	in1 := scWaitState(t, lb1, "backup", unplugged)
	scExpectReason(t, lb1, in1, "higher_priority")
	if in1.Priority != 50 || in1.BasePriority != 200 {
		t.Errorf("lb1's priority is %d (base %d) with eth1 down, want 50 (base 200)", in1.Priority, in1.BasePriority)
	}
	if up, ok := in1.tracker("interface:eth1"); !ok || up {
		t.Errorf("lb1's tracker interface:eth1 up=%v (present %v), want down: %+v", up, ok, in1.Trackers)
	}
	scOnly(t, vip, h2, h1, h2)
	seen := scWaitNeigh(t, client, vip, h2)
	t.Logf("eth1 unplugged: lb2 (100) preempted lb1 (now 50) after %s (its Master_Down_Interval %s), lb1 Backup %s after that, client at lb2's MAC after %s (polled)",
		in2.changedAt().Sub(unplugged).Round(time.Millisecond), scMasterDown(100),
		in1.changedAt().Sub(in2.changedAt()).Round(time.Millisecond), seen.Sub(unplugged).Round(time.Millisecond))
	scSteady(t, 5*scAdvert, vip, lb2, lb1)
	scPing(t, client, vip)

	plugged := time.Now()
	if err := lan2.Plug(h1); err != nil {
		t.Fatal(err)
	}
	in1 = scWaitState(t, lb1, "master", plugged)
	scExpectReason(t, lb1, in1, "preempt")
	scWaitState(t, lb2, "backup", plugged)
	scOnly(t, vip, h1, h1, h2)
	scWaitNeigh(t, client, vip, h1)
	if in1 = scRead(t, lb1); in1.Priority != 200 {
		t.Errorf("lb1's priority is %d after eth1 came back, want 200", in1.Priority)
	}
	t.Logf("eth1 plugged back: lb1 Master again after %s", in1.changedAt().Sub(plugged).Round(time.Millisecond))
	scSteady(t, time.Second, vip, lb1, lb2)
}

// scIsolate sets both routers' bridge ports isolated (or not): isolated
// ports cannot reach each other but still reach the client's port, so the
// routers stop hearing each other (a partition) while the client hears
// both.
func scIsolate(t *testing.T, lan *netns.LAN, on bool, hosts ...*netns.Host) {
	t.Helper()
	err := lan.Switch().Netlink(func(nl *netlink.Handle) error {
		for _, h := range hosts {
			l, err := nl.LinkByName(lan.Port(h))
			if err != nil {
				return err
			}
			if err := nl.LinkSetIsolated(l, on); err != nil {
				return fmt.Errorf("%s: isolated %v: %w", lan.Port(h), on, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestVRRPScenarioPartition: both links stay up but the routers' bridge
// ports are isolated from each other. lb2 stops hearing lb1 and becomes
// Master too (split brain): both hold the VIP, and the client follows
// lb2's gratuitous ARP. On healing, one Master remains within about an
// advert interval, the VIP is on it only, and the survivor's re-announce
// brings the client's neighbour entry back to it. garp delay is 0 so that
// no scheduled second burst can do that instead.
func TestVRRPScenarioPartition(t *testing.T) {
	lan, h1, h2, client := scLAN4(t)
	vip := scVIP4.Addr()
	lb1 := scStart(t, h1, scBlock(200, scVIP4, `garp { delay = "0s" }`))
	lb2 := scStart(t, h2, scBlock(100, scVIP4, `garp { delay = "0s" }`))
	in1 := scElected(t, client, vip, lb1, lb2)
	trans1 := in1.Counters.Transitions

	split := time.Now()
	scIsolate(t, lan, true, h1, h2)
	in2 := scWaitState(t, lb2, "master", split)
	scExpectReason(t, lb2, in2, "master_down")
	scWaitHolders(t, vip, []string{"lb1", "lb2"}, h1, h2)
	if in1 = scRead(t, lb1); in1.State != "master" || in1.Counters.Transitions != trans1 {
		t.Fatalf("lb1 is %s with %d transitions (was %d) during the partition, want still master", in1.State, in1.Counters.Transitions, trans1)
	}
	// The client heard lb2's announcements: its entry now points at lb2.
	scWaitNeigh(t, client, vip, h2)
	t.Logf("partition: lb2 Master too after %s (Master_Down_Interval %s); both hold the VIP, client at lb2's MAC",
		in2.changedAt().Sub(split).Round(time.Millisecond), scMasterDown(100))
	// Let the partition last a little: both Masters advertise unheard.
	time.Sleep(5 * scAdvert)

	healed := time.Now()
	scIsolate(t, lan, false, h1, h2)
	in2 = scWaitState(t, lb2, "backup", healed)
	scExpectReason(t, lb2, in2, "higher_priority")
	took := in2.changedAt().Sub(healed)
	scOnly(t, vip, h1, h1, h2)
	seen := scWaitNeigh(t, client, vip, h1)
	in1 = scRead(t, lb1)
	if in1.State != "master" || in1.Counters.Transitions != trans1 {
		t.Errorf("lb1 is %s with %d transitions (was %d) after the heal, want master throughout", in1.State, in1.Counters.Transitions, trans1)
	}
	t.Logf("heal: one Master (lb1) %s after the heal (advert interval %s); client back at lb1's MAC %s after the heal (polled)",
		took.Round(time.Millisecond), scAdvert, seen.Sub(healed).Round(time.Millisecond))
	if took > 10*scAdvert {
		t.Errorf("two Masters for %s after the heal, want about one advert interval (%s)", took, scAdvert)
	}
	if d := seen.Sub(healed); d > 2*time.Second {
		t.Errorf("the client's entry came back to lb1 %s after the heal: not by a re-announce", d)
	}
	if !strings.Contains(lb1.proc.Output(), "lower-priority advertisement while master; announcing again") {
		t.Errorf("lb1 did not log its split-brain re-announce:\n%s", lb1.proc.Output())
	}
	scSteady(t, time.Second, vip, lb1, lb2)
	scPing(t, client, vip)
}

// TestVRRPScenarioIPv6: an IPv6-only VRRPv3 instance between two routers
// whose links have no IPv4 at all (lb2 has only its link-local address):
// election from link-local sources, then SIGKILL of the Master; the client's
// neighbour entry follows the unsolicited Neighbor Advertisements.
func TestVRRPScenarioIPv6(t *testing.T) {
	scPrereqs(t)
	require.Kernel(t, require.IPv6)
	lan := netns.NewLAN(t, netns.Options{})
	h1 := lan.AddHost("lb1", "2001:db8::11/64")
	h2 := lan.AddHost("lb2") // link-local only
	client := lan.AddHost("client", "2001:db8::64/64")
	vip := scVIP6.Addr()

	lb1 := scStart(t, h1, scBlock(200, scVIP6))
	lb2 := scStart(t, h2, scBlock(100, scVIP6))
	scElected(t, client, vip, lb1, lb2)
	in1, in2 := scRead(t, lb1), scRead(t, lb2)
	for _, in := range []scInst{in1, in2} {
		if a, err := netip.ParseAddr(in.PrimaryAddress); err != nil || !a.IsLinkLocalUnicast() {
			t.Errorf("%s advertises from %q, want its link-local address (RFC 5798 §5.1.2.1)", in.Name, in.PrimaryAddress)
		}
	}
	// lb1's link is IPv6-only: its unsolicited Neighbor Advertisements go out.
	scWait(t, lb1, "an announcement round", func(in scInst) bool { return in.Master != nil && in.Master.AnnounceRounds > 0 })
	if in2.MasterAddress != in1.PrimaryAddress || in2.MasterPriority != 200 {
		t.Errorf("lb2 follows %s priority %d, want lb1's %s priority 200", in2.MasterAddress, in2.MasterPriority, in1.PrimaryAddress)
	}
	for _, h := range []*netns.Host{h1, h2} {
		ps, err := h.ListAddrs("")
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if p.Addr().Is4() {
				t.Fatalf("%s has IPv4 address %s; this scenario wants IPv6-only links", h.Name, p)
			}
		}
	}

	killed := time.Now()
	if err := lb1.proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	in2 = scWaitState(t, lb2, "master", killed)
	scExpectReason(t, lb2, in2, "master_down")
	if held := scHolders(t, vip, h2); len(held) != 1 {
		t.Fatal("lb2 does not hold the IPv6 VIP")
	}
	seen := scWaitNeigh(t, client, vip, h2)
	t.Logf("IPv6: SIGKILL of lb1 -> lb2 (link-local only) Master after %s (Master_Down_Interval %s); client's NDP entry at lb2's MAC %s after the kill (polled)",
		in2.changedAt().Sub(killed).Round(time.Millisecond), scMasterDown(100), seen.Sub(killed).Round(time.Millisecond))
	// lb2's link has only a link-local address: it announces all the same.
	scWait(t, lb2, "an announcement round", func(in scInst) bool { return in.Master != nil && in.Master.AnnounceRounds > 0 })
	scPing(t, client, vip)
	if d := in2.Counters.Drops; d["bad_ttl"]+d["bad_checksum"] != 0 {
		t.Errorf("lb2 dropped adverts: %v", d)
	}
}

// TestVRRPScenarioReload: SIGHUP with a changed config (another priority,
// still the highest, and notify commands) keeps the Master Master: no
// transition and no vrrp_state_changed event; the Backup hears the new
// priority in an advert at once. The notify commands are then live.
func TestVRRPScenarioReload(t *testing.T) {
	_, h1, h2, client := scLAN4(t)
	vip := scVIP4.Addr()
	lb1 := scStart(t, h1, scBlock(200, scVIP4))
	lb2 := scStart(t, h2, scBlock(100, scVIP4))
	scElected(t, client, vip, lb1, lb2)
	events := scWatchEvents(t, lb1) // its reloads of the same config change nothing either
	before := scRead(t, lb1)
	before2 := scRead(t, lb2)
	if before.Counters.Transitions != 2 || before.reason() != "master_down" {
		t.Fatalf("lb1 after the election and unchanged reloads: %d transitions, last %+v", before.Counters.Transitions, before.LastTransition)
	}

	notifyLog := filepath.Join(lb1.dir, "notify.log")
	script := fmt.Sprintf(`echo "$FULCRUM_VRRP_STATE $FULCRUM_VRRP_REASON $FULCRUM_VRRP_PRIORITY" >> %s`, notifyLog)
	argv := func() string { return fmt.Sprintf("[%q, %q, %q]", "/bin/sh", "-c", script) }
	reloaded := time.Now()
	st := scReload(t, lb1, scBlock(180, scVIP4,
		"notify {", "  master = "+argv(), "  backup = "+argv(), "}"))
	in2 := scWait(t, lb2, "lb1's new priority", func(in scInst) bool { return in.MasterPriority == 180 })
	heard := time.Now()
	after := scRead(t, lb1)
	if after.State != "master" || after.Priority != 180 || after.Counters.Transitions != before.Counters.Transitions ||
		!after.changedAt().Equal(before.changedAt()) {
		t.Fatalf("lb1 after the reload: %s priority %d, %d transitions (was %d), last %+v (was %+v)",
			after.State, after.Priority, after.Counters.Transitions, before.Counters.Transitions, after.LastTransition, before.LastTransition)
	}
	if after.Counters.AdvertsOut <= before.Counters.AdvertsOut {
		t.Errorf("lb1 sent no advert across the reload (%d, then %d)", before.Counters.AdvertsOut, after.Counters.AdvertsOut)
	}
	if in2.State != "backup" || in2.Counters.Transitions != before2.Counters.Transitions {
		t.Errorf("lb2 moved during lb1's reload: %s, %d transitions (was %d)", in2.State, in2.Counters.Transitions, before2.Counters.Transitions)
	}
	t.Logf("reload to generation %d: lb1 stayed Master; lb2 saw priority 180 within %s of SIGHUP (polled)",
		st.Config.Generation, heard.Sub(reloaded).Round(time.Millisecond))
	scOnly(t, vip, h1, h1, h2)
	if got := scNeigh(t, client, vip); got.String() != h1.MAC.String() {
		t.Errorf("client's entry moved to %v across the reload", got)
	}
	// The stream shows the reload and no transition.
	deadline := time.Now().Add(hangGuard)
	for {
		found := false
		for _, e := range events.events(t) {
			if e.Type == "config_reloaded" && e.Attrs["generation"] == float64(st.Config.Generation) {
				found = true
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no config_reloaded event for generation %d:\n%s", st.Config.Generation, events.p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if tr := events.transitions(t); len(tr) != 0 {
		t.Errorf("vrrp_state_changed events across the reloads: %v", tr)
	}

	// The new notify commands run: a drill takes lb1 to Backup and back.
	if out, code := lb1.cli(t, "failover", "VI_1", "-wait", "-hold", "1s", "-timeout", "10s"); code != 0 {
		t.Fatalf("fulcrum failover exited %d:\n%s", code, out)
	}
	drilled := time.Now()
	scWaitState(t, lb1, "master", drilled)
	want := []string{"backup force_backup 180", "master preempt 180"}
	deadline = time.Now().Add(hangGuard)
	for {
		b, _ := os.ReadFile(notifyLog)
		got := strings.Split(strings.TrimSpace(string(b)), "\n")
		if slices.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("notify log %q, want %q\n%s", got, want, lb1.proc.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestVRRPScenarioEvents: `fulcrum events` on both agents shows each
// transition of a drill and of a graceful stop as vrrp_state_changed
// events, in order, with strictly increasing sequence numbers.
func TestVRRPScenarioEvents(t *testing.T) {
	_, h1, h2, client := scLAN4(t)
	vip := scVIP4.Addr()
	lb1 := scStart(t, h1, scBlock(200, scVIP4))
	lb2 := scStart(t, h2, scBlock(100, scVIP4))
	scElected(t, client, vip, lb1, lb2)
	ev1 := scWatchEvents(t, lb1)
	ev2 := scWatchEvents(t, lb2)

	// A drill: lb1 resigns, holds Backup for 1s, then preempts again.
	if out, code := lb1.cli(t, "failover", "VI_1", "-wait", "-hold", "1s", "-timeout", "10s"); code != 0 {
		t.Fatalf("fulcrum failover exited %d:\n%s", code, out)
	}
	want1 := []string{"master>backup:force_backup", "backup>master:preempt"}
	want2 := []string{"backup>master:master_resigned", "master>backup:higher_priority"}
	if got := ev1.waitTransitions(t, 2); !slices.Equal(got, want1) {
		t.Errorf("lb1's transitions: %v, want %v", got, want1)
	}
	if got := ev2.waitTransitions(t, 2); !slices.Equal(got, want2) {
		t.Errorf("lb2's transitions: %v, want %v", got, want2)
	}
	scOnly(t, vip, h1, h1, h2)

	// A graceful stop: lb1's stream ends with its shutdown, lb2 takes over.
	lb1.stop(t)
	want1 = append(want1, "master>initialize:shutdown")
	want2 = append(want2, "backup>master:master_resigned")
	if got := ev1.waitTransitions(t, 3); !slices.Equal(got, want1) {
		t.Errorf("lb1's transitions: %v, want %v", got, want1)
	}
	if got := ev2.waitTransitions(t, 3); !slices.Equal(got, want2) {
		t.Errorf("lb2's transitions: %v, want %v", got, want2)
	}
	select {
	case <-ev1.p.Done():
	case <-time.After(hangGuard):
		t.Fatal("fulcrum events did not end when lb1 stopped")
	}
	if !strings.Contains(ev1.p.Output(), "the agent ended the stream") {
		t.Errorf("lb1's event stream ended without saying so:\n%s", ev1.p.Output())
	}
	// Each stream is one chain: every transition starts where the last ended.
	for name, tr := range map[string][]string{"lb1": ev1.transitions(t), "lb2": ev2.transitions(t)} {
		for k := 1; k < len(tr); k++ {
			prevTo := strings.Split(strings.Split(tr[k-1], ">")[1], ":")[0]
			if from := strings.Split(tr[k], ">")[0]; from != prevTo {
				t.Errorf("%s: %q follows %q", name, tr[k], tr[k-1])
			}
		}
	}
	var lines []string
	for _, e := range ev2.events(t) {
		lines = append(lines, fmt.Sprintf("seq %d %s %s %v", e.Seq, e.Time.Format("15:04:05.000"), e.Type, e.Attrs))
	}
	t.Logf("lb2's event stream:\n  %s", strings.Join(lines, "\n  "))
}
