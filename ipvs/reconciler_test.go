package ipvs_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/ipvs"
	"github.com/fulcrum-lb/fulcrum/ipvs/ipvstest"
)

func TestApplyCreatesServices(t *testing.T) {
	g := newRig(t)
	web := tcpKey("192.0.2.1:80")
	dns := ipvs.AddrKey(ipvs.UDP, ap("[2001:db8::1]:53"))
	mark := ipvs.MarkKey(7, ipvs.IPv4)
	total, muts := g.ops(func() {
		g.apply(
			service(web, masq("198.51.100.10:8080", 10), masq("198.51.100.11:8080", 20)),
			ipvs.Service{Key: dns, Scheduler: ipvs.SourceHashing, Flags: ipvs.SHPort | ipvs.SHFallback,
				Destinations: []ipvs.Destination{{Addr: ap("[2001:db8:100::10]:0"), Weight: 1, Forwarding: ipvs.Route}}},
			ipvs.Service{Key: mark, Persistence: ipvs.Persistence{Timeout: 300 * time.Second, Prefix: 24},
				Destinations: []ipvs.Destination{{Addr: ap("198.51.100.20:0"), Weight: 3, Forwarding: ipvs.Tunnel, UpperThreshold: 100, LowerThreshold: 10}}},
		)
	})
	// One dump of an empty kernel, then 3 services and 4 destinations.
	if total != 8 || muts != 7 {
		t.Errorf("ops: %d total, %d mutations; want 8 and 7", total, muts)
	}
	ks, _, _ := g.fake.Service(dns)
	if ks.Scheduler != "sh" || ks.Flags&^ipvs.KernelFlagHashed != ipvs.KernelFlagSHFallback|ipvs.KernelFlagSHPort || ks.Netmask != 128 {
		t.Errorf("dns service in the kernel: %+v", ks)
	}
	if got := g.dests(dns); !slices.Equal(got, []string{"[2001:db8:100::10]:53=1"}) {
		t.Errorf("dns destinations %v: a zero port must become the service's", got)
	}
	ks, kd, _ := g.fake.Service(mark)
	if ks.Scheduler != "wlc" || ks.Flags&ipvs.KernelFlagPersistent == 0 || ks.Timeout != 300 || ks.Netmask != 0xffffff00 {
		t.Errorf("fwmark service in the kernel: %+v", ks)
	}
	if kd[0].FwdMethod != ipvs.KernelFwdTunnel || kd[0].UpperThreshold != 100 || kd[0].LowerThreshold != 10 || kd[0].Addr.Port() != 0 {
		t.Errorf("fwmark destination: %+v", kd[0])
	}
	ks, _, _ = g.fake.Service(web)
	if ks.Netmask != 0xffffffff || ks.Timeout != 0 || ks.Flags&^ipvs.KernelFlagHashed != 0 {
		t.Errorf("web service in the kernel: %+v (want a full mask, no flags)", ks)
	}
	// The same state again costs nothing.
	if total, _ := g.ops(func() { g.apply(g.desiredAgain()...) }); total != 0 {
		t.Errorf("re-applying the same state cost %d ops", total)
	}
}

// desiredAgain rebuilds TestApplyCreatesServices's state.
func (g *rig) desiredAgain() []ipvs.Service {
	return []ipvs.Service{
		service(tcpKey("192.0.2.1:80"), masq("198.51.100.10:8080", 10), masq("198.51.100.11:8080", 20)),
		{Key: ipvs.AddrKey(ipvs.UDP, ap("[2001:db8::1]:53")), Scheduler: ipvs.SourceHashing, Flags: ipvs.SHPort | ipvs.SHFallback,
			Destinations: []ipvs.Destination{{Addr: ap("[2001:db8:100::10]:53"), Weight: 1, Forwarding: ipvs.Route}}},
		{Key: ipvs.MarkKey(7, ipvs.IPv4), Persistence: ipvs.Persistence{Timeout: 300 * time.Second, Prefix: 24},
			Destinations: []ipvs.Destination{{Addr: ap("198.51.100.20:0"), Weight: 3, Forwarding: ipvs.Tunnel, UpperThreshold: 100, LowerThreshold: 10}}},
	}
}

func TestAdoptExistingWithoutFlush(t *testing.T) {
	g := newRig(t)
	web := tcpKey("192.0.2.1:80")
	api := tcpKey("192.0.2.2:443")
	g.apply(
		service(web, masq("198.51.100.10:80", 10), masq("198.51.100.11:80", 10)),
		service(api, masq("198.51.100.20:443", 5)),
	)
	// The agent stops (leaving the services), someone changes a weight meanwhile, and an
	// unowned service appears.
	if err := g.rec.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	g.fake.SetWeight(web, ap("198.51.100.11:80"), 99)
	other := tcpKey("203.0.113.9:25")
	g.fake.Seed(ipvs.KernelService{Key: other, Scheduler: "rr", Netmask: 0xffffffff},
		ipvs.KernelDestination{Addr: ap("203.0.113.10:25"), Weight: 1})

	g.rec = g.open()
	g.fake.ResetCalls()
	total, muts := g.ops(func() {
		g.apply(
			service(web, masq("198.51.100.10:80", 10), masq("198.51.100.11:80", 10)),
			service(api, masq("198.51.100.20:443", 5)),
		)
	})
	// GetServices + GetDestinations for the two owned services, then the one correction.
	if total != 4 || muts != 1 {
		t.Errorf("restart cost %d ops, %d mutations; want 4 and 1; calls %v", total, muts, g.fake.Calls())
	}
	for _, c := range g.fake.Calls() {
		if c.Op == ipvs.OpDelService || c.Op == ipvs.OpDelDestination || c.Op == ipvs.OpNewService {
			t.Errorf("restart sent %v", c)
		}
		if c.Service == other {
			t.Errorf("restart touched the unowned service: %v", c)
		}
	}
	if w := g.weight(web, "198.51.100.11:80"); w != 10 {
		t.Errorf("drifted weight is %d, want corrected to 10", w)
	}
	if st := g.rec.Status(); st.Owned != 2 || st.Unowned != 1 || !st.Synced {
		t.Errorf("status owned %d unowned %d synced %v", st.Owned, st.Unowned, st.Synced)
	}
}

