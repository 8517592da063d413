// Command hcbench is the child process of the health-check benchmark (bench/health): either
// the checker, health.Scheduler running N TCP checks as the agent runs them, or the listener
// side, N listening sockets that record when each target is checked.
//
//	hcbench check  -n N [-interval 1s] [-timeout 1s] [-max-concurrent 256] [-slack D] [-dialer] [-cpuprofile FILE]
//	hcbench listen -n N
//
// Target i is 192.0.2.(1+i/1000):(20000+i%1000), so up to 254,000 targets on 254 addresses
// that the benchmark puts on an interface of its network namespace.
//
// check prints "ready" once its checks are loaded and runs until SIGTERM or SIGINT, then prints
// one line "result {json}" with the scheduler's own view (checks run, targets up and down).
//
// listen prints "ready" once all sockets listen, then reads commands on stdin, one a line:
// "count" answers "count N", the number of targets checked at least once; "stats FROM TO"
// (Unix nanoseconds) closes the sockets, answers "stats {json}" with the checks seen in
// [FROM, TO] and the drift of the intervals between consecutive checks of a target there
// (|interval - 1s|), and exits. Stdin closing ends it as well.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fulcrum-lb/fulcrum/health"
)

// Target returns target i.
func Target(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i/1000)}), uint16(20000+i%1000))
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: hcbench check|listen [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "check":
		err = runCheck(os.Args[2:])
	case "listen":
		err = runListen(os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "hcbench: unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hcbench:", err)
		os.Exit(1)
	}
}

// raiseNoFile lifts RLIMIT_NOFILE so that n sockets fit.
func raiseNoFile(n int) error {
	want := uint64(n + 1024)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= want {
		return nil
	}
	lim.Cur = want
	if lim.Max < want {
		lim.Max = want
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", want, err)
	}
	return nil
}

// CheckResult is what check prints when it stops.
type CheckResult struct {
	Checks  uint64 `json:"checks"`
	Up      int    `json:"up"`
	Down    int    `json:"down"`
	Changes int64  `json:"changes"`
	// FirstDown is the last result of one check that is down, if any.
	FirstDown string `json:"first_down,omitempty"`
}

