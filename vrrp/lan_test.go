package vrrp_test

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/vrrp"
	"github.com/fulcrum-lb/fulcrum/vrrp/vrrptest"
)

type lanRig struct {
	t   *testing.T
	lan *vrrptest.LAN
}

func newLAN(t *testing.T, latency time.Duration) *lanRig {
	return &lanRig{t: t, lan: vrrptest.NewLAN(vrrptest.NewFakeClock(t0), latency)}
}

func (l *lanRig) add(name, addr string, cfg vrrp.Config) *vrrptest.Node {
	l.t.Helper()
	if cfg.Version == 0 {
		cfg.Version = vrrp.Version3
	}
	cfg.PrimaryAddr = netip.MustParseAddr(addr)
	n, err := l.lan.Add(name, cfg)
	if err != nil {
		l.t.Fatal(err)
	}
	if err := n.Machine.Start(); err != nil {
		l.t.Fatal(err)
	}
	n.Take()
	return n
}

func (l *lanRig) at(d time.Duration) { l.lan.Clock.AdvanceTo(t0.Add(d)) }

// expectAt asserts the actions n recorded since the last check, all at t0+d
// (any time if d < 0).
func (l *lanRig) expectAt(n *vrrptest.Node, d time.Duration, want ...string) {
	l.t.Helper()
	ev := n.Take()
	got := make([]string, len(ev))
	for i, e := range ev {
		got[i] = e.String()
		if d >= 0 && !e.At.Equal(t0.Add(d)) {
			l.t.Errorf("%s: %s at %v, want %v", n.Name, e, e.At.Sub(t0), d)
		}
	}
	if !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
		l.t.Fatalf("%s at %v: actions\n  %s\nwant\n  %s", n.Name, l.lan.Clock.Now().Sub(t0), strings.Join(got, " "), strings.Join(want, " "))
	}
}

// TestTrackerFailover: A (100, +60 while "chk" is up) is Master over B (150).
// When chk fails, A advertises 100; B, preempting, discards that and takes
// over when its Master_Down_Timer, last reset by a 160 advert, fires; A then
// yields to B's higher priority.
func TestTrackerFailover(t *testing.T) {
	l := newLAN(t, 0)
	a := l.add("A", "10.0.0.1", vrrp.Config{Priority: 100, Trackers: []vrrp.Tracker{{Name: "chk", Weight: 60}}})
	b := l.add("B", "10.0.0.2", vrrp.Config{Priority: 150})

	// A: 3 s + (256-160)/256 s = 3.375 s. B would wait 3.4140625 s.
	l.at(ms(3375))
	l.expectAt(a, ms(3375), becameMaster(160, "master_down")...)
	l.at(ms(9999))
	a.Take()
	l.expectAt(b, 0)

	l.at(10 * time.Second)
	if err := a.Machine.SetTracker("chk", false); err != nil {
		t.Fatal(err)
	}
	if p := a.Machine.Status().Priority; p != 100 {
		t.Fatalf("effective priority %d", p)
	}
	l.at(ms(12375))
	a.Take() // send(100) at 10.375, 11.375, 12.375 s, all discarded by B
	// B's timer was last reset by the 160 advert of 9.375 s.
	l.at(ms(9375+3414.0625) - 1)
	l.expectAt(b, 0)
	l.at(ms(9375 + 3414.0625))
	l.expectAt(b, ms(9375+3414.0625), becameMaster(150, "preempt")...)
	l.expectAt(a, ms(9375+3414.0625), "remove_vips", "master->backup(higher_priority)")
}

