package ipvs_test

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/ipvs"
	"github.com/fulcrum-lb/fulcrum/lab/kernel"
)

// TestProbeOnHostWithoutIPVS runs on the host, whose kernel (on this project's machines) has
// no IPVS: Probe and Open must say so, typed, instead of pretending.
func TestProbeOnHostWithoutIPVS(t *testing.T) {
	if kernel.InGuest() {
		t.Skip("host-only test: the lab guest has IPVS")
	}
	if _, err := os.Stat("/proc/net/ip_vs"); err == nil {
		t.Skip("this host's kernel has IPVS loaded; the no-IPVS case cannot be shown here")
	}
	err := ipvs.Probe()
	if !errors.Is(err, ipvs.ErrUnavailable) {
		t.Fatalf("Probe on a kernel without IPVS: %v, want ErrUnavailable", err)
	}
	if !strings.HasPrefix(err.Error(), "IPVS not available: the kernel has no ip_vs (modprobe ip_vs?)") {
		t.Errorf("message %q", err)
	}
	t.Logf("Probe: %v", err)
	k, err := ipvs.Open(ipvs.OpenOptions{})
	if !errors.Is(err, ipvs.ErrUnavailable) || k != nil {
		t.Errorf("Open on a kernel without IPVS: %v, %v", k, err)
	}
}

