package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/fulcrum-lb/fulcrum/agent"
)

// runAgent runs the node agent in the foreground until SIGTERM/SIGINT.
func runAgent(args []string, _, stderr io.Writer) int {
	fs := newFlagSet("agent", "-config PATH [-log-level LEVEL] [-log-target TARGET] [-state-dir DIR]", stderr)
	configPath := fs.String("config", "", "node config file (required)")
	logLevel := fs.String("log-level", "", "debug|info|warn|error; overrides log.level of the config")
	logTarget := fs.String("log-target", "", "auto|journald|stderr; overrides log.target of the config")
	stateDir := fs.String("state-dir", "", "folder for state kept across restarts (IPVS ownership and drains, disabled proxy servers); default $STATE_DIRECTORY, else "+agent.DefaultStateDir)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if !noArgs(fs, stderr) {
		return exitUsage
	}
	if *configPath == "" {
		fmt.Fprintln(stderr, "fulcrum agent: -config is required")
		fs.Usage()
		return exitUsage
	}
	if *logLevel != "" {
		if _, err := agent.ParseLogLevel(*logLevel); err != nil {
			fmt.Fprintf(stderr, "fulcrum agent: -log-level: %v\n", err)
			return exitUsage
		}
	}
	if *logTarget != "" {
		if _, err := agent.ParseLogTarget(*logTarget); err != nil {
			fmt.Fprintf(stderr, "fulcrum agent: -log-target: %v\n", err)
			return exitUsage
		}
	}

	a, err := agent.New(agent.Options{
		ConfigPath: *configPath,
		LogLevel:   *logLevel,
		LogTarget:  *logTarget,
		StateDir:   *stateDir,
		Stderr:     stderr,
		Version:    buildVersion(),
	})
	if err != nil {
		var ce *agent.ConfigError
		if errors.As(err, &ce) {
			fmt.Fprintf(stderr, "fulcrum agent: %v\n", ce)
			return exitFailed
		}
		fmt.Fprintf(stderr, "fulcrum agent: %v\n", err)
		return exitFailed
	}
	// The agent handles SIGTERM, SIGINT and SIGHUP itself.
	if err := a.Run(context.Background()); err != nil {
		fmt.Fprintf(stderr, "fulcrum agent: %v\n", err)
		return exitFailed
	}
	return exitOK
}
