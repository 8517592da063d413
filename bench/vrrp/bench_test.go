package vrrpbench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/fulcrum-lb/fulcrum/lab/netns"
	"github.com/fulcrum-lb/fulcrum/lab/require"
)

// The topology and the VRRP instance, the same for both implementations.
const (
	instance       = "VI_1"
	vrid           = 51
	advertInterval = 100 * time.Millisecond
	protoVRRP      = 112
)

var (
	priorities = [2]int{200, 100} // lb1, lb2
	lbAddrs    = [2]string{"192.0.2.11/24", "192.0.2.12/24"}
	lbIPs      = [2]netip.Addr{netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("192.0.2.12")}
	clientAddr = "192.0.2.100/24"
	vipPrefix  = netip.MustParsePrefix("192.0.2.50/24")
	vip        = vipPrefix.Addr()

	// skewTime and masterDownInterval of the backup (RFC 5798 §6.1), the protocol bounds.
	skewTime           = time.Duration(256-priorities[1]) * advertInterval / 256
	masterDownInterval = 3*advertInterval + skewTime
)

// settings are the benchmark's knobs (see the package documentation).
type settings struct {
	runs     int
	probe    time.Duration
	budget   time.Duration
	hold     time.Duration
	bin      string
	out      string
	only     map[string]bool // scenario labels to run; all when empty
	hangStep time.Duration   // bound of each wait inside a run
}

func loadSettings(t *testing.T) settings {
	s := settings{runs: 20, probe: 2 * time.Millisecond, budget: 8 * time.Minute, hold: time.Second, hangStep: 10 * time.Second}
	if v := os.Getenv("FULCRUM_BENCH_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			t.Fatalf("FULCRUM_BENCH_RUNS=%q: want 1 to 1000", v)
		}
		s.runs = n
	}
	dur := func(name string, dst *time.Duration, lo, hi time.Duration) {
		if v := os.Getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < lo || d > hi {
				t.Fatalf("%s=%q: want a duration from %v to %v", name, v, lo, hi)
			}
			*dst = d
		}
	}
	dur("FULCRUM_BENCH_PROBE", &s.probe, time.Millisecond, 5*time.Millisecond)
	dur("FULCRUM_BENCH_BUDGET", &s.budget, 10*time.Second, time.Hour)
	dur("FULCRUM_BENCH_HOLD", &s.hold, 500*time.Millisecond, 10*time.Second)
	s.bin = os.Getenv("FULCRUM_BIN")
	s.out = os.Getenv("FULCRUM_BENCH_OUT")
	if v := os.Getenv("FULCRUM_BENCH_ONLY"); v != "" {
		s.only = map[string]bool{}
		for _, l := range strings.Split(v, ",") {
			l = strings.TrimSpace(l)
			if !slices.ContainsFunc(rows, func(r row) bool { return r.impl+" "+r.scenario == l }) {
				t.Fatalf("FULCRUM_BENCH_ONLY: unknown scenario %q (want a comma-separated list of: fulcrum crash, keepalived crash, fulcrum drill, keepalived drill)", l)
			}
			s.only[l] = true
		}
	}
	return s
}

// fulcrumBinary returns FULCRUM_BIN, or builds the binary into a temporary directory.
func fulcrumBinary(t *testing.T, s settings) string {
	if s.bin != "" {
		abs, err := filepath.Abs(s.bin)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(abs); err != nil {
			t.Fatalf("FULCRUM_BIN: %v", err)
		}
		return abs
	}
	bin := filepath.Join(t.TempDir(), "fulcrum")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/fulcrum-lb/fulcrum/cmd/fulcrum")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building fulcrum: %v\n%s", err, out)
	}
	return bin
}

// bed is one test bed: a LAN with lb1, lb2 and the client, the echo service on both lbs, the
// client's prober and capture, and a VRRP implementation on the lbs.
type bed struct {
	impl   pair
	lan    *netns.LAN
	lb     [2]*netns.Host
	client *netns.Host
	probe  *prober
	wire   *capture
	rtErr  error // the timing threads could not get SCHED_FIFO
}

