// Package journal runs the real systemd-journald for a test, in a private mount namespace, and
// reads its entries back. It is a test bed, imported only by tests and benchmarks.
//
// Usage:
//
//	j := journal.Start(t)
//
//	// A process whose /run/systemd/journal/socket is this journald (it runs in journald's
//	// mount namespace), for instance the agent with -log-target journald:
//	cmd := j.Command(ctx, fulcrumBin, "agent", "-config", cfg, "-log-target", "journald")
//	p := netns.StartCmd(t, "agent", cmd)        // or cmd.Run(), cmd.Start()...
//
//	// The same inside a lab/netns host (mount namespace of journald, network namespace of h):
//	cmd = j.CommandIn(ctx, h.Path(), fulcrumBin, "agent", ...)
//
//	// In-process writers can use the socket through /proc, from the test's own mount namespace:
//	conn, err := net.Dial("unixgram", j.SocketPath())
//
//	// Read entries back, with all their fields. Matches are journalctl's FIELD=value.
//	e := j.WaitEntry(t, "SYSLOG_IDENTIFIER=fulcrum", "MESSAGE=config loaded")
//	if e["FULCRUM_GENERATION"] != "1" { ... }
//	all := j.WaitFor(t, func(es []journal.Entry) bool { return len(es) >= 3 }, "_PID=1234")
//	now := j.Entries(t) // everything so far, no waiting
//
// # The recipe
//
// Verified with systemd 252 (Debian 12) as root, with no systemd as PID 1:
//
//  1. `unshare --mount --propagation slave` gives journald a mount namespace of its own that still
//     receives unmounts from the root namespace (so it does not pin `ip netns` files).
//  2. Inside it, tmpfs on /run and on /var/log: the host's journal socket and journal files are
//     hidden, and journald creates /run/systemd/journal/{socket,stdout,dev-log,io.systemd.journal}
//     and keeps its journal in /run/log/journal/<machine-id>/ (volatile storage).
//  3. A drop-in /run/systemd/journald.conf.d/zz-fulcrum-lab.conf: Storage=volatile, no rate
//     limit, no reading of /dev/kmsg, no forwarding to syslog, kmsg, the console or wall
//     (journald would otherwise write emergency messages to users' terminals).
//  4. A valid /etc/machine-id is needed (journald names its directory after it). If the host's is
//     missing or malformed, an overlay on /etc inside the namespace supplies a fresh one; the
//     host's /etc is never touched.
//  5. `exec /lib/systemd/systemd-journald` with NOTIFY_SOCKET pointing at an abstract socket of
//     the test: journald sends READY=1 when it accepts messages, which is what Start waits for.
//     It needs no socket activation and no systemd as PID 1.
//
// Entries are read with `journalctl --directory=/proc/<pid>/root/run/log/journal -o json --all`
// from the test's own mount namespace. journald handles each datagram or stream line
// asynchronously, so a write returning does not mean the entry is readable yet: use WaitFor or
// WaitEntry rather than Entries right after a write.
//
// Cleanup (tb's cleanup, also on failure or panic): every process still in journald's mount
// namespace (from Command, say) is killed, journald gets SIGTERM (SIGKILL after a grace
// period), and with its last process the namespace and its tmpfs go. journald also gets SIGKILL
// if the test binary dies. On failure, journald's own output and the last entries are logged.
package journal

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lab/require"
)

// Journald is where Debian's systemd package installs the daemon.
const Journald = "/lib/systemd/systemd-journald"

// WaitTimeout bounds WaitFor, WaitEntry and Start's wait for journald to be ready.
const WaitTimeout = 15 * time.Second

// Entry is one journal entry: field name to value, as `journalctl -o json` gives them, with
// binary values decoded to strings and the values of a field that occurs more than once joined
// with "\n". Besides the sender's fields there are journald's trusted ones (_PID, _COMM,
// _TRANSPORT, ...) and __REALTIME_TIMESTAMP, __CURSOR. It is an alias, so []Entry is a
// []map[string]string.
type Entry = map[string]string

// Journal is a running systemd-journald in a private mount namespace.
type Journal struct {
	tb       testing.TB
	cmd      *exec.Cmd
	pid      int
	mntIno   uint64   // inode of journald's mount namespace; 0 until verified
	mntns    *os.File // holds that namespace (and so its inode number) until stop is done
	nsenter  string
	jctl     string
	out      *syncBuffer
	done     chan struct{}
	waitErr  error
	stopOnce sync.Once
}

