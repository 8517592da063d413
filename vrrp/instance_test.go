package vrrp_test

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/vrrp"
	"github.com/fulcrum-lb/fulcrum/vrrp/vrrptest"
)

// hang bounds every real-time wait of these tests; it only catches hangs.
const hang = 10 * time.Second

var vip1 = netip.MustParsePrefix("192.0.2.100/32")

// irig runs Instances on fake wires and one FakeClock.
type irig struct {
	t     *testing.T
	clk   *vrrptest.FakeClock
	nodes []*inode
}

// inode is one running Instance and its fakes.
type inode struct {
	name  string
	inst  *vrrp.Instance
	tr    *vrrptest.FakeTransport
	addrs *vrrptest.FakeAddresses
	ann   *vrrptest.FakeAnnouncer

	mu     sync.Mutex
	events []vrrp.StateChange

	cancel context.CancelFunc
	done   chan error
}

func newIRig(t *testing.T) *irig {
	r := &irig{t: t, clk: vrrptest.NewFakeClock(t0)}
	t.Cleanup(func() {
		for _, n := range r.nodes {
			n.stop(t)
		}
	})
	return r
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// baseOpts: VRRPv3, VRID 51, 1 s, one VIP, keepalived's answer to lower
// priorities, back-to-back announcements unless changed.
func baseOpts(name, addr string, prio uint8) vrrp.InstanceOptions {
	return vrrp.InstanceOptions{
		Name:                  name,
		Interface:             "eth0",
		Version:               vrrp.Version3,
		VRID:                  51,
		Priority:              prio,
		AdvertInterval:        time.Second,
		PrimaryAddr:           netip.MustParseAddr(addr),
		VIPs:                  []vrrp.VIP{{Prefix: vip1}},
		AdvertOnLowerPriority: true,
		Announce:              vrrp.AnnounceOptions{Count: 3, Interval: 50 * time.Millisecond},
	}
}

// add creates (not starts) an instance on wire.
func (r *irig) add(wire *vrrptest.Wire, opts vrrp.InstanceOptions, deps vrrp.Deps) *inode {
	r.t.Helper()
	n := &inode{name: opts.Name, addrs: vrrptest.NewFakeAddresses(), ann: &vrrptest.FakeAnnouncer{Clock: r.clk}}
	n.tr = wire.Transport(opts.PrimaryAddr)
	deps.Transport, deps.Addresses, deps.Watcher, deps.Announcer = n.tr, n.addrs, n.addrs, n.ann
	deps.Clock = r.clk
	if deps.Log == nil {
		deps.Log = testLog(r.t)
	}
	deps.OnStateChange = func(ev vrrp.StateChange) {
		n.mu.Lock()
		n.events = append(n.events, ev)
		n.mu.Unlock()
	}
	inst, err := vrrp.NewInstance(opts, deps)
	if err != nil {
		r.t.Fatal(err)
	}
	n.inst = inst
	r.nodes = append(r.nodes, n)
	return n
}

// start runs the instance and waits until it left Initialize.
func (r *irig) start(n *inode) {
	r.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan error, 1)
	go func() { n.done <- n.inst.Run(ctx) }()
	eventually(r.t, n.name+" started", func() bool { return n.inst.Status().State != vrrp.Initialize })
	r.settle()
}

func (n *inode) stop(t *testing.T) {
	if n.cancel == nil {
		return
	}
	n.cancel()
	n.cancel = nil
	select {
	case err := <-n.done:
		if err != nil {
			t.Errorf("%s: Run: %v", n.name, err)
		}
	case <-time.After(hang):
		t.Errorf("%s did not stop", n.name)
	}
}

func (n *inode) transitions() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, ev := range n.events {
		out = append(out, ev.From.String()+"->"+ev.To.String()+"("+ev.Reason.String()+")")
	}
	return out
}