func TestUnownedServicesUntouched(t *testing.T) {
	g := newRig(t, func(o *ipvs.Options) { o.RemoveOnShutdown = true })
	other := tcpKey("203.0.113.9:25")
	otherDests := []ipvs.KernelDestination{{Addr: ap("203.0.113.10:25"), Weight: 7}}
	g.fake.Seed(ipvs.KernelService{Key: other, Scheduler: "lc", Netmask: 0xffffffff}, otherDests...)
	web := tcpKey("192.0.2.1:80")
	g.apply(service(web, masq("198.51.100.10:80", 1)))
	if err := g.rec.Resync(t.Context()); err != nil {
		t.Fatal(err)
	}
	g.apply() // nothing desired: deletes the owned service only
	if _, _, ok := g.fake.Service(web); ok {
		t.Error("owned service not deleted when no longer desired")
	}
	g.apply(service(web, masq("198.51.100.10:80", 1)))
	if err := g.rec.Shutdown(t.Context()); err != nil { // RemoveOnShutdown
		t.Fatal(err)
	}
	if _, _, ok := g.fake.Service(web); ok {
		t.Error("RemoveOnShutdown left the owned service")
	}
	ks, ds, ok := g.fake.Service(other)
	if !ok || ks.Scheduler != "lc" || len(ds) != 1 || ds[0].Weight != 7 {
		t.Errorf("unowned service changed: %v %+v %+v", ok, ks, ds)
	}
	for _, c := range g.fake.Calls() {
		if c.Service == other {
			t.Errorf("a call touched the unowned service: %v", c)
		}
	}
	if err := g.rec.Apply(t.Context(), ipvs.Desired{}); !errors.Is(err, ipvs.ErrClosed) {
		t.Errorf("Apply after Shutdown: %v", err)
	}
}

func TestShutdownLeavesServicesByDefault(t *testing.T) {
	g := newRig(t)
	web := tcpKey("192.0.2.1:80")
	g.apply(service(web, masq("198.51.100.10:80", 1)))
	if _, muts := g.ops(func() {
		if err := g.rec.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
	}); muts != 0 {
		t.Errorf("Shutdown made %d changes", muts)
	}
	if _, _, ok := g.fake.Service(web); !ok {
		t.Error("Shutdown removed the service")
	}
}

// bulk returns n services, two destinations each.
func bulk(n int) []ipvs.Service {
	out := make([]ipvs.Service, n)
	for i := range out {
		vip := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i%250)}), uint16(1000+i/250))
		out[i] = service(ipvs.AddrKey(ipvs.TCP, vip),
			ipvs.Destination{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + i%200)}), 8080), Weight: 10, Forwarding: ipvs.Masq},
			ipvs.Destination{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(201 + i%50)}), 8080), Weight: 10, Forwarding: ipvs.Masq},
		)
	}
	return out
}

func TestWeightChangeIsOneOpWith10kServices(t *testing.T) {
	g := newRig(t)
	svcs := bulk(10000)
	start := time.Now()
	total, muts := g.ops(func() { g.apply(svcs...) })
	t.Logf("bulk load of 10,000 services (fake kernel): %d ops in %v", total, time.Since(start))
	if muts != 30000 {
		t.Errorf("bulk load: %d mutations, want 30000", muts)
	}
	svcs[4321].Destinations[1].Weight = 55
	start = time.Now()
	total, muts = g.ops(func() { g.apply(svcs...) })
	t.Logf("one weight change among 10,000 services: %d op in %v", total, time.Since(start))
	if total != 1 || muts != 1 {
		t.Errorf("weight change cost %d ops (%d mutations), want exactly 1", total, muts)
	}
	calls := g.fake.Calls()
	if last := calls[len(calls)-1]; last.Op != ipvs.OpUpdateDestination || last.Service != svcs[4321].Key {
		t.Errorf("last call %v", last)
	}
	if w := g.weight(svcs[4321].Key, svcs[4321].Destinations[1].Addr.String()); w != 55 {
		t.Errorf("kernel weight %d", w)
	}
	// Health and overrides are incremental too.
	key, rs := svcs[777].Key, svcs[777].Destinations[0].Addr
	if total, _ := g.ops(func() {
		if err := g.rec.SetHealth(key, rs, false); err != nil {
			t.Fatal(err)
		}
	}); total != 1 {
		t.Errorf("SetHealth cost %d ops", total)
	}
	if total, _ := g.ops(func() {
		if err := g.rec.SetOverride(svcs[778].Key, svcs[778].Destinations[0].Addr, true); err != nil {
			t.Fatal(err)
		}
	}); total != 1 {
		t.Errorf("SetOverride cost %d ops", total)
	}
}