// Start starts journald for the test and waits until it accepts messages; tb's cleanup stops
// it. Missing binaries (journald, journalctl, unshare, nsenter) skip the test outside CI and fail
// it under CI=true. Call it from the test's goroutine.
func Start(tb testing.TB) *Journal {
	tb.Helper()
	return start(tb, false)
}

const dropIn = `# Written by fulcrum's lab/journal for a test's private journald.
[Journal]
Storage=volatile
Compress=no
Seal=no
SplitMode=none
RateLimitIntervalSec=0
RateLimitBurst=0
RuntimeMaxUse=64M
ReadKMsg=no
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
MaxLevelStore=debug
`

// setupScript runs in the new mount namespace and becomes journald.
// $1 drop-in file, $2 machine id to supply ("" to keep the host's), $3 journald.
const setupScript = `set -eu
mount -t tmpfs -o mode=0755,size=256m fulcrum-lab-journal /run
mount -t tmpfs -o mode=0755,size=16m fulcrum-lab-journal /var/log
mkdir -p /run/systemd/journald.conf.d /run/log/journal
cp "$1" /run/systemd/journald.conf.d/zz-fulcrum-lab.conf
if [ -n "$2" ]; then
	mkdir -p /run/fulcrum-lab-etc/upper /run/fulcrum-lab-etc/work
	echo "$2" > /run/fulcrum-lab-etc/upper/machine-id
	mount -t overlay fulcrum-lab-etc -o lowerdir=/etc,upperdir=/run/fulcrum-lab-etc/upper,workdir=/run/fulcrum-lab-etc/work /etc
fi
exec "$3"
`

func start(tb testing.TB, forceMachineID bool) *Journal {
	tb.Helper()
	require.Root(tb)
	journald := require.Binary(tb, Journald)
	j := &Journal{
		tb:      tb,
		nsenter: require.Binary(tb, "nsenter"),
		jctl:    require.Binary(tb, "journalctl"),
		out:     &syncBuffer{},
		done:    make(chan struct{}),
	}
	unshare := require.Binary(tb, "unshare")

	dir := tb.TempDir()
	conf := filepath.Join(dir, "zz-fulcrum-lab.conf")
	if err := os.WriteFile(conf, []byte(dropIn), 0o644); err != nil {
		tb.Fatal(err)
	}
	machineID := ""
	if forceMachineID || !validMachineID("/etc/machine-id") {
		machineID = randomHex(16)
	}

	// journald reports readiness on NOTIFY_SOCKET; an abstract socket needs no file that
	// journald's mount namespace would have to see.
	var nonce [8]byte
	rand.Read(nonce[:])
	notifyName := fmt.Sprintf("@fulcrum-lab-journal-%d-%x", os.Getpid(), nonce)
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyName, Net: "unixgram"})
	if err != nil {
		tb.Fatalf("journal: notify socket: %v", err)
	}
	defer notify.Close()

	cmd := exec.Command(unshare, "--mount", "--propagation", "slave", "--",
		"/bin/sh", "-c", setupScript, "fulcrum-lab-journal", conf, machineID, journald)
	cmd.Env = append(envWithout(os.Environ(), "NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"),
		"NOTIFY_SOCKET="+notifyName, "SYSTEMD_LOG_TARGET=console", "SYSTEMD_LOG_LEVEL=info")
	cmd.Stdout, cmd.Stderr = j.out, j.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		tb.Fatalf("journal: start journald: %v", err)
	}
	j.cmd, j.pid = cmd, cmd.Process.Pid
	go func() {
		j.waitErr = cmd.Wait()
		close(j.done)
	}()
	tb.Cleanup(j.stop)

	if err := j.waitReady(notify); err != nil {
		tb.Fatalf("journal: journald did not become ready: %v\njournald output:\n%s", err, j.out.String())
	}
	// Hold journald's mount namespace open until the cleanup is done: processes are matched
	// against its inode number, which a freed namespace soon passes on to a new one.
	mntns, err := os.Open(j.MountNS())
	if err != nil {
		tb.Fatalf("journal: %v", err)
	}
	var st, self syscall.Stat_t
	if err := syscall.Fstat(int(mntns.Fd()), &st); err != nil {
		mntns.Close()
		tb.Fatalf("journal: %v", err)
	}
	if err := syscall.Stat("/proc/self/ns/mnt", &self); err != nil || self.Ino == st.Ino {
		mntns.Close()
		tb.Fatalf("journal: journald does not run in a mount namespace of its own (%v); refusing to go on", err)
	}
	j.mntns, j.mntIno = mntns, st.Ino
	return j
}

