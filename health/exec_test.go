package health_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/health"
	"github.com/fulcrum-lb/fulcrum/lab/require"
)

// script writes an executable /bin/sh script and returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	sh := require.Binary(t, "/bin/sh")
	path := filepath.Join(t.TempDir(), "check.sh")
	if err := os.WriteFile(path, []byte("#!"+sh+"\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestExecChecker(t *testing.T) {
	t.Run("exit-0", func(t *testing.T) {
		r := run(t, health.Exec{Argv: []string{script(t, "exit 0")}}, 5*time.Second)
		expect(t, r, health.OutcomeHealthy, health.ReasonNone)
		if r.Weight != nil {
			t.Errorf("weight %d without Dynamic", *r.Weight)
		}
	})
	t.Run("exit-1", func(t *testing.T) {
		r := run(t, health.Exec{Argv: []string{script(t, "echo database down >&2; exit 1")}}, 5*time.Second)
		expect(t, r, health.OutcomeUnhealthy, health.ReasonExitNonZero)
		if !strings.Contains(r.Detail, "exit status 1") || !strings.Contains(r.Detail, "database down") {
			t.Errorf("detail %q lacks the status and the output", r.Detail)
		}
	})
	t.Run("argv-without-shell", func(t *testing.T) {
		// Arguments reach the program as they are: no shell splits or expands them.
		p := health.Exec{Argv: []string{script(t, `[ "$1" = 'a b $HOME' ] && [ $# -eq 1 ]`), "a b $HOME"}}
		expect(t, run(t, p, 5*time.Second), health.OutcomeHealthy, health.ReasonNone)
	})
	t.Run("environment", func(t *testing.T) {
		p := health.Exec{
			Argv: []string{script(t, `set -e
[ "$FULCRUM_CHECK_ADDRESS" = 192.0.2.20 ]
[ "$FULCRUM_CHECK_PORT" = 8080 ]
[ "$EXTRA" = "yes" ]
[ -n "$FULCRUM_CHECK_TIMEOUT" ]
[ -z "$HOME" ]
[ "$(pwd)" = / ]`)},
			Addr: netip.MustParseAddrPort("192.0.2.20:8080"),
			Env:  map[string]string{"EXTRA": "yes"},
		}
		r := run(t, p, 5*time.Second)
		expect(t, r, health.OutcomeHealthy, health.ReasonNone)
	})
	t.Run("dynamic-weight", func(t *testing.T) {
		// keepalived misc_dynamic (check_misc.c): 0 healthy with the weight unchanged, 1 failed,
		// 2..255 healthy with weight status-2.
		for _, c := range []struct {
			code    int
			dynamic bool
			out     health.Outcome
			weight  int // -1: none
		}{
			{0, true, health.OutcomeHealthy, -1},
			{1, true, health.OutcomeUnhealthy, -1},
			{2, true, health.OutcomeHealthy, 0},
			{12, true, health.OutcomeHealthy, 10},
			{255, true, health.OutcomeHealthy, 253},
			{12, false, health.OutcomeUnhealthy, -1},
		} {
			r := run(t, health.Exec{Argv: []string{script(t, "exit "+strconv.Itoa(c.code))}, Dynamic: c.dynamic}, 5*time.Second)
			got := -1
			if r.Weight != nil {
				got = *r.Weight
			}
			if r.Outcome != c.out || got != c.weight {
				t.Errorf("exit %d (dynamic %v): %v weight %d, want %v weight %d", c.code, c.dynamic, r, got, c.out, c.weight)
			}
			if r.Outcome == health.OutcomeUnhealthy && r.Reason != health.ReasonExitNonZero {
				t.Errorf("exit %d: reason %v", c.code, r.Reason)
			}
		}
	})
	t.Run("timeout-kills-the-group", func(t *testing.T) {
		dir := t.TempDir()
		p := health.Exec{Argv: []string{script(t, `sleep 30 & echo $! > `+dir+`/child; echo $$ > `+dir+`/leader; sleep 30`)}}
		start := time.Now()
		r := run(t, p, 500*time.Millisecond)
		expect(t, r, health.OutcomeUnhealthy, health.ReasonTimeout)
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("a timed-out check took %v", d)
		}
		for _, name := range []string{"leader", "child"} {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			waitGone(t, name, pid)
		}
	})
	t.Run("killed-by-signal", func(t *testing.T) {
		expect(t, run(t, health.Exec{Argv: []string{script(t, "kill -TERM $$; sleep 5")}}, 5*time.Second), health.OutcomeUnhealthy, health.ReasonSignal)
	})
	t.Run("missing-program", func(t *testing.T) {
		r := run(t, health.Exec{Argv: []string{filepath.Join(t.TempDir(), "nope")}}, 5*time.Second)
		expect(t, r, health.OutcomeError, health.ReasonLocal)
		if !errorsIs(r.Err, os.ErrNotExist) {
			t.Errorf("error %v is not ErrNotExist", r.Err)
		}
	})
	t.Run("as-user", func(t *testing.T) {
		require.Root(t)
		isNobody := []string{"/bin/sh", "-c", `[ "$(id -u)" = 65534 ] && [ "$(id -G)" = "$(id -g)" ]`}
		expect(t, run(t, health.Exec{Argv: isNobody, User: "nobody"}, 5*time.Second), health.OutcomeHealthy, health.ReasonNone)
		expect(t, run(t, health.Exec{Argv: isNobody, User: "65534"}, 5*time.Second), health.OutcomeHealthy, health.ReasonNone)
		expect(t, run(t, health.Exec{Argv: isNobody}, 5*time.Second), health.OutcomeUnhealthy, health.ReasonExitNonZero)
		expect(t, run(t, health.Exec{Argv: isNobody, User: "no-such-user-fulcrum"}, 5*time.Second), health.OutcomeError, health.ReasonLocal)
	})
	t.Run("build-errors", func(t *testing.T) {
		for name, p := range map[string]health.Exec{
			"no argv":  {},
			"bad env":  {Argv: []string{"/bin/true"}, Env: map[string]string{"A=B": "c"}},
			"empty[0]": {Argv: []string{""}},
		} {
			if _, err := p.Build(); err == nil {
				t.Errorf("%s: Build accepted it", name)
			}
		}
	})
}

// waitGone waits until pid no longer runs (gone, or a zombie nobody reaped yet).
func waitGone(t *testing.T, what string, pid int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		// pid (comm) S ...: the state follows the last ')'.
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 && len(b) > i+2 && (b[i+2] == 'Z' || b[i+2] == 'X') {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) still runs after the check timed out: %s", what, pid, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
