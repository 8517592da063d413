package kernel

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Environment variables the kit reads.
const (
	// EnvCache overrides the cache folder (DefaultCacheDir).
	EnvCache = "FULCRUM_LAB_CACHE"
	// EnvInGuest is set to "1" in the environment of every command the kit runs in a guest.
	EnvInGuest = "FULCRUM_IN_GUEST"
	// EnvKeep, when "1", keeps each run's host folder (console.log, job.sh, output) instead of
	// removing it; errors and Result.RunDir name it.
	EnvKeep = "FULCRUM_LAB_KEEP"
	// EnvDebug, when "1", boots the guest without "quiet", so the whole kernel log goes to the
	// console log.
	EnvDebug = "FULCRUM_LAB_DEBUG"
	// EnvRefresh, when "1", makes Ensure ask apt for the current kernel package and fetch it
	// if the cache lacks it; otherwise a cached kernel is used as it is.
	EnvRefresh = "FULCRUM_LAB_REFRESH"
)

// DefaultCacheDir holds the extracted kernel packages and the built initramfs images.
const DefaultCacheDir = "/var/cache/fulcrum-lab"

// metaPackage is Debian's package that depends on the current versioned kernel image.
const metaPackage = "linux-image-amd64"

// qemuBinary is the emulator, from Debian's qemu-system-x86.
const qemuBinary = "qemu-system-x86_64"

// ErrUnavailable marks errors that mean the lab cannot run on this machine: a tool or package is
// missing, or the kernel package cannot be fetched. Require skips on it outside CI.
var ErrUnavailable = errors.New("kernel lab unavailable")

// Kit is a ready kernel lab: a cached Debian kernel, its modules, and an initramfs. It holds no
// running state; Run boots a fresh guest each time, and a Kit may be used from many goroutines.
type Kit struct {
	CacheDir   string // the cache folder (DefaultCacheDir or $FULCRUM_LAB_CACHE)
	Package    string // the Debian package, e.g. linux-image-6.1.0-56-amd64
	Version    string // its Debian version, e.g. 6.1.192-2
	Release    string // the kernel release (uname -r in the guest), e.g. 6.1.0-56-amd64
	Vmlinuz    string // the package's compressed kernel image (bzImage)
	Kernel     string // the image qemu boots: the uncompressed ELF when it could be extracted, else Vmlinuz
	ModulesDir string // the kernel's modules (…/lib/modules/<Release>), with modules.dep
	Initramfs  string // the initramfs (busybox, the 9p and overlay modules, /init)
	QEMU       string // path of qemu-system-x86_64

	// Note says why Kernel is the slower compressed image, if it is; Require logs it.
	Note string
}

// kitInfo is kit.json in an extracted kernel's folder; its presence marks the folder complete.
type kitInfo struct {
	Package string `json:"package"`
	Version string `json:"version"`
	Release string `json:"release"`
}

// CacheDir returns the cache folder: $FULCRUM_LAB_CACHE, or DefaultCacheDir.
func CacheDir() string {
	if d := os.Getenv(EnvCache); d != "" {
		return d
	}
	return DefaultCacheDir
}