func (j *Journal) waitReady(notify *net.UnixConn) error {
	deadline := time.Now().Add(WaitTimeout)
	buf := make([]byte, 4096)
	for {
		select {
		case <-j.done:
			return fmt.Errorf("journald exited: %v", j.waitErr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no READY=1 within %v", WaitTimeout)
		}
		notify.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, _, err := notify.ReadFromUnix(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			return err
		}
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			if line == "READY=1" {
				if _, err := os.Stat(j.SocketPath()); err != nil {
					return fmt.Errorf("READY=1 but %v", err)
				}
				return nil
			}
		}
	}
}

func (j *Journal) stop() {
	j.stopOnce.Do(func() {
		if killed := j.killOthers(); len(killed) > 0 {
			j.tb.Logf("journal: killed processes still in journald's mount namespace: %s", strings.Join(killed, "; "))
		}
		failed := j.tb.Failed()
		var tail string
		if failed {
			tail = j.tail(100)
		}
		select {
		case <-j.done:
		default:
			syscall.Kill(-j.pid, syscall.SIGTERM)
			select {
			case <-j.done:
			case <-time.After(5 * time.Second):
				syscall.Kill(-j.pid, syscall.SIGKILL)
				<-j.done
			}
		}
		syscall.Kill(-j.pid, syscall.SIGKILL)
		// A process that was still entering the namespace at the first scan.
		if killed := j.killOthers(); len(killed) > 0 {
			j.tb.Logf("journal: killed processes still in journald's mount namespace: %s", strings.Join(killed, "; "))
		}
		if j.mntns != nil {
			j.mntns.Close()
		}
		if failed {
			j.tb.Logf("journal: journald output:\n%s\njournal: last entries:\n%s", j.out.String(), tail)
		}
	})
}

// killOthers kills every process in journald's mount namespace except journald itself.
func (j *Journal) killOthers() []string {
	if j.mntIno == 0 {
		return nil
	}
	want := fmt.Sprintf("mnt:[%d]", j.mntIno)
	ents, _ := os.ReadDir("/proc")
	var killed []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == j.pid || pid == os.Getpid() {
			continue
		}
		if link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err != nil || link != want {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))))
		}
	}
	return killed
}

// Pid is journald's process id.
func (j *Journal) Pid() int { return j.pid }

// MountNS is the path of journald's mount namespace, for nsenter --mount=PATH or setns.
func (j *Journal) MountNS() string { return fmt.Sprintf("/proc/%d/ns/mnt", j.pid) }

// SocketPath is journald's native-protocol socket as seen from the test's own mount namespace
// (through /proc/<pid>/root). Inside journald's namespace, the socket is at the standard
// /run/systemd/journal/socket.
func (j *Journal) SocketPath() string {
	return fmt.Sprintf("/proc/%d/root/run/systemd/journal/socket", j.pid)
}

// Dir is journald's journal directory as seen from the test's mount namespace.
func (j *Journal) Dir() string { return fmt.Sprintf("/proc/%d/root/run/log/journal", j.pid) }

// Command returns a command that runs name in journald's mount namespace (through nsenter),
// where /run/systemd/journal/socket, stdout and dev-log are this journald's: sd_journal_*,
// go-systemd's journal package, systemd-cat and syslog(3) all log to it. The process keeps the
// test's network namespace, environment and working directory (do not set Cmd.Dir: nsenter's
// --wd is fixed when Command is called). /run inside is journald's tmpfs: the host's /run,
// including /run/netns, is not visible there. ctx kills the process, as for exec.CommandContext;
// tb's cleanup kills it in any case.
func (j *Journal) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return j.command(ctx, nil, name, args...)
}

// CommandIn is Command in the network namespace netnsPath too (a lab/netns Host.Path(),
// "/run/netns/<name>"), which nsenter opens before entering journald's mount namespace.
func (j *Journal) CommandIn(ctx context.Context, netnsPath, name string, args ...string) *exec.Cmd {
	return j.command(ctx, []string{"--net=" + netnsPath}, name, args...)
}

func (j *Journal) command(ctx context.Context, extra []string, name string, args ...string) *exec.Cmd {
	wd, err := os.Getwd()
	if err != nil {
		wd = "/"
	}
	a := append([]string{"--mount=" + j.MountNS(), "--wd=" + wd}, extra...)
	a = append(append(a, "--", name), args...)
	return exec.CommandContext(ctx, j.nsenter, a...)
}