// TestForceBackupDrill: the Master resigns (priority 0), the Backup takes
// over after its Skew_Time, and the drilled router stays Backup for the whole
// hold although the new Master has a lower priority; then it preempts.
func TestForceBackupDrill(t *testing.T) {
	l := newLAN(t, 0)
	a := l.add("A", "10.0.0.1", vrrp.Config{Priority: 200})
	b := l.add("B", "10.0.0.2", vrrp.Config{Priority: 100})
	l.at(10 * time.Second)
	a.Take()
	if err := a.Machine.ForceBackup(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	l.expectAt(a, 10*time.Second, "send(0)", "remove_vips", "master->backup(force_backup)")
	if st := a.Machine.Status(); !st.HoldUntil.Equal(t0.Add(40 * time.Second)) {
		t.Fatalf("HoldUntil = %v", st.HoldUntil.Sub(t0))
	}
	// B: Skew_Time (256-100)/256 s after the priority-0 advert.
	l.at(ms(10609.375))
	l.expectAt(b, ms(10609.375), becameMaster(100, "master_resigned")...)
	l.at(40 * time.Second)
	l.expectAt(a, 0)
	b.Take()
	// The hold is over: B's 40.609375 s advert is discarded and A's timer,
	// reset at 39.609375 s, fires 3.21875 s later.
	l.at(ms(39609.375+3218.75) - 1)
	l.expectAt(a, 0)
	l.at(ms(39609.375 + 3218.75))
	l.expectAt(a, ms(39609.375+3218.75), becameMaster(200, "preempt")...)
	l.expectAt(b, -1, "send(100)", "send(100)", "send(100)", "remove_vips", "master->backup(higher_priority)")
}

// TestForceBackupAlone: with nobody to take over, Master_Down_Timer expires
// during the hold and is deferred to its end.
func TestForceBackupAlone(t *testing.T) {
	r := newRig(t, vrrp.Config{Priority: 100})
	r.start()
	r.at(5 * time.Second)
	r.rec.Take()
	if err := r.m.ForceBackup(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	r.expect("send(0)", "remove_vips", "master->backup(force_backup)")
	r.at(25*time.Second - 1)
	r.expect()
	r.at(25 * time.Second)
	r.expect(becameMaster(100, "master_down")...)

	// CancelDrill releases a deferred takeover at once.
	r.at(30 * time.Second)
	if err := r.m.ForceBackup(time.Hour); err != nil {
		t.Fatal(err)
	}
	r.rec.Take()
	r.at(40 * time.Second) // timer expired at 33.609375 s and was deferred
	r.expect()
	r.m.CancelDrill()
	r.expect(becameMaster(100, "master_down")...)

	// A Backup just starts holding; a second ForceBackup re-arms the deferral.
	r.m.Stop()
	r.start()
	r.rec.Take()
	if err := r.m.ForceBackup(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	r.expect()
	r.at(48 * time.Second)
	if err := r.m.ForceBackup(5 * time.Second); err != nil { // hold until 53 s
		t.Fatal(err)
	}
	r.at(53*time.Second - 1)
	r.expect()
	r.at(53 * time.Second)
	r.expect(becameMaster(100, "master_down")...)
}

// TestTakeOverDrill: B (100) takes over from A (150) by advertising 254 for
// the drill; A yields. When the boost ends B advertises 100 again and A,
// preempting, takes the role back.
func TestTakeOverDrill(t *testing.T) {
	l := newLAN(t, 0)
	a := l.add("A", "10.0.0.1", vrrp.Config{Priority: 150})
	b := l.add("B", "10.0.0.2", vrrp.Config{Priority: 100})
	l.at(10 * time.Second)
	a.Take()
	if err := b.Machine.TakeOver(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	l.expectAt(b, 10*time.Second, becameMaster(254, "takeover")...)
	l.at(10 * time.Second) // deliver
	l.expectAt(a, 10*time.Second, "remove_vips", "master->backup(higher_priority)")
	if st := b.Machine.Status(); st.Priority != 254 || !st.BoostUntil.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("status %+v", st)
	}
	l.at(29 * time.Second)
	b.Take()
	l.at(30 * time.Second)
	l.expectAt(b, 30*time.Second, "send(100)") // boost over
	// A's timer, reset by the 254 advert at 29 s, fires 3 s + 106/256 s later.
	l.at(ms(29000 + 3414.0625))
	l.expectAt(a, ms(29000+3414.0625), becameMaster(150, "preempt")...)
	l.expectAt(b, -1, "send(100)", "send(100)", "remove_vips", "master->backup(higher_priority)") // 31, 32 s
}

// TestTakeOverCannotBeatOwner: the owner (255) does not yield to 254, and
// its next advertisement ends the drill.
func TestTakeOverCannotBeatOwner(t *testing.T) {
	l := newLAN(t, 0)
	a := l.add("A", "10.0.0.1", vrrp.Config{Priority: 255})
	b := l.add("B", "10.0.0.2", vrrp.Config{Priority: 100})
	l.at(ms(5500))
	if err := b.Machine.TakeOver(time.Minute); err != nil {
		t.Fatal(err)
	}
	l.expectAt(b, ms(5500), becameMaster(254, "takeover")...)
	l.at(6 * time.Second)
	l.expectAt(b, 6*time.Second, "remove_vips", "master->backup(higher_priority)")
	if st := b.Machine.Status(); st.State != vrrp.Backup || !st.BoostUntil.IsZero() || st.Priority != 100 {
		t.Fatalf("status %+v", st)
	}
	if a.Machine.State() != vrrp.Master {
		t.Fatal("owner lost master")
	}
}

func TestDrillErrors(t *testing.T) {
	r := newRig(t, vrrp.Config{Priority: 100, Trackers: []vrrp.Tracker{{Name: "link"}}})
	if err := r.m.TakeOver(time.Second); !errors.Is(err, vrrp.ErrNotRunning) {
		t.Fatalf("not running: %v", err)
	}
	r.start()
	if err := r.m.TakeOver(0); !errors.Is(err, vrrp.ErrBadDuration) {
		t.Fatalf("zero duration: %v", err)
	}
	if err := r.m.ForceBackup(-time.Second); !errors.Is(err, vrrp.ErrBadDuration) {
		t.Fatalf("negative duration: %v", err)
	}
	if err := r.m.TakeOver(time.Second); err != nil {
		t.Fatal(err)
	}
	if err := r.m.TakeOver(time.Second); !errors.Is(err, vrrp.ErrAlreadyMaster) {
		t.Fatalf("already master: %v", err)
	}
	if err := r.m.SetTracker("link", false); err != nil {
		t.Fatal(err)
	}
	if st := r.m.Status(); !st.BoostUntil.IsZero() {
		t.Fatalf("boost survived fault: %+v", st)
	}
	if err := r.m.TakeOver(time.Second); !errors.Is(err, vrrp.ErrInFault) {
		t.Fatalf("fault: %v", err)
	}
	if err := r.m.ForceBackup(time.Second); !errors.Is(err, vrrp.ErrInFault) {
		t.Fatalf("fault: %v", err)
	}
}

// TestLANLatencyAndPartition: with 1 ms latency and a cut link both routers
// become Master (split brain); when the link heals the lower priority
// yields.
func TestLANLatencyAndPartition(t *testing.T) {
	l := newLAN(t, time.Millisecond)
	a := l.add("A", "10.0.0.1", vrrp.Config{Priority: 200})
	b := l.add("B", "10.0.0.2", vrrp.Config{Priority: 100})
	l.at(time.Minute)
	if a.Machine.State() != vrrp.Master || b.Machine.State() != vrrp.Backup {
		t.Fatalf("A %v, B %v", a.Machine.State(), b.Machine.State())
	}
	b.SetLink(false)
	l.at(2 * time.Minute)
	if b.Machine.State() != vrrp.Master {
		t.Fatal("B did not take over behind a cut link")
	}
	b.SetLink(true)
	l.at(2*time.Minute + 2*time.Second)
	if a.Machine.State() != vrrp.Master || b.Machine.State() != vrrp.Backup {
		t.Fatalf("after healing: A %v, B %v", a.Machine.State(), b.Machine.State())
	}
}

// TestConcurrentUse runs a Machine on the real clock with 10 ms adverts while
// other goroutines feed it adverts, tracker changes and drills; under -race
// it checks the locking and the stale-timer guard.
func TestConcurrentUse(t *testing.T) {
	var rec vrrptest.Recorder
	m, err := vrrp.NewMachine(vrrp.Config{
		Version: vrrp.Version3, Priority: 100, AdvertInterval: 10 * time.Millisecond,
		PrimaryAddr: netip.MustParseAddr("10.0.0.2"), ReannounceDelay: 15 * time.Millisecond,
		PreemptDelay: 5 * time.Millisecond,
		Trackers:     []vrrp.Tracker{{Name: "w", Weight: -50}, {Name: "f"}},
	}, vrrp.SystemClock(), &rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, seed))
			for {
				select {
				case <-stop:
					return
				default:
				}
				switch rng.UintN(8) {
				case 0, 1, 2:
					m.HandleAdvert(vrrp.Advert{Src: netip.AddrFrom4([4]byte{10, 0, 0, byte(rng.UintN(5))}),
						Priority: uint8(rng.UintN(256)), Interval: time.Duration(1+rng.UintN(3)) * 10 * time.Millisecond})
				case 3:
					_ = m.SetTracker([]string{"w", "f"}[rng.UintN(2)], rng.UintN(2) == 0)
				case 4:
					_ = m.ForceBackup(time.Duration(1+rng.UintN(20)) * time.Millisecond)
				case 5:
					_ = m.TakeOver(time.Duration(1+rng.UintN(20)) * time.Millisecond)
				case 6:
					m.CancelDrill()
				case 7:
					_ = m.Status()
				}
				time.Sleep(time.Duration(rng.UintN(300)) * time.Microsecond)
			}
		}(uint64(g))
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	m.Stop()
	n := len(rec.Events())
	time.Sleep(50 * time.Millisecond)
	if got := len(rec.Events()); got != n {
		t.Fatalf("%d actions after Stop", got-n)
	}
	if m.State() != vrrp.Initialize {
		t.Fatalf("state %v after Stop", m.State())
	}
}
