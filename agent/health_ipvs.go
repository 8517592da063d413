package agent

import (
	"context"
	"errors"
	"log/slog"

	"github.com/fulcrum-lb/fulcrum/ipvs"
)

// ipvsHealthKey names a real server of a virtual_server.
type ipvsHealthKey struct{ vs, rs string }

// healthReset replaces the health of every real server (healthConsumer).
func (s *ipvsSubsystem) healthReset(all map[healthTarget]bool) {
	m := map[ipvsHealthKey]bool{}
	for t, ok := range all {
		if t.Kind == "vs" {
			m[ipvsHealthKey{t.A, t.B}] = ok
		}
	}
	s.healthMu.Lock()
	prev := s.health
	s.health = m
	s.healthMu.Unlock()
	s.opMu.Lock()
	defer s.opMu.Unlock()
	rec := s.reconciler()
	if rec == nil {
		return
	}
	// One snapshot around all of them (see replayHealthLocked).
	before := ipvsSnapshotOf(rec)
	defer func() { s.publishChanges(before, ipvsSnapshotOf(rec), "health") }()
	// Servers no longer checked count as healthy again.
	for k := range prev {
		if _, ok := m[k]; !ok {
			s.setHealthLocked(rec, k, true)
		}
	}
	for k, ok := range m {
		s.setHealthLocked(rec, k, ok)
	}
}

// healthUpdate records and applies the health of one real server
// (healthConsumer).
func (s *ipvsSubsystem) healthUpdate(t healthTarget, healthy bool) {
	if t.Kind != "vs" {
		return
	}
	k := ipvsHealthKey{t.A, t.B}
	s.healthMu.Lock()
	if s.health == nil {
		s.health = map[ipvsHealthKey]bool{}
	}
	s.health[k] = healthy
	s.healthMu.Unlock()
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if rec := s.reconciler(); rec != nil {
		s.pushHealthLocked(rec, k, healthy)
	}
}

func (s *ipvsSubsystem) reconciler() *ipvs.Reconciler {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	return s.rec
}

// replayHealthLocked tells a reconciler the recorded health of every real
// server, after an Apply (which may have added them). s.opMu is held.
//
// One snapshot before and one after all of them, not per real server: with
// a snapshot of every destination around each, 10,000 real servers cost
// 10,000^2 and kept the lab guest's agent starting for minutes. It stops
// early when ctx ends (a stop while starting); the next resync or health
// change brings the rest.
func (s *ipvsSubsystem) replayHealthLocked(ctx context.Context, rec *ipvs.Reconciler) {
	s.healthMu.Lock()
	m := make(map[ipvsHealthKey]bool, len(s.health))
	for k, v := range s.health {
		m[k] = v
	}
	s.healthMu.Unlock()
	before := ipvsSnapshotOf(rec)
	defer func() { s.publishChanges(before, ipvsSnapshotOf(rec), "health") }()
	for k, ok := range m {
		if ctx.Err() != nil {
			return
		}
		s.setHealthLocked(rec, k, ok)
	}
}

// pushHealthLocked calls SetHealth for one real server, by name, and
// publishes what changed. s.opMu is held.
func (s *ipvsSubsystem) pushHealthLocked(rec *ipvs.Reconciler, k ipvsHealthKey, healthy bool) {
	names := s.names.Load()
	if names == nil {
		return
	}
	v := names.byName[k.vs]
	if v == nil {
		return
	}
	before := ipvsServiceSnapshotOf(rec, v.key)
	if s.setHealthLocked(rec, k, healthy) {
		s.publishChanges(before, ipvsServiceSnapshotOf(rec, v.key), "health")
	}
}

// setHealthLocked calls SetHealth for one real server, by name, and logs a
// failure; it reports whether the real server is known. s.opMu is held.
func (s *ipvsSubsystem) setHealthLocked(rec *ipvs.Reconciler, k ipvsHealthKey, healthy bool) bool {
	names := s.names.Load()
	if names == nil {
		return false
	}
	v := names.byName[k.vs]
	if v == nil {
		return false
	}
	for _, r := range v.reals {
		if r.name != k.rs {
			continue
		}
		err := rec.SetHealth(v.key, r.addr, healthy)
		if err != nil && !errors.Is(err, ipvs.ErrUnknownService) && !errors.Is(err, ipvs.ErrUnknownDestination) && !errors.Is(err, ipvs.ErrClosed) {
			s.log.Error("IPVS: applying a health change failed; the next resync retries",
				slog.String("virtual_server", k.vs), slog.String("real_server", k.rs), slog.Bool("healthy", healthy), slog.Any("error", err))
		}
		return true
	}
	return false
}
