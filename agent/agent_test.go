package agent

import (
	"context"
	"errors"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/config"
)

func TestNotifySequence(t *testing.T) {
	ta := startAgent(t, testConfig{})
	before := monotonicUsec()
	if res := ta.Reload(context.Background()); !res.OK {
		t.Fatalf("reload: %+v", res)
	}
	if err := ta.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := ta.notifier.states()
	if len(got) != 4 {
		t.Fatalf("notify sequence = %q, want READY, RELOADING+MONOTONIC_USEC, READY, STOPPING", got)
	}
	if got[0] != "READY=1" || got[2] != "READY=1" || got[3] != "STOPPING=1" {
		t.Fatalf("notify sequence = %q", got)
	}
	m := regexp.MustCompile(`^RELOADING=1\nMONOTONIC_USEC=(\d+)$`).FindStringSubmatch(got[1])
	if m == nil {
		t.Fatalf("reload notification = %q, want RELOADING=1 and MONOTONIC_USEC in one message", got[1])
	}
	usec, _ := strconv.ParseInt(m[1], 10, 64)
	if usec < before || usec > monotonicUsec() {
		t.Fatalf("MONOTONIC_USEC=%d not between %d and now", usec, before)
	}
	var sawStatus bool
	for _, msg := range ta.notifier.all() {
		sawStatus = sawStatus || strings.HasPrefix(msg, "STATUS=running: node lb1")
	}
	if !sawStatus {
		t.Errorf("no STATUS= line: %q", ta.notifier.all())
	}
}

func TestReloadBadConfigKeepsOld(t *testing.T) {
	ta := startAgent(t, testConfig{})
	sub := ta.Events().Subscribe(0)
	defer sub.Close()
	before := ta.Status()

	writeFile(t, ta.cfgPath, badConfig)
	res := ta.Reload(context.Background())
	if res.OK || res.Error == "" || len(res.Diagnostics) == 0 {
		t.Fatalf("bad reload answered %+v", res)
	}
	var ce *ConfigError
	if !errors.As(res.Err(), &ce) {
		t.Fatalf("reload error %v is not a *ConfigError", res.Err())
	}
	d := res.Diagnostics[0]
	if d.File != ta.cfgPath || d.Line != 3 || d.Column == 0 {
		t.Errorf("diagnostic position = %s:%d:%d, want %s:3:N", d.File, d.Line, d.Column, ta.cfgPath)
	}

	st := ta.Status()
	if st.Node != "lb1" || st.Config.Generation != 1 || !st.Config.LoadedAt.Equal(before.Config.LoadedAt) {
		t.Errorf("status after bad reload = %+v, want node lb1 generation 1 unchanged", st)
	}
	if lr := st.Config.LastReload; lr == nil || lr.OK || lr.Error != res.Error {
		t.Errorf("last_reload = %+v, want ok=false error=%q", lr, res.Error)
	}
	ev := nextEvent(t, sub, EventConfigReloadFailed)
	if ev.Subsystem != "agent" || ev.Attrs["error"] != res.Error || ev.Attrs["generation"] != uint64(1) {
		t.Errorf("failure event = %+v", ev)
	}

	// Each diagnostic is a record with file/line/column, plus the text.
	logs := ta.stderr.String()
	for _, want := range []string{"file=" + ta.cfgPath, "line=3", "column=", "configuration reload rejected", "configuration reload failed"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if !strings.Contains(logs, "socket = ") {
		t.Errorf("log lacks the diagnostic text with the source line:\n%s", logs)
	}

	// The agent still serves and a good reload afterwards applies.
	ta.rewrite(t, testConfig{node: "lb1-renamed"})
	if res := ta.Reload(context.Background()); !res.OK || res.Generation != 2 {
		t.Fatalf("good reload answered %+v", res)
	}
	ev = nextEvent(t, sub, EventConfigReloaded)
	if ev.Attrs["generation"] != uint64(2) || ev.Attrs["node"] != "lb1-renamed" {
		t.Errorf("reloaded event = %+v", ev)
	}
	if st := ta.Status(); st.Node != "lb1-renamed" || st.Config.Generation != 2 || !st.Config.LastReload.OK {
		t.Errorf("status after good reload = %+v", st)
	}
}

func TestReloadRejectsUnsupportedFeature(t *testing.T) {
	ta := startAgent(t, testConfig{})
	proxyHC := "proxy \"www\" {\n  listener \"l\" { address = \"127.0.0.1:1\" }\n  backend \"b\" {\n    server \"s\" { address = \"127.0.0.1:9\" }\n    health_check \"exec\" {\n      command = [\"/bin/true\"]\n      dynamic_weight = true\n    }\n  }\n}\n"
	for _, block := range []string{proxyHC, "virtual_server \"web\" {\n  address = \"203.0.113.10:80\"\n  health_check \"exec\" {\n    command = [\"/bin/true\"]\n    dynamic_weight = true\n  }\n}\n"} {
		ta.rewrite(t, testConfig{extra: block})
		res := ta.Reload(context.Background())
		if res.OK || !strings.Contains(res.Error, "not supported yet") {
			t.Fatalf("reload with %q answered %+v, want not supported yet", block, res)
		}
	}
	if st := ta.Status(); st.Config.Generation != 1 {
		t.Fatalf("generation = %d", st.Config.Generation)
	}
}

// TestSupportedFeatures: this build implements VRRP, sync groups, IPVS
// virtual servers and proxies.
func TestSupportedFeatures(t *testing.T) {
	want := map[config.Feature]bool{config.FeatureVRRP: true, config.FeatureSyncGroup: true, config.FeatureVirtualServer: true, config.FeatureProxy: true}
	got := SupportedFeatures()
	if len(got) != len(want) {
		t.Fatalf("SupportedFeatures = %v, want %v", got, want)
	}
	for f := range want {
		if !got[f] {
			t.Errorf("%s not supported", f)
		}
	}
}

func TestStatusShape(t *testing.T) {
	start := time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)
	ta := startAgent(t, testConfig{}, func(o *Options) { o.Clock = fixedClock{start} })
	st := ta.Status()
	if st.Node != "lb1" || st.Version != "v0.0.0-test" || st.PID != os.Getpid() || !st.StartedAt.Equal(start) {
		t.Errorf("status = %+v", st)
	}
	if st.Config.Path != ta.cfgPath || st.Config.Generation != 1 || st.Config.LastReload != nil {
		t.Errorf("config status = %+v", st.Config)
	}
	var names []string
	for _, s := range st.Subsystems {
		names = append(names, s.Name)
		if s.Configured != 0 || s.State != StateNoneConfigured {
			t.Errorf("subsystem %+v, want none configured", s)
		}
	}
	if got := strings.Join(names, ","); got != "vrrp,ipvs,health,l7proxy" {
		t.Errorf("subsystems = %s", got)
	}
}

