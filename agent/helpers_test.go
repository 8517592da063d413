package agent

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeNotifier records every sd_notify message.
type fakeNotifier struct {
	mu   sync.Mutex
	msgs []string
}

func (f *fakeNotifier) Notify(state string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, state)
	return nil
}

// all returns every message sent so far.
func (f *fakeNotifier) all() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.msgs...)
}

// states returns the messages without STATUS= and WATCHDOG=1.
func (f *fakeNotifier) states() []string {
	var out []string
	for _, m := range f.all() {
		if strings.HasPrefix(m, "STATUS=") || m == "WATCHDOG=1" {
			continue
		}
		out = append(out, m)
	}
	return out
}

// fixedClock always says the same time.
type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// socketDir returns a temporary directory whose paths fit a unix socket
// address (108 bytes).
func socketDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if len(dir) < 70 {
		return dir
	}
	dir, err := os.MkdirTemp("", "fa")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// testConfig renders a node config file.
type testConfig struct {
	node        string
	socket      string
	level       string
	target      string
	metrics     string // listen address; "" = no metrics block
	metricsPath string
	extra       string // appended verbatim
}

func (c testConfig) hcl() string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %q {}\n", c.node)
	fmt.Fprintf(&b, "control {\n  socket = %q\n}\n", c.socket)
	b.WriteString("log {\n")
	if c.level != "" {
		fmt.Fprintf(&b, "  level = %q\n", c.level)
	}
	target := c.target
	if target == "" {
		target = "stderr"
	}
	fmt.Fprintf(&b, "  target = %q\n}\n", target)
	if c.metrics != "" {
		fmt.Fprintf(&b, "metrics {\n  listen = %q\n", c.metrics)
		if c.metricsPath != "" {
			fmt.Fprintf(&b, "  path = %q\n", c.metricsPath)
		}
		b.WriteString("}\n")
	}
	b.WriteString(c.extra)
	return b.String()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// badConfig has a syntax error on line 2 (any schema rejects it).
const badConfig = "node \"lb1\" {}\ncontrol {\n  socket = \n}\n"

// testAgent is an agent running in the background of a test.
type testAgent struct {
	*Agent
	dir      string
	cfgPath  string
	cfg      testConfig
	notifier *fakeNotifier
	stderr   *syncBuffer
	signals  chan os.Signal
	cancel   context.CancelFunc
	done     chan error
	stopped  bool
}

// newTestAgent writes cfg (node "lb1", socket in a temp dir unless set) and
// builds an agent with fakes; mod adjusts the options.
func newTestAgent(t *testing.T, cfg testConfig, mod ...func(*Options)) (*testAgent, error) {
	t.Helper()
	dir := socketDir(t)
	if cfg.node == "" {
		cfg.node = "lb1"
	}
	if cfg.socket == "" {
		cfg.socket = filepath.Join(dir, "ctl", "f.sock")
	}
	ta := &testAgent{
		dir:      dir,
		cfgPath:  filepath.Join(dir, "node.hcl"),
		cfg:      cfg,
		notifier: &fakeNotifier{},
		stderr:   &syncBuffer{},
		signals:  make(chan os.Signal, 1),
	}
	writeFile(t, ta.cfgPath, cfg.hcl())
	opts := Options{
		ConfigPath:    ta.cfgPath,
		Stderr:        ta.stderr,
		Notifier:      ta.notifier,
		Version:       VersionInfo{Version: "v0.0.0-test", Commit: "abc123", Go: "go-test"},
		JournalSocket: filepath.Join(dir, "no-journal"),
		StateDir:      filepath.Join(dir, "state"),
		signals:       ta.signals,
		getenv:        func(string) string { return "" },
	}
	for _, m := range mod {
		m(&opts)
	}
	a, err := New(opts)
	if err != nil {
		return ta, err
	}
	ta.Agent = a
	return ta, nil
}

// startAgent builds and runs an agent, returning once READY=1 was sent.
func startAgent(t *testing.T, cfg testConfig, mod ...func(*Options)) *testAgent {
	t.Helper()
	ready := make(chan struct{})
	mod = append(mod, func(o *Options) { o.onReady = func() { close(ready) } })
	ta, err := newTestAgent(t, cfg, mod...)
	if err != nil {
		t.Fatalf("New: %v\nstderr:\n%s", err, ta.stderr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ta.cancel = cancel
	ta.done = make(chan error, 1)
	go func() { ta.done <- ta.Run(ctx) }()
	select {
	case <-ready:
	case err := <-ta.done:
		cancel()
		t.Fatalf("Run returned before ready: %v\nstderr:\n%s", err, ta.stderr)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("agent not ready\nstderr:\n%s", ta.stderr)
	}
	t.Cleanup(func() { ta.stop(t) })
	return ta
}

// stop cancels the agent and returns Run's error.
func (ta *testAgent) stop(t *testing.T) error {
	t.Helper()
	if ta.stopped {
		return nil
	}
	ta.stopped = true
	ta.cancel()
	select {
	case err := <-ta.done:
		return err
	case <-time.After(15 * time.Second):
		t.Fatalf("agent did not stop\nstderr:\n%s", ta.stderr)
		return nil
	}
}

// wait returns Run's error once it returns by itself.
func (ta *testAgent) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-ta.done:
		ta.stopped = true
		return err
	case <-time.After(15 * time.Second):
		t.Fatalf("agent did not stop\nstderr:\n%s", ta.stderr)
		return nil
	}
}

// rewrite replaces the config file.
func (ta *testAgent) rewrite(t *testing.T, cfg testConfig) {
	t.Helper()
	if cfg.node == "" {
		cfg.node = "lb1"
	}
	if cfg.socket == "" {
		cfg.socket = ta.cfg.socket
	}
	writeFile(t, ta.cfgPath, cfg.hcl())
}

func (ta *testAgent) client() *Client { return NewClient(ta.cfg.socket) }

// controlPath is the socket the agent serves on now.
func (a *Agent) controlPath() string {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	if a.control == nil {
		return ""
	}
	return a.control.path
}

// metricsAddr is the metrics server's bound address ("" when off).
func (a *Agent) metricsAddr() string {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	if a.metricsSrv == nil {
		return ""
	}
	return a.metricsSrv.addr()
}

// freeAddr returns host:port with a port that was free a moment ago (the
// config rejects port 0).
func freeAddr(t *testing.T, host string) string {
	t.Helper()
	ln, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// eventually polls cond until it holds or 5s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// nextEvent reads the next event of type typ (skipping others) within 5s.
func nextEvent(t *testing.T, sub *Subscription, typ string) Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for event %s: %v", typ, err)
		}
		if ev.Type == typ {
			return ev
		}
	}
}
