// Command labrun runs one command in a fresh kernel lab guest (Debian's stock kernel under qemu,
// with real IPVS) and exits with the command's exit status. The guest sees the host's root as a
// writable overlay, so the command and its working directory (the current one) are the host's.
// Its output is streamed as it runs. `make demo` uses it when the host kernel has no IPVS:
//
//	labrun [-cpus 2] [-memory 2048] [-timeout 15m] [-env KEY=VALUE]... -- COMMAND [ARG]...
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/fulcrum-lb/fulcrum/lab/kernel"
)

type envList []string

func (e *envList) String() string { return strings.Join(*e, ",") }
func (e *envList) Set(v string) error {
	if !strings.Contains(v, "=") {
		return fmt.Errorf("%q is not KEY=VALUE", v)
	}
	*e = append(*e, v)
	return nil
}

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("labrun", flag.ContinueOnError)
	cpus := fs.Int("cpus", 2, "virtual CPUs, 1 or 2")
	memory := fs.Int("memory", 2048, "guest RAM in MiB")
	timeout := fs.Duration("timeout", 15*time.Minute, "bound on the whole run, boot included")
	var env envList
	fs.Var(&env, "env", "KEY=VALUE added to the command's environment (repeatable)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: labrun [flags] -- COMMAND [ARG]...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "labrun:", err)
		return 1
	}
	// SIGINT and SIGTERM end the guest (qemu is killed with the context).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	k, err := kernel.Ensure(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "labrun:", err)
		return 1
	}
	res, err := k.Run(ctx, kernel.RunOptions{
		Command: fs.Args(),
		Env:     env,
		Dir:     wd,
		Timeout: *timeout,
		Memory:  *memory,
		CPUs:    *cpus,
		Stream:  os.Stdout,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "labrun:", err)
		if errors.Is(err, context.Canceled) {
			return 130
		}
		return 1
	}
	fmt.Fprintf(os.Stderr, "labrun: guest booted in %s, ran %s in all\n", res.Boot.Round(100*time.Millisecond), res.Elapsed.Round(100*time.Millisecond))
	if res.ExitCode < 0 {
		return 1
	}
	return res.ExitCode
}
