package vrrpbench

import (
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// stats summarises durations.
type stats struct {
	n                     int
	min, median, p95, max time.Duration
}

// summarise computes n, min, median (the mean of the middle two for an even n), p95 (nearest
// rank) and max.
func summarise(ds []time.Duration) stats {
	if len(ds) == 0 {
		return stats{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	rank := int(math.Ceil(0.95*float64(n))) - 1
	return stats{n: n, min: s[0], median: med, p95: s[max(rank, 0)], max: s[n-1]}
}

// ms formats a duration in milliseconds with one decimal.
func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

// signedMS formats a difference with its sign.
func signedMS(d time.Duration) string {
	return fmt.Sprintf("%+.1fms", float64(d)/float64(time.Millisecond))
}

// us formats a short duration in microseconds when below a millisecond.
func short(d time.Duration) string {
	if d > -time.Millisecond && d < time.Millisecond {
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	}
	return ms(d)
}

// run is one measured handover and what came with it.
type run struct {
	impl, scenario string
	round          int // 0 is the warm-up
	err            error

	outage      time.Duration // client-visible, the main figure
	preempt     time.Duration // client-visible, lb1 taking the role back
	preemptOK   bool
	wire        wireHandover
	agentGARP   time.Duration // the new master's own VIP add -> first GARP (fulcrum)
	agentGARPOK bool
	cliGap      time.Duration // fulcrum failover -wait's advert gap (resigning side)
	killDelay   time.Duration // crash: the advert it was timed on -> cable pulled
	probesLost  int           // probes sent in the outage and not answered (seq gap)
	// sendStall is the prober's longest pause between two probes around the outage.
	sendStall time.Duration
	// lastAnswer and firstAnswer bound the outage (client receive timestamps).
	lastAnswer, firstAnswer time.Time
	// preemptDetail describes an unexpected preempt-back outage (frames around it).
	preemptDetail string
}

func (r run) key() string { return r.impl + " " + r.scenario }

// row is one line of the main table.
type row struct {
	impl, scenario, label string
	bound                 time.Duration
	ref                   string // the key (impl scenario) of the keepalived row to compare with; "" for keepalived rows
}

var rows = []row{
	{impl: "fulcrum", scenario: "crash", label: "fulcrum crash", bound: masterDownInterval, ref: "keepalived crash"},
	{impl: "keepalived", scenario: "crash", label: "keepalived crash", bound: masterDownInterval},
	{impl: "fulcrum", scenario: "drill", label: "fulcrum drill", bound: skewTime, ref: "keepalived drill"},
	{impl: "keepalived", scenario: "drill", label: "keepalived stop-drill", bound: skewTime},
}

// report is everything printed at the end.
type report struct {
	runs          []run
	wanted        int
	probe         time.Duration
	hold          time.Duration
	loadStart     string
	loadEnd       string
	cpus          int
	started       time.Time
	elapsed       time.Duration
	budgetStopped string
	timing        string // the timing threads' scheduling
}

// collect returns the field f of the counted (non-warm-up, successful) runs of key.
func (rep *report) collect(key string, f func(run) (time.Duration, bool)) []time.Duration {
	var out []time.Duration
	for _, r := range rep.runs {
		if r.round == 0 || r.err != nil || r.key() != key {
			continue
		}
		if d, ok := f(r); ok {
			out = append(out, d)
		}
	}
	return out
}

func (rep *report) failures(key string) int {
	n := 0
	for _, r := range rep.runs {
		if r.round > 0 && r.err != nil && r.key() == key {
			n++
		}
	}
	return n
}

func outageOf(r run) (time.Duration, bool) { return r.outage, true }

// dash is a table cell for a missing figure.
const dash = "-"

// cell formats the median and max of ds as "median / max", or dash.
func cell(ds []time.Duration, f func(time.Duration) string) string {
	s := summarise(ds)
	if s.n == 0 {
		return dash
	}
	return f(s.median) + " / " + f(s.max)
}

func (rep *report) write(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("\n==== VRRP failover benchmark: fulcrum vs keepalived 2.2.7 ====\n")
	p("VRRPv3, advert interval %v, lb1 priority %d, lb2 (backup) priority %d, VIP %s, preemption on;\n",
		advertInterval, priorities[0], priorities[1], vipPrefix)
	p("the client probes the VIP every %v (UDP echo, kernel receive timestamps); drill hold %v\n", rep.probe, rep.hold)
	p("timing threads (probe sender, echo servers, capture and crash trigger): %s\n", rep.timing)
	p("bounds: Master_Down_Interval = 3*%v + (256-%d)*%v/256 = %s; Skew_Time = %s\n",
		advertInterval, priorities[1], advertInterval, ms(masterDownInterval), ms(skewTime))
	p("runs per scenario: %d wanted, plus 1 warm-up round not counted; elapsed %v\n", rep.wanted, rep.elapsed.Round(time.Second))
	p("load average (1/5/15 min) at start: %s   at end: %s   (%d CPUs, shared with other work)\n", rep.loadStart, rep.loadEnd, rep.cpus)
	if rep.budgetStopped != "" {
		p("NOTE: %s\n", rep.budgetStopped)
	}

	p("\nClient-visible outage (last answer before the handover -> first answer from the new master):\n")
	p("%-22s %4s %5s %9s %9s %9s %9s %13s %14s\n", "scenario", "n", "fail", "median", "p95", "max", "bound", "median-bound", "vs keepalived")
	medians := map[string]time.Duration{}
	for _, rw := range rows {
		key := rw.impl + " " + rw.scenario
		medians[key] = summarise(rep.collect(key, outageOf)).median
	}
	for _, rw := range rows {
		key := rw.impl + " " + rw.scenario
		s := summarise(rep.collect(key, outageOf))
		if s.n == 0 {
			p("%-22s %4d %5d %9s\n", rw.label, 0, rep.failures(key), dash)
			continue
		}
		vs := "(reference)"
		if rw.ref != "" {
			vs = dash
			if km := medians[rw.ref]; km > 0 {
				vs = fmt.Sprintf("%.3fx", float64(s.median)/float64(km))
			}
		}
		p("%-22s %4d %5d %9s %9s %9s %9s %13s %14s\n", rw.label, s.n, rep.failures(key), ms(s.median), ms(s.p95), ms(s.max),
			ms(rw.bound), signedMS(s.median-rw.bound), vs)
	}
	p("vs keepalived: fulcrum's median over keepalived's for the same kind of handover (below 1: fulcrum is faster).\n")
	p("Resolution: one probe interval (%v). The gap between answers over-states the real outage by one interval on\n", rep.probe)
	p("average (the probes' phase against the event is random), so about %v of median-bound is the instrument.\n", rep.probe)

	p("\nWhere the outage goes (medians; client capture and client answers, one clock):\n")
	p("%-22s %16s %12s %16s %16s %12s %12s\n", "scenario", "last answer->", "advert gap", "new 1st advert", "1st GARP->", "sum", "outage")
	p("%-22s %16s %12s %16s %16s %12s %12s\n", "", "old last advert", "", "->1st GARP", "1st answer", "", "(median)")
	for _, rw := range rows {
		key := rw.impl + " " + rw.scenario
		comp := []func(run) (time.Duration, bool){
			func(r run) (time.Duration, bool) { return r.wire.lastOld.Sub(r.lastAnswer), !r.wire.lastOld.IsZero() },
			func(r run) (time.Duration, bool) { return r.wire.advertGap() },
			func(r run) (time.Duration, bool) { return r.wire.advertToGARP() },
			func(r run) (time.Duration, bool) {
				return r.firstAnswer.Sub(r.wire.firstGARP), !r.wire.firstGARP.IsZero()
			},
		}
		cells := make([]string, len(comp))
		var sum time.Duration
		complete := true
		for c, f := range comp {
			s := summarise(rep.collect(key, f))
			if s.n == 0 {
				cells[c], complete = dash, false
				continue
			}
			cells[c], sum = signedMS(s.median), sum+s.median
		}
		total, out := dash, dash
		if complete {
			total = ms(sum)
		}
		if m := medians[key]; m > 0 {
			out = ms(m)
		}
		p("%-22s %16s %12s %16s %16s %12s %12s\n", rw.label, cells[0], cells[1], cells[2], cells[3], total, out)
	}
	p("The four parts add up to the outage run by run (their medians only roughly). last answer->old last advert:\n")
	p("in a crash within a probe interval of zero (the crash follows an advert by well under a millisecond); in a drill\n")
	p("the time from the old master's VIP removal (its last answer) to its priority-0 advert on the wire. 1st GARP->1st\n")
	p("answer: the wait for the client's next probe (up to one interval) and the new master resolving the client's MAC.\n")
	p("\nPreempt-back outage (lb1 returns and takes the role back from lb2):\n")
	p("%-22s %4s %9s %9s %9s %9s\n", "after", "n", "min", "median", "p95", "max")
	for _, rw := range rows {
		s := summarise(rep.collect(rw.impl+" "+rw.scenario, func(r run) (time.Duration, bool) { return r.preempt, r.preemptOK }))
		if s.n == 0 {
			p("%-22s %4d\n", rw.label, 0)
			continue
		}
		p("%-22s %4d %9s %9s %9s %9s\n", rw.label, s.n, ms(s.min), ms(s.median), ms(s.p95), ms(s.max))
	}
	p("After a crash lb1 comes back as a rebooted node and preempts after its own Master_Down_Interval; after a drill,\n")
	p("once the %v hold is over. About one probe interval means no probe went unanswered.\n", rep.hold)

	p("\nGARP and advert timing, median / max:\n")
	p("%-22s %19s %19s %19s %19s %19s\n", "scenario", "advert gap (wire)", "1st advert->GARP", "agent VIP add->GARP", "failover -wait gap", "advert->unplug")
	for _, rw := range rows {
		key := rw.impl + " " + rw.scenario
		gap := rep.collect(key, func(r run) (time.Duration, bool) { return r.wire.advertGap() })
		garp := rep.collect(key, func(r run) (time.Duration, bool) { return r.wire.advertToGARP() })
		agentG := rep.collect(key, func(r run) (time.Duration, bool) { return r.agentGARP, r.agentGARPOK })
		cli := rep.collect(key, func(r run) (time.Duration, bool) { return r.cliGap, r.cliGap != 0 })
		kill := rep.collect(key, func(r run) (time.Duration, bool) { return r.killDelay, rw.scenario == "crash" })
		p("%-22s %19s %19s %19s %19s %19s\n", rw.label, cell(gap, ms), cell(garp, short), cell(agentG, short), cell(cli, ms), cell(kill, short))
	}
	p("advert gap: the old master's last advert (the priority-0 one in a drill) -> the new master's first, on the wire.\n")
	p("1st advert->GARP: the new master's first advert -> its first gratuitous ARP for the VIP, on the wire (negative:\n")
	p("GARP first). agent VIP add->GARP: the new master's own status (master.vips_added -> master.first_announce);\n")
	p("keepalived reports no such figure. failover -wait gap: what `fulcrum failover -wait` printed on the old master.\n")
	p("advert->unplug: how long after the advert it was timed on the crash took effect.\n")

	var errs []string
	for _, r := range rep.runs {
		if r.err != nil {
			errs = append(errs, fmt.Sprintf("  %s round %d: %v", r.key(), r.round, r.err))
		}
	}
	if len(errs) > 0 {
		p("\nFailed runs (not in the figures):\n%s\n", strings.Join(errs, "\n"))
	}
	p("\n")
}

// loadavg returns the first three fields of /proc/loadavg.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
