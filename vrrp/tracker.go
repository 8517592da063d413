package vrrp

import "time"

// MaxTrackerWeight bounds tracker weights, as keepalived does ("weight
// <-253..253>"): a single tracker can move any priority across the whole
// 1..254 range.
const MaxTrackerWeight = 253

// Tracker is a keepalived-style tracked object (track_interface,
// track_script, ...) and what its state does to the instance:
//
//   - Weight 0: while it is down the instance is in Fault.
//   - Weight > 0: while it is up, Weight is added to the priority.
//   - Weight < 0: while it is down, Weight is added (so subtracted).
//
// The effective priority is clamped to 1..254; an address owner (configured
// priority 255) keeps 255 whatever its trackers say, but still enters Fault.
type Tracker struct {
	Name   string
	Weight int
}

type trackerState struct {
	weight int
	up     bool
}

// EffectivePriority applies tracker weights to a configured priority the way
// the Machine does; up reports each tracker's state.
func EffectivePriority(base uint8, trackers []Tracker, up func(name string) bool) uint8 {
	if base == PriorityOwner {
		return PriorityOwner
	}
	p := int(base)
	for _, t := range trackers {
		switch isUp := up(t.Name); {
		case t.Weight > 0 && isUp, t.Weight < 0 && !isUp:
			p += t.Weight
		}
	}
	return uint8(min(max(p, 1), PriorityMaxBackup))
}

// effectivePriority is the priority the Machine advertises and compares at
// now: the TakeOver boost while it lasts, else the tracker-adjusted one.
func (m *Machine) effectivePriority(now time.Time) uint8 {
	if m.boosted(now) && m.cfg.Priority != PriorityOwner {
		return takeoverPriority
	}
	if m.cfg.Priority == PriorityOwner {
		return PriorityOwner
	}
	// The weights are the trackers' current ones: SetTrackerWeight may
	// have changed them since Config.Trackers.
	p := int(m.cfg.Priority)
	for _, t := range m.trackers {
		if (t.weight > 0 && t.up) || (t.weight < 0 && !t.up) {
			p += t.weight
		}
	}
	return uint8(min(max(p, 1), PriorityMaxBackup))
}

func (m *Machine) boosted(now time.Time) bool {
	return !m.boostUntil.IsZero() && now.Before(m.boostUntil)
}

// faulted reports whether a weight-0 tracker is down.
func (m *Machine) faulted() bool {
	for _, t := range m.trackers {
		if t.weight == 0 && !t.up {
			return true
		}
	}
	return false
}
