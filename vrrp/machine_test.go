package vrrp_test

import (
	"errors"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/vrrp"
	"github.com/fulcrum-lb/fulcrum/vrrp/vrrptest"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// ms keeps the hand-computed timer values readable: ms(3609.375) is exact.
func ms(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }

type rig struct {
	t   *testing.T
	clk *vrrptest.FakeClock
	rec *vrrptest.Recorder
	m   *vrrp.Machine
}

func newRig(t *testing.T, cfg vrrp.Config) *rig {
	t.Helper()
	if !cfg.PrimaryAddr.IsValid() {
		cfg.PrimaryAddr = netip.MustParseAddr("10.0.0.2")
	}
	if cfg.Version == 0 {
		cfg.Version = vrrp.Version3
	}
	clk := vrrptest.NewFakeClock(t0)
	rec := &vrrptest.Recorder{Clock: clk}
	m, err := vrrp.NewMachine(cfg, clk, rec)
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, clk: clk, rec: rec, m: m}
}

// at advances the clock to t0+d.
func (r *rig) at(d time.Duration) { r.clk.AdvanceTo(t0.Add(d)) }

// expect asserts the actions recorded since the last expect.
func (r *rig) expect(want ...string) {
	r.t.Helper()
	got := r.rec.TakeStrings()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		r.t.Fatalf("at %v: actions\n  %s\nwant\n  %s", r.clk.Now().Sub(t0), strings.Join(got, " "), strings.Join(want, " "))
	}
}

func (r *rig) start() {
	r.t.Helper()
	if err := r.m.Start(); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) advert(src string, prio uint8, interval time.Duration) {
	r.m.HandleAdvert(vrrp.Advert{Src: netip.MustParseAddr(src), Priority: prio, Interval: interval})
}

func becameMaster(prio uint8, reason string) []string {
	return []string{"send(" + strconv.Itoa(int(prio)) + ")", "add_vips", "announce", "backup->master(" + reason + ")"}
}

// TestStartupBackupThenMaster: nothing heard, so Master after exactly
// Master_Down_Interval = 3 * 1 s + (256-100)/256 s = 3.609375 s (RFC 5798
// §6.4.1, §6.4.2), then an advertisement every Advertisement_Interval.
func TestStartupBackupThenMaster(t *testing.T) {
	r := newRig(t, vrrp.Config{Priority: 100})
	r.start()
	r.expect("initialize->backup(startup)")
	if got := r.m.Status().MasterDownAt; !got.Equal(t0.Add(ms(3609.375))) {
		t.Fatalf("MasterDownAt = %v", got.Sub(t0))
	}
	r.at(ms(3609.375) - 1)
	r.expect()
	r.at(ms(3609.375))
	r.expect(becameMaster(100, "master_down")...)
	r.at(ms(3609.375) + time.Second - 1)
	r.expect()
	r.at(ms(3609.375) + time.Second)
	r.expect("send(100)")
	r.at(ms(3609.375) + 10*time.Second)
	r.expect(strings.Fields(strings.Repeat("send(100) ", 9))...)
	if st := r.m.Status(); st.State != vrrp.Master || !st.AdverAt.Equal(t0.Add(ms(3609.375)+11*time.Second)) {
		t.Fatalf("status %+v", st)
	}
}

func TestHigherPriorityAdvertKeepsBackup(t *testing.T) {
	r := newRig(t, vrrp.Config{Priority: 100})
	r.start()
	r.expect("initialize->backup(startup)")
	for i := 0; i < 20; i++ {
		r.at(time.Duration(i) * time.Second)
		r.advert("10.0.0.9", 150, time.Second)
	}
	r.at(19*time.Second + ms(3609.375) - 1)
	r.expect()
	st := r.m.Status()
	if st.State != vrrp.Backup || st.MasterAddr != netip.MustParseAddr("10.0.0.9") || st.MasterPriority != 150 {
		t.Fatalf("status %+v", st)
	}
	// The master falls silent: Master_Down_Interval after its last advert.
	r.at(19*time.Second + ms(3609.375))
	r.expect(becameMaster(100, "master_down")...)
}

