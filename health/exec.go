package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Exec runs a program as the check (keepalived MISC_CHECK): exit status 0 is healthy, anything
// else unhealthy. Argv is executed directly, never through a shell. The program runs in a
// process group of its own; when the timeout passes the whole group is killed (SIGKILL), so a
// script's children do not outlive the check.
//
// With Dynamic (keepalived misc_dynamic) the exit status also sets the weight, as keepalived's
// check_misc.c does: 0 is healthy with the weight unchanged, 1 is unhealthy, and 2 to 255 are
// healthy with weight status-2 (so 0..253; 255 gives 253). Without Dynamic every non-zero
// status is unhealthy.
//
// The environment is not the agent's: it is PATH, FULCRUM_CHECK_ADDRESS and FULCRUM_CHECK_PORT
// (Addr, if valid), FULCRUM_CHECK_TIMEOUT (seconds, from the check's deadline), then Env.
type Exec struct {
	// Argv is the program and its arguments. A program name without a slash is looked up in
	// the agent's PATH.
	Argv []string
	// User, if set, runs the program as that user (a name or a numeric uid), with the user's
	// primary group and supplementary groups. The agent must be root.
	User string
	// Dynamic enables keepalived misc_dynamic weights.
	Dynamic bool
	// Addr is the real server checked, passed in the environment.
	Addr netip.AddrPort
	// Env adds variables to the program's environment.
	Env map[string]string
	// Dir is the working directory; "" means "/".
	Dir string
}

// execPath is the PATH a checked program gets.
const execPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// maxExecOutput bounds the output kept for Detail.
const maxExecOutput = 4 << 10

// execWaitDelay bounds how long a check waits for a program's output pipes to close after the
// program exited or was killed (a grandchild that left the group may hold them).
const execWaitDelay = time.Second

// Kind returns "exec".
func (Exec) Kind() string { return "exec" }

// Build validates the probe. The user is looked up at every run, so that a user created after
// the check was configured works without a reload.
func (e Exec) Build() (Checker, error) {
	if len(e.Argv) == 0 || e.Argv[0] == "" {
		return nil, errors.New("exec: empty Argv")
	}
	env := []string{"PATH=" + execPath}
	if e.Addr.IsValid() {
		env = append(env, "FULCRUM_CHECK_ADDRESS="+e.Addr.Addr().String(), "FULCRUM_CHECK_PORT="+strconv.Itoa(int(e.Addr.Port())))
	}
	for k, v := range e.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.Contains(v, "\x00") {
			return nil, fmt.Errorf("exec: bad environment variable %q", k)
		}
		env = append(env, k+"="+v)
	}
	dir := e.Dir
	if dir == "" {
		dir = "/"
	}
	return &execChecker{argv: append([]string(nil), e.Argv...), user: e.User, dynamic: e.Dynamic, env: env, dir: dir}, nil
}

type execChecker struct {
	argv    []string
	user    string
	dynamic bool
	env     []string
	dir     string
}

func (c *execChecker) Check(ctx context.Context) Result {
	start := time.Now()
	attr := &syscall.SysProcAttr{Setpgid: true}
	if c.user != "" {
		cred, err := lookupCredential(c.user)
		if err != nil {
			return localError(start, fmt.Errorf("exec: %w", err))
		}
		attr.Credential = cred
	}
	cmd := exec.CommandContext(ctx, c.argv[0], c.argv[1:]...)
	cmd.SysProcAttr = attr
	cmd.Dir = c.dir
	cmd.Env = c.env
	if dl, ok := ctx.Deadline(); ok {
		cmd.Env = append(cmd.Env[:len(cmd.Env):len(cmd.Env)], "FULCRUM_CHECK_TIMEOUT="+strconv.FormatFloat(time.Until(dl).Seconds(), 'f', 3, 64))
	}
	var out limitedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// On timeout kill the whole group, not only the leader. os/exec calls Cancel while Wait is
	// pending, when the leader has normally not been reaped yet: its pid, which is the group's
	// id, is still held (if only by a zombie), so the kill cannot hit a reused id.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = execWaitDelay
	if err := cmd.Start(); err != nil {
		if ctx.Err() != nil {
			return failure(ctx, start, fmt.Errorf("exec: start %s: %w", c.argv[0], ctx.Err()))
		}
		return localError(start, fmt.Errorf("exec: start %s: %w", c.argv[0], err))
	}
	err := cmd.Wait()
	output := strings.TrimSpace(out.String())
	if ctxErr := ctx.Err(); ctxErr != nil {
		r := failure(ctx, start, fmt.Errorf("exec: %s killed: %w", c.argv[0], ctxErr))
		r.Detail = withOutput(r.Detail, output)
		return r
	}
	state := cmd.ProcessState
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) && !errors.Is(err, exec.ErrWaitDelay) {
		return localError(start, fmt.Errorf("exec: wait for %s: %w", c.argv[0], err))
	}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		r := unhealthy(start, ReasonSignal, withOutput(fmt.Sprintf("%s killed by signal %s", c.argv[0], ws.Signal()), output))
		r.Err = err
		return r
	}
	code := state.ExitCode()
	switch {
	case code == 0:
		return healthy(start, withOutput("exit status 0", output))
	case c.dynamic && code >= 2 && code <= 255:
		r := healthy(start, withOutput(fmt.Sprintf("exit status %d: weight %d", code, code-2), output))
		w := code - 2
		r.Weight = &w
		return r
	default:
		r := unhealthy(start, ReasonExitNonZero, withOutput(fmt.Sprintf("exit status %d", code), output))
		r.Err = err
		return r
	}
}

func localError(start time.Time, err error) Result {
	return Result{Outcome: OutcomeError, Reason: ReasonLocal, Detail: err.Error(), Latency: time.Since(start), Err: err}
}

func withOutput(detail, output string) string {
	if output == "" {
		return detail
	}
	return detail + ": " + output
}

// lookupCredential resolves a user name or numeric uid to the credential to run as.
func lookupCredential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		if _, numErr := strconv.ParseUint(name, 10, 32); numErr == nil {
			u, err = user.LookupId(name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %q: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %q: gid %q: %w", name, u.Gid, err)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	if gids, err := u.GroupIds(); err == nil {
		for _, g := range gids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil && n != gid {
				cred.Groups = append(cred.Groups, uint32(n))
			}
		}
	}
	return cred, nil
}

// limitedBuffer keeps the first maxExecOutput bytes written to it and discards the rest.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := maxExecOutput - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
