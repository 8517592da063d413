package keepalived

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lab/netns"
	"github.com/fulcrum-lb/fulcrum/lab/require"
)

// VRRP states as keepalived reports them in notifications.
const (
	Master  = "MASTER"
	Backup  = "BACKUP"
	Fault   = "FAULT"
	Stopped = "STOP"    // the instance stopped (keepalived shutting down)
	Deleted = "DELETED" // the instance was removed by a reload
)

// Notice is one line keepalived wrote to the node's notify FIFO, stamped when it was read.
type Notice struct {
	// Time the line was read (within a millisecond or so of keepalived writing it).
	Time time.Time
	// Kind is "INSTANCE" or "GROUP".
	Kind string
	// Name of the instance or sync group.
	Name string
	// State is one of Master, Backup, Fault, Stopped, Deleted, or an event that is not a
	// state: "MASTER_RX_LOWER_PRI", "MASTER_PRIORITY", "BACKUP_PRIORITY".
	State string
	// Priority is the instance's effective priority at the time.
	Priority int
}

func (n Notice) String() string {
	return fmt.Sprintf("%s %s %q %s %d", n.Time.Format("15:04:05.000000"), n.Kind, n.Name, n.State, n.Priority)
}

func isState(s string) bool {
	switch s {
	case Master, Backup, Fault, Stopped, Deleted:
		return true
	}
	return false
}

// Node is a keepalived process running inside a netns.Host, started by Start and stopped by
// the test's cleanup.
type Node struct {
	// Host the node runs in.
	Host *netns.Host
	// Dir is the node's private directory (a t.TempDir): keepalived.conf, the pid files and
	// the notify FIFO.
	Dir string
	// ConfPath is the configuration file keepalived reads (Dir/keepalived.conf).
	ConfPath string
	// Started is the time just before the process was started.
	Started time.Time

	proc     *netns.Proc
	bin      string
	fifoPath string
	fifo     *os.File
	readDone chan struct{}

	mu      sync.Mutex
	cfg     Config
	notices []Notice
	state   map[string]int // instance name -> index in notices of its current state
	changed chan struct{}  // closed and replaced on every notice
}

// flags are the command-line flags Start gives keepalived before its file names: no fork (the
// test owns the process), logs to the console (captured by netns.Proc) in detail and not to
// syslog, and no respawning of a crashed child (a crash must show, not heal).
var flags = []string{"--dont-fork", "--log-console", "--log-detail", "--no-syslog", "--dont-respawn"}

// Start runs keepalived with cfg inside host and returns at once, while keepalived starts up
// (use WaitState). The configuration, pid files and notify FIFO live in a t.TempDir of their
// own, so nodes never share files with each other or with a keepalived of the machine (all
// four pid files are given: keepalived otherwise reads, and on exit deletes, /run/*.pid even
// for subsystems it does not run). keepalived runs only its VRRP subsystem (--vrrp) unless
// cfg has VirtualServers. The rendered file is first checked with `keepalived --config-test`
// inside the host, so a typo fails the test instead of being logged and ignored. An empty
// cfg.RouterID becomes the host's name.
//
// t's cleanup stops the node (SIGTERM to its process group, SIGKILL after netns.StopGrace)
// and, if the test failed, logs its output and the notices it sent. Call Start from the
// test's goroutine.
func Start(t testing.TB, host *netns.Host, cfg Config) *Node {
	t.Helper()
	require.Binary(t, "ip")
	bin := require.Binary(t, "keepalived")
	if cfg.RouterID == "" {
		cfg.RouterID = host.Name
	}
	dir := t.TempDir()
	n := &Node{
		Host:     host,
		bin:      bin,
		Dir:      dir,
		ConfPath: filepath.Join(dir, "keepalived.conf"),
		fifoPath: filepath.Join(dir, "notify.fifo"),
		cfg:      cfg,
		state:    map[string]int{},
		changed:  make(chan struct{}),
		readDone: make(chan struct{}),
	}
	if err := n.writeConfig(cfg); err != nil {
		t.Fatalf("keepalived: %s: %v", host.Name, err)
	}
	if err := n.configTest(); err != nil {
		t.Fatalf("keepalived: %s: %v", host.Name, err)
	}
	if err := syscall.Mkfifo(n.fifoPath, 0o600); err != nil {
		t.Fatalf("keepalived: %s: mkfifo %s: %v", host.Name, n.fifoPath, err)
	}
	// O_RDWR: the open does not wait for a writer, and the read end never sees EOF when
	// keepalived closes its end (a reload, a restart, a crash).
	f, err := os.OpenFile(n.fifoPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("keepalived: %s: open %s: %v", host.Name, n.fifoPath, err)
	}
	n.fifo = f
	go n.readNotices()

	args := append([]string(nil), flags...)
	if len(cfg.VirtualServers) == 0 {
		args = append(args, "--vrrp")
	}
	args = append(args,
		"--use-file="+n.ConfPath,
		"--pid="+filepath.Join(dir, "keepalived.pid"),
		"--vrrp_pid="+filepath.Join(dir, "vrrp.pid"),
		"--checkers_pid="+filepath.Join(dir, "checkers.pid"),
		"--bfd_pid="+filepath.Join(dir, "bfd.pid"),
	)
	// Registered before Host.Start registers the process's own cleanup, so this runs after it:
	// the FIFO closes once keepalived is gone.
	t.Cleanup(func() {
		if n.proc != nil {
			_ = n.proc.Stop()
		}
		n.fifo.Close()
		<-n.readDone
		if t.Failed() {
			var b strings.Builder
			for _, no := range n.Notices() {
				fmt.Fprintf(&b, "\n  %s", no)
			}
			t.Logf("keepalived: %s: notices:%s", host.Name, b.String())
		}
	})
	n.Started = time.Now()
	n.proc = host.Start(t, bin, args...)
	return n
}