// settle waits until every packet sent has been handled and every queued
// VIP change, announcement and callback is done. Twice: handling may queue.
func (r *irig) settle() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	for range 3 {
		for _, n := range r.nodes {
			if n.cancel == nil {
				continue
			}
			if err := n.tr.WaitIdle(ctx); err != nil {
				r.t.Fatal(err)
			}
			if err := n.inst.Flush(ctx); err != nil {
				r.t.Fatal(err)
			}
		}
	}
}

// at advances the fake clock to t0+d, settling after every timer instant.
func (r *irig) at(d time.Duration) {
	r.t.Helper()
	r.settle()
	for {
		next, ok := r.clk.NextDeadline()
		if !ok || next.After(t0.Add(d)) {
			break
		}
		r.clk.AdvanceTo(next)
		r.settle()
	}
	r.clk.AdvanceTo(t0.Add(d))
	r.settle()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hang)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func wantState(t *testing.T, n *inode, want vrrp.State) {
	t.Helper()
	if got := n.inst.Status().State; got != want {
		t.Fatalf("%s is %v, want %v (transitions %v)", n.name, got, want, n.transitions())
	}
}

// TestInstanceElection: two instances on a wire elect the higher priority
// after its Master_Down_Interval (3 s + (256-200)/256 s = 3.21875 s, RFC
// 5798 §6.1); only it holds the VIP, and the Backup follows its adverts.
func TestInstanceElection(t *testing.T) {
	r := newIRig(t)
	wire := vrrptest.NewWire()
	a := r.add(wire, baseOpts("A", "192.0.2.1", 200), vrrp.Deps{})
	b := r.add(wire, baseOpts("B", "192.0.2.2", 100), vrrp.Deps{})
	r.start(a)
	r.start(b)
	wantState(t, a, vrrp.Backup)
	wantState(t, b, vrrp.Backup)

	r.at(ms(3218.75) - 1)
	wantState(t, a, vrrp.Backup)
	r.at(ms(3218.75))
	wantState(t, a, vrrp.Master)
	r.at(10 * time.Second)
	wantState(t, a, vrrp.Master)
	wantState(t, b, vrrp.Backup)
	if got := a.addrs.Installed(); len(got) != 1 || got[0] != vip1.Addr() {
		t.Fatalf("A holds %v", got)
	}
	if got := b.addrs.Installed(); len(got) != 0 {
		t.Fatalf("B holds %v", got)
	}
	sb := b.inst.Status()
	if sb.MasterAddr != netip.MustParseAddr("192.0.2.1") || sb.MasterPriority != 200 {
		t.Fatalf("B follows %v/%d", sb.MasterAddr, sb.MasterPriority)
	}
	sa := a.inst.Status()
	// 3.21875 s, then every second until 10 s: 7 adverts.
	if sa.Counters.AdvertsOut != 7 || sb.Counters.AdvertsIn != 7 || sb.Counters.AdvertsOut != 0 {
		t.Fatalf("A sent %d, B received %d and sent %d", sa.Counters.AdvertsOut, sb.Counters.AdvertsIn, sb.Counters.AdvertsOut)
	}
	if sa.LastChange.To != vrrp.Master || sa.LastChange.Reason != vrrp.ReasonMasterDown || !sa.LastChange.At.Equal(t0.Add(ms(3218.75))) {
		t.Fatalf("A's last change %+v", sa.LastChange)
	}
	// What A sent is a well-formed advert to 224.0.0.18.
	sent := a.tr.Sent()
	p, err := vrrp.Parse(sent[0].Payload, netip.MustParseAddr("192.0.2.1"), sent[0].Dst, vrrp.ParseOptions{})
	if err != nil || sent[0].Dst != vrrp.MulticastGroup4() || p.VRID != 51 || p.Priority != 200 || p.Interval() != time.Second {
		t.Fatalf("advert %+v to %v: %v", p, sent[0].Dst, err)
	}
	if got, want := a.transitions(), []string{"initialize->backup(startup)", "backup->master(master_down)"}; !slices.Equal(got, want) {
		t.Fatalf("A transitions %v, want %v", got, want)
	}
}