func newBed(t *testing.T, s settings, maxRun time.Duration) *bed {
	b := &bed{lan: netns.NewLAN(t, netns.Options{})}
	b.lb[0] = b.lan.AddHost("lb1", lbAddrs[0])
	b.lb[1] = b.lan.AddHost("lb2", lbAddrs[1])
	b.client = b.lan.AddHost("client", clientAddr)
	e1 := startEcho(t, b.lb[0], vip, 1)
	e2 := startEcho(t, b.lb[1], vip, 2)
	b.probe = startProber(t, b.client, vip, s.probe, maxRun)
	b.wire = startCapture(t, b.client)
	b.rtErr = errors.Join(e1.rtErr, e2.rtErr, b.probe.rtErr, b.wire.rtErr)
	return b
}

// holdsVIP reports whether lb i has the VIP on an interface.
func (b *bed) holdsVIP(i int) bool {
	ok, err := b.lb[i].HasAddr(vip)
	return ok && err == nil
}

// steady waits for the state every run starts from: lb1 master, lb2 backup without the VIP,
// the client answered by lb1 (the prober is switched on here), then 3 more adverts of lb1.
func (b *bed) steady(ctx context.Context) error {
	if err := b.impl.awaitState(ctx, 0, "master"); err != nil {
		return err
	}
	if err := b.impl.awaitState(ctx, 1, "backup"); err != nil {
		return err
	}
	if err := poll(ctx, func() (bool, error) { return !b.holdsVIP(1), nil }); err != nil {
		return fmt.Errorf("lb2 keeps the VIP: %w", err)
	}
	b.probe.setActive(true)
	if err := b.probe.waitSteady(ctx, 1, 25); err != nil {
		return err
	}
	after := time.Now()
	for range 3 {
		f, err := b.wire.waitAdvert(ctx, lbIPs[0], after)
		if err != nil {
			return err
		}
		after = f.at
	}
	return nil
}

// restoreLB1 brings lb1 back as a rebooted node: daemon gone, stale VIP removed, neighbour
// table empty, cable in, daemon started.
func (b *bed) restoreLB1(t *testing.T) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if b.impl.running(0) {
		if err := b.impl.crash(0); err != nil && !errors.Is(err, syscall.ESRCH) {
			return err
		}
		if err := b.impl.waitExit(ctx, 0); err != nil {
			return err
		}
	}
	if b.holdsVIP(0) {
		if err := b.lb[0].DelAddr(b.lb[0].Iface, vipPrefix.String()); err != nil {
			return fmt.Errorf("lb1: remove the stale VIP: %w", err)
		}
	}
	if err := flushNeighbours(b.lb[0]); err != nil {
		return fmt.Errorf("lb1: %w", err)
	}
	if err := b.lan.Plug(b.lb[0]); err != nil {
		return err
	}
	b.impl.start(t, 0)
	return nil
}

// flushNeighbours empties h's IPv4 neighbour table on its first interface, as a reboot would.
// Without it the crash model leaves an artefact: an answer to a probe that arrived just before
// the cable was pulled creates an INCOMPLETE entry for the client whose ARP requests go nowhere
// (no carrier), and once lb1 is back its answers wait in that entry for the next
// retransmission, up to a second (net.ipv4.neigh.*.retrans_time).
func flushNeighbours(h *netns.Host) error {
	return h.Netlink(func(nl *netlink.Handle) error {
		l, err := nl.LinkByName(h.Iface)
		if err != nil {
			return err
		}
		neighs, err := nl.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for i := range neighs {
			if err := nl.NeighDel(&neighs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
				return fmt.Errorf("flush neighbour %s: %w", neighs[i].IP, err)
			}
		}
		return nil
	})
}

