package ipvs_test

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/ipvs"
	"github.com/fulcrum-lb/fulcrum/lab/kernel"
)

// TestKernelMatrix runs in its own lab guest (Debian's 6.1 kernel) and puts every forwarding
// method × every scheduler the kernel has × {tcp, udp, sctp, fwmark} × {IPv4, IPv6} into the
// kernel as ONE desired state, then changes all of them with one Apply and deletes all of them
// with one Apply. After each phase it reads the kernel back twice, through the package (the
// Reconciler's ReadService and the Kernel handle's dump) and through one `ipvsadm -Ln`, and
// compares both with the desired state exactly: service key, scheduler, forwarding method (as
// ipvsadm names it: Masq, Route, Tunnel) and weight.
func TestKernelMatrix(t *testing.T) {
	if kernel.RunInGuest(t) {
		return
	}
	ipvsadm, err := exec.LookPath("ipvsadm")
	if err != nil {
		t.Fatalf("ipvsadm not in the guest: %v (apt-get install ipvsadm on the host)", err)
	}
	matrixSetup(t)
	w := &witness{t: t, bin: ipvsadm}
	k, err := ipvs.Open(ipvs.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })

	// Which schedulers does this kernel have? Add a throwaway service with each (the kernel
	// loads ip_vs_<name> on demand) and delete it again.
	var avail []ipvs.Scheduler
	start := time.Now()
	rel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	release := strings.TrimSpace(string(rel))
	for _, s := range ipvs.Schedulers() {
		t.Run("Probe/"+string(s), func(t *testing.T) {
			key := ipvs.AddrKey(ipvs.TCP, netip.MustParseAddrPort("192.0.2.200:9"))
			err := k.NewService(ipvs.KernelService{Key: key, Scheduler: string(s), Netmask: 0xffffffff})
			if err == nil {
				if err := k.DelService(key); err != nil {
					t.Fatalf("delete the probe service: %v", err)
				}
				avail = append(avail, s)
				return
			}
			if !errors.Is(err, ipvs.ErrSchedulerUnavailable) {
				t.Fatalf("scheduler %s: %v (%T), want nil or ErrSchedulerUnavailable", s, err, err)
			}
			ko := fmt.Sprintf("/lib/modules/%s/kernel/net/netfilter/ipvs/ip_vs_%s.ko", release, s)
			if _, statErr := os.Stat(ko); statErr == nil {
				t.Errorf("scheduler %s: %v, yet %s exists", s, err, ko)
			}
			t.Skipf("kernel %s lacks scheduler %s: %v", release, s, err)
		})
	}
	t.Logf("schedulers available on %s: %v (probed in %v)", release, avail, time.Since(start).Round(time.Millisecond))
	if len(avail) < 2 {
		t.Fatalf("need at least two schedulers, have %v", avail)
	}
	if slices.Contains(avail, ipvs.WeightedRandomTwoChoices) && strings.HasPrefix(release, "6.1.") {
		t.Errorf("twos on %s: the kernel took it", release)
	}

	desired, combos := matrixDesired(avail)
	n := len(desired.Services)
	t.Logf("matrix: %d forwarding methods × %d schedulers × 4 protocols × 2 families = %d combinations (one service and one destination each)",
		3, len(avail), n)

	rec, err := ipvs.New(ipvs.Options{Kernel: k})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rec.Shutdown(t.Context()) })

	// phase applies d with one Apply, logs and checks its cost, then reads back both ways.
	phase := func(name string, d ipvs.Desired, wantMut map[ipvs.OpKind]uint64) {
		t.Helper()
		before := rec.Counters()
		start := time.Now()
		if err := rec.Apply(t.Context(), d); err != nil {
			t.Fatalf("%s: Apply: %v", name, err)
		}
		applied := time.Since(start)
		after := rec.Counters()
		delta := map[ipvs.OpKind]uint64{}
		for _, op := range ipvs.OpKinds() {
			if v := after.Ops[op] - before.Ops[op]; v != 0 {
				delta[op] = v
			}
		}
		t.Logf("%s: %d services, Apply %d ops (%d mutations) in %v: %v",
			name, len(d.Services), after.Total-before.Total, after.Mutations-before.Mutations, applied.Round(time.Millisecond), delta)
		for op, v := range wantMut {
			if delta[op] != v {
				t.Errorf("%s: %d %s ops, want %d", name, delta[op], op, v)
			}
		}
		var mut uint64
		for op, v := range delta {
			if op.Mutating() {
				mut += v
				if _, ok := wantMut[op]; !ok {
					t.Errorf("%s: unexpected %d %s ops", name, v, op)
				}
			}
		}
		if after.Errors != before.Errors {
			t.Errorf("%s: %d failed operations: %s", name, after.Errors-before.Errors, after.LastError)
		}
		start = time.Now()
		matrixReadBack(t, name, rec, k, w, d)
		t.Logf("%s: read back (ReadService ×%d, kernel dump, ipvsadm -Ln) in %v", name, len(d.Services), time.Since(start).Round(time.Millisecond))
	}

	total := time.Now()
	phase("create", desired, map[ipvs.OpKind]uint64{ipvs.OpNewService: uint64(n), ipvs.OpNewDestination: uint64(n)})

	// Every combination gets the next available scheduler and weight 5.
	for i := range desired.Services {
		s := &desired.Services[i]
		j := slices.Index(avail, s.Scheduler)
		s.Scheduler = avail[(j+1)%len(avail)]
		s.Destinations[0].Weight = 5
	}
	phase("update", desired, map[ipvs.OpKind]uint64{ipvs.OpUpdateService: uint64(n), ipvs.OpUpdateDestination: uint64(n)})

	phase("delete", ipvs.Desired{}, map[ipvs.OpKind]uint64{ipvs.OpDelService: uint64(n)})
	if st := rec.Status(); len(st.Services) != 0 || st.Owned != 0 || len(st.Orphans) != 0 {
		t.Errorf("after deleting all: Status has %d services, %d owned, orphans %v", len(st.Services), st.Owned, st.Orphans)
	}
	for _, c := range combos[:3] {
		if _, err := rec.ReadService(c); !errors.Is(err, ipvs.ErrUnknownService) {
			t.Errorf("ReadService(%s) after delete: %v, want ErrUnknownService", c, err)
		}
	}
	t.Logf("matrix: %d combinations created, updated and deleted in %v", n, time.Since(total).Round(time.Millisecond))
}

