package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lab/netns"
	"github.com/fulcrum-lb/fulcrum/lab/require"
)

// healthBackendPort is where each lb namespace runs its own backend.
const healthBackendPort = 8080

// healthBackend is a TCP server in a namespace that can be stopped and
// started again on the same address.
type healthBackend struct {
	host *netns.Host
	addr string

	mu sync.Mutex
	ln net.Listener
	wg sync.WaitGroup
}

func (b *healthBackend) start(t *testing.T) {
	t.Helper()
	var ln net.Listener
	err := b.host.Do(func() error {
		lc := net.ListenConfig{}
		var err error
		ln, err = lc.Listen(context.Background(), "tcp", b.addr)
		return err
	})
	if err != nil {
		t.Fatalf("%s: backend listen %s: %v", b.host.Name, b.addr, err)
	}
	b.mu.Lock()
	b.ln = ln
	b.mu.Unlock()
	b.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	})
}

func (b *healthBackend) stop() {
	b.mu.Lock()
	ln := b.ln
	b.ln = nil
	b.mu.Unlock()
	if ln != nil {
		ln.Close()
		b.wg.Wait()
	}
}

// healthVRRPConfig is vrrpConfig with a virtual_server whose only real
// server is the node's own backend, checked over TCP (100 ms, rise 2,
// fall 2), tracked by VI_1 with weight -150.
func healthVRRPConfig(name, socket string, addr string, priority int) string {
	return validConfig(name, socket) + fmt.Sprintf(`
virtual_server "web" {
  address = "203.0.113.10:80"
  real_server "local" {
    address = "%s:%d"
  }
  health_check "tcp" {
    interval = "100ms"
    timeout  = "100ms"
    rise     = 2
    fall     = 2
  }
}

vrrp_instance "VI_1" {
  interface         = "eth0"
  virtual_router_id = 51
  priority          = %d
  advert_interval   = "100ms"
  preempt           = true
  virtual_ips       = ["%s/24"]
  track_service "web" {
    weight = -150
  }
}
`, addr, healthBackendPort, priority, vrrpVIP)
}

