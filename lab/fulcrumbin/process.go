package fulcrumbin

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Process is what the helpers here need of a running agent process
// (lab/netns.Proc satisfies it).
type Process interface {
	Done() <-chan struct{}
	Err() error
	Output() string
	Signal(sig os.Signal) error
}

// WaitSocket waits until the agent serves its control socket. It fails the
// test if the process exits first or nothing answers within guard.
func WaitSocket(t testing.TB, p Process, socket string, guard time.Duration) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for {
		if c, err := net.Dial("unix", socket); err == nil {
			c.Close()
			return
		}
		select {
		case <-p.Done():
			t.Fatalf("agent exited before serving: %v\n%s", p.Err(), p.Output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent never opened %s\n%s", socket, p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop sends SIGTERM and expects a clean exit within guard.
func Stop(t testing.TB, p Process, guard time.Duration) {
	t.Helper()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(guard):
		t.Fatalf("agent did not stop on SIGTERM\n%s", p.Output())
	}
	if err := p.Err(); err != nil {
		t.Fatalf("agent exited with %v\n%s", err, p.Output())
	}
}

// CLI runs `binary ARGS -socket SOCKET` (a client subcommand such as
// status or drain) and returns its combined output and exit code; it fails
// the test if the command cannot run or takes longer than guard.
func CLI(t testing.TB, binary, socket string, guard time.Duration, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, append(args, "-socket", socket)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee) && ctx.Err() == nil:
		return out.String(), ee.ExitCode()
	default:
		t.Fatalf("fulcrum %v: %v\n%s", args, err, out.String())
		return "", -1
	}
}