func TestAddRemoveDestination(t *testing.T) {
	g := newRig(t)
	web := tcpKey("192.0.2.1:80")
	g.apply(service(web, masq("198.51.100.10:80", 1), masq("198.51.100.11:80", 1)))
	total, muts := g.ops(func() {
		g.apply(service(web, masq("198.51.100.10:80", 1), masq("198.51.100.11:80", 1), masq("198.51.100.12:80", 2)))
	})
	if total != 1 || muts != 1 {
		t.Errorf("adding a destination: %d ops", total)
	}
	total, _ = g.ops(func() { g.apply(service(web, masq("198.51.100.10:80", 1), masq("198.51.100.12:80", 2))) })
	if total != 1 {
		t.Errorf("removing a destination: %d ops", total)
	}
	if got := g.dests(web); !slices.Equal(got, []string{"198.51.100.10:80=1", "198.51.100.12:80=2"}) {
		t.Errorf("destinations %v", got)
	}
	// Changing the forwarding method or thresholds is an in-place update.
	d := masq("198.51.100.12:80", 2)
	d.Forwarding, d.UpperThreshold = ipvs.Route, 50
	total, _ = g.ops(func() { g.apply(service(web, masq("198.51.100.10:80", 1), d)) })
	if total != 1 {
		t.Errorf("changing forwarding: %d ops", total)
	}
	_, ds, _ := g.fake.Service(web)
	if ds[1].FwdMethod != ipvs.KernelFwdRoute || ds[1].UpperThreshold != 50 {
		t.Errorf("destination %+v", ds[1])
	}
}

func TestServiceChangeUpdatesInPlace(t *testing.T) {
	g := newRig(t)
	web := tcpKey("192.0.2.1:80")
	g.apply(service(web, masq("198.51.100.10:80", 1)))
	s := service(web, masq("198.51.100.10:80", 1))
	s.Scheduler, s.Flags = ipvs.MaglevHashing, ipvs.MHFallback|ipvs.MHPort
	s.Persistence = ipvs.Persistence{Timeout: 600 * time.Second, Prefix: 16}
	g.fake.ResetCalls()
	total, muts := g.ops(func() { g.apply(s) })
	if total != 1 || muts != 1 || g.fake.Count(ipvs.OpUpdateService) != 1 {
		t.Errorf("scheduler+persistence change: %d ops %v", total, g.fake.Calls())
	}
	ks, ds, _ := g.fake.Service(web)
	if ks.Scheduler != "mh" || ks.Flags&^ipvs.KernelFlagHashed != ipvs.KernelFlagPersistent|ipvs.KernelFlagMHFallback|ipvs.KernelFlagMHPort ||
		ks.Timeout != 600 || ks.Netmask != 0xffff0000 || len(ds) != 1 {
		t.Errorf("kernel service %+v, destinations %v", ks, ds)
	}
	// Dropping persistence clears the flag and timeout, and restores the full mask.
	s.Persistence = ipvs.Persistence{}
	g.apply(s)
	ks, _, _ = g.fake.Service(web)
	if ks.Flags&ipvs.KernelFlagPersistent != 0 || ks.Timeout != 0 || ks.Netmask != 0xffffffff {
		t.Errorf("after dropping persistence: %+v", ks)
	}
}

