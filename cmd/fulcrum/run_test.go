package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/agent"
)

// runCLI runs the CLI and returns exit code, stdout and stderr.
func runCLI(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// shortDir is a temp dir short enough for unix socket paths.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

const goodConfig = `node "lb1" {}
log {
  level = "info"
}
`

// threeErrors has three independent mistakes (as in examples/demo.sh).
const threeErrors = `node "lb1" {}
control {
  sockett = "/run/fulcrum/fulcrum.sock"
}
log {
  level = "loud"
}
metrics {
  listen = "127.0.0.1:99999"
}
`

func TestUsage(t *testing.T) {
	code, _, stderr := runCLI()
	if code != exitUsage || !strings.Contains(stderr, "Usage: fulcrum COMMAND") {
		t.Errorf("no args: %d %q", code, stderr)
	}
	code, stdout, _ := runCLI("help")
	for _, cmd := range []string{"agent", "validate", "status", "reload", "events", "version"} {
		if !strings.Contains(stdout, "\n  "+cmd) {
			t.Errorf("help lacks %s", cmd)
		}
	}
	if code != exitOK {
		t.Errorf("help: %d", code)
	}
	if code, _, stderr := runCLI("frobnicate"); code != exitUsage || !strings.Contains(stderr, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: %d %q", code, stderr)
	}
	for _, args := range [][]string{
		{"validate"},
		{"validate", "-bogus", "x"},
		{"status", "extra"},
		{"agent"},
		{"agent", "-config", "x", "-log-level", "loud"},
		{"agent", "-config", "x", "-log-target", "syslog"},
		{"version", "extra"},
	} {
		if code, _, _ := runCLI(args...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, exitUsage)
		}
	}
	if code, _, _ := runCLI("status", "-h"); code != exitOK {
		t.Errorf("status -h: %d", code)
	}
}

func TestVersion(t *testing.T) {
	code, stdout, _ := runCLI("version")
	if code != exitOK || !strings.HasPrefix(stdout, "fulcrum ") || !strings.Contains(stdout, "\ncommit: ") || !strings.Contains(stdout, "\ngo: go1.") {
		t.Fatalf("version: %d %q", code, stdout)
	}
	old := version
	version = "v9.9.9"
	defer func() { version = old }()
	if _, stdout, _ := runCLI("version"); !strings.HasPrefix(stdout, "fulcrum v9.9.9\n") {
		t.Fatalf("-X main.version ignored: %q", stdout)
	}
}

