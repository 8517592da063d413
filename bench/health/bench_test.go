package healthbench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lab/keepalived"
	"github.com/fulcrum-lb/fulcrum/lab/kernel"
	"github.com/fulcrum-lb/fulcrum/lab/netns"
)

// The workload; see the package documentation.
const (
	targets      = 10000
	perAddr      = 1000 // listeners per address, as cmd/hcbench's Target
	smallTargets = 200  // the guest's second pair, below saturation (1,000 saturates it)
	realsPerVS   = 100  // keepalived real servers per virtual_server
	interval     = time.Second
	warmup       = 10 * time.Second
	window       = 30 * time.Second
	guestWarmup  = 5 * time.Second // shorter in the guest, to keep the whole run near 6 minutes
	guestWindow  = 20 * time.Second
	readyTimeout = 150 * time.Second
	clkTck       = 100 // USER_HZ on Linux
)

// envBin names the hcbench binary in the guest, envAgent the fulcrum binary ("" when the agent
// does not run tcp health checks yet).
const (
	envBin   = "FULCRUM_HCBENCH_BIN"
	envAgent = "FULCRUM_HCBENCH_AGENT"
)

// rowPrefix marks a guest's result line for the host.
const rowPrefix = "HCBENCH-ROW "

// target mirrors cmd/hcbench's Target.
func target(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i/perAddr)}), uint16(20000+i%perAddr))
}

// listenStats mirrors cmd/hcbench's ListenStats.
type listenStats struct {
	Targets       int   `json:"targets"`
	Checked       int   `json:"checked"`
	Checks        int   `json:"checks"`
	Intervals     int   `json:"intervals"`
	DriftP50Us    int64 `json:"drift_p50_us"`
	DriftP99Us    int64 `json:"drift_p99_us"`
	DriftMaxUs    int64 `json:"drift_max_us"`
	Over100ms     int   `json:"over_100ms"`
	IntervalMinUs int64 `json:"interval_min_us"`
	IntervalMaxUs int64 `json:"interval_max_us"`
}

// row is one measured side.
type row struct {
	Where   string      `json:"where"`
	Side    string      `json:"side"`
	N       int         `json:"n"` // checks configured
	Window  float64     `json:"window_s"`
	CPUSec  float64     `json:"cpu_s"`
	RSSMB   float64     `json:"rss_mb"` // max VmRSS sampled in the window
	Listen  listenStats `json:"listen"`
	Ready   float64     `json:"ready_s"` // checker start to every target checked once; -1: not within readyTimeout
	Checker string      `json:"checker,omitempty"`
}

func (r row) cpuPct() float64       { return 100 * r.CPUSec / r.Window }
func (r row) checksPerSec() float64 { return float64(r.Listen.Checks) / r.Window }
func (r row) usPerCheck() float64 {
	if r.Listen.Checks == 0 {
		return 0
	}
	return r.CPUSec * 1e6 / float64(r.Listen.Checks)
}

