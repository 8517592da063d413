package vrrp

import (
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Group is a sync group (keepalived's vrrp_sync_group): instances that
// change state together, for a router whose virtual routers on several
// links must all be on the same node (a NAT gateway's outside and inside
// addresses, say). The rules, kept deliberately simple:
//
//   - Fault: while any member is in Fault because of its own trackers, all
//     members are held in Fault (through a weight-0 tracker named
//     "sync_group"); when none is, they all leave Fault together (RFC 5798
//     §6.4.1 Initialize, so Backup unless an owner).
//   - A member that becomes Master (its Master_Down_Timer fired, it
//     preempted, it recovered as owner) makes every other member that is
//     Backup a Master too (Machine.FollowMaster), unless that member is in
//     a ForceBackup hold.
//   - A Master member that yields to a higher-priority or tie-winning
//     advertisement makes every other Master member resign
//     (Machine.FollowBackup: priority 0, so the peer's Backup takes over
//     after Skew_Time, RFC 5798 §6.4.2).
//   - A failover drill (Instance.Failover) on a member drills every member.
//
// Transitions made for the group carry ReasonSyncGroup and cause no further
// following, so a group settles in one step. As in keepalived, the members'
// priorities must rank the routers the same way on every link, otherwise
// the members are pulled in different directions and flap; for the same
// reason the weights of a member's trackers count as 0 (keepalived does
// this unless sync_group_tracking_weight is set): a failing tracker faults
// the whole group instead of shifting one member's priority.
//
// The reactions run on the goroutine of the member that moved, never under
// a Machine's lock. Members join with Join before or while they run, and
// leave with Leave (a reload that changes the groups).
type Group struct {
	name string
	log  *slog.Logger

	mu      sync.Mutex
	members []*Instance
	faulted map[*Instance]bool
}

// NewGroup returns an empty group. log may be nil.
func NewGroup(name string, log *slog.Logger) *Group {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Group{name: name, log: log.With(slog.String("sync_group", name)), faulted: map[*Instance]bool{}}
}

// Name is the group's name.
func (g *Group) Name() string { return g.name }

// Members returns the members' names in join order.
func (g *Group) Members() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	names := make([]string, len(g.members))
	for k, m := range g.members {
		names[k] = m.name
	}
	return names
}

// Join adds i to the group (leaving any other group). From then on the
// weights of i's trackers count as 0, as keepalived sets them for grouped
// instances; the group's Fault rule applies at once.
func (g *Group) Join(i *Instance) {
	i.mu.Lock()
	old := i.group
	i.mu.Unlock()
	if old == g {
		return
	}
	if old != nil {
		old.Leave(i)
	}
	i.mu.Lock()
	i.group = g
	weighted := slices.ContainsFunc(i.specs, func(t TrackSpec) bool { return t.Weight != 0 })
	i.mu.Unlock()
	if weighted {
		g.log.Warn("tracker weights of a sync group member count as 0: a tracker that fails puts the whole group in fault",
			slog.String("vrrp_instance", i.name))
	}
	g.mu.Lock()
	g.members = append(g.members, i)
	g.faulted[i] = false
	g.mu.Unlock()
	i.pushTrackers(false)
	i.mu.Lock()
	own := i.ownFault
	i.mu.Unlock()
	g.memberFault(i, own)
}

// Leave removes i from the group and releases it from the group's Fault.
func (g *Group) Leave(i *Instance) {
	g.mu.Lock()
	idx := slices.Index(g.members, i)
	if idx >= 0 {
		g.members = slices.Delete(g.members, idx, idx+1)
		delete(g.faulted, i)
	}
	g.mu.Unlock()
	if idx < 0 {
		return
	}
	i.mu.Lock()
	if i.group == g {
		i.group = nil
	}
	i.mu.Unlock()
	i.setSyncFault(false)
	g.applyFault()
}

// others returns the members other than i.
func (g *Group) others(i *Instance) []*Instance {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*Instance, 0, len(g.members))
	for _, m := range g.members {
		if m != i {
			out = append(out, m)
		}
	}
	return out
}

// memberFault records whether a member's own trackers fault it.
func (g *Group) memberFault(i *Instance, fault bool) {
	g.mu.Lock()
	if _, ok := g.faulted[i]; !ok {
		g.mu.Unlock()
		return
	}
	g.faulted[i] = fault
	g.mu.Unlock()
	g.applyFault()
}

// applyFault holds every member in Fault while one is faulted.
func (g *Group) applyFault() {
	g.mu.Lock()
	faulted := false
	for _, f := range g.faulted {
		faulted = faulted || f
	}
	members := slices.Clone(g.members)
	g.mu.Unlock()
	for _, m := range members {
		m.setSyncFault(faulted)
	}
}

// memberMoved applies the group's rules to a member's transition.
func (g *Group) memberMoved(i *Instance, ev StateChange) {
	switch ev.Reason {
	case ReasonSyncGroup, ReasonForceBackup, ReasonTakeover, ReasonShutdown, ReasonFault:
		return // made for the group, a drill (drilled as a whole), or Fault (the tracker rule)
	}
	switch {
	case ev.To == Master:
		for _, o := range g.others(i) {
			if o.m.FollowMaster() {
				g.log.Info("sync group follows to master", slog.String("vrrp_instance", o.name), slog.String("leader", i.name))
			}
		}
	case ev.From == Master && ev.To == Backup:
		for _, o := range g.others(i) {
			if o.m.FollowBackup() {
				g.log.Info("sync group follows to backup", slog.String("vrrp_instance", o.name), slog.String("leader", i.name))
			}
		}
	}
}

// drill gives the other members the drill that i got.
func (g *Group) drill(i *Instance, action string, hold time.Duration) {
	for _, o := range g.others(i) {
		var err error
		switch st := o.m.State(); {
		case action == DrillForceBackup && st != Fault && st != Initialize:
			err = o.m.ForceBackup(hold)
		case action == DrillTakeover && st == Backup:
			err = o.m.TakeOver(hold)
		}
		if err != nil {
			g.log.Warn("sync group drill failed for a member", slog.String("vrrp_instance", o.name), slog.Any("error", err))
		}
	}
}
