package vrrp

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

// Failover drill actions.
const (
	// DrillForceBackup: the instance was Master and resigned (ForceBackup).
	DrillForceBackup = "force_backup"
	// DrillTakeover: the instance was Backup and took over (TakeOver).
	DrillTakeover = "takeover"
)

// Handover is what one failover drill observed on this node. Times are
// zero when not seen.
//
// On the resigning side (force_backup) LastOldMasterAdvert is our
// priority-0 advertisement and FirstNewMasterAdvert the first advertisement
// of another router with a non-zero priority; the new Master's VIP and
// announcement times are on the other node. On the taking-over side
// (takeover) LastOldMasterAdvert is the last advertisement heard from the
// old Master (it stops when it hears ours and yields, RFC 5798 §6.4.3) and
// FirstNewMasterAdvert our first as Master; VIPsAdded and FirstAnnounce are
// ours.
type Handover struct {
	Action    string
	StartedAt time.Time
	Hold      time.Duration
	// OldMaster and NewMaster are primary addresses (ours included).
	OldMaster, NewMaster netip.Addr
	// NewMasterPriority is the priority of the first advertisement of the
	// new Master (force_backup) or ours (takeover).
	NewMasterPriority    uint8
	LastOldMasterAdvert  time.Time
	FirstNewMasterAdvert time.Time
	VIPsAdded            time.Time
	FirstAnnounce        time.Time
	// Done: the handover was observed; Failed, with Error, when the drill
	// ended otherwise (the old Master did not yield, say).
	Done   bool
	Failed bool
	Error  string
}

// AdvertGap is the time from the last advertisement of the old Master to
// the first of the new one; negative when they overlapped. ok is false when
// either is unknown.
func (h Handover) AdvertGap() (time.Duration, bool) {
	if h.LastOldMasterAdvert.IsZero() || h.FirstNewMasterAdvert.IsZero() {
		return 0, false
	}
	return h.FirstNewMasterAdvert.Sub(h.LastOldMasterAdvert), true
}

// AnnounceGap is the time from the VIPs' installation to the first
// announcement; ok is false when either is unknown (on the resigning side).
func (h Handover) AnnounceGap() (time.Duration, bool) {
	if h.VIPsAdded.IsZero() || h.FirstAnnounce.IsZero() {
		return 0, false
	}
	return h.FirstAnnounce.Sub(h.VIPsAdded), true
}

// drill is the state of the latest drill; guarded by Instance.mu.
type drill struct {
	h           Handover
	epoch       uint64 // takeover: our Master epoch
	oldInterval time.Duration
	// parted: takeover, the old Master's parting advertisement
	// (Config.AdvertOnHigherPriority) was seen.
	parted bool
	done   chan struct{}
	check  Timer
}

func (d *drill) finish(failed bool, msg string) {
	if d.h.Done || d.h.Failed {
		return
	}
	if failed {
		d.h.Failed, d.h.Error = true, msg
	} else {
		d.h.Done = true
	}
	if d.check != nil {
		d.check.Stop()
	}
	close(d.done)
}