func TestDrainVersusRemoveOnFailure(t *testing.T) {
	g := newRig(t)
	drain := tcpKey("192.0.2.1:80")
	remove := tcpKey("192.0.2.2:80")
	rm := service(remove, masq("198.51.100.20:80", 5), masq("198.51.100.21:80", 5))
	rm.OnFailure = ipvs.Remove
	g.apply(service(drain, masq("198.51.100.10:80", 5), masq("198.51.100.11:80", 5)), rm)

	if total, _ := g.ops(func() { must(t, g.rec.SetHealth(drain, ap("198.51.100.10:80"), false)) }); total != 1 {
		t.Errorf("drain: %d ops", total)
	}
	if got := g.dests(drain); !slices.Equal(got, []string{"198.51.100.10:80=0", "198.51.100.11:80=5"}) {
		t.Errorf("drain policy: %v", got)
	}
	if total, _ := g.ops(func() { must(t, g.rec.SetHealth(remove, ap("198.51.100.20:80"), false)) }); total != 1 {
		t.Errorf("remove: %d ops", total)
	}
	if got := g.dests(remove); !slices.Equal(got, []string{"198.51.100.21:80=5"}) {
		t.Errorf("remove policy: %v", got)
	}
	// Reporting the same health again costs nothing; recovery restores.
	if total, _ := g.ops(func() { must(t, g.rec.SetHealth(remove, ap("198.51.100.20:80"), false)) }); total != 0 {
		t.Errorf("repeated health: %d ops", total)
	}
	must(t, g.rec.SetHealth(drain, ap("198.51.100.10:80"), true))
	must(t, g.rec.SetHealth(remove, ap("198.51.100.20:80"), true))
	if got := g.dests(drain); !slices.Equal(got, []string{"198.51.100.10:80=5", "198.51.100.11:80=5"}) {
		t.Errorf("drain recovered: %v", got)
	}
	if got := g.dests(remove); !slices.Equal(got, []string{"198.51.100.21:80=5", "198.51.100.20:80=5"}) {
		t.Errorf("remove recovered: %v", got)
	}
	// A zero port means the service's; unknown names are typed errors.
	must(t, g.rec.SetHealth(drain, ap("198.51.100.11:0"), false))
	if w := g.weight(drain, "198.51.100.11:80"); w != 0 {
		t.Errorf("port-0 SetHealth: weight %d", w)
	}
	if err := g.rec.SetHealth(drain, ap("198.51.100.99:80"), false); !errors.Is(err, ipvs.ErrUnknownDestination) {
		t.Errorf("unknown destination: %v", err)
	}
	if err := g.rec.SetHealth(tcpKey("192.0.2.99:80"), ap("198.51.100.10:80"), false); !errors.Is(err, ipvs.ErrUnknownService) {
		t.Errorf("unknown service: %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestQuorumSorryServerHysteresis(t *testing.T) {
	g := newRig(t)
	web := tcpKey("192.0.2.1:80")
	s := service(web, masq("198.51.100.1:80", 10), masq("198.51.100.2:80", 10), masq("198.51.100.3:80", 10), masq("198.51.100.4:80", 10))
	sorry := ipvs.Destination{Addr: ap("198.51.100.250:80"), Forwarding: ipvs.Masq}
	s.Quorum = ipvs.Quorum{MinUp: 2, Hysteresis: 1, Sorry: &sorry}
	g.apply(s)
	down := func(a string) { must(t, g.rec.SetHealth(web, ap(a), false)) }
	up := func(a string) { must(t, g.rec.SetHealth(web, ap(a), true)) }

	down("198.51.100.1:80")
	down("198.51.100.2:80")
	if got := g.dests(web); slices.Contains(got, "198.51.100.250:80=1") {
		t.Fatalf("sorry server in with 2 up (min_up 2): %v", got)
	}
	// Falling to 1 up loses the quorum: the sorry server comes in (added first), every other
	// destination is drained (the default policy).
	var order []ipvstest.Call
	g.fake.ResetCalls()
	down("198.51.100.3:80")
	order = g.fake.Calls()
	want := []string{"198.51.100.1:80=0", "198.51.100.2:80=0", "198.51.100.3:80=0", "198.51.100.4:80=0", "198.51.100.250:80=1"}
	if got := g.dests(web); !slices.Equal(got, want) {
		t.Fatalf("quorum lost: %v, want %v", got, want)
	}
	if order[0].Op != ipvs.OpNewDestination || order[0].Destination != sorry.Addr {
		t.Errorf("the sorry server must come in first: %v", order)
	}
	if st := g.rec.Status(); !st.Services[0].Quorum.Lost || st.Services[0].Quorum.Up != 1 {
		t.Errorf("status quorum %+v", st.Services[0].Quorum)
	}
	// Hysteresis: 2 up (= min_up) is not enough to come back; 3 (min_up + 1) is.
	up("198.51.100.1:80")
	if got := g.dests(web); !slices.Contains(got, "198.51.100.250:80=1") {
		t.Fatalf("quorum restored at 2 up despite hysteresis 1: %v", got)
	}
	up("198.51.100.2:80")
	want = []string{"198.51.100.1:80=10", "198.51.100.2:80=10", "198.51.100.3:80=0", "198.51.100.4:80=10"}
	if got := g.dests(web); !slices.Equal(got, want) {
		t.Fatalf("quorum restored: %v, want %v", got, want)
	}
	if got, want := g.eventTypes(), []string{ipvs.EventQuorumLost, ipvs.EventQuorumRestored}; !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}

	// With the remove policy the others leave the kernel while the quorum is lost.
	s.OnFailure = ipvs.Remove
	g.apply(s)
	down("198.51.100.1:80")
	down("198.51.100.2:80")
	if got := g.dests(web); !slices.Equal(got, []string{"198.51.100.250:80=1"}) {
		t.Errorf("quorum lost, remove policy: %v", got)
	}
}

func TestSlowStartRamp(t *testing.T) {
	g := newRig(t)
	web := tcpKey("192.0.2.1:80")
	s := service(web, masq("198.51.100.1:80", 100), masq("198.51.100.2:80", 100))
	s.SlowStart = 10 * time.Second
	g.apply(s)
	rs := ap("198.51.100.1:80")
	must(t, g.rec.SetHealth(web, rs, false))
	if w := g.weight(web, "198.51.100.1:80"); w != 0 {
		t.Fatalf("failed: weight %d", w)
	}
	must(t, g.rec.SetHealth(web, rs, true))
	var ws []int
	ws = append(ws, g.weight(web, "198.51.100.1:80"))
	for range 6 {
		g.clock.Advance(2 * time.Second)
		total, _ := g.ops(func() { must(t, g.rec.Tick()) })
		if total != 1 && g.clock.Now().Sub(t0) <= 10*time.Second {
			t.Errorf("tick at %v: %d ops", g.clock.Now().Sub(t0), total)
		}
		ws = append(ws, g.weight(web, "198.51.100.1:80"))
	}
	// 1 at recovery, then linear to 100 at 10 s; nothing more afterwards.
	if want := []int{1, 20, 40, 60, 80, 100, 100}; !slices.Equal(ws, want) {
		t.Errorf("ramp %v, want %v", ws, want)
	}
	st := g.rec.Status()
	if d := st.Services[0].Destinations[0]; d.SlowStart || d.EffectiveWeight != 100 {
		t.Errorf("after the ramp: %+v", d)
	}
	g.clock.Advance(time.Second)
	if total, _ := g.ops(func() { must(t, g.rec.Tick()) }); total != 0 {
		t.Errorf("tick with no ramp: %d ops", total)
	}
	// An operator drain during a ramp wins; the ramp still ends on time.
	must(t, g.rec.SetHealth(web, rs, false))
	must(t, g.rec.SetHealth(web, rs, true))
	must(t, g.rec.SetOverride(web, rs, true))
	g.clock.Advance(5 * time.Second)
	must(t, g.rec.Tick())
	if d := g.rec.Status().Services[0].Destinations[0]; !d.SlowStart || !d.Drained || d.EffectiveWeight != 0 || d.KernelWeight != 0 {
		t.Errorf("drained during the ramp: %+v", d)
	}
	must(t, g.rec.SetOverride(web, rs, false))
	if w := g.weight(web, "198.51.100.1:80"); w != 50 {
		t.Errorf("undrained mid-ramp: weight %d, want 50", w)
	}
}

func TestOverrideSurvivesApplyAndRestart(t *testing.T) {
	g := newRig(t)
	web := tcpKey("192.0.2.1:80")
	rs := ap("198.51.100.1:80")
	g.apply(service(web, masq("198.51.100.1:80", 10), masq("198.51.100.2:80", 10)))
	must(t, g.rec.SetOverride(web, rs, true))
	if w := g.weight(web, "198.51.100.1:80"); w != 0 {
		t.Fatalf("drained weight %d", w)
	}
	// A new desired state with a new weight for it: still drained.
	g.apply(service(web, masq("198.51.100.1:80", 30), masq("198.51.100.2:80", 10), masq("198.51.100.3:80", 10)))
	if w := g.weight(web, "198.51.100.1:80"); w != 0 {
		t.Errorf("after Apply: weight %d, want 0 (drained)", w)
	}
	st := g.rec.Status().Services[0].Destinations[0]
	if !st.Drained || st.Weight != 30 || st.EffectiveWeight != 0 || !st.InKernel {
		t.Errorf("status %+v", st)
	}
	// A restart keeps the drain (state file).
	must(t, g.rec.Shutdown(t.Context()))
	g.rec = g.open()
	g.apply(service(web, masq("198.51.100.1:80", 30), masq("198.51.100.2:80", 10), masq("198.51.100.3:80", 10)))
	if w := g.weight(web, "198.51.100.1:80"); w != 0 {
		t.Errorf("after restart: weight %d, want 0 (drained)", w)
	}
	must(t, g.rec.SetOverride(web, rs, false))
	if w := g.weight(web, "198.51.100.1:80"); w != 30 {
		t.Errorf("undrained: weight %d", w)
	}
	var sf struct {
		Drained []json.RawMessage `json:"drained"`
	}
	data, err := os.ReadFile(g.state)
	must(t, err)
	must(t, json.Unmarshal(data, &sf))
	if len(sf.Drained) != 0 {
		t.Errorf("state file still lists drains: %s", data)
	}
}

func TestInvalidDesiredRejectedBeforeAnyOp(t *testing.T) {
	g := newRig(t)
	web := tcpKey("192.0.2.1:80")
	good := service(web, masq("198.51.100.1:80", 10))
	g.apply(good)
	g.fake.ResetCalls()

	v6 := ipvs.AddrKey(ipvs.TCP, ap("[2001:db8::1]:80"))
	cases := map[string]ipvs.Service{
		"scheduler":         {Key: tcpKey("192.0.2.2:80"), Scheduler: "fastest"},
		"sh flag on rr":     {Key: tcpKey("192.0.2.2:80"), Scheduler: ipvs.RoundRobin, Flags: ipvs.SHPort},
		"mh flag on sh":     {Key: tcpKey("192.0.2.2:80"), Scheduler: ipvs.SourceHashing, Flags: ipvs.MHFallback},
		"weight":            service(tcpKey("192.0.2.2:80"), masq("198.51.100.1:80", 70000)),
		"negative weight":   service(tcpKey("192.0.2.2:80"), masq("198.51.100.1:80", -1)),
		"no forwarding":     service(tcpKey("192.0.2.2:80"), ipvs.Destination{Addr: ap("198.51.100.1:80"), Weight: 1}),
		"family mix":        service(v6, masq("198.51.100.1:80", 1)),
		"duplicate dest":    service(tcpKey("192.0.2.2:80"), masq("198.51.100.1:80", 1), masq("198.51.100.1:80", 2)),
		"thresholds":        service(tcpKey("192.0.2.2:80"), ipvs.Destination{Addr: ap("198.51.100.1:80"), Forwarding: ipvs.Masq, UpperThreshold: 5, LowerThreshold: 6}),
		"DR port change":    service(tcpKey("192.0.2.2:80"), ipvs.Destination{Addr: ap("198.51.100.1:8080"), Forwarding: ipvs.Route}),
		"port 0 no persist": {Key: tcpKey("192.0.2.2:0")},
		"v6 prefix":         {Key: v6, Persistence: ipvs.Persistence{Timeout: time.Minute, Prefix: 129}},
		"prefix no timeout": {Key: tcpKey("192.0.2.2:80"), Persistence: ipvs.Persistence{Prefix: 24}},
		"fractional":        {Key: tcpKey("192.0.2.2:80"), Persistence: ipvs.Persistence{Timeout: 1500 * time.Millisecond}},
		"no protocol":       {Key: ipvs.AddrKey(0, ap("192.0.2.2:80"))},
		"mapped address":    {Key: ipvs.AddrKey(ipvs.TCP, ap("[::ffff:192.0.2.2]:80"))},
		"bad family":        {Key: ipvs.ServiceKey{Protocol: ipvs.TCP, Addr: ap("192.0.2.2:80"), Family: ipvs.IPv6}},
		"fwmark family":     {Key: ipvs.MarkKey(5, 0)},
		"sorry no quorum":   {Key: tcpKey("192.0.2.2:80"), Quorum: ipvs.Quorum{Sorry: &ipvs.Destination{Addr: ap("198.51.100.9:80"), Forwarding: ipvs.Masq}}},
		"sorry collides": {Key: tcpKey("192.0.2.2:80"), Destinations: []ipvs.Destination{masq("198.51.100.9:80", 1)},
			Quorum: ipvs.Quorum{MinUp: 1, Sorry: &ipvs.Destination{Addr: ap("198.51.100.9:80"), Forwarding: ipvs.Masq}}},
		"duplicate service": service(web),
		"unicast":           {Key: tcpKey("0.0.0.0:80")},
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			// The bad service comes last, after a valid change: nothing of it may apply.
			changed := service(web, masq("198.51.100.1:80", 99))
			err := g.rec.Apply(t.Context(), ipvs.Desired{Services: []ipvs.Service{changed, bad}})
			var ve *ipvs.ValidationError
			if !errors.Is(err, ipvs.ErrInvalid) || !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("Apply: %v, want a ValidationError", err)
			}
			t.Logf("%v", err)
			if n := g.fake.Count(); n != 0 {
				t.Errorf("rejected state cost %d kernel calls: %v", n, g.fake.Calls())
			}
		})
	}
	err := g.rec.Apply(t.Context(), ipvs.Desired{Timeouts: ipvs.Timeouts{TCP: 1500 * time.Millisecond, UDP: -time.Second}})
	var ve *ipvs.ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 2 {
		t.Errorf("bad timeouts: %v", err)
	}
	if w := g.weight(web, "198.51.100.1:80"); w != 10 || g.fake.Count() != 0 {
		t.Errorf("the old state must stay: weight %d, %d calls", w, g.fake.Count())
	}
	// The previous desired state is still in force.
	must(t, g.rec.SetHealth(web, ap("198.51.100.1:80"), false))
}

