package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/fulcrum-lb/fulcrum/agent"
)

// Set with -ldflags "-X main.version=... -X main.commit=..." (see Makefile).
var (
	version = ""
	commit  = ""
)

// buildVersion returns the build's version information: the -X values when
// set, else what the Go toolchain recorded (module version, vcs revision).
func buildVersion() agent.VersionInfo {
	v := agent.VersionInfo{Version: version, Commit: commit, Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v.Version = bi.Main.Version
		}
		if v.Commit == "" {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					v.Commit = s.Value
					if len(v.Commit) > 12 {
						v.Commit = v.Commit[:12]
					}
				}
			}
		}
	}
	if v.Version == "" {
		v.Version = "dev"
	}
	if v.Commit == "" {
		v.Commit = "unknown"
	}
	return v
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", "", stderr)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if !noArgs(fs, stderr) {
		return exitUsage
	}
	v := buildVersion()
	fmt.Fprintf(stdout, "fulcrum %s\ncommit: %s\ngo: %s\n", v.Version, v.Commit, v.Go)
	return exitOK
}
