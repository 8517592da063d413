package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/fulcrum-lb/fulcrum/config"
	"github.com/fulcrum-lb/fulcrum/vrrp"
	"github.com/fulcrum-lb/fulcrum/vrrp/vrrptest"
)

// fakeLAN is the in-memory network of the agents of one test: one wire per
// interface name, shared by every agent.
type fakeLAN struct {
	mu    sync.Mutex
	wires map[string]*vrrptest.Wire
}

func newFakeLAN() *fakeLAN { return &fakeLAN{wires: map[string]*vrrptest.Wire{}} }

func (l *fakeLAN) wire(iface string) *vrrptest.Wire {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.wires[iface]
	if w == nil {
		w = vrrptest.NewWire()
		l.wires[iface] = w
	}
	return w
}

// fakeVRRPIO is the vrrpIOFactory of one agent: its address on every wire,
// and the fakes it handed out, by instance name.
type fakeVRRPIO struct {
	lan   *fakeLAN
	addr  netip.Addr
	links *vrrptest.FakeLinks

	mu       sync.Mutex
	addrs    map[string]*vrrptest.FakeAddresses
	anns     map[string]*vrrptest.FakeAnnouncer
	trs      map[string]*vrrptest.FakeTransport
	opened   []string
	released int
	failOpen error
}

func newFakeVRRPIO(lan *fakeLAN, addr string) *fakeVRRPIO {
	return &fakeVRRPIO{
		lan: lan, addr: netip.MustParseAddr(addr), links: vrrptest.NewFakeLinks("eth0", "eth1"),
		addrs: map[string]*vrrptest.FakeAddresses{}, anns: map[string]*vrrptest.FakeAnnouncer{}, trs: map[string]*vrrptest.FakeTransport{},
	}
}

func (f *fakeVRRPIO) open(spec vrrpIOSpec) (*vrrpIO, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failOpen != nil {
		return nil, f.failOpen
	}
	tr := f.lan.wire(spec.iface).Transport(f.addr)
	a := vrrptest.NewFakeAddresses()
	ann := &vrrptest.FakeAnnouncer{}
	f.addrs[spec.instance], f.anns[spec.instance], f.trs[spec.instance] = a, ann, tr
	f.opened = append(f.opened, spec.instance)
	return &vrrpIO{
		transport: tr, source: f.addr, addrs: a, watcher: a, announcer: ann, links: f.links,
		release: func() {
			f.mu.Lock()
			f.released++
			f.mu.Unlock()
		},
	}, nil
}

func (f *fakeVRRPIO) unknownVRIDs() map[string]uint64 { return map[string]uint64{"eth0": 7} }
func (f *fakeVRRPIO) close()                          {}

func (f *fakeVRRPIO) vips(instance string) *vrrptest.FakeAddresses {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addrs[instance]
}

func (f *fakeVRRPIO) transport(instance string) *vrrptest.FakeTransport {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.trs[instance]
}

// withFakeVRRP runs the agent with the real vrrp subsystem on io.
func withFakeVRRP(io *fakeVRRPIO) func(*Options) {
	return func(o *Options) {
		o.subsystems = []subsystemFactory{{"vrrp", func(d subsystemDeps) subsystem { return newVRRPSubsystem(d, io) }}}
	}
}

// vrrpBlock renders a vrrp_instance block at 100 ms (v3).
func vrrpBlock(name string, vrid, prio int, vip string, extra string) string {
	return fmt.Sprintf("vrrp_instance %q {\n  interface = \"eth0\"\n  virtual_router_id = %d\n  priority = %d\n  advert_interval = \"100ms\"\n  virtual_ips = [%q]\n%s}\n",
		name, vrid, prio, vip, extra)
}

// vrrpStatus returns the status detail of instance name ("" if absent).
func vrrpStatus(t *testing.T, a *Agent, name string) VRRPInstanceStatus {
	t.Helper()
	for _, s := range a.Status().Subsystems {
		if s.Name != "vrrp" {
			continue
		}
		list, _ := s.Detail["instances"].([]VRRPInstanceStatus)
		for _, is := range list {
			if is.Name == name {
				return is
			}
		}
	}
	return VRRPInstanceStatus{}
}

func waitVRRPState(t *testing.T, a *Agent, name, state string) VRRPInstanceStatus {
	t.Helper()
	var st VRRPInstanceStatus
	eventually(t, name+" "+state, func() bool {
		st = vrrpStatus(t, a, name)
		return st.State == state
	})
	return st
}