// Failover starts a failover drill: a Master resigns and stays Backup for
// hold (Machine.ForceBackup); a Backup becomes Master and advertises
// priority 254 for hold (Machine.TakeOver), so that a non-owner Master
// yields to it (RFC 5798 §6.4.3). After hold the priorities are the
// configured ones again, and with preemption the better router takes the
// role back. The members of the instance's sync group get the same drill.
// Failover returns at once with the drill's first record; AwaitHandover
// waits for the handover.
func (i *Instance) Failover(ctx context.Context, hold time.Duration) (Handover, error) {
	if err := ctx.Err(); err != nil {
		return Handover{}, err
	}
	st := i.m.Status()
	now := i.clock.Now()
	d := &drill{done: make(chan struct{}), oldInterval: st.MasterAdverInterval}
	d.h = Handover{StartedAt: now, Hold: hold}
	i.mu.Lock()
	prev := i.drill
	if prev != nil {
		prev.finish(true, "superseded by a new drill")
	}
	primary := i.opts.PrimaryAddr
	switch st.State {
	case Master:
		d.h.Action, d.h.OldMaster = DrillForceBackup, primary
	default:
		d.h.Action, d.h.OldMaster, d.h.NewMaster = DrillTakeover, st.MasterAddr, primary
		if seen, ok := i.lastRecv[st.MasterAddr]; ok {
			d.h.LastOldMasterAdvert = seen.at
		}
	}
	i.drill = d
	g := i.group
	i.mu.Unlock()

	var err error
	if d.h.Action == DrillForceBackup {
		err = i.m.ForceBackup(hold)
	} else {
		err = i.m.TakeOver(hold)
	}
	if err != nil {
		i.mu.Lock()
		if i.drill == d {
			i.drill = prev
		}
		i.mu.Unlock()
		return Handover{}, fmt.Errorf("instance %q: %w", i.name, err)
	}
	if g != nil {
		g.drill(i, d.h.Action, hold)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if d.h.Action == DrillTakeover {
		i.armDrillCheck(d)
	}
	return d.h, nil
}

// AwaitHandover waits until the latest drill observed its handover (nil),
// ended otherwise (ErrHandoverFailed) or ctx ended (ctx.Err()), and returns
// its record.
func (i *Instance) AwaitHandover(ctx context.Context) (Handover, error) {
	i.mu.Lock()
	d := i.drill
	i.mu.Unlock()
	if d == nil {
		return Handover{}, ErrNoDrill
	}
	select {
	case <-d.done:
	case <-ctx.Done():
		i.mu.Lock()
		h := d.h
		i.mu.Unlock()
		return h, fmt.Errorf("instance %q: waiting for the handover: %w", i.name, ctx.Err())
	}
	i.mu.Lock()
	h := d.h
	i.mu.Unlock()
	if h.Failed {
		return h, fmt.Errorf("instance %q: %w: %s", i.name, ErrHandoverFailed, h.Error)
	}
	return h, nil
}

// drillAdvert records an accepted advertisement; i.mu is held.
func (i *Instance) drillAdvert(a Advert, now time.Time) {
	d := i.drill
	if d == nil || d.h.Done || d.h.Failed {
		return
	}
	switch d.h.Action {
	case DrillForceBackup:
		if a.Priority != PriorityStop && a.Src != i.opts.PrimaryAddr {
			d.h.NewMaster, d.h.NewMasterPriority, d.h.FirstNewMasterAdvert = a.Src, a.Priority, now
			d.finish(false, "")
		}
	case DrillTakeover:
		if a.Src != d.h.OldMaster || a.Priority == PriorityStop {
			return
		}
		if !d.h.FirstNewMasterAdvert.IsZero() && a.Priority < d.h.NewMasterPriority && !d.parted {
			// The old Master yielding sends one last advertisement
			// (AdvertOnHigherPriority): not a sign that it goes on, and
			// not its last advert before ours. A second one is.
			d.parted = true
			return
		}
		d.h.LastOldMasterAdvert = now
	}
}

// drillTransition records a transition; i.mu is held (and the Machine's).
func (i *Instance) drillTransition(ev StateChange) {
	d := i.drill
	if d == nil || d.h.Done || d.h.Failed {
		return
	}
	switch {
	case d.h.Action == DrillForceBackup && ev.Reason == ReasonForceBackup:
		d.h.LastOldMasterAdvert = i.lastSent // the priority-0 advert
	case d.h.Action == DrillForceBackup && ev.To == Master:
		d.finish(true, fmt.Sprintf("became master again (%v) before another router took over", ev.Reason))
	case d.h.Action == DrillTakeover && ev.To == Master && ev.Reason == ReasonTakeover:
		d.h.FirstNewMasterAdvert, d.h.NewMasterPriority = i.lastSent, ev.Priority
		// The Machine adds the VIPs and starts the announcements before it reports the
		// transition, so the VIP worker may have recorded this epoch's times already (before
		// d.epoch matched and drillVIPsAdded/drillAnnounced could take them): take them here.
		i.vmu.Lock()
		d.epoch = i.epoch
		if d.h.VIPsAdded.IsZero() {
			d.h.VIPsAdded = i.epochInfo.VIPsAdded
		}
		if d.h.FirstAnnounce.IsZero() {
			d.h.FirstAnnounce = i.epochInfo.FirstAnnounce
		}
		i.vmu.Unlock()
	case d.h.Action == DrillTakeover && ev.From == Master:
		d.finish(true, fmt.Sprintf("left master (%v -> %v, %v): the old master did not yield", ev.From, ev.To, ev.Reason))
	case ev.To == Fault || ev.To == Initialize:
		d.finish(true, fmt.Sprintf("instance went to %v", ev.To))
	}
}

// drillVIPsAdded and drillAnnounced record the takeover side's VIP times;
// i.mu is held.
func (i *Instance) drillVIPsAdded(epoch uint64, at time.Time) {
	if d := i.drill; d != nil && d.h.Action == DrillTakeover && d.epoch == epoch && d.h.VIPsAdded.IsZero() {
		d.h.VIPsAdded = at
	}
}

func (i *Instance) drillAnnounced(epoch uint64, at time.Time) {
	if d := i.drill; d != nil && d.h.Action == DrillTakeover && d.epoch == epoch && d.h.FirstAnnounce.IsZero() {
		d.h.FirstAnnounce = at
	}
}

// armDrillCheck decides a takeover every old-Master interval: done once we
// are Master, our VIPs are in (and announced, with an announcer), and the
// old Master has been silent for two of its intervals. i.mu is held.
func (i *Instance) armDrillCheck(d *drill) {
	interval := d.oldInterval
	if interval <= 0 {
		interval = i.opts.AdvertInterval
	}
	d.check = i.clock.AfterFunc(interval, func() {
		i.mu.Lock()
		defer i.mu.Unlock()
		if i.drill != d || d.h.Done || d.h.Failed {
			return
		}
		now := i.clock.Now()
		silent := d.h.LastOldMasterAdvert.IsZero() || now.Sub(d.h.LastOldMasterAdvert) >= 2*interval
		vipsIn := !d.h.VIPsAdded.IsZero() || len(i.opts.VIPs) == 0
		announced := !d.h.FirstAnnounce.IsZero() || i.deps.Announcer == nil
		if !d.h.FirstNewMasterAdvert.IsZero() && silent && vipsIn && announced {
			d.finish(false, "")
			return
		}
		i.armDrillCheck(d)
	})
}
