package vrrp

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Counters are an instance's cumulative counters.
type Counters struct {
	// Received counts packets read; AdvertsIn those accepted; Drops the
	// others by reason (plus AddrListMismatch warnings of accepted ones,
	// as keepalived's addr_list_err counts them).
	Received  uint64
	AdvertsIn uint64
	Drops     map[DropReason]uint64
	// AdvertsOut counts advertisements sent (to at least one destination);
	// Prio0In and Prio0Out those with priority 0 (RFC 5798 §6.4.2, §6.4.3).
	AdvertsOut, Prio0In, Prio0Out uint64
	Transitions                   uint64
	SendErrors, RecvErrors        uint64
	// VIPErrors counts failed VIP changes; VIPReadds VIPs put back after
	// they were removed behind our back.
	VIPErrors, VIPReadds uint64
	AnnounceRounds       uint64
	AnnounceErrors       uint64
	NotifyRuns           uint64
	NotifyFailures       uint64
}

// TrackerStatus is one tracker's current reading.
type TrackerStatus struct {
	Name string // TrackSpec.Key, or "sync_group"
	Up   bool
	// Weight is the weight in effect (value*weight for files).
	Weight int
	// Value is a track_file's number.
	Value int64
	Error string
}

// MasterStint describes the current or last time as Master.
type MasterStint struct {
	Since          time.Time
	VIPsAdded      time.Time
	FirstAnnounce  time.Time
	AnnounceRounds int
}

// InstanceStatus is a snapshot of an instance.
type InstanceStatus struct {
	Name      string
	Interface string
	Version   Version
	VRID      uint8
	State     State
	// Priority is the effective priority, BasePriority the configured one.
	Priority, BasePriority uint8
	PrimaryAddr            netip.Addr
	// MasterAddr and MasterPriority: the Master heard last (Backup).
	MasterAddr     netip.Addr
	MasterPriority uint8
	// AdvertInterval is ours; MasterAdverInterval the one learnt from the
	// Master (RFC 5798 §6.4.2).
	AdvertInterval, MasterAdverInterval, MasterDownInterval time.Duration
	// LastChange is the latest transition (zero before Start).
	LastChange StateChange
	VIPs       []VIP
	// VIPsInstalled counts the VIPs installed by this instance now.
	VIPsInstalled int
	Group         string
	// HoldUntil and BoostUntil are the ends of a running drill.
	HoldUntil, BoostUntil time.Time
	// LastAdvertSent is our latest advertisement; LastAdvertReceived the
	// latest from the Master we follow.
	LastAdvertSent, LastAdvertReceived time.Time
	Master                             MasterStint
	Trackers                           []TrackerStatus
	Counters                           Counters
	// Handover is the latest failover drill, nil if none.
	Handover *Handover
}

// Status returns a snapshot.
func (i *Instance) Status() InstanceStatus {
	ms := i.m.Status()
	snap := i.stats.Snapshot()
	s := InstanceStatus{
		Name:                i.name,
		State:               ms.State,
		Priority:            ms.Priority,
		BasePriority:        ms.BasePriority,
		MasterAddr:          ms.MasterAddr,
		MasterPriority:      ms.MasterPriority,
		AdvertInterval:      ms.AdvertInterval,
		MasterAdverInterval: ms.MasterAdverInterval,
		MasterDownInterval:  ms.MasterDownInterval,
		HoldUntil:           ms.HoldUntil,
		BoostUntil:          ms.BoostUntil,
		Counters: Counters{
			Received:       snap.Received,
			AdvertsIn:      i.advertsIn.Load(),
			Drops:          snap.Drops,
			AdvertsOut:     i.advertsOut.Load(),
			Prio0In:        i.prio0In.Load(),
			Prio0Out:       i.prio0Out.Load(),
			Transitions:    i.transitions.Load(),
			SendErrors:     i.sendErrors.Load(),
			RecvErrors:     i.recvErrors.Load(),
			VIPErrors:      i.vipErrors.Load(),
			VIPReadds:      i.vipReadds.Load(),
			AnnounceRounds: i.announceRounds.Load(),
			AnnounceErrors: i.announceErrors.Load(),
			NotifyRuns:     i.notifyRuns.Load(),
			NotifyFailures: i.notifyFails.Load(),
		},
	}
	i.mu.Lock()
	s.Interface, s.Version, s.VRID = i.opts.Interface, i.opts.Version, i.opts.VRID
	s.PrimaryAddr = i.opts.PrimaryAddr
	s.LastChange = i.lastChange
	s.LastAdvertSent = i.lastSent
	if ms.MasterAddr.IsValid() {
		s.LastAdvertReceived = i.lastRecv[ms.MasterAddr].at
	}
	if i.group != nil {
		s.Group = i.group.name
	}
	for _, k := range slices.Sorted(maps.Keys(i.trk)) {
		t := i.trk[k]
		s.Trackers = append(s.Trackers, TrackerStatus{Name: k, Up: t.up, Weight: t.weight, Value: t.value, Error: t.err})
	}
	if d := i.drill; d != nil {
		h := d.h
		s.Handover = &h
	}
	i.mu.Unlock()
	i.vmu.Lock()
	s.VIPs = slices.Clone(i.vips)
	s.VIPsInstalled = len(i.installed)
	e := i.epochInfo
	i.vmu.Unlock()
	s.Master = MasterStint{Since: e.BecameMaster, VIPsAdded: e.VIPsAdded, FirstAnnounce: e.FirstAnnounce, AnnounceRounds: e.AnnounceRounds}
	return s
}