// TestLowerPriorityAdvertPreempts: with Preempt_Mode True, a Backup discards
// a lower-priority Master's advertisements (RFC 5798 §6.4.2), so its
// Master_Down_Timer, set at startup to 3 s + 56/256 s = 3.21875 s, fires.
func TestLowerPriorityAdvertPreempts(t *testing.T) {
	r := newRig(t, vrrp.Config{Priority: 200})
	r.start()
	r.expect("initialize->backup(startup)")
	for d := ms(500); d < 3*time.Second; d += time.Second {
		r.at(d)
		r.advert("10.0.0.9", 100, time.Second)
	}
	r.at(ms(3218.75) - 1)
	r.expect()
	r.at(ms(3218.75))
	r.expect(becameMaster(200, "preempt")...)
}

func TestNoPreemptStaysBackup(t *testing.T) {
	r := newRig(t, vrrp.Config{Priority: 200, NoPreempt: true})
	r.start()
	r.expect("initialize->backup(startup)")
	for d := ms(500); d < 60*time.Second; d += time.Second {
		r.at(d)
		r.advert("10.0.0.9", 100, time.Second)
	}
	r.expect()
	if st := r.m.Status(); st.State != vrrp.Backup || st.MasterPriority != 100 {
		t.Fatalf("status %+v", st)
	}
	// Without adverts it still takes over: nopreempt is not "never Master".
	r.at(59*time.Second + ms(500) + ms(3218.75))
	r.expect(becameMaster(200, "master_down")...)
}

// TestPreemptDelayFromStartup: keepalived's preempt_delay counts from
// startup; until it runs out a lower-priority Master is accepted.
func TestPreemptDelayFromStartup(t *testing.T) {
	r := newRig(t, vrrp.Config{Priority: 200, PreemptDelay: 10 * time.Second})
	r.start()
	r.expect("initialize->backup(startup)")
	if got := r.m.Status().PreemptAt; !got.Equal(t0.Add(10 * time.Second)) {
		t.Fatalf("PreemptAt = %v", got)
	}
	for d := ms(500); d < 13*time.Second; d += time.Second {
		r.at(d)
		r.advert("10.0.0.9", 100, time.Second)
	}
	// Accepted up to 9.5 s; 10.5, 11.5 and 12.5 s are discarded, so the
	// timer reset at 9.5 s fires at 9.5 + 3.21875 s.
	r.at(ms(9500+3218.75) - 1)
	r.expect()
	r.at(ms(9500 + 3218.75))
	r.expect(becameMaster(200, "preempt")...)
}

// TestPreemptDelayAfterLeavingMaster: leaving Master clears the countdown;
// it restarts on the first lower-priority advertisement, and a higher one
// cancels it.
func TestPreemptDelayAfterLeavingMaster(t *testing.T) {
	r := newRig(t, vrrp.Config{Priority: 200, PreemptDelay: 5 * time.Second})
	r.start()
	r.at(ms(3218.75))
	r.expect(append([]string{"initialize->backup(startup)"}, becameMaster(200, "master_down")...)...)
	r.at(4 * time.Second)
	r.advert("10.0.0.9", 250, time.Second)
	r.expect("remove_vips", "master->backup(higher_priority)")
	if st := r.m.Status(); !st.PreemptAt.IsZero() {
		t.Fatalf("PreemptAt = %v after leaving master", st.PreemptAt)
	}
	// The 250 router vanishes; a 100 router advertises from t=5 s.
	r.at(5 * time.Second)
	r.advert("10.0.0.8", 100, time.Second)
	if got := r.m.Status().PreemptAt; !got.Equal(t0.Add(10 * time.Second)) {
		t.Fatalf("PreemptAt = %v", got.Sub(t0))
	}
	// A higher-priority advert cancels the countdown ...
	r.at(ms(5500))
	r.advert("10.0.0.9", 250, time.Second)
	if got := r.m.Status().PreemptAt; !got.IsZero() {
		t.Fatalf("PreemptAt = %v after a higher advert", got.Sub(t0))
	}
	// ... and the next lower one restarts it: 6 s + 5 s.
	for d := 6 * time.Second; d <= 13*time.Second; d += time.Second {
		r.at(d)
		r.advert("10.0.0.8", 100, time.Second)
	}
	// Accepted until 10 s < 11 s; 11..13 s discarded: Master at 10 + 3.21875 s.
	r.at(ms(10000+3218.75) - 1)
	r.expect()
	r.at(ms(10000 + 3218.75))
	r.expect(becameMaster(200, "preempt")...)
}

