package ipvsbench

import (
	"context"
	"fmt"
	"net/netip"
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

// The rule set.
const (
	services     = 10000
	destinations = 4
	portsPerAddr = 250
	rounds       = 3
	scheduler    = "wlc"
)

// serviceAddr is the address of service i: 203.0.113.(1+i/250):(10000+i%250).
func serviceAddr(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + i/portsPerAddr)}), uint16(10000+i%portsPerAddr))
}

// destAddr is destination j of every service: 198.51.100.(10+j):80.
func destAddr(j int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + j)}), 80)
}

// desired is the rule set as an ipvs.Desired.
func desired() ipvs.Desired {
	d := ipvs.Desired{Services: make([]ipvs.Service, services)}
	for i := range services {
		s := ipvs.Service{Key: ipvs.AddrKey(ipvs.TCP, serviceAddr(i)), Scheduler: scheduler, Destinations: make([]ipvs.Destination, destinations)}
		for j := range destinations {
			s.Destinations[j] = ipvs.Destination{Addr: destAddr(j), Weight: 1, Forwarding: ipvs.Masq}
		}
		d.Services[i] = s
	}
	return d
}

// rules is the same rule set as ipvsadm -R input.
func rules() string {
	var b strings.Builder
	b.Grow(services * (destinations + 1) * 56)
	for i := range services {
		vs := serviceAddr(i).String()
		fmt.Fprintf(&b, "-A -t %s -s %s\n", vs, scheduler)
		for j := range destinations {
			fmt.Fprintf(&b, "-a -t %s -r %s -m -w 1\n", vs, destAddr(j))
		}
	}
	return b.String()
}

func run(t *testing.T, stdin string, name string, args ...string) (string, time.Duration) {
	t.Helper()
	cmd := exec.Command(name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), took
}

// netns is a fresh network namespace for one trial: IPVS tables are per namespace, and so is
// the kernel's trash of deleted destinations, which the kernel keeps for minutes and scans on
// every destination add. Flushing a table (ipvsadm -C) between trials would leave 40,000
// destinations in that trash and slow the next trial down several times; a new namespace per
// trial starts each one from the same clean state.
type netns struct{ name string }

var nsCount int

func newNetns(t *testing.T) *netns {
	t.Helper()
	nsCount++
	n := &netns{name: fmt.Sprintf("fbench%d", nsCount)}
	run(t, "", "ip", "netns", "add", n.name)
	t.Cleanup(n.del)
	// NAT destinations must be routable: a dummy interface on their network.
	run(t, "", "ip", "-n", n.name, "link", "add", "bench0", "type", "dummy")
	run(t, "", "ip", "-n", n.name, "link", "set", "bench0", "up")
	run(t, "", "ip", "-n", n.name, "addr", "add", "198.51.100.1/24", "dev", "bench0")
	return n
}

func (n *netns) path() string { return "/run/netns/" + n.name }

// del removes the namespace, and with it its IPVS table, then gives the kernel's namespace
// cleanup (a work queue) a moment, so that it does not run during the next trial; an IPVS
// table left in place would also cost the kernel's rate estimator time every 2 seconds.
func (n *netns) del() {
	if n.name == "" {
		return
	}
	_ = exec.Command("ip", "netns", "del", n.name).Run()
	n.name = ""
	time.Sleep(3 * time.Second)
}

// ipvsadm runs ipvsadm in the namespace.
func (n *netns) ipvsadm(t *testing.T, stdin string, args ...string) (string, time.Duration) {
	t.Helper()
	return run(t, stdin, "ip", append([]string{"netns", "exec", n.name, "ipvsadm"}, args...)...)
}

// counts returns the service and destination lines of ipvsadm -Ln in the namespace.
func (n *netns) counts(t *testing.T) (svcs, dests int) {
	t.Helper()
	out, _ := n.ipvsadm(t, "", "-Ln")
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, "TCP "):
			svcs++
		case strings.HasPrefix(strings.TrimSpace(l), "-> ") && !strings.Contains(l, "RemoteAddress"):
			dests++
		}
	}
	return svcs, dests
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func opsString(c ipvs.Counters) string {
	var parts []string
	for _, k := range ipvs.OpKinds() {
		if n := c.Ops[k]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, n))
		}
	}
	return strings.Join(parts, ", ")
}

func diff(after, before ipvs.Counters) ipvs.Counters {
	d := ipvs.Counters{Ops: map[ipvs.OpKind]uint64{}, Total: after.Total - before.Total, Mutations: after.Mutations - before.Mutations}
	for k, v := range after.Ops {
		if n := v - before.Ops[k]; n > 0 {
			d.Ops[k] = n
		}
	}
	return d
}

