package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/fulcrum-lb/fulcrum/agent"
)

const proxySynopsis = "disable|enable PROXY BACKEND SERVER [-socket PATH]"

const proxyHelp = `Usage: fulcrum proxy ` + proxySynopsis + `
  disable  take a server out of its backend's rotation (HAProxy's "disable server"):
           no new requests, its sticky clients move to another server, requests
           in flight finish; lasts across reloads, not across agent restarts
  enable   put a disabled server back
`

// runProxy: fulcrum proxy disable|enable PROXY BACKEND SERVER.
func runProxy(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, proxyHelp)
		return exitUsage
	}
	var disable bool
	switch args[0] {
	case "disable":
		disable = true
	case "enable":
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, proxyHelp)
		return exitOK
	default:
		fmt.Fprintf(stderr, "fulcrum proxy: unknown subcommand %q\n%s", args[0], proxyHelp)
		return exitUsage
	}
	name := "proxy " + args[0]
	fs := newFlagSet(name, "PROXY BACKEND SERVER [-socket PATH]", stderr)
	socket := socketFlag(fs)
	// Flags may come before, between or after the names.
	var names []string
	rest := args[1:]
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
	if len(names) != 3 {
		fmt.Fprintf(stderr, "fulcrum %s: want a proxy, a backend and a server name, got %d argument(s)\n", name, len(names))
		fs.Usage()
		return exitUsage
	}
	req := agent.ProxyServerRequest{Proxy: names[0], Backend: names[1], Server: names[2]}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	c := agent.NewClient(*socket)
	do := c.ProxyEnable
	if disable {
		do = c.ProxyDisable
	}
	res, err := do(ctx, req)
	if err != nil {
		fmt.Fprintf(stderr, "fulcrum %s: %v\n", name, err)
		return exitFailed
	}
	state := "enabled"
	if res.Disabled {
		state = "disabled"
	}
	if !res.Changed {
		state = "already " + state
	}
	fmt.Fprintf(stdout, "%s/%s/%s (%s): %s; state %s, %d request(s) in flight\n",
		res.Proxy, res.Backend, res.Server, res.Address, state, res.State, res.ActiveSessions)
	if res.Disabled {
		fmt.Fprintf(stdout, "  no new requests until `fulcrum proxy enable %s %s %s` (lasts across reloads and restarts)\n", res.Proxy, res.Backend, res.Server)
	}
	return exitOK
}

// printProxy prints the l7proxy status detail: each proxy with its
// listeners, counters, backends and servers.
func printProxy(w io.Writer, detail map[string]any, _ time.Time) bool {
	raw, ok := detail["proxies"]
	if !ok {
		return false
	}
	var proxies []agent.ProxyStatus
	if b, err := json.Marshal(raw); err != nil || json.Unmarshal(b, &proxies) != nil {
		return false
	}
	for _, p := range proxies {
		r := p.Responses
		fmt.Fprintf(w, "  proxy %s: %d connection(s) open, %d request(s) in flight, %d total, %.1f req/s\n",
			p.Name, p.ActiveConnections, p.ActiveRequests, p.TotalRequests, p.RequestRate)
		fmt.Fprintf(w, "    responses 2xx %d, 3xx %d, 4xx %d, 5xx %d; errors %d, rate limited %d, retries %d, no server %d\n",
			r.Success, r.Redirect, r.ClientError, r.ServerError, p.Errors, p.RateLimited, p.Retries, p.NoServer)
		for _, l := range p.Listeners {
			var flags []string
			if l.TLS {
				flags = append(flags, "tls")
			}
			if l.ProxyProtocol {
				flags = append(flags, "proxy_protocol")
			}
			line := fmt.Sprintf("    listener %s %s", l.Name, l.Address)
			if len(flags) > 0 {
				line += " (" + strings.Join(flags, ", ") + ")"
			}
			fmt.Fprintln(w, line)
		}
		for _, b := range p.Backends {
			how := b.Balance
			if b.Sticky != "" {
				how += ", sticky " + b.Sticky
			}
			fmt.Fprintf(w, "    backend %s (%s): %d/%d up\n", b.Name, how, b.ServersUp, len(b.Servers))
			for _, s := range b.Servers {
				state := s.State
				if state != agent.ProxyServerUp {
					state = strings.ToUpper(state)
				}
				line := fmt.Sprintf("      %s %s: %s, weight %d, %d in flight, %d total, %d error(s)",
					s.Name, s.Address, state, s.Weight, s.ActiveSessions, s.TotalSessions, s.Errors)
				if s.PassiveFails > 0 {
					line += fmt.Sprintf(", %d passive fail(s)", s.PassiveFails)
				}
				fmt.Fprintln(w, line)
			}
		}
	}
	return true
}
