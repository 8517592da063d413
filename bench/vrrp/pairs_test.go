package vrrpbench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lab/keepalived"
	"github.com/fulcrum-lb/fulcrum/lab/netns"
)

// pair is a VRRP implementation running on lb1 (index 0) and lb2 (index 1) of a bed.
type pair interface {
	name() string
	// start starts the daemon on lb i (from the test's goroutine) and returns once it runs.
	start(t *testing.T, i int)
	// running reports whether lb i's daemon process is alive.
	running(i int) bool
	// crash sends SIGKILL to the process group of lb i's daemon, without waiting.
	crash(i int) error
	// waitExit waits until lb i's daemon has exited.
	waitExit(ctx context.Context, i int) error
	// drill makes the master lb i hand over (fulcrum failover -wait; keepalived SIGTERM) and
	// returns when that command returns.
	drill(ctx context.Context, i int) drillResult
	// afterDrill brings lb i back after the hold (keepalived restarts; fulcrum needs nothing).
	afterDrill(t *testing.T, i int)
	// awaitState waits until lb i's instance is in state ("master" or "backup").
	awaitState(ctx context.Context, i int, state string) error
	// takeover returns the new master's own VIP add -> first GARP after a transition to
	// master later than since (ok false when the implementation does not report it).
	takeover(ctx context.Context, i int, since time.Time) (time.Duration, bool, error)
}

// drillResult is what the drill command reported.
type drillResult struct {
	output    string
	err       error
	advertGap time.Duration // as fulcrum failover -wait printed it; 0 when absent
}

// ---- fulcrum ---------------------------------------------------------------------------------

type fulcrumPair struct {
	bin    string
	hold   time.Duration
	hosts  [2]*netns.Host
	config [2]string
	socket [2]string
	procs  [2]*netns.Proc
	// clients are HTTP clients on the control sockets, made on first use.
	clients [2]*http.Client
}

// fulcrumConfig is one node: VRRPv3, 100 ms, the VIP on eth0, preemption on (the default).
func fulcrumConfig(node, socket string, priority int) string {
	return fmt.Sprintf(`node %q {}
control {
  socket = %q
}
log {
  level = "info"
}
vrrp_instance %q {
  interface         = "eth0"
  virtual_router_id = %d
  version           = 3
  priority          = %d
  advert_interval   = "%s"
  virtual_ips       = ["%s"]
}
`, node, socket, instance, vrid, priority, advertInterval, vipPrefix)
}

func newFulcrumPair(t *testing.T, bin string, hold time.Duration, hosts [2]*netns.Host) *fulcrumPair {
	p := &fulcrumPair{bin: bin, hold: hold, hosts: hosts}
	for i, h := range hosts {
		dir := t.TempDir()
		p.config[i] = filepath.Join(dir, "node.hcl")
		p.socket[i] = filepath.Join(dir, "run", "fulcrum.sock")
		if err := os.WriteFile(p.config[i], []byte(fulcrumConfig(h.Name, p.socket[i], priorities[i])), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func (p *fulcrumPair) name() string { return "fulcrum" }

func (p *fulcrumPair) start(t *testing.T, i int) {
	t.Helper()
	h := p.hosts[i]
	cmd := h.Command(context.Background(), p.bin, "agent", "-config", p.config[i], "-log-target", "stderr")
	p.procs[i] = netns.StartCmd(t, h.Name+": fulcrum agent", cmd)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", p.socket[i]); err == nil {
			c.Close()
			return
		}
		select {
		case <-p.procs[i].Done():
			t.Fatalf("%s: fulcrum agent exited before serving: %v\n%s", h.Name, p.procs[i].Err(), p.procs[i].Output())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: fulcrum agent never opened %s\n%s", h.Name, p.socket[i], p.procs[i].Output())
		}
	}
}

func (p *fulcrumPair) running(i int) bool {
	if p.procs[i] == nil {
		return false
	}
	select {
	case <-p.procs[i].Done():
		return false
	default:
		return true
	}
}

func (p *fulcrumPair) crash(i int) error {
	return syscall.Kill(-p.procs[i].Pid(), syscall.SIGKILL)
}

func (p *fulcrumPair) waitExit(ctx context.Context, i int) error {
	select {
	case <-p.procs[i].Done():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: fulcrum agent still running: %w", p.hosts[i].Name, ctx.Err())
	}
}

var advertGapLine = regexp.MustCompile(`advert gap (\S+):`)

func (p *fulcrumPair) drill(ctx context.Context, i int) drillResult {
	cmd := exec.CommandContext(ctx, p.bin, "failover", instance, "-wait", "-hold", p.hold.String(), "-timeout", "5s", "-socket", p.socket[i])
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	r := drillResult{output: out.String(), err: err}
	if m := advertGapLine.FindStringSubmatch(r.output); m != nil {
		r.advertGap, _ = time.ParseDuration(m[1])
	}
	return r
}

func (p *fulcrumPair) afterDrill(*testing.T, int) {}

// instanceStatus is what the benchmark reads of an instance in GET /v1/status (the control
// API's JSON, docs/architecture.md); decoded here rather than through package agent so that
// the benchmark depends only on the wire contract.
type instanceStatus struct {
	Name   string `json:"name"`
	State  string `json:"state"`
	Master *struct {
		Since         time.Time  `json:"since"`
		VIPsAdded     *time.Time `json:"vips_added"`
		FirstAnnounce *time.Time `json:"first_announce"`
	} `json:"master"`
}

// statusClient returns an HTTP client for lb i's control socket.
func (p *fulcrumPair) statusClient(i int) *http.Client {
	if p.clients[i] == nil {
		socket := p.socket[i]
		p.clients[i] = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
			DisableKeepAlives: true,
		}}
	}
	return p.clients[i]
}