// Entries returns the entries journald has stored so far that match all of match (journalctl
// matches, "FIELD=value"; "+" between groups means OR), oldest first. It fails the test if the
// journal cannot be read. Call it from the test's goroutine.
func (j *Journal) Entries(tb testing.TB, match ...string) []Entry {
	tb.Helper()
	es, err := j.read(match)
	if err != nil {
		tb.Fatalf("journal: %v", err)
	}
	return es
}

// WaitFor reads the matching entries (see Entries) again and again until pred holds for them,
// and returns them; it fails the test after WaitTimeout, showing what it saw. Call it from the
// test's goroutine.
func (j *Journal) WaitFor(tb testing.TB, pred func([]Entry) bool, match ...string) []Entry {
	tb.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for {
		es, err := j.read(match)
		if err != nil {
			tb.Fatalf("journal: %v", err)
		}
		if pred(es) {
			return es
		}
		if time.Now().After(deadline) {
			tb.Fatalf("journal: no entries matching %q satisfied the condition within %v; %d matched:\n%s",
				match, WaitTimeout, len(es), formatEntries(es, 50))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// WaitEntry waits until an entry matches all of match and returns the first such entry; it fails
// the test after WaitTimeout. Call it from the test's goroutine.
func (j *Journal) WaitEntry(tb testing.TB, match ...string) Entry {
	tb.Helper()
	return j.WaitFor(tb, func(es []Entry) bool { return len(es) > 0 }, match...)[0]
}

func (j *Journal) read(match []string) ([]Entry, error) {
	for _, m := range match {
		if m != "+" && (!strings.Contains(m, "=") || strings.HasPrefix(m, "-")) {
			return nil, fmt.Errorf("bad match %q: want FIELD=value or +", m)
		}
	}
	select {
	case <-j.done:
		return nil, fmt.Errorf("journald has exited (%v); its output:\n%s", j.waitErr, j.out.String())
	default:
	}
	args := append([]string{"--directory=" + j.Dir(), "--output=json", "--all", "--no-pager", "--quiet"}, match...)
	cmd := exec.Command(j.jctl, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("journalctl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return parseJSONLines(out)
}

// tail returns the last n entries in short form, for failure logs.
func (j *Journal) tail(n int) string {
	out, err := exec.Command(j.jctl, "--directory="+j.Dir(), "--output=short-precise", "--no-pager", "--quiet", "-n", strconv.Itoa(n)).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("(journalctl: %v: %s)", err, out)
	}
	return string(out)
}

func parseJSONLines(out []byte) ([]Entry, error) {
	var es []Entry
	for _, line := range bytes.Split(out, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(line, &raw); err != nil {
			return nil, fmt.Errorf("journalctl output: %v: %q", err, line)
		}
		e := make(Entry, len(raw))
		for k, v := range raw {
			s, err := decodeValue(v)
			if err != nil {
				return nil, fmt.Errorf("journalctl output: field %s: %v", k, err)
			}
			e[k] = s
		}
		es = append(es, e)
	}
	return es, nil
}

// decodeValue decodes journalctl's JSON for one field: a string; null (a value too large to
// show); an array of byte values (a binary value); or an array of those (a repeated field).
func decodeValue(v json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		return s, nil
	}
	var bs []byte
	var nums []int
	if err := json.Unmarshal(v, &nums); err == nil {
		for _, n := range nums {
			bs = append(bs, byte(n))
		}
		return string(bs), nil
	}
	var multi []json.RawMessage
	if err := json.Unmarshal(v, &multi); err == nil {
		parts := make([]string, 0, len(multi))
		for _, m := range multi {
			p, err := decodeValue(m)
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return strings.Join(parts, "\n"), nil
	}
	if string(v) == "null" {
		return "", nil
	}
	return "", fmt.Errorf("unexpected value %s", v)
}

func formatEntries(es []Entry, max int) string {
	var b strings.Builder
	if len(es) > max {
		fmt.Fprintf(&b, "[... %d earlier entries ...]\n", len(es)-max)
		es = es[len(es)-max:]
	}
	for _, e := range es {
		fmt.Fprintf(&b, "  _PID=%s SYSLOG_IDENTIFIER=%s MESSAGE=%q\n", e["_PID"], e["SYSLOG_IDENTIFIER"], e["MESSAGE"])
	}
	return b.String()
}

func validMachineID(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	s := strings.TrimSpace(string(b))
	if len(s) != 32 || s == strings.Repeat("0", 32) {
		return false
	}
	_, err = hex.DecodeString(s)
	return err == nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func envWithout(env []string, names ...string) []string {
	out := env[:0:0]
next:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 {
		return len(p), nil // journald chatting this much is a bug of its own; keep the start
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
