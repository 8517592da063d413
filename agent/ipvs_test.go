package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/fulcrum-lb/fulcrum/config"
	"github.com/fulcrum-lb/fulcrum/ipvs"
	"github.com/fulcrum-lb/fulcrum/ipvs/ipvstest"
)

// withFakeIPVS runs the agent with the real ipvs subsystem on a fake kernel
// and a state file of the test's. The agent's Close of its handle does not
// close the fake, which outlives the agent as a kernel does.
func withFakeIPVS(k *ipvstest.Fake, stateFile string) func(*Options) {
	return withIPVSOptions(ipvsOptions{
		open:      func() (ipvs.Kernel, error) { return keptKernel{k}, nil },
		stateFile: stateFile,
		// Long: tests trigger resyncs themselves.
		resyncInterval: time.Hour,
	})
}

func withIPVSOptions(o ipvsOptions) func(*Options) {
	return func(opts *Options) {
		opts.subsystems = []subsystemFactory{{"ipvs", func(d subsystemDeps) subsystem { return newIPVSSubsystem(d, o) }}}
	}
}

// keptKernel is a fake kernel whose Close is a no-op.
type keptKernel struct{ *ipvstest.Fake }

func (keptKernel) Close() error { return nil }

// webVS is a NAT virtual server with two real servers, weights 3 and 1.
func webVS(extra string) string {
	return `virtual_server "web" {
  address   = "203.0.113.10:80"
  scheduler = "wrr"
` + extra + `
  real_server "app1" {
    address = "198.51.100.11:8080"
    weight  = 3
  }
  real_server "app2" {
    address = "198.51.100.12:8080"
    weight  = 1
  }
}
`
}

var (
	webKey  = ipvs.AddrKey(ipvs.TCP, netip.MustParseAddrPort("203.0.113.10:80"))
	app1    = netip.MustParseAddrPort("198.51.100.11:8080")
	app2    = netip.MustParseAddrPort("198.51.100.12:8080")
	app3    = netip.MustParseAddrPort("198.51.100.13:8080")
	sorryAP = netip.MustParseAddrPort("198.51.100.99:8080")
)

// kernelWeights returns the fake kernel's destinations of a service as
// address -> weight.
func kernelWeights(t *testing.T, k *ipvstest.Fake, key ipvs.ServiceKey) map[netip.AddrPort]int {
	t.Helper()
	_, dests, ok := k.Service(key)
	if !ok {
		return nil
	}
	out := map[netip.AddrPort]int{}
	for _, d := range dests {
		out[d.Addr] = d.Weight
	}
	return out
}

func ipvsDetail(t *testing.T, a *Agent) (SubsystemStatus, []IPVSServiceStatus) {
	t.Helper()
	for _, s := range a.Status().Subsystems {
		if s.Name == "ipvs" {
			list, _ := s.Detail["services"].([]IPVSServiceStatus)
			return s, list
		}
	}
	t.Fatal("no ipvs subsystem in status")
	return SubsystemStatus{}, nil
}

func parseForTest(t *testing.T, src string) *config.Config {
	t.Helper()
	cfg, diags := config.Parse([]byte("node \"lb1\" {}\n"+src), "test.hcl", config.Options{Supported: SupportedFeatures()})
	if diags.HasErrors() {
		var b strings.Builder
		diags.WriteText(&b, 0, false)
		t.Fatalf("config: %s", b.String())
	}
	return cfg
}

