package vrrp

import "sync/atomic"

// Stats counts what the transport did with received and sent packets. All
// methods are safe for concurrent use; the zero value is ready to use. A Stats
// must not be copied after first use.
type Stats struct {
	received atomic.Uint64
	accepted atomic.Uint64
	sent     atomic.Uint64
	drops    [numDropReasons]atomic.Uint64
}

// Received counts one packet read from the wire, before any check.
func (s *Stats) Received() { s.received.Add(1) }

// Accepted counts one packet that passed every check and was handed to the
// state machine.
func (s *Stats) Accepted() { s.accepted.Add(1) }

// Sent counts one advertisement written to the wire.
func (s *Stats) Sent() { s.sent.Add(1) }

// Drop counts one packet for reason r. Unknown reasons are ignored.
func (s *Stats) Drop(r DropReason) {
	if r > 0 && r < numDropReasons {
		s.drops[r].Add(1)
	}
}

// Count counts err if it carries a DropReason (see ReasonOf) and reports
// whether it did. It also counts accepted-with-warning errors such as the
// AddrListMismatch warning of WireConfig.Check, which mirrors keepalived's
// addr_list_err counter (it counts the misconfiguration, dropped or not).
func (s *Stats) Count(err error) bool {
	r, ok := ReasonOf(err)
	if ok {
		s.Drop(r)
	}
	return ok
}

// StatsSnapshot is a point-in-time copy of a Stats.
type StatsSnapshot struct {
	Received uint64
	Accepted uint64
	Sent     uint64
	// Drops holds the non-zero per-reason counters.
	Drops map[DropReason]uint64
}

// Snapshot copies the counters. Counters are read one by one, so a snapshot
// taken under load is not an atomic cut across counters.
func (s *Stats) Snapshot() StatsSnapshot {
	snap := StatsSnapshot{
		Received: s.received.Load(),
		Accepted: s.accepted.Load(),
		Sent:     s.sent.Load(),
		Drops:    make(map[DropReason]uint64),
	}
	for r := DropReason(1); r < numDropReasons; r++ {
		if n := s.drops[r].Load(); n != 0 {
			snap.Drops[r] = n
		}
	}
	return snap
}

// Drops returns the counter for one reason.
func (s *Stats) Drops(r DropReason) uint64 {
	if r > 0 && r < numDropReasons {
		return s.drops[r].Load()
	}
	return 0
}
