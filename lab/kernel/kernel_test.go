package kernel_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lab/kernel"
)

// TestGuestIPVS boots a guest, loads IPVS and reads it back with ipvsadm. The rr scheduler is
// not loaded by anyone: the kernel loads it on demand, through the initramfs's modprobe helper.
func TestGuestIPVS(t *testing.T) {
	k := kernel.Require(t)
	// busybox's modprobe in the initramfs would need crc32c_generic first; kmod's in the
	// chroot resolves it by itself, but load it first anyway, as a script on either would.
	script := `set -e
uname -r
modprobe crc32c_generic
modprobe ip_vs
test -e /proc/net/ip_vs
ipvsadm -A -t 192.0.2.1:80 -s rr
ipvsadm -Ln
`
	res, err := k.Run(t.Context(), kernel.RunOptions{Command: []string{"sh", "-c", script}, Timeout: 2 * time.Minute})
	t.Logf("boot %v, whole run %v", res.Boot.Round(time.Millisecond), res.Elapsed.Round(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	out := string(res.Output)
	if res.ExitCode != 0 {
		t.Fatalf("exit status %d, output:\n%s", res.ExitCode, out)
	}
	if !strings.HasPrefix(out, k.Release+"\n") {
		t.Errorf("guest kernel is not the lab's %s:\n%s", k.Release, out)
	}
	if !strings.Contains(out, "IP Virtual Server version") || !strings.Contains(out, "TCP  192.0.2.1:80 rr") {
		t.Errorf("ipvsadm -Ln does not show the service:\n%s", out)
	}
}

// TestGuestRunContract checks what Run promises: exit status, stdout and stderr combined, the
// environment, the working directory, files shipped in, a writable root, fresh /tmp, and a
// read-only host.
func TestGuestRunContract(t *testing.T) {
	k := kernel.Require(t)
	dir := t.TempDir()
	payload := filepath.Join(dir, "payload.txt")
	if err := os.WriteFile(payload, []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	script := `echo "out $FOO $FULCRUM_IN_GUEST"
echo "err" >&2
pwd
cat ` + kernel.GuestFilesDir + `/payload.txt
touch /etc/fulcrum-lab-written && echo "root writable"
ls -A /tmp | grep -vxF '` + tmpTop(wd) + `' | wc -l
echo result >` + kernel.GuestShareDir + `/files/back.txt
exit 7`
	var streamed strings.Builder
	res, err := k.Run(t.Context(), kernel.RunOptions{
		Command: []string{"sh", "-c", script},
		Env:     []string{"FOO=it's \"quoted\" $x"},
		Dir:     wd,
		Files:   map[string]string{"payload.txt": payload},
		Stream:  &lockedBuilder{b: &streamed},
		Timeout: 2 * time.Minute,
		CPUs:    2,
		Memory:  512,
	})
	t.Logf("boot %v, whole run %v", res.Boot.Round(time.Millisecond), res.Elapsed.Round(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 7 {
		t.Errorf("exit status %d, want 7", res.ExitCode)
	}
	want := "out it's \"quoted\" $x 1\nerr\n" + wd + "\nfrom the host\nroot writable\n0\n"
	if string(res.Output) != want {
		t.Errorf("output:\n%s\nwant:\n%s", res.Output, want)
	}
	if streamed.String() != string(res.Output) {
		t.Errorf("streamed output %q differs from the result's %q", streamed.String(), res.Output)
	}
	if _, err := os.Stat("/etc/fulcrum-lab-written"); err == nil {
		t.Errorf("the guest wrote into the host's /etc")
	}
	if res.RunDir == "" {
		t.Error("no RunDir")
	} else if os.Getenv(kernel.EnvKeep) != "1" {
		if _, err := os.Stat(res.RunDir); !os.IsNotExist(err) {
			t.Errorf("run folder %s left behind: %v", res.RunDir, err)
		}
	}
}

type lockedBuilder struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// TestGuestTimeout checks that a guest running past its timeout is killed and reported.
func TestGuestTimeout(t *testing.T) {
	k := kernel.Require(t)
	start := time.Now()
	res, err := k.Run(t.Context(), kernel.RunOptions{Command: []string{"sleep", "600"}, Timeout: 5 * time.Second})
	if err == nil {
		t.Fatalf("no error; exit status %d", res.ExitCode)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("Run returned after %v", d)
	}
	if !strings.Contains(err.Error(), "guest killed") || !strings.Contains(err.Error(), "guest console") {
		t.Errorf("error does not say what happened: %v", err)
	}
	if out, _ := exec.Command("pgrep", "-f", res.RunDir).CombinedOutput(); len(out) > 0 {
		t.Errorf("qemu of %s still running: %s", res.RunDir, out)
	}
}

// TestEnsureConcurrent checks that concurrent Ensure calls agree (they serialise on the lock).
func TestEnsureConcurrent(t *testing.T) {
	first := kernel.Require(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	kits := make([]*kernel.Kit, 4)
	errs := make([]error, len(kits))
	for i := range kits {
		wg.Go(func() { kits[i], errs[i] = kernel.Ensure(ctx) })
	}
	wg.Wait()
	for i, k := range kits {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if *k != *first {
			t.Errorf("Ensure gave %+v, then %+v", first, k)
		}
	}
}

// TestGuestProcNetIPVS is an in-guest Go test: on the host it runs itself in a guest; there it
// loads IPVS and reads /proc/net/ip_vs from Go.
func TestGuestProcNetIPVS(t *testing.T) {
	if !kernel.InGuest() {
		kernel.RunTestsInGuest(t, ".", "^TestGuestProcNetIPVS$")
		return
	}
	for _, m := range []string{"crc32c_generic", "ip_vs"} {
		if out, err := exec.Command("modprobe", m).CombinedOutput(); err != nil {
			t.Fatalf("modprobe %s: %v\n%s", m, err, out)
		}
	}
	data, err := os.ReadFile("/proc/net/ip_vs")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), "IP Virtual Server version") {
		t.Fatalf("/proc/net/ip_vs:\n%s", data)
	}
	t.Logf("/proc/net/ip_vs:\n%s", data)
}

// TestGuestSubtests uses the short form, RunInGuest, from subtests.
func TestGuestSubtests(t *testing.T) {
	t.Run("kernel release", func(t *testing.T) {
		if kernel.RunInGuest(t) {
			return
		}
		out, err := exec.Command("uname", "-r").Output()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(strings.TrimSpace(string(out)), "-amd64") {
			t.Errorf("uname -r in the guest: %s", out)
		}
	})
}

// tmpTop is the entry of /tmp that holds dir when the checkout lives under /tmp (bound into the
// guest, so the guest's fresh /tmp shows it), or a name that matches nothing.
func tmpTop(dir string) string {
	if rest, ok := strings.CutPrefix(dir, "/tmp/"); ok {
		top, _, _ := strings.Cut(rest, "/")
		return top
	}
	return "/nothing/"
}