// TestIPVSTranslation: every virtual_server field reaches the ipvs
// package's desired state.
func TestIPVSTranslation(t *testing.T) {
	cfg := parseForTest(t, `
virtual_server "web" {
  address         = "203.0.113.10:80"
  protocol        = "tcp"
  scheduler       = "sh"
  scheduler_flags = ["sh-fallback", "sh-port"]
  forwarding      = "nat"
  persistence {
    timeout = "600s"
    netmask = "255.255.255.0"
  }
  quorum {
    min_up     = 2
    hysteresis = 1
  }
  sorry_server = "198.51.100.99"
  on_failure   = "remove"
  slow_start   = "10s"
  remove_on_shutdown = true
  real_server "app1" {
    address         = "198.51.100.11:8080"
    weight          = 10
    upper_threshold = 1000
    lower_threshold = 800
  }
  real_server "app2" {
    address = "198.51.100.12:8080"
    weight  = 0
  }
  real_server "app3" {
    address = "198.51.100.13"
  }
}
virtual_server "dns" {
  address    = "[2001:db8::53]:53"
  protocol   = "udp"
  scheduler  = "mh"
  scheduler_flags = ["mh-port"]
  forwarding = "dr"
  real_server "ns1" {
    address = "[2001:db8::101]:53"
  }
  real_server "ns2" {
    address    = "[2001:db8::102]:53"
    forwarding = "tunnel"
  }
}
virtual_server "mail" {
  fwmark = 42
  family = "ipv6"
  persistence {
    timeout = "60s"
    netmask = 64
  }
  sorry_server = "2001:db8::99"
  real_server "mx1" {
    address = "2001:db8::25"
  }
}
`)
	got, names, err := ipvsDesired(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dnsKey := ipvs.AddrKey(ipvs.UDP, netip.MustParseAddrPort("[2001:db8::53]:53"))
	mailKey := ipvs.MarkKey(42, ipvs.IPv6)
	want := ipvs.Desired{Services: []ipvs.Service{
		{
			Key: webKey, Scheduler: ipvs.SourceHashing, Flags: ipvs.SHFallback | ipvs.SHPort,
			Persistence: ipvs.Persistence{Timeout: 600 * time.Second, Prefix: 24},
			Destinations: []ipvs.Destination{
				{Addr: app1, Weight: 10, Forwarding: ipvs.Masq, UpperThreshold: 1000, LowerThreshold: 800},
				{Addr: netip.MustParseAddrPort("198.51.100.12:8080"), Weight: 0, Forwarding: ipvs.Masq},
				{Addr: netip.MustParseAddrPort("198.51.100.13:80"), Weight: 1, Forwarding: ipvs.Masq},
			},
			OnFailure: ipvs.Remove,
			Quorum: ipvs.Quorum{MinUp: 2, Hysteresis: 1,
				Sorry: &ipvs.Destination{Addr: netip.MustParseAddrPort("198.51.100.99:80"), Weight: 1, Forwarding: ipvs.Masq}},
			SlowStart: 10 * time.Second,
		},
		{
			Key: dnsKey, Scheduler: ipvs.MaglevHashing, Flags: ipvs.MHPort,
			Destinations: []ipvs.Destination{
				{Addr: netip.MustParseAddrPort("[2001:db8::101]:53"), Weight: 1, Forwarding: ipvs.Route},
				{Addr: netip.MustParseAddrPort("[2001:db8::102]:53"), Weight: 1, Forwarding: ipvs.Tunnel},
			},
		},
		{
			Key: mailKey, Scheduler: ipvs.WeightedLeastConnection,
			Persistence: ipvs.Persistence{Timeout: 60 * time.Second, Prefix: 64},
			Destinations: []ipvs.Destination{
				{Addr: netip.MustParseAddrPort("[2001:db8::25]:0"), Weight: 1, Forwarding: ipvs.Masq},
			},
			// A sorry server without a quorum block: used when no real server is up.
			Quorum: ipvs.Quorum{MinUp: 1, Sorry: &ipvs.Destination{Addr: netip.MustParseAddrPort("[2001:db8::99]:0"), Weight: 1, Forwarding: ipvs.Masq}},
		},
	}}
	if !reflect.DeepEqual(got, want) {
		gj, _ := json.MarshalIndent(got, "", " ")
		wj, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("desired state\n got %s\nwant %s", gj, wj)
	}
	if err := ipvs.Validate(got); err != nil {
		t.Fatalf("the translation does not validate: %v", err)
	}
	if v := names.byName["web"]; v == nil || v.key != webKey || !v.removeOnShutdown || v.rsName(app1) != "app1" ||
		v.rsName(netip.MustParseAddrPort("198.51.100.99:80")) != "sorry_server" {
		t.Fatalf("names %+v", v)
	}
	if v := names.byKey[mailKey]; v == nil || v.name != "mail" || v.removeOnShutdown {
		t.Fatalf("names by key %+v", v)
	}
}

// TestIPVSApplyAndReload: the start programs the kernel; a reload sends
// only the differences; an invalid desired state is refused before any
// kernel operation; a removed virtual_server is deleted.
func TestIPVSApplyAndReload(t *testing.T) {
	k := ipvstest.NewFake()
	state := filepath.Join(t.TempDir(), "ipvs.json")
	ta := startAgent(t, testConfig{extra: webVS("")}, withFakeIPVS(k, state))
	if got := kernelWeights(t, k, webKey); !reflect.DeepEqual(got, map[netip.AddrPort]int{app1: 3, app2: 1}) {
		t.Fatalf("kernel after start %v", got)
	}
	svc, _, _ := k.Service(webKey)
	if svc.Scheduler != "wrr" {
		t.Fatalf("scheduler %q", svc.Scheduler)
	}
	st, services := ipvsDetail(t, ta.Agent)
	if st.Configured != 1 || st.State != "running: 1 service, 2 real servers in the kernel" {
		t.Fatalf("status %+v", st)
	}
	if len(services) != 1 || services[0].Name != "web" || services[0].Service != "tcp/203.0.113.10:80" || !services[0].InSync ||
		services[0].Destinations[0].Name != "app1" || services[0].Destinations[0].KernelWeight != 3 || !services[0].Destinations[0].Healthy {
		t.Fatalf("services %+v", services)
	}
	if b, err := os.ReadFile(state); err != nil || !strings.Contains(string(b), "tcp/203.0.113.10:80") {
		t.Fatalf("state file %s %v", b, err)
	}

	// One weight: one kernel operation.
	k.ResetCalls()
	ta.rewrite(t, testConfig{extra: strings.Replace(webVS(""), "weight  = 1", "weight  = 5", 1)})
	if res := ta.Reload(context.Background()); !res.OK {
		t.Fatalf("reload %+v", res)
	}
	if calls := k.Calls(); len(calls) != 1 || calls[0].Op != ipvs.OpUpdateDestination || calls[0].Destination != app2 {
		t.Fatalf("a weight change cost %v", calls)
	}
	// Unchanged: nothing.
	k.ResetCalls()
	if res := ta.Reload(context.Background()); !res.OK || k.Count() != 0 {
		t.Fatalf("same config: %+v, %v", res, k.Calls())
	}
	// Scheduler change: an update in place, not a re-creation.
	k.ResetCalls()
	ta.rewrite(t, testConfig{extra: strings.Replace(webVS(""), `"wrr"`, `"rr"`, 1)})
	if res := ta.Reload(context.Background()); !res.OK || k.Count(ipvs.OpUpdateService) != 1 || k.Count(ipvs.OpNewService, ipvs.OpDelService) != 0 {
		t.Fatalf("scheduler change: %+v %v", res, k.Calls())
	}

	// The config decoder catches most mistakes; the ipvs package's
	// validation catches the rest before any kernel operation (here
	// through Apply directly, with a weight the config would refuse).
	cfg := parseForTest(t, webVS(""))
	cfg.VirtualServers[0].RealServers[0].Weight = 70000
	k.ResetCalls()
	var s *ipvsSubsystem
	for _, sub := range ta.subsystems {
		s, _ = sub.(*ipvsSubsystem)
	}
	if err := s.Apply(context.Background(), cfg); !errors.Is(err, ipvs.ErrInvalid) || !strings.Contains(err.Error(), `virtual_server "web"`) {
		t.Fatalf("invalid apply: %v", err)
	}
	if k.Count() != 0 {
		t.Fatalf("an invalid apply touched the kernel: %v", k.Calls())
	}

	// What the build lacks (dynamic_weight) is refused at reload, with its position.
	ta.rewrite(t, testConfig{extra: webVS("  health_check \"exec\" {\n    command = [\"/bin/true\"]\n    dynamic_weight = true\n  }\n")})
	res := ta.Reload(context.Background())
	if res.OK || !strings.Contains(res.Error, "dynamic_weight is not supported yet") || len(res.Diagnostics) != 1 || res.Diagnostics[0].Line == 0 {
		t.Fatalf("reload with a health check %+v", res)
	}

	// Removed from the file: deleted from the kernel.
	ta.rewrite(t, testConfig{})
	if res := ta.Reload(context.Background()); !res.OK {
		t.Fatalf("reload %+v", res)
	}
	if _, _, ok := k.Service(webKey); ok {
		t.Fatal("the removed virtual server is still in the kernel")
	}
	if st, _ := ipvsDetail(t, ta.Agent); st.State != StateNoneConfigured || st.Configured != 0 {
		t.Fatalf("status %+v", st)
	}
}

// TestIPVSUnavailable: on a kernel without IPVS the agent starts, says so
// in status, logs and events, shows nothing as programmed, refuses drains
// with 503, and the rest of the agent goes on (reloads work).
func TestIPVSUnavailable(t *testing.T) {
	noIPVS := fmt.Errorf("%w: the kernel has no ip_vs (modprobe ip_vs?): /proc/net/ip_vs does not exist", ipvs.ErrUnavailable)
	var opens atomic.Int32
	opt := withIPVSOptions(ipvsOptions{
		open:      func() (ipvs.Kernel, error) { opens.Add(1); return nil, noIPVS },
		stateFile: filepath.Join(t.TempDir(), "state.json"),
	})
	ta := startAgent(t, testConfig{extra: webVS("")}, opt)
	st, services := ipvsDetail(t, ta.Agent)
	if st.Configured != 1 || !strings.HasPrefix(st.State, "IPVS not available: the kernel has no ip_vs") || services != nil ||
		st.Detail["available"] != false {
		t.Fatalf("status %+v", st)
	}
	if !strings.Contains(ta.stderr.String(), "level=WARN") || !strings.Contains(ta.stderr.String(), "IPVS not available") {
		t.Fatalf("no warning logged:\n%s", ta.stderr)
	}
	if v := gatherValue(t, ta.Agent, "fulcrum_ipvs_available", nil); v != 0 {
		t.Fatalf("fulcrum_ipvs_available = %v", v)
	}

	sub := ta.Events().Subscribe(0)
	defer sub.Close()
	if res := ta.Reload(context.Background()); !res.OK {
		t.Fatalf("reload %+v", res)
	}
	ev := nextEvent(t, sub, EventIPVSUnavailable)
	if ev.Subsystem != "ipvs" || !strings.Contains(ev.Attrs["error"].(string), "IPVS not available") || ev.Attrs["configured"] != 1 || opens.Load() != 2 {
		t.Fatalf("event %+v (opens %d)", ev, opens.Load())
	}

	_, err := ta.client().IPVSDrain(context.Background(), IPVSOverrideRequest{VirtualServer: "web", RealServer: "app1"})
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusServiceUnavailable || !strings.Contains(ae.Message, "IPVS not available") {
		t.Fatalf("drain without IPVS: %v", err)
	}
	if _, err := ta.client().IPVSResync(context.Background()); !errors.As(err, &ae) || ae.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("resync without IPVS: %v", err)
	}
	// An invalid virtual server is still refused: validation does not need the kernel.
	ta.rewrite(t, testConfig{extra: webVS("  health_check \"exec\" {\n    command = [\"/bin/true\"]\n    dynamic_weight = true\n  }\n")})
	if res := ta.Reload(context.Background()); res.OK {
		t.Fatal("reload with a dynamic_weight check accepted")
	}
	// Without virtual servers there is nothing to report.
	ta.rewrite(t, testConfig{})
	if res := ta.Reload(context.Background()); !res.OK {
		t.Fatalf("reload %+v", res)
	}
	if st, _ := ipvsDetail(t, ta.Agent); st.State != StateNoneConfigured {
		t.Fatalf("status %+v", st)
	}
}