// TestPriorityZeroBackupTakesOverAfterSkew: RFC 5798 §6.4.2 "If the Priority
// in the ADVERTISEMENT is zero, then: Set the Master_Down_Timer to
// Skew_Time" = 609.375 ms at priority 100.
func TestPriorityZeroBackupTakesOverAfterSkew(t *testing.T) {
	r := newRig(t, vrrp.Config{Priority: 100})
	r.start()
	r.expect("initialize->backup(startup)")
	r.at(time.Second)
	r.advert("10.0.0.9", 150, time.Second)
	r.at(2 * time.Second)
	r.advert("10.0.0.9", 0, time.Second)
	if got := r.m.Status().MasterDownAt; !got.Equal(t0.Add(ms(2609.375))) {
		t.Fatalf("MasterDownAt = %v", got.Sub(t0))
	}
	r.at(ms(2609.375) - 1)
	r.expect()
	r.at(ms(2609.375))
	r.expect(becameMaster(100, "master_resigned")...)
}

// TestMasterReceivingPriorityZeroAdvertisesAtOnce: RFC 5798 §6.4.3 "Send an
// ADVERTISEMENT; Reset the Adver_Timer to Advertisement_Interval".
func TestMasterReceivingPriorityZeroAdvertisesAtOnce(t *testing.T) {
	r := newRig(t, vrrp.Config{Priority: 100})
	r.start()
	r.at(ms(3609.375))
	r.rec.Take()
	r.at(4 * time.Second)
	r.advert("10.0.0.9", 0, time.Second)
	r.expect("send(100)")
	// The timer restarted at 4 s: nothing at 4.609375 s, next at 5 s.
	r.at(5*time.Second - 1)
	r.expect()
	r.at(5 * time.Second)
	r.expect("send(100)")
}

func TestEqualPriorityTieBreak(t *testing.T) {
	for _, tc := range []struct {
		name, local, sender string
		yields              bool
	}{
		{"v4 greater sender", "10.0.0.2", "10.0.0.3", true},
		{"v4 smaller sender", "10.0.0.2", "10.0.0.1", false},
		// Numeric, not textual: 10.0.0.10 > 10.0.0.9.
		{"v4 numeric", "10.0.0.9", "10.0.0.10", true},
		{"v4 numeric reverse", "10.0.0.10", "10.0.0.9", false},
		{"v4 high octet", "10.0.0.200", "10.0.1.1", true},
		{"v6 greater sender", "fe80::2", "fe80::10", true},
		{"v6 smaller sender", "fe80::10", "fe80::2", false},
		{"v6 high bits", "fe80::ffff:ffff", "fe80::1:0:0", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, vrrp.Config{Priority: 100, PrimaryAddr: netip.MustParseAddr(tc.local)})
			r.start()
			r.at(ms(3609.375))
			r.rec.Take()
			r.advert(tc.sender, 100, time.Second)
			if tc.yields {
				r.expect("remove_vips", "master->backup(tie_break)")
			} else {
				r.expect()
				if r.m.State() != vrrp.Master {
					t.Fatal("gave up master to a smaller address")
				}
			}
		})
	}
}

// TestMasterSeesHigherPriority: RFC 5798 §6.4.3, and the new Backup adopts
// the Master's 2 s interval: 3 * 2 s + 156/256 * 2 s = 7.21875 s.
func TestMasterSeesHigherPriority(t *testing.T) {
	r := newRig(t, vrrp.Config{Priority: 100})
	r.start()
	r.at(ms(3609.375))
	r.rec.Take()
	r.at(4 * time.Second)
	r.advert("10.0.0.1", 200, 2*time.Second)
	r.expect("remove_vips", "master->backup(higher_priority)")
	st := r.m.Status()
	if st.MasterAdverInterval != 2*time.Second || st.MasterDownInterval != ms(7218.75) ||
		!st.MasterDownAt.Equal(t0.Add(ms(4000+7218.75))) || !st.AdverAt.IsZero() {
		t.Fatalf("status %+v", st)
	}
	// Adver_Timer was cancelled.
	r.at(ms(4000+7218.75) - 1)
	r.expect()
}