// Ensure makes the lab ready and returns it: it fetches the kernel package that Debian's
// linux-image-amd64 depends on (apt-get download, dpkg-deb -x, depmod) into the cache folder
// unless it is there already, and builds the initramfs unless an identical one is cached. It
// is idempotent, and concurrent callers (goroutines or processes) serialise on a file lock in
// the cache folder. Errors that mean "this machine cannot run the lab" wrap ErrUnavailable.
func Ensure(ctx context.Context) (*Kit, error) {
	qemu, err := exec.LookPath(qemuBinary)
	if err != nil {
		return nil, fmt.Errorf("%w: %s not found (Debian package qemu-system-x86)", ErrUnavailable, qemuBinary)
	}
	if err := checkStatic(busyboxPath); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(CacheDir())
	if err != nil {
		return nil, fmt.Errorf("kernel lab: cache folder: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%w: cache folder: %w", ErrUnavailable, err)
	}
	// The guest reaches the modules through the host's root, so the path must be the real one.
	if dir, err = filepath.EvalSymlinks(dir); err != nil {
		return nil, fmt.Errorf("kernel lab: cache folder: %w", err)
	}

	unlock, err := lockFile(ctx, filepath.Join(dir, ".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()

	kdir, info, err := ensureKernel(ctx, dir)
	if err != nil {
		return nil, err
	}
	k := &Kit{
		CacheDir:   dir,
		Package:    info.Package,
		Version:    info.Version,
		Release:    info.Release,
		Vmlinuz:    filepath.Join(kdir, "boot", "vmlinuz-"+info.Release),
		ModulesDir: filepath.Join(kdir, "lib", "modules", info.Release),
		QEMU:       qemu,
	}
	if _, err := os.Stat(k.Vmlinuz); err != nil {
		return nil, fmt.Errorf("kernel lab: cached kernel incomplete (remove %s): %w", kdir, err)
	}
	var note error
	k.Kernel, note = ensureVmlinux(ctx, k.Vmlinuz, filepath.Join(kdir, "boot", "vmlinux-"+info.Release))
	if note != nil {
		k.Note = note.Error()
	}
	if k.Initramfs, err = ensureInitramfs(dir, k.ModulesDir, k.Release); err != nil {
		return nil, err
	}
	return k, nil
}

// ensureKernel returns the folder of the extracted kernel package. A cached kernel is used as
// it is (asking apt costs a second or more per call); with FULCRUM_LAB_REFRESH=1, or when the
// cache holds none, apt names the current package and a missing version is fetched. Without
// apt's answer it falls back to the newest cached kernel.
func ensureKernel(ctx context.Context, cache string) (string, kitInfo, error) {
	kernels := filepath.Join(cache, "kernels")
	cachedDir, cachedInfo, cached := newestCached(kernels)
	if cached && os.Getenv(EnvRefresh) != "1" {
		return cachedDir, cachedInfo, nil
	}
	pkg, version, err := resolvePackage(ctx)
	if err != nil {
		if cached {
			return cachedDir, cachedInfo, nil
		}
		return "", kitInfo{}, err
	}
	kdir := filepath.Join(kernels, pkg+"_"+version)
	if info, err := readKitInfo(kdir); err == nil {
		return kdir, info, nil
	}
	info, err := fetchKernel(ctx, kernels, kdir, pkg, version)
	if err != nil {
		return "", kitInfo{}, err
	}
	return kdir, info, nil
}

// resolvePackage asks apt which versioned image linux-image-amd64 depends on, and its
// candidate version.
func resolvePackage(ctx context.Context) (pkg, version string, err error) {
	out, err := command(ctx, "", "apt-cache", "depends", metaPackage)
	if err != nil {
		return "", "", fmt.Errorf("%w: resolve %s (run apt-get update?): %w", ErrUnavailable, metaPackage, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() && pkg == "" {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "Depends:" {
			if name := strings.Trim(f[1], "<>"); strings.HasPrefix(name, "linux-image-") {
				pkg = name
			}
		}
	}
	if pkg == "" {
		return "", "", fmt.Errorf("%w: %s depends on no linux-image-* package", ErrUnavailable, metaPackage)
	}
	out, err = command(ctx, "", "apt-cache", "show", "--no-all-versions", pkg)
	if err != nil {
		return "", "", fmt.Errorf("%w: resolve %s (run apt-get update?): %w", ErrUnavailable, pkg, err)
	}
	sc = bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Version: "); ok {
			return pkg, strings.TrimSpace(v), nil
		}
	}
	return "", "", fmt.Errorf("%w: apt knows no version of %s (run apt-get update?)", ErrUnavailable, pkg)
}

// fetchKernel downloads and extracts the package into kdir, atomically: the work happens in a
// temporary folder renamed into place when complete.
func fetchKernel(ctx context.Context, kernels, kdir, pkg, version string) (kitInfo, error) {
	depmod, err := lookPathSbin("depmod")
	if err != nil {
		return kitInfo{}, fmt.Errorf("%w: depmod not found (Debian package kmod)", ErrUnavailable)
	}
	if err := os.MkdirAll(kernels, 0o755); err != nil {
		return kitInfo{}, fmt.Errorf("kernel lab: %w", err)
	}
	tmp, err := os.MkdirTemp(kernels, ".fetch-")
	if err != nil {
		return kitInfo{}, fmt.Errorf("kernel lab: %w", err)
	}
	defer os.RemoveAll(tmp)
	// apt's sandbox user cannot write into a root-only folder; apt then downloads as root and
	// says so on stderr, which is fine here.
	if out, err := command(ctx, tmp, "apt-get", "download", "-q", pkg+"="+version); err != nil {
		return kitInfo{}, fmt.Errorf("%w: apt-get download %s=%s: %w\n%s", ErrUnavailable, pkg, version, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return kitInfo{}, fmt.Errorf("kernel lab: apt-get download left %d .deb files", len(debs))
	}
	root := filepath.Join(tmp, "root")
	if out, err := command(ctx, "", "dpkg-deb", "-x", debs[0], root); err != nil {
		return kitInfo{}, fmt.Errorf("kernel lab: dpkg-deb -x: %w\n%s", err, out)
	}
	if err := os.Remove(debs[0]); err != nil {
		return kitInfo{}, fmt.Errorf("kernel lab: %w", err)
	}
	ents, err := os.ReadDir(filepath.Join(root, "lib", "modules"))
	if err != nil || len(ents) != 1 {
		return kitInfo{}, fmt.Errorf("kernel lab: %s has no single lib/modules/<release> (%d entries): %w", pkg, len(ents), err)
	}
	info := kitInfo{Package: pkg, Version: version, Release: ents[0].Name()}
	// The package ships no modules.dep (its postinst runs depmod); make one for modprobe.
	if out, err := command(ctx, "", depmod, "-b", root, info.Release); err != nil {
		return kitInfo{}, fmt.Errorf("kernel lab: depmod: %w\n%s", err, out)
	}
	data, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return kitInfo{}, fmt.Errorf("kernel lab: %w", err)
	}
	if err := os.WriteFile(filepath.Join(root, "kit.json"), data, 0o644); err != nil {
		return kitInfo{}, fmt.Errorf("kernel lab: %w", err)
	}
	// A folder without kit.json is a leftover of an interrupted older layout; replace it.
	if err := os.RemoveAll(kdir); err != nil {
		return kitInfo{}, fmt.Errorf("kernel lab: %w", err)
	}
	if err := os.Rename(root, kdir); err != nil {
		return kitInfo{}, fmt.Errorf("kernel lab: %w", err)
	}
	return info, nil
}

func readKitInfo(kdir string) (kitInfo, error) {
	var info kitInfo
	data, err := os.ReadFile(filepath.Join(kdir, "kit.json"))
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(data, &info); err != nil {
		return info, fmt.Errorf("kernel lab: %s: %w", kdir, err)
	}
	if info.Release == "" {
		return info, fmt.Errorf("kernel lab: %s: kit.json names no release", kdir)
	}
	return info, nil
}

// newestCached returns the most recently fetched complete kernel in the cache.
func newestCached(kernels string) (string, kitInfo, bool) {
	ents, err := os.ReadDir(kernels)
	if err != nil {
		return "", kitInfo{}, false
	}
	type cand struct {
		dir  string
		info kitInfo
		mod  time.Time
	}
	var cands []cand
	for _, e := range ents {
		d := filepath.Join(kernels, e.Name())
		info, err := readKitInfo(d)
		if err != nil {
			continue
		}
		st, err := os.Stat(filepath.Join(d, "kit.json"))
		if err != nil {
			continue
		}
		cands = append(cands, cand{d, info, st.ModTime()})
	}
	if len(cands) == 0 {
		return "", kitInfo{}, false
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].mod.After(cands[j].mod) })
	return cands[0].dir, cands[0].info, true
}

