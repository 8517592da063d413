package agent

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/health"
	"github.com/fulcrum-lb/fulcrum/health/healthtest"
	"github.com/fulcrum-lb/fulcrum/ipvs"
	"github.com/fulcrum-lb/fulcrum/ipvs/ipvstest"
)

// healthVS is a virtual_server with one health check of the given body.
func healthVS(check string) string {
	return webVS("  quorum {\n    min_up = 2\n  }\n  health_check \"http\" {\n    path = \"/healthz\"\n    interval = \"20ms\"\n    timeout = \"10ms\"\n    rise = 2\n    fall = 2\n" + check + "  }\n")
}

const healthProxy = `proxy "www" {
  listener "l" { address = "127.0.0.1:18099" }
  backend "app" {
    server "s1" { address = "127.0.0.1:19011" }
    server "s2" { address = "127.0.0.1:19012" }
    max_fails = 2
    fail_timeout = "5s"
    health_check "tcp" {
      check_port = 19100
      interval = "20ms"
      timeout = "10ms"
    }
  }
}
`

// TestHealthTranslate: virtual_server checks apply to each real server,
// backend checks to each server, passive checks follow max_fails, and
// the track_service policies follow quorum and the default backend.
func TestHealthTranslate(t *testing.T) {
	cfg := parseForTest(t, healthVS("    check_port = 9000\n    source_address = \"198.51.100.1\"\n    so_mark = 7\n    host = \"app.example\"\n")+healthProxy)
	pl, err := healthPlanOf(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, sp := range pl.specs {
		ids = append(ids, sp.ID)
	}
	want := "vs/web/app1 vs/web/app2 proxy/www/app/s1 proxy/www/app/s1#passive proxy/www/app/s2 proxy/www/app/s2#passive"
	if strings.Join(ids, " ") != want {
		t.Fatalf("ids %v, want %s", ids, want)
	}
	h, ok := pl.specs[0].Probe.(health.HTTP)
	if !ok || h.Addr != app1 || h.Path != "/healthz" || h.Host != "app.example" || h.Dial.Port != 9000 ||
		h.Dial.Source != netip.MustParseAddr("198.51.100.1") || h.Dial.Mark != 7 || h.TLS {
		t.Fatalf("http probe %+v", pl.specs[0].Probe)
	}
	if sp := pl.specs[0]; sp.Interval != 20*time.Millisecond || sp.Rise != 2 || sp.Fall != 2 || sp.Initial != health.StateUp {
		t.Fatalf("spec %+v", sp)
	}
	tcp, ok := pl.specs[2].Probe.(health.TCP)
	if !ok || tcp.Addr != netip.MustParseAddrPort("127.0.0.1:19011") || tcp.Dial.Port != 19100 {
		t.Fatalf("tcp probe %+v", pl.specs[2].Probe)
	}
	if p, ok := pl.specs[3].Probe.(health.Passive); !ok || p.Target != "127.0.0.1:19011" || p.MaxFails != 2 || p.FailTimeout != 5*time.Second {
		t.Fatalf("passive probe %+v", pl.specs[3].Probe)
	}
	if p := pl.services["web"]; p.Mode != health.ModeQuorum || p.Quorum != 2 || len(p.IDs) != 2 {
		t.Fatalf("web policy %+v", p)
	}
	if p := pl.services["www"]; p.Mode != health.ModeAny || len(p.IDs) != 2 || p.IDs[0] != "proxy/www/app/s1&proxy/www/app/s1#passive" {
		t.Fatalf("www policy %+v", p)
	}
}

// recordingConsumer records what a consumer is told, into a shared log.
type recordingConsumer struct {
	name string
	log  *orderLog
}

type orderLog struct {
	mu      sync.Mutex
	entries []string
}

func (l *orderLog) add(s string) {
	l.mu.Lock()
	l.entries = append(l.entries, s)
	l.mu.Unlock()
}

func (l *orderLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.entries...)
}

func (c recordingConsumer) healthReset(all map[healthTarget]bool) {
	c.log.add(fmt.Sprintf("%s reset %d", c.name, len(all)))
}

func (c recordingConsumer) healthUpdate(t healthTarget, healthy bool) {
	c.log.add(fmt.Sprintf("%s %s %v", c.name, t, healthy))
}

// orderBus records published events into the same log.
type orderBus struct {
	log *orderLog
	mu  sync.Mutex
	evs []map[string]any
}

func (b *orderBus) Publish(sub, typ string, attrs map[string]any) Event {
	b.log.add(fmt.Sprintf("event %s %s %s", typ, attrs["check"], attrs["to"]))
	b.mu.Lock()
	b.evs = append(b.evs, attrs)
	b.mu.Unlock()
	return Event{Subsystem: sub, Type: typ, Attrs: attrs}
}

