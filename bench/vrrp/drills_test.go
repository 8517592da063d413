package vrrpbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lab/require"
)

// TestVRRPDrillCycles repeats the crash drill of TestVRRPFailover on one fulcrum pair, many
// times: SIGKILL of lb1's agent and its cable pulled right after one of its adverts (the worst
// case), lb2 takes over, lb1 comes back as a rebooted node and preempts. After every cycle
// exactly one node is master and holds the VIP (steady for 3 adverts: the next cycle's steady
// check), and every probe the client lost lies inside one of the two outage windows (the
// takeover and the preempt-back). It reports the outage distribution (median, p95, max) against
// Master_Down_Interval, and the preempt-back distribution.
//
// Settings: FULCRUM_DRILL_CYCLES (default 200), FULCRUM_BENCH_PROBE, FULCRUM_BIN, and
// FULCRUM_DRILL_OUT (default bin/bench-vrrp-drills.txt at the module's root).
func TestVRRPDrillCycles(t *testing.T) {
	if os.Getenv("FULCRUM_BENCH") != "1" {
		t.Skip("VRRP crash/restart drill cycles (a few minutes, root): set FULCRUM_BENCH=1 or run `make bench`")
	}
	if testing.Short() {
		t.Skip("VRRP drill cycles: skipped with -short")
	}
	require.Root(t)
	require.Kernel(t, require.Bridge)
	require.Binary(t, "ip")
	s := loadSettings(t)
	cycles := 200
	if v := os.Getenv("FULCRUM_DRILL_CYCLES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			t.Fatalf("FULCRUM_DRILL_CYCLES=%q: want 1 to 10000", v)
		}
		cycles = n
	}
	out := os.Getenv("FULCRUM_DRILL_OUT")
	if out == "" {
		out = filepath.Join("..", "..", "bin", "bench-vrrp-drills.txt")
	}
	bin := fulcrumBinary(t, s)
	loadStart := loadavg()
	started := time.Now()
	t.Logf("fulcrum binary: %s; load average at start: %s (%d CPUs)", bin, loadStart, runtime.NumCPU())

	// A cycle takes about 1.5 s; the prober stops by itself well after the last one.
	b := newBed(t, s, time.Duration(cycles)*10*time.Second+2*time.Minute)
	b.impl = newFulcrumPair(t, bin, s.hold, b.lb)
	timing := fmt.Sprintf("SCHED_FIFO priority %d", rtPriority)
	if b.rtErr != nil {
		timing = fmt.Sprintf("normal priority (SCHED_FIFO refused: %v; figures are noisier)", b.rtErr)
	}
	b.impl.start(t, 0)
	b.impl.start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	err := b.steady(ctx)
	cancel()
	b.probe.setActive(false)
	if err != nil {
		t.Fatalf("initial convergence: %v", err)
	}

	var outages, preempts []time.Duration
	var failed, stray, overBound int
	var lost int
	for c := 1; c <= cycles; c++ {
		cycleStart := time.Now()
		r := b.crashRun(t, s, c)
		if r.err == nil {
			// The pair is stable again: lb1 the only master and the only VIP holder.
			ctx, cancel := context.WithTimeout(context.Background(), s.hangStep)
			r.err = b.stableAfter(ctx)
			cancel()
		}
		if r.err == nil {
			// Lost probes: sequence numbers missing between the cycle's answers must lie in
			// the takeover's or the preempt-back's gap.
			n, bad := lostOutside(b.probe.since(cycleStart), r.lastAnswer, r.firstAnswer, r.preemptOK)
			lost += n
			if bad != "" {
				stray++
				r.err = errors.New(bad)
			}
		}
		if r.err != nil {
			failed++
			t.Errorf("cycle %d failed: %v", c, r.err)
			b.recover(t)
		} else {
			outages = append(outages, r.outage)
			if r.preemptOK {
				preempts = append(preempts, r.preempt)
			}
			if r.outage > masterDownInterval+200*time.Millisecond {
				overBound++
			}
			line := fmt.Sprintf("cycle %3d: outage %s (%d probes lost, send pause %s), advert->unplug %s",
				c, ms(r.outage), r.probesLost, short(r.sendStall), short(r.killDelay))
			if g, ok := r.wire.advertGap(); ok {
				line += ", advert gap " + ms(g)
			}
			if r.preemptOK {
				line += "; preempt-back " + ms(r.preempt)
			}
			t.Log(line)
			if r.preemptDetail != "" {
				t.Log("  " + r.preemptDetail)
			}
		}
		old := time.Now().Add(-5 * time.Second)
		b.probe.trim(old)
		b.wire.trim(old)
	}
	if err := b.wire.err(); err != nil {
		t.Errorf("capture: %v", err)
	}

	var sb strings.Builder
	w := func(f string, a ...any) { fmt.Fprintf(&sb, f, a...) }
	w("VRRP crash/restart drill cycles: fulcrum pair, VRRPv3 %s adverts, lb1 200 / lb2 100, preempt\n", advertInterval)
	w("crash = SIGKILL of lb1's agent + cable pulled right after its advert; lb1 back as a rebooted node, preempts\n")
	w("client probes every %s on %s; %d cycles, %d failed, %d with probes lost outside an outage window\n",
		s.probe, timing, cycles, failed, stray)
	w("elapsed %s; load average %s at start, %s at end (%d CPUs)\n\n", time.Since(started).Round(time.Second), loadStart, loadavg(), runtime.NumCPU())
	o, p := summarise(outages), summarise(preempts)
	w("%-26s %5s %9s %9s %9s %9s  %s\n", "handover", "n", "min", "median", "p95", "max", "protocol bound")
	w("%-26s %5d %9s %9s %9s %9s  Master_Down_Interval %s (median %s)\n", "crash (client outage)", o.n, ms(o.min), ms(o.median), ms(o.p95), ms(o.max),
		ms(masterDownInterval), signedMS(o.median-masterDownInterval))
	w("%-26s %5d %9s %9s %9s %9s  none (a planned handover)\n", "preempt-back", p.n, ms(p.min), ms(p.median), ms(p.p95), ms(p.max))
	w("(outages are gaps between answers: one probe interval, %s, means no probe was lost)\n", s.probe)
	w("\n%d probes lost in all, every one inside an outage window; %d outages over Master_Down_Interval + 200ms\n", lost, overBound)
	report := sb.String()
	fmt.Print("\n" + report)
	if err := writeFileAll(out, report); err != nil {
		t.Errorf("writing %s: %v", out, err)
	} else {
		t.Logf("report written to %s", out)
	}
}