// TestInstanceMalformedPackets: every kind of bad packet is dropped and
// counted by reason, and the instance carries on.
func TestInstanceMalformedPackets(t *testing.T) {
	r := newIRig(t)
	wire := vrrptest.NewWire()
	a := r.add(wire, baseOpts("A", "192.0.2.1", 100), vrrp.Deps{})
	r.start(a)
	peer := netip.MustParseAddr("192.0.2.9")
	good := func(mod func(*vrrp.Packet)) []byte {
		p := &vrrp.Packet{Version: vrrp.Version3, VRID: 51, Priority: 150, AdverInt: 100, Addrs: []netip.Addr{vip1.Addr()}}
		if mod != nil {
			mod(p)
		}
		b, err := p.Marshal(peer, vrrp.MulticastGroup4())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	corrupt := good(nil)
	corrupt[7] ^= 0xff
	for _, c := range []struct {
		payload []byte
		ttl     int
		src     netip.Addr
	}{
		{good(nil), 64, peer},                                                     // bad_ttl
		{good(nil), -1, peer},                                                     // bad_ttl (unknown)
		{nil, 255, peer},                                                          // bad_length
		{[]byte{0x31, 51, 100}, 255, peer},                                        // bad_length
		{append(good(nil), 0), 255, peer},                                         // bad_length (trailing)
		{[]byte{0x51, 51, 100, 0, 0, 100, 0, 0}, 255, peer},                       // bad_version
		{[]byte{0x32, 51, 100, 0, 0, 100, 0, 0}, 255, peer},                       // bad_type
		{corrupt, 255, peer},                                                      // bad_checksum
		{good(func(p *vrrp.Packet) { p.VRID = 52 }), 255, peer},                   // vrid_mismatch
		{good(func(p *vrrp.Packet) { p.AdverInt = 0 }), 255, peer},                // bad_advert_interval
		{good(nil), 255, netip.MustParseAddr("2001:db8::9")},                      // bad_addr_family
		{good(func(p *vrrp.Packet) { p.Addrs = nil }), 255, peer},                 // addr_list_mismatch (warning, accepted)
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 255, peer}, // bad_version
	} {
		a.tr.Inject(vrrp.Received{Payload: c.payload, Src: c.src, Dst: vrrp.MulticastGroup4(), TTL: c.ttl})
	}
	r.settle()
	st := a.inst.Status()
	want := map[vrrp.DropReason]uint64{
		vrrp.BadTTL: 2, vrrp.BadLength: 3, vrrp.BadVersion: 2, vrrp.BadType: 1, vrrp.BadChecksum: 1,
		vrrp.VRIDMismatch: 1, vrrp.BadAdvertInterval: 1, vrrp.BadAddrFamily: 1, vrrp.AddrListMismatch: 1,
	}
	for reason, n := range want {
		if st.Counters.Drops[reason] != n {
			t.Errorf("drops[%v] = %d, want %d", reason, st.Counters.Drops[reason], n)
		}
	}
	if st.Counters.Received != 13 || st.Counters.AdvertsIn != 1 {
		t.Errorf("received %d, accepted %d; want 13 and 1", st.Counters.Received, st.Counters.AdvertsIn)
	}
	wantState(t, a, vrrp.Backup) // the accepted one (150) is followed
	if st.MasterAddr != peer {
		t.Errorf("master %v, want %v", st.MasterAddr, peer)
	}
}