// TestIPVSApply is the benchmark (see the package documentation). On the host it moves
// itself into one lab guest.
func TestIPVSApply(t *testing.T) {
	if !kernel.InGuest() {
		if os.Getenv("FULCRUM_BENCH") != "1" {
			t.Skip("IPVS apply benchmark (kernel lab guest, a few minutes): set FULCRUM_BENCH=1 or run `make bench`")
		}
		if testing.Short() {
			t.Skip("IPVS apply benchmark: skipped with -short")
		}
	}
	if kernel.RunInGuest(t) {
		return
	}
	if _, err := exec.LookPath("ipvsadm"); err != nil {
		t.Fatalf("ipvsadm not in the guest: %v (apt-get install ipvsadm on the host)", err)
	}
	_ = exec.Command("modprobe", "crc32c_generic").Run()
	run(t, "", "modprobe", "ip_vs")
	run(t, "", "modprobe", "ip_vs_"+scheduler)

	want := desired()
	text := rules()
	report := func(format string, args ...any) { t.Logf(format, args...) }
	report("IPVS apply benchmark: %d services x %d destinations (%d kernel objects), scheduler %s, NAT; "+
		"kernel lab guest (TCG, 1 vCPU); %d rounds, alternating, each trial in a fresh network namespace",
		services, destinations, services*(destinations+1), scheduler, rounds)

	var admTimes, recTimes []time.Duration
	var rec *ipvs.Reconciler
	var k *ipvs.Netlink
	var ns *netns
	var applied ipvs.Counters
	var lastState string
	ctx := context.Background()
	for r := range rounds {
		an := newNetns(t)
		_, took := an.ipvsadm(t, text, "-R")
		admTimes = append(admTimes, took)
		if s, d := an.counts(t); s != services || d != services*destinations {
			t.Fatalf("after ipvsadm -R: %d services, %d destinations", s, d)
		}
		an.del()

		if rec != nil {
			_ = rec.Shutdown(ctx)
			k.Close()
			ns.del()
		}
		ns = newNetns(t)
		var err error
		if k, err = ipvs.Open(ipvs.OpenOptions{NetnsPath: ns.path()}); err != nil {
			t.Fatal(err)
		}
		lastState = filepath.Join(t.TempDir(), "owned.json")
		if rec, err = ipvs.New(ipvs.Options{Kernel: k, StateFile: lastState}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := rec.Apply(ctx, want); err != nil {
			t.Fatalf("Apply from scratch: %v", err)
		}
		took = time.Since(start)
		recTimes = append(recTimes, took)
		applied = rec.Counters()
		if s, d := ns.counts(t); s != services || d != services*destinations {
			t.Fatalf("after Apply: %d services, %d destinations", s, d)
		}
		report("  round %d: ipvsadm -R %v, reconciler %v (%d kernel operations)", r+1, admTimes[r].Round(time.Millisecond), took.Round(time.Millisecond), applied.Total)
	}
	defer k.Close()
	adm, recMed := median(admTimes), median(recTimes)
	report("from scratch, median of %d: ipvsadm -R %v, reconciler %v; reconciler/ipvsadm = %.2f", rounds,
		adm.Round(time.Millisecond), recMed.Round(time.Millisecond), float64(recMed)/float64(adm))
	report("  reconciler operations: %d (%s)", applied.Total, opsString(applied))

	// Unchanged desired state: nothing to send.
	before := rec.Counters()
	start := time.Now()
	if err := rec.Apply(ctx, want); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	d := diff(rec.Counters(), before)
	report("unchanged Apply: %v, %d kernel operations", took.Round(time.Microsecond), d.Total)
	if d.Total != 0 {
		t.Errorf("an unchanged Apply cost %d operations (%s)", d.Total, opsString(d))
	}

	// One weight.
	changed := desired()
	changed.Services[services/2].Destinations[2].Weight = 7
	before = rec.Counters()
	start = time.Now()
	if err := rec.Apply(ctx, changed); err != nil {
		t.Fatal(err)
	}
	took = time.Since(start)
	d = diff(rec.Counters(), before)
	report("one weight changed: Apply %v, %d kernel operation(s): %s (expected 1: update_destination)", took.Round(time.Microsecond), d.Total, opsString(d))
	if d.Total != 1 || d.Ops[ipvs.OpUpdateDestination] != 1 {
		t.Errorf("one weight cost %d operations (%s), want 1 update_destination", d.Total, opsString(d))
	}
	vs, rs := serviceAddr(services/2).String(), destAddr(2).String()
	_, admOne := ns.ipvsadm(t, "", "-e", "-t", vs, "-r", rs, "-m", "-w", "7")
	_, nsExec := run(t, "", "ip", "netns", "exec", ns.name, "true")
	report("  for reference, ipvsadm -e of the same weight (a process and 1 operation): %v through ip netns exec, which alone takes %v",
		admOne.Round(time.Microsecond), nsExec.Round(time.Microsecond))
	out, _ := ns.ipvsadm(t, "", "-Ln", "-t", vs)
	if !strings.Contains(strings.Join(strings.Fields(out), " "), "-> "+rs+" Masq 7") {
		t.Errorf("the changed weight is not in the kernel:\n%s", out)
	}

	// The periodic resync over the whole table.
	before = rec.Counters()
	start = time.Now()
	if err := rec.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	took = time.Since(start)
	d = diff(rec.Counters(), before)
	report("full Resync (every 60 s by default): %v, %d kernel operations (%s), %d corrections", took.Round(time.Millisecond), d.Total, opsString(d), d.Mutations)
	if d.Mutations != 0 {
		t.Errorf("a resync of an unchanged table changed %d things", d.Mutations)
	}

	// A restarted agent adopting the table, with the state file of the last round.
	_ = rec.Shutdown(ctx)
	rec2, err := ipvs.New(ipvs.Options{Kernel: k, StateFile: lastState})
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := rec2.Apply(ctx, changed); err != nil {
		t.Fatal(err)
	}
	took = time.Since(start)
	c := rec2.Counters()
	report("restart adoption (new reconciler, populated kernel): %v, %d kernel operations (%s), %d changes", took.Round(time.Millisecond), c.Total, opsString(c), c.Mutations)
	if c.Mutations != 0 {
		t.Errorf("adoption changed %d things (%s)", c.Mutations, opsString(c))
	}
	if s, dd := ns.counts(t); s != services || dd != services*destinations {
		t.Fatalf("final table: %d services, %d destinations", s, dd)
	}
	_ = rec2.Shutdown(ctx)
}
