package ipvse2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lab/fulcrumbin"
	"github.com/fulcrum-lb/fulcrum/lab/kernel"
	"github.com/fulcrum-lb/fulcrum/lab/netns"
)

// TestHostWithoutIPVS runs the agent with a virtual_server and a vrrp_instance on this host,
// whose kernel has no IPVS: the agent starts, VRRP becomes master, status says "IPVS not
// available" without showing anything as programmed, drains fail clearly, reloads work, and
// SIGTERM stops it cleanly.
func TestHostWithoutIPVS(t *testing.T) {
	if kernel.InGuest() {
		t.Skip("host test: the guest has IPVS")
	}
	if _, err := os.Stat("/proc/net/ip_vs"); err == nil {
		t.Skip("this host's kernel has IPVS; the IPVS-less case cannot be shown here")
	}
	lb, _ := netns.Pair(t, netns.Options{},
		netns.HostSpec{Name: "lb1", Addrs: []string{"192.0.2.11/24"}},
		netns.HostSpec{Name: "peer", Addrs: []string{"192.0.2.12/24"}})
	dir := t.TempDir()
	a := &agentProc{dir: dir, config: filepath.Join(dir, "node.hcl"), socket: filepath.Join(dir, "f.sock")}
	cfg := `node "lb1" {}
control {
  socket = "` + a.socket + `"
}
log {
  target = "stderr"
}
vrrp_instance "VI_1" {
  interface         = "eth0"
  virtual_router_id = 51
  priority          = 200
  advert_interval   = "100ms"
  virtual_ips       = ["192.0.2.50/24"]
}
virtual_server "web" {
  address = "192.0.2.50:80"
  real_server "app1" {
    address = "192.0.2.21:8080"
  }
}
`
	if err := os.WriteFile(a.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	proc := lb.Start(t, binary, "agent", "-config", a.config)
	fulcrumbin.WaitSocket(t, proc, a.socket, hangGuard)

	var st agentStatus
	deadline := time.Now().Add(hangGuard)
	for {
		st, _ = a.status(t)
		if subsystemState(st, "vrrp") == "running: 1 master" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("VRRP never became master: %+v\n%s", st, proc.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, is := a.status(t)
	if is.Configured != 1 || !strings.HasPrefix(is.State, "IPVS not available: the kernel has no ip_vs (modprobe ip_vs?)") ||
		len(is.Detail.Services) != 0 {
		t.Fatalf("ipvs status %+v", is)
	}
	out, _ := a.cli(t, "status")
	if !strings.Contains(out, "\nipvs:\n  configured: 1\n  state: IPVS not available") || strings.Contains(out, "virtual_server web:") {
		t.Fatalf("fulcrum status:\n%s", out)
	}
	if out, code := a.cli(t, "drain", "web", "app1"); code != 1 || !strings.Contains(out, "IPVS not available") {
		t.Fatalf("fulcrum drain: %d %s", code, out)
	}
	if out, code := a.cli(t, "reload"); code != 0 || !strings.Contains(out, "generation 2") {
		t.Fatalf("fulcrum reload: %d %s", code, out)
	}
	if logs := proc.Output(); !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "IPVS not available") {
		t.Fatalf("no warning in the agent's log:\n%s", logs)
	}
	if err := proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-proc.Done():
	case <-time.After(hangGuard):
		t.Fatal("agent did not stop on SIGTERM")
	}
	if err := proc.Err(); err != nil {
		t.Fatalf("agent exit: %v\n%s", err, proc.Output())
	}
}

func subsystemState(st agentStatus, name string) string {
	for _, s := range st.Subsystems {
		if s.Name == name {
			return s.State
		}
	}
	return ""
}