// TestInstanceReaddsRemovedVIP: a Master puts back a VIP removed behind its
// back, and announces it again.
func TestInstanceReaddsRemovedVIP(t *testing.T) {
	r := newIRig(t)
	a := r.add(vrrptest.NewWire(), baseOpts("A", "192.0.2.1", 100), vrrp.Deps{})
	r.start(a)
	r.at(5 * time.Second)
	wantState(t, a, vrrp.Master)
	rounds := len(a.ann.Rounds())
	if !a.addrs.RemoveBehindBack(vip1.Addr()) {
		t.Fatal("VIP was not installed")
	}
	r.settle()
	if !a.addrs.Has(vip1.Addr()) {
		t.Fatalf("VIP not re-added; ops %v", a.addrs.Ops())
	}
	st := a.inst.Status()
	if st.Counters.VIPReadds != 1 || st.VIPsInstalled != 1 {
		t.Fatalf("readds %d, installed %d", st.Counters.VIPReadds, st.VIPsInstalled)
	}
	if got := len(a.ann.Rounds()); got <= rounds {
		t.Fatalf("no announcement after the re-add (%d rounds)", got)
	}
	// A Backup leaves it alone: drop to Backup with a drill, remove again.
	if _, err := a.inst.Failover(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
	r.settle()
	if a.addrs.Has(vip1.Addr()) {
		t.Fatal("VIP still installed on a Backup")
	}
	readds := a.inst.Status().Counters.VIPReadds
	a.addrs.Add(context.Background(), []vrrp.VIP{{Prefix: vip1}})
	a.addrs.RemoveBehindBack(vip1.Addr())
	r.settle()
	if a.addrs.Has(vip1.Addr()) || a.inst.Status().Counters.VIPReadds != readds {
		t.Fatal("a Backup re-added a VIP")
	}
}

// TestInstanceAnnounceBurst: on becoming Master, Count rounds Interval
// apart, the first at once; a second burst Delay later; one round every
// Refresh while Master; none after leaving Master.
func TestInstanceAnnounceBurst(t *testing.T) {
	r := newIRig(t)
	opts := baseOpts("A", "192.0.2.1", 100)
	opts.Announce = vrrp.AnnounceOptions{Count: 5, Interval: 100 * time.Millisecond, Delay: 2 * time.Second, Refresh: 30 * time.Second}
	a := r.add(vrrptest.NewWire(), opts, vrrp.Deps{})
	r.start(a)
	becameMaster := ms(3609.375) // priority 100: 3 s + 156/256 s
	r.at(becameMaster)
	wantState(t, a, vrrp.Master)
	r.at(becameMaster + 10*time.Second)
	var got []time.Duration
	for _, rd := range a.ann.Rounds() {
		got = append(got, rd.At.Sub(t0.Add(becameMaster)))
		if len(rd.Addrs) != 1 || rd.Addrs[0] != vip1.Addr() {
			t.Fatalf("round for %v", rd.Addrs)
		}
	}
	want := []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond, 400 * time.Millisecond,
		2 * time.Second, 2100 * time.Millisecond, 2200 * time.Millisecond, 2300 * time.Millisecond, 2400 * time.Millisecond}
	if !slices.Equal(got, want) {
		t.Fatalf("rounds at %v, want %v", got, want)
	}
	st := a.inst.Status()
	if !st.Master.Since.Equal(t0.Add(becameMaster)) || !st.Master.VIPsAdded.Equal(t0.Add(becameMaster)) ||
		!st.Master.FirstAnnounce.Equal(t0.Add(becameMaster)) || st.Master.AnnounceRounds != 10 {
		t.Fatalf("master stint %+v", st.Master)
	}
	r.at(becameMaster + 30*time.Second)
	if n := len(a.ann.Rounds()); n != 11 {
		t.Fatalf("%d rounds after the refresh, want 11", n)
	}
	// Leaving Master stops everything, mid-burst included.
	a.inst.Update(func() vrrp.InstanceOptions { o := opts; o.Announce.Refresh = time.Second; return o }())
	if _, err := a.inst.Failover(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
	r.at(becameMaster + 60*time.Second)
	if n := len(a.ann.Rounds()); n != 11 {
		t.Fatalf("%d rounds, want no more after leaving master", n)
	}
}

// TestInstanceSplitBrainReannounce: a Master that hears a lower-priority
// advertisement answers it and announces again, at most once per holdoff.
func TestInstanceSplitBrainReannounce(t *testing.T) {
	r := newIRig(t)
	opts := baseOpts("A", "192.0.2.1", 200)
	opts.Announce = vrrp.AnnounceOptions{Count: 1, LowerPriorityHoldoff: 5 * time.Second}
	a := r.add(vrrptest.NewWire(), opts, vrrp.Deps{})
	r.start(a)
	r.at(10 * time.Second)
	wantState(t, a, vrrp.Master)
	before, sent := len(a.ann.Rounds()), a.inst.Status().Counters.AdvertsOut
	lower := &vrrp.Packet{Version: vrrp.Version3, VRID: 51, Priority: 100, AdverInt: 100, Addrs: []netip.Addr{vip1.Addr()}}
	peer := netip.MustParseAddr("192.0.2.2")
	b, err := lower.Marshal(peer, vrrp.MulticastGroup4())
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		a.tr.Inject(vrrp.Received{Payload: b, Src: peer, Dst: vrrp.MulticastGroup4(), TTL: 255})
	}
	r.settle()
	if got := len(a.ann.Rounds()) - before; got != 1 {
		t.Fatalf("%d re-announcements, want 1", got)
	}
	if got := a.inst.Status().Counters.AdvertsOut - sent; got != 3 {
		t.Fatalf("%d answers to lower-priority adverts, want 3", got)
	}
	r.at(16 * time.Second)
	a.tr.Inject(vrrp.Received{Payload: b, Src: peer, Dst: vrrp.MulticastGroup4(), TTL: 255})
	r.settle()
	if got := len(a.ann.Rounds()) - before; got != 2 {
		t.Fatalf("%d re-announcements after the holdoff, want 2", got)
	}
	wantState(t, a, vrrp.Master)
}

