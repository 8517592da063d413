// Command fulcrum is the Fulcrum load-balancer node agent and its CLI:
// `fulcrum agent` runs the node; status, reload and events talk to a running
// agent over its control socket; validate and version work locally.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