// matrixDesired is one service per forwarding method × scheduler × protocol × family, each with
// one destination of weight 1 on the dummy link, with distinct ports (address services) and
// marks (firewall-mark services). It also returns the keys in order.
func matrixDesired(scheds []ipvs.Scheduler) (ipvs.Desired, []ipvs.ServiceKey) {
	var d ipvs.Desired
	var keys []ipvs.ServiceKey
	vip := map[ipvs.Family]netip.Addr{ipvs.IPv4: netip.MustParseAddr("192.0.2.1"), ipvs.IPv6: netip.MustParseAddr("2001:db8:2::1")}
	i := 0
	for _, fwd := range []ipvs.Forwarding{ipvs.Masq, ipvs.Route, ipvs.Tunnel} {
		for _, s := range scheds {
			for _, proto := range []string{"tcp", "udp", "sctp", "fwmark"} {
				for _, fam := range []ipvs.Family{ipvs.IPv4, ipvs.IPv6} {
					i++
					port := uint16(1000 + i)
					var rip netip.Addr
					if fam == ipvs.IPv4 {
						rip = netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + i%250)})
					} else {
						rip = netip.MustParseAddr("2001:db8:1::" + strconv.FormatInt(int64(i), 16))
					}
					var key ipvs.ServiceKey
					dport := port
					switch proto {
					case "fwmark":
						key = ipvs.MarkKey(uint32(1000+i), fam)
						dport = 0
					default:
						p, _ := ipvs.ParseProtocol(proto)
						key = ipvs.AddrKey(p, netip.AddrPortFrom(vip[fam], port))
						if fwd == ipvs.Masq {
							dport = port + 20000 // NAT may change the port
						}
					}
					keys = append(keys, key)
					d.Services = append(d.Services, ipvs.Service{
						Key: key, Scheduler: s,
						Destinations: []ipvs.Destination{{Addr: netip.AddrPortFrom(rip, dport), Weight: 1, Forwarding: fwd}},
					})
				}
			}
		}
	}
	return d, keys
}

// matrixWant is the set of facts the kernel must show for d: "KEY SCHED" per service and
// "KEY SCHED -> DEST FWD WEIGHT" per destination, with ipvsadm's names for the methods.
func matrixWant(d ipvs.Desired) map[string]bool {
	want := map[string]bool{}
	for _, s := range d.Services {
		want[s.Key.String()+" "+string(s.Scheduler)] = true
		for _, dst := range s.Destinations {
			fwd := map[ipvs.Forwarding]string{ipvs.Masq: "Masq", ipvs.Route: "Route", ipvs.Tunnel: "Tunnel"}[dst.Forwarding]
			want[fmt.Sprintf("%s %s -> %s %s %d", s.Key, s.Scheduler, dst.Addr, fwd, dst.Weight)] = true
		}
	}
	return want
}