// TestInstanceShutdownSendsPriorityZero: a stopping Master sends priority
// 0 and removes its VIP (RFC 5798 §6.4.3); the Backup takes over after its
// Skew_Time (RFC 5798 §6.4.2) instead of Master_Down_Interval. With
// KeepVIPsOnShutdown the VIP stays.
func TestInstanceShutdownSendsPriorityZero(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(map[bool]string{false: "remove", true: "keep"}[keep], func(t *testing.T) {
			r := newIRig(t)
			wire := vrrptest.NewWire()
			oa := baseOpts("A", "192.0.2.1", 200)
			oa.KeepVIPsOnShutdown = keep
			a := r.add(wire, oa, vrrp.Deps{})
			b := r.add(wire, baseOpts("B", "192.0.2.2", 100), vrrp.Deps{})
			r.start(a)
			r.start(b)
			r.at(10 * time.Second)
			wantState(t, a, vrrp.Master)
			a.stop(t)
			r.settle()
			sent := a.tr.Sent()
			last, err := vrrp.Parse(sent[len(sent)-1].Payload, netip.MustParseAddr("192.0.2.1"), vrrp.MulticastGroup4(), vrrp.ParseOptions{})
			if err != nil || last.Priority != 0 {
				t.Fatalf("last advert %+v, %v; want priority 0", last, err)
			}
			if got := a.inst.Status().Counters.Prio0Out; got != 1 {
				t.Fatalf("priority-0 adverts out: %d", got)
			}
			if a.addrs.Has(vip1.Addr()) != keep {
				t.Fatalf("VIP installed after stop: %v, want %v", a.addrs.Has(vip1.Addr()), keep)
			}
			if !a.tr.Closed() {
				t.Fatal("transport not closed")
			}
			if got := b.inst.Status().Counters.Prio0In; got != 1 {
				t.Fatalf("B got %d priority-0 adverts", got)
			}
			// Skew_Time for 100 at 1 s: 156/256 s.
			r.at(10*time.Second + ms(609.375) - 1)
			wantState(t, b, vrrp.Backup)
			r.at(10*time.Second + ms(609.375))
			wantState(t, b, vrrp.Master)
			if got := b.inst.Status().LastChange.Reason; got != vrrp.ReasonMasterResigned {
				t.Fatalf("B became master for %v", got)
			}
		})
	}
}

