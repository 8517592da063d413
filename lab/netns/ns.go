package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// RunDir is where named network namespaces live, as for `ip netns`.
const RunDir = "/run/netns"

// Prefix starts the name of every namespace this package makes: Prefix + "<pid>-<n>-<name>".
const Prefix = "fl-"

// namespace is one named network namespace: a file in RunDir with the namespace bind-mounted on it.
type namespace struct {
	name string // e.g. fl-1234-1-lb1
	path string // RunDir/name
	ino  uint64 // inode of the nsfs object, to find processes inside

	mu     sync.RWMutex
	fd     int // O_RDONLY on path; -1 once closed
	nl     *netlink.Handle
	closed bool
}

// ErrRemoved is returned by a host's methods once the host has been removed by the test's cleanup.
var ErrRemoved = errors.New("netns: namespace already removed (used after the test's cleanup?)")

// nsSetup is run inside a new namespace right after it is created, on its thread.
type nsSetup func() error

// createNamespace makes a new named network namespace "fl-<pid>-<n>-<label>" with the first
// free n, runs setup inside it, and opens a netlink handle on it.
func createNamespace(label string, setup nsSetup) (*namespace, error) {
	if err := prepareRunDir(); err != nil {
		return nil, err
	}
	var name, path string
	for n := 1; ; n++ {
		name = fmt.Sprintf("%s%d-%d-%s", Prefix, os.Getpid(), n, label)
		path = filepath.Join(RunDir, name)
		f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("netns: create %s: %w", path, err)
		}
		f.Close()
		break
	}
	ns := &namespace{name: name, path: path, fd: -1}
	err := onNewThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mount %s on %s: %w", src, path, err)
		}
		if setup != nil {
			return setup()
		}
		return nil
	})
	if err == nil {
		err = ns.open()
	}
	if err != nil {
		ns.remove()
		return nil, fmt.Errorf("netns: create namespace %s: %w", name, err)
	}
	return ns, nil
}

func (ns *namespace) open() error {
	fd, err := unix.Open(ns.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return err
	}
	if st.Dev == 0 || st.Ino == 0 {
		unix.Close(fd)
		return errors.New("not a namespace file")
	}
	h, err := netlink.NewHandleAt(vns.NsHandle(fd), unix.NETLINK_ROUTE)
	if err != nil {
		unix.Close(fd)
		return fmt.Errorf("netlink handle: %w", err)
	}
	ns.fd, ns.ino, ns.nl = fd, st.Ino, h
	return nil
}

// prepareRunDir makes RunDir a shared mount point, as `ip netns add` does, so that unmounting a
// namespace file also unmounts its copies in other mount namespaces (those of `ip netns exec`
// children, for instance) and the namespace can be freed.
func prepareRunDir() error {
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	d, err := os.Open(RunDir)
	if err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	defer d.Close()
	// Serialise the upgrade to a mount point with other test processes (and other packages'
	// tests running in parallel) so it happens once.
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("netns: lock %s: %w", RunDir, err)
	}
	defer unix.Flock(int(d.Fd()), unix.LOCK_UN)
	for made := false; ; made = true {
		err := unix.Mount("", RunDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		if err == nil {
			return nil
		}
		if err != unix.EINVAL || made {
			return fmt.Errorf("netns: make %s shared: %w", RunDir, err)
		}
		if err := unix.Mount(RunDir, RunDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("netns: bind-mount %s on itself: %w", RunDir, err)
		}
	}
}

// remove kills what still runs inside, closes the handles and unmounts and removes the file.
// It returns what it killed (for a log line) and the first error.
func (ns *namespace) remove() (killed []string, err error) {
	ns.mu.Lock()
	wasClosed := ns.closed
	ns.closed = true
	fd, nl := ns.fd, ns.nl
	ns.fd, ns.nl = -1, nil
	ns.mu.Unlock()
	if wasClosed {
		return nil, nil
	}
	if nl != nil {
		nl.Close()
	}
	// fd keeps the namespace, and so its inode number, alive while processes are matched
	// against it: a freed namespace's number is soon reused by a new one.
	if ns.ino != 0 && fd >= 0 {
		killed = killProcessesIn(ns.ino)
	}
	err = unmountAndRemove(ns.path)
	if fd >= 0 {
		unix.Close(fd)
	}
	return killed, err
}

func unmountAndRemove(path string) error {
	var first error
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		first = fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) && first == nil {
		first = err
	}
	return first
}

// handle runs fn with the namespace's netlink handle, unless the namespace is gone. The handle is
// not safe to keep: after Close, netlink would silently fall back to the caller's namespace.
func (ns *namespace) handle(fn func(h *netlink.Handle) error) error {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	if ns.closed {
		return ErrRemoved
	}
	return fn(ns.nl)
}