// TestHealthChecks is the benchmark (see the package documentation).
func TestHealthChecks(t *testing.T) {
	if kernel.InGuest() {
		guestSide(t)
		return
	}
	if os.Getenv("FULCRUM_BENCH") != "1" {
		t.Skip("health-check benchmark (10,000 TCP checks beside keepalived, host and kernel lab guest, about 4 minutes): set FULCRUM_BENCH=1 or run `make bench`")
	}
	if testing.Short() {
		t.Skip("health-check benchmark: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("health-check benchmark: needs root (network namespaces)")
	}
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("host load average at start: %s", strings.TrimSpace(string(load)))
	raiseNoFile(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "hcbench")
	goBuild(t, bin, "build", "-o", bin, "./cmd/hcbench")
	agent := filepath.Join(dir, "fulcrum")
	goBuild(t, agent, "build", "-o", agent, "../../cmd/fulcrum")
	if why := agentRunsTCPChecks(t, agent); why != "" {
		t.Logf("the agent does not run tcp health checks (%s): fulcrum is measured as health.Scheduler in cmd/hcbench only", why)
		agent = ""
	}

	var rows []row
	if agent != "" {
		t.Run("host-agent", func(t *testing.T) {
			h := newTargetsHost(t, "hca", targets)
			rows = append(rows, measure(t, h, bin, "host", sideAgent, targets, startAgent(agent)))
		})
	}
	t.Run("host-scheduler", func(t *testing.T) {
		h := newTargetsHost(t, "hcs", targets)
		rows = append(rows, measure(t, h, bin, "host", sideScheduler, targets, startScheduler))
	})

	// The guest: keepalived and fulcrum one after the other in one boot.
	testBin := filepath.Join(dir, "guest.test")
	goBuild(t, testBin, "test", "-c", "-vet=off", "-o", testBin, ".")
	k := kernel.Require(t)
	pkgDir, _ := filepath.Abs(".")
	env := []string{envBin + "=" + kernel.GuestFilesDir + "/hcbench"}
	files := map[string]string{"guest.test": testBin, "hcbench": bin}
	if agent != "" {
		env = append(env, envAgent+"="+kernel.GuestFilesDir+"/fulcrum")
		files["fulcrum"] = agent
	}
	if ci, ok := os.LookupEnv("CI"); ok {
		env = append(env, "CI="+ci)
	}
	res, err := k.Run(t.Context(), kernel.RunOptions{
		Command: []string{kernel.GuestFilesDir + "/guest.test", "-test.v", "-test.run", "^TestHealthChecks$", "-test.timeout", "8m"},
		Env:     env,
		Dir:     pkgDir,
		Timeout: 10 * time.Minute,
		Memory:  2048,
		CPUs:    2,
		Files:   files,
		Stream:  t.Output(),
	})
	if err != nil {
		t.Fatalf("kernel lab: %v", err)
	}
	for _, l := range strings.Split(string(res.Output), "\n") {
		if i := strings.Index(l, rowPrefix); i >= 0 {
			var r row
			if err := json.Unmarshal([]byte(l[i+len(rowPrefix):]), &r); err != nil {
				t.Fatalf("guest row %q: %v", l, err)
			}
			rows = append(rows, r)
		}
	}
	if res.ExitCode != 0 {
		t.Errorf("the guest side failed (exit status %d); output above", res.ExitCode)
	}
	report(t, rows)
}

// guestSide runs in the lab guest: keepalived's checker, then fulcrum's, each in a fresh
// namespace, and prints their rows for the host.
func guestSide(t *testing.T) {
	bin := os.Getenv(envBin)
	if bin == "" {
		t.Skip("run through TestHealthChecks on the host")
	}
	_ = exec.Command("modprobe", "crc32c_generic").Run()
	for _, m := range []string{"ip_vs", "ip_vs_rr"} {
		if out, err := exec.Command("modprobe", m).CombinedOutput(); err != nil {
			t.Fatalf("modprobe %s: %v\n%s", m, err, out)
		}
	}
	raiseNoFile(t)
	emit := func(r row) {
		b, _ := json.Marshal(r)
		fmt.Printf("%s%s\n", rowPrefix, b)
	}
	// The full load saturates the emulated guest for both checkers; the small one does not,
	// so there the 1 s schedule holds and CPU % compares at equal work.
	for _, n := range []int{targets, smallTargets} {
		t.Run(fmt.Sprintf("keepalived-%d", n), func(t *testing.T) {
			h := newTargetsHost(t, "hck", n)
			emit(measure(t, h, bin, "guest", sideKeepalived, n, startKeepalived))
		})
		agent := os.Getenv(envAgent)
		if agent != "" {
			t.Run(fmt.Sprintf("agent-%d", n), func(t *testing.T) {
				h := newTargetsHost(t, "hca", n)
				emit(measure(t, h, bin, "guest", sideAgent, n, startAgent(agent)))
			})
		}
		// The scheduler alone too at full load: the checker's own cost, apart from the
		// agent's IPVS programming.
		if agent == "" || n == targets {
			t.Run(fmt.Sprintf("scheduler-%d", n), func(t *testing.T) {
				h := newTargetsHost(t, "hcs", n)
				emit(measure(t, h, bin, "guest", sideScheduler, n, startScheduler))
			})
		}
	}
}

func goBuild(t *testing.T, out string, args ...string) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
}

