package ipvse2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/ipvs"
	"github.com/fulcrum-lb/fulcrum/lab/fulcrumbin"
	"github.com/fulcrum-lb/fulcrum/lab/kernel"
	"github.com/fulcrum-lb/fulcrum/lab/netns"
)

// Addresses of the test bed: the client and the director's front on 203.0.113.0/24, the
// virtual server 203.0.113.10:80 on the director, the backends on 198.51.100.0/24 behind the
// director, which routes between the two.
const (
	vip        = "203.0.113.10:80"
	be1Addr    = "198.51.100.11:8080"
	be2Addr    = "198.51.100.12:8080"
	directorBk = "198.51.100.1"
)

// bed is the guest test bed: namespaces, backends, and the director's agent.
type bed struct {
	// t is the test that owns the bed: agents started from its subtests live as long as it.
	t                *testing.T
	client, director *netns.Host
	agent            *agentProc
	proc             *netns.Proc
}

var modprobeOnce sync.Once

// loadIPVS loads ip_vs and the wrr scheduler once per guest (busybox's modprobe needs
// crc32c_generic before ip_vs). The agent itself never loads modules.
func loadIPVS(t *testing.T) {
	t.Helper()
	var err error
	modprobeOnce.Do(func() {
		_ = exec.Command("modprobe", "crc32c_generic").Run()
		for _, m := range []string{"ip_vs", "ip_vs_wrr"} {
			if out, e := exec.Command("modprobe", m).CombinedOutput(); e != nil {
				err = fmt.Errorf("modprobe %s: %v\n%s", m, e, out)
				return
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// newBed builds the topology, starts the backends and the director's agent, and waits until
// the agent reports the virtual server in the kernel.
func newBed(t *testing.T) *bed {
	t.Helper()
	if binary == "" {
		t.Fatalf("%s is not set: run through TestIPVSLab", envBinary)
	}
	loadIPVS(t)
	// A fresh ownership record (the default path; the guest's overlay is shared by the tests
	// of one boot, which run one after the other).
	_ = os.Remove(ipvs.DefaultStateFile)
	t.Cleanup(func() { _ = os.Remove(ipvs.DefaultStateFile) })

	client, director := netns.Pair(t, netns.Options{},
		netns.HostSpec{Name: "client", Addrs: []string{"203.0.113.100/24"}},
		netns.HostSpec{Name: "director", Addrs: []string{"203.0.113.1/24"}})
	back := netns.NewLAN(t, netns.Options{})
	back.Attach(director, directorBk+"/24")
	if err := director.AddAddr("eth0", "203.0.113.10/32"); err != nil {
		t.Fatal(err)
	}
	if err := director.SetSysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	for _, be := range []struct{ name, addr string }{{"be1", be1Addr}, {"be2", be2Addr}} {
		host, _, _ := strings.Cut(be.addr, ":")
		h := back.AddHost(be.name, host+"/24")
		if err := h.AddRoute("default", directorBk); err != nil {
			t.Fatal(err)
		}
		ln, err := h.Listen("tcp", be.addr)
		if err != nil {
			t.Fatal(err)
		}
		echoServer(t, be.name, ln)
	}

	dir := t.TempDir()
	a := &agentProc{dir: dir, config: filepath.Join(dir, "node.hcl"), socket: filepath.Join(dir, "f.sock")}
	cfg := fmt.Sprintf(`node "director" {}
control {
  socket = %q
}
log {
  level  = "debug"
  target = "stderr"
}
virtual_server "web" {
  address   = %q
  scheduler = "wrr"

  real_server "be1" {
    address = %q
    weight  = 3
  }
  real_server "be2" {
    address = %q
    weight  = 1
  }
}
`, a.socket, vip, be1Addr, be2Addr)
	if err := os.WriteFile(a.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &bed{t: t, client: client, director: director, agent: a}
	b.start(t)
	return b
}

// start runs the agent in the director's namespace and waits until the service is in the
// kernel and in sync.
func (b *bed) start(t *testing.T) {
	t.Helper()
	cmd := b.director.Command(context.Background(), binary, "agent", "-config", b.agent.config)
	b.proc = netns.StartCmd(b.t, "director: fulcrum agent", cmd)
	fulcrumbin.WaitSocket(t, b.proc, b.agent.socket, hangGuard)
	b.agent.waitIPVS(t, "the virtual server in the kernel", func(is ipvsStatus) bool {
		return strings.HasPrefix(is.State, "running") && len(is.Detail.Services) == 1 && is.Detail.Services[0].InSync
	})
}

// stop sends SIGTERM and waits for a clean exit.
func (b *bed) stop(t *testing.T) {
	t.Helper()
	if err := b.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.proc.Done():
	case <-time.After(hangGuard):
		t.Fatalf("agent did not stop on SIGTERM\n%s", b.proc.Output())
	}
	if err := b.proc.Err(); err != nil {
		t.Fatalf("agent exited with %v\n%s", err, b.proc.Output())
	}
}

// ipvsadm runs ipvsadm in the director's namespace.
func (b *bed) ipvsadm(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	out, err := b.director.Command(ctx, "ipvsadm", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ipvsadm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// table is `ipvsadm -Ln`, normalized.
func (b *bed) table(t *testing.T) []string {
	t.Helper()
	return normalizeIPVSADM(b.ipvsadm(t, "-Ln"))
}

// serviceConns reads the service's connection counter from `ipvsadm -Ln --stats`: it is kept
// as long as the service exists and starts at 0 when it is created.
func (b *bed) serviceConns(t *testing.T) uint64 {
	t.Helper()
	out := b.ipvsadm(t, "-Ln", "--stats", "-t", vip)
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == "TCP" && f[1] == vip {
			n, err := strconv.ParseUint(f[2], 10, 64)
			if err != nil {
				t.Fatalf("conns %q: %v", f[2], err)
			}
			return n
		}
	}
	t.Fatalf("no service line in\n%s", out)
	return 0
}

// dial opens a connection to the virtual server from the client and reads the greeting.
func (b *bed) dial(t *testing.T) *conn {
	t.Helper()
	c, err := b.client.Dial("tcp", vip)
	if err != nil {
		t.Fatalf("dial %s: %v", vip, err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	rd := bufio.NewReader(c)
	name, err := rd.ReadString('\n')
	if err != nil {
		c.Close()
		t.Fatalf("greeting through %s: %v", vip, err)
	}
	return &conn{Conn: c, rd: rd, backend: strings.TrimSuffix(name, "\n")}
}

// spread makes n short connections and counts them per backend.
func (b *bed) spread(t *testing.T, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		c := b.dial(t)
		got[c.backend]++
		c.Close()
	}
	return got
}

// dialTo opens connections until one lands on backend (the others are closed).
func (b *bed) dialTo(t *testing.T, backend string) *conn {
	t.Helper()
	for range 20 {
		c := b.dial(t)
		if c.backend == backend {
			return c
		}
		c.Close()
	}
	t.Fatalf("no connection reached %s in 20 tries", backend)
	return nil
}

// TestInGuestVirtualServer is the operator's story on a real kernel, in order: (a) the agent
// programs exactly the configured service; (b) connections spread by weight; (c) a drain
// sends new connections elsewhere while an established one keeps working; (d) a restart
// adopts the service without re-creating it, established connections survive and the drain
// persists; (e) an ipvsadm edit behind the agent's back is corrected by a resync, and a
// service that is not ours is left alone.
func TestInGuestVirtualServer(t *testing.T) {
	if !kernel.InGuest() {
		t.Skip("runs in the kernel lab guest, through TestIPVSLab")
	}
	b := newBed(t)
	a := b.agent

	t.Run("ExactlyTheConfiguredService", func(t *testing.T) {
		want := []string{"TCP " + vip + " wrr", "-> " + be1Addr + " Masq 3", "-> " + be2Addr + " Masq 1"}
		if got := b.table(t); !reflect.DeepEqual(got, want) {
			t.Fatalf("ipvsadm -Ln:\n%q\nwant\n%q", got, want)
		}
	})

	t.Run("WeightedSpread", func(t *testing.T) {
		const n = 40
		got := b.spread(t, n)
		share := float64(got["be1"]) / n
		t.Logf("%d connections: be1 %d, be2 %d (be1 share %.0f%%, weights 3:1)", n, got["be1"], got["be2"], 100*share)
		if got["be1"]+got["be2"] != n || got["be2"] == 0 || share < 0.60 || share > 0.90 {
			t.Fatalf("spread %v, want be1 at 75%% ± 15%% and be2 used", got)
		}
	})

	t.Run("DrainKeepsEstablished", func(t *testing.T) {
		long := b.dialTo(t, "be1")
		defer long.Close()
		out, code := a.cli(t, "drain", "web", "be1")
		if code != 0 || !strings.Contains(out, "drained: weight 0 (configured 3), kernel weight 0") || !strings.Contains(out, "(1 active") {
			t.Fatalf("fulcrum drain: %d\n%s", code, out)
		}
		t.Logf("fulcrum drain web be1:\n%s", out)
		want := []string{"TCP " + vip + " wrr", "-> " + be1Addr + " Masq 0", "-> " + be2Addr + " Masq 1"}
		if got := b.table(t); !reflect.DeepEqual(got, want) {
			t.Fatalf("ipvsadm -Ln after the drain:\n%q\nwant\n%q", got, want)
		}
		if got := b.spread(t, 12); got["be2"] != 12 {
			t.Fatalf("new connections after the drain: %v, want all on be2", got)
		}
		if ans, err := long.ask("still there?"); err != nil || ans != "be1 still there?" {
			t.Fatalf("the established connection to the drained backend: %q %v", ans, err)
		}
		if _, is := a.status(t); !is.Detail.Services[0].Destinations[0].Drained {
			t.Fatalf("status does not show the drain: %+v", is)
		}
		out, code = a.cli(t, "enable", "web", "be1")
		if code != 0 || !strings.Contains(out, "enabled: weight 3 (configured 3), kernel weight 3") {
			t.Fatalf("fulcrum enable: %d\n%s", code, out)
		}
		if got := b.spread(t, 8); got["be1"] == 0 {
			t.Fatalf("be1 gets nothing after enable: %v", got)
		}
	})

	t.Run("RestartAdopts", func(t *testing.T) {
		long := b.dial(t)
		defer long.Close()
		if out, code := a.cli(t, "drain", "web", "be2"); code != 0 {
			t.Fatalf("fulcrum drain: %d\n%s", code, out)
		}
		connsBefore := b.serviceConns(t)
		tableBefore := b.table(t)
		firstPID, _ := a.status(t)

		b.stop(t)
		if got := b.table(t); !reflect.DeepEqual(got, tableBefore) {
			t.Fatalf("the service changed while the agent was down:\n%q\nwas\n%q", got, tableBefore)
		}
		if ans, err := long.ask("agent down"); err != nil || ans != long.backend+" agent down" {
			t.Fatalf("the connection while the agent is down: %q %v", ans, err)
		}
		b.start(t)
		st, is := a.status(t)
		if st.PID == firstPID.PID {
			t.Fatal("the agent did not restart")
		}
		ops := is.Detail.Counters.Ops
		t.Logf("kernel operations of the restarted agent: %v", ops)
		if ops["new_service"] != 0 || ops["del_service"] != 0 || ops["new_destination"] != 0 || ops["del_destination"] != 0 || is.Detail.Counters.Mutations != 0 {
			t.Fatalf("the restart re-created or changed things: %v", ops)
		}
		if c := b.serviceConns(t); c < connsBefore {
			t.Fatalf("the service's connection counter went from %d to %d: re-created", connsBefore, c)
		}
		if ans, err := long.ask("agent back"); err != nil || ans != long.backend+" agent back" {
			t.Fatalf("the connection across the restart: %q %v", ans, err)
		}
		// The drain was persisted in the state file.
		if got := b.table(t); !reflect.DeepEqual(got, tableBefore) || !is.Detail.Services[0].Destinations[1].Drained {
			t.Fatalf("after the restart:\n%q\nwant\n%q\nstatus %+v", got, tableBefore, is)
		}
		if out, code := a.cli(t, "enable", "web", "be2"); code != 0 {
			t.Fatalf("fulcrum enable: %d\n%s", code, out)
		}
	})

	t.Run("DriftCorrected", func(t *testing.T) {
		// Not ours: an operator's service, which resyncs must never touch.
		b.ipvsadm(t, "-A", "-t", "203.0.113.20:80", "-s", "rr")
		b.ipvsadm(t, "-d", "-t", vip, "-r", be2Addr)
		b.ipvsadm(t, "-e", "-t", vip, "-r", be1Addr, "-m", "-w", "7")
		out, code := a.cli(t, "ipvs", "resync")
		if code != 0 || !regexp.MustCompile(`1 service owned, 1 not ours \(left alone\); 2 corrections`).MatchString(out) {
			t.Fatalf("fulcrum ipvs resync: %d\n%s", code, out)
		}
		t.Logf("fulcrum ipvs resync: %s", strings.TrimSpace(out))
		want := []string{"TCP 203.0.113.20:80 rr", "TCP " + vip + " wrr", "-> " + be1Addr + " Masq 3", "-> " + be2Addr + " Masq 1"}
		got := b.table(t)
		if !sameSet(got, want) {
			t.Fatalf("ipvsadm -Ln after the resync:\n%q\nwant\n%q", got, want)
		}
		if got := b.spread(t, 8); got["be2"] == 0 {
			t.Fatalf("be2 gets nothing after the resync: %v", got)
		}
	})

	t.Run("ShutdownLeavesServices", func(t *testing.T) {
		before := b.table(t)
		b.stop(t)
		if got := b.table(t); !reflect.DeepEqual(got, before) {
			t.Fatalf("after shutdown:\n%q\nwant (left in place, as keepalived -I)\n%q", got, before)
		}
	})
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, s := range a {
		seen[s]++
	}
	for _, s := range b {
		seen[s]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}
