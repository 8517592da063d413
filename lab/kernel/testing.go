package kernel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// ensureTimeout bounds Require's Ensure: a first run downloads about 70 MB.
const ensureTimeout = 15 * time.Minute

// InGuest reports whether this process runs inside a kernel lab guest, that is whether
// FULCRUM_IN_GUEST=1, which Run sets for every command.
func InGuest() bool {
	return os.Getenv(EnvInGuest) == "1"
}

// Require returns a ready Kit for a test. When the lab cannot run here (no qemu, no static
// busybox, no kmod, the kernel package cannot be fetched, not root) it skips the test with the
// reason, or, under CI=true, fails it. Other errors always fail. It also skips under -short,
// since every guest boots for 10 to 20 seconds, and fails when called inside a guest.
func Require(t testing.TB) *Kit {
	t.Helper()
	if InGuest() {
		t.Fatal("kernel lab: Require called inside a guest; guard the host-side code with kernel.InGuest()")
	}
	if testing.Short() {
		t.Skip("kernel lab: skipped with -short (each test boots a qemu guest)")
	}
	ci := os.Getenv("CI") == "true"
	unavailable := func(err error) {
		t.Helper()
		const needs = "the kernel lab needs root, the Debian packages qemu-system-x86 busybox-static kmod xz-utils, " +
			"and apt access to linux-image-amd64 the first time"
		if ci {
			t.Fatalf("%v\n%s; under CI=true that is a failure", err, needs)
		}
		t.Skipf("%v; skipping (under CI=true this fails)\n%s", err, needs)
	}
	if os.Geteuid() != 0 {
		unavailable(fmt.Errorf("%w: needs root", ErrUnavailable))
	}
	ctx, cancel := context.WithTimeout(t.Context(), ensureTimeout)
	defer cancel()
	k, err := Ensure(ctx)
	if errors.Is(err, ErrUnavailable) {
		unavailable(err)
	}
	if err != nil {
		t.Fatalf("kernel lab: %v", err)
	}
	if k.Note != "" {
		t.Logf("kernel lab: %s", k.Note)
	}
	return k
}

// RunInGuest moves the calling test into a guest. On the host it runs this very test
// (t.Name(), subtests included) from the test binary of the current package in a fresh guest,
// as RunTestsInGuest does, and returns true: the caller returns at once, its result being the
// guest's. Inside the guest it returns false, and the test goes on with real kernel IPVS:
//
//	func TestSomething(t *testing.T) {
//		if kernel.RunInGuest(t) {
//			return
//		}
//		// in the guest, as root, on Debian's kernel
//	}
func RunInGuest(t testing.TB) bool {
	t.Helper()
	if InGuest() {
		return false
	}
	RunTestsInGuest(t, ".", runPattern(t.Name()))
	return true
}

// runPattern is a -test.run pattern matching exactly the test or subtest named name.
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// RunTestsInGuest builds the test binary of the package in pkgDir (CGO_ENABLED=0, so static,
// without the race detector), runs it in a fresh guest with -test.v -test.run run, in pkgDir
// and with FULCRUM_IN_GUEST=1, streams its output into t's log as it comes, and fails t when
// the guest's tests fail, when the guest gives no result, or when run matched no test. The
// guest inherits CI from the host. Guards against running the host side in the guest are the
// caller's: see InGuest and RunInGuest.
func RunTestsInGuest(t testing.TB, pkgDir, run string) {
	t.Helper()
	if InGuest() {
		t.Fatal("kernel lab: RunTestsInGuest called inside a guest; guard it with kernel.InGuest()")
	}
	k := Require(t)
	dir, err := filepath.Abs(pkgDir)
	if err != nil {
		t.Fatalf("kernel lab: %v", err)
	}
	ctx := t.Context()
	timeout := DefaultTimeout * 2
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			// Leave the host test time to report before its own deadline.
			timeout = max(time.Until(dl)-30*time.Second, time.Minute)
		}
	}

	bin := filepath.Join(t.TempDir(), "guest.test")
	buildStart := time.Now()
	if err := buildTestBinary(ctx, dir, bin); err != nil {
		t.Fatalf("kernel lab: %v", err)
	}
	buildTime := time.Since(buildStart)

	// The guest binary's own -test.timeout fires before the kit kills the guest, so a hung
	// test ends with its goroutine dump rather than a killed guest.
	args := []string{
		GuestFilesDir + "/guest.test", "-test.v", "-test.run", run,
		"-test.timeout", (timeout - timeout/5).String(),
	}
	var env []string
	if ci, ok := os.LookupEnv("CI"); ok {
		env = append(env, "CI="+ci)
	}
	res, err := k.Run(ctx, RunOptions{
		Command: args,
		Env:     env,
		Dir:     dir,
		Timeout: timeout,
		Files:   map[string]string{"guest.test": bin},
		Stream:  t.Output(),
	})
	t.Logf("kernel lab: built the test binary in %v; guest booted in %v, ran in %v (exit status %d)",
		buildTime.Round(time.Millisecond), res.Boot.Round(time.Millisecond), res.Elapsed.Round(time.Millisecond), res.ExitCode)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("kernel lab: the tests matching %q failed in the guest (exit status %d); output above\n--- guest console (tail) ---\n%s",
			run, res.ExitCode, tail(res.Console, consoleTail))
	}
	if bytes.Contains(res.Output, []byte("testing: warning: no tests to run")) {
		t.Fatalf("kernel lab: no test in %s matches %q", dir, run)
	}
}

// buildTestBinary cross-builds the test binary of the package in dir, statically, to out.
func buildTestBinary(ctx context.Context, dir, out string) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("build the guest test binary: %w", err)
	}
	cmd := exec.CommandContext(ctx, goTool, "test", "-c", "-vet=off", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the guest test binary (in %s): %w\n%s", dir, err, b)
	}
	return nil
}
