// Package demo runs `make demo`'s script, examples/demo.sh, as a test: the pair of
// examples/pair in namespaces with IPVS (in the kernel lab guest when the host kernel has none),
// L7, a health event and both drills. The script checks each step itself and exits non-zero when
// one does not behave, so the README's first command stays true.
package demo

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lab/kernel"
	"github.com/fulcrum-lb/fulcrum/lab/require"
)

func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes about a minute in the kernel lab guest")
	}
	require.Root(t)
	for _, b := range []string{"ip", "unshare"} {
		require.Binary(t, b)
	}
	if _, err := os.Stat("/proc/net/ip_vs"); err != nil {
		kernel.Require(t) // the script will boot the lab guest: fail or skip clearly here if it cannot
	}

	// The binaries go where the lab guest sees them too: it mounts its own /tmp.
	dir, err := os.MkdirTemp("/var/tmp", "fulcrum-demo-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bins := map[string]string{
		"fulcrum": "github.com/fulcrum-lb/fulcrum/cmd/fulcrum",
		"demokit": "github.com/fulcrum-lb/fulcrum/lab/demokit",
		"labrun":  "github.com/fulcrum-lb/fulcrum/lab/kernel/internal/labrun",
	}
	for name, pkg := range bins {
		build := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}

	// A generous bound, only to catch a hang: the demo takes about a minute.
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "../../../examples/demo.sh",
		filepath.Join(dir, "fulcrum"), filepath.Join(dir, "demokit"), filepath.Join(dir, "labrun"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	text := out.String()
	if err != nil {
		t.Fatalf("examples/demo.sh: %v\n%s", err, text)
	}
	for _, want := range []string{
		"== 1. the election",
		"30 requests, each on a new connection: app1", // IPVS spread the client's connections
		"certificate CN=www.example.com",
		"x 429",
		"app2 drained",
		"client-visible outage:",
		"nothing left behind",
		"demo complete",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the demo's output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", text)
	}
}