// raiseNoFile lifts this process's RLIMIT_NOFILE, which keepalived inherits.
func raiseNoFile(t *testing.T) {
	t.Helper()
	const want = 2*targets + 4096 // keepalived: a socket per check in flight, plus its own
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Max < want && syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: want}) == nil {
		return // raising the hard limit needs CAP_SYS_RESOURCE
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < targets+1024 {
		t.Fatalf("RLIMIT_NOFILE: %d, %v; need %d", lim.Cur, err, targets+1024)
	}
}

// newTargetsHost makes a namespace with the addresses of n targets on its lo (the host's kernel
// has no dummy links).
func newTargetsHost(t *testing.T, name string, n int) *netns.Host {
	t.Helper()
	h := netns.NewHost(t, name, netns.Options{})
	ip := func(args ...string) {
		if out, err := exec.Command("ip", append([]string{"-n", h.NSName}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for a := 0; a < (n+perAddr-1)/perAddr; a++ {
		ip("addr", "add", target(a*perAddr).Addr().String()+"/32", "dev", "lo")
	}
	return h
}

// checker is a started checker: the process to measure and how to stop it.
type checker struct {
	pid  int
	stop func() string // stops it and returns a summary
	// started, if set, reports whether the checker has finished starting; measure waits for
	// it as well as for every target to be checked once.
	started func() bool
}

type starter func(t *testing.T, h *netns.Host, bin string, n int) checker

// The sides.
const (
	sideKeepalived = "keepalived"
	sideAgent      = "fulcrum"   // `fulcrum agent` with the checks in its configuration
	sideScheduler  = "scheduler" // health.Scheduler alone, in cmd/hcbench check
)

// agentConfig is a node with n real servers in virtual_servers of realsPerVS, each
// virtual_server with a tcp health check at the benchmark's interval.
func agentConfig(dir string, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node \"hcbench\" {}\ncontrol {\n  socket = %q\n}\nlog {\n  target = \"stderr\"\n  level  = \"warn\"\n}\n",
		filepath.Join(dir, "f.sock"))
	for v := 0; v*realsPerVS < n; v++ {
		fmt.Fprintf(&b, "virtual_server \"vs%d\" {\n  address = \"198.51.100.%d:80\"\n", v, 1+v)
		for r := v * realsPerVS; r < min(n, (v+1)*realsPerVS); r++ {
			fmt.Fprintf(&b, "  real_server \"rs%d\" {\n    address = %q\n  }\n", r, target(r).String())
		}
		fmt.Fprintf(&b, "  health_check \"tcp\" {\n    interval      = %q\n    timeout       = %q\n    initial_state = \"up\"\n  }\n}\n",
			interval.String(), interval.String())
	}
	return b.String()
}

// agentRunsTCPChecks tells why agent does not accept a configuration with tcp health checks,
// or "" when it does.
func agentRunsTCPChecks(t *testing.T, agent string) string {
	dir := t.TempDir()
	conf := filepath.Join(dir, "node.hcl")
	if err := os.WriteFile(conf, []byte(agentConfig(dir, 2)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(agent, "validate", conf).CombinedOutput(); err != nil {
		return fmt.Sprintf("fulcrum validate: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return ""
}

func startAgent(agent string) starter {
	return func(t *testing.T, h *netns.Host, _ string, n int) checker {
		dir := t.TempDir()
		conf := filepath.Join(dir, "node.hcl")
		if err := os.WriteFile(conf, []byte(agentConfig(dir, n)), 0o600); err != nil {
			t.Fatal(err)
		}
		p := netns.StartCmd(t, "fulcrum agent", h.Command(context.Background(), agent, "agent", "-config", conf))
		// The agent runs its checks from the start of its health subsystem, before the other
		// subsystems have applied the configuration (in the guest, IPVS programs n real
		// servers). Its control socket answers once everything has started. GET /v1/version,
		// not /v1/status: the status of 10,000 checks and destinations is megabytes of JSON,
		// whose garbage showed in the agent's RSS.
		sock := filepath.Join(dir, "f.sock")
		client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			},
		}}
		started := func() bool {
			resp, err := client.Get("http://fulcrum/v1/version")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}
		return checker{pid: p.Pid(), started: started, stop: func() string {
			_ = p.Signal(syscall.SIGTERM)
			select {
			case <-p.Done():
			case <-time.After(20 * time.Second):
				// Where it hangs: Go's goroutine dump on SIGQUIT, in the test's log.
				_ = p.Signal(syscall.SIGQUIT)
				select {
				case <-p.Done():
				case <-time.After(5 * time.Second):
				}
				out := p.Output()
				if i := strings.Index(out, "SIGQUIT"); i >= 0 {
					out = out[i:]
				}
				t.Logf("agent after SIGTERM and SIGQUIT (goroutine dump, at most 60 kB):\n%.60000s", out)
				return "agent did not stop within 20 s of SIGTERM"
			}
			out := strings.TrimSpace(p.Output())
			lines := 0
			if out != "" {
				lines = strings.Count(out, "\n") + 1
			}
			first, _, _ := strings.Cut(out, "\n")
			return fmt.Sprintf("agent exit: %v; %d log lines at warn and above (first: %.200s)", p.Err(), lines, first)
		}}
	}
}

func startScheduler(t *testing.T, h *netns.Host, bin string, n int) checker {
	p := netns.StartCmd(t, "hcbench check", h.Command(context.Background(), bin, "check", "-n", strconv.Itoa(n),
		"-interval", interval.String(), "-timeout", interval.String()))
	p.WaitOutput(t, "ready", readyTimeout)
	return checker{pid: p.Pid(), stop: func() string {
		_ = p.Signal(syscall.SIGTERM)
		select {
		case <-p.Done():
		case <-time.After(20 * time.Second):
			return "did not stop on SIGTERM"
		}
		for _, l := range strings.Split(p.Output(), "\n") {
			if s, ok := strings.CutPrefix(l, "result "); ok {
				return "scheduler: " + s
			}
		}
		return "no result line: " + p.Output()
	}}
}

func startKeepalived(t *testing.T, h *netns.Host, bin string, n int) checker {
	if _, err := exec.LookPath("keepalived"); err != nil {
		t.Fatalf("keepalived: %v (apt-get install keepalived on the host)", err)
	}
	per := realsPerVS
	vss := make([]keepalived.VS, (n+per-1)/per)
	for v := range vss {
		vs := keepalived.VS{
			Addr:      netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + v)}), 80),
			DelayLoop: interval,
			Reals:     make([]keepalived.Real, per),
		}
		vs.Reals = vs.Reals[:min(per, n-v*per)]
		for r := range vs.Reals {
			vs.Reals[r] = keepalived.Real{Addr: target(v*per + r), Check: &keepalived.TCPCheck{ConnectTimeout: interval}}
		}
		vss[v] = vs
	}
	text, err := keepalived.RenderVirtualServers(vss)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(conf, []byte("global_defs {\n    router_id hcbench\n}\n\n"+text), 0o644); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, "checkers.pid")
	p := h.Start(t, "keepalived", "--check", "-n", "-l", "-D", "-f", conf,
		"-p", filepath.Join(dir, "keepalived.pid"), "-c", pidFile, "-r", filepath.Join(dir, "vrrp.pid"))
	deadline := time.Now().Add(readyTimeout)
	for {
		b, err := os.ReadFile(pidFile)
		if err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
					return checker{pid: pid, stop: func() string {
						errs := ""
						if err := p.Stop(); err != nil {
							errs = fmt.Sprintf(" (stop: %v, after SIGTERM and %v)", err, netns.StopGrace)
						}
						return fmt.Sprintf("checker pid %d, parent pid %d%s", pid, p.Pid(), errs)
					}}
				}
			}
		}
		select {
		case <-p.Done():
			t.Fatalf("keepalived exited: %v\n%s", p.Err(), p.Output())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("keepalived: no checker process after %v\n%s", readyTimeout, p.Output())
		}
	}
}