func TestSignals(t *testing.T) {
	ta := startAgent(t, testConfig{})
	sub := ta.Events().Subscribe(0)
	defer sub.Close()
	ta.rewrite(t, testConfig{node: "lb2"})
	ta.signals <- syscall.SIGHUP
	nextEvent(t, sub, EventConfigReloaded)
	if st := ta.Status(); st.Node != "lb2" || st.Config.Generation != 2 {
		t.Fatalf("after SIGHUP status = %+v", st)
	}
	ta.signals <- syscall.SIGTERM
	if err := ta.wait(t); err != nil {
		t.Fatalf("Run after SIGTERM = %v", err)
	}
	if _, err := os.Lstat(ta.cfg.socket); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("control socket still there after shutdown: %v", err)
	}
	if got := ta.notifier.states(); got[len(got)-1] != "STOPPING=1" {
		t.Fatalf("last notification %q", got)
	}
}

// TestRealSignals delivers real SIGHUP and SIGTERM to the test process; the
// agent must have registered for them (otherwise the test binary dies).
func TestRealSignals(t *testing.T) {
	ready := make(chan struct{})
	ta, err := newTestAgent(t, testConfig{}, func(o *Options) {
		o.signals = nil
		o.onReady = func() { close(ready) }
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ta.Run(context.Background()) }()
	<-ready
	sub := ta.Events().Subscribe(0)
	defer sub.Close()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, sub, EventConfigReloaded)
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not stop on SIGTERM")
	}
}

// recorder is a fake subsystem that logs what happens to it.
type recorder struct {
	name     string
	log      *eventLog
	failNext func(cfg *config.Config) error // Apply error, if any
	runErr   chan error                     // Run returns what arrives here

	mu      sync.Mutex
	applied []string // node names applied
	active  int      // concurrent Apply calls
	maxSeen int
}

type eventLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *eventLog) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, s)
}