// TestInstanceUpdateKeepsMaster: a reload that changes priority, interval,
// VIPs and trackers leaves a Master Master; it sends an advert with the old
// settings, then one with the new, and installs and announces the new VIP.
func TestInstanceUpdateKeepsMaster(t *testing.T) {
	r := newIRig(t)
	wire := vrrptest.NewWire()
	opts := baseOpts("A", "192.0.2.1", 200)
	a := r.add(wire, opts, vrrp.Deps{})
	b := r.add(wire, baseOpts("B", "192.0.2.2", 100), vrrp.Deps{})
	r.start(a)
	r.start(b)
	r.at(10 * time.Second)
	wantState(t, a, vrrp.Master)
	n := len(a.tr.Sent())
	vip2 := netip.MustParsePrefix("192.0.2.101/32")
	upd := opts
	upd.Priority = 150
	upd.AdvertInterval = 500 * time.Millisecond
	upd.VIPs = []vrrp.VIP{{Prefix: vip1}, {Prefix: vip2}}
	if err := a.inst.Update(upd); err != nil {
		t.Fatal(err)
	}
	r.settle()
	sent := a.tr.Sent()[n:]
	if len(sent) != 2 {
		t.Fatalf("%d adverts on update, want 2", len(sent))
	}
	p0, _ := vrrp.Parse(sent[0].Payload, opts.PrimaryAddr, sent[0].Dst, vrrp.ParseOptions{})
	p1, _ := vrrp.Parse(sent[1].Payload, opts.PrimaryAddr, sent[1].Dst, vrrp.ParseOptions{})
	if p0 == nil || p1 == nil || p0.Priority != 200 || len(p0.Addrs) != 1 || p1.Priority != 150 || len(p1.Addrs) != 2 || p1.Interval() != 500*time.Millisecond {
		t.Fatalf("update adverts %+v then %+v", p0, p1)
	}
	wantState(t, a, vrrp.Master)
	if !a.addrs.Has(vip2.Addr()) {
		t.Fatal("new VIP not installed")
	}
	if got := a.ann.Rounds(); !slices.Contains(got[len(got)-1].Addrs, vip2.Addr()) {
		t.Fatalf("new VIP not announced: %v", got)
	}
	r.at(20 * time.Second)
	wantState(t, a, vrrp.Master)
	wantState(t, b, vrrp.Backup)
	if st := b.inst.Status(); st.MasterAdverInterval != 500*time.Millisecond || st.MasterPriority != 150 {
		t.Fatalf("B learnt %v / %d", st.MasterAdverInterval, st.MasterPriority)
	}
	if got := a.transitions(); len(got) != 2 {
		t.Fatalf("A transitions %v", got)
	}
	// Dropping a VIP removes it at once.
	upd.VIPs = []vrrp.VIP{{Prefix: vip2}}
	if err := a.inst.Update(upd); err != nil {
		t.Fatal(err)
	}
	r.settle()
	if a.addrs.Has(vip1.Addr()) || !a.addrs.Has(vip2.Addr()) {
		t.Fatalf("installed %v", a.addrs.Installed())
	}
	// Identity changes are refused.
	bad := upd
	bad.VRID = 52
	if err := a.inst.Update(bad); !errors.Is(err, vrrp.ErrIncompatibleUpdate) {
		t.Fatalf("VRID change: %v", err)
	}
}