// TestIPVSDrainEnable: drain and enable through the control API; the drain
// keeps the destination at weight 0, survives a reload and a restart (state
// file), and shows in status, events and metrics.
func TestIPVSDrainEnable(t *testing.T) {
	k := ipvstest.NewFake()
	state := filepath.Join(t.TempDir(), "ipvs.json")
	ta := startAgent(t, testConfig{extra: webVS("")}, withFakeIPVS(k, state))
	sub := ta.Events().Subscribe(0)
	defer sub.Close()
	c := ta.client()
	ctx := context.Background()

	res, err := c.IPVSDrain(ctx, IPVSOverrideRequest{VirtualServer: "web", RealServer: "app1"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK || !res.Drained || !res.Changed || res.Weight != 3 || res.EffectiveWeight != 0 || !res.InKernel || res.KernelWeight != 0 ||
		res.Service != "tcp/203.0.113.10:80" || res.Destination != "198.51.100.11:8080" || res.RealServer != "app1" {
		t.Fatalf("drain %+v", res)
	}
	if got := kernelWeights(t, k, webKey); !reflect.DeepEqual(got, map[netip.AddrPort]int{app1: 0, app2: 1}) {
		t.Fatalf("kernel after drain %v (drained destinations stay, at weight 0)", got)
	}
	ev := nextEvent(t, sub, EventIPVSDestinationChanged)
	if ev.Attrs["virtual_server"] != "web" || ev.Attrs["real_server"] != "app1" || ev.Attrs["from_weight"] != 3 ||
		ev.Attrs["weight"] != 0 || ev.Attrs["drained"] != true || ev.Attrs["reason"] != "drain" {
		t.Fatalf("event %+v", ev)
	}
	st, services := ipvsDetail(t, ta.Agent)
	if !strings.HasSuffix(st.State, "; 1 drained") || !services[0].Destinations[0].Drained || services[0].Destinations[0].EffectiveWeight != 0 {
		t.Fatalf("status %+v", st)
	}
	if v := gatherValue(t, ta.Agent, "fulcrum_ipvs_destination_drained", map[string]string{"virtual_server": "web", "real_server": "app1"}); v != 1 {
		t.Fatalf("drained metric %v", v)
	}
	// Again: no change, nothing sent to the kernel (the answer reads the service back). By
	// address works too.
	k.ResetCalls()
	res, err = c.IPVSDrain(ctx, IPVSOverrideRequest{VirtualServer: "tcp/203.0.113.10:80", RealServer: "198.51.100.11:8080"})
	if err != nil || res.Changed || !res.Drained || k.Mutations() != 0 || k.Count(ipvs.OpGetService, ipvs.OpGetDestinations) != 2 {
		t.Fatalf("second drain %+v %v %v", res, err, k.Calls())
	}

	// A reload keeps it.
	ta.rewrite(t, testConfig{extra: strings.Replace(webVS(""), "weight  = 1", "weight  = 2", 1)})
	if r := ta.Reload(ctx); !r.OK {
		t.Fatalf("reload %+v", r)
	}
	if got := kernelWeights(t, k, webKey); got[app1] != 0 || got[app2] != 2 {
		t.Fatalf("kernel after reload %v", got)
	}

	// A restart keeps it, and adopts the service without re-creating it.
	if err := ta.stop(t); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := k.Service(webKey); !ok {
		t.Fatal("the service was removed on shutdown (default: left in place)")
	}
	k.ResetCalls()
	ta2 := startAgent(t, testConfig{extra: strings.Replace(webVS(""), "weight  = 1", "weight  = 2", 1)}, withFakeIPVS(k, state))
	if k.Mutations() != 0 || k.Count(ipvs.OpGetServices) != 1 {
		t.Fatalf("the restart changed the kernel (or did not read it): %v", k.Calls())
	}
	if _, services := ipvsDetail(t, ta2.Agent); !services[0].Destinations[0].Drained {
		t.Fatalf("drain lost across the restart: %+v", services[0].Destinations[0])
	}

	res, err = ta2.client().IPVSEnable(ctx, IPVSOverrideRequest{VirtualServer: "web", RealServer: "app1"})
	if err != nil || !res.OK || res.Drained || !res.Changed || res.EffectiveWeight != 3 || res.KernelWeight != 3 {
		t.Fatalf("enable %+v %v", res, err)
	}
	if got := kernelWeights(t, k, webKey); got[app1] != 3 {
		t.Fatalf("kernel after enable %v", got)
	}
	if b, _ := os.ReadFile(state); strings.Contains(string(b), "drained") {
		t.Fatalf("state file still lists the drain:\n%s", b)
	}

	// Errors.
	var ae *APIError
	for _, c := range []struct {
		req  IPVSOverrideRequest
		code int
		want string
	}{
		{IPVSOverrideRequest{VirtualServer: "nope", RealServer: "app1"}, http.StatusNotFound, `unknown virtual_server "nope" (configured: web)`},
		{IPVSOverrideRequest{VirtualServer: "web", RealServer: "nope"}, http.StatusNotFound, `unknown real_server "nope" in virtual_server "web" (configured: app1, app2)`},
		{IPVSOverrideRequest{VirtualServer: "web"}, http.StatusBadRequest, "name a virtual_server and a real_server"},
	} {
		_, err := ta2.client().IPVSDrain(ctx, c.req)
		if !errors.As(err, &ae) || ae.StatusCode != c.code || !strings.Contains(ae.Message, c.want) {
			t.Errorf("%+v: %v, want %d %q", c.req, err, c.code, c.want)
		}
	}
}

// TestIPVSDrainWithoutVirtualServers: 409, as failover without VRRP.
func TestIPVSDrainWithoutVirtualServers(t *testing.T) {
	k := ipvstest.NewFake()
	ta := startAgent(t, testConfig{}, withFakeIPVS(k, filepath.Join(t.TempDir(), "s.json")))
	_, err := ta.client().IPVSEnable(context.Background(), IPVSOverrideRequest{VirtualServer: "web", RealServer: "app1"})
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusConflict || !strings.Contains(ae.Message, "no virtual_server is configured") {
		t.Fatalf("drain: %v", err)
	}
	if k.Count() != 0 {
		t.Fatalf("IPVS opened without anything to do: %v", k.Calls())
	}
}

// TestIPVSResyncCorrectsDrift: an ipvsadm edit behind the agent's back is
// corrected by a resync (here the control API's), reported as an event.
func TestIPVSResyncCorrectsDrift(t *testing.T) {
	k := ipvstest.NewFake()
	ta := startAgent(t, testConfig{extra: webVS("")}, withFakeIPVS(k, filepath.Join(t.TempDir(), "s.json")))
	sub := ta.Events().Subscribe(0)
	defer sub.Close()
	k.SetWeight(webKey, app2, 9)
	k.Seed(ipvs.KernelService{Key: ipvs.AddrKey(ipvs.TCP, netip.MustParseAddrPort("203.0.113.99:25")), Scheduler: "rr"})

	res, err := ta.client().IPVSResync(context.Background())
	if err != nil || !res.OK || res.Corrections != 1 || res.Services != 1 || res.Unowned != 1 || res.Operations < 3 {
		t.Fatalf("resync %+v %v", res, err)
	}
	if got := kernelWeights(t, k, webKey); got[app2] != 1 {
		t.Fatalf("drift not corrected: %v", got)
	}
	if k.Len() != 2 {
		t.Fatal("a service that is not ours was touched")
	}
	ev := nextEvent(t, sub, EventIPVSDriftCorrected)
	if ev.Attrs["corrections"] != uint64(1) || ev.Attrs["reason"] != "requested" {
		t.Fatalf("event %+v", ev)
	}
	if v := gatherValue(t, ta.Agent, "fulcrum_ipvs_resyncs_total", nil); v != 2 {
		t.Fatalf("resyncs %v (the first apply's dump, then this one)", v)
	}
}

// TestIPVSPeriodicResync: Run resyncs on its own at the interval.
func TestIPVSPeriodicResync(t *testing.T) {
	k := ipvstest.NewFake()
	opt := withIPVSOptions(ipvsOptions{
		open:           func() (ipvs.Kernel, error) { return k, nil },
		stateFile:      filepath.Join(t.TempDir(), "s.json"),
		resyncInterval: 20 * time.Millisecond,
	})
	ta := startAgent(t, testConfig{extra: webVS("")}, opt)
	k.Remove(webKey)
	eventually(t, "the periodic resync to restore the service", func() bool {
		return reflect.DeepEqual(kernelWeights(t, k, webKey), map[netip.AddrPort]int{app1: 3, app2: 1})
	})
	_ = ta
}

// TestIPVSQuorumAndSorry: draining below the quorum brings the sorry server
// in, with events.
func TestIPVSQuorumAndSorry(t *testing.T) {
	k := ipvstest.NewFake()
	ta := startAgent(t, testConfig{extra: webVS("  quorum {\n    min_up = 2\n  }\n  sorry_server = \"198.51.100.99:8080\"\n")},
		withFakeIPVS(k, filepath.Join(t.TempDir(), "s.json")))
	sub := ta.Events().Subscribe(0)
	defer sub.Close()
	if _, err := ta.client().IPVSDrain(context.Background(), IPVSOverrideRequest{VirtualServer: "web", RealServer: "app2"}); err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, sub, EventIPVSQuorumLost)
	if ev.Attrs["virtual_server"] != "web" || ev.Attrs["service"] != "tcp/203.0.113.10:80" {
		t.Fatalf("event %+v", ev)
	}
	if got := kernelWeights(t, k, webKey); got[sorryAP] != 1 || got[app1] != 0 || got[app2] != 0 {
		t.Fatalf("kernel with the quorum lost %v", got)
	}
	st, services := ipvsDetail(t, ta.Agent)
	if q := services[0].Quorum; q == nil || !q.Lost || q.Up != 1 || !strings.Contains(st.State, "quorum lost on 1") {
		t.Fatalf("status %+v %+v", st, services[0].Quorum)
	}
	if v := gatherValue(t, ta.Agent, "fulcrum_ipvs_quorum_up", map[string]string{"virtual_server": "web"}); v != 0 {
		t.Fatalf("quorum metric %v", v)
	}
	if _, err := ta.client().IPVSEnable(context.Background(), IPVSOverrideRequest{VirtualServer: "web", RealServer: "app2"}); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, sub, EventIPVSQuorumRestored)
	if got := kernelWeights(t, k, webKey); !reflect.DeepEqual(got, map[netip.AddrPort]int{app1: 3, app2: 1}) {
		t.Fatalf("kernel with the quorum back %v", got)
	}
}