// ensureInitramfs builds the initramfs in memory and stores it under a name derived from its
// content, so any change of busybox, the modules or the init script yields a new file.
func ensureInitramfs(cache, modulesDir, release string) (string, error) {
	data, err := buildInitramfs(modulesDir, release)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "initramfs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("kernel lab: %w", err)
	}
	p := filepath.Join(dir, contentName(release, data, ".cpio"))
	if st, err := os.Stat(p); err == nil && st.Size() == int64(len(data)) {
		return p, nil
	}
	f, err := os.CreateTemp(dir, ".initramfs-")
	if err != nil {
		return "", fmt.Errorf("kernel lab: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return "", fmt.Errorf("kernel lab: write initramfs: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("kernel lab: write initramfs: %w", err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return "", fmt.Errorf("kernel lab: %w", err)
	}
	if err := os.Rename(f.Name(), p); err != nil {
		return "", fmt.Errorf("kernel lab: %w", err)
	}
	return p, nil
}

// lockFile takes an exclusive flock on p, waiting while ctx allows. The lock is per open file,
// so it excludes other goroutines of this process as well as other processes.
func lockFile(ctx context.Context, p string) (unlock func(), err error) {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%w: lock: %w", ErrUnavailable, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing the file releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("kernel lab: lock %s: %w", p, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("kernel lab: waiting for lock %s: %w", p, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// command runs a tool to completion and returns its combined output.
func command(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// lookPathSbin finds a tool in PATH or in the sbin folders a non-login PATH may lack.
func lookPathSbin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w", name, exec.ErrNotFound)
}