// TestInstanceFailoverDrill: ForceBackup on the Master and TakeOver on the
// Backup, with the handover observed on each side.
func TestInstanceFailoverDrill(t *testing.T) {
	r := newIRig(t)
	wire := vrrptest.NewWire()
	a := r.add(wire, baseOpts("A", "192.0.2.1", 200), vrrp.Deps{})
	b := r.add(wire, baseOpts("B", "192.0.2.2", 100), vrrp.Deps{})
	r.start(a)
	r.start(b)
	r.at(10 * time.Second)
	ctx := context.Background()

	h, err := a.inst.Failover(ctx, 30*time.Second)
	if err != nil || h.Action != vrrp.DrillForceBackup {
		t.Fatalf("failover: %+v, %v", h, err)
	}
	// B takes over after Skew_Time, 609.375 ms.
	r.at(10*time.Second + ms(609.375))
	wantState(t, b, vrrp.Master)
	h, err = a.inst.AwaitHandover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gap, ok := h.AdvertGap()
	if !ok || gap != ms(609.375) || h.NewMaster != netip.MustParseAddr("192.0.2.2") || h.NewMasterPriority != 100 {
		t.Fatalf("handover %+v (gap %v)", h, gap)
	}
	if st := a.inst.Status(); st.State != vrrp.Backup || st.HoldUntil.IsZero() || st.Handover == nil || !st.Handover.Done {
		t.Fatalf("A after the drill: %+v", st)
	}
	// The hold ends at 40 s and A preempts B.
	r.at(45 * time.Second)
	wantState(t, a, vrrp.Master)
	wantState(t, b, vrrp.Backup)

	// Now from the Backup's side.
	h, err = b.inst.Failover(ctx, 30*time.Second)
	if err != nil || h.Action != vrrp.DrillTakeover || h.OldMaster != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("takeover: %+v, %v", h, err)
	}
	r.at(50 * time.Second)
	wantState(t, b, vrrp.Master)
	wantState(t, a, vrrp.Backup)
	h, err = b.inst.AwaitHandover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := h.AdvertGap(); !ok || h.NewMasterPriority != 254 {
		t.Fatalf("takeover handover %+v", h)
	}
	if gap, ok := h.AnnounceGap(); !ok || gap != 0 {
		t.Fatalf("VIP add to first announce %v %v (%+v)", gap, ok, h)
	}
}

// TestInstanceNotify: state-change callbacks and notify commands arrive in
// transition order; a command past its timeout is killed without holding up
// the next.
func TestInstanceNotify(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	sh := func(script string) []string { return []string{"/bin/sh", "-c", script} }
	opts := baseOpts("A", "192.0.2.1", 100)
	opts.Notify = vrrp.NotifyOptions{
		Backup:  sh(`echo "backup $FULCRUM_VRRP_FROM $FULCRUM_VRRP_REASON" >> ` + log),
		Master:  sh(`echo "master $FULCRUM_VRRP_PRIORITY" >> ` + log + `; exec sleep 30`),
		Stop:    sh(`echo "stop $FULCRUM_VRRP_INSTANCE" >> ` + log),
		Timeout: 300 * time.Millisecond,
	}
	r := newIRig(t)
	a := r.add(vrrptest.NewWire(), opts, vrrp.Deps{})
	r.start(a)
	r.at(5 * time.Second)
	if _, err := a.inst.Failover(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
	r.settle()
	start := time.Now()
	a.stop(t)
	want := "backup initialize startup\nmaster 100\nbackup master force_backup\nstop A\n"
	eventually(t, "the notify log", func() bool {
		b, _ := os.ReadFile(log)
		return string(b) == want
	})
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the killed master command held up the others for %v", took)
	}
	st := a.inst.Status()
	if st.Counters.NotifyRuns != 4 || st.Counters.NotifyFailures != 1 {
		t.Fatalf("notify runs %d, failures %d; want 4 and 1 (the timeout)", st.Counters.NotifyRuns, st.Counters.NotifyFailures)
	}
	if got, want := a.transitions(), []string{
		"initialize->backup(startup)", "backup->master(master_down)", "master->backup(force_backup)", "backup->initialize(shutdown)",
	}; !slices.Equal(got, want) {
		t.Fatalf("callbacks %v, want %v", got, want)
	}
}

