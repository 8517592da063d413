package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/agent"
)

func TestIPVSCommandsUsage(t *testing.T) {
	sock := filepath.Join(shortDir(t), "none.sock")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"drain", "web", "-socket", sock}, exitUsage, "want a virtual_server and a real_server name, got 1"},
		{[]string{"enable", "web", "a", "b", "-socket", sock}, exitUsage, "got 3"},
		{[]string{"drain", "-bogus"}, exitUsage, "flag provided but not defined"},
		{[]string{"ipvs"}, exitUsage, "Usage: fulcrum ipvs resync"},
		{[]string{"ipvs", "flush"}, exitUsage, "Usage: fulcrum ipvs resync"},
		{[]string{"ipvs", "resync", "extra", "-socket", sock}, exitUsage, "unexpected argument"},
		// Flags after the names are parsed; the agent is not there.
		{[]string{"drain", "web", "app1", "-socket", sock}, exitFailed, "cannot reach fulcrum agent"},
		{[]string{"ipvs", "resync", "-socket", sock}, exitFailed, "cannot reach fulcrum agent"},
	} {
		code, _, stderr := runCLI(c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, stderr, c.code, c.want)
		}
	}
	if code, stdout, _ := runCLI("help"); code != exitOK || !strings.Contains(stdout, "drain    VIRTUAL_SERVER REAL_SERVER") {
		t.Errorf("help lacks drain:\n%s", stdout)
	}
}

func TestPrintIPVS(t *testing.T) {
	last := time.Date(2026, 11, 25, 1, 0, 0, 0, time.UTC)
	services := []agent.IPVSServiceStatus{{
		Name: "web", Service: "tcp/203.0.113.10:80", Scheduler: "wrr", InKernel: true, InSync: true,
		Quorum: &agent.IPVSQuorumStatus{MinUp: 2, Up: 1, Lost: true},
		Destinations: []agent.IPVSDestinationStatus{
			{Name: "app1", Address: "198.51.100.11:8080", Forwarding: "masq", Weight: 3, EffectiveWeight: 0, Healthy: true, Drained: true,
				InKernel: true, KernelWeight: 0, ActiveConns: 2, Conns: 40},
			{Name: "app2", Address: "198.51.100.12:8080", Forwarding: "masq", Weight: 1, EffectiveWeight: 1, Healthy: true,
				InKernel: true, KernelWeight: 5},
			{Name: "sorry_server", Address: "198.51.100.99:8080", Forwarding: "masq", Weight: 1, EffectiveWeight: 1, Healthy: true, Sorry: true, InKernel: true, KernelWeight: 1},
		},
	}, {
		Name: "dns", Service: "udp/203.0.113.53:53", Scheduler: "rr", RemoveOnShutdown: true,
		Destinations: []agent.IPVSDestinationStatus{{Name: "ns1", Address: "203.0.113.101:53", Forwarding: "route", Weight: 1, EffectiveWeight: 1, Healthy: true}},
	}}
	counters := agent.IPVSCounters{Ops: map[string]uint64{"get_services": 2, "update_destination": 1}, Total: 3, Mutations: 1,
		Resyncs: 2, LastResync: &last, LastResyncDuration: "1.5ms", Errors: 1, LastError: "ipvs new_service: boom"}
	// As the CLI gets it: decoded JSON.
	raw, _ := json.Marshal(map[string]any{"services": services, "counters": counters, "unowned": 2})
	var detail map[string]any
	if err := json.Unmarshal(raw, &detail); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if !printIPVS(&b, detail, last.Add(time.Minute)) {
		t.Fatal("not printed")
	}
	out := b.String()
	for _, want := range []string{
		"  virtual_server web: tcp/203.0.113.10:80 wrr, quorum 1/2 up LOST\n",
		"    app1 198.51.100.11:8080 masq: weight 0 (configured 3) DRAINED; conns 2 active, 0 inactive, 40 total\n",
		"    app2 198.51.100.12:8080 masq: weight 1; kernel weight 5; conns",
		"    sorry_server 198.51.100.99:8080 masq: weight 1 sorry server in use; conns",
		"  virtual_server dns: udp/203.0.113.53:53 rr, NOT IN THE KERNEL, removed on shutdown\n",
		"    ns1 203.0.113.101:53 route: weight 1; NOT IN THE KERNEL\n",
		"  kernel operations: 3 (1 changes): get_services 2, update_destination 1\n",
		"  resyncs: 2, last 1m0s ago, took 1.5ms\n",
		"  errors: 1, last: ipvs new_service: boom\n",
		"  2 other services in the kernel are not ours (left alone)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if printIPVS(&b, map[string]any{"available": false}, last) {
		t.Error("printed a detail without services")
	}
}

