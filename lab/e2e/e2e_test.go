// Package e2e tests the built fulcrum binary from the outside, the way an
// operator and systemd meet it: a real process, real signals, the real
// control socket, the real sd_notify socket and the real systemd-journald.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lab/fulcrumbin"
	"github.com/fulcrum-lb/fulcrum/lab/journal"
	"github.com/fulcrum-lb/fulcrum/lab/netns"
	"github.com/fulcrum-lb/fulcrum/lab/pairfiles"
	"github.com/fulcrum-lb/fulcrum/lab/require"
)

// binary is the fulcrum binary built once for the whole package.
var binary string

func TestMain(m *testing.M) {
	os.Exit(fulcrumbin.Main(m, &binary))
}

// hangGuard bounds every wait in this file; generous, it only catches hangs.
const hangGuard = 30 * time.Second

// node is one running agent process with its files.
type node struct {
	dir    string
	config string
	socket string
	proc   *netns.Proc
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func validConfig(name, socket string) string {
	return fmt.Sprintf("node %q {}\ncontrol {\n  socket = %q\n}\nlog {\n  level = \"debug\"\n}\n", name, socket)
}

// newNode writes a valid config for node name into a fresh directory.
func newNode(t *testing.T, name string) *node {
	dir := t.TempDir()
	n := &node{dir: dir, config: filepath.Join(dir, "node.hcl"), socket: filepath.Join(dir, "run", "fulcrum.sock")}
	writeFile(t, n.config, validConfig(name, n.socket))
	return n
}

// start runs `fulcrum agent` and waits until its control socket answers.
func (n *node) start(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	n.proc = netns.StartCmd(t, "fulcrum-agent", cmd)
	fulcrumbin.WaitSocket(t, n.proc, n.socket, hangGuard)
}

func (n *node) agentCmd(extra ...string) *exec.Cmd {
	return exec.Command(binary, append([]string{"agent", "-config", n.config}, extra...)...)
}

// cli runs a fulcrum client subcommand against this node's socket.
func (n *node) cli(t *testing.T, args ...string) (string, int) {
	t.Helper()
	return fulcrumbin.CLI(t, binary, n.socket, hangGuard, args...)
}

type status struct {
	Node   string `json:"node"`
	PID    int    `json:"pid"`
	Config struct {
		Path       string `json:"path"`
		Generation int    `json:"generation"`
		LastReload *struct {
			OK    bool   `json:"ok"`
			Error string `json:"error"`
		} `json:"last_reload"`
	} `json:"config"`
	Subsystems []struct {
		Name  string `json:"name"`
		State string `json:"state"`
	} `json:"subsystems"`
}

func (n *node) status(t *testing.T) status {
	t.Helper()
	out, code := n.cli(t, "status", "-json")
	if code != 0 {
		t.Fatalf("fulcrum status -json exited %d: %s", code, out)
	}
	var st status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status is not JSON: %v\n%s", err, out)
	}
	return st
}

