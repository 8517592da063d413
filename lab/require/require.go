// Package require checks the prerequisites of a test: root, binaries, files and kernel features.
//
// A missing prerequisite never passes silently:
//
//   - outside CI the test is skipped with a message that names what is missing and how to
//     install it, for example
//     `require: missing binary "keepalived"; install it: apt-get install -y keepalived`;
//   - under CI (environment CI=true) the same message fails the test instead, so a machine
//     that lacks a prerequisite turns CI red rather than skipping the test.
//
// Usage:
//
//	func TestKeepalivedPeer(t *testing.T) {
//		require.Root(t)
//		require.Kernel(t, require.Veth)
//		keepalived := require.Binary(t, "keepalived")
//		...
//	}
//
// Every function takes a testing.TB, so benchmarks can use it too, and must be called from the
// test's own goroutine (it may call tb.Skip or tb.Fatal).
package require

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// InCI reports whether the test runs under CI, that is whether the environment variable CI is
// exactly "true".
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing reports a missing prerequisite: what names it, fix says how to get it (may be
// empty), and the message reads "require: missing <what>; <fix>". Outside CI the test is
// skipped; under CI=true it fails. Missing does not return (with a real testing.TB).
func Missing(tb testing.TB, what, fix string) {
	tb.Helper()
	msg := "require: missing " + what
	if fix != "" {
		msg += "; " + fix
	}
	if InCI() {
		tb.Fatal(msg + "; CI=true, so a missing prerequisite fails the test instead of skipping it")
		return
	}
	tb.Skip(msg)
}

// Root requires that the test runs as root with the capabilities the network and mount labs
// need (CAP_NET_ADMIN and CAP_SYS_ADMIN in the effective set).
func Root(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		Missing(tb, fmt.Sprintf("root (running as uid %d)", os.Geteuid()), "run the tests as root (sudo -E env PATH=$PATH go test ./...)")
		return
	}
	capEff, err := effectiveCaps()
	if err != nil {
		// No way to tell: root without /proc is rare; let the test find out.
		return
	}
	var lacking []string
	for _, c := range []struct {
		bit  uint
		name string
	}{{unix.CAP_NET_ADMIN, "CAP_NET_ADMIN"}, {unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN"}, {unix.CAP_NET_RAW, "CAP_NET_RAW"}} {
		if capEff&(1<<c.bit) == 0 {
			lacking = append(lacking, c.name)
		}
	}
	if len(lacking) > 0 {
		Missing(tb, "capabilities "+strings.Join(lacking, ", "), "run as root in a privileged environment")
	}
}

func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff in /proc/self/status")
}

// Binary requires an executable and returns its path. A name without a slash is looked up in
// PATH (and in /sbin, /usr/sbin, which a non-login root shell may lack); a path is checked as
// is. The skip or failure message says which Debian package provides well-known binaries.
func Binary(tb testing.TB, name string) string {
	tb.Helper()
	if p, ok := lookBinary(name); ok {
		return p
	}
	fix := "install it"
	if hint := InstallHint(name); hint != "" {
		fix = "install it: " + hint
	}
	Missing(tb, fmt.Sprintf("binary %q", name), fix)
	return ""
}

func lookBinary(name string) (string, bool) {
	if strings.Contains(name, "/") {
		st, err := os.Stat(name)
		if err != nil || st.IsDir() || st.Mode().Perm()&0o111 == 0 {
			return "", false
		}
		return name, true
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		if p, ok := lookBinary(dir + "/" + name); ok {
			return p, true
		}
	}
	return "", false
}

// InstallHint returns the command that installs a well-known binary on Debian, or "" if the
// binary is not known.
func InstallHint(name string) string {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	pkg := ""
	switch name {
	case "ip", "bridge", "tc", "ss":
		pkg = "iproute2"
	case "nsenter", "unshare", "mount", "umount":
		pkg = "util-linux"
	case "systemd-journald", "journalctl", "systemd-cat", "systemd-run":
		pkg = "systemd"
	case "keepalived":
		pkg = "keepalived"
	case "haproxy":
		pkg = "haproxy"
	case "nginx":
		pkg = "nginx"
	case "wrk":
		pkg = "wrk"
	case "ipvsadm":
		pkg = "ipvsadm"
	case "tcpdump":
		pkg = "tcpdump"
	case "tshark":
		pkg = "tshark"
	case "ping", "arping", "tracepath":
		pkg = "iputils-ping"
	case "qemu-system-x86_64":
		pkg = "qemu-system-x86"
	case "bird", "birdc":
		pkg = "bird2"
	case "vtysh", "zebra", "bgpd":
		pkg = "frr"
	case "chromium":
		pkg = "chromium"
	case "nft":
		pkg = "nftables"
	case "iptables":
		pkg = "iptables"
	case "socat":
		pkg = "socat"
	case "curl":
		pkg = "curl"
	case "busybox":
		pkg = "busybox-static"
	}
	if pkg == "" {
		return ""
	}
	return "apt-get install -y " + pkg
}

// File requires that a file (or directory) exists.
func File(tb testing.TB, path string) {
	tb.Helper()
	if _, err := os.Stat(path); err != nil {
		Missing(tb, fmt.Sprintf("file %s (%v)", path, errors.Unwrap(err)), "")
	}
}

// Feature is a kernel feature that Kernel can check.
type Feature string

// Kernel features. NetNS, Veth and Bridge are checked by really creating them in a throwaway
// network namespace (so they also need root); the others by their /proc files.
const (
	NetNS  Feature = "netns"  // network namespaces
	Veth   Feature = "veth"   // veth pairs
	Bridge Feature = "bridge" // Linux bridges
	IPv6   Feature = "ipv6"   // IPv6 networking
	IPVS   Feature = "ipvs"   // IP virtual server (the host kernel lacks it; see lab/kernel)
)

// Kernel requires a kernel feature.
func Kernel(tb testing.TB, f Feature) {
	tb.Helper()
	var err error
	switch f {
	case NetNS, Veth, Bridge:
		Root(tb)
		err = probeInThrowawayNetns(f)
	case IPv6:
		_, err = os.Stat("/proc/net/if_inet6")
	case IPVS:
		_, err = os.Stat("/proc/net/ip_vs")
	default:
		tb.Fatalf("require.Kernel: unknown feature %q", f)
		return
	}
	if err != nil {
		hint := "use a kernel with " + string(f) + " support"
		if f == IPVS {
			hint = "modprobe ip_vs, or run the test in the lab/kernel guest (the host kernel has no IPVS)"
		}
		Missing(tb, fmt.Sprintf("kernel feature %s (%v)", f, err), hint)
	}
}

// probeInThrowawayNetns creates what f names in a new network namespace on a dedicated OS thread.
// The thread is never unlocked, so the runtime terminates it when the goroutine ends and no other
// goroutine ever runs in that namespace; the namespace dies with the thread.
func probeInThrowawayNetns(f Feature) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Deliberately no UnlockOSThread: the thread is discarded.
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
			return
		}
		if f == NetNS {
			errc <- nil
			return
		}
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		var l netlink.Link
		switch f {
		case Veth:
			l = &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "probe0"}, PeerName: "probe1"}
		case Bridge:
			l = &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "probe0"}}
		}
		if err := h.LinkAdd(l); err != nil {
			errc <- fmt.Errorf("create %s: %w", f, err)
			return
		}
		errc <- h.LinkDel(l)
	}()
	return <-errc
}
