package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/agent"
)

func TestProxyCommandUsage(t *testing.T) {
	sock := filepath.Join(shortDir(t), "none.sock")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"proxy"}, exitUsage, "Usage: fulcrum proxy disable|enable"},
		{[]string{"proxy", "drain", "www", "app", "app1"}, exitUsage, `unknown subcommand "drain"`},
		{[]string{"proxy", "disable", "www", "app", "-socket", sock}, exitUsage, "want a proxy, a backend and a server name, got 2"},
		{[]string{"proxy", "enable", "-bogus"}, exitUsage, "flag provided but not defined"},
		// Flags after the names are parsed; the agent is not there.
		{[]string{"proxy", "disable", "www", "app", "app1", "-socket", sock}, exitFailed, "cannot reach fulcrum agent"},
	} {
		code, _, stderr := runCLI(c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, stderr, c.code, c.want)
		}
	}
	if code, stdout, _ := runCLI("proxy", "help"); code != exitOK || !strings.Contains(stdout, "disable  take a server out") {
		t.Errorf("proxy help:\n%s", stdout)
	}
	if code, stdout, _ := runCLI("help"); code != exitOK || !strings.Contains(stdout, "proxy    disable|enable PROXY BACKEND SERVER") {
		t.Errorf("help lacks proxy:\n%s", stdout)
	}
}

func TestPrintProxy(t *testing.T) {
	proxies := []agent.ProxyStatus{{
		Name: "www", ActiveConnections: 3, ActiveRequests: 1, TotalRequests: 120, RequestRate: 2.5,
		Errors: 2, RateLimited: 5, Retries: 1, NoServer: 0,
		Responses: agent.ProxyResponseCounts{Success: 100, Redirect: 10, ClientError: 8, ServerError: 2},
		Listeners: []agent.ProxyListenerStatus{{Name: "http", Address: "203.0.113.10:80"}, {Name: "https", Address: "203.0.113.10:443", TLS: true, ProxyProtocol: true}},
		Backends: []agent.ProxyBackendStatus{{Name: "app", Balance: "roundrobin", Sticky: "cookie SRV", ServersUp: 1, Servers: []agent.ProxyServerStatus{
			{Name: "app1", Address: "198.51.100.11:8080", State: "up", Weight: 1, ActiveSessions: 1, TotalSessions: 90},
			{Name: "app2", Address: "198.51.100.12:8080", State: "passive_down", Weight: 1, TotalSessions: 20, Errors: 3, PassiveFails: 3},
			{Name: "app3", Address: "198.51.100.13:8080", State: "disabled", Disabled: true, Weight: 2, TotalSessions: 10},
		}}},
	}}
	var out bytes.Buffer
	if !printProxy(&out, map[string]any{"proxies": proxies}, time.Now()) {
		t.Fatal("printProxy declined the detail")
	}
	want := `  proxy www: 3 connection(s) open, 1 request(s) in flight, 120 total, 2.5 req/s
    responses 2xx 100, 3xx 10, 4xx 8, 5xx 2; errors 2, rate limited 5, retries 1, no server 0
    listener http 203.0.113.10:80
    listener https 203.0.113.10:443 (tls, proxy_protocol)
    backend app (roundrobin, sticky cookie SRV): 1/3 up
      app1 198.51.100.11:8080: up, weight 1, 1 in flight, 90 total, 0 error(s)
      app2 198.51.100.12:8080: PASSIVE_DOWN, weight 1, 0 in flight, 20 total, 3 error(s), 3 passive fail(s)
      app3 198.51.100.13:8080: DISABLED, weight 2, 0 in flight, 10 total, 0 error(s)
`
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}
	if printProxy(&out, map[string]any{"other": 1}, time.Now()) {
		t.Error("printProxy accepted a detail without proxies")
	}
}
