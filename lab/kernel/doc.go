// Package kernel is the kernel lab: a qemu guest on Debian's stock kernel, which has IPVS (the
// host's kernel does not), that runs the host's own binaries and Go test binaries as root. It
// is imported only by tests and benchmarks.
//
// # Using it
//
// A test that needs real kernel IPVS moves itself into a guest:
//
//	func TestSomething(t *testing.T) {
//		if !kernel.InGuest() {
//			kernel.RunTestsInGuest(t, ".", "^TestSomething$")
//			return
//		}
//		// From here on the test runs in the guest: root, Debian's 6.1 kernel, `modprobe ip_vs`
//		// works, the host's files are visible (writes stay in the guest), no network.
//	}
//
// or, the same with the test's own name filled in (works in subtests too):
//
//	if kernel.RunInGuest(t) {
//		return
//	}
//
// On the host, RunTestsInGuest builds the package's test binary (CGO_ENABLED=0, so static and
// without the race detector, whatever the host run uses), boots a guest, runs the binary there
// with -test.v -test.run PATTERN in the package's folder and with FULCRUM_IN_GUEST=1, streams
// its output into the host test's log, and fails the host test if the guest's tests fail, if
// the pattern matches no test, or if the guest gives no result. Each call boots its own guest
// (about 3 seconds). To run several guest-only tests in one guest, let one host test run them
// all and have them skip on the host:
//
//	func TestInGuest(t *testing.T) {
//		if !kernel.InGuest() {
//			kernel.RunTestsInGuest(t, ".", "^TestIPVS")
//		}
//	}
//
//	func TestIPVSAddService(t *testing.T) {
//		if !kernel.InGuest() {
//			t.Skip("runs in the guest, through TestInGuest")
//		}
//		...
//	}
//
// Other commands run through a Kit:
//
//	k := kernel.Require(t) // skips (fails under CI=true) when the lab cannot run here
//	res, err := k.Run(ctx, kernel.RunOptions{Command: []string{"ipvsadm", "-Ln"}})
//	// res.Output, res.ExitCode; err only when the guest gave no result (boot failure, timeout)
//
// Host files in temp folders reach the guest through RunOptions.Files (the guest has its own
// /tmp). Guest commands run with a clean environment: PATH, HOME=/root, TERM=dumb,
// FULCRUM_IN_GUEST=1 and RunOptions.Env.
//
// # How it works
//
// Ensure prepares a cache folder, /var/cache/fulcrum-lab unless FULCRUM_LAB_CACHE says
// otherwise, under a file lock (.lock), so concurrent test processes wait for each other:
//
//   - kernels/<package>_<version>/: the package linux-image-amd64 depends on (for instance
//     linux-image-6.1.0-56-amd64), fetched with apt-get download and unpacked with dpkg-deb -x
//     (it is not installed), plus the modules.dep that depmod makes for it, and vmlinux, the
//     uncompressed kernel cut out of the bzImage. Booting vmlinux through qemu's PVH entry point
//     saves about three seconds per guest, since the x86 decompressor runs emulated. A cached
//     kernel is used as it is; FULCRUM_LAB_REFRESH=1 makes Ensure ask apt for the current one.
//   - initramfs/<release>-<digest>.cpio: Debian's static busybox, the modules needed to reach
//     the host (virtio_pci, 9pnet_virtio, 9p, overlay, with their dependencies) and /init. The
//     name is a digest of the content, so a change of any input makes a new file.
//
// Run boots qemu-system-x86_64 with TCG (-accel tcg -cpu max; KVM guests hang on this
// project's machines, so /dev/kvm is never used), one vCPU and 1 GiB unless told otherwise,
// -nic none (no network at all), -no-reboot, and two 9p shares: the host's root, read-only,
// and a fresh host temp folder, writable. The guest's /init loads the modules, mounts the host's
// root with a tmpfs overlay on it (so the guest may write anywhere; nothing reaches the host),
// mounts /proc, /sys, /sys/fs/cgroup, /dev, /dev/pts, /dev/shm, a fresh /tmp and /run, binds the
// lab kernel's modules at /lib/modules/<release> (modprobe works, also the kernel's on-demand
// loading, through a helper that modprobes in the chroot), brings lo up, and runs the command
// chrooted there through job.sh, with stdout and stderr going to the share's output file, which
// the host reads while the command runs. Then it writes the exit status to the share and
// powers off (poweroff -f; sysrq o as a fallback; if init dies, panic=-1 and -no-reboot end
// qemu). A guest still running at the timeout, or when the context ends, is killed; qemu also
// dies with the test process (Pdeathsig). A boot takes about 2.5 to 3 seconds here.
//
// In the guest the host's paths are the guest's paths, except /tmp, /run and /dev, which are
// the guest's own. The share is at GuestShareDir (/mnt/fulcrum-lab): job.sh, output, exit, and
// files/ with RunOptions.Files.
//
// # Debugging a guest
//
//   - The serial console (kernel messages, /init's notes such as "fulcrum-lab: init failed:
//     mount ...", "fulcrum-lab: ready", the exit status) is in Result.Console, and its tail is in
//     every error Run returns and in RunTestsInGuest's failure message.
//   - FULCRUM_LAB_KEEP=1 keeps each run's host folder (Result.RunDir, named in errors):
//     console.log, and share/ with job.sh, output and exit.
//   - FULCRUM_LAB_DEBUG=1 boots without "quiet", so the console log holds the whole kernel log.
//   - lab/kernel/shell.sh boots a guest with an interactive root shell on the console, the same
//     environment a test gets. Leave with exit or Ctrl-A X.
//   - Remove the cache folder to start over; the next Ensure fetches and builds everything.
//
// Requirements: root, and the Debian packages qemu-system-x86, busybox-static, kmod (depmod,
// modprobe), xz-utils (to unpack vmlinux; without it the guest boots the slower bzImage),
// ipvsadm for tests that use it, and apt access to linux-image-amd64 on the first run.
package kernel