// TestKernelIPVS runs in one lab guest (Debian's 6.1 kernel, real IPVS) and checks every
// result with ipvsadm, an independent reader of the kernel's tables. The subtests share the
// boot and build on each other, in order.
func TestKernelIPVS(t *testing.T) {
	if kernel.RunInGuest(t) {
		return
	}
	ipvsadm, err := exec.LookPath("ipvsadm")
	if err != nil {
		t.Fatalf("ipvsadm not in the guest: %v (apt-get install ipvsadm on the host)", err)
	}
	guestSetup(t)
	w := &witness{t: t, bin: ipvsadm}

	t.Run("Probe", func(t *testing.T) {
		if err := ipvs.Probe(); err != nil {
			t.Fatal(err)
		}
	})
	k, err := ipvs.Open(ipvs.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })

	t.Run("Contract", func(t *testing.T) { kernelContract(t, k) })

	// An unowned service, as another tool would add it.
	w.run("-A", "-t", "203.0.113.50:25", "-s", "rr")
	w.run("-a", "-t", "203.0.113.50:25", "-r", "198.51.100.99:25", "-m", "-w", "4")
	unowned := "TCP 203.0.113.50:25 rr"
	unownedDests := []string{"-> 198.51.100.99:25 Masq 4"}

	state := filepath.Join(t.TempDir(), "ipvs-owned.json")
	open := func(mod ...func(*ipvs.Options)) *ipvs.Reconciler {
		opts := ipvs.Options{Kernel: k, StateFile: state}
		for _, m := range mod {
			m(&opts)
		}
		r, err := ipvs.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	desired := mixedDesired()
	want := map[string][]string{
		"TCP 192.0.2.1:80 mh (mh-fallback,mh-port)": {
			"-> 198.51.100.10:8080 Masq 5", "-> 198.51.100.11:80 Route 2", "-> 198.51.100.12:80 Tunnel 3"},
		"UDP 192.0.2.1:53 sh (sh-port)":                            {"-> 198.51.100.20:53 Route 1"},
		"SCTP 192.0.2.1:5000 rr persistent 300 mask 255.255.255.0": {"-> 198.51.100.30:5000 Masq 1"},
		"FWM 10 wlc":                            {"-> 198.51.100.40:0 Route 1"},
		"FWM 11 IPv6 wlc persistent 60 mask 64": {"-> [2001:db8:100::40]:0 Route 1"},
		"TCP [2001:db8::1]:443 wrr":             {"-> [2001:db8:100::10]:443 Masq 1", "-> [2001:db8:100::11]:443 Tunnel 2"},
		unowned:                                 unownedDests,
	}
	web := desired.Services[0].Key

	var rec *ipvs.Reconciler
	t.Run("ApplyMixed", func(t *testing.T) {
		rec = open()
		start := time.Now()
		if err := rec.Apply(t.Context(), desired); err != nil {
			t.Fatal(err)
		}
		c := rec.Counters()
		t.Logf("applied 6 services, 9 destinations, timeouts: %d ops (%d mutations) in %v", c.Total, c.Mutations, time.Since(start))
		w.expect(want)
		if th := w.table("--thresholds"); !slices.Contains(th["TCP 192.0.2.1:80 mh (mh-fallback,mh-port)"], "-> 198.51.100.10:8080 100 10") {
			t.Errorf("thresholds: %v", th)
		}
		if out := w.run("-Ln", "--timeout"); !strings.Contains(out, "Timeout (tcp tcpfin udp): 3600 60 120") {
			t.Errorf("timeouts: %s", out)
		}
		for _, s := range rec.Status().Services {
			if !s.InSync {
				t.Errorf("%s not in sync", s.Key)
			}
		}
	})
	if rec == nil {
		t.FailNow()
	}

	t.Run("RestartAdoptsWithoutDelete", func(t *testing.T) {
		if err := rec.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		w.expect(want) // Shutdown leaves services by default
		rec = open()
		if err := rec.Apply(t.Context(), desired); err != nil {
			t.Fatal(err)
		}
		c := rec.Counters()
		t.Logf("restart: %v", c.Ops)
		if c.Mutations != 0 || c.Ops[ipvs.OpDelService] != 0 || c.Ops[ipvs.OpDelDestination] != 0 {
			t.Errorf("restart changed the kernel: %v", c.Ops)
		}
		// One dump, the destinations of the 6 owned services, the timeouts.
		if c.Ops[ipvs.OpGetServices] != 1 || c.Ops[ipvs.OpGetDestinations] != 6 || c.Total != 8 {
			t.Errorf("restart read ops %v", c.Ops)
		}
		w.expect(want)
	})

	t.Run("WeightChange", func(t *testing.T) {
		desired.Services[0].Destinations[0].Weight = 9
		before := rec.Counters()
		if err := rec.Apply(t.Context(), desired); err != nil {
			t.Fatal(err)
		}
		after := rec.Counters()
		if d := after.Total - before.Total; d != 1 || after.Ops[ipvs.OpUpdateDestination]-before.Ops[ipvs.OpUpdateDestination] != 1 {
			t.Errorf("weight change cost %d ops: %v", d, after.Ops)
		}
		want["TCP 192.0.2.1:80 mh (mh-fallback,mh-port)"][0] = "-> 198.51.100.10:8080 Masq 9"
		w.expect(want)
	})

	t.Run("Drain", func(t *testing.T) {
		if err := rec.SetOverride(web, ap("198.51.100.11:80"), true); err != nil {
			t.Fatal(err)
		}
		want["TCP 192.0.2.1:80 mh (mh-fallback,mh-port)"][1] = "-> 198.51.100.11:80 Route 0"
		w.expect(want)
		// A failed health check under the remove policy takes the destination out.
		v6 := desired.Services[5].Key
		if err := rec.SetHealth(v6, ap("[2001:db8:100::11]:443"), false); err != nil {
			t.Fatal(err)
		}
		want["TCP [2001:db8::1]:443 wrr"] = []string{"-> [2001:db8:100::10]:443 Masq 1"}
		w.expect(want)
		if err := rec.SetHealth(v6, ap("[2001:db8:100::11]:443"), true); err != nil {
			t.Fatal(err)
		}
		want["TCP [2001:db8::1]:443 wrr"] = []string{"-> [2001:db8:100::10]:443 Masq 1", "-> [2001:db8:100::11]:443 Tunnel 2"}
		w.expect(want)
	})

	t.Run("DriftCorrectedByResync", func(t *testing.T) {
		w.run("-e", "-t", "192.0.2.1:80", "-r", "198.51.100.12:80", "-i", "-w", "77")
		w.run("-d", "-u", "192.0.2.1:53", "-r", "198.51.100.20:53")
		if err := rec.Resync(t.Context()); err != nil {
			t.Fatal(err)
		}
		w.expect(want)
	})

	t.Run("StatsFromTraffic", func(t *testing.T) {
		// A local client's SYN to the VIP goes through IPVS (LOCAL_OUT) and is scheduled to a
		// destination behind the dummy link, where it vanishes: one connection counted.
		c, err := net.DialTimeout("tcp", "192.0.2.1:80", 300*time.Millisecond)
		if err == nil {
			c.Close()
		}
		// The kernel folds its per-CPU counters into what it reports every 2 s (the rate
		// estimator's timer), so wait for them.
		var st ipvs.ServiceStatus
		var dconns uint64
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
			if st, err = rec.ReadService(web); err != nil {
				t.Fatal(err)
			}
			dconns = 0
			for _, d := range st.Destinations {
				dconns += d.Stats.Conns
			}
			if st.Stats.Conns > 0 && dconns > 0 {
				break
			}
		}
		t.Logf("service stats %+v; destination conns %d", st.Stats, dconns)
		if st.Stats.Conns < 1 || st.Stats.PacketsIn < 1 || dconns < 1 {
			t.Errorf("no connection counted: %+v", st.Stats)
		}
		if out := w.run("-Ln", "--stats", "-t", "192.0.2.1:80"); !statsConns(out, st.Stats.Conns) {
			t.Errorf("ipvsadm --stats disagrees (%d conns):\n%s", st.Stats.Conns, out)
		}
	})

	t.Run("Remove", func(t *testing.T) {
		desired.Services[0].Destinations = desired.Services[0].Destinations[:2]
		desired.Services = slices.Delete(desired.Services, 3, 4) // FWM 10
		before := rec.Counters()
		if err := rec.Apply(t.Context(), desired); err != nil {
			t.Fatal(err)
		}
		after := rec.Counters()
		if after.Mutations-before.Mutations != 2 {
			t.Errorf("remove cost %d mutations: %v", after.Mutations-before.Mutations, after.Ops)
		}
		want["TCP 192.0.2.1:80 mh (mh-fallback,mh-port)"] = want["TCP 192.0.2.1:80 mh (mh-fallback,mh-port)"][:2]
		delete(want, "FWM 10 wlc")
		w.expect(want)
	})

	t.Run("SchedulerUnavailable", func(t *testing.T) {
		rel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
		if _, err := os.Stat(fmt.Sprintf("/lib/modules/%s/kernel/net/netfilter/ipvs/ip_vs_twos.ko", strings.TrimSpace(string(rel)))); err == nil {
			t.Skip("this kernel has twos")
		}
		d := ipvs.Desired{Timeouts: desired.Timeouts,
			Services: append(slices.Clone(desired.Services), ipvs.Service{Key: tcpKey("192.0.2.7:80"), Scheduler: ipvs.WeightedRandomTwoChoices})}
		err := rec.Apply(t.Context(), d)
		if !errors.Is(err, ipvs.ErrSchedulerUnavailable) {
			t.Fatalf("twos on 6.1: %v", err)
		}
		t.Logf("%v", err)
		w.expect(want) // nothing else changed
		if err := rec.Apply(t.Context(), desired); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Bulk1000", func(t *testing.T) {
		svcs := append(slices.Clone(desired.Services), bulk(1000)...)
		d := ipvs.Desired{Services: svcs, Timeouts: desired.Timeouts}
		before := rec.Counters()
		start := time.Now()
		if err := rec.Apply(t.Context(), d); err != nil {
			t.Fatal(err)
		}
		load := time.Since(start)
		mid := rec.Counters()
		t.Logf("bulk load: 1,000 services + 2,000 destinations, %d mutations in %v (%.0f µs/op, TCG-emulated guest)",
			mid.Mutations-before.Mutations, load, float64(load.Microseconds())/float64(mid.Mutations-before.Mutations))
		if mid.Mutations-before.Mutations != 3000 {
			t.Errorf("bulk load mutations %d", mid.Mutations-before.Mutations)
		}
		svcs[len(svcs)-500].Destinations[1].Weight = 42
		start = time.Now()
		if err := rec.Apply(t.Context(), d); err != nil {
			t.Fatal(err)
		}
		one := time.Since(start)
		after := rec.Counters()
		t.Logf("one weight change among %d services: %d op (%v) in %v", len(svcs), after.Total-mid.Total, after.Ops[ipvs.OpUpdateDestination]-mid.Ops[ipvs.OpUpdateDestination], one)
		if after.Total-mid.Total != 1 {
			t.Errorf("weight change cost %d ops", after.Total-mid.Total)
		}
		key := svcs[len(svcs)-500].Key
		out := w.run("-Ln", "-t", key.Addr.String())
		if !strings.Contains(collapse(out), "-> "+svcs[len(svcs)-500].Destinations[1].Addr.String()+" Masq 42 ") {
			t.Errorf("ipvsadm does not show weight 42:\n%s", out)
		}
		start = time.Now()
		if err := rec.Resync(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Logf("full resync of %d owned services: %v, %d corrections", len(svcs), time.Since(start), rec.Counters().Mutations-after.Mutations)
		if n := len(w.table()); n != len(svcs)+1 {
			t.Errorf("ipvsadm lists %d services, want %d", n, len(svcs)+1)
		}
	})

	t.Run("RemoveOnShutdown", func(t *testing.T) {
		if err := rec.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		r := open(func(o *ipvs.Options) { o.RemoveOnShutdown = true })
		if err := r.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		w.expect(map[string][]string{unowned: unownedDests})
	})
}