func TestPrintOverride(t *testing.T) {
	var b bytes.Buffer
	printOverride(&b, &agent.IPVSOverrideResponse{OK: true, VirtualServer: "web", RealServer: "app1", Service: "tcp/203.0.113.10:80",
		Destination: "198.51.100.11:8080", Drained: true, Changed: true, Weight: 3, InKernel: true, ActiveConns: 2})
	printOverride(&b, &agent.IPVSOverrideResponse{OK: true, VirtualServer: "web", RealServer: "app1", Service: "tcp/203.0.113.10:80",
		Destination: "198.51.100.11:8080", Weight: 3, EffectiveWeight: 3, InKernel: true, KernelWeight: 3})
	out := b.String()
	for _, want := range []string{
		"web/app1 (tcp/203.0.113.10:80 -> 198.51.100.11:8080): drained: weight 0 (configured 3), kernel weight 0\n  no new connections; established ones continue (2 active, 0 inactive now)\n",
		"until `fulcrum enable web app1`",
		"web/app1 (tcp/203.0.113.10:80 -> 198.51.100.11:8080): already enabled: weight 3 (configured 3), kernel weight 3\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestIPVSCommandsWithoutKernelIPVS runs an agent with a virtual_server on
// this host, whose kernel has no IPVS: status says so, drain and resync
// fail clearly, the agent keeps serving.
func TestIPVSCommandsWithoutKernelIPVS(t *testing.T) {
	if _, err := os.Stat("/proc/net/ip_vs"); err == nil {
		t.Skip("this host's kernel has IPVS; the test would program it")
	}
	dir := shortDir(t)
	sock := filepath.Join(dir, "f.sock")
	cfgPath := filepath.Join(dir, "node.hcl")
	writeFile(t, cfgPath, fmt.Sprintf(`node "lb1" {}
control {
  socket = %q
}
virtual_server "web" {
  address = "203.0.113.10:80"
  real_server "app1" {
    address = "198.51.100.11:8080"
  }
}
`, sock))
	if code, stdout, stderr := runCLI("validate", cfgPath); code != exitOK || !strings.Contains(stdout, "ok") {
		t.Fatalf("validate: %d %s %s", code, stdout, stderr)
	}
	logs := &syncBuffer{}
	a, err := agent.New(agent.Options{ConfigPath: cfgPath, Stderr: logs, Notifier: nopNotifier{}, Version: buildVersion(), LogTarget: "stderr"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	waitFor(t, "control socket", func() bool { _, err := os.Stat(sock); return err == nil })

	code, stdout, _ := runCLI("status", "-socket", sock)
	if code != exitOK || !strings.Contains(stdout, "\nipvs:\n  configured: 1\n  state: IPVS not available: the kernel has no ip_vs (modprobe ip_vs?)") {
		t.Fatalf("status: %d\n%s", code, stdout)
	}
	code, _, stderr := runCLI("drain", "web", "app1", "-socket", sock)
	if code != exitFailed || !strings.Contains(stderr, "503") || !strings.Contains(stderr, "IPVS not available") {
		t.Fatalf("drain: %d %s", code, stderr)
	}
	if code, _, stderr := runCLI("ipvs", "resync", "-socket", sock); code != exitFailed || !strings.Contains(stderr, "IPVS not available") {
		t.Fatalf("resync: %d %s", code, stderr)
	}
	if code, stdout, _ := runCLI("reload", "-socket", sock); code != exitOK {
		t.Fatalf("reload: %d %s", code, stdout)
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"IPVS not available") {
		t.Errorf("no warning in the log:\n%s", logs)
	}
	stop()

	// validate reports a health_check with its position.
	bad := filepath.Join(dir, "bad.hcl")
	writeFile(t, bad, "node \"lb1\" {}\nvirtual_server \"web\" {\n  address = \"203.0.113.10:80\"\n  health_check \"exec\" {\n    command = [\"/bin/true\"]\n    dynamic_weight = true\n  }\n}\n")
	code, _, stderr = runCLI("validate", bad)
	if code != exitFailed || !strings.Contains(stderr, "Error: dynamic_weight is not supported yet") || !strings.Contains(stderr, "bad.hcl:4:3") {
		t.Fatalf("validate: %d\n%s", code, stderr)
	}
	code, stdout, _ = runCLI("validate", "-json", bad)
	if code != exitFailed || !strings.Contains(stdout, `"summary": "dynamic_weight is not supported yet"`) || !strings.Contains(stdout, `"line": 4`) {
		t.Fatalf("validate -json: %d\n%s", code, stdout)
	}
}
