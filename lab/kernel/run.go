package kernel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// GuestShareDir is where the run's share (a host temp folder, writable) appears inside the
// guest. RunOptions.Files are copied into GuestFilesDir below it.
const (
	GuestShareDir = "/mnt/fulcrum-lab"
	GuestFilesDir = GuestShareDir + "/files"
)

// Defaults of RunOptions.
const (
	DefaultTimeout = 5 * time.Minute
	DefaultMemory  = 1024 // MiB
	// guestPath is PATH in the guest.
	guestPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// RunOptions describe one command to run in a fresh guest.
type RunOptions struct {
	// Command is the program and its arguments, looked up in the guest's PATH
	// (/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin). Required.
	Command []string
	// Env adds "KEY=value" entries to the command's environment, which otherwise holds only
	// PATH, HOME=/root, TERM=dumb and FULCRUM_IN_GUEST=1. Later entries win.
	Env []string
	// Dir is the working directory in the guest (the host's paths are the guest's); default "/".
	Dir string
	// Timeout bounds the whole run, boot included (default DefaultTimeout). At the timeout, or
	// when the context ends, qemu is killed.
	Timeout time.Duration
	// Memory is the guest's RAM in MiB (default DefaultMemory).
	Memory int
	// CPUs is the number of virtual CPUs, 1 (default) or 2.
	CPUs int
	// Files are host files copied into the run's share before boot; the key is the file name,
	// which the guest sees as GuestFilesDir/<key>. Use it for binaries built into temp folders:
	// the guest has its own /tmp, so the host's /tmp is not visible at /tmp.
	Files map[string]string
	// Stream, when set, receives the command's output while it runs (polled, a few times a
	// second). Result.Output holds all of it either way.
	Stream io.Writer
}

// Result is what a guest run produced.
type Result struct {
	Output   []byte        // the command's combined stdout and stderr
	ExitCode int           // its exit status (128+n when killed by signal n); -1 when unknown
	Console  []byte        // the guest's serial console (kernel messages, init's notes), last 256 KiB
	Boot     time.Duration // from starting qemu to the guest's init starting the command
	Elapsed  time.Duration // the whole run, qemu start to exit
	RunDir   string        // the host folder of the run; removed unless FULCRUM_LAB_KEEP=1
}

// consoleTail is how much of the console errors quote.
const consoleTail = 3000

// Run boots a fresh guest, runs opts.Command in it as root in a writable overlay of the host's
// root, and powers the guest off. A non-zero exit status of the command is not an error; an
// error means the guest did not deliver a result (boot failure, timeout, cancellation), and
// then carries the tail of the console. The Result is filled as far as known, also on error.
func (k *Kit) Run(ctx context.Context, opts RunOptions) (res Result, err error) {
	res.ExitCode = -1
	if len(opts.Command) == 0 {
		return res, errors.New("kernel lab: Run: empty command")
	}
	if opts.CPUs < 0 || opts.CPUs > 2 {
		return res, fmt.Errorf("kernel lab: Run: CPUs %d: want 1 or 2", opts.CPUs)
	}
	for _, e := range opts.Env {
		if !strings.Contains(e, "=") {
			return res, fmt.Errorf("kernel lab: Run: env entry %q lacks '='", e)
		}
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	mem := opts.Memory
	if mem <= 0 {
		mem = DefaultMemory
	}
	cpus := max(opts.CPUs, 1)
	dir := opts.Dir
	if dir == "" {
		dir = "/"
	}

	runDir, err := os.MkdirTemp("", "fulcrum-lab-run-")
	if err != nil {
		return res, fmt.Errorf("kernel lab: %w", err)
	}
	res.RunDir = runDir
	if os.Getenv(EnvKeep) != "1" {
		defer os.RemoveAll(runDir)
	}
	share := filepath.Join(runDir, "share")
	if err := os.MkdirAll(filepath.Join(share, "files"), 0o755); err != nil {
		return res, fmt.Errorf("kernel lab: %w", err)
	}
	for name, src := range opts.Files {
		if name == "" || strings.ContainsRune(name, '/') || name == "." || name == ".." {
			return res, fmt.Errorf("kernel lab: Run: bad file name %q", name)
		}
		if err := copyFile(src, filepath.Join(share, "files", name)); err != nil {
			return res, err
		}
	}
	if strings.ContainsRune(dir, '\n') {
		return res, fmt.Errorf("kernel lab: Run: bad working directory %q", dir)
	}
	if b := hiddenBind(dir); b != "" {
		if err := os.WriteFile(filepath.Join(share, "binds"), []byte(b+"\n"), 0o644); err != nil {
			return res, fmt.Errorf("kernel lab: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(share, "job.sh"), jobScript(dir, opts.Env, opts.Command), 0o644); err != nil {
		return res, fmt.Errorf("kernel lab: %w", err)
	}
	consolePath := filepath.Join(runDir, "console.log")
	consoleFile, err := os.Create(consolePath)
	if err != nil {
		return res, fmt.Errorf("kernel lab: %w", err)
	}
	defer consoleFile.Close()

	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, k.QEMU, k.qemuArgs(share, mem, cpus, false)...)
	start := time.Now()
	console := &consoleWriter{w: consoleFile, start: start}
	cmd.Stdout = console
	cmd.Stderr = console
	cmd.WaitDelay = 5 * time.Second
	// Kill qemu if this process dies without reaching Wait (a test binary's panic on timeout).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}

	outputPath := filepath.Join(share, "output")
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("kernel lab: start qemu: %w", err)
	}
	stopStream := make(chan struct{})
	streamDone := make(chan struct{})
	go func() {
		defer close(streamDone)
		streamFile(outputPath, opts.Stream, stopStream)
	}()
	waitErr := cmd.Wait()
	res.Elapsed = time.Since(start)
	close(stopStream)
	<-streamDone

	res.Boot = console.bootTime()
	res.Output, _ = os.ReadFile(outputPath)
	res.Console = readTail(consolePath, 256<<10)
	fail := func(format string, args ...any) error {
		keep := " (set " + EnvKeep + "=1 to keep the run folder)"
		if os.Getenv(EnvKeep) == "1" {
			keep = " (kept: " + runDir + ")"
		}
		return fmt.Errorf("kernel lab: "+format+"%s\n--- guest console (tail) ---\n%s", append(args, keep, tail(res.Console, consoleTail))...)
	}
	if ctxErr := runCtx.Err(); ctxErr != nil {
		if ctx.Err() == nil {
			ctxErr = fmt.Errorf("timeout %v: %w", timeout, ctxErr)
		}
		return res, fail("guest killed after %v: %w", res.Elapsed.Round(time.Millisecond), ctxErr)
	}
	exitData, err := os.ReadFile(filepath.Join(share, "exit"))
	if err != nil {
		return res, fail("guest ended without an exit status (qemu: %v): %w", waitErr, err)
	}
	code, err := strconv.Atoi(strings.TrimSpace(string(exitData)))
	if err != nil {
		return res, fail("guest wrote a bad exit status %q: %w", exitData, err)
	}
	res.ExitCode = code
	if waitErr != nil {
		return res, fail("qemu: %w", waitErr)
	}
	return res, nil
}

// Shell boots a guest like Run does but, instead of a command, runs an interactive bash in the
// chroot on the serial console, connected to stdin and stdout: a debugging aid
// (lab/kernel/shell.sh). When stdin is a terminal, qemu puts it in raw mode; Ctrl-A X ends
// the guest, as does leaving the shell.
func (k *Kit) Shell(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	runDir, err := os.MkdirTemp("", "fulcrum-lab-shell-")
	if err != nil {
		return fmt.Errorf("kernel lab: %w", err)
	}
	defer os.RemoveAll(runDir)
	cmd := exec.CommandContext(ctx, k.QEMU, k.qemuArgs(runDir, DefaultMemory, 1, true)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kernel lab: qemu: %w", err)
	}
	return nil
}

// qemuArgs is the qemu command line: TCG (KVM guests hang on these machines), no network, no
// default devices, the serial console on stdout, the host's root read-only and the run's share
// writable over 9p, and no reboot, so a poweroff or a panic ends qemu.
// With shell, the guest runs an interactive shell on the console (serial multiplexed with the
// qemu monitor: Ctrl-A X quits) instead of the job.
func (k *Kit) qemuArgs(share string, memMiB, cpus int, shell bool) []string {
	// Everything after panic=-1 only saves boot time: one UART, no PS/2 probing, no crypto
	// self-tests, no TSC calibration or timer checks (the guest's clock is qemu's anyway).
	cmdline := "console=ttyS0 panic=-1 rdinit=/init 8250.nr_uarts=1 i8042.noaux i8042.nokbd i8042.nopnp " +
		"cryptomgr.notests tsc=reliable no_timer_check mitigations=off nokaslr random.trust_cpu=on"
	if os.Getenv(EnvDebug) != "1" {
		cmdline += " quiet"
	}
	serial := "stdio"
	if shell {
		cmdline += " fulcrum.shell"
		serial = "mon:stdio"
	}
	return []string{
		"-accel", "tcg", "-cpu", "max",
		"-machine", "pc",
		"-m", strconv.Itoa(memMiB),
		"-smp", strconv.Itoa(cpus),
		"-nodefaults", "-no-user-config",
		"-nic", "none",
		"-display", "none", "-vga", "none", "-monitor", "none",
		"-serial", serial,
		"-no-reboot",
		"-kernel", k.Kernel,
		"-initrd", k.Initramfs,
		"-append", cmdline,
		"-virtfs", "local,path=/,mount_tag=" + tagHostRoot + ",security_model=none,readonly=on,multidevs=remap",
		"-virtfs", "local,path=" + share + ",mount_tag=" + tagShare + ",security_model=none,multidevs=remap",
	}
}

// jobScript is the script the guest runs chrooted: change to dir, then exec the command with
// a clean environment.
func jobScript(dir string, env, command []string) []byte {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# A fulcrum kernel lab job. Generated.\n")
	fmt.Fprintf(&b, "cd %s || exit 125\n", shellQuote(dir))
	b.WriteString("exec /usr/bin/env -i --")
	for _, e := range append([]string{"PATH=" + guestPath, "HOME=/root", "TERM=dumb", EnvInGuest + "=1"}, env...) {
		b.WriteString(" " + shellQuote(e))
	}
	for _, a := range command {
		b.WriteString(" " + shellQuote(a))
	}
	b.WriteString("\n")
	return []byte(b.String())
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// consoleWriter stores the serial console and notes when the ready marker passes.
type consoleWriter struct {
	w     io.Writer
	start time.Time

	mu    sync.Mutex
	carry []byte // the end of the previous write, for a marker split across writes
	ready time.Duration
}

func (c *consoleWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ready == 0 {
		c.carry = append(c.carry, p...)
		if bytes.Contains(c.carry, []byte(readyMarker)) {
			c.ready = time.Since(c.start)
			c.carry = nil
		} else if n := len(readyMarker); len(c.carry) > n {
			c.carry = append(c.carry[:0], c.carry[len(c.carry)-n:]...)
		}
	}
	return c.w.Write(p)
}

func (c *consoleWriter) bootTime() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ready
}

// streamFile copies what is appended to the file at p to w until stop closes, then copies the
// rest. The guest writes the file through 9p without caching, so the host sees output as the
// command produces it.
func streamFile(p string, w io.Writer, stop <-chan struct{}) {
	if w == nil {
		return
	}
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	buf := make([]byte, 32<<10)
	pump := func() {
		if f == nil {
			var err error
			if f, err = os.Open(p); err != nil {
				return
			}
		}
		for {
			n, err := f.Read(buf)
			if n > 0 {
				w.Write(buf[:n]) //nolint:errcheck // a failing stream must not stop the run
			}
			if err != nil || n == 0 {
				return
			}
		}
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			pump()
			return
		case <-t.C:
			pump()
		}
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("kernel lab: %w", err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return fmt.Errorf("kernel lab: %w", err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return fmt.Errorf("kernel lab: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("kernel lab: copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("kernel lab: copy %s: %w", src, err)
	}
	return nil
}

// readTail returns at most the last n bytes of the file at p.
func readTail(p string, n int64) []byte {
	f, err := os.Open(p)
	if err != nil {
		return nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil
	}
	off := max(st.Size()-n, 0)
	data := make([]byte, st.Size()-off)
	k, _ := f.ReadAt(data, off)
	return data[:k]
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// hiddenBind returns the host folder to bind into the guest so that dir exists there: the guest
// mounts its own fresh /tmp, /run and /dev over the host's, so a working directory below one of
// them (a checkout under /tmp, as CI may make) would otherwise be missing. It returns "" when dir
// is visible anyway.
func hiddenBind(dir string) string {
	dir = filepath.Clean(dir)
	for _, top := range []string{"/tmp", "/run", "/dev"} {
		if rel, err := filepath.Rel(top, dir); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
			return dir
		}
	}
	return ""
}
