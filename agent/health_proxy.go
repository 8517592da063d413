package agent

import "log/slog"

// healthReset replaces the health of every proxy server (healthConsumer).
func (s *proxySubsystem) healthReset(all map[healthTarget]bool) {
	m := map[string]bool{}
	for t, ok := range all {
		if t.Kind == "proxy" && !ok {
			m[proxyServerKey(t.A, t.B, t.C)] = true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.unhealthy
	s.unhealthy = m
	if s.p == nil {
		return // the first Apply pushes them
	}
	for key := range prev {
		if !m[key] && s.servers[key] {
			s.pushHealthLogged(key)
		}
	}
	for key := range m {
		if !prev[key] && s.servers[key] {
			s.pushHealthLogged(key)
		}
	}
	s.observeLocked()
}

// healthUpdate records and applies the health of one proxy server
// (healthConsumer).
func (s *proxySubsystem) healthUpdate(t healthTarget, healthy bool) {
	if t.Kind != "proxy" {
		return
	}
	key := proxyServerKey(t.A, t.B, t.C)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unhealthy == nil {
		s.unhealthy = map[string]bool{}
	}
	if healthy {
		delete(s.unhealthy, key)
	} else {
		s.unhealthy[key] = true
	}
	if s.p == nil || !s.servers[key] {
		return
	}
	s.pushHealthLogged(key)
	s.observeLocked()
}

// pushHealthLogged is pushHealthLocked, logging a refusal. s.mu is held.
func (s *proxySubsystem) pushHealthLogged(key string) {
	if err := s.pushHealthLocked(key); err != nil {
		s.log.Warn("proxy: applying a health change failed", slog.String("server", key), slog.Any("error", err))
	}
}