// mixedDesired: TCP, UDP, SCTP and firewall-mark services, IPv4 and IPv6, several schedulers,
// mh with flags, persistence, NAT, DR and tunnel destinations, thresholds, timeouts.
func mixedDesired() ipvs.Desired {
	return ipvs.Desired{
		Timeouts: ipvs.Timeouts{TCP: time.Hour, TCPFin: time.Minute, UDP: 2 * time.Minute},
		Services: []ipvs.Service{
			{Key: tcpKey("192.0.2.1:80"), Scheduler: ipvs.MaglevHashing, Flags: ipvs.MHFallback | ipvs.MHPort,
				Destinations: []ipvs.Destination{
					{Addr: ap("198.51.100.10:8080"), Weight: 5, Forwarding: ipvs.Masq, UpperThreshold: 100, LowerThreshold: 10},
					{Addr: ap("198.51.100.11:0"), Weight: 2, Forwarding: ipvs.Route},
					{Addr: ap("198.51.100.12:80"), Weight: 3, Forwarding: ipvs.Tunnel},
				}},
			{Key: ipvs.AddrKey(ipvs.UDP, ap("192.0.2.1:53")), Scheduler: ipvs.SourceHashing, Flags: ipvs.SHPort,
				Destinations: []ipvs.Destination{{Addr: ap("198.51.100.20:53"), Weight: 1, Forwarding: ipvs.Route}}},
			{Key: ipvs.AddrKey(ipvs.SCTP, ap("192.0.2.1:5000")), Scheduler: ipvs.RoundRobin,
				Persistence:  ipvs.Persistence{Timeout: 300 * time.Second, Prefix: 24},
				Destinations: []ipvs.Destination{{Addr: ap("198.51.100.30:5000"), Weight: 1, Forwarding: ipvs.Masq}}},
			{Key: ipvs.MarkKey(10, ipvs.IPv4), Scheduler: ipvs.WeightedLeastConnection,
				Destinations: []ipvs.Destination{{Addr: ap("198.51.100.40:0"), Weight: 1, Forwarding: ipvs.Route}}},
			{Key: ipvs.MarkKey(11, ipvs.IPv6), Scheduler: ipvs.WeightedLeastConnection,
				Persistence:  ipvs.Persistence{Timeout: time.Minute, Prefix: 64},
				Destinations: []ipvs.Destination{{Addr: ap("[2001:db8:100::40]:0"), Weight: 1, Forwarding: ipvs.Route}}},
			{Key: ipvs.AddrKey(ipvs.TCP, ap("[2001:db8::1]:443")), Scheduler: ipvs.WeightedRoundRobin, OnFailure: ipvs.Remove,
				Destinations: []ipvs.Destination{
					{Addr: ap("[2001:db8:100::10]:443"), Weight: 1, Forwarding: ipvs.Masq},
					{Addr: ap("[2001:db8:100::11]:443"), Weight: 2, Forwarding: ipvs.Tunnel},
				}},
		},
	}
}

