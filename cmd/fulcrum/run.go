package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/fulcrum-lb/fulcrum/agent"
)

// Exit codes (docs/architecture.md).
const (
	exitOK     = 0 // success
	exitFailed = 1 // the thing asked for failed
	exitUsage  = 2 // usage error
)

const usage = `Usage: fulcrum COMMAND [FLAGS]

Commands:
  agent    -config PATH [-log-level debug|info|warn|error] [-log-target auto|journald|stderr]
           run the node agent in the foreground
  validate [-json] FILE...
           check config files; every problem is printed with file:line:col
  status   [-json] [-socket PATH]
           show the running agent's status
  reload   [-socket PATH]
           reload the agent's config (like SIGHUP)
  events   [-socket PATH]
           stream the agent's events as JSON lines until interrupted
  failover [INSTANCE | -all] [-wait] [-hold 30s] [-timeout 10s] [-socket PATH]
           VRRP failover drill: a master hands over (stays backup for -hold),
           a backup takes over (advertises 254 for -hold); with -wait, report
           the measured gaps and exit 1 if the handover was not seen
  drain    VIRTUAL_SERVER REAL_SERVER [-socket PATH]
           IPVS: weight 0 for a real server (no new connections, established
           ones continue); lasts across reloads and restarts until enable
  enable   VIRTUAL_SERVER REAL_SERVER [-socket PATH]
           IPVS: clear a drain, the real server gets its configured weight back
  ipvs     resync [-socket PATH]
           IPVS: dump the kernel now and correct any drift
  proxy    disable|enable PROXY BACKEND SERVER [-socket PATH]
           L7 proxy: take a server out of rotation (requests in flight
           finish; lasts across reloads and restarts) or put it back
  version  print version information
  help     print this help

The control socket defaults to $FULCRUM_SOCKET, else ` + agent.DefaultSocket + `.
`

// command is one subcommand.
type command func(args []string, stdout, stderr io.Writer) int

var commands = map[string]command{
	"agent":    runAgent,
	"validate": runValidate,
	"status":   runStatus,
	"reload":   runReload,
	"events":   runEvents,
	"failover": runFailover,
	"drain":    runDrain,
	"enable":   runEnable,
	"ipvs":     runIPVS,
	"proxy":    runProxy,
	"version":  runVersion,
}

// run executes the CLI with args (without the program name) and returns the
// exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "fulcrum: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
	return cmd(args[1:], stdout, stderr)
}

// newFlagSet returns a flag set for a subcommand that reports errors to
// stderr with the subcommand's synopsis.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("fulcrum "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: fulcrum %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; ok false means return code.
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	return 0, true
}

// socketFlag adds -socket with the default from $FULCRUM_SOCKET.
func socketFlag(fs *flag.FlagSet) *string {
	def := os.Getenv("FULCRUM_SOCKET")
	if def == "" {
		def = agent.DefaultSocket
	}
	return fs.String("socket", def, "control socket of the agent (env FULCRUM_SOCKET)")
}

// noArgs reports extra positional arguments as a usage error.
func noArgs(fs *flag.FlagSet, stderr io.Writer) bool {
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return false
	}
	return true
}