func runCheck(args []string) error {
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	n := fs.Int("n", 10000, "number of checks")
	interval := fs.Duration("interval", time.Second, "check interval")
	timeout := fs.Duration("timeout", time.Second, "connect timeout")
	maxConc := fs.Int("max-concurrent", 0, "Scheduler MaxConcurrent (0: the package default)")
	slack := fs.Duration("slack", 0, "Scheduler Slack (0: the package default)")
	dialer := fs.Bool("dialer", false, "run the checks on the workers with a net.Dialer each (Options.NoConnectEngine)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	_ = fs.Parse(args)
	if err := raiseNoFile(*n); err != nil {
		return err
	}
	var changes atomic.Int64
	s := health.New(health.Options{
		MaxConcurrent:   *maxConc,
		NoConnectEngine: *dialer,
		Slack:           *slack,
		Sink:            health.SinkFunc(func(health.Change) { changes.Add(1) }),
	})
	specs := make([]health.Spec, *n)
	for i := range specs {
		specs[i] = health.Spec{
			ID:       fmt.Sprintf("rs%d", i),
			Probe:    health.TCP{Addr: Target(i)},
			Interval: *interval,
			Timeout:  *timeout,
			Initial:  health.StateUp, // as keepalived: real servers count as up until a check fails
		}
	}
	if err := s.Update(specs); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Println("ready")
	if err := s.Run(ctx); err != nil {
		return err
	}
	var res CheckResult
	res.Changes = changes.Load()
	for _, st := range s.Statuses() {
		res.Checks += st.Checks
		if st.State == health.StateUp {
			res.Up++
		} else {
			res.Down++
			if res.FirstDown == "" {
				res.FirstDown = fmt.Sprintf("%s: %+v", st.ID, st.Last)
			}
		}
	}
	b, _ := json.Marshal(res)
	fmt.Printf("result %s\n", b)
	return nil
}

// ListenStats is the listener's answer to "stats".
type ListenStats struct {
	Targets       int   `json:"targets"`
	Checked       int   `json:"checked"`         // targets checked at least once in the window
	Checks        int   `json:"checks"`          // accepts in the window
	Intervals     int   `json:"intervals"`       // intervals with both ends in the window
	DriftP50Us    int64 `json:"drift_p50_us"`    // |interval - 1s|
	DriftP99Us    int64 `json:"drift_p99_us"`    //
	DriftMaxUs    int64 `json:"drift_max_us"`    //
	Over100ms     int   `json:"over_100ms"`      // intervals drifting more than 100 ms
	IntervalMinUs int64 `json:"interval_min_us"` //
	IntervalMaxUs int64 `json:"interval_max_us"` //
}

func runListen(args []string) error {
	fs := flag.NewFlagSet("listen", flag.ExitOnError)
	n := fs.Int("n", 10000, "number of listeners")
	interval := fs.Duration("interval", time.Second, "the checks' interval, for the drift")
	_ = fs.Parse(args)
	if err := raiseNoFile(*n); err != nil {
		return err
	}
	lns := make([]net.Listener, *n)
	times := make([][]int64, *n)
	var checked atomic.Int64
	var wg sync.WaitGroup
	for i := range lns {
		ln, err := net.Listen("tcp", Target(i).String())
		if err != nil {
			for _, l := range lns[:i] {
				l.Close()
			}
			return err
		}
		lns[i] = ln
	}
	for i, ln := range lns {
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				now := time.Now().UnixNano()
				c.Close()
				if len(times[i]) == 0 {
					checked.Add(1)
				}
				times[i] = append(times[i], now)
			}
		})
	}
	closeAll := func() {
		for _, l := range lns {
			l.Close()
		}
		wg.Wait()
	}
	defer closeAll()
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 1 && f[0] == "count":
			fmt.Printf("count %d\n", checked.Load())
		case len(f) == 3 && f[0] == "stats":
			from, err1 := strconv.ParseInt(f[1], 10, 64)
			to, err2 := strconv.ParseInt(f[2], 10, 64)
			if err1 != nil || err2 != nil {
				return fmt.Errorf("bad command %q", sc.Text())
			}
			closeAll()
			b, _ := json.Marshal(stats(times, from, to, *interval))
			fmt.Printf("stats %s\n", b)
			return nil
		default:
			return fmt.Errorf("unknown command %q", sc.Text())
		}
	}
	return sc.Err()
}

func stats(times [][]int64, from, to int64, interval time.Duration) ListenStats {
	st := ListenStats{Targets: len(times), IntervalMinUs: -1}
	var drifts []int64
	for _, ts := range times {
		var prev int64
		seen := false
		for _, t := range ts {
			if t < from || t > to {
				continue
			}
			st.Checks++
			if seen {
				iv := t - prev
				d := iv - int64(interval)
				if d < 0 {
					d = -d
				}
				drifts = append(drifts, d)
				if st.IntervalMinUs < 0 || iv/1000 < st.IntervalMinUs {
					st.IntervalMinUs = iv / 1000
				}
				st.IntervalMaxUs = max(st.IntervalMaxUs, iv/1000)
				if d > int64(100*time.Millisecond) {
					st.Over100ms++
				}
			} else {
				st.Checked++
			}
			prev, seen = t, true
		}
	}
	st.Intervals = len(drifts)
	if len(drifts) > 0 {
		slices.Sort(drifts)
		q := func(p float64) int64 { return drifts[min(len(drifts)-1, int(p*float64(len(drifts))))] / 1000 }
		st.DriftP50Us, st.DriftP99Us, st.DriftMaxUs = q(0.50), q(0.99), drifts[len(drifts)-1]/1000
	}
	return st
}