// TestVRRPElectionEventsMetricsFailover: two agents elect a Master over a
// fake wire; transitions reach the event bus and metrics; a failover drill
// through the control API moves the role and reports the gap.
func TestVRRPElectionEventsMetricsFailover(t *testing.T) {
	lan := newFakeLAN()
	io1, io2 := newFakeVRRPIO(lan, "192.0.2.1"), newFakeVRRPIO(lan, "192.0.2.2")
	lb1 := startAgent(t, testConfig{node: "lb1", extra: vrrpBlock("VI_1", 51, 200, "192.0.2.100/24", "")}, withFakeVRRP(io1))
	sub := lb1.Events().Subscribe(0)
	defer sub.Close()
	lb2 := startAgent(t, testConfig{node: "lb2", extra: vrrpBlock("VI_1", 51, 100, "192.0.2.100/24", "")}, withFakeVRRP(io2))

	st := waitVRRPState(t, lb1.Agent, "VI_1", "master")
	waitVRRPState(t, lb2.Agent, "VI_1", "backup")
	eventually(t, "the VIP on lb1", func() bool { return io1.vips("VI_1").Has(netip.MustParseAddr("192.0.2.100")) })
	if io2.vips("VI_1").Has(netip.MustParseAddr("192.0.2.100")) {
		t.Fatal("the backup holds the VIP")
	}
	if st.Interface != "eth0" || st.VRID != 51 || st.Priority != 200 || st.AdvertInterval != "100ms" || st.VIPs[0] != "192.0.2.100/24 dev eth0" {
		t.Fatalf("status %+v", st)
	}
	// (initialize->backup may have been published before the subscription.)
	ev := nextEvent(t, sub, EventVRRPStateChanged)
	if ev.Attrs["to"] == "backup" {
		ev = nextEvent(t, sub, EventVRRPStateChanged)
	}
	if ev.Subsystem != "vrrp" || ev.Attrs["instance"] != "VI_1" || ev.Attrs["from"] != "backup" || ev.Attrs["to"] != "master" ||
		ev.Attrs["reason"] != "master_down" || ev.Attrs["priority"] != 200 {
		t.Fatalf("event %+v", ev)
	}
	if got := metricValue(t, lb1.Agent, "fulcrum_vrrp_state", "VI_1"); got != 2 {
		t.Fatalf("fulcrum_vrrp_state = %v, want 2 (master)", got)
	}
	if got := metricValue(t, lb2.Agent, "fulcrum_vrrp_adverts_received_total", "VI_1"); got < 1 {
		t.Fatalf("lb2 received %v adverts", got)
	}
	if got := metricValue(t, lb1.Agent, "fulcrum_vrrp_unknown_vrid_total", "eth0"); got != 7 {
		t.Fatalf("unknown VRIDs %v", got)
	}

	// The drill, through the control socket as the CLI does it.
	res, err := lb1.client().Failover(context.Background(), FailoverRequest{Instance: "VI_1", Hold: "1m", Wait: true, Timeout: "5s"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK || len(res.Results) != 1 {
		t.Fatalf("failover %+v", res)
	}
	r := res.Results[0]
	h := r.Handover
	if r.Action != vrrp.DrillForceBackup || r.FromState != "master" || r.State != "backup" || h == nil || !h.Done ||
		h.NewMaster != "192.0.2.2" || h.AdvertGapMS == nil || *h.AdvertGapMS <= 0 || *h.AdvertGapMS > 1000 {
		t.Fatalf("failover result %+v handover %+v", r, h)
	}
	waitVRRPState(t, lb2.Agent, "VI_1", "master")
	st = vrrpStatus(t, lb1.Agent, "VI_1")
	if st.HoldUntil == nil || st.LastFailover == nil || st.LastFailover.Action != "force_backup" {
		t.Fatalf("lb1 after the drill %+v", st)
	}
	if st.Counters.Priority0Out != 1 {
		t.Fatalf("priority-0 adverts %d", st.Counters.Priority0Out)
	}

	// From the new backup's side: take it back.
	res, err = lb1.client().Failover(context.Background(), FailoverRequest{Wait: true, Timeout: "5s", Hold: "1m"})
	if err != nil || !res.OK || res.Results[0].Action != vrrp.DrillTakeover {
		t.Fatalf("takeover: %+v, %v", res, err)
	}
	if h := res.Results[0].Handover; h.VIPsAdded == nil || h.FirstAnnounce == nil || h.AnnounceGapMS == nil || h.OldMaster != "192.0.2.2" {
		t.Fatalf("takeover handover %+v", h)
	}
	waitVRRPState(t, lb2.Agent, "VI_1", "backup")

	// GET /v1/status carries the detail as JSON.
	raw, err := lb1.client().StatusJSON(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"instances"`) || !strings.Contains(string(raw), `"advert_gap_ms"`) {
		t.Fatalf("status JSON lacks the vrrp detail:\n%s", raw)
	}
}

func metricValue(t *testing.T, a *Agent, name, label string) float64 {
	t.Helper()
	mfs, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelIs(m, label) {
				if g := m.GetGauge(); g != nil {
					return g.GetValue()
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s{%s}", name, label)
	return 0
}

func labelIs(m *dto.Metric, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetValue() == v {
			return true
		}
	}
	return false
}

// TestVRRPReload: a reload updates a matched instance in place (a Master
// stays Master), starts a new one, stops a removed one (priority 0, VIPs
// removed) and replaces one whose VRID changed.
func TestVRRPReload(t *testing.T) {
	lan := newFakeLAN()
	io := newFakeVRRPIO(lan, "192.0.2.1")
	ta := startAgent(t, testConfig{extra: vrrpBlock("VI_1", 51, 200, "192.0.2.100/24", "") + vrrpBlock("VI_2", 52, 200, "192.0.2.101/24", "")}, withFakeVRRP(io))
	waitVRRPState(t, ta.Agent, "VI_1", "master")
	waitVRRPState(t, ta.Agent, "VI_2", "master")
	before := vrrpStatus(t, ta.Agent, "VI_1")

	ta.rewrite(t, testConfig{extra: vrrpBlock("VI_1", 51, 150, "192.0.2.100/24", "") + vrrpBlock("VI_3", 53, 200, "192.0.2.103/24", "")})
	if res := ta.Reload(context.Background()); !res.OK {
		t.Fatalf("reload: %+v", res)
	}
	st := vrrpStatus(t, ta.Agent, "VI_1")
	if st.State != "master" || st.BasePriority != 150 || st.Counters.Transitions != before.Counters.Transitions {
		t.Fatalf("VI_1 after reload %+v (before %d transitions)", st, before.Counters.Transitions)
	}
	if vrrpStatus(t, ta.Agent, "VI_2").Name != "" {
		t.Fatal("VI_2 still listed")
	}
	if io.vips("VI_2").Has(netip.MustParseAddr("192.0.2.101")) {
		t.Fatal("VI_2's VIP left behind")
	}
	waitVRRPState(t, ta.Agent, "VI_3", "master")

	// A VRID change replaces the instance: a new transport is opened.
	old := io.transport("VI_1")
	ta.rewrite(t, testConfig{extra: vrrpBlock("VI_1", 61, 150, "192.0.2.100/24", "") + vrrpBlock("VI_3", 53, 200, "192.0.2.103/24", "")})
	if res := ta.Reload(context.Background()); !res.OK {
		t.Fatalf("reload: %+v", res)
	}
	if io.transport("VI_1") == old || !old.Closed() {
		t.Fatal("VI_1 was not replaced")
	}
	if st := waitVRRPState(t, ta.Agent, "VI_1", "master"); st.VRID != 61 {
		t.Fatalf("VRID %d", st.VRID)
	}

	// A socket that cannot be opened fails the reload and changes nothing.
	io.mu.Lock()
	io.failOpen = errors.New("no such device")
	io.mu.Unlock()
	ta.rewrite(t, testConfig{extra: vrrpBlock("VI_1", 61, 100, "192.0.2.100/24", "") + vrrpBlock("VI_4", 54, 200, "192.0.2.104/24", "")})
	if res := ta.Reload(context.Background()); res.OK || !strings.Contains(res.Error, "no such device") {
		t.Fatalf("reload with a failing socket: %+v", res)
	}
	if st := vrrpStatus(t, ta.Agent, "VI_1"); st.BasePriority != 150 || vrrpStatus(t, ta.Agent, "VI_3").Name == "" {
		t.Fatalf("a failed reload changed the instances: %+v", st)
	}
	if st := vrrpStatus(t, ta.Agent, "VI_3"); st.State != "master" || !io.vips("VI_3").Has(netip.MustParseAddr("192.0.2.103")) {
		t.Fatalf("VI_3 %+v", st)
	}
	ta.stop(t)
	if io.vips("VI_3").Has(netip.MustParseAddr("192.0.2.103")) {
		t.Fatal("VIP left behind at shutdown")
	}
}

// TestVRRPSyncGroupConfig: sync_group blocks become vrrp.Groups.
func TestVRRPSyncGroupConfig(t *testing.T) {
	io := newFakeVRRPIO(newFakeLAN(), "192.0.2.1")
	extra := vrrpBlock("VI_1", 51, 200, "192.0.2.100/24", "") +
		strings.Replace(vrrpBlock("VI_2", 52, 200, "198.51.100.100/24", ""), `"eth0"`, `"eth1"`, 1) +
		"sync_group \"G\" {\n  instances = [\"VI_1\", \"VI_2\"]\n}\n"
	ta := startAgent(t, testConfig{extra: extra}, withFakeVRRP(io))
	waitVRRPState(t, ta.Agent, "VI_1", "master")
	if st := vrrpStatus(t, ta.Agent, "VI_2"); st.SyncGroup != "G" {
		t.Fatalf("VI_2 group %q", st.SyncGroup)
	}
	// eth1 fails: VI_2 faults (its interface is tracked) and takes VI_1 along.
	io.links.Set("eth1", false)
	waitVRRPState(t, ta.Agent, "VI_1", "fault")
	io.links.Set("eth1", true)
	waitVRRPState(t, ta.Agent, "VI_1", "master")
}

// TestVRRPFailoverErrors: the control API's answers to bad requests.
func TestVRRPFailoverErrors(t *testing.T) {
	io := newFakeVRRPIO(newFakeLAN(), "192.0.2.1")
	ta := startAgent(t, testConfig{extra: vrrpBlock("VI_1", 51, 200, "192.0.2.100/24", "") + vrrpBlock("VI_2", 52, 200, "192.0.2.101/24", "")}, withFakeVRRP(io))
	c := ta.client()
	for _, c2 := range []struct {
		req  FailoverRequest
		code int
	}{
		{FailoverRequest{}, http.StatusBadRequest},
		{FailoverRequest{Instance: "nope"}, http.StatusNotFound},
		{FailoverRequest{Instance: "VI_1", Hold: "soon"}, http.StatusBadRequest},
		{FailoverRequest{Instance: "VI_1", All: true}, http.StatusBadRequest},
	} {
		_, err := c.Failover(context.Background(), c2.req)
		var ae *APIError
		if !errors.As(err, &ae) || ae.StatusCode != c2.code {
			t.Errorf("%+v: %v, want HTTP %d", c2.req, err, c2.code)
		}
	}
	waitVRRPState(t, ta.Agent, "VI_1", "master")
	waitVRRPState(t, ta.Agent, "VI_2", "master")
	// Waiting, with nobody to take over, times out and says so.
	res, err := c.Failover(context.Background(), FailoverRequest{Instance: "VI_1", Hold: "1m", Wait: true, Timeout: "300ms"})
	if err != nil || res.OK || !strings.Contains(res.Results[0].Error, "deadline") || res.Results[0].State != "backup" {
		t.Fatalf("lonely drill: %+v %v", res, err)
	}
	// All of them, not waiting: VI_1 (now Backup) takes over, VI_2 resigns.
	res, err = c.Failover(context.Background(), FailoverRequest{All: true, Hold: "1m"})
	if err != nil || !res.OK || len(res.Results) != 2 || res.Results[0].Action != "takeover" || res.Results[1].Action != "force_backup" {
		t.Fatalf("all: %+v %v", res, err)
	}
}

// TestVRRPApplyRefusesTrackService: no health subsystem serves it yet.
func TestVRRPApplyRefusesTrackService(t *testing.T) {
	s := newVRRPSubsystem(subsystemDeps{Log: slog.New(slog.DiscardHandler), Events: NewBus(nil, nil)}, newFakeVRRPIO(newFakeLAN(), "192.0.2.1"))
	defer func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		s.Run(ctx)
	}()
	in := config.VRRPInstance{
		Name: "VI_1", Interface: "eth0", VirtualRouterID: 1, Priority: 100, AdvertInterval: time.Second, Version: config.VRRPv3,
		Preempt: true, Family: config.IPv4, GARP: config.GARP{Repeat: 1},
		VirtualIPs:    []config.VirtualIP{{Prefix: netip.MustParsePrefix("192.0.2.100/32"), Device: "eth0"}},
		TrackServices: []config.TrackedService{{Name: "web", Kind: config.ServiceVirtualServer}},
	}
	err := s.Apply(context.Background(), &config.Config{VRRPInstances: []config.VRRPInstance{in}})
	if err == nil || !strings.Contains(err.Error(), "track_service") {
		t.Fatalf("Apply = %v", err)
	}
	if st := s.Status(); st.Configured != 0 {
		t.Fatalf("status after a refused apply %+v", st)
	}
	b, _ := json.Marshal(s.Status())
	if !strings.Contains(string(b), StateNoneConfigured) {
		t.Fatalf("status %s", b)
	}
}
