package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/fulcrum-lb/fulcrum/agent"
)

// requestTimeout bounds status and reload requests.
const requestTimeout = 60 * time.Second

func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status", "[-json] [-socket PATH]", stderr)
	asJSON := fs.Bool("json", false, "print the raw status JSON")
	socket := socketFlag(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if !noArgs(fs, stderr) {
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	c := agent.NewClient(*socket)
	if *asJSON {
		raw, err := c.StatusJSON(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "fulcrum status: %v\n", err)
			return exitFailed
		}
		stdout.Write(raw)
		return exitOK
	}
	st, err := c.Status(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "fulcrum status: %v\n", err)
		return exitFailed
	}
	printStatus(stdout, st, time.Now())
	return exitOK
}

// printStatus writes the human summary: the agent, its config, then one
// section per subsystem.
func printStatus(w io.Writer, st *agent.Status, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "node:\t%s\n", st.Node)
	fmt.Fprintf(tw, "version:\t%s\n", st.Version)
	fmt.Fprintf(tw, "pid:\t%d\n", st.PID)
	fmt.Fprintf(tw, "uptime:\t%s (since %s)\n", now.Sub(st.StartedAt).Round(time.Second), st.StartedAt.Format(time.RFC3339))
	fmt.Fprintf(tw, "config:\t%s\n", st.Config.Path)
	fmt.Fprintf(tw, "generation:\t%d (loaded %s)\n", st.Config.Generation, st.Config.LoadedAt.Format(time.RFC3339))
	switch lr := st.Config.LastReload; {
	case lr == nil:
		fmt.Fprintf(tw, "last reload:\tnone\n")
	case lr.OK:
		fmt.Fprintf(tw, "last reload:\tok at %s\n", lr.At.Format(time.RFC3339))
	default:
		fmt.Fprintf(tw, "last reload:\tFAILED at %s: %s\n", lr.At.Format(time.RFC3339), lr.Error)
	}
	tw.Flush()
	for _, s := range st.Subsystems {
		fmt.Fprintf(w, "\n%s:\n", s.Name)
		if s.Configured == 0 && s.State == agent.StateNoneConfigured {
			fmt.Fprintf(w, "  none configured\n")
		} else {
			fmt.Fprintf(w, "  configured: %d\n  state: %s\n", s.Configured, s.State)
		}
		if s.Name == "vrrp" && printVRRP(w, s.Detail, now) {
			continue
		}
		if s.Name == "ipvs" && printIPVS(w, s.Detail, now) {
			continue
		}
		if s.Name == "l7proxy" && printProxy(w, s.Detail, now) {
			continue
		}
		if s.Name == "health" && printHealth(w, s.Detail, now) {
			continue
		}
		keys := make([]string, 0, len(s.Detail))
		for k := range s.Detail {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "  %s: %v\n", k, s.Detail[k])
		}
	}
}

func runReload(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("reload", "[-socket PATH]", stderr)
	socket := socketFlag(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if !noArgs(fs, stderr) {
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	res, err := agent.NewClient(*socket).Reload(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "fulcrum reload: %v\n", err)
		return exitFailed
	}
	if res.OK {
		fmt.Fprintf(stdout, "reloaded: generation %d\n", res.Generation)
		return exitOK
	}
	fmt.Fprintf(stderr, "fulcrum reload: rejected, the agent keeps its running configuration: %s\n", res.Error)
	for _, d := range res.Diagnostics {
		printDiagnostic(stderr, d)
	}
	return exitFailed
}

// printDiagnostic prints one diagnostic received from the agent: position,
// severity, summary, the source line(s) and the detail.
func printDiagnostic(w io.Writer, d agent.Diagnostic) {
	fmt.Fprintf(w, "\n%s\n", d.String())
	if d.Snippet != "" {
		for i, line := range strings.Split(d.Snippet, "\n") {
			fmt.Fprintf(w, "  %4d | %s\n", d.Line+i, line)
		}
	}
}

func runEvents(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("events", "[-socket PATH]", stderr)
	socket := socketFlag(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if !noArgs(fs, stderr) {
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := agent.NewClient(*socket).Events(ctx, func(line []byte) error {
		var buf bytes.Buffer
		buf.Grow(len(line) + 1)
		buf.Write(line)
		buf.WriteByte('\n')
		_, err := stdout.Write(buf.Bytes())
		return err
	})
	switch {
	case err == nil:
		fmt.Fprintln(stderr, "fulcrum events: the agent ended the stream")
		return exitOK
	case errors.Is(err, context.Canceled):
		return exitOK
	default:
		fmt.Fprintf(stderr, "fulcrum events: %v\n", err)
		return exitFailed
	}
}
