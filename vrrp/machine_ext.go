package vrrp

import (
	"errors"
	"fmt"
	"time"
)

// ErrIncompatibleUpdate is returned by Machine.Update (and Instance.Update)
// for a change that cannot be made to a running virtual router: its
// version, its primary address, or whether it is the address owner. The
// caller stops the old one and starts a new one instead.
var ErrIncompatibleUpdate = errors.New("vrrp: change cannot be applied in place")

// SetTrackerWeight is SetTracker for a tracker whose weight varies, such as
// keepalived's track_file (the file's number times the configured weight):
// it sets the tracker's current weight as well as its state. The usual rules
// apply to the pair: weight 0 and down is Fault; a positive weight counts
// while up, a negative one while down. weight must lie within
// -MaxTrackerWeight..MaxTrackerWeight.
func (m *Machine) SetTrackerWeight(name string, weight int, up bool) error {
	if weight < -MaxTrackerWeight || weight > MaxTrackerWeight {
		return fmt.Errorf("%w: tracker %q weight %d outside -%d..%d", ErrInvalidConfig, name, weight, MaxTrackerWeight, MaxTrackerWeight)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.trackers[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownTracker, name)
	}
	if t.up == up && t.weight == weight {
		return nil
	}
	t.up, t.weight = up, weight
	if !m.started {
		return nil
	}
	m.reevaluateFault()
	return nil
}

// reevaluateFault enters or leaves Fault after a tracker change.
func (m *Machine) reevaluateFault() {
	switch faulted := m.faulted(); {
	case faulted && m.state != Fault:
		m.enterFault()
	case !faulted && m.state == Fault:
		m.preemptAt = time.Time{} // keepalived clears preempt_time on leaving Fault
		m.initialize(ReasonRecovered)
	}
}

// FollowMaster makes a Backup the Master because another member of its sync
// group became Master (keepalived's vrrp_sync_group): the transition of RFC
// 5798 §6.4.2 with ReasonSyncGroup. It does nothing in any other state or
// during a ForceBackup hold, and reports whether it moved.
func (m *Machine) FollowMaster() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.started || m.state != Backup || m.holding(m.clock.Now()) {
		return false
	}
	m.enterMaster(ReasonSyncGroup)
	return true
}

// FollowBackup makes a Master resign because another member of its sync
// group left Master for Backup: it sends an advertisement with priority 0,
// so that the Backup of this virtual router takes over after its Skew_Time
// instead of Master_Down_Interval (RFC 5798 §6.4.2 and §6.4.3), removes the
// addresses and enters Backup with ReasonSyncGroup. It does nothing in any
// other state and reports whether it moved.
func (m *Machine) FollowBackup() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.started || m.state != Master {
		return false
	}
	m.stopSlot(&m.adverTimer)
	m.act.SendAdvert(PriorityStop)
	m.masterAdverInterval = m.own
	m.boostUntil = time.Time{}
	m.preemptAt = time.Time{}
	m.enterBackup(ReasonSyncGroup)
	return true
}

// Update replaces the configuration of a Machine without a state change of
// its own: a Master stays Master, a Backup stays Backup. Priority, interval,
// preemption, trackers (a tracker keeps its state if its name stays) and the
// announce settings change. A Master sends an advertisement with the new
// values at once and restarts Adver_Timer with the new interval (RFC 5798
// §6.4.3); a VRRPv2 Backup restarts Master_Down_Timer when its own interval
// changed (RFC 3768 §6.1 derives it from the local interval); a v3 Backup
// keeps the interval it learnt (RFC 5798 §6.4.2). A new weight-0 tracker
// that is down, or the end of one, moves into or out of Fault as SetTracker
// would.
//
// The version, the primary address and address ownership (priority 255)
// cannot change in place: Update returns ErrIncompatibleUpdate and changes
// nothing.
func (m *Machine) Update(cfg Config) error {
	if cfg.Priority == 0 {
		cfg.Priority = PriorityDefault
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	cfg.PrimaryAddr = cfg.PrimaryAddr.Unmap().WithZone("")
	cfg.Trackers = append([]Tracker(nil), cfg.Trackers...)

	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case cfg.Version != m.cfg.Version:
		return fmt.Errorf("%w: version %v -> %v", ErrIncompatibleUpdate, m.cfg.Version, cfg.Version)
	case cfg.PrimaryAddr != m.cfg.PrimaryAddr:
		return fmt.Errorf("%w: primary address %v -> %v", ErrIncompatibleUpdate, m.cfg.PrimaryAddr, cfg.PrimaryAddr)
	case (cfg.Priority == PriorityOwner) != (m.cfg.Priority == PriorityOwner):
		return fmt.Errorf("%w: address ownership (priority %d -> %d)", ErrIncompatibleUpdate, m.cfg.Priority, cfg.Priority)
	}
	trackers := make(map[string]*trackerState, len(cfg.Trackers))
	for _, t := range cfg.Trackers {
		ts := &trackerState{weight: t.Weight, up: true}
		if old, ok := m.trackers[t.Name]; ok {
			ts.up = old.up
		}
		trackers[t.Name] = ts
	}
	oldOwn := m.own
	m.cfg, m.trackers, m.own = cfg, trackers, cfg.advertInterval()
	if cfg.PreemptDelay == 0 {
		m.preemptAt = time.Time{}
	}
	if !m.started {
		m.masterAdverInterval = m.own
		return nil
	}
	if m.faulted() != (m.state == Fault) {
		m.reevaluateFault()
		return nil
	}
	switch m.state {
	case Master:
		m.masterAdverInterval = m.own
		m.act.SendAdvert(m.effectivePriority(m.clock.Now()))
		m.armAdver()
		if cfg.ReannounceDelay == 0 {
			m.stopSlot(&m.announceTimer)
		}
	case Backup:
		if cfg.Version == Version2 && m.own != oldOwn && !m.downDeferred {
			m.masterAdverInterval = m.own
			m.armDown(MasterDownInterval(cfg.Version, m.effectivePriority(m.clock.Now()), m.masterAdverInterval), m.downReason)
		}
	}
	return nil
}
