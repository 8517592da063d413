package kernel

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"text/template"
)

// busyboxPath is where Debian's busybox-static installs its binary.
const busyboxPath = "/bin/busybox"

// Mount tags of the two 9p shares, as named on the qemu command line and in the guest's init.
const (
	tagHostRoot = "hostroot"
	tagShare    = "fulcrumshare"
)

// readyMarker is the line the guest's init prints on the serial console just before it starts
// the command; the host measures boot time up to it.
const readyMarker = "fulcrum-lab: ready"

// initScript is the guest's /init. It runs under busybox sh in the initramfs: it loads the
// modules, mounts the host's root read-only over 9p and a tmpfs overlay on it at /newroot,
// mounts the kernel file systems into it, binds the lab kernel's modules at
// /lib/modules/<release> and the run's share at GuestShareDir, runs job.sh chrooted with its
// combined output going to the share, records the exit status there, and powers off.
//
// Whatever fails, it powers the guest off; as a last resort init exits, the kernel panics and
// panic=-1 with qemu's -no-reboot ends qemu.
var initScript = template.Must(template.New("init").Parse(`#!/bin/sh
# /init of the fulcrum kernel lab (github.com/fulcrum-lb/fulcrum/lab/kernel). Generated.
export PATH=/bin
off() {
	sync
	poweroff -f
	echo o >/proc/sysrq-trigger
	sleep 10
	exit 1
}
fail() {
	echo "fulcrum-lab: init failed: $*"
	off
}
mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys || fail "mount /sys"
mount -t devtmpfs devtmpfs /dev || fail "mount /dev"
{{range .Modules}}insmod /modules/{{.}} || fail "insmod {{.}}"
{{end -}}
mkdir -p /host /share /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,ro {{.HostTag}} /host || fail "mount the host root (9p {{.HostTag}})"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 {{.ShareTag}} /share || fail "mount the run share (9p {{.ShareTag}})"
mount -t tmpfs -o mode=0755 tmpfs /rw || fail "mount tmpfs for the overlay"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work overlay /newroot || fail "mount the overlay"
mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/tmp /newroot/run
mount -t proc proc /newroot/proc || fail "mount /proc in the chroot"
mount -t sysfs sysfs /newroot/sys || fail "mount /sys in the chroot"
mount -t cgroup2 cgroup2 /newroot/sys/fs/cgroup 2>/dev/null
mount -t devtmpfs devtmpfs /newroot/dev || fail "mount /dev in the chroot"
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /newroot/dev/pts || fail "mount /dev/pts"
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm || fail "mount /dev/shm"
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp || fail "mount /tmp"
mount -t tmpfs -o mode=0755 tmpfs /newroot/run || fail "mount /run"
mkdir -p '/newroot/lib/modules/{{.Release}}' || fail "mkdir /lib/modules/{{.Release}}"
mount -o bind '/host{{.ModulesDir}}' '/newroot/lib/modules/{{.Release}}' || fail "bind the lab kernel's modules"
mkdir -p '/newroot{{.GuestShareDir}}' || fail "mkdir {{.GuestShareDir}}"
mount -o bind /share '/newroot{{.GuestShareDir}}' || fail "bind the share at {{.GuestShareDir}}"
# Host folders hidden by the guest's own /tmp, /run or /dev (a checkout under /tmp, say) are
# bound read-only at their own path, one per line of /share/binds.
if [ -f /share/binds ]; then
	while IFS= read -r p; do
		[ -n "$p" ] || continue
		mkdir -p "/newroot$p" && mount -o bind,ro "/host$p" "/newroot$p" || fail "bind $p"
	done </share/binds
fi
# The kernel runs its modprobe helper (for modules it loads on demand, such as IPVS
# schedulers) in init's root, the initramfs, where /sbin/modprobe runs the chroot's modprobe.
# Inside the chroot the same path is kmod's modprobe itself.
echo /sbin/modprobe >/proc/sys/kernel/modprobe || fail "set the modprobe helper"
ip link set lo up
hostname fulcrum-lab
echo "{{.Ready}}"
case " $(cat /proc/cmdline) " in
*" fulcrum.shell "*)
	# Debugging (lab/kernel/shell.sh): an interactive shell on the console instead of the job.
	setsid cttyhack chroot /newroot /bin/bash -l
	status=$?
	;;
*)
	chroot /newroot /bin/sh '{{.GuestShareDir}}/job.sh' </dev/null >/share/output 2>&1
	status=$?
	;;
esac
echo "$status" >/share/exit
echo "fulcrum-lab: command exited with status $status"
off
`))

// initParams fills initScript. Paths must not contain a single quote (checked by buildInitramfs).
type initParams struct {
	Modules       []string // module files relative to /lib/modules/<release>, in load order
	Release       string   // kernel release, e.g. 6.1.0-56-amd64
	ModulesDir    string   // absolute host path of the lab kernel's /lib/modules/<release>
	GuestShareDir string
	HostTag       string
	ShareTag      string
	Ready         string
}

