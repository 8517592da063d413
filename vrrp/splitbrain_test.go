package vrrp_test

import (
	"context"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/vrrp"
	"github.com/fulcrum-lb/fulcrum/vrrp/vrrptest"
)

// TestAdvertOnHigherPriority: a Master that yields to a higher priority, or
// loses the tie-break, sends one parting advertisement at its own priority
// before it removes its VIPs and becomes Backup (keepalived's
// higher_prio_send_advert); by default it sends nothing (RFC 5798 §6.4.3).
func TestAdvertOnHigherPriority(t *testing.T) {
	for _, tc := range []struct {
		name   string
		parts  bool
		src    string
		prio   uint8
		reason string
	}{
		{"higher priority", true, "10.0.0.1", 200, "higher_priority"},
		{"tie-break", true, "10.0.0.9", 100, "tie_break"},
		{"rfc higher priority", false, "10.0.0.1", 200, "higher_priority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, vrrp.Config{Priority: 100, AdvertOnHigherPriority: tc.parts})
			r.start()
			r.at(ms(3609.375))
			r.rec.Take()
			r.advert(tc.src, tc.prio, time.Second)
			want := []string{"remove_vips", "master->backup(" + tc.reason + ")"}
			if tc.parts {
				want = append([]string{"send(100)"}, want...)
			}
			r.expect(want...)
			// Only one: it is Backup now, and a Backup does not advertise.
			r.advert(tc.src, tc.prio, time.Second)
			r.expect()
		})
	}
}

// TestInstanceSplitBrainHeal: two Masters after a partition. When it heals,
// the winner's advertisement may reach the loser first: the loser yields
// without the winner ever hearing it, and the neighbours that followed the
// loser's announcements keep its MAC. With AdvertOnHigherPriority the loser
// parts with one advertisement, the winner hears a Master it beats and
// re-announces. Also for equal priorities, where the winner is the greater
// address, and whichever Master's advert comes first after the heal.
func TestInstanceSplitBrainHeal(t *testing.T) {
	for _, tc := range []struct {
		name         string
		prioA, prioB uint8 // A is 192.0.2.1, B 192.0.2.2
		winnerFirst  bool
		parts        bool
		reannounce   bool
	}{
		{"winner's advert first", 200, 100, true, true, true},
		{"loser's advert first", 200, 100, false, true, true},
		{"winner's advert first without parting advert", 200, 100, true, false, false},
		{"tie, winner's advert first", 100, 100, true, true, true},
		{"tie, loser's advert first", 100, 100, false, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newIRig(t)
			wire := vrrptest.NewWire()
			optsA, optsB := baseOpts("A", "192.0.2.1", tc.prioA), baseOpts("B", "192.0.2.2", tc.prioB)
			optsA.AdvertOnHigherPriority, optsB.AdvertOnHigherPriority = tc.parts, tc.parts
			a := r.add(wire, optsA, vrrp.Deps{})
			b := r.add(wire, optsB, vrrp.Deps{})
			r.start(a)
			r.start(b)
			r.at(10 * time.Second)
			// With equal priorities both time out together and either may
			// stay Master; of two Masters the greater address wins.
			if sa, sb := a.inst.Status().State, b.inst.Status().State; (sa == vrrp.Master) == (sb == vrrp.Master) {
				t.Fatalf("A is %v, B is %v: want one Master", sa, sb)
			}
			winner, loser := a, b
			if tc.prioA == tc.prioB {
				winner, loser = b, a
			}

			wire.SetDown(true)
			r.at(20 * time.Second)
			wantState(t, winner, vrrp.Master)
			wantState(t, loser, vrrp.Master)
			rounds, winnerMoves := len(winner.ann.Rounds()), len(winner.transitions())

			// Heal now, or just after the other Master's next advert (lost),
			// so that the chosen one's comes first (1 s intervals).
			wn := winner.inst.Status().LastAdvertSent.Add(time.Second)
			ln := loser.inst.Status().LastAdvertSent.Add(time.Second)
			if wn.Equal(ln) {
				t.Fatalf("both Masters advertise at %v: no order to choose", wn.Sub(t0))
			}
			healAt := r.clk.Now()
			if tc.winnerFirst && ln.Before(wn) {
				healAt = ln.Add(time.Millisecond)
			}
			if !tc.winnerFirst && wn.Before(ln) {
				healAt = wn.Add(time.Millisecond)
			}
			r.at(healAt.Sub(t0))
			wire.SetDown(false)
			r.at(healAt.Sub(t0) + 2*time.Second)

			wantState(t, winner, vrrp.Master)
			wantState(t, loser, vrrp.Backup)
			if got := winner.transitions(); len(got) != winnerMoves {
				t.Errorf("the winner moved: %v", got)
			}
			if got := loser.transitions(); got[len(got)-1] != map[bool]string{true: "master->backup(tie_break)", false: "master->backup(higher_priority)"}[tc.prioA == tc.prioB] {
				t.Errorf("the loser's transitions: %v", got)
			}
			if !winner.addrs.Has(vip1.Addr()) || loser.addrs.Has(vip1.Addr()) {
				t.Errorf("VIP on winner %v, loser %v", winner.addrs.Has(vip1.Addr()), loser.addrs.Has(vip1.Addr()))
			}
			got := len(winner.ann.Rounds()) - rounds
			if tc.reannounce && got == 0 {
				t.Errorf("the winner did not announce again after the heal")
			}
			if !tc.reannounce && got != 0 {
				t.Errorf("the winner announced %d rounds after the heal", got)
			}
		})
	}
}

// TestTakeOverDrillIgnoresPartingAdvert: with AdvertOnHigherPriority the
// old Master's parting advertisement comes after ours; the drill still
// reports the old Master's last advertisement before ours (a positive
// advert gap) and completes.
func TestTakeOverDrillIgnoresPartingAdvert(t *testing.T) {
	r := newIRig(t)
	wire := vrrptest.NewWire()
	optsA, optsB := baseOpts("A", "192.0.2.1", 200), baseOpts("B", "192.0.2.2", 100)
	optsA.AdvertOnHigherPriority, optsB.AdvertOnHigherPriority = true, true
	a := r.add(wire, optsA, vrrp.Deps{})
	b := r.add(wire, optsB, vrrp.Deps{})
	r.start(a)
	r.start(b)
	r.at(10*time.Second + 500*time.Millisecond)
	wantState(t, a, vrrp.Master)
	ctx := context.Background()
	if _, err := b.inst.Failover(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	r.at(15 * time.Second)
	wantState(t, b, vrrp.Master)
	wantState(t, a, vrrp.Backup)
	h, err := b.inst.AwaitHandover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A advertised at 10.21875 s; B took over at 10.5 s.
	if gap, ok := h.AdvertGap(); !ok || gap != ms(281.25) {
		t.Fatalf("advert gap %v %v, want 281.25ms (%+v)", gap, ok, h)
	}
}