// matrixReadBack reads the kernel through the package (ReadService of every desired service,
// and one dump through the Kernel handle) and through one ipvsadm -Ln, and fails t unless each
// reading equals what d asks for.
func matrixReadBack(t *testing.T, phase string, rec *ipvs.Reconciler, k ipvs.Kernel, w *witness, d ipvs.Desired) {
	t.Helper()
	want := matrixWant(d)

	// The Reconciler: a fresh kernel read per service, in sync with the target.
	bad := 0
	for _, s := range d.Services {
		st, err := rec.ReadService(s.Key)
		if err != nil {
			t.Errorf("%s: ReadService(%s): %v", phase, s.Key, err)
			bad++
			continue
		}
		ok := st.InKernel && st.InSync && st.Scheduler == s.Scheduler && len(st.Destinations) == len(s.Destinations)
		for i, ds := range st.Destinations {
			if i >= len(s.Destinations) {
				break
			}
			want := s.Destinations[i]
			if !ds.InKernel || ds.Addr != want.Addr || ds.KernelWeight != want.Weight || ds.Forwarding != want.Forwarding.String() {
				ok = false
			}
		}
		if !ok {
			bad++
			if bad <= 10 {
				t.Errorf("%s: ReadService(%s) = %+v, want %+v", phase, s.Key, st, s)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%s: ReadService disagrees for %d of %d services", phase, bad, len(d.Services))
	}

	// The Kernel handle: one dump of all services, then each one's destinations.
	svcs, err := k.GetServices()
	if err != nil {
		t.Fatalf("%s: GetServices: %v", phase, err)
	}
	dump := map[string]bool{}
	for _, s := range svcs {
		dump[s.Key.String()+" "+s.Scheduler] = true
		dests, err := k.GetDestinations(s.Key)
		if err != nil {
			t.Fatalf("%s: GetDestinations(%s): %v", phase, s.Key, err)
		}
		for _, dst := range dests {
			dump[fmt.Sprintf("%s %s -> %s %s %d", s.Key, s.Scheduler, dst.Addr, ipvs.FwdName(dst.FwdMethod), dst.Weight)] = true
		}
	}
	matrixCompare(t, phase+": kernel dump", dump, want)

	// ipvsadm, once.
	out := w.run("-Ln")
	adm, err := parseIpvsadm(out)
	if err != nil {
		t.Fatalf("%s: %v\n%s", phase, err, out)
	}
	matrixCompare(t, phase+": ipvsadm -Ln", adm, want)
	t.Logf("%s: %d facts (services + destinations) agree: desired, kernel dump (%d services), ipvsadm -Ln", phase, len(want), len(svcs))
}

// matrixCompare fails t, listing up to 20 differences, unless got equals want.
func matrixCompare(t *testing.T, what string, got, want map[string]bool) {
	t.Helper()
	if maps.Equal(got, want) {
		return
	}
	var diff []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if !got[k] {
			diff = append(diff, "  missing    "+k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if !want[k] {
			diff = append(diff, "  unexpected "+k)
		}
	}
	more := ""
	if len(diff) > 20 {
		more = fmt.Sprintf("\n  ... and %d more", len(diff)-20)
		diff = diff[:20]
	}
	t.Errorf("%s differs from the desired state (%d facts, want %d):\n%s%s", what, len(got), len(want), strings.Join(diff, "\n"), more)
}

// parseIpvsadm turns ipvsadm -Ln output into the facts matrixWant makes: service lines
// ("TCP  192.0.2.1:1001 rr", "FWM  1004 IPv6 wlc") become "tcp/192.0.2.1:1001 rr" and
// "fwmark/ipv6/1004 wlc"; destination lines ("-> 198.51.100.1:21001 Masq 1 0 0") add
// " -> ADDR FWD WEIGHT" to their service's. Options after the scheduler (persistent, flags)
// are an error: the matrix sets none.
func parseIpvsadm(out string) (map[string]bool, error) {
	facts := map[string]bool{}
	cur := ""
	for i, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if i < 3 || len(f) == 0 {
			continue // version and the two header lines
		}
		if f[0] == "->" {
			if cur == "" || len(f) != 6 {
				return nil, fmt.Errorf("ipvsadm line %d %q: not a destination of a service", i+1, line)
			}
			facts[fmt.Sprintf("%s -> %s %s %s", cur, f[1], f[2], f[3])] = true
			continue
		}
		var key, sched string
		switch {
		case f[0] == "FWM" && len(f) == 3:
			key, sched = "fwmark/ipv4/"+f[1], f[2]
		case f[0] == "FWM" && len(f) == 4 && f[2] == "IPv6":
			key, sched = "fwmark/ipv6/"+f[1], f[3]
		case (f[0] == "TCP" || f[0] == "UDP" || f[0] == "SCTP") && len(f) == 3:
			key, sched = strings.ToLower(f[0])+"/"+f[1], f[2]
		default:
			return nil, fmt.Errorf("ipvsadm line %d %q: not a service line the matrix makes", i+1, line)
		}
		cur = key + " " + sched
		facts[cur] = true
	}
	return facts, nil
}

// matrixSetup loads IPVS and gives the destinations a route: a dummy link with
// 198.51.100.254/24 and 2001:db8:1::fe/64 (and the VIP networks 192.0.2.0/24 and
// 2001:db8:2::/64, though IPVS does not need them).
func matrixSetup(t *testing.T) {
	t.Helper()
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	_ = exec.Command("modprobe", "crc32c_generic").Run() // see guestSetup
	sh("modprobe", "ip_vs")
	sh("ip", "link", "add", "fmx0", "type", "dummy")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", "fmx0").Run() })
	sh("ip", "link", "set", "fmx0", "up")
	sh("ip", "addr", "add", "198.51.100.254/24", "dev", "fmx0")
	sh("ip", "addr", "add", "192.0.2.254/24", "dev", "fmx0")
	sh("ip", "-6", "addr", "add", "2001:db8:1::fe/64", "dev", "fmx0", "nodad")
	sh("ip", "-6", "addr", "add", "2001:db8:2::fe/64", "dev", "fmx0", "nodad")
}