func TestFailedOpLeavesMirrorConsistent(t *testing.T) {
	g := newRig(t)
	web := tcpKey("192.0.2.1:80")
	api := tcpKey("192.0.2.2:80")
	g.apply(service(web, masq("198.51.100.1:80", 10)))
	// Someone adds a destination behind our back, then our NewDestination for it fails with
	// EEXIST; and a different service's operation fails with a kernel error.
	g.fake.Seed(ipvs.KernelService{Key: web, Scheduler: "wrr", Netmask: 0xffffffff},
		ipvs.KernelDestination{Addr: ap("198.51.100.1:80"), Weight: 10},
		ipvs.KernelDestination{Addr: ap("198.51.100.2:80"), Weight: 3})
	g.fake.Fail(func(c ipvstest.Call) error {
		if c.Op == ipvs.OpNewService && c.Service == api {
			return syscall.ENOMEM
		}
		return nil
	})
	err := g.rec.Apply(t.Context(), ipvs.Desired{Services: []ipvs.Service{
		service(web, masq("198.51.100.1:80", 10), masq("198.51.100.2:80", 7)),
		service(api, masq("198.51.100.5:80", 1)),
	}})
	var re *ipvs.ReconcileError
	var oe *ipvs.OpError
	if !errors.As(err, &re) || re.Failed != 2 || !errors.As(err, &oe) {
		t.Fatalf("Apply: %v", err)
	}
	if !errors.Is(err, ipvs.ErrExists) || !errors.Is(err, syscall.EEXIST) || !errors.Is(err, syscall.ENOMEM) {
		t.Errorf("error does not unwrap to the causes: %v", err)
	}
	t.Logf("%v", err)
	// The failed service was re-read: the mirror knows the seeded destination's weight 3, so
	// the retry is one update, not another failing add.
	g.fake.Fail(nil)
	g.fake.ResetCalls()
	g.apply(service(web, masq("198.51.100.1:80", 10), masq("198.51.100.2:80", 7)), service(api, masq("198.51.100.5:80", 1)))
	if got := g.fake.Calls(); len(got) != 3 || got[0].Op != ipvs.OpUpdateDestination || got[1].Op != ipvs.OpNewService {
		t.Errorf("retry calls %v", got)
	}
	if got := g.dests(web); !slices.Equal(got, []string{"198.51.100.1:80=10", "198.51.100.2:80=7"}) {
		t.Errorf("web %v", got)
	}
	c := g.rec.Counters()
	if c.Errors != 2 || c.LastError == "" {
		t.Errorf("counters %+v", c)
	}
	for _, s := range g.rec.Status().Services {
		if !s.InSync {
			t.Errorf("%s not in sync", s.Key)
		}
	}
}

