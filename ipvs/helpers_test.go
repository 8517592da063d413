package ipvs_test

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/ipvs"
	"github.com/fulcrum-lb/fulcrum/ipvs/ipvstest"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func tcpKey(s string) ipvs.ServiceKey { return ipvs.AddrKey(ipvs.TCP, ap(s)) }

func masq(s string, w int) ipvs.Destination {
	return ipvs.Destination{Addr: ap(s), Weight: w, Forwarding: ipvs.Masq}
}

func service(key ipvs.ServiceKey, dests ...ipvs.Destination) ipvs.Service {
	return ipvs.Service{Key: key, Scheduler: ipvs.WeightedRoundRobin, Destinations: dests}
}

// rig is a Reconciler on a fake kernel and a fake clock, with the events it sent.
type rig struct {
	t      *testing.T
	fake   *ipvstest.Fake
	clock  *ipvstest.Clock
	rec    *ipvs.Reconciler
	state  string
	events []ipvs.Event
}

func newRig(t *testing.T, mod ...func(*ipvs.Options)) *rig {
	t.Helper()
	g := &rig{t: t, fake: ipvstest.NewFake(), clock: ipvstest.NewClock(t0), state: filepath.Join(t.TempDir(), "ipvs-owned.json")}
	g.rec = g.open(mod...)
	return g
}

// open makes a (new) Reconciler on the rig's kernel, clock and state file, as a restarted
// agent would.
func (g *rig) open(mod ...func(*ipvs.Options)) *ipvs.Reconciler {
	g.t.Helper()
	opts := ipvs.Options{
		Kernel:    g.fake,
		StateFile: g.state,
		Clock:     g.clock,
		OnEvent:   func(e ipvs.Event) { g.events = append(g.events, e) },
	}
	for _, m := range mod {
		m(&opts)
	}
	r, err := ipvs.New(opts)
	if err != nil {
		g.t.Fatal(err)
	}
	return r
}

func (g *rig) apply(svcs ...ipvs.Service) {
	g.t.Helper()
	if err := g.rec.Apply(g.t.Context(), ipvs.Desired{Services: svcs}); err != nil {
		g.t.Fatalf("Apply: %v", err)
	}
}

// ops runs f and returns the kernel operations it cost, as the Reconciler counted them
// (total and mutations), checking that the fake kernel saw the same number.
func (g *rig) ops(f func()) (total, mutations int) {
	g.t.Helper()
	c0 := g.rec.Counters()
	k0, m0 := g.fake.Count(), g.fake.Mutations()
	f()
	c1 := g.rec.Counters()
	total, mutations = int(c1.Total-c0.Total), int(c1.Mutations-c0.Mutations)
	if kt, km := g.fake.Count()-k0, g.fake.Mutations()-m0; kt != total || km != mutations {
		g.t.Errorf("counters say %d ops (%d mutations), the fake kernel saw %d (%d)", total, mutations, kt, km)
	}
	return total, mutations
}

// dests returns the kernel's destinations of a service as "addr:weight" strings.
func (g *rig) dests(k ipvs.ServiceKey) []string {
	g.t.Helper()
	_, ds, ok := g.fake.Service(k)
	if !ok {
		g.t.Fatalf("service %s not in the kernel", k)
	}
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = fmt.Sprintf("%s=%d", d.Addr, d.Weight)
	}
	return out
}

func (g *rig) weight(k ipvs.ServiceKey, a string) int {
	g.t.Helper()
	_, ds, ok := g.fake.Service(k)
	if !ok {
		g.t.Fatalf("service %s not in the kernel", k)
	}
	for _, d := range ds {
		if d.Addr == ap(a) {
			return d.Weight
		}
	}
	return -1
}

func (g *rig) eventTypes() []string {
	var out []string
	for _, e := range g.events {
		if e.Type != ipvs.EventResync {
			out = append(out, e.Type)
		}
	}
	return out
}