func newFakeHealth(t *testing.T, backend *healthtest.Backend) (*healthSubsystem, *orderLog, *orderBus) {
	t.Helper()
	hs := newHealthSubsystem(healthOptions{probe: func(id string, _ health.Probe) health.Probe {
		return healthtest.Probe{Name: id, Backend: backend}
	}})
	ol := &orderLog{}
	bus := &orderBus{log: ol}
	hs.bind(subsystemDeps{Events: bus})
	return hs, ol, bus
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHealthFanOutOrderAndReload: a change reaches the consumers in order,
// then the event bus; a consumer registered later gets the current state;
// a reload with the same checks keeps their state (no flap).
func TestHealthFanOutOrderAndReload(t *testing.T) {
	backend := healthtest.NewBackend(healthtest.NewFakeClock(time.Now()))
	hs, ol, bus := newFakeHealth(t, backend)
	hs.addConsumer(recordingConsumer{"ipvs", ol})
	cfg := parseForTest(t, healthVS(""))
	if err := hs.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hs.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitFor(t, "both checks up", func() bool { return hs.sched.Healthy("vs/web/app1") && hs.sched.Healthy("vs/web/app2") })
	if up, err := hs.ServiceHealthy("web"); !up || err != nil {
		t.Fatalf("web service %v %v", up, err)
	}
	// A consumer created later is told the current state.
	ol2 := &orderLog{}
	hs.addConsumer(recordingConsumer{"late", ol2})
	if got := ol2.list(); len(got) != 1 || got[0] != "late reset 2" {
		t.Fatalf("late consumer %v", got)
	}
	hs.addConsumer(recordingConsumer{"l7proxy", ol})

	backend.SetHealthy("vs/web/app2", false)
	waitFor(t, "app2 down", func() bool { return !hs.sched.Healthy("vs/web/app2") })
	waitFor(t, "the event", func() bool {
		l := ol.list()
		return len(l) > 0 && strings.HasPrefix(l[len(l)-1], "event health_changed vs/web/app2 down")
	})
	l := ol.list()
	n := len(l)
	if l[n-3] != "ipvs vs/web/app2 false" || l[n-2] != "l7proxy vs/web/app2 false" {
		t.Fatalf("order %v", l)
	}
	bus.mu.Lock()
	ev := bus.evs[len(bus.evs)-1]
	bus.mu.Unlock()
	if ev["virtual_server"] != "web" || ev["real_server"] != "app2" || ev["from"] != "up" || ev["reason"] == "" {
		t.Fatalf("event %+v", ev)
	}
	// quorum min_up 2: one server down is the service down.
	if up, _ := hs.ServiceHealthy("web"); up {
		t.Fatal("web up with one of two real servers (min_up 2)")
	}

	// Reload with the same checks: nothing flaps, the counters stay.
	before, _ := hs.sched.Status("vs/web/app1")
	if err := hs.Apply(context.Background(), parseForTest(t, healthVS(""))); err != nil {
		t.Fatal(err)
	}
	after, _ := hs.sched.Status("vs/web/app1")
	if after.State != health.StateUp || after.Checks < before.Checks {
		t.Fatalf("app1 after reload %+v (before %+v)", after, before)
	}
	if hs.sched.Healthy("vs/web/app2") {
		t.Fatal("app2 came up by a reload")
	}
	time.Sleep(100 * time.Millisecond)
	for _, e := range ol.list()[n:] {
		if strings.Contains(e, "app1") {
			t.Fatalf("app1 flapped on reload: %v", ol.list()[n:])
		}
	}

	st := hs.Status()
	checks, _ := st.Detail["checks"].([]HealthCheckStatus)
	if st.Configured != 2 || len(checks) != 2 || checks[1].State != "down" || checks[1].Failures < 2 || checks[1].LastOutcome == "" {
		t.Fatalf("status %+v", st)
	}
}

// TestHealthTrackServicePriority: track_service lowers the VRRP priority
// by its weight while the virtual_server is down, and restores it.
func TestHealthTrackServicePriority(t *testing.T) {
	backend := healthtest.NewBackend(healthtest.NewFakeClock(time.Now()))
	lan := newFakeLAN()
	io1 := newFakeVRRPIO(lan, "192.0.2.1")
	var hs *healthSubsystem
	mod := func(o *Options) {
		o.subsystems = []subsystemFactory{
			{"vrrp", func(d subsystemDeps) subsystem {
				if hs == nil {
					hs = newHealthSubsystem(healthOptions{probe: func(id string, _ health.Probe) health.Probe {
						return healthtest.Probe{Name: id, Backend: backend}
					}})
				}
				v := newVRRPSubsystem(d, io1)
				v.services = hs
				return v
			}},
			{"health", func(d subsystemDeps) subsystem { hs.bind(d); return hs }},
		}
	}
	extra := healthVS("") + vrrpBlock("VI_1", 51, 200, "192.0.2.100/24", "  track_service \"web\" {\n    weight = -150\n  }\n")
	lb1 := startAgent(t, testConfig{node: "lb1", extra: extra}, mod)
	eventually(t, "priority 200", func() bool { return vrrpStatus(t, lb1.Agent, "VI_1").Priority == 200 })
	backend.SetHealthy("vs/web/app1", false)
	eventually(t, "priority 50", func() bool { return vrrpStatus(t, lb1.Agent, "VI_1").Priority == 50 })
	backend.SetHealthy("vs/web/app1", true)
	eventually(t, "priority 200 again", func() bool { return vrrpStatus(t, lb1.Agent, "VI_1").Priority == 200 })
}

// TestHealthDrivesIPVS: a real server whose check fails is drained in the
// (fake) kernel and comes back when it recovers; a reload keeps it
// drained (the health is replayed to the reconciler after its Apply).
func TestHealthDrivesIPVS(t *testing.T) {
	backend := healthtest.NewBackend(healthtest.NewFakeClock(time.Now()))
	k := ipvstest.NewFake()
	state := filepath.Join(t.TempDir(), "ipvs.json")
	hs := newHealthSubsystem(healthOptions{probe: func(id string, _ health.Probe) health.Probe {
		return healthtest.Probe{Name: id, Backend: backend}
	}})
	mod := func(o *Options) {
		o.subsystems = []subsystemFactory{
			{"ipvs", func(d subsystemDeps) subsystem {
				s := newIPVSSubsystem(d, ipvsOptions{
					open:           func() (ipvs.Kernel, error) { return keptKernel{k}, nil },
					stateFile:      state,
					resyncInterval: time.Hour,
				})
				hs.addConsumer(s)
				return s
			}},
			{"health", func(d subsystemDeps) subsystem { hs.bind(d); return hs }},
		}
	}
	cfg := testConfig{extra: healthVS("")}
	ta := startAgent(t, cfg, mod)
	sub := ta.Events().Subscribe(256)
	defer sub.Close()
	weights := func() map[netip.AddrPort]int { return kernelWeights(t, k, webKey) }
	eventually(t, "both real servers weighted", func() bool {
		w := weights()
		return w[app1] == 3 && w[app2] == 1 && hs.sched.Healthy("vs/web/app1") && hs.sched.Healthy("vs/web/app2")
	})
	backend.SetHealthy("vs/web/app2", false)
	eventually(t, "app2 drained", func() bool { return weights()[app2] == 0 })
	ev := nextEvent(t, sub, EventHealthChanged)
	for ev.Attrs["to"] == "up" { // the start's, if they came after the subscription
		ev = nextEvent(t, sub, EventHealthChanged)
	}
	if ev.Attrs["real_server"] != "app2" || ev.Attrs["to"] != "down" || ev.Attrs["from"] != "up" {
		t.Fatalf("event %+v", ev)
	}
	_, services := ipvsDetail(t, ta.Agent)
	for _, d := range services[0].Destinations {
		if d.Name == "app2" && (d.Healthy || d.EffectiveWeight != 0) {
			t.Fatalf("app2 status %+v", d)
		}
	}
	// A reload (unchanged checks) keeps app2 drained.
	ta.rewrite(t, cfg)
	if res := ta.Reload(context.Background()); !res.OK {
		t.Fatalf("reload %+v", res)
	}
	if w := weights(); w[app2] != 0 || w[app1] != 3 {
		t.Fatalf("kernel after reload %v", w)
	}
	backend.SetHealthy("vs/web/app2", true)
	eventually(t, "app2 back", func() bool { return weights()[app2] == 1 })
	if got := metricValue(t, ta.Agent, "fulcrum_health_check_up", "vs/web/app2"); got != 1 {
		t.Fatalf("fulcrum_health_check_up = %v", got)
	}
}

// TestHealthDrivesProxy: a proxy server whose check fails is taken out of
// its backend (requests go to the other) and put back when it recovers;
// a request failure reaches the server's passive check.
func TestHealthDrivesProxy(t *testing.T) {
	backend := healthtest.NewBackend(healthtest.NewFakeClock(time.Now()))
	pb1, pb2 := newProxyBackend(t, "app1"), newProxyBackend(t, "app2")
	www := freeAddr(t, "127.0.0.1")
	hs := newHealthSubsystem(healthOptions{probe: func(id string, _ health.Probe) health.Probe {
		return healthtest.Probe{Name: id, Backend: backend}
	}})
	mod := func(o *Options) {
		o.subsystems = []subsystemFactory{
			{"health", func(d subsystemDeps) subsystem { hs.bind(d); return hs }},
			{"l7proxy", func(d subsystemDeps) subsystem {
				p := newProxySubsystem(d)
				p.passive = hs
				hs.addConsumer(p)
				return p
			}},
		}
	}
	block := strings.Replace(proxyBlock("www", www, "", pb1, pb2), "    max_fails = 1\n",
		"    max_fails = 1\n    health_check \"tcp\" {\n      interval = \"20ms\"\n      timeout = \"10ms\"\n      rise = 1\n      fall = 1\n    }\n", 1)
	ta := startAgent(t, testConfig{extra: block}, mod)
	sub := ta.Events().Subscribe(256)
	defer sub.Close()
	eventually(t, "both servers checked up", func() bool {
		return hs.sched.Healthy("proxy/www/app/app1") && hs.sched.Healthy("proxy/www/app/app2")
	})
	backend.SetHealthy("proxy/www/app/app2", false)
	eventually(t, "app2 down in the proxy", func() bool {
		_, proxies := proxyDetail(t, ta.Agent)
		return proxies[0].Backends[0].Servers[1].State == ProxyServerDown
	})
	for range 4 {
		if code, body := get(t, "http://"+www+"/"); code != 200 || !strings.HasPrefix(body, "app1") {
			t.Fatalf("with app2 down: %d %q", code, body)
		}
	}
	for {
		ev := nextEvent(t, sub, EventProxyServerStateChanged)
		if ev.Attrs["server"] == "app2" && ev.Attrs["from"] == ProxyServerUp {
			if ev.Attrs["to"] != ProxyServerDown || ev.Attrs["reason"] != "health" {
				t.Fatalf("event %+v", ev)
			}
			break
		}
	}
	backend.SetHealthy("proxy/www/app/app2", true)
	eventually(t, "app2 up in the proxy", func() bool {
		_, proxies := proxyDetail(t, ta.Agent)
		return proxies[0].Backends[0].Servers[1].State == ProxyServerUp
	})

	// A request that fails on app1 counts against its passive check.
	pb1.srv.Close()
	for range 2 {
		get(t, "http://"+www+"/")
	}
	eventually(t, "app1's passive check down", func() bool {
		st, ok := hs.sched.Status("proxy/www/app/app1#passive")
		return ok && st.State == health.StateDown
	})
}

// TestTrackScriptPriority: a vrrp_script runs for real (/bin/sh), and track_script lowers the
// VRRP priority by its weight while the script fails, and restores it; the script's check
// shows in the health status.
func TestTrackScriptPriority(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "fail")
	lan := newFakeLAN()
	io1 := newFakeVRRPIO(lan, "192.0.2.1")
	hs := newHealthSubsystem(healthOptions{})
	mod := func(o *Options) {
		o.subsystems = []subsystemFactory{
			{"health", func(d subsystemDeps) subsystem { hs.bind(d); return hs }},
			{"vrrp", func(d subsystemDeps) subsystem {
				v := newVRRPSubsystem(d, io1)
				v.services = hs
				return v
			}},
		}
	}
	script := fmt.Sprintf("vrrp_script \"chk\" {\n  command  = [\"/bin/sh\", \"-c\", \"test ! -e %s\"]\n  interval = \"100ms\"\n  weight   = -150\n}\n", flag)
	extra := script + vrrpBlock("VI_1", 51, 200, "192.0.2.100/24", "  track_script \"chk\" {}\n")
	lb1 := startAgent(t, testConfig{node: "lb1", extra: extra}, mod)
	eventually(t, "priority 200", func() bool { return vrrpStatus(t, lb1.Agent, "VI_1").Priority == 200 })
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "priority 50 while the script fails", func() bool { return vrrpStatus(t, lb1.Agent, "VI_1").Priority == 50 })
	var found bool
	for _, c := range hs.checkStatuses() {
		if c.ID == "vrrp_script/chk" && c.VRRPScript == "chk" && c.Kind == "vrrp_script" && c.State == "down" {
			found = true
		}
	}
	if !found {
		t.Errorf("health status has no failing vrrp_script/chk: %+v", hs.checkStatuses())
	}
	os.Remove(flag)
	eventually(t, "priority 200 again", func() bool { return vrrpStatus(t, lb1.Agent, "VI_1").Priority == 200 })
}