// instanceStatus reads the instance from lb i's control API.
func (p *fulcrumPair) instanceStatus(ctx context.Context, i int) (instanceStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://fulcrum/v1/status", nil)
	if err != nil {
		return instanceStatus{}, err
	}
	resp, err := p.statusClient(i).Do(req)
	if err != nil {
		return instanceStatus{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return instanceStatus{}, fmt.Errorf("%s: GET /v1/status: %s", p.hosts[i].Name, resp.Status)
	}
	var st struct {
		Subsystems []struct {
			Name   string `json:"name"`
			Detail struct {
				Instances []instanceStatus `json:"instances"`
			} `json:"detail"`
		} `json:"subsystems"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return instanceStatus{}, err
	}
	for _, s := range st.Subsystems {
		for _, in := range s.Detail.Instances {
			if s.Name == "vrrp" && in.Name == instance {
				return in, nil
			}
		}
	}
	return instanceStatus{}, fmt.Errorf("%s: no instance %s in the status", p.hosts[i].Name, instance)
}

// poll calls fn every 10 ms until it reports done or ctx ends.
func poll(ctx context.Context, fn func() (bool, error)) error {
	var last error
	for {
		done, err := fn()
		if done {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), last)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (p *fulcrumPair) awaitState(ctx context.Context, i int, state string) error {
	var seen string
	err := poll(ctx, func() (bool, error) {
		in, err := p.instanceStatus(ctx, i)
		seen = in.State
		return err == nil && in.State == state, err
	})
	if err != nil {
		return fmt.Errorf("%s: fulcrum instance is %q, waited for %s: %w", p.hosts[i].Name, seen, state, err)
	}
	return nil
}

func (p *fulcrumPair) takeover(ctx context.Context, i int, since time.Time) (time.Duration, bool, error) {
	var gap time.Duration
	err := poll(ctx, func() (bool, error) {
		in, err := p.instanceStatus(ctx, i)
		if err != nil {
			return false, err
		}
		m := in.Master
		if m == nil || !m.Since.After(since) || m.VIPsAdded == nil || m.FirstAnnounce == nil {
			return false, nil
		}
		gap = m.FirstAnnounce.Sub(*m.VIPsAdded)
		return true, nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("%s: no master stint with VIP add and first GARP since %s: %w", p.hosts[i].Name, since.Format("15:04:05.000"), err)
	}
	return gap, true, nil
}

// ---- keepalived ------------------------------------------------------------------------------

type keepalivedPair struct {
	hosts [2]*netns.Host
	nodes [2]*keepalived.Node
}

// keepalivedConfig mirrors fulcrumConfig: VRRPv3, 100 ms, the VIP on eth0, preemption on,
// keepalived's defaults for everything else (GARP: 5 at once, 5 more after 5 s).
func keepalivedConfig(priority int) keepalived.Config {
	return keepalived.Config{
		Version: 3,
		Instances: []keepalived.Instance{{
			Name: instance, Interface: "eth0", VRID: vrid, Priority: priority, AdvertInt: advertInterval,
			VIPs: []keepalived.VIP{{Addr: vipPrefix, Dev: "eth0"}},
		}},
	}
}

func (p *keepalivedPair) name() string { return "keepalived" }

func (p *keepalivedPair) start(t *testing.T, i int) {
	t.Helper()
	p.nodes[i] = keepalived.Start(t, p.hosts[i], keepalivedConfig(priorities[i]))
}

func (p *keepalivedPair) running(i int) bool {
	if p.nodes[i] == nil {
		return false
	}
	select {
	case <-p.nodes[i].Proc().Done():
		return false
	default:
		return true
	}
}

func (p *keepalivedPair) crash(i int) error {
	return syscall.Kill(-p.nodes[i].Proc().Pid(), syscall.SIGKILL)
}

func (p *keepalivedPair) waitExit(ctx context.Context, i int) error {
	select {
	case <-p.nodes[i].Proc().Done():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: keepalived still running: %w", p.hosts[i].Name, ctx.Err())
	}
}

// drill is keepalived's nearest equivalent of a drill: a graceful stop (SIGTERM), in which
// the master sends a priority-0 advert and removes its VIPs.
func (p *keepalivedPair) drill(_ context.Context, i int) drillResult {
	err := p.nodes[i].Stop()
	return drillResult{output: "SIGTERM", err: err}
}

func (p *keepalivedPair) afterDrill(t *testing.T, i int) { p.start(t, i) }

func (p *keepalivedPair) awaitState(ctx context.Context, i int, state string) error {
	want := map[string]string{"master": keepalived.Master, "backup": keepalived.Backup}[state]
	_, err := p.nodes[i].AwaitState(ctx, instance, want)
	return err
}

func (p *keepalivedPair) takeover(context.Context, int, time.Time) (time.Duration, bool, error) {
	return 0, false, nil // keepalived does not report it
}