func (l *eventLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

func (r *recorder) Name() string { return r.name }

func (r *recorder) Apply(_ context.Context, cfg *config.Config) error {
	r.mu.Lock()
	r.active++
	r.maxSeen = max(r.maxSeen, r.active)
	r.mu.Unlock()
	time.Sleep(time.Millisecond) // widen the window for overlapping reloads
	defer func() {
		r.mu.Lock()
		r.active--
		r.mu.Unlock()
	}()
	if r.failNext != nil {
		if err := r.failNext(cfg); err != nil {
			r.log.add("apply-fail " + r.name)
			return err
		}
	}
	r.mu.Lock()
	r.applied = append(r.applied, cfg.Node.Name)
	r.mu.Unlock()
	r.log.add("apply " + r.name + " " + cfg.Node.Name)
	return nil
}

func (r *recorder) Status() SubsystemStatus {
	return SubsystemStatus{Name: r.name, State: StateNoneConfigured}
}

func (r *recorder) Run(ctx context.Context) error {
	r.log.add("run " + r.name)
	select {
	case <-ctx.Done():
		r.log.add("stop " + r.name)
		return nil
	case err := <-r.runErr:
		return err
	}
}

func (r *recorder) appliedNodes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.applied...)
}

func withRecorders(recs ...*recorder) func(*Options) {
	return func(o *Options) {
		o.subsystems = nil
		for _, r := range recs {
			o.subsystems = append(o.subsystems, subsystemFactory{r.name, func(subsystemDeps) subsystem { return r }})
		}
	}
}

func TestShutdownStopsSubsystemsInReverseOrder(t *testing.T) {
	log := &eventLog{}
	a := &recorder{name: "a", log: log}
	b := &recorder{name: "b", log: log}
	c := &recorder{name: "c", log: log}
	ta := startAgent(t, testConfig{}, withRecorders(a, b, c))
	eventually(t, "subsystems running", func() bool { return len(log.all()) == 6 })
	if err := ta.stop(t); err != nil {
		t.Fatal(err)
	}
	var applies, runs, stops []string
	for _, l := range log.all() {
		switch {
		case strings.HasPrefix(l, "apply "):
			applies = append(applies, l)
		case strings.HasPrefix(l, "run "):
			runs = append(runs, l)
		case strings.HasPrefix(l, "stop "):
			stops = append(stops, l)
		}
	}
	// Applies are in start order, runs start concurrently (only their set
	// matters), stops are in reverse order.
	if got := strings.Join(applies, ","); got != "apply a lb1,apply b lb1,apply c lb1" {
		t.Errorf("applies = %s", got)
	}
	if got := strings.Join(sortedCopy(runs), ","); got != "run a,run b,run c" {
		t.Errorf("runs = %s", got)
	}
	if got := strings.Join(stops, ","); got != "stop c,stop b,stop a" {
		t.Errorf("stops = %s, want reverse order", got)
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestSubsystemFailureIsFatal(t *testing.T) {
	boom := errors.New("boom")
	r := &recorder{name: "vrrp", log: &eventLog{}, runErr: make(chan error, 1)}
	ta := startAgent(t, testConfig{}, withRecorders(r))
	r.runErr <- boom
	err := ta.wait(t)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "subsystem vrrp") {
		t.Fatalf("Run = %v, want subsystem vrrp: boom", err)
	}
	if got := ta.notifier.states(); got[len(got)-1] != "STOPPING=1" {
		t.Fatalf("notifications %q", got)
	}
}

func TestApplyFailureRollsBack(t *testing.T) {
	log := &eventLog{}
	first := &recorder{name: "first", log: log}
	second := &recorder{name: "second", log: log, failNext: func(cfg *config.Config) error {
		if cfg.Node.Name == "lb-new" {
			return errors.New("cannot apply")
		}
		return nil
	}}
	ta := startAgent(t, testConfig{}, withRecorders(first, second))
	ta.rewrite(t, testConfig{node: "lb-new"})
	res := ta.Reload(context.Background())
	if res.OK || !strings.Contains(res.Error, "subsystem second: cannot apply") {
		t.Fatalf("reload = %+v", res)
	}
	if got := strings.Join(first.appliedNodes(), ","); got != "lb1,lb-new,lb1" {
		t.Errorf("first subsystem applied %s, want lb1,lb-new,lb1 (rolled back)", got)
	}
	if st := ta.Status(); st.Node != "lb1" || st.Config.Generation != 1 || st.Config.LastReload.OK {
		t.Errorf("status = %+v", st)
	}
}

func TestReloadsAreSerialized(t *testing.T) {
	r := &recorder{name: "r", log: &eventLog{}}
	ta := startAgent(t, testConfig{}, withRecorders(r))
	const n = 8
	var wg sync.WaitGroup
	gens := make(chan uint64, n)
	for range n {
		wg.Go(func() {
			res := ta.Reload(context.Background())
			if !res.OK {
				t.Errorf("reload: %+v", res)
			}
			gens <- res.Generation
		})
	}
	wg.Wait()
	close(gens)
	seen := map[uint64]bool{}
	for g := range gens {
		if seen[g] {
			t.Errorf("generation %d reported twice", g)
		}
		seen[g] = true
	}
	if st := ta.Status(); st.Config.Generation != n+1 {
		t.Errorf("generation = %d, want %d", st.Config.Generation, n+1)
	}
	if r.maxSeen != 1 {
		t.Errorf("%d Apply calls overlapped", r.maxSeen)
	}
}

func TestReloadAfterStopIsRefused(t *testing.T) {
	ta := startAgent(t, testConfig{})
	if err := ta.stop(t); err != nil {
		t.Fatal(err)
	}
	res := ta.Reload(context.Background())
	if res.OK || !errors.Is(res.Err(), ErrStopping) {
		t.Fatalf("reload after stop = %+v", res)
	}
}

func TestWatchdogPings(t *testing.T) {
	ta := startAgent(t, testConfig{}, func(o *Options) { o.Watchdog = 40 * time.Millisecond })
	eventually(t, "two watchdog pings", func() bool {
		n := 0
		for _, m := range ta.notifier.all() {
			if m == "WATCHDOG=1" {
				n++
			}
		}
		return n >= 2
	})
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	dir := socketDir(t)
	path := dir + "/node.hcl"
	writeFile(t, path, badConfig)
	stderr := &syncBuffer{}
	_, err := New(Options{ConfigPath: path, Stderr: stderr, LogTarget: "stderr", Notifier: &fakeNotifier{}})
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("New = %v, want *ConfigError", err)
	}
	if len(ce.Diagnostics) == 0 || ce.Diagnostics[0].Line != 3 || !strings.Contains(err.Error(), path) {
		t.Fatalf("ConfigError = %+v", ce)
	}
	logs := stderr.String()
	for _, want := range []string{"level=ERROR", "file=" + path, "line=3", "configuration invalid", "socket ="} {
		if !strings.Contains(logs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, logs)
		}
	}
}

