package health_test

import (
	"context"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fulcrum-lb/fulcrum/health"
	"github.com/fulcrum-lb/fulcrum/health/healthtest"
)

// fixedRand draws the same start offset for every check (0: every check starts at once).
type fixedRand int64

func (r fixedRand) Int64N(n int64) int64 { return min(int64(r), n-1) }

// harness is a Scheduler on a fake clock with fake probes, running inside a synctest bubble:
// synctest.Wait tells when the Scheduler's goroutines have settled after the clock moved.
type harness struct {
	t       *testing.T
	clock   *healthtest.FakeClock
	backend *healthtest.Backend
	rec     *healthtest.Recorder
	s       *health.Scheduler
	t0      time.Time
}

// newHarness starts a Scheduler; call it inside synctest.Test. opts.Clock and opts.Sink are
// set here; opts.Rand defaults to fixedRand(0). The Scheduler is stopped, and Run's return
// checked, by the test's cleanup.
func newHarness(t *testing.T, opts health.Options) *harness {
	t.Helper()
	clock := healthtest.NewFakeClock(time.Time{})
	h := &harness{t: t, clock: clock, backend: healthtest.NewBackend(clock), rec: &healthtest.Recorder{}, t0: clock.Now()}
	opts.Clock = clock
	if opts.Sink == nil {
		opts.Sink = h.rec
	}
	if opts.Rand == nil {
		opts.Rand = fixedRand(0)
	}
	h.s = health.New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return h
}

// spec is a check of the fake backend's target name.
func (h *harness) spec(id string, interval time.Duration, rise, fall int) health.Spec {
	return health.Spec{ID: id, Probe: healthtest.Probe{Name: id, Backend: h.backend}, Interval: interval, Rise: rise, Fall: fall}
}

func (h *harness) update(specs ...health.Spec) {
	h.t.Helper()
	if err := h.s.Update(specs); err != nil {
		h.t.Fatalf("Update: %v", err)
	}
	synctest.Wait()
}

// advance moves the clock by d from timer to timer, letting the Scheduler settle at each.
func (h *harness) advance(d time.Duration) {
	end := h.clock.Now().Add(d)
	for {
		synctest.Wait()
		next, ok := h.clock.Next()
		if !ok || next.After(end) {
			break
		}
		h.clock.AdvanceTo(next)
	}
	h.clock.AdvanceTo(end)
	synctest.Wait()
}

// advanceTicks moves the clock by d in steps of tick (cheaper than advance with many timers).
func (h *harness) advanceTicks(d, tick time.Duration) {
	synctest.Wait()
	for end := h.clock.Now().Add(d); h.clock.Now().Before(end); {
		h.clock.Advance(min(tick, end.Sub(h.clock.Now())))
		synctest.Wait()
	}
}

func (h *harness) status(id string) health.Status {
	h.t.Helper()
	st, ok := h.s.Status(id)
	if !ok {
		h.t.Fatalf("Status(%q): no such check", id)
	}
	return st
}

// offsets returns times relative to t0.
func (h *harness) offsets(ts []time.Time) []time.Duration {
	out := make([]time.Duration, len(ts))
	for i, t := range ts {
		out[i] = t.Sub(h.t0)
	}
	return out
}

// changeSummary is the part of a Change tests compare.
type changeSummary struct {
	ID       string
	From, To health.State
	Reason   health.Reason
	At       time.Duration
}

func (h *harness) changes() []changeSummary {
	var out []changeSummary
	for _, c := range h.rec.Changes() {
		out = append(out, changeSummary{c.ID, c.From, c.To, c.Result.Reason, c.At.Sub(h.t0)})
	}
	return out
}

func secs(ss ...float64) []time.Duration {
	out := make([]time.Duration, len(ss))
	for i, s := range ss {
		out[i] = time.Duration(s * float64(time.Second))
	}
	return out
}

func addrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