func TestBackupLearnsMasterAdverInterval(t *testing.T) {
	// v3: 50 cs -> 1.5 s + 156/256 * 0.5 s = 1.8046875 s.
	r := newRig(t, vrrp.Config{Priority: 100})
	r.start()
	r.advert("10.0.0.9", 150, 500*time.Millisecond)
	if st := r.m.Status(); st.MasterAdverInterval != 500*time.Millisecond || !st.MasterDownAt.Equal(t0.Add(ms(1804.6875))) {
		t.Fatalf("v3 status %+v", st)
	}
	// v2 keeps its own interval (mismatches are dropped by Check).
	r2 := newRig(t, vrrp.Config{Version: vrrp.Version2, Priority: 100})
	r2.start()
	r2.advert("10.0.0.9", 150, 3*time.Second)
	if st := r2.m.Status(); st.MasterAdverInterval != time.Second || !st.MasterDownAt.Equal(t0.Add(ms(3609.375))) {
		t.Fatalf("v2 status %+v", st)
	}
}

// TestVersionTiming: with a 3 s interval, v3 scales Skew_Time with the
// interval (156/256 * 3 s) and v2 does not (156/256 s).
func TestVersionTiming(t *testing.T) {
	for _, tc := range []struct {
		v    vrrp.Version
		down time.Duration
	}{
		{vrrp.Version2, ms(9609.375)},
		{vrrp.Version3, ms(10828.125)},
	} {
		r := newRig(t, vrrp.Config{Version: tc.v, Priority: 100, AdvertInterval: 3 * time.Second})
		r.start()
		r.rec.Take()
		r.at(tc.down - 1)
		r.expect()
		r.at(tc.down)
		r.expect(becameMaster(100, "master_down")...)
		r.at(tc.down + 3*time.Second)
		r.expect("send(100)")
	}
	// v3 centisecond intervals: 50 cs adverts.
	r := newRig(t, vrrp.Config{Priority: 100, AdvertInterval: 500 * time.Millisecond})
	r.start()
	r.at(ms(1804.6875))
	r.rec.Take()
	r.at(ms(1804.6875 + 2000))
	r.expect("send(100)", "send(100)", "send(100)", "send(100)")
}

func TestAddressOwner(t *testing.T) {
	r := newRig(t, vrrp.Config{Priority: 255, Trackers: []vrrp.Tracker{{Name: "chk", Weight: -50}}})
	r.start()
	r.expect("send(255)", "add_vips", "announce", "initialize->master(address_owner)")
	if err := r.m.SetTracker("chk", false); err != nil {
		t.Fatal(err)
	}
	r.advert("10.0.0.9", 254, time.Second)
	r.at(time.Second)
	r.expect("send(255)")
	if st := r.m.Status(); st.Priority != 255 || st.State != vrrp.Master {
		t.Fatalf("status %+v", st)
	}
}

func TestFaultAndRecovery(t *testing.T) {
	r := newRig(t, vrrp.Config{Priority: 100, Trackers: []vrrp.Tracker{{Name: "eth0", Weight: 0}}})
	r.start()
	r.at(ms(3609.375))
	r.rec.Take()
	r.at(4 * time.Second)
	if err := r.m.SetTracker("eth0", false); err != nil {
		t.Fatal(err)
	}
	r.expect("send(0)", "remove_vips", "master->fault(fault)")
	// No timers, no adverts heeded.
	r.advert("10.0.0.9", 0, time.Second)
	r.at(100 * time.Second)
	r.expect()
	if r.clk.Pending() != 0 {
		t.Fatalf("%d timers pending in fault", r.clk.Pending())
	}
	if err := r.m.SetTracker("eth0", true); err != nil {
		t.Fatal(err)
	}
	r.expect("fault->backup(recovered)")
	r.at(100*time.Second + ms(3609.375))
	r.expect(becameMaster(100, "master_down")...)

	// Starting with the tracker down goes straight to Fault.
	r2 := newRig(t, vrrp.Config{Priority: 255, Trackers: []vrrp.Tracker{{Name: "eth0"}}})
	if err := r2.m.SetTracker("eth0", false); err != nil {
		t.Fatal(err)
	}
	r2.start()
	r2.expect("initialize->fault(fault)")
	if err := r2.m.SetTracker("eth0", true); err != nil {
		t.Fatal(err)
	}
	r2.expect("send(255)", "add_vips", "announce", "fault->master(recovered)")
	if err := r2.m.SetTracker("nope", true); !errors.Is(err, vrrp.ErrUnknownTracker) {
		t.Fatalf("unknown tracker: %v", err)
	}
}