// healthCheckState reads the check of the local real server from status.
func (n *vrrpNode) healthCheckState(t *testing.T) (string, string) {
	t.Helper()
	out, code := n.cli(t, "status", "-json")
	if code != 0 {
		t.Fatalf("%s: fulcrum status -json exited %d: %s", n.host.Name, code, out)
	}
	var st struct {
		Subsystems []struct {
			Name   string `json:"name"`
			Detail struct {
				Checks []struct {
					ID         string `json:"id"`
					State      string `json:"state"`
					LastReason string `json:"last_reason"`
				} `json:"checks"`
			} `json:"detail"`
		} `json:"subsystems"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status is not JSON: %v\n%s", err, out)
	}
	for _, s := range st.Subsystems {
		if s.Name == "health" {
			for _, c := range s.Detail.Checks {
				if c.ID == "vs/web/local" {
					return c.State, c.LastReason
				}
			}
		}
	}
	return "", ""
}

// waitPriority waits until VI_1's effective priority is want.
func (n *vrrpNode) waitPriority(t *testing.T, want int) vrrpInstance {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		in := n.instance(t)
		if in.Priority == want {
			return in
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: VI_1 priority %d, waited for %d\n%s", n.host.Name, in.Priority, want, n.proc.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHealthTrackServiceNamespaces runs two agents whose VRRP instance
// tracks a virtual_server checked against a backend in the agent's own
// namespace (IPVS is not available on the host kernel: the agent says so
// and the checks run anyway). Killing lb1's backend takes its check down
// after fall, its priority to 200-150 = 50 < 100, and lb2 takes the VIP;
// restarting it brings the check up after rise and lb1, preempting, takes
// the VIP back. The client's neighbour entry follows each time.
func TestHealthTrackServiceNamespaces(t *testing.T) {
	if testing.Short() {
		t.Skip("namespace end-to-end test; skipped with -short")
	}
	require.Root(t)
	require.Kernel(t, require.Veth)
	lan := netns.NewLAN(t, netns.Options{})
	h1 := lan.AddHost("lb1", "192.0.2.11/24")
	h2 := lan.AddHost("lb2", "192.0.2.12/24")
	client := lan.AddHost("client", "192.0.2.100/24")

	be1 := &healthBackend{host: h1, addr: fmt.Sprintf("192.0.2.11:%d", healthBackendPort)}
	be2 := &healthBackend{host: h2, addr: fmt.Sprintf("192.0.2.12:%d", healthBackendPort)}
	be1.start(t)
	be2.start(t)
	t.Cleanup(be1.stop)
	t.Cleanup(be2.stop)

	start := func(h *netns.Host, prio int) *vrrpNode {
		dir := t.TempDir()
		n := &node{dir: dir, config: filepath.Join(dir, "node.hcl"), socket: filepath.Join(dir, "run", "fulcrum.sock")}
		writeFile(t, n.config, healthVRRPConfig(h.Name, n.socket, h.Addr4().String(), prio))
		n.start(t, h.Command(context.Background(), binary, "agent", "-config", n.config, "-log-target", "stderr"))
		return &vrrpNode{node: n, host: h}
	}
	lb1 := start(h1, 200)
	lb2 := start(h2, 100)

	lb1.waitPriority(t, 200)
	lb2.waitPriority(t, 100)
	lb1.waitState(t, "master")
	lb2.waitState(t, "backup")
	onlyHolder(t, h1, h1, h2)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if err := client.Ping(ctx, vrrpVIP); err != nil {
		t.Fatalf("ping %v: %v", vrrpVIP, err)
	}
	waitNeigh(t, client, h1)

	// Kill lb1's backend: after fall (2 x 100 ms) its check is down, its
	// priority 50, and lb2 (100) preempts.
	killed := time.Now()
	be1.stop()
	lb1.waitPriority(t, 50)
	down := time.Now()
	in2 := lb2.waitState(t, "master")
	lb1.waitState(t, "backup")
	onlyHolder(t, h2, h1, h2)
	seen := waitNeigh(t, client, h2)
	state, reason := lb1.healthCheckState(t)
	if state != "down" || reason == "" {
		t.Fatalf("lb1's check is %q (%q) after the kill", state, reason)
	}
	t.Logf("backend killed -> lb1 priority 50 seen after %s; lb2 master (%s) after %s; client at lb2's MAC after %s; check reason %s",
		down.Sub(killed).Round(time.Millisecond), in2.LastTransition.Reason, in2.LastTransition.At.Sub(killed).Round(time.Millisecond),
		seen.Sub(killed).Round(time.Millisecond), reason)

	// `fulcrum status` shows the check.
	if out, code := lb1.cli(t, "status"); code != 0 || !strings.Contains(out, "check vs/web/local (tcp): down") {
		t.Fatalf("fulcrum status exited %d:\n%s", code, out)
	}

	// Restart it: after rise (2 x 100 ms) lb1 is back at 200 and takes
	// the VIP back.
	restarted := time.Now()
	be1.start(t)
	lb1.waitPriority(t, 200)
	up := time.Now()
	in1 := lb1.waitState(t, "master")
	lb2.waitState(t, "backup")
	onlyHolder(t, h1, h1, h2)
	seen = waitNeigh(t, client, h1)
	t.Logf("backend restarted -> lb1 priority 200 seen after %s; lb1 master (%s) after %s; client at lb1's MAC after %s",
		up.Sub(restarted).Round(time.Millisecond), in1.LastTransition.Reason, in1.LastTransition.At.Sub(restarted).Round(time.Millisecond),
		seen.Sub(restarted).Round(time.Millisecond))
	if err := client.Ping(ctx, vrrpVIP); err != nil {
		t.Fatalf("ping %v after the return: %v", vrrpVIP, err)
	}
	out := lb1.proc.Output()
	if !strings.Contains(out, "health check down") || !strings.Contains(out, "health check up") || !strings.Contains(out, "real_server=local") {
		t.Errorf("lb1's log lacks the health entries:\n%s", out)
	}
}