// listener is the running cmd/hcbench listen.
type listener struct {
	in    io.Writer
	lines chan string
}

func (l *listener) ask(t *testing.T, cmd, prefix string, timeout time.Duration) string {
	t.Helper()
	if _, err := fmt.Fprintln(l.in, cmd); err != nil {
		t.Fatalf("listener: %s: %v", cmd, err)
	}
	return l.await(t, prefix, timeout)
}

func (l *listener) await(t *testing.T, prefix string, timeout time.Duration) string {
	t.Helper()
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	for {
		select {
		case s, ok := <-l.lines:
			if !ok {
				t.Fatalf("listener: exited while waiting for %q", prefix)
			}
			if v, ok := strings.CutPrefix(s, prefix); ok {
				return strings.TrimSpace(v)
			}
		case <-tm.C:
			t.Fatalf("listener: no %q within %v", prefix, timeout)
		}
	}
}

func startListener(t *testing.T, h *netns.Host, bin string, n int) *listener {
	cmd := h.Command(context.Background(), bin, "listen", "-n", strconv.Itoa(n), "-interval", interval.String())
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	netns.StartCmd(t, "hcbench listen", cmd)
	l := &listener{in: in, lines: make(chan string, 16)}
	go func() {
		defer close(l.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			l.lines <- sc.Text()
		}
	}()
	l.await(t, "ready", readyTimeout)
	return l
}