func TestResignOnShutdown(t *testing.T) {
	r := newRig(t, vrrp.Config{Priority: 100})
	r.start()
	r.at(ms(3609.375))
	r.rec.Take()
	r.m.Stop()
	r.expect("send(0)", "remove_vips", "master->initialize(shutdown)")
	r.at(time.Minute)
	r.expect()
	r.m.Stop() // idempotent

	// A Backup just cancels Master_Down_Timer.
	r.start()
	r.expect("initialize->backup(startup)")
	r.m.Stop()
	r.expect("backup->initialize(shutdown)")
	r.at(2 * time.Minute)
	r.expect()
	if r.clk.Pending() != 0 {
		t.Fatalf("%d timers pending after Stop", r.clk.Pending())
	}
	if err := r.m.ForceBackup(time.Second); !errors.Is(err, vrrp.ErrNotRunning) {
		t.Fatalf("ForceBackup after Stop: %v", err)
	}
	r.start()
	if err := r.m.Start(); !errors.Is(err, vrrp.ErrAlreadyRunning) {
		t.Fatalf("second Start: %v", err)
	}
}

func TestAdvertOnLowerPriority(t *testing.T) {
	r := newRig(t, vrrp.Config{Priority: 150, AdvertOnLowerPriority: true})
	r.start()
	r.at(masterDown(150))
	r.rec.Take()
	r.advert("10.0.0.9", 100, time.Second)
	r.expect("send(150)")

	rfc := newRig(t, vrrp.Config{Priority: 150})
	rfc.start()
	rfc.at(masterDown(150))
	rfc.rec.Take()
	rfc.advert("10.0.0.9", 100, time.Second)
	rfc.expect()
}

// masterDown is Master_Down_Interval at 1 s for a v3 priority.
func masterDown(prio uint8) time.Duration {
	return vrrp.MasterDownInterval(vrrp.Version3, prio, time.Second)
}

func TestReannounce(t *testing.T) {
	r := newRig(t, vrrp.Config{Priority: 100, AdvertInterval: 3 * time.Second, ReannounceDelay: 5 * time.Second})
	r.start()
	down := ms(10828.125)
	r.at(down)
	r.rec.Take()
	r.at(down + 5*time.Second)
	r.expect("send(100)", "announce")
}

func TestOwnAdvertIgnored(t *testing.T) {
	r := newRig(t, vrrp.Config{Priority: 100})
	r.start()
	r.rec.Take()
	r.advert("10.0.0.2", 200, time.Second) // our PrimaryAddr
	if st := r.m.Status(); st.MasterAddr.IsValid() {
		t.Fatalf("own advert accepted: %+v", st)
	}
	r.at(ms(3609.375))
	r.expect(becameMaster(100, "master_down")...)

	// Zones do not hide our own link-local address.
	r6 := newRig(t, vrrp.Config{Priority: 100, PrimaryAddr: netip.MustParseAddr("fe80::2%eth0")})
	r6.start()
	r6.advert("fe80::2%eth1", 200, time.Second)
	if st := r6.m.Status(); st.MasterAddr.IsValid() {
		t.Fatalf("own v6 advert accepted: %+v", st)
	}
	r6.advert("fe80::3%eth0", 200, time.Second)
	if st := r6.m.Status(); st.MasterAddr != netip.MustParseAddr("fe80::3") {
		t.Fatalf("MasterAddr = %v", st.MasterAddr)
	}
}

func TestHandleAdvertIgnoredOutsideBackupAndMaster(t *testing.T) {
	r := newRig(t, vrrp.Config{Priority: 100})
	r.advert("10.0.0.9", 0, time.Second)
	r.expect()
	if r.clk.Pending() != 0 || r.m.State() != vrrp.Initialize {
		t.Fatal("advert acted on before Start")
	}
}

