package journal_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	sdjournal "github.com/coreos/go-systemd/v22/journal"

	"github.com/fulcrum-lb/fulcrum/lab/journal"
	"github.com/fulcrum-lb/fulcrum/lab/netns"
	"github.com/fulcrum-lb/fulcrum/lab/require"
)

const helperEnv = "FULCRUM_JOURNAL_HELPER"

// TestHelperSend is not a test: the tests run the test binary with helperEnv set, inside
// journald's mount namespace, to log the way the agent will, with go-systemd's journal package
// at the standard socket path.
func TestHelperSend(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("helper process only")
	}
	if !sdjournal.Enabled() {
		fmt.Println("journal not enabled: no /run/systemd/journal/socket")
		os.Exit(3)
	}
	err := sdjournal.Send("hello from the helper", sdjournal.PriWarning, map[string]string{
		"FOO":               "bar",
		"SYSLOG_IDENTIFIER": "fulcrum-lab-helper",
		"MULTI":             "line one\nline two",
	})
	if err != nil {
		fmt.Println(err)
		os.Exit(4)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestNativeProtocolFieldsComeBack(t *testing.T) {
	t.Parallel()
	j := journal.Start(t)
	cmd := j.Command(ctxT(t), os.Args[0], "-test.run=^TestHelperSend$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	e := j.WaitEntry(t, "FOO=bar")
	want := map[string]string{
		"MESSAGE":           "hello from the helper",
		"PRIORITY":          "4",
		"SYSLOG_IDENTIFIER": "fulcrum-lab-helper",
		"MULTI":             "line one\nline two",
		"_TRANSPORT":        "journal",
		"_PID":              strconv.Itoa(cmd.Process.Pid),
	}
	for k, v := range want {
		if e[k] != v {
			t.Errorf("%s = %q, want %q (entry %v)", k, e[k], v, e)
		}
	}
}

func TestSystemdCat(t *testing.T) {
	t.Parallel()
	j := journal.Start(t)
	cat := require.Binary(t, "systemd-cat")
	out, err := j.Command(ctxT(t), cat, "-t", "fulcrum-lab-cat", "-p", "err", "echo", "hello via stdout").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	e := j.WaitEntry(t, "SYSLOG_IDENTIFIER=fulcrum-lab-cat")
	if e["MESSAGE"] != "hello via stdout" || e["_TRANSPORT"] != "stdout" || e["PRIORITY"] != "3" {
		t.Fatalf("entry %v", e)
	}
	// journald's own start-up messages are there too, and matches filter them out.
	if all := j.Entries(t); len(all) < 2 {
		t.Fatalf("only %d entries in all", len(all))
	}
}

// nativeDatagram encodes fields in journald's native protocol, with the binary-safe form for
// every value so that newlines and NULs pass.
func nativeDatagram(fields [][2]string) []byte {
	var b bytes.Buffer
	for _, f := range fields {
		b.WriteString(f[0])
		b.WriteByte('\n')
		binary.Write(&b, binary.LittleEndian, uint64(len(f[1])))
		b.WriteString(f[1])
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func TestSocketPathFromTestNamespace(t *testing.T) {
	t.Parallel()
	j := journal.Start(t)
	c, err := net.Dial("unixgram", j.SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(nativeDatagram([][2]string{
		{"MESSAGE", "first line\nsecond line"},
		{"PRIORITY", "6"},
		{"FOO", "baz"},
		{"BLOB", "a\x00b\x01"},
		{"REPEATED", "one"},
		{"REPEATED", "two"},
	})); err != nil {
		t.Fatal(err)
	}
	e := j.WaitEntry(t, "FOO=baz")
	if e["MESSAGE"] != "first line\nsecond line" || e["BLOB"] != "a\x00b\x01" || e["REPEATED"] != "one\ntwo" {
		t.Fatalf("entry %q", e)
	}
	if e["_PID"] != strconv.Itoa(os.Getpid()) {
		t.Fatalf("_PID %s, want ours (%d)", e["_PID"], os.Getpid())
	}
	// Several entries and WaitFor.
	for i := range 20 {
		c.Write(nativeDatagram([][2]string{{"MESSAGE", fmt.Sprintf("burst %d", i)}, {"BURST", "1"}}))
	}
	es := j.WaitFor(t, func(es []journal.Entry) bool { return len(es) == 20 }, "BURST=1")
	for i, e := range es {
		if e["MESSAGE"] != fmt.Sprintf("burst %d", i) {
			t.Fatalf("entry %d: %q", i, e["MESSAGE"])
		}
	}
}

func TestProcessSeesThisJournald(t *testing.T) {
	t.Parallel()
	j := journal.Start(t)
	st, err := os.Stat(j.SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	ino := st.Sys().(*syscall.Stat_t).Ino
	out, err := j.Command(ctxT(t), "stat", "-c", "%i %F", "/run/systemd/journal/socket").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != fmt.Sprintf("%d socket", ino) {
		t.Fatalf("inside: %q, %v; want inode %d", out, err, ino)
	}
	// The host's socket, if there is one, is another.
	if hst, err := os.Stat("/run/systemd/journal/socket"); err == nil && hst.Sys().(*syscall.Stat_t).Ino == ino {
		t.Fatal("the lab journald's socket is the host's")
	}
	// Relative paths work: the working directory is kept.
	wd, _ := os.Getwd()
	out, err = j.Command(ctxT(t), "pwd").Output()
	if err != nil || strings.TrimSpace(string(out)) != wd {
		t.Fatalf("pwd inside: %q, %v; want %s", out, err, wd)
	}
}

func TestCommandInNetns(t *testing.T) {
	t.Parallel()
	require.Binary(t, "ip")
	j := journal.Start(t)
	h := netns.NewHost(t, "jhost", netns.Options{})
	out, err := j.CommandIn(ctxT(t), h.Path(), "sh", "-c",
		"ip -o link show | wc -l; echo from-the-netns | systemd-cat -t fulcrum-lab-netns").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Fatalf("inside: %q, %v (want only lo)", out, err)
	}
	if e := j.WaitEntry(t, "SYSLOG_IDENTIFIER=fulcrum-lab-netns"); e["MESSAGE"] != "from-the-netns" {
		t.Fatalf("entry %v", e)
	}
}

func TestCleanup(t *testing.T) {
	t.Parallel()
	var jpid, straypid int
	var mntns string
	t.Run("inner", func(t *testing.T) {
		j := journal.Start(t)
		jpid = j.Pid()
		mntns, _ = os.Readlink(j.MountNS())
		stray := j.Command(context.Background(), "sleep", "600")
		if err := stray.Start(); err != nil {
			t.Fatal(err)
		}
		straypid = stray.Process.Pid
		// Wait until nsenter has entered the namespace and become sleep.
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", straypid)); l == mntns {
				break
			}
		}
		// Reap it once killed, as a test that started it would.
		go stray.Wait()
	})
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && (exists(jpid) || exists(straypid)) {
		time.Sleep(10 * time.Millisecond)
	}
	if exists(jpid) || exists(straypid) {
		t.Fatalf("journald %d alive: %v; stray %d alive: %v", jpid, exists(jpid), straypid, exists(straypid))
	}
	// No process is left in the mount namespace, so it is gone. The namespace's other
	// processes (the launcher around journald) end as their children are reaped, a moment
	// after journald: wait for them under the same deadline, so that only a process left
	// behind fails.
	for {
		pid := inNamespace(mntns)
		if pid == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %s still in journald's mount namespace %s", pid, mntns)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// inNamespace returns a process in the mount namespace mntns, or "".
func inNamespace(mntns string) string {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if l, err := os.Readlink("/proc/" + e.Name() + "/ns/mnt"); err == nil && l == mntns {
			return e.Name()
		}
	}
	return ""
}

func exists(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

func TestBadMatch(t *testing.T) {
	t.Parallel()
	j := journal.Start(t)
	// A bad match must not be passed to journalctl as an option.
	r := &fatalRecorder{TB: t}
	func() {
		defer func() { recover() }()
		j.Entries(r, "--since=yesterday")
	}()
	if !strings.Contains(r.msg, "bad match") {
		t.Fatalf("got %q", r.msg)
	}
}

// fatalRecorder records Fatalf instead of failing, then stops the caller with a panic.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}
func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	panic("fatal")
}