// guestSetup loads IPVS and gives the destinations and VIPs a route: a dummy link with
// 198.51.100.254/24, 192.0.2.254/24 and 2001:db8:100::fe/64 (NAT destinations must be
// routable).
func guestSetup(t *testing.T) {
	t.Helper()
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// With busybox's modprobe libcrc32c needs crc32c_generic first; kmod's resolves it, but
	// loading it first is harmless.
	_ = exec.Command("modprobe", "crc32c_generic").Run()
	sh("modprobe", "ip_vs")
	sh("ip", "link", "add", "flab0", "type", "dummy")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", "flab0").Run() })
	sh("ip", "link", "set", "flab0", "up")
	sh("ip", "addr", "add", "198.51.100.254/24", "dev", "flab0")
	sh("ip", "addr", "add", "192.0.2.254/24", "dev", "flab0")
	sh("ip", "-6", "addr", "add", "2001:db8:100::fe/64", "dev", "flab0", "nodad")
}

// witness reads the kernel's IPVS tables with ipvsadm.
type witness struct {
	t   *testing.T
	bin string
}

func (w *witness) run(args ...string) string {
	w.t.Helper()
	out, err := exec.Command(w.bin, args...).CombinedOutput()
	if err != nil {
		w.t.Fatalf("ipvsadm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// table parses ipvsadm -Ln (plus extra options): service line -> its destination lines
// without the connection counts, with runs of spaces collapsed and the destinations sorted.
func (w *witness) table(extra ...string) map[string][]string {
	w.t.Helper()
	out := w.run(append([]string{"-Ln"}, extra...)...)
	tab := map[string][]string{}
	var cur string
	for i, line := range strings.Split(out, "\n") {
		if i < 3 || strings.TrimSpace(line) == "" {
			continue // version and the two header lines
		}
		l := collapse(line)
		if strings.HasPrefix(l, "-> ") {
			// Leave out the last two columns, the connection counts (ActiveConn InActConn):
			// they follow traffic, not configuration.
			f := strings.Fields(l)
			tab[cur] = append(tab[cur], strings.Join(f[:len(f)-2], " "))
			continue
		}
		cur = l
		tab[cur] = nil
	}
	for k := range tab {
		slices.Sort(tab[k])
	}
	return tab
}

// expect fails the test unless ipvsadm -Ln shows exactly want.
func (w *witness) expect(want map[string][]string) {
	w.t.Helper()
	got := w.table()
	norm := map[string][]string{}
	for k, v := range want {
		v = slices.Clone(v)
		slices.Sort(v)
		if len(v) == 0 {
			v = nil
		}
		norm[k] = v
	}
	if maps.EqualFunc(got, norm, slices.Equal) {
		return
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(norm)) {
		if g, ok := got[k]; !ok {
			fmt.Fprintf(&b, "  missing %q\n", k)
		} else if !slices.Equal(g, norm[k]) {
			fmt.Fprintf(&b, "  %q: got %q, want %q\n", k, g, norm[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := norm[k]; !ok {
			fmt.Fprintf(&b, "  unexpected %q %q\n", k, got[k])
		}
	}
	w.t.Errorf("ipvsadm -Ln differs:\n%s--- ipvsadm -Ln:\n%s", b.String(), w.run("-Ln"))
}

func collapse(s string) string { return strings.Join(strings.Fields(s), " ") }

// statsConns reports whether ipvsadm --stats output shows the service with n connections.
func statsConns(out string, n uint64) bool {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == "TCP" && f[1] == "192.0.2.1:80" {
			return f[2] == fmt.Sprint(n)
		}
	}
	return false
}
