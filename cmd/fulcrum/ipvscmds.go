package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/fulcrum-lb/fulcrum/agent"
)

// runDrain: fulcrum drain VIRTUAL_SERVER REAL_SERVER.
func runDrain(args []string, stdout, stderr io.Writer) int {
	return runOverride("drain", true, args, stdout, stderr)
}

// runEnable: fulcrum enable VIRTUAL_SERVER REAL_SERVER.
func runEnable(args []string, stdout, stderr io.Writer) int {
	return runOverride("enable", false, args, stdout, stderr)
}

func runOverride(name string, drain bool, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet(name, "VIRTUAL_SERVER REAL_SERVER [-socket PATH]", stderr)
	socket := socketFlag(fs)
	// Flags may come before, between or after the names.
	var names []string
	rest := args
	for {
		if code, ok := parseFlags(fs, rest); !ok {
			return code
		}
		if fs.NArg() == 0 {
			break
		}
		names = append(names, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(names) != 2 {
		fmt.Fprintf(stderr, "fulcrum %s: want a virtual_server and a real_server name, got %d argument(s)\n", name, len(names))
		fs.Usage()
		return exitUsage
	}
	req := agent.IPVSOverrideRequest{VirtualServer: names[0], RealServer: names[1]}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	c := agent.NewClient(*socket)
	do := c.IPVSEnable
	if drain {
		do = c.IPVSDrain
	}
	res, err := do(ctx, req)
	if err != nil {
		fmt.Fprintf(stderr, "fulcrum %s: %v\n", name, err)
		return exitFailed
	}
	printOverride(stdout, res)
	if !res.OK {
		fmt.Fprintf(stderr, "fulcrum %s: recorded, but the kernel was not updated (the agent retries at its next resync): %s\n", name, res.Error)
		return exitFailed
	}
	return exitOK
}

// printOverride explains the real server's state after a drain or enable.
func printOverride(w io.Writer, r *agent.IPVSOverrideResponse) {
	what := fmt.Sprintf("%s/%s (%s -> %s)", r.VirtualServer, r.RealServer, r.Service, r.Destination)
	state := "enabled"
	if r.Drained {
		state = "drained"
	}
	if !r.Changed {
		state = "already " + state
	}
	fmt.Fprintf(w, "%s: %s: weight %d (configured %d)", what, state, r.EffectiveWeight, r.Weight)
	if r.InKernel {
		fmt.Fprintf(w, ", kernel weight %d", r.KernelWeight)
	} else {
		fmt.Fprintf(w, ", not in the kernel")
	}
	fmt.Fprintln(w)
	if r.Drained {
		fmt.Fprintf(w, "  no new connections; established ones continue (%d active, %d inactive now)\n", r.ActiveConns, r.InactiveConns)
		fmt.Fprintf(w, "  the drain lasts across reloads and restarts until `fulcrum enable %s %s`\n", r.VirtualServer, r.RealServer)
	}
}

// runIPVS: fulcrum ipvs resync.
func runIPVS(args []string, stdout, stderr io.Writer) int {
	const synopsis = "resync [-socket PATH]"
	if len(args) == 0 || args[0] != "resync" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprintf(stdout, "Usage: fulcrum ipvs %s\n  resync  dump kernel IPVS now and correct any drift (as the periodic resync does)\n", synopsis)
			return exitOK
		}
		fmt.Fprintf(stderr, "Usage: fulcrum ipvs %s\n", synopsis)
		return exitUsage
	}
	fs := newFlagSet("ipvs resync", "[-socket PATH]", stderr)
	socket := socketFlag(fs)
	if code, ok := parseFlags(fs, args[1:]); !ok {
		return code
	}
	if !noArgs(fs, stderr) {
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	res, err := agent.NewClient(*socket).IPVSResync(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "fulcrum ipvs resync: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "resynced in %s: %s owned, %d not ours (left alone); %s in %s\n",
		res.Duration, count(res.Services, "service"), res.Unowned, count(int(res.Corrections), "correction"), count(int(res.Operations), "kernel operation"))
	if !res.OK {
		fmt.Fprintf(stderr, "fulcrum ipvs resync: %s\n", res.Error)
		return exitFailed
	}
	return exitOK
}

// printIPVS prints the ipvs subsystem's detail, if it has the services
// list; it reports whether it did.
func printIPVS(w io.Writer, detail map[string]any, now time.Time) bool {
	raw, ok := detail["services"]
	if !ok {
		return false
	}
	var services []agent.IPVSServiceStatus
	if b, err := json.Marshal(raw); err != nil || json.Unmarshal(b, &services) != nil {
		return false
	}
	for _, s := range services {
		line := fmt.Sprintf("  virtual_server %s: %s %s", s.Name, s.Service, s.Scheduler)
		if len(s.Flags) > 0 {
			line += " (" + strings.Join(s.Flags, ",") + ")"
		}
		if s.Persistence > 0 {
			line += fmt.Sprintf(", persistent %ds", s.Persistence)
		}
		switch {
		case !s.InKernel:
			line += ", NOT IN THE KERNEL"
		case !s.InSync:
			line += ", differs from the kernel"
		}
		if q := s.Quorum; q != nil {
			line += fmt.Sprintf(", quorum %d/%d up", q.Up, q.MinUp)
			if q.Lost {
				line += " LOST"
			}
		}
		if s.RemoveOnShutdown {
			line += ", removed on shutdown"
		}
		fmt.Fprintln(w, line)
		for _, d := range s.Destinations {
			if d.Sorry && d.Removed {
				fmt.Fprintf(w, "    sorry_server %s %s: standby\n", d.Address, d.Forwarding)
				continue
			}
			line := fmt.Sprintf("    %s %s %s: weight %d", d.Name, d.Address, d.Forwarding, d.EffectiveWeight)
			if d.EffectiveWeight != d.Weight {
				line += fmt.Sprintf(" (configured %d)", d.Weight)
			}
			var flags []string
			if d.Drained {
				flags = append(flags, "DRAINED")
			}
			if !d.Healthy {
				flags = append(flags, "DOWN")
			}
			if d.SlowStart {
				flags = append(flags, "slow start")
			}
			if d.Removed {
				flags = append(flags, "removed")
			}
			if d.Sorry {
				flags = append(flags, "sorry server in use")
			}
			if len(flags) > 0 {
				line += " " + strings.Join(flags, ", ")
			}
			switch {
			case d.InKernel && d.KernelWeight != d.EffectiveWeight:
				line += fmt.Sprintf("; kernel weight %d", d.KernelWeight)
			case !d.InKernel && !d.Removed:
				line += "; NOT IN THE KERNEL"
			}
			if d.InKernel {
				line += fmt.Sprintf("; conns %d active, %d inactive, %d total", d.ActiveConns, d.InactiveConns, d.Conns)
			}
			fmt.Fprintln(w, line)
		}
	}
	if raw, ok := detail["counters"]; ok {
		var c agent.IPVSCounters
		if b, err := json.Marshal(raw); err == nil && json.Unmarshal(b, &c) == nil {
			kinds := make([]string, 0, len(c.Ops))
			for k, n := range c.Ops {
				if n > 0 {
					kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
				}
			}
			sort.Strings(kinds)
			fmt.Fprintf(w, "  kernel operations: %d (%d changes): %s\n", c.Total, c.Mutations, strings.Join(kinds, ", "))
			if c.LastResync != nil {
				fmt.Fprintf(w, "  resyncs: %d, last %s ago, took %s\n", c.Resyncs, now.Sub(*c.LastResync).Round(time.Second), c.LastResyncDuration)
			}
			if c.Errors > 0 {
				at := ""
				if c.LastErrorAt != nil {
					at = " at " + c.LastErrorAt.Local().Format(time.RFC3339)
				}
				fmt.Fprintf(w, "  errors: %d, last%s: %s\n", c.Errors, at, c.LastError)
			}
		}
	}
	if raw, ok := detail["orphans"]; ok {
		fmt.Fprintf(w, "  owned but no longer configured (delete failed): %v\n", raw)
	}
	if n, ok := detail["unowned"].(float64); ok && n > 0 {
		fmt.Fprintf(w, "  %d other services in the kernel are not ours (left alone)\n", int(n))
	}
	return true
}

// count is "1 service", "2 services".
func count(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