func TestNewRejectsBadFlags(t *testing.T) {
	for _, o := range []Options{
		{ConfigPath: "x", LogLevel: "loud"},
		{ConfigPath: "x", LogTarget: "syslog"},
		{},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}

func TestRunTwice(t *testing.T) {
	ta := startAgent(t, testConfig{})
	if err := ta.Run(context.Background()); err == nil {
		t.Fatal("second Run succeeded")
	}
}

func TestStartFailureReleasesEverything(t *testing.T) {
	// The metrics address is taken: Run fails, and the control socket it
	// bound first is gone again.
	taken := freeAddr(t, "127.0.0.1")
	ta := startAgent(t, testConfig{metrics: taken})
	t2, err := newTestAgent(t, testConfig{metrics: taken})
	if err != nil {
		t.Fatal(err)
	}
	err = t2.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "metrics listen") {
		t.Fatalf("Run = %v, want metrics listen error", err)
	}
	if _, err := os.Lstat(t2.cfg.socket); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}
	_ = ta
}

// blockingApply is a subsystem whose Apply blocks until its context ends, as
// programming thousands of IPVS destinations on a saturated machine does.
type blockingApply struct {
	recorder
	entered chan struct{}
}

func (b *blockingApply) Apply(ctx context.Context, _ *config.Config) error {
	close(b.entered)
	<-ctx.Done()
	return ctx.Err()
}

// TestSIGTERMWhileStarting: a stop signal during a slow start cancels it; Run
// returns nil promptly and the subsystems already started are stopped.
func TestSIGTERMWhileStarting(t *testing.T) {
	log := &eventLog{}
	a := &recorder{name: "a", log: log}
	b := &blockingApply{recorder: recorder{name: "b", log: log}, entered: make(chan struct{})}
	ta, err := newTestAgent(t, testConfig{}, func(o *Options) {
		o.subsystems = []subsystemFactory{
			{"a", func(subsystemDeps) subsystem { return a }},
			{"b", func(subsystemDeps) subsystem { return b }},
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ta.Run(context.Background()) }()
	select {
	case <-b.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow Apply never started")
	}
	ta.signals <- syscall.SIGTERM
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5 s of SIGTERM during start")
	}
	if got := strings.Join(log.all(), ","); !strings.Contains(got, "stop a") {
		t.Errorf("subsystem a not stopped: %s", got)
	}
}