func TestValidateGood(t *testing.T) {
	path := filepath.Join(t.TempDir(), "good.hcl")
	writeFile(t, path, goodConfig)
	code, stdout, stderr := runCLI("validate", path)
	if code != exitOK || stdout != path+": ok\n" || stderr != "" {
		t.Fatalf("validate good: %d %q %q", code, stdout, stderr)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.hcl")
	good := filepath.Join(dir, "good.hcl")
	writeFile(t, bad, threeErrors)
	writeFile(t, good, goodConfig)
	code, stdout, stderr := runCLI("validate", bad, good)
	if code != exitFailed {
		t.Fatalf("exit %d", code)
	}
	if stdout != good+": ok\n" {
		t.Errorf("stdout %q, want the good file reported ok", stdout)
	}
	if n := strings.Count(stderr, "Error: "); n != 3 {
		t.Errorf("%d errors printed, want 3:\n%s", n, stderr)
	}
	for _, want := range []string{
		bad + ":3:3", bad + ":6:11", bad + ":9:12", // file:line:col
		`sockett = "/run/fulcrum/fulcrum.sock"`, `level = "loud"`, `listen = "127.0.0.1:99999"`, // source lines
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

func TestValidateJSON(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.hcl")
	writeFile(t, bad, threeErrors)
	bad2 := filepath.Join(dir, "bad2.hcl")
	writeFile(t, bad2, "node {\n")
	code, stdout, _ := runCLI("validate", "-json", bad, bad2)
	if code != exitFailed {
		t.Fatalf("exit %d", code)
	}
	var diags []map[string]any
	if err := json.Unmarshal([]byte(stdout), &diags); err != nil {
		t.Fatalf("not a JSON array: %v\n%s", err, stdout)
	}
	files := map[string]int{}
	for _, d := range diags {
		files[d["file"].(string)]++
		if d["line"] == nil || d["column"] == nil || d["severity"] != "error" {
			t.Errorf("diagnostic %v", d)
		}
	}
	if files[bad] != 3 || files[bad2] == 0 {
		t.Fatalf("diagnostics per file %v", files)
	}

	path := filepath.Join(dir, "good.hcl")
	writeFile(t, path, goodConfig)
	if code, stdout, _ := runCLI("validate", "-json", path); code != exitOK || strings.TrimSpace(stdout) != "[]" {
		t.Fatalf("good -json: %d %q", code, stdout)
	}
}

func TestValidateMissingFile(t *testing.T) {
	code, _, stderr := runCLI("validate", filepath.Join(t.TempDir(), "absent.hcl"))
	if code != exitFailed || !strings.Contains(stderr, "absent.hcl") {
		t.Fatalf("%d %q", code, stderr)
	}
}

func TestClientsWithoutAgent(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	for _, cmd := range []string{"status", "reload", "events"} {
		code, _, stderr := runCLI(cmd, "-socket", sock)
		want := "cannot reach fulcrum agent at " + sock + ": is it running?"
		if code != exitFailed || !strings.Contains(stderr, want) {
			t.Errorf("%s: %d %q", cmd, code, stderr)
		}
	}
	t.Setenv("FULCRUM_SOCKET", sock)
	if _, _, stderr := runCLI("status"); !strings.Contains(stderr, sock) {
		t.Errorf("FULCRUM_SOCKET ignored: %q", stderr)
	}
}

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

type nopNotifier struct{}

func (nopNotifier) Notify(string) error { return nil }

// startAgent runs an in-process agent on a private socket.
func startAgent(t *testing.T) (cfgPath, sock string, stop func()) {
	t.Helper()
	dir := shortDir(t)
	sock = filepath.Join(dir, "f.sock")
	cfgPath = filepath.Join(dir, "node.hcl")
	writeFile(t, cfgPath, fmt.Sprintf("node \"lb1\" {}\ncontrol {\n  socket = %q\n}\nlog {\n  target = \"stderr\"\n}\n", sock))
	a, err := agent.New(agent.Options{ConfigPath: cfgPath, Stderr: &syncBuffer{}, Notifier: nopNotifier{}, Version: buildVersion()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	waitFor(t, "control socket", func() bool { _, err := os.Stat(sock); return err == nil })
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return cfgPath, sock, stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClientCommands(t *testing.T) {
	cfgPath, sock, stop := startAgent(t)

	code, stdout, stderr := runCLI("status", "-socket", sock)
	if code != exitOK {
		t.Fatalf("status: %d %s", code, stderr)
	}
	for _, want := range []string{"node:", "lb1", "version:", "pid:", "uptime:", cfgPath, "generation:", "last reload:", "none\n",
		"\nvrrp:\n  none configured\n", "\nipvs:\n  none configured\n", "\nhealth:\n  none configured\n", "\nl7proxy:\n  none configured\n"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, stdout)
		}
	}

	code, stdout, _ = runCLI("status", "-json", "-socket", sock)
	var st agent.Status
	if code != exitOK || json.Unmarshal([]byte(stdout), &st) != nil || st.Node != "lb1" {
		t.Fatalf("status -json: %d %q", code, stdout)
	}

	events := &syncBuffer{}
	evDone := make(chan int, 1)
	go func() { evDone <- run([]string{"events", "-socket", sock}, events, &syncBuffer{}) }()

	code, stdout, stderr = runCLI("reload", "-socket", sock)
	if code != exitOK || stdout != "reloaded: generation 2\n" {
		t.Fatalf("reload: %d %q %q", code, stdout, stderr)
	}
	waitFor(t, "event line", func() bool {
		if strings.Contains(events.String(), `"type":"config_reloaded"`) {
			return true
		}
		runCLI("reload", "-socket", sock) // the stream may have connected after the first reload
		return false
	})

	writeFile(t, cfgPath, threeErrors)
	code, stdout, stderr = runCLI("reload", "-socket", sock)
	if code != exitFailed || stdout != "" {
		t.Fatalf("bad reload: %d %q", code, stdout)
	}
	for _, want := range []string{"rejected", cfgPath + ":3:3: error: Unsupported argument", `sockett = "/run/fulcrum/fulcrum.sock"`, cfgPath + ":6:11:", cfgPath + ":9:12:"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("bad reload output lacks %q:\n%s", want, stderr)
		}
	}
	if _, stdout, _ := runCLI("status", "-socket", sock); !strings.Contains(stdout, "FAILED") || !strings.Contains(stdout, "lb1") {
		t.Errorf("status after bad reload:\n%s", stdout)
	}

	stop()
	select {
	case code := <-evDone:
		if code != exitOK {
			t.Errorf("events exit %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("events did not end when the agent stopped")
	}
	lines := strings.Split(strings.TrimSpace(events.String()), "\n")
	for _, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Errorf("event line not JSON: %q", l)
		}
	}
}

func TestAgentCommand(t *testing.T) {
	dir := shortDir(t)
	bad := filepath.Join(dir, "bad.hcl")
	writeFile(t, bad, threeErrors)
	code, _, stderr := runCLI("agent", "-config", bad, "-log-target", "stderr")
	if code != exitFailed || !strings.Contains(stderr, "invalid configuration") || strings.Count(stderr, "Error: ") != 3 {
		t.Fatalf("agent with bad config: %d\n%s", code, stderr)
	}

	sock := filepath.Join(dir, "f.sock")
	good := filepath.Join(dir, "good.hcl")
	writeFile(t, good, fmt.Sprintf("node \"lb7\" {}\ncontrol {\n  socket = %q\n}\n", sock))
	stderrBuf := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"agent", "-config", good, "-log-target", "stderr", "-log-level", "debug"}, &syncBuffer{}, stderrBuf)
	}()
	waitFor(t, "control socket", func() bool { _, err := os.Stat(sock); return err == nil })
	if _, stdout, _ := runCLI("status", "-socket", sock); !strings.Contains(stdout, "lb7") {
		t.Fatalf("status: %q", stdout)
	}
	// The agent handles SIGTERM itself: ordered shutdown, exit 0.
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("agent exit %d\n%s", code, stderrBuf)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not stop on SIGTERM")
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
	if !strings.Contains(stderrBuf.String(), "level=DEBUG") {
		t.Errorf("-log-level debug ignored:\n%s", stderrBuf)
	}
}

func TestPrintStatus(t *testing.T) {
	start := time.Date(2026, 11, 25, 1, 0, 0, 0, time.UTC)
	st := &agent.Status{
		Node: "lb1", Version: "v1", PID: 42, StartedAt: start,
		Config: agent.ConfigStatus{Path: "/etc/fulcrum/node.hcl", Generation: 3, LoadedAt: start,
			LastReload: &agent.LastReload{At: start, OK: false, Error: "node.hcl:2:3: Unsupported argument"}},
		Subsystems: []agent.SubsystemStatus{
			{Name: "vrrp", Configured: 2, State: "running", Detail: map[string]any{"VI_1": "MASTER", "VI_2": "BACKUP"}},
			{Name: "ipvs", State: agent.StateNoneConfigured},
		},
	}
	var b bytes.Buffer
	printStatus(&b, st, start.Add(90*time.Minute))
	out := b.String()
	for _, want := range []string{
		"node:", "lb1", "uptime:       1h30m0s", "generation:   3", "FAILED at 2026-11-25T01:00:00Z: node.hcl:2:3: Unsupported argument",
		"\nvrrp:\n  configured: 2\n  state: running\n  VI_1: MASTER\n  VI_2: BACKUP\n",
		"\nipvs:\n  none configured\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