// writeConfig renders cfg with the node's FIFO and replaces the configuration file atomically.
func (n *Node) writeConfig(cfg Config) error {
	text, err := cfg.render(n.fifoPath)
	if err != nil {
		return err
	}
	tmp := n.ConfPath + ".new"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, n.ConfPath)
}

// configTest runs `keepalived --config-test` on the node's file inside its host, where the
// interfaces the file names exist. keepalived exits non-zero for warnings too ("No VIP
// specified", a rounded advert_int, preempt_delay reset by nopreempt), which is what a test
// wants: keepalived would otherwise run something other than what was asked.
func (n *Node) configTest() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Its findings go to the file given: on stderr they were lost when not on a terminal.
	log := filepath.Join(n.Dir, "config-test.log")
	out, err := n.Host.Command(ctx, n.bin, "--config-test="+log, "--use-file="+n.ConfPath).CombinedOutput()
	if err != nil {
		found, _ := os.ReadFile(log)
		text, _ := os.ReadFile(n.ConfPath)
		return fmt.Errorf("keepalived --config-test refused the configuration (%v):\n%s%s\n--- %s:\n%s", err, found, out, n.ConfPath, text)
	}
	return nil
}

func (n *Node) readNotices() {
	defer close(n.readDone)
	s := bufio.NewScanner(n.fifo)
	for s.Scan() {
		no, ok := parseNotice(s.Text())
		if !ok {
			continue
		}
		no.Time = time.Now()
		n.mu.Lock()
		n.notices = append(n.notices, no)
		if no.Kind == "INSTANCE" && isState(no.State) {
			n.state[no.Name] = len(n.notices) - 1
		}
		close(n.changed)
		n.changed = make(chan struct{})
		n.mu.Unlock()
	}
}

// parseNotice parses `INSTANCE "VI_1" MASTER 150`.
func parseNotice(line string) (Notice, bool) {
	f := strings.Fields(line)
	if len(f) < 3 {
		return Notice{}, false
	}
	no := Notice{Kind: f[0], Name: strings.Trim(f[1], `"`), State: f[2]}
	if len(f) > 3 {
		no.Priority, _ = strconv.Atoi(f[3])
	}
	return no, true
}

// Config returns the configuration the node runs (as last given to Start or Update).
func (n *Node) Config() Config {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cfg
}

// State returns the state keepalived last reported for the instance (Master, Backup, Fault,
// Stopped, Deleted), or "" before its first report. After Kill it is whatever keepalived said
// last: a killed daemon reports nothing.
func (n *Node) State(instance string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if i, ok := n.state[instance]; ok {
		return n.notices[i].State
	}
	return ""
}

// Notices returns every notice keepalived has sent so far, in order.
func (n *Node) Notices() []Notice {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Notice(nil), n.notices...)
}

// AwaitState waits until the instance's state is state and returns the notice that made it so
// (at once if it already is). It fails if ctx ends or keepalived exits first. Safe to call
// from any goroutine.
func (n *Node) AwaitState(ctx context.Context, instance, state string) (Notice, error) {
	exited := false
	for {
		n.mu.Lock()
		i, ok := n.state[instance]
		if ok && n.notices[i].State == state {
			no := n.notices[i]
			n.mu.Unlock()
			return no, nil
		}
		changed := n.changed
		n.mu.Unlock()
		if exited {
			return Notice{}, fmt.Errorf("keepalived: %s: exited (%v) with instance %s in state %q, not %s",
				n.Host.Name, n.proc.Err(), instance, n.State(instance), state)
		}
		select {
		case <-changed:
		case <-n.proc.Done():
			// Give the reader a moment for lines still in the FIFO, then look once more.
			select {
			case <-changed:
			case <-time.After(100 * time.Millisecond):
			}
			exited = true
		case <-ctx.Done():
			return Notice{}, fmt.Errorf("keepalived: %s: instance %s in state %q, not %s: %w",
				n.Host.Name, instance, n.State(instance), state, ctx.Err())
		}
	}
}

