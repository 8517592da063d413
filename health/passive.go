package health

import (
	"errors"
	"fmt"
	"time"
)

// nginx's defaults for max_fails and fail_timeout.
const (
	DefaultMaxFails    = 1
	DefaultFailTimeout = 10 * time.Second
)

// Passive is a check fed by the L7 proxy rather than probed: the proxy reports each request to
// Target through Scheduler.ReportPassive (a connection error or a 5xx is a failure), and the
// check follows nginx's max_fails and fail_timeout (ngx_http_upstream_round_robin.c):
//
//   - a failure increments fails and notes the time; once fails reaches MaxFails the check goes
//     down for FailTimeout after the last failure;
//   - when FailTimeout has passed the check comes up again to be tried (ReasonFailTimeout),
//     but fails is not reset, so the next failure takes it down again at once;
//   - a success resets fails only if it comes more than FailTimeout after the last failure (nginx
//     resets when peer->accessed < peer->checked, and checked moves on only when the peer is
//     picked more than fail_timeout after it last moved), so failures within FailTimeout of
//     each other add up even with successes in between.
//
// Unlike nginx, which lets exactly one request try a recovering peer, the proxy decides how
// much traffic a check that came back up gets. A Spec with a Passive probe ignores Interval,
// Timeout, Rise, Fall and Initial: it starts up.
type Passive struct {
	// Target is the key the proxy reports under, such as "192.0.2.20:80".
	Target string
	// MaxFails is the number of failures that takes the check down; 0 means DefaultMaxFails.
	MaxFails int
	// FailTimeout is both the window failures add up in and how long the check stays down;
	// 0 means DefaultFailTimeout.
	FailTimeout time.Duration
}

// Kind returns "passive".
func (Passive) Kind() string { return "passive" }

// Build returns an error: a passive check has no checker, the Scheduler feeds it through
// ReportPassive.
func (Passive) Build() (Checker, error) {
	return nil, errors.New("passive: no checker; the Scheduler feeds passive checks through ReportPassive")
}

func (p Passive) withDefaults() (Passive, error) {
	switch {
	case p.Target == "":
		return p, errors.New("passive: empty Target")
	case p.MaxFails < 0:
		return p, errors.New("passive: negative MaxFails")
	case p.FailTimeout < 0:
		return p, errors.New("passive: negative FailTimeout")
	}
	if p.MaxFails == 0 {
		p.MaxFails = DefaultMaxFails
	}
	if p.FailTimeout == 0 {
		p.FailTimeout = DefaultFailTimeout
	}
	return p, nil
}

func passiveProbe(p Probe) (Passive, bool) {
	switch p := p.(type) {
	case Passive:
		return p, true
	case *Passive:
		if p != nil {
			return *p, true
		}
	}
	return Passive{}, false
}

// passiveState is nginx's per-peer accounting.
type passiveState struct {
	target      string
	maxFails    int
	failTimeout time.Duration
	fails       int
	accessed    time.Time // last failure
	checked     time.Time // last failure, or when a request was picked fail_timeout after it
}

func newPassiveState(p Passive) *passiveState {
	return &passiveState{target: p.Target, maxFails: p.MaxFails, failTimeout: p.FailTimeout}
}

// ReportPassive reports the outcome of one request of the proxy to target: ok is false for a
// connection error, a timeout or a 5xx. It feeds every passive check with that Target and is
// cheap enough to call for every request. Unknown targets are ignored.
func (s *Scheduler) ReportPassive(target string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	es := s.byTarget[target]
	if len(es) == 0 {
		return
	}
	now := s.clock.Now()
	for _, e := range es {
		s.passiveReport(e, ok, now)
	}
}

// passiveReport applies one report. s.mu must be held.
func (s *Scheduler) passiveReport(e *entry, ok bool, now time.Time) {
	p := e.passive
	// nginx moves checked on when it picks the peer more than fail_timeout after checked.
	if now.Sub(p.checked) > p.failTimeout {
		p.checked = now
	}
	e.checks++
	e.lastChecked = now
	if ok {
		e.successes++
		if p.accessed.Before(p.checked) {
			p.fails = 0
		}
		e.failures = p.fails
		e.last = Result{Outcome: OutcomeHealthy, Detail: "the proxy reported a success"}
		if e.state == StateDown && p.fails < p.maxFails {
			e.state = StateUp
			s.unqueue(e)
			s.emit(e, StateDown, StateUp, e.last, now)
		}
		return
	}
	p.fails++
	p.accessed, p.checked = now, now
	e.successes = 0
	e.failures = p.fails
	e.last = Result{Outcome: OutcomeUnhealthy, Reason: ReasonPassiveFailures,
		Detail: fmt.Sprintf("the proxy reported a failure: %d of max_fails %d within fail_timeout %s", p.fails, p.maxFails, p.failTimeout)}
	if p.fails < p.maxFails {
		return
	}
	s.schedule(&s.recover, e, p.checked.Add(p.failTimeout))
	s.poke()
	if e.state == StateUp {
		e.state = StateDown
		s.emit(e, StateUp, StateDown, e.last, now)
	}
}

// passiveExpired brings a passive check back up when fail_timeout has passed since its last
// failure. s.mu must be held.
func (s *Scheduler) passiveExpired(e *entry, now time.Time) {
	if e.state != StateDown {
		return
	}
	e.state = StateUp
	res := Result{Outcome: OutcomeHealthy, Reason: ReasonFailTimeout,
		Detail: fmt.Sprintf("fail_timeout %s has passed since the last failure: trying the target again", e.passive.failTimeout)}
	s.emit(e, StateDown, StateUp, res, now)
}