// do runs fn on a dedicated OS thread that has joined the namespace. See Host.Do.
func (ns *namespace) do(fn func() error) error {
	return onNewThread(func() error {
		ns.mu.RLock()
		if ns.closed {
			ns.mu.RUnlock()
			return ErrRemoved
		}
		err := unix.Setns(ns.fd, unix.CLONE_NEWNET)
		ns.mu.RUnlock()
		if err != nil {
			return fmt.Errorf("setns %s: %w", ns.name, err)
		}
		return fn()
	})
}

// threadResult carries the outcome of fn on the dedicated thread back to the caller.
type threadResult struct {
	err      error
	panicked bool
	value    any
	stack    []byte
	goexit   bool
}

// onNewThread runs fn on a new goroutine locked to its OS thread and, afterwards, moves the thread
// back to the network namespace it started in. Only if that succeeds is the thread unlocked and
// returned to the runtime's pool; otherwise the goroutine ends still locked and the runtime
// terminates the thread, so no goroutine ever runs in a namespace it did not ask for.
//
// A panic in fn is re-raised in the caller's goroutine; runtime.Goexit in fn (t.FailNow, t.Skip)
// is propagated to the caller's goroutine too.
func onNewThread(fn func() error) error {
	done := make(chan threadResult, 1)
	go func() {
		runtime.LockOSThread()
		var res threadResult
		orig, openErr := unix.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		returned := false
		defer func() {
			if !returned {
				if v := recover(); v != nil {
					res.panicked, res.value, res.stack = true, v, debug.Stack()
				} else {
					res.goexit = true
				}
			}
			if openErr == nil {
				if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
					runtime.UnlockOSThread()
				}
				unix.Close(orig)
			}
			// else: still locked; the thread dies with this goroutine.
			done <- res
		}()
		if openErr != nil {
			res.err = fmt.Errorf("open own netns: %w", openErr)
			returned = true
			return
		}
		res.err = fn()
		returned = true
	}()
	res := <-done
	switch {
	case res.panicked:
		panic(fmt.Sprintf("%v\n\n[netns: panic inside the namespace goroutine; its stack:]\n%s", res.value, res.stack))
	case res.goexit:
		runtime.Goexit()
	}
	return res.err
}

// killProcessesIn kills every process (except this one) whose network namespace is the nsfs
// inode ino, waits briefly for them to go, and returns their descriptions.
func killProcessesIn(ino uint64) []string {
	want := fmt.Sprintf("net:[%d]", ino)
	self := os.Getpid()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var killed []string
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil || link != want {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if unix.Kill(pid, unix.SIGKILL) == nil {
			pids = append(pids, pid)
			killed = append(killed, fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))))
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for _, pid := range pids {
		for time.Now().Before(deadline) && alive(pid) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	return killed
}

// alive reports whether a process exists and is not a zombie.
func alive(pid int) bool {
	if err := unix.Kill(pid, 0); err == unix.ESRCH {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and may contain anything.
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}

// Sweep removes namespaces left behind by earlier test processes that died without cleaning up
// (killed by a timeout, SIGKILL, a crash): every RunDir entry named Prefix + "<pid>-..." whose pid
// no longer exists. Processes still running inside such a namespace are killed first. Namespaces
// of live processes, including other test binaries running in parallel, are left alone.
//
// NewLAN, NewHost and Pair call Sweep themselves, so tests need not; it is exported for TestMain
// functions and for cleaning a machine by hand. It returns the names it removed.
func Sweep() ([]string, error) {
	ents, err := os.ReadDir(RunDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		pid, ok := ownerPID(e.Name())
		if !ok || pid == os.Getpid() || unix.Kill(pid, 0) != unix.ESRCH {
			continue
		}
		path := filepath.Join(RunDir, e.Name())
		// Hold the namespace open while matching processes against its inode number, so that
		// the number cannot pass to a new namespace meanwhile (another process may be
		// sweeping the same entry).
		if fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
			var fs unix.Statfs_t
			var st unix.Stat_t
			if unix.Fstatfs(fd, &fs) == nil && fs.Type == unix.NSFS_MAGIC && unix.Fstat(fd, &st) == nil {
				killProcessesIn(st.Ino)
			}
			unix.Close(fd)
		}
		if err := unmountAndRemove(path); err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		removed = append(removed, e.Name())
	}
	return removed, errors.Join(errs...)
}

// ownerPID parses "fl-<pid>-..." names.
func ownerPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, Prefix)
	if !ok {
		return 0, false
	}
	digits, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(digits)
	return pid, err == nil && pid > 0
}
