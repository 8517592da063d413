// Command labshell boots a kernel lab guest with an interactive root shell on the console, for
// debugging: the host's root as a writable overlay, the lab kernel's modules, real IPVS.
// Run it through lab/kernel/shell.sh. Ctrl-A X (or leaving the shell) powers the guest off.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/fulcrum-lb/fulcrum/lab/kernel"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	k, err := kernel.Ensure(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "kernel lab: booting %s (%s); Ctrl-A X or exit ends the guest\n", k.Release, k.Kernel)
	if err := k.Shell(ctx, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