func TestSchedulerUnavailable(t *testing.T) {
	g := newRig(t)
	g.fake.SetSchedulers("rr", "wrr", "wlc") // a kernel without twos
	k := tcpKey("192.0.2.1:80")
	err := g.rec.Apply(t.Context(), ipvs.Desired{Services: []ipvs.Service{{Key: k, Scheduler: ipvs.WeightedRandomTwoChoices}}})
	if !errors.Is(err, ipvs.ErrSchedulerUnavailable) {
		t.Fatalf("Apply: %v", err)
	}
	var oe *ipvs.OpError
	if !errors.As(err, &oe) || oe.Op != ipvs.OpNewService || oe.Service != k {
		t.Errorf("OpError %+v", oe)
	}
	if st := g.rec.Status().Services[0]; st.InKernel {
		t.Error("mirror has the failed service")
	}
}

func TestResyncCorrectsDrift(t *testing.T) {
	g := newRig(t)
	web := tcpKey("192.0.2.1:80")
	api := tcpKey("192.0.2.2:80")
	g.apply(service(web, masq("198.51.100.1:80", 10), masq("198.51.100.2:80", 10)), service(api, masq("198.51.100.5:80", 1)))
	g.fake.SetWeight(web, ap("198.51.100.2:80"), 1)
	g.fake.Remove(api)
	g.fake.ResetCalls()
	if err := g.rec.Resync(t.Context()); err != nil {
		t.Fatal(err)
	}
	// dump (1) + destinations of the one owned service left (1) + 1 update + 2 creates.
	if n, m := g.fake.Count(), g.fake.Mutations(); n != 5 || m != 3 {
		t.Errorf("resync: %d calls, %d mutations: %v", n, m, g.fake.Calls())
	}
	if got := g.dests(api); !slices.Equal(got, []string{"198.51.100.5:80=1"}) {
		t.Errorf("api %v", got)
	}
	c := g.rec.Counters()
	if c.Resyncs != 2 || !c.LastResync.Equal(t0) {
		t.Errorf("counters %+v", c)
	}
}