// TestIPVSShutdown: services stay by default; remove_on_shutdown deletes
// that service only.
func TestIPVSShutdown(t *testing.T) {
	k := ipvstest.NewFake()
	other := `virtual_server "tmp" {
  address = "203.0.113.11:80"
  remove_on_shutdown = true
  real_server "a" {
    address = "198.51.100.13:8080"
  }
}
`
	ta := startAgent(t, testConfig{extra: webVS("") + other}, withFakeIPVS(k, filepath.Join(t.TempDir(), "s.json")))
	tmpKey := ipvs.AddrKey(ipvs.TCP, netip.MustParseAddrPort("203.0.113.11:80"))
	if got := kernelWeights(t, k, tmpKey); got[app3] != 1 {
		t.Fatalf("kernel %v", got)
	}
	if err := ta.stop(t); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := k.Service(webKey); !ok {
		t.Error("web was removed on shutdown")
	}
	if _, _, ok := k.Service(tmpKey); ok {
		t.Error("tmp (remove_on_shutdown) is still in the kernel")
	}
	if !strings.Contains(ta.stderr.String(), "removed on shutdown") {
		t.Errorf("no log of the removal:\n%s", ta.stderr)
	}
}

// TestIPVSKernelErrorsDoNotStopTheAgent: a kernel refusal (here a scheduler
// the kernel lacks) is reported, not fatal, and retried.
func TestIPVSKernelErrorsDoNotStopTheAgent(t *testing.T) {
	k := ipvstest.NewFake()
	k.SetSchedulers("rr", "wlc")
	ta := startAgent(t, testConfig{extra: webVS("")}, withFakeIPVS(k, filepath.Join(t.TempDir(), "s.json")))
	st, services := ipvsDetail(t, ta.Agent)
	if !strings.HasPrefix(st.State, "degraded: 1 of 1 service differ from the kernel (last error: ipvs new_service tcp/203.0.113.10:80") ||
		services[0].InKernel {
		t.Fatalf("status %+v", st)
	}
	if v := gatherValue(t, ta.Agent, "fulcrum_ipvs_errors_total", nil); v != 1 {
		t.Fatalf("errors metric %v", v)
	}
	if v := gatherValue(t, ta.Agent, "fulcrum_ipvs_ops_total", map[string]string{"kind": "new_service"}); v != 1 {
		t.Fatalf("ops metric %v", v)
	}
	sub := ta.Events().Subscribe(0)
	defer sub.Close()
	res, err := ta.client().IPVSResync(context.Background())
	if err != nil || res.OK {
		t.Fatalf("resync %+v %v", res, err)
	}
	ev := nextEvent(t, sub, EventIPVSOpFailed)
	if ev.Attrs["virtual_server"] != "web" || !strings.Contains(ev.Attrs["error"].(string), "scheduler") {
		t.Fatalf("event %+v", ev)
	}
	k.SetSchedulers("rr", "wlc", "wrr")
	if res, err := ta.client().IPVSResync(context.Background()); err != nil || !res.OK || res.Corrections != 3 {
		t.Fatalf("resync %+v %v", res, err)
	}
	if st, _ := ipvsDetail(t, ta.Agent); !strings.HasPrefix(st.State, "running") {
		t.Fatalf("status %+v", st)
	}
}