func TestNewMachineValidation(t *testing.T) {
	ok := vrrp.Config{Version: vrrp.Version3, PrimaryAddr: netip.MustParseAddr("10.0.0.1")}
	clk := vrrptest.NewFakeClock(t0)
	for name, mutate := range map[string]func(c *vrrp.Config){
		"version":          func(c *vrrp.Config) { c.Version = 1 },
		"interval":         func(c *vrrp.Config) { c.AdvertInterval = 15 * time.Millisecond },
		"v2 interval":      func(c *vrrp.Config) { c.Version, c.AdvertInterval = vrrp.Version2, 100*time.Millisecond },
		"v2 ipv6":          func(c *vrrp.Config) { c.Version, c.PrimaryAddr = vrrp.Version2, netip.MustParseAddr("fe80::1") },
		"no address":       func(c *vrrp.Config) { c.PrimaryAddr = netip.Addr{} },
		"preempt delay":    func(c *vrrp.Config) { c.PreemptDelay = -1 },
		"reannounce":       func(c *vrrp.Config) { c.ReannounceDelay = -1 },
		"tracker name":     func(c *vrrp.Config) { c.Trackers = []vrrp.Tracker{{}} },
		"tracker twice":    func(c *vrrp.Config) { c.Trackers = []vrrp.Tracker{{Name: "a"}, {Name: "a"}} },
		"tracker weight":   func(c *vrrp.Config) { c.Trackers = []vrrp.Tracker{{Name: "a", Weight: 254}} },
		"tracker negative": func(c *vrrp.Config) { c.Trackers = []vrrp.Tracker{{Name: "a", Weight: -254}} },
	} {
		c := ok
		mutate(&c)
		if _, err := vrrp.NewMachine(c, clk, &vrrptest.Recorder{}); !errors.Is(err, vrrp.ErrInvalidConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := vrrp.NewMachine(ok, nil, &vrrptest.Recorder{}); !errors.Is(err, vrrp.ErrInvalidConfig) {
		t.Errorf("nil clock: %v", err)
	}
	m, err := vrrp.NewMachine(ok, clk, &vrrptest.Recorder{})
	if err != nil {
		t.Fatal(err)
	}
	if st := m.Status(); st.BasePriority != vrrp.PriorityDefault || st.AdvertInterval != time.Second || st.State != vrrp.Initialize {
		t.Fatalf("defaults %+v", st)
	}
}

func TestEffectivePriority(t *testing.T) {
	trackers := []vrrp.Tracker{{Name: "up+", Weight: 30}, {Name: "down+", Weight: 20}, {Name: "up-", Weight: -40}, {Name: "down-", Weight: -50}, {Name: "link", Weight: 0}}
	up := func(n string) bool { return strings.HasPrefix(n, "up") || n == "link" }
	for _, tc := range []struct{ base, want uint8 }{
		{100, 80},  // +30 (up+), -50 (down-)
		{250, 230}, // 250 + 30 - 50
		{10, 1},    // clamped low
		{255, 255}, // owner untouched
	} {
		if got := vrrp.EffectivePriority(tc.base, trackers, up); got != tc.want {
			t.Errorf("EffectivePriority(%d) = %d, want %d", tc.base, got, tc.want)
		}
	}
	if got := vrrp.EffectivePriority(240, []vrrp.Tracker{{Name: "a", Weight: 100}}, func(string) bool { return true }); got != 254 {
		t.Errorf("clamp high: %d", got)
	}
}

func TestStringers(t *testing.T) {
	for _, s := range []interface{ String() string }{
		vrrp.Initialize, vrrp.Backup, vrrp.Master, vrrp.Fault, vrrp.State(9),
		vrrp.ReasonStartup, vrrp.ReasonTakeover, vrrp.Reason(99),
		vrrp.Version2, vrrp.Version3, vrrp.Version(7),
		vrrp.AuthNone, vrrp.AuthSimple, vrrp.AuthAH, vrrp.AuthType(9),
		vrrp.ChecksumStandard, vrrp.ChecksumMessageOnly, vrrp.ChecksumLegacyUnicast, vrrp.ChecksumMode(9),
		vrrp.AddrListRFC, vrrp.AddrListStrict, vrrp.AddrListIgnore, vrrp.AddrListPolicy(9),
	} {
		if s.String() == "" {
			t.Errorf("%#v has an empty String", s)
		}
	}
	if vrrp.MulticastGroup4().String() != "224.0.0.18" || vrrp.MulticastGroup6().String() != "ff02::12" {
		t.Error("multicast groups")
	}
}