func TestOwnedServiceNoLongerDesiredIsDeletedOnStart(t *testing.T) {
	g := newRig(t)
	web := tcpKey("192.0.2.1:80")
	old := tcpKey("192.0.2.9:80")
	g.apply(service(web, masq("198.51.100.1:80", 1)), service(old, masq("198.51.100.9:80", 1)))
	must(t, g.rec.Shutdown(t.Context()))
	g.rec = g.open()
	g.fake.ResetCalls()
	g.apply(service(web, masq("198.51.100.1:80", 1)))
	if _, _, ok := g.fake.Service(old); ok {
		t.Error("owned service removed from the config while the agent was down is still there")
	}
	if g.fake.Mutations() != 1 {
		t.Errorf("calls %v", g.fake.Calls())
	}
	data, err := os.ReadFile(g.state)
	must(t, err)
	var sf struct {
		Owned []string `json:"owned"`
	}
	must(t, json.Unmarshal(data, &sf))
	if !slices.Equal(sf.Owned, []string{"tcp/192.0.2.1:80"}) {
		t.Errorf("state file %s", data)
	}
}

func TestDesiredUnownedServiceIsAdopted(t *testing.T) {
	g := newRig(t)
	web := tcpKey("192.0.2.1:80")
	g.fake.Seed(ipvs.KernelService{Key: web, Scheduler: "wrr", Netmask: 0xffffffff},
		ipvs.KernelDestination{Addr: ap("198.51.100.1:80"), Weight: 1})
	g.fake.ResetCalls()
	g.apply(service(web, masq("198.51.100.1:80", 1)))
	if g.fake.Mutations() != 0 {
		t.Errorf("adoption changed things: %v", g.fake.Calls())
	}
	if got := g.eventTypes(); !slices.Equal(got, []string{ipvs.EventAdopted}) {
		t.Errorf("events %v", got)
	}
}

func TestTimeouts(t *testing.T) {
	g := newRig(t)
	d := ipvs.Desired{Timeouts: ipvs.Timeouts{TCP: 3600 * time.Second, UDP: 60 * time.Second}}
	must(t, g.rec.Apply(t.Context(), d))
	if got := g.fake.Timeouts(); got != (ipvs.Timeouts{TCP: time.Hour, TCPFin: 120 * time.Second, UDP: time.Minute}) {
		t.Errorf("kernel timeouts %+v", got)
	}
	if total, _ := g.ops(func() { must(t, g.rec.Apply(t.Context(), d)) }); total != 0 {
		t.Errorf("unchanged timeouts cost %d ops", total)
	}
	if st := g.rec.Status().Timeouts; st == nil || *st != (ipvs.TimeoutStatus{TCP: 3600, TCPFin: 120, UDP: 60}) {
		t.Errorf("status timeouts %+v", st)
	}
}