// TestBuildChecks: dynamic_weight is refused with a diagnostic at the
// block, also by Validate (fulcrum validate); health_check and
// track_service are accepted.
func TestBuildChecks(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.hcl")
	writeFile(t, path, "node \"lb1\" {}\n"+webVS("  health_check \"exec\" {\n    command = [\"/bin/true\"]\n    dynamic_weight = true\n  }\n")+
		vrrpBlock("VI_1", 51, 100, "192.0.2.100/24", "  track_service \"web\" {\n    weight = -10\n  }\n"))
	diags := Validate(path)
	if !diags.HasErrors() {
		t.Fatal("valid")
	}
	list := DiagnosticList(diags)
	if len(list) != 1 || list[0].Summary != "dynamic_weight is not supported yet" || list[0].Line != 5 || list[0].Column != 3 ||
		!strings.Contains(list[0].Snippet, `health_check "exec"`) {
		t.Fatalf("diagnostics %+v", list)
	}
	text := diagnosticsText(diags)
	if !strings.Contains(text, "Error: dynamic_weight is not supported yet") || !strings.Contains(text, "node.hcl:5:3") {
		t.Fatalf("text:\n%s", text)
	}
	// And the agent refuses to start with it.
	if _, err := New(Options{ConfigPath: path, Stderr: &syncBuffer{}, getenv: func(string) string { return "" }, JournalSocket: filepath.Join(dir, "nj")}); err == nil ||
		!strings.Contains(err.Error(), "dynamic_weight is not supported yet") {
		t.Fatalf("New: %v", err)
	}
}

// gatherValue returns the value of the series name whose labels include
// all of labels.
func gatherValue(t *testing.T, a *Agent, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				if !hasLabel(m, k, v) {
					continue next
				}
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// TestIPVSStatusWithoutKernelReads: Status never calls the kernel.
func TestIPVSStatusWithoutKernelReads(t *testing.T) {
	k := ipvstest.NewFake()
	s := newIPVSSubsystem(subsystemDeps{Log: slog.New(slog.DiscardHandler), Events: NewBus(nil, nil)},
		ipvsOptions{open: func() (ipvs.Kernel, error) { return k, nil }, stateFile: filepath.Join(t.TempDir(), "s.json")})
	if err := s.Apply(context.Background(), parseForTest(t, webVS(""))); err != nil {
		t.Fatal(err)
	}
	k.ResetCalls()
	for range 3 {
		s.Status()
	}
	if k.Count() != 0 {
		t.Fatalf("status read the kernel: %v", k.Calls())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Run(ctx)
	if _, err := s.override(IPVSOverrideRequest{VirtualServer: "web", RealServer: "app1"}, true); !errors.Is(err, ErrIPVSUnavailable) {
		t.Fatalf("drain after shutdown: %v", err)
	}
}
