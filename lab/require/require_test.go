package require_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/fulcrum-lb/fulcrum/lab/require"
)

// recorder is a testing.TB that records Skip and Fatal instead of acting on them. Only the
// methods the require package calls are overridden; the embedded nil TB is never used.
type recorder struct {
	testing.TB
	skipped, fatal string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Skip(args ...any)                  { r.skipped = fmt.Sprint(args...) }
func (r *recorder) Skipf(format string, args ...any)  { r.skipped = fmt.Sprintf(format, args...) }
func (r *recorder) Fatal(args ...any)                 { r.fatal = fmt.Sprint(args...) }
func (r *recorder) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }

func TestMissingSkipsOutsideCI(t *testing.T) {
	t.Setenv("CI", "")
	r := &recorder{}
	require.Binary(r, "fulcrum-no-such-binary-xyz")
	if r.fatal != "" || !strings.Contains(r.skipped, `missing binary "fulcrum-no-such-binary-xyz"`) {
		t.Fatalf("skipped=%q fatal=%q", r.skipped, r.fatal)
	}
}

func TestMissingFailsUnderCI(t *testing.T) {
	t.Setenv("CI", "true")
	r := &recorder{}
	require.Binary(r, "keepalived-not-really")
	if r.skipped != "" || !strings.Contains(r.fatal, "CI=true") {
		t.Fatalf("skipped=%q fatal=%q", r.skipped, r.fatal)
	}
	r = &recorder{}
	require.File(r, "/nonexistent/fulcrum")
	if r.skipped != "" || !strings.Contains(r.fatal, "/nonexistent/fulcrum") {
		t.Fatalf("skipped=%q fatal=%q", r.skipped, r.fatal)
	}
}

func TestCIMustBeExactlyTrue(t *testing.T) {
	t.Setenv("CI", "1")
	if require.InCI() {
		t.Fatal(`CI=1 counted as CI; only CI=true is`)
	}
	t.Setenv("CI", "true")
	if !require.InCI() {
		t.Fatal("CI=true not counted as CI")
	}
}

func TestInstallHint(t *testing.T) {
	r := &recorder{}
	t.Setenv("CI", "")
	require.Binary(r, "/opt/nowhere/keepalived")
	if !strings.Contains(r.skipped, "apt-get install -y keepalived") {
		t.Fatalf("no install hint in %q", r.skipped)
	}
	if got := require.InstallHint("ping"); got != "apt-get install -y iputils-ping" {
		t.Fatalf("InstallHint(ping) = %q", got)
	}
}

func TestPresent(t *testing.T) {
	r := &recorder{}
	p := require.Binary(r, "sh")
	if p == "" || r.skipped != "" || r.fatal != "" {
		t.Fatalf("sh: path=%q skipped=%q fatal=%q", p, r.skipped, r.fatal)
	}
	require.File(r, os.TempDir())
	if r.skipped != "" || r.fatal != "" {
		t.Fatalf("File(%s): skipped=%q fatal=%q", os.TempDir(), r.skipped, r.fatal)
	}
}

func TestKernel(t *testing.T) {
	require.Root(t)
	for _, f := range []require.Feature{require.NetNS, require.Veth, require.Bridge, require.IPv6} {
		r := &recorder{}
		require.Kernel(r, f)
		if r.skipped != "" || r.fatal != "" {
			t.Errorf("Kernel(%s): skipped=%q fatal=%q", f, r.skipped, r.fatal)
		}
	}
	// The host kernel of this project's machines has no IPVS; whichever it is, the answer must
	// agree with /proc.
	r := &recorder{}
	t.Setenv("CI", "")
	require.Kernel(r, require.IPVS)
	_, err := os.Stat("/proc/net/ip_vs")
	if (err == nil) != (r.skipped == "") {
		t.Errorf("Kernel(ipvs): skipped=%q but stat says %v", r.skipped, err)
	}
}