func TestStatusJSON(t *testing.T) {
	g := newRig(t)
	web := tcpKey("192.0.2.1:80")
	s := service(web, masq("198.51.100.1:80", 10))
	s.Quorum = ipvs.Quorum{MinUp: 1, Sorry: &ipvs.Destination{Addr: ap("198.51.100.250:80"), Forwarding: ipvs.Masq}}
	g.apply(s)
	data, err := json.Marshal(g.rec.Status())
	must(t, err)
	for _, want := range []string{`"key":"tcp/192.0.2.1:80"`, `"effective_weight":10`, `"sorry":true`, `"new_service":1`, `"in_sync":true`} {
		if !json.Valid(data) || !strings.Contains(string(data), want) {
			t.Errorf("status JSON lacks %s: %s", want, data)
		}
	}
}

func TestCorruptStateFileRefused(t *testing.T) {
	g := newRig(t)
	must(t, os.WriteFile(g.state, []byte("{not json"), 0o600))
	_, err := ipvs.New(ipvs.Options{Kernel: g.fake, StateFile: g.state})
	if !errors.Is(err, ipvs.ErrStateFile) {
		t.Errorf("New with a corrupt state file: %v", err)
	}
}

func TestStateFileWrittenAtomically(t *testing.T) {
	g := newRig(t)
	g.apply(bulk(50)...)
	ents, err := os.ReadDir(filepath.Dir(g.state))
	must(t, err)
	if len(ents) != 1 || ents[0].Name() != "ipvs-owned.json" {
		t.Errorf("state folder holds %v (temporary files left?)", ents)
	}
	st, err := os.Stat(g.state)
	must(t, err)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v", st.Mode())
	}
}

// TestConcurrentUse runs Apply, SetHealth, SetOverride, Tick, Resync and Status together
// (for the race detector).
func TestConcurrentUse(t *testing.T) {
	g := newRig(t, func(o *ipvs.Options) { o.OnEvent = nil })
	svcs := bulk(20)
	for i := range svcs {
		svcs[i].SlowStart = time.Second
		svcs[i].Quorum.MinUp = 1
	}
	g.apply(svcs...)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				s := svcs[(i+w)%len(svcs)]
				switch w {
				case 0:
					_ = g.rec.SetHealth(s.Key, s.Destinations[0].Addr, i%2 == 0)
				case 1:
					_ = g.rec.SetOverride(s.Key, s.Destinations[1].Addr, i%3 == 0)
				case 2:
					g.clock.Advance(100 * time.Millisecond)
					_ = g.rec.Tick()
					_ = g.rec.Status()
				case 3:
					if i%20 == 0 {
						_ = g.rec.Resync(t.Context())
						_ = g.rec.Apply(t.Context(), ipvs.Desired{Services: svcs})
					}
				}
			}
		})
	}
	wg.Wait()
	for _, s := range g.rec.Status().Services {
		if !s.InSync {
			t.Errorf("%s not in sync after concurrent use", s.Key)
		}
	}
}

func TestRunResyncsOnlyAfterApply(t *testing.T) {
	g := newRig(t, func(o *ipvs.Options) {
		o.ResyncInterval = 5 * time.Millisecond
		o.TickInterval = time.Millisecond
		o.OnEvent = nil
	})
	web := tcpKey("192.0.2.1:80")
	g.apply(service(web, masq("198.51.100.1:80", 1)))
	must(t, g.rec.Shutdown(t.Context()))

	// A restarted agent whose Run starts before its first Apply must not act on the empty
	// desired state (that would delete every owned service).
	g.rec = g.open(func(o *ipvs.Options) {
		o.ResyncInterval = 5 * time.Millisecond
		o.TickInterval = time.Millisecond
		o.OnEvent = nil
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- g.rec.Run(ctx) }()
	time.Sleep(50 * time.Millisecond)
	if c := g.rec.Counters(); c.Total != 0 || c.Resyncs != 0 {
		t.Errorf("Run before Apply: %+v", c)
	}
	if _, _, ok := g.fake.Service(web); !ok {
		t.Fatal("Run before Apply deleted an owned service")
	}
	g.apply(service(web, masq("198.51.100.1:80", 1)))
	g.fake.SetWeight(web, ap("198.51.100.1:80"), 9) // drift
	deadline := time.Now().Add(5 * time.Second)
	for g.weight(web, "198.51.100.1:80") != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if w := g.weight(web, "198.51.100.1:80"); w != 1 {
		t.Errorf("Run's resync did not correct the drift: weight %d", w)
	}
	if c := g.rec.Counters(); c.Resyncs < 2 {
		t.Errorf("resyncs %d", c.Resyncs)
	}
}

func TestReadService(t *testing.T) {
	g := newRig(t)
	web := tcpKey("192.0.2.1:80")
	g.apply(service(web, masq("198.51.100.1:80", 1)))
	g.fake.SetWeight(web, ap("198.51.100.1:80"), 5)
	total, _ := g.ops(func() {
		st, err := g.rec.ReadService(web)
		must(t, err)
		if st.InSync || st.Destinations[0].KernelWeight != 5 {
			t.Errorf("ReadService must show the kernel's drift: %+v", st)
		}
	})
	if total != 2 {
		t.Errorf("ReadService cost %d ops", total)
	}
	if _, err := g.rec.ReadService(tcpKey("192.0.2.9:80")); !errors.Is(err, ipvs.ErrUnknownService) {
		t.Errorf("unknown: %v", err)
	}
}