// recover puts a bed back into its steady state after a failed run, or fails the test.
func (b *bed) recover(t *testing.T) {
	t.Helper()
	t.Logf("%s: recovering the bed", b.impl.name())
	if !b.impl.running(1) {
		b.impl.start(t, 1)
	}
	if err := b.restoreLB1(t); err != nil {
		t.Fatalf("%s: recovery: %v", b.impl.name(), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := b.steady(ctx); err != nil {
		t.Fatalf("%s: recovery: %v", b.impl.name(), err)
	}
	b.probe.setActive(false)
}

// finish computes the client and wire figures of a handover at t0 (lb1 -> lb2) and of the
// preempt-back after it.
func (b *bed) finish(r *run, t0 time.Time) {
	answers := b.probe.since(t0.Add(-time.Second))
	gap, last, first, ok := handoverGap(answers, t0, 2)
	if !ok {
		r.err = errors.Join(r.err, errors.New("no client-visible handover to lb2 in the answers"))
		return
	}
	r.outage, r.probesLost = gap, int(first.seq-last.seq)-1
	r.lastAnswer, r.firstAnswer = last.at, first.at
	r.sendStall = b.probe.maxSendGap(last.at.Add(-20*time.Millisecond), first.at)
	frames := b.wire.between(t0.Add(-time.Second), time.Now())
	r.wire = findHandover(frames, t0, lbIPs[0], lbIPs[1], vip, b.lb[1].MAC)
	var plast, pfirst answer
	r.preempt, plast, pfirst, r.preemptOK = handoverGap(answers, first.at, 1)
	if r.preemptOK && r.preempt > 10*b.probe.interval {
		// An outage where none is expected: keep what the wire showed around it.
		var sb strings.Builder
		for _, f := range b.wire.between(plast.at.Add(-150*time.Millisecond), pfirst.at.Add(5*time.Millisecond)) {
			fmt.Fprintf(&sb, "\n      %s %s", f.at.Sub(plast.at).Round(10*time.Microsecond), f)
		}
		r.preemptDetail = fmt.Sprintf("preempt-back outage %s; frames relative to the last answer (from lb%d), first answer from lb1 at +%s:%s",
			ms(r.preempt), plast.from, pfirst.at.Sub(plast.at).Round(10*time.Microsecond), sb.String())
	}
}

// crashRun: SIGKILL of lb1's daemon and its cable pulled right after one of its adverts; lb2
// takes over after Master_Down_Interval; lb1 comes back and preempts.
func (b *bed) crashRun(t *testing.T, s settings, round int) (r run) {
	r = run{impl: b.impl.name(), scenario: "crash", round: round}
	defer b.probe.setActive(false)
	ctx, cancel := context.WithTimeout(context.Background(), s.hangStep)
	defer cancel()
	if err := b.steady(ctx); err != nil {
		r.err = fmt.Errorf("before the crash: %w", err)
		return r
	}
	tr, err := b.wire.onAdvert(ctx, lbIPs[0], func() error {
		if err := b.impl.crash(0); err != nil {
			return err
		}
		return b.lan.Unplug(b.lb[0])
	})
	if err != nil {
		r.err = fmt.Errorf("crash: %w", err)
		return r
	}
	t0 := tr.start
	r.killDelay = tr.end.Sub(tr.advert.at)

	ctx2, cancel2 := context.WithTimeout(context.Background(), s.hangStep)
	defer cancel2()
	first, err := b.probe.waitAnswer(ctx2, 2, t0)
	if err != nil {
		r.err = fmt.Errorf("takeover by lb2: %w", err)
		return r
	}
	if d, ok, err := b.impl.takeover(ctx2, 1, t0); err != nil {
		r.err = err
		return r
	} else if ok {
		r.agentGARP, r.agentGARPOK = d, true
	}
	if err := b.restoreLB1(t); err != nil {
		r.err = err
		return r
	}
	ctx3, cancel3 := context.WithTimeout(context.Background(), s.hangStep)
	defer cancel3()
	if _, err := b.probe.waitAnswer(ctx3, 1, first.at); err != nil {
		r.err = fmt.Errorf("preempt-back by lb1: %w", err)
		return r
	}
	time.Sleep(50 * time.Millisecond) // the last frames reach the capture
	b.finish(&r, t0)
	return r
}

// drillRun: the master hands over on purpose (fulcrum failover -wait; keepalived SIGTERM); lb2
// takes over after Skew_Time; after the hold lb1 preempts back.
func (b *bed) drillRun(t *testing.T, s settings, round int) (r run) {
	r = run{impl: b.impl.name(), scenario: "drill", round: round}
	defer b.probe.setActive(false)
	ctx, cancel := context.WithTimeout(context.Background(), s.hangStep)
	defer cancel()
	if err := b.steady(ctx); err != nil {
		r.err = fmt.Errorf("before the drill: %w", err)
		return r
	}
	t0 := time.Now()
	done := make(chan drillResult, 1)
	dctx, dcancel := context.WithTimeout(context.Background(), s.hangStep)
	defer dcancel()
	go func() { done <- b.impl.drill(dctx, 0) }()
	first, werr := b.probe.waitAnswer(ctx, 2, t0)
	dr := <-done // bounded by dctx (fulcrum) and netns.StopGrace (keepalived)
	if dr.err != nil {
		r.err = fmt.Errorf("drill: %v\n%s", dr.err, dr.output)
		return r
	}
	if werr != nil {
		r.err = fmt.Errorf("takeover by lb2: %w", werr)
		return r
	}
	r.cliGap = dr.advertGap
	if d, ok, err := b.impl.takeover(ctx, 1, t0); err != nil {
		r.err = err
		return r
	} else if ok {
		r.agentGARP, r.agentGARPOK = d, true
	}
	time.Sleep(time.Until(t0.Add(s.hold)))
	b.impl.afterDrill(t, 0)
	ctx3, cancel3 := context.WithTimeout(context.Background(), s.hangStep)
	defer cancel3()
	if _, err := b.probe.waitAnswer(ctx3, 1, first.at); err != nil {
		r.err = fmt.Errorf("preempt-back by lb1: %w", err)
		return r
	}
	time.Sleep(50 * time.Millisecond)
	b.finish(&r, t0)
	return r
}

func logRun(t *testing.T, r run) {
	t.Helper()
	label := fmt.Sprintf("round %2d", r.round)
	if r.round == 0 {
		label = "warm-up "
	}
	if r.err != nil {
		t.Logf("%-10s %-5s %s: FAILED: %v", r.impl, r.scenario, label, r.err)
		return
	}
	line := fmt.Sprintf("%-10s %-5s %s: outage %s (%d probes lost, longest send pause %s)", r.impl, r.scenario, label, ms(r.outage), r.probesLost, short(r.sendStall))
	if g, ok := r.wire.advertGap(); ok {
		line += ", advert gap " + ms(g)
		if r.wire.lastOldPrio == 0 {
			line += " (from the priority-0 advert)"
		}
	}
	if g, ok := r.wire.advertToGARP(); ok {
		line += ", 1st advert->GARP " + short(g)
	}
	if r.agentGARPOK {
		line += ", agent VIP->GARP " + short(r.agentGARP)
	}
	if r.cliGap != 0 {
		line += ", failover -wait gap " + ms(r.cliGap)
	}
	if r.scenario == "crash" {
		line += ", advert->unplug " + short(r.killDelay)
	}
	if r.preemptOK {
		line += "; preempt-back " + ms(r.preempt)
	}
	t.Log(line)
	if r.preemptDetail != "" {
		t.Log("  " + r.preemptDetail)
	}
}

// TestVRRPFailover is the benchmark; see the package documentation.
func TestVRRPFailover(t *testing.T) {
	if os.Getenv("FULCRUM_BENCH") != "1" {
		t.Skip("VRRP failover benchmark (several minutes, root, keepalived): set FULCRUM_BENCH=1 or run `make bench`")
	}
	if testing.Short() {
		t.Skip("VRRP failover benchmark: skipped with -short")
	}
	require.Root(t)
	require.Kernel(t, require.Bridge)
	require.Binary(t, "ip")
	require.Binary(t, "keepalived")
	s := loadSettings(t)
	rep := &report{wanted: s.runs, probe: s.probe, hold: s.hold, loadStart: loadavg(), cpus: runtime.NumCPU(), started: time.Now()}
	bin := fulcrumBinary(t, s)
	t.Logf("fulcrum binary: %s", bin)
	t.Logf("load average at start: %s (%d CPUs)", rep.loadStart, rep.cpus)

	// The probers stop by themselves a little after the budget, whatever happens here.
	maxRun := s.budget + 2*time.Minute
	fb := newBed(t, s, maxRun)
	fb.impl = newFulcrumPair(t, bin, s.hold, fb.lb)
	kb := newBed(t, s, maxRun)
	kb.impl = &keepalivedPair{hosts: kb.lb}
	rep.timing = fmt.Sprintf("SCHED_FIFO priority %d", rtPriority)
	if err := errors.Join(fb.rtErr, kb.rtErr); err != nil {
		rep.timing = fmt.Sprintf("normal priority (SCHED_FIFO refused: %v; figures are noisier)", err)
	}
	t.Logf("timing threads (probe sender, echo servers, capture): %s", rep.timing)
	for _, b := range []*bed{fb, kb} {
		b.impl.start(t, 0)
		b.impl.start(t, 1)
	}
	for _, b := range []*bed{fb, kb} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := b.steady(ctx)
		cancel()
		b.probe.setActive(false)
		if err != nil {
			t.Fatalf("%s: initial convergence: %v", b.impl.name(), err)
		}
	}

	type scenario struct {
		key string
		b   *bed
		run func(*testing.T, settings, int) run
	}
	var order []scenario
	for _, sc := range []scenario{{"fulcrum crash", fb, fb.crashRun}, {"keepalived crash", kb, kb.crashRun}, {"fulcrum drill", fb, fb.drillRun}, {"keepalived drill", kb, kb.drillRun}} {
		if len(s.only) == 0 || s.only[sc.key] {
			order = append(order, sc)
		}
	}
	var roundTime time.Duration
	for round := 0; round <= s.runs; round++ {
		roundStart := time.Now()
		if round > 1 && time.Since(rep.started)+roundTime > s.budget {
			rep.budgetStopped = fmt.Sprintf("the %v budget (FULCRUM_BENCH_BUDGET) ran out after %d of %d rounds: n < %d", s.budget, round-1, s.runs, s.runs)
			t.Log(rep.budgetStopped)
			break
		}
		for _, sc := range order {
			r := sc.run(t, s, round)
			logRun(t, r)
			rep.runs = append(rep.runs, r)
			if r.err != nil {
				if round > 0 {
					t.Errorf("%s %s round %d failed: %v", r.impl, r.scenario, round, r.err)
				}
				sc.b.recover(t)
			}
			old := time.Now().Add(-5 * time.Second)
			sc.b.probe.trim(old)
			sc.b.wire.trim(old)
		}
		roundTime = max(roundTime, time.Since(roundStart))
	}
	for _, b := range []*bed{fb, kb} {
		if err := b.wire.err(); err != nil {
			t.Errorf("%s: capture: %v", b.impl.name(), err)
		}
	}
	rep.loadEnd = loadavg()
	rep.elapsed = time.Since(rep.started)
	rep.write(os.Stdout)
	if s.out != "" {
		f, err := os.Create(s.out)
		if err != nil {
			t.Errorf("FULCRUM_BENCH_OUT: %v", err)
			return
		}
		rep.write(f)
		if err := f.Close(); err != nil {
			t.Errorf("FULCRUM_BENCH_OUT: %v", err)
		}
	}
}