// stableAfter checks, after a cycle, that lb1 is the only master and lb2 a backup by their own
// status, that only lb1 holds the VIP, and that this holds for 3 adverts.
func (b *bed) stableAfter(ctx context.Context) error {
	fp, ok := b.impl.(*fulcrumPair)
	if !ok {
		return errors.New("drill cycles need the fulcrum pair")
	}
	end := time.Now().Add(3 * advertInterval)
	for {
		var states [2]string
		for i := range 2 {
			in, err := fp.instanceStatus(ctx, i)
			if err != nil {
				return err
			}
			states[i] = in.State
		}
		var holders []string
		for i := range 2 {
			if b.holdsVIP(i) {
				holders = append(holders, b.lb[i].Name)
			}
		}
		if states != [2]string{"master", "backup"} || !slices.Equal(holders, []string{"lb1"}) {
			// The preempt-back may still be settling: lb2 leaving master, its VIP going.
			if ctx.Err() != nil {
				return fmt.Errorf("not stable: lb1 %s, lb2 %s, VIP held by %v", states[0], states[1], holders)
			}
			end = time.Now().Add(3 * advertInterval)
		} else if time.Now().After(end) {
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// lostOutside returns how many probes are missing from answers (by sequence number) and, if
// any lies outside both the takeover's gap (lastAnswer, firstAnswer) and the preempt-back's gap
// (the largest gap after firstAnswer, when there was one), a description.
func lostOutside(answers []answer, lastAnswer, firstAnswer time.Time, preemptOK bool) (int, string) {
	if len(answers) < 2 {
		return 0, ""
	}
	a := slices.Clone(answers)
	slices.SortFunc(a, func(x, y answer) int { return int(x.seq) - int(y.seq) })
	lost := 0
	var bad []string
	for i := 1; i < len(a); i++ {
		missing := int(a[i].seq) - int(a[i-1].seq) - 1
		if missing <= 0 {
			continue
		}
		lost += missing
		prev, next := a[i-1], a[i]
		// Inside the takeover: between the last answer before it and the new master's first.
		if !prev.at.Before(lastAnswer) && !next.at.After(firstAnswer) {
			continue
		}
		// Inside the preempt-back: after the takeover, lb2 answered before and lb1 after.
		if preemptOK && !prev.at.Before(firstAnswer) && prev.from == 2 && next.from == 1 {
			continue
		}
		bad = append(bad, fmt.Sprintf("seq %d-%d (between lb%d's answer at %s and lb%d's at %s)",
			prev.seq+1, next.seq-1, prev.from, prev.at.Format("15:04:05.000000"), next.from, next.at.Format("15:04:05.000000")))
	}
	if len(bad) > 0 {
		return lost, fmt.Sprintf("probes lost outside the outage windows (takeover %s-%s): %s",
			lastAnswer.Format("15:04:05.000000"), firstAnswer.Format("15:04:05.000000"), strings.Join(bad, "; "))
	}
	return lost, ""
}

func writeFileAll(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.WriteString(f, content)
	return errors.Join(err, f.Close())
}