// measure runs one side: listener, checker, ready, warm-up, window.
func measure(t *testing.T, h *netns.Host, bin, where, side string, n int, start starter) row {
	t.Helper()
	l := startListener(t, h, bin, n)
	started := time.Now()
	c := start(t, h, bin, n)
	stopped := false
	summary := ""
	stop := func() {
		if !stopped {
			stopped = true
			summary = c.stop()
		}
	}
	defer stop()
	r := row{Where: where, Side: side, N: n, Ready: -1}
	for {
		seen, _ := strconv.Atoi(l.ask(t, "count", "count ", 10*time.Second))
		if seen >= n && (c.started == nil || c.started()) {
			r.Ready = time.Since(started).Seconds()
			break
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", c.pid)); err != nil {
			t.Fatalf("%s: checker process %d is gone", side, c.pid)
		}
		if time.Since(started) > readyTimeout {
			// Measure anyway: the row shows it, with ready -1 and the checks it did.
			t.Logf("%s/%s: only %d of %d targets checked %v after start; measuring anyway", where, side, seen, n, readyTimeout)
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	warm, win := warmup, window
	if where == "guest" {
		warm, win = guestWarmup, guestWindow
	}
	t.Logf("%s/%s: all %d targets checked (and the checker started) %.1f s after start; warm-up %v, then a %v window", where, side, n, r.Ready, warm, win)
	time.Sleep(warm)

	cpu0 := cpuTicks(t, c.pid)
	t0 := time.Now()
	for time.Since(t0) < win {
		time.Sleep(time.Second)
		r.RSSMB = max(r.RSSMB, rssMB(t, c.pid))
	}
	cpu1 := cpuTicks(t, c.pid)
	t1 := time.Now()
	r.Window = t1.Sub(t0).Seconds()
	r.CPUSec = float64(cpu1-cpu0) / clkTck
	s := l.ask(t, fmt.Sprintf("stats %d %d", t0.UnixNano(), t1.UnixNano()), "stats ", 30*time.Second)
	if err := json.Unmarshal([]byte(s), &r.Listen); err != nil {
		t.Fatalf("listener stats %q: %v", s, err)
	}
	stop()
	r.Checker = summary
	t.Logf("%s/%s: cpu %.2f s in %.1f s, rss max %.1f MB, %d checks (%d targets), drift p50/p99/max %s/%s/%s ms; %s",
		where, side, r.CPUSec, r.Window, r.RSSMB, r.Listen.Checks, r.Listen.Checked,
		ms(r.Listen.DriftP50Us), ms(r.Listen.DriftP99Us), ms(r.Listen.DriftMaxUs), r.Checker)
	return r
}

// cpuTicks is utime+stime of pid (all its threads) in clock ticks.
func cpuTicks(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("cpu of %d: %v", pid, err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

// rssMB is VmRSS of pid in MB (10^6 bytes).
func rssMB(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("rss of %d: %v", pid, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb * 1024 / 1e6
		}
	}
	return 0
}

func ms(us int64) string { return strconv.FormatFloat(float64(us)/1000, 'f', 1, 64) }

// report prints the table, the ratio and the goals.
func report(t *testing.T, rows []row) {
	var b strings.Builder
	fmt.Fprintf(&b, "health-check benchmark: TCP connect checks, interval %v, connect timeout %v; warm-up %v, window %v (guest: %v, %v)\n",
		interval, interval, warmup, window, guestWarmup, guestWindow)
	fmt.Fprintf(&b, "%-6s %-10s %6s %9s %10s %10s %8s %24s %7s %8s\n",
		"where", "side", "checks", "checks/s", "CPU %core", "µs/check", "RSS MB", "drift p50/p99/max ms", ">100ms", "ready s")
	for _, r := range rows {
		fmt.Fprintf(&b, "%-6s %-10s %6d %9.0f %10.1f %10.1f %8.1f %24s %7d %8.1f\n",
			r.Where, r.Side, r.N, r.checksPerSec(), r.cpuPct(), r.usPerCheck(), r.RSSMB,
			ms(r.Listen.DriftP50Us)+"/"+ms(r.Listen.DriftP99Us)+"/"+ms(r.Listen.DriftMaxUs), r.Listen.Over100ms, r.Ready)
	}
	find := func(side string, n int) (row, bool) {
		for _, r := range rows {
			if r.Where == "guest" && r.Side == side && r.N == n {
				return r, true
			}
		}
		return row{}, false
	}
	metStr := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	for _, n := range []int{targets, smallTargets} {
		gk, okK := find(sideKeepalived, n)
		if !okK || gk.CPUSec <= 0 || gk.RSSMB <= 0 || gk.Listen.Checks == 0 {
			fmt.Fprintf(&b, "guest ratio at %d checks: no keepalived row with checks\n", n)
			continue
		}
		for _, side := range []string{sideAgent, sideScheduler} {
			gf, ok := find(side, n)
			if !ok {
				continue
			}
			if gf.Listen.Checks == 0 {
				fmt.Fprintf(&b, "guest ratio %s/keepalived at %d checks: %s did no check in the window (ready %.0f s): not comparable; goal CPU at or below keepalived's: NOT met\n",
					side, n, side, gf.Ready)
				continue
			}
			cpuRatio := gf.usPerCheck() / gk.usPerCheck()
			fmt.Fprintf(&b, "guest ratio %s/keepalived at %d checks: CPU per check %.2f, CPU %% of a core %.2f, checks done %.2f, RSS %.2f; goal CPU at or below keepalived's (per check): %s\n",
				gf.Side, n, cpuRatio, gf.cpuPct()/gk.cpuPct(), float64(gf.Listen.Checks)/float64(gk.Listen.Checks), gf.RSSMB/gk.RSSMB, metStr(cpuRatio <= 1))
		}
	}
	for _, r := range rows {
		if r.Side != sideKeepalived {
			fmt.Fprintf(&b, "goals, %s %s at %d checks: RSS at most 150 MB %s; no check drifting more than 100 ms (as the listener sees it) %s\n",
				r.Where, r.Side, r.N, metStr(r.RSSMB <= 150), metStr(r.Listen.Over100ms == 0 && r.Listen.Intervals > 0))
		}
	}
	for _, r := range rows {
		fmt.Fprintf(&b, "  %s/%s: %d checks in the window on %d targets, %d intervals %.1f-%.1f ms; %s\n",
			r.Where, r.Side, r.Listen.Checks, r.Listen.Checked, r.Listen.Intervals,
			float64(r.Listen.IntervalMinUs)/1000, float64(r.Listen.IntervalMaxUs)/1000, r.Checker)
	}
	t.Log("\n" + b.String())
	if out := os.Getenv("FULCRUM_BENCH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
			t.Errorf("write %s: %v", out, err)
		}
	}
}