// WaitState is AwaitState with a timeout that fails the test. Call it from the test's
// goroutine.
func (n *Node) WaitState(t testing.TB, instance, state string, timeout time.Duration) Notice {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	no, err := n.AwaitState(ctx, instance, state)
	if err != nil {
		t.Fatalf("%v\nnotices: %v\noutput:\n%s", err, n.Notices(), n.Output())
	}
	return no
}

// Kill sends SIGKILL to keepalived's whole process group at once and waits for it to go: a
// crash. Unlike a kill of the parent alone (whose VRRP child gets SIGTERM as its parent-death
// signal and shuts down cleanly), nothing is sent: no priority-0 advert, and the VIPs stay on
// the host's interfaces, as after a real crash of the daemon. The peers take over after their
// master down interval.
func (n *Node) Kill() error {
	select {
	case <-n.proc.Done():
		return nil
	default:
	}
	if err := syscall.Kill(-n.proc.Pid(), syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("keepalived: %s: kill: %w", n.Host.Name, err)
	}
	<-n.proc.Done()
	return nil
}

// Stop ends keepalived gracefully (SIGTERM): each MASTER instance sends an advert with
// priority 0, so a backup takes over after its skew time, and removes its VIPs. It waits for
// the process to exit and returns its exit error (nil for a clean exit).
func (n *Node) Stop() error { return n.proc.Stop() }

// Reload sends SIGHUP to keepalived, which re-reads its configuration file, and waits (up to
// 10s) until it logs that the reload finished.
func (n *Node) Reload() error {
	before := strings.Count(n.proc.Output(), reloadDone)
	if err := n.proc.Signal(syscall.SIGHUP); err != nil {
		return fmt.Errorf("keepalived: %s: SIGHUP: %w", n.Host.Name, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(n.proc.Output(), reloadDone) <= before {
		select {
		case <-n.proc.Done():
			return fmt.Errorf("keepalived: %s: exited during reload: %v", n.Host.Name, n.proc.Err())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("keepalived: %s: no %q in its output 10s after SIGHUP", n.Host.Name, reloadDone)
		}
	}
	return nil
}

// reloadDone is what keepalived's VRRP process logs at the end of a reload.
const reloadDone = "Reload complete"

// Update replaces the node's configuration with cfg (RouterID defaulting as in Start) and
// reloads it (Reload). The file is checked with --config-test first and left unchanged if
// cfg is refused.
func (n *Node) Update(cfg Config) error {
	if cfg.RouterID == "" {
		cfg.RouterID = n.Host.Name
	}
	old, err := os.ReadFile(n.ConfPath)
	if err != nil {
		return err
	}
	if err := n.writeConfig(cfg); err != nil {
		return err
	}
	if err := n.configTest(); err != nil {
		_ = os.WriteFile(n.ConfPath, old, 0o600)
		return err
	}
	n.mu.Lock()
	n.cfg = cfg
	n.mu.Unlock()
	return n.Reload()
}

// Output returns what keepalived has logged so far (the last MiB).
func (n *Node) Output() string { return n.proc.Output() }

// Proc is the underlying process (its pid is the keepalived parent's), for WaitOutput.
func (n *Node) Proc() *netns.Proc { return n.proc }

// HasVIP reports whether any interface of host (lo excluded) now holds addr. An error reading
// the addresses (a removed host) reports false.
func HasVIP(host *netns.Host, addr netip.Addr) bool {
	ok, err := host.HasAddr(addr)
	return ok && err == nil
}

// WaitVIP waits until HasVIP(host, addr) is want, polling every 10ms, and fails the test after
// timeout. It returns when the condition was first seen. Call it from the test's goroutine.
func WaitVIP(t testing.TB, host *netns.Host, addr netip.Addr, want bool, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if HasVIP(host, addr) == want {
			return time.Now()
		}
		if time.Now().After(deadline) {
			addrs, err := host.ListAddrs("")
			t.Fatalf("keepalived: %s: holds %s = %v, want %v after %v; its addresses: %v %v", host.Name, addr, !want, want, timeout, addrs, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
