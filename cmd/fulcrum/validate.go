package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/fulcrum-lb/fulcrum/agent"
)

// runValidate checks every file given, printing every problem: as text with
// source snippets on stderr (and "FILE: ok" on stdout for good files), or
// with -json one JSON array of all diagnostics on stdout. Exit 1 when any
// file has an error.
func runValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("validate", "[-json] FILE...", stderr)
	asJSON := fs.Bool("json", false, "print the diagnostics as a JSON array")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "fulcrum validate: no files given")
		fs.Usage()
		return exitUsage
	}
	failed := false
	all := []agent.Diagnostic{}
	for _, file := range fs.Args() {
		diags := agent.Validate(file)
		if diags.HasErrors() {
			failed = true
		}
		if *asJSON {
			all = append(all, agent.DiagnosticList(diags)...)
			continue
		}
		if err := diags.WriteText(stderr, 0, colorOK(stderr)); err != nil {
			fmt.Fprintf(stderr, "fulcrum validate: %v\n", err)
			return exitFailed
		}
		if !diags.HasErrors() {
			fmt.Fprintf(stdout, "%s: ok\n", file)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(all); err != nil {
			fmt.Fprintf(stderr, "fulcrum validate: %v\n", err)
			return exitFailed
		}
	}
	if failed {
		return exitFailed
	}
	return exitOK
}

// colorOK reports whether w is a terminal that wants colour (NO_COLOR unset).
func colorOK(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