// waitStatus polls status until ok returns true.
func (n *node) waitStatus(t *testing.T, what string, ok func(status) bool) status {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		st := n.status(t)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last status %+v\nagent output:\n%s", what, st, n.proc.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and checks a clean exit that removed the socket.
func (n *node) stop(t *testing.T) {
	t.Helper()
	fulcrumbin.Stop(t, n.proc, hangGuard)
	if _, err := os.Stat(n.socket); !os.IsNotExist(err) {
		t.Errorf("control socket %s left behind (stat: %v)", n.socket, err)
	}
}

// TestReloadBadConfigKeepsServing is the operator's reload story: a bad
// config sent with SIGHUP is rejected and the old one keeps serving status;
// a good one is then picked up.
func TestReloadBadConfigKeepsServing(t *testing.T) {
	n := newNode(t, "lb1")
	n.start(t, n.agentCmd("-log-target", "stderr"))

	st := n.status(t)
	if st.Node != "lb1" || st.Config.Generation != 1 || st.Config.LastReload != nil {
		t.Fatalf("initial status = %+v", st)
	}
	if len(st.Subsystems) == 0 {
		t.Fatal("status has no subsystem sections")
	}

	// Invalid: an unknown attribute and a bad level.
	writeFile(t, n.config, "node \"lb1-new\" {}\nlog {\n  level = \"loud\"\n  colour = true\n}\n")
	if err := n.proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	st = n.waitStatus(t, "the failed reload", func(s status) bool { return s.Config.LastReload != nil })
	if st.Config.LastReload.OK || st.Config.LastReload.Error == "" {
		t.Fatalf("bad reload reported as %+v", *st.Config.LastReload)
	}
	if !strings.Contains(st.Config.LastReload.Error, "node.hcl:") {
		t.Errorf("reload error %q does not name file:line:col", st.Config.LastReload.Error)
	}
	if st.Node != "lb1" || st.Config.Generation != 1 {
		t.Fatalf("after a bad reload the agent runs node %q generation %d, want the old lb1 generation 1", st.Node, st.Config.Generation)
	}
	// The text summary still answers from the old config.
	if out, code := n.cli(t, "status"); code != 0 || !strings.Contains(out, "lb1") {
		t.Fatalf("fulcrum status after bad reload: exit %d\n%s", code, out)
	}

	// Valid change: picked up by the next SIGHUP.
	writeFile(t, n.config, validConfig("lb1-new", n.socket))
	if err := n.proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	st = n.waitStatus(t, "the good reload", func(s status) bool { return s.Config.Generation == 2 })
	if st.Node != "lb1-new" || st.Config.LastReload == nil || !st.Config.LastReload.OK {
		t.Fatalf("after a good reload status = %+v", st)
	}
	if out := n.proc.Output(); !strings.Contains(out, "configuration reload failed") {
		t.Errorf("the failed reload was not logged:\n%s", out)
	}
	n.stop(t)
}

// TestReloadCommand drives the same story through `fulcrum reload`, whose
// exit status and output an operator's script relies on.
func TestReloadCommand(t *testing.T) {
	n := newNode(t, "lb1")
	n.start(t, n.agentCmd("-log-target", "stderr"))

	writeFile(t, n.config, "node \"lb1\" {\n  bogus = 1\n}\n")
	out, code := n.cli(t, "reload")
	if code != 1 {
		t.Fatalf("fulcrum reload with a bad config exited %d, want 1:\n%s", code, out)
	}
	if !strings.Contains(out, "node.hcl:2:3") || !strings.Contains(out, "bogus") {
		t.Errorf("reload output does not show the problem at node.hcl:2:3:\n%s", out)
	}
	writeFile(t, n.config, validConfig("lb2", n.socket))
	out, code = n.cli(t, "reload")
	if code != 0 || !strings.Contains(out, "generation 2") {
		t.Fatalf("fulcrum reload with a good config: exit %d\n%s", code, out)
	}
	if st := n.status(t); st.Node != "lb2" {
		t.Fatalf("node = %q after reload, want lb2", st.Node)
	}
	n.stop(t)
}

// TestSystemdNotify runs the agent with a real NOTIFY_SOCKET and checks the
// sequence systemd sees: READY=1; RELOADING=1 with MONOTONIC_USEC then
// READY=1 around a reload; STOPPING=1; and watchdog pings.
func TestSystemdNotify(t *testing.T) {
	n := newNode(t, "lb1")
	sockPath := filepath.Join(n.dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 256)
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:k])
		}
	}()
	next := func(want string) string {
		t.Helper()
		deadline := time.After(hangGuard)
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatalf("notify socket closed waiting for %s", want)
				}
				if strings.Contains(m, want) {
					return m
				}
			case <-deadline:
				t.Fatalf("no %s from the agent\n%s", want, n.proc.Output())
			}
		}
	}
	cmd := n.agentCmd("-log-target", "stderr")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sockPath, "WATCHDOG_USEC=200000")
	n.start(t, cmd)
	next("READY=1")
	next("WATCHDOG=1")

	if err := n.proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	m := next("RELOADING=1")
	if !strings.Contains(m, "MONOTONIC_USEC=") {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", m)
	}
	next("READY=1")
	if err := n.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	next("STOPPING=1")
	<-n.proc.Done()
}

// TestJournald runs the agent beside a real systemd-journald, with stderr a
// pipe (as under a supervisor) so the auto target picks the journal, and
// reads its entries back with journalctl -o json, structured fields included.
func TestJournald(t *testing.T) {
	require.Root(t)
	require.Binary(t, "journalctl")
	j := journal.Start(t)
	n := newNode(t, "lb-journal")
	n.start(t, j.Command(context.Background(), binary, "agent", "-config", n.config))

	e := j.WaitEntry(t, "SYSLOG_IDENTIFIER=fulcrum", "MESSAGE=agent started")
	for k, want := range map[string]string{"NODE": "lb-journal", "GENERATION": "1", "PRIORITY": "6", "FILE": n.config} {
		if e[k] != want {
			t.Errorf("agent started entry: %s = %q, want %q (entry %v)", k, e[k], want, e)
		}
	}

	writeFile(t, n.config, "node \"lb-journal\" {}\nlog {\n  level = \"loud\"\n}\n")
	if err := n.proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	e = j.WaitEntry(t, "SYSLOG_IDENTIFIER=fulcrum", "MESSAGE=configuration reload failed, keeping the running configuration")
	if e["PRIORITY"] != "3" || e["GENERATION"] != "1" || !strings.Contains(e["ERROR"], "node.hcl:3:") {
		t.Errorf("reload failure entry lacks its fields: %v", e)
	}
	if out := n.proc.Output(); strings.Contains(out, "agent started") {
		t.Errorf("auto target logged to stderr although journald was there:\n%s", out)
	}
	n.stop(t)
	j.WaitEntry(t, "SYSLOG_IDENTIFIER=fulcrum", "MESSAGE=agent stopped")
}

// TestExamplesValidate keeps every shipped example valid for this build. The examples are
// validated in a copy of examples/, where the pair's folder gets the certificate and secret
// files its configs name (make demo writes the same ones).
func TestExamplesValidate(t *testing.T) {
	src, err := filepath.Abs("../../examples")
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "examples")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatalf("copy examples: %v", err)
	}
	if _, err := pairfiles.Write(filepath.Join(dst, "pair")); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dst, "*.hcl"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	more, _ := filepath.Glob(filepath.Join(dst, "*", "*.hcl"))
	files = append(files, more...)
	out, err := exec.Command(binary, append([]string{"validate"}, files...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("fulcrum validate %v: %v\n%s", files, err, out)
	}
	for _, f := range files {
		if !strings.Contains(string(out), f+": ok") {
			t.Errorf("validate did not report %s as ok:\n%s", f, out)
		}
	}
}
