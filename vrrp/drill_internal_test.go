package vrrp

import (
	"testing"
	"time"
)

// TestDrillTakeoverVIPsBeforeTransition: the Machine adds the VIPs and
// starts announcing before it reports the transition to Master, so on a fast
// VIP worker the epoch's times are recorded before the takeover drill knows
// its epoch. The transition must take them, or the drill never sees its VIPs
// in and waits until its timeout (seen once in the agent's failover test).
func TestDrillTakeoverVIPsBeforeTransition(t *testing.T) {
	added := time.Unix(100, 0)
	announced := added.Add(time.Millisecond)
	d := &drill{done: make(chan struct{})}
	d.h.Action = DrillTakeover
	i := &Instance{drill: d, epoch: 7, epochInfo: masterEpoch{VIPsAdded: added, FirstAnnounce: announced}}

	// The worker was first: the drill's epoch is not set yet, so these are ignored.
	i.drillVIPsAdded(7, added)
	i.drillAnnounced(7, announced)
	if !d.h.VIPsAdded.IsZero() {
		t.Fatal("recorded before the drill knew its epoch")
	}

	i.drillTransition(StateChange{To: Master, Reason: ReasonTakeover, Priority: 254})
	if d.epoch != 7 || !d.h.VIPsAdded.Equal(added) || !d.h.FirstAnnounce.Equal(announced) {
		t.Errorf("after the transition: epoch %d, VIPs added %v, first announce %v", d.epoch, d.h.VIPsAdded, d.h.FirstAnnounce)
	}
}