// Update applies new options to a running (or not yet running) instance
// without restarting it, keeping its state: a Master stays Master. A Master
// first sends an advertisement with the old settings, so that Backups hear
// from it during the change, then the new settings take effect
// (Machine.Update sends one with them). VIPs added or removed while Master
// are installed or removed at once; tracker changes restart the trackers.
//
// What identifies the virtual router cannot change in place: name,
// interface, version, VRID, primary address, unicast peers, address
// ownership (priority 255) and the address family. Update then returns an
// error wrapping ErrIncompatibleUpdate and changes nothing; the caller
// replaces the instance.
func (i *Instance) Update(opts InstanceOptions) error {
	opts = normalizeOptions(opts)
	wire, cfg, err := buildConfigs(opts, i.deps)
	if err != nil {
		return err
	}
	i.mu.Lock()
	old := i.opts
	i.mu.Unlock()
	var diffs []string
	diff := func(what string, changed bool) {
		if changed {
			diffs = append(diffs, what)
		}
	}
	diff("name", opts.Name != old.Name)
	diff("interface", opts.Interface != old.Interface)
	diff("version", opts.Version != old.Version)
	diff("virtual_router_id", opts.VRID != old.VRID)
	diff("primary address", opts.PrimaryAddr != old.PrimaryAddr)
	diff("unicast peers", !slices.Equal(opts.Peers, old.Peers))
	diff("address owner", (opts.Priority == PriorityOwner) != (old.Priority == PriorityOwner))
	diff("dont_track_interface", opts.DontTrackInterface != old.DontTrackInterface)
	if len(diffs) > 0 {
		return fmt.Errorf("%w: instance %q: %s changed", ErrIncompatibleUpdate, i.name, strings.Join(diffs, ", "))
	}

	if st, prio := i.m.StatePriority(); st == Master {
		(*actions)(i).SendAdvert(prio)
	}
	specs := trackSpecs(opts, i.deps)
	i.mu.Lock()
	oldSpecs := i.specs
	trackersChanged := !slices.Equal(specs, oldSpecs) || opts.TrackPollInterval != old.TrackPollInterval
	i.opts, i.specs = opts, specs
	if trackersChanged {
		trk := initialTrackers(specs)
		for k, v := range trk {
			if prev, ok := i.trk[k]; ok {
				v.ok, v.value, v.err = prev.ok, prev.value, prev.err
				trk[k] = v
			}
		}
		i.trk = trk
	}
	runCtx := i.runCtx
	i.mu.Unlock()
	i.wire.Store(wire)
	if err := i.m.Update(cfg); err != nil {
		// Unreachable after the checks above; keep the old wire settings.
		i.mu.Lock()
		i.opts, i.specs = old, oldSpecs
		i.mu.Unlock()
		return fmt.Errorf("instance %q: %w", i.name, err)
	}

	// Machine.Update reset the weights to 0: give it the readings again.
	i.pushTrackers(true)

	i.vmu.Lock()
	vipsChanged := !slices.Equal(i.vips, opts.VIPs)
	i.vips = slices.Clone(opts.VIPs)
	holding := i.holding
	i.vmu.Unlock()
	if vipsChanged && holding {
		i.vipq.push(i.syncVIPs)
		i.startBurst()
	}
	if trackersChanged && runCtx != nil && runCtx.Err() == nil && !i.shuttingDown.Load() {
		i.stopTrackers()
		i.startTrackers(runCtx)
	}
	i.log.Info("vrrp instance updated", "vips_changed", vipsChanged, "trackers_changed", trackersChanged)
	return nil
}
