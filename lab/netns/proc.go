package netns

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StopGrace is how long Proc.Stop waits after SIGTERM before it sends SIGKILL.
const StopGrace = 5 * time.Second

// maxOutput bounds what a Proc keeps of its output (the tail is kept).
const maxOutput = 1 << 20

// Proc is a background process started by Host.Start or StartCmd and tied to a test.
type Proc struct {
	// Cmd is the started command. Read it; do not call Wait on it.
	Cmd  *exec.Cmd
	name string
	out  *tailBuffer
	done chan struct{}
	err  error // set before done is closed

	stopOnce sync.Once
}

// StartCmd starts a prepared, not yet started command as a Proc tied to tb: its stdout and stderr
// are captured (unless already set), it is placed in its own process group and gets SIGKILL if
// the test process dies, and tb's cleanup stops it and, if the test failed, logs its output.
// name labels it in logs. Host.Start is StartCmd for a command inside a namespace; StartCmd
// serves any other command (one from journal.Journal.Command, say).
func StartCmd(tb testing.TB, name string, cmd *exec.Cmd) *Proc {
	tb.Helper()
	p, err := startProc(tb, name, cmd)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func startProc(tb testing.TB, name string, cmd *exec.Cmd) (*Proc, error) {
	p := &Proc{Cmd: cmd, name: name, out: &tailBuffer{max: maxOutput}, done: make(chan struct{})}
	if cmd.Stdout == nil {
		cmd.Stdout = p.out
	}
	if cmd.Stderr == nil {
		cmd.Stderr = p.out
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	// The parent-death signal belongs to the forking thread; Start is called from ordinary
	// goroutines, whose threads live as long as the process.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = 2 * time.Second // grandchildren holding our pipes must not block Wait
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("netns: start %s (%s): %w", name, strings.Join(cmd.Args, " "), err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(func() {
		if err := p.Stop(); err != nil && !isSignalExit(err) {
			tb.Logf("netns: %s: %v", name, err)
		}
		if tb.Failed() {
			tb.Logf("netns: output of %s (%s):\n%s", name, strings.Join(cmd.Args, " "), p.Output())
		}
	})
	return p, nil
}

func isSignalExit(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled()
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Output returns what the process wrote to stdout and stderr so far (the last MiB).
func (p *Proc) Output() string { return p.out.String() }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit error (nil for exit status 0). Valid once Done is closed.
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// Signal sends sig to the process (SIGHUP for a reload, say).
func (p *Proc) Signal(sig os.Signal) error { return p.Cmd.Process.Signal(sig) }

// Stop ends the process: SIGTERM to its process group, SIGKILL to the group after StopGrace,
// then waits. It returns the exit error (a *exec.ExitError for a signal death). Safe to call more
// than once and concurrently; tb's cleanup calls it anyway.
func (p *Proc) Stop() error {
	p.stopOnce.Do(func() {
		pgid := p.Cmd.Process.Pid
		select {
		case <-p.done:
		default:
			_ = syscall.Kill(-pgid, syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(StopGrace):
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
				<-p.done
			}
		}
		// Children that outlived the leader keep the group: they go too.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	})
	<-p.done
	return p.err
}

// WaitOutput waits until the process's output contains substr and fails the test if it does not
// within timeout, or if the process exits first. Call it from the test's goroutine.
func (p *Proc) WaitOutput(tb testing.TB, substr string, timeout time.Duration) {
	tb.Helper()
	if err := p.waitOutput(substr, timeout); err != nil {
		tb.Fatalf("netns: %s: %v; output so far:\n%s", p.name, err, p.Output())
	}
}

func (p *Proc) waitOutput(substr string, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if strings.Contains(p.out.String(), substr) {
			return nil
		}
		select {
		case <-p.done:
			if strings.Contains(p.out.String(), substr) {
				return nil
			}
			return fmt.Errorf("exited (%v) before printing %q", p.err, substr)
		case <-deadline.C:
			return fmt.Errorf("no %q in its output after %v", substr, timeout)
		case <-tick.C:
		}
	}
}

// tailBuffer is a concurrency-safe writer keeping the last max bytes.
type tailBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	max     int
	dropped int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if over := b.buf.Len() - b.max; over > 0 {
		b.buf.Next(over)
		b.dropped += over
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped > 0 {
		return fmt.Sprintf("[... %d bytes dropped ...]\n%s", b.dropped, b.buf.String())
	}
	return b.buf.String()
}