// TestSyncGroupFollows: each node has instances X and Y in a group. When
// X's interface fails on the Master node, both of its instances go to Fault
// and the other node's both take over; when it recovers, both come back.
// A member that wins an election on its own pulls the others along.
func TestSyncGroupFollows(t *testing.T) {
	r := newIRig(t)
	wx, wy := vrrptest.NewWire(), vrrptest.NewWire()
	links := vrrptest.NewFakeLinks("ethx", "ethy")
	node := func(name, x, y string, px, py uint8) (*inode, *inode) {
		ox := baseOpts(name+"x", x, px)
		ox.Interface, ox.VRID = "ethx", 1
		oy := baseOpts(name+"y", y, py)
		oy.Interface, oy.VRID = "ethy", 2
		oy.VIPs = []vrrp.VIP{{Prefix: netip.MustParsePrefix("198.51.100.100/32")}}
		deps := vrrp.Deps{}
		if name == "A" {
			deps.Links = links
			ox.Trackers = []vrrp.TrackSpec{{Kind: vrrp.TrackInterface, Name: "ethx", Weight: -50}} // 0 in a group
		}
		nx, ny := r.add(wx, ox, deps), r.add(wy, oy, deps)
		g := vrrp.NewGroup("g"+name, testLog(t))
		g.Join(nx.inst)
		g.Join(ny.inst)
		return nx, ny
	}
	ax, ay := node("A", "192.0.2.1", "198.51.100.1", 200, 200)
	// B's Y has the longer Skew_Time, so its X is first to notice A is gone.
	bx, by := node("B", "192.0.2.2", "198.51.100.2", 100, 50)
	for _, n := range []*inode{ax, ay, bx, by} {
		r.start(n)
	}
	r.at(10 * time.Second)
	for _, n := range []*inode{ax, ay} {
		wantState(t, n, vrrp.Master)
	}
	for _, n := range []*inode{bx, by} {
		wantState(t, n, vrrp.Backup)
	}

	links.Set("ethx", false)
	r.at(11 * time.Second)
	wantState(t, ax, vrrp.Fault)
	wantState(t, ay, vrrp.Fault)
	wantState(t, bx, vrrp.Master)
	wantState(t, by, vrrp.Master)
	if ax.addrs.Has(vip1.Addr()) || len(ay.addrs.Installed()) != 0 {
		t.Fatal("a faulted member kept its VIPs")
	}
	if st := ay.inst.Status(); st.Group != "gA" {
		t.Fatalf("group %q", st.Group)
	}

	links.Set("ethx", true)
	r.at(20 * time.Second)
	wantState(t, ax, vrrp.Master)
	wantState(t, ay, vrrp.Master)
	wantState(t, bx, vrrp.Backup)
	wantState(t, by, vrrp.Backup)

	// A vanishes: B's X times out first (Skew_Time 156/256 s against
	// 206/256 s) and pulls B's Y along at once; A, back, preempts both.
	wx.SetDown(true)
	wy.SetDown(true)
	r.at(30 * time.Second)
	wantState(t, bx, vrrp.Master)
	wantState(t, by, vrrp.Master)
	if got := by.transitions(); got[len(got)-1] != "backup->master(sync_group)" {
		t.Fatalf("B's Y transitions %v, want a sync_group takeover last", got)
	}
	wx.SetDown(false)
	wy.SetDown(false)
	r.at(40 * time.Second)
	for _, n := range []*inode{ax, ay} {
		wantState(t, n, vrrp.Master)
	}
	for _, n := range []*inode{bx, by} {
		wantState(t, n, vrrp.Backup)
	}
}

// TestInstanceOwner: an address owner (255) is Master at once (RFC 5798
// §6.4.1), announces, and never adds or removes its addresses, which are
// its own.
func TestInstanceOwner(t *testing.T) {
	r := newIRig(t)
	a := r.add(vrrptest.NewWire(), baseOpts("A", "192.0.2.1", 255), vrrp.Deps{})
	r.start(a)
	wantState(t, a, vrrp.Master)
	if got := a.inst.Status().LastChange.Reason; got != vrrp.ReasonOwner {
		t.Fatalf("reason %v", got)
	}
	r.at(time.Second)
	if n := len(a.ann.Rounds()); n != 3 {
		t.Fatalf("%d announcement rounds, want 3", n)
	}
	a.stop(t)
	if ops := a.addrs.Ops(); len(ops) != 0 {
		t.Fatalf("the owner touched its addresses: %v", ops)
	}
}