// buildInitramfs returns the initramfs for the kernel whose modules are in modulesDir
// (…/lib/modules/<release>, with modules.dep): busybox, its applet links, the modules needed to
// reach the host's root, /dev/console, and /init.
func buildInitramfs(modulesDir, release string) ([]byte, error) {
	if strings.ContainsAny(modulesDir+release, "'\n") {
		return nil, fmt.Errorf("kernel lab: unusable modules path %q", modulesDir)
	}
	bb, err := os.ReadFile(busyboxPath)
	if err != nil {
		return nil, fmt.Errorf("%w: read busybox (Debian package busybox-static): %w", ErrUnavailable, err)
	}
	if err := checkStatic(busyboxPath); err != nil {
		return nil, err
	}
	// The modules the initramfs loads before it can mount the host's root: the virtio PCI
	// transport, 9p over virtio, and overlayfs. Their dependencies come from modules.dep.
	mods, err := moduleLoadOrder(modulesDir, []string{"virtio_pci", "9pnet_virtio", "9p", "overlay"})
	if err != nil {
		return nil, err
	}
	var script bytes.Buffer
	if err := initScript.Execute(&script, initParams{
		Modules: mods, Release: release, ModulesDir: modulesDir, GuestShareDir: GuestShareDir,
		HostTag: tagHostRoot, ShareTag: tagShare, Ready: readyMarker,
	}); err != nil {
		return nil, fmt.Errorf("kernel lab: render init: %w", err)
	}

	var w cpioWriter
	for _, d := range []string{"bin", "sbin", "dev", "proc", "sys", "modules"} {
		w.dir(d, 0o755)
	}
	w.charDev("dev/console", 0o600, 5, 1)
	w.charDev("dev/null", 0o666, 1, 3)
	w.file("bin/busybox", 0o755, bb)
	// The busybox applets init calls.
	for _, a := range []string{"sh", "cat", "chroot", "cttyhack", "echo", "hostname", "insmod", "ip", "mkdir", "mount", "poweroff", "setsid", "sleep", "sync"} {
		w.symlink("bin/"+a, "busybox")
	}
	made := map[string]bool{"modules": true}
	for _, m := range mods {
		data, err := os.ReadFile(filepath.Join(modulesDir, m))
		if err != nil {
			return nil, fmt.Errorf("kernel lab: read module: %w", err)
		}
		// Parent directories first, each once.
		var parents []string
		for d := path.Dir("modules/" + m); !made[d]; d = path.Dir(d) {
			parents = append(parents, d)
			made[d] = true
		}
		for i := len(parents) - 1; i >= 0; i-- {
			w.dir(parents[i], 0o755)
		}
		w.file("modules/"+m, 0o644, data)
	}
	w.file("sbin/modprobe", 0o755, []byte("#!/bin/busybox sh\nexec /bin/busybox chroot /newroot /sbin/modprobe \"$@\"\n"))
	w.file("init", 0o755, script.Bytes())
	return w.bytes(), nil
}

// checkStatic fails when the binary at p needs a dynamic loader, which the initramfs lacks.
func checkStatic(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%w: %s is dynamically linked; install busybox-static", ErrUnavailable, p)
		}
	}
	return nil
}

// moduleLoadOrder resolves the named modules and their dependencies through modules.dep (and
// modules.builtin, for modules compiled into the kernel) and returns the module files to insmod,
// dependencies first, each once.
func moduleLoadOrder(modulesDir string, names []string) ([]string, error) {
	deps, err := readModulesDep(filepath.Join(modulesDir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	builtin := map[string]bool{}
	if data, err := os.ReadFile(filepath.Join(modulesDir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(data)) {
			builtin[moduleName(l)] = true
		}
	}
	byName := map[string]string{}
	for file := range deps {
		byName[moduleName(file)] = file
	}
	var order []string
	seen := map[string]bool{}
	var visit func(file string)
	visit = func(file string) {
		if seen[file] {
			return
		}
		seen[file] = true
		// A module's line lists all it needs; load each (with its own needs) before it.
		for _, d := range deps[file] {
			visit(d)
		}
		order = append(order, file)
	}
	for _, n := range names {
		n = strings.ReplaceAll(n, "-", "_")
		file, ok := byName[n]
		switch {
		case ok:
			visit(file)
		case builtin[n]:
		default:
			return nil, fmt.Errorf("kernel lab: module %s is neither in modules.dep nor built in", n)
		}
	}
	return order, nil
}

func readModulesDep(p string) (map[string][]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("kernel lab: %w", err)
	}
	defer f.Close()
	deps := map[string][]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		file, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		deps[file] = strings.Fields(rest)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("kernel lab: read %s: %w", p, err)
	}
	return deps, nil
}

// moduleName turns "kernel/net/9p/9pnet_virtio.ko" into "9pnet_virtio".
func moduleName(file string) string {
	base := path.Base(file)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// contentName names an artifact by a prefix and a digest of its bytes, so a change of any input
// gives a new file and an unchanged one is reused.
func contentName(prefix string, data []byte, ext string) string {
	sum := sha256.Sum256(data)
	return prefix + "-" + hex.EncodeToString(sum[:8]) + ext
}
