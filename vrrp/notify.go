package vrrp

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// notifyOutputMax bounds the output of a notify command kept for the log.
const notifyOutputMax = 4 << 10

// runNotify runs one notify command (the cmdq goroutine calls it, one at a
// time, in transition order). It waits for the command, up to the
// configured timeout, after which the command's whole process group is
// killed. Failures are logged and counted; they change nothing else.
func (i *Instance) runNotify(ctx context.Context, kind string, argv []string, ev StateChange) {
	i.mu.Lock()
	timeout := i.opts.Notify.Timeout
	i.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "FULCRUM_VRRP_INSTANCE="+i.name, "FULCRUM_VRRP_STATE="+kind)
	if kind != "stop" {
		cmd.Env = append(cmd.Env,
			"FULCRUM_VRRP_FROM="+ev.From.String(),
			"FULCRUM_VRRP_REASON="+ev.Reason.String(),
			"FULCRUM_VRRP_PRIORITY="+strconv.Itoa(int(ev.Priority)))
	}
	out := &capped{max: notifyOutputMax}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The whole group: a shell script's children must not outlive it.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = time.Second
	start := time.Now()
	err := cmd.Run()
	i.notifyRuns.Add(1)
	attrs := []any{slog.String("notify", kind), slog.String("command", argv[0]),
		slog.Duration("took", time.Since(start).Round(time.Millisecond))}
	switch {
	case err == nil:
		i.log.Debug("notify command done", attrs...)
		return
	case errors.Is(cctx.Err(), context.DeadlineExceeded):
		i.log.Warn("notify command timed out and was killed", append(attrs, slog.Duration("timeout", timeout), slog.String("output", out.String()))...)
	default:
		i.log.Warn("notify command failed", append(attrs, slog.Any("error", err), slog.String("output", out.String()))...)
	}
	i.notifyFails.Add(1)
}

// capped keeps the first max bytes written to it.
type capped struct {
	max int
	mu  sync.Mutex
	b   []byte
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - len(c.b); room > 0 {
		c.b = append(c.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.b)
}
