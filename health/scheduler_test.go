package health_test

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fulcrum-lb/fulcrum/health"
	"github.com/fulcrum-lb/fulcrum/health/healthtest"
)

func TestRiseFallHysteresis(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, health.Options{})
		h.update(h.spec("web", time.Second, 2, 3)) // starts down (the zero Initial)

		h.advance(0) // first run at once (no jitter in this harness)
		if st := h.status("web"); st.State != health.StateDown || st.Successes != 1 || st.Checks != 1 {
			t.Fatalf("after 1 success: %+v, want down with 1 success", st)
		}
		if h.s.Healthy("web") {
			t.Fatal("Healthy before rise successes")
		}
		h.advance(time.Second)
		if !h.s.Healthy("web") {
			t.Fatalf("not healthy after rise=2 successes: %+v", h.status("web"))
		}

		// A backend flapping faster than fall (never 3 failures in a row) does not go down.
		h.backend.ScriptHealthy("web", false, false, true, false, false, true, false, true)
		h.advance(8 * time.Second)
		if st := h.status("web"); st.State != health.StateUp || st.Successes != 1 {
			t.Fatalf("after flapping: %+v, want up", st)
		}

		// Three failures in a row do.
		h.backend.SetHealthy("web", false)
		h.advance(2 * time.Second)
		if !h.s.Healthy("web") {
			t.Fatal("down after 2 failures with fall=3")
		}
		h.advance(time.Second)
		st := h.status("web")
		if st.State != health.StateDown || st.Failures != 3 || st.Last.Reason != health.ReasonRefused {
			t.Fatalf("after 3 failures: %+v", st)
		}

		want := []changeSummary{
			{"web", health.StateDown, health.StateUp, health.ReasonNone, 1 * time.Second},
			{"web", health.StateUp, health.StateDown, health.ReasonRefused, 12 * time.Second},
		}
		if got := h.changes(); !slices.Equal(got, want) {
			t.Fatalf("changes:\n got %+v\nwant %+v", got, want)
		}
		c := h.rec.Changes()[1]
		if c.Failures != 3 || c.Successes != 0 || c.Result.Outcome != health.OutcomeUnhealthy {
			t.Errorf("down change: %+v", c)
		}
		// Exactly one run per interval, on the phase of the first.
		if got, want := h.offsets(h.backend.Calls("web")), secs(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12); !slices.Equal(got, want) {
			t.Errorf("runs at %v, want %v", got, want)
		}
	})
}

func TestInitialState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, health.Options{Rand: fixedRand(int64(500 * time.Millisecond))})
		up := h.spec("up", time.Second, 1, 2)
		up.Initial = health.StateUp
		down := h.spec("down", time.Second, 1, 2)
		h.backend.SetHealthy("up", false)
		h.update(up, down)
		if !h.s.Healthy("up") || h.s.Healthy("down") {
			t.Fatalf("before any run: up=%v down=%v, want true false", h.s.Healthy("up"), h.s.Healthy("down"))
		}
		h.advance(500 * time.Millisecond)
		if !h.s.Healthy("up") || !h.s.Healthy("down") {
			t.Fatalf("after one run: up=%v (1 failure of fall 2) down=%v (rise 1)", h.s.Healthy("up"), h.s.Healthy("down"))
		}
		h.advance(time.Second)
		if h.s.Healthy("up") {
			t.Fatal(`"up" still up after fall=2 failures`)
		}
		if h.s.Healthy("nonexistent") {
			t.Fatal("an unknown check is healthy")
		}
	})
}

func TestStartJitterSpreadsChecks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, health.Options{Rand: rand.New(rand.NewPCG(1, 2))})
		const n = 1000
		var specs []health.Spec
		for i := range n {
			specs = append(specs, h.spec("c"+itoa(i), time.Second, 1, 1))
		}
		h.update(specs...)
		h.advanceTicks(time.Second-time.Millisecond, time.Millisecond)
		var buckets [10]int
		distinct := map[time.Time]bool{}
		for i := range n {
			calls := h.backend.Calls("c" + itoa(i))
			if len(calls) != 1 {
				t.Fatalf("check %d ran %d times in its first interval", i, len(calls))
			}
			buckets[calls[0].Sub(h.t0)/(100*time.Millisecond)]++
			distinct[calls[0]] = true
		}
		for i, b := range buckets {
			if b < 60 || b > 140 { // expected 100 each
				t.Errorf("first runs in [%dms, %dms): %d, want about 100 (buckets %v)", i*100, (i+1)*100, b, buckets)
			}
		}
		if len(distinct) < 500 {
			t.Errorf("only %d distinct start instants (1 ms ticks) for %d checks", len(distinct), n)
		}
	})
}

func TestReloadKeepsUnchangedState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Every new check first runs 100ms after it is added.
		h := newHarness(t, health.Options{Rand: fixedRand(int64(100 * time.Millisecond))})
		a, b, c := h.spec("a", time.Second, 1, 1), h.spec("b", time.Second, 1, 1), h.spec("c", time.Second, 1, 1)
		h.update(a, b)
		h.advance(100 * time.Millisecond)
		if !h.s.Healthy("a") || !h.s.Healthy("b") {
			t.Fatal("a and b not up after their first run")
		}
		h.advance(400 * time.Millisecond) // now 0.5s
		h.rec.Reset()
		before := h.status("a")

		// The same specs again: nothing changes, not even the schedule.
		h.update(a, b)
		if st := h.status("a"); st.NextCheck != before.NextCheck || st.Checks != before.Checks {
			t.Fatalf("identical reload touched a: %+v -> %+v", before, st)
		}

		// a: same probe, new timing and hysteresis; b: probe changed; c: new.
		a2 := a
		a2.Interval, a2.Fall, a2.Initial = 2*time.Second, 5, health.StateDown
		b2 := b
		b2.Probe = healthtest.Probe{Name: "b-v2", Backend: h.backend}
		h.update(a2, b2, c)

		if st := h.status("a"); st.State != health.StateUp || st.Checks != before.Checks || st.Successes != before.Successes {
			t.Fatalf("a lost its state on reload: %+v, before %+v", st, before)
		}
		if st := h.status("a"); st.NextCheck.Sub(h.t0) != 2100*time.Millisecond {
			t.Errorf("a's next run at %v, want 2.1s (last run 0.1s + new interval 2s)", st.NextCheck.Sub(h.t0))
		}
		if st := h.status("b"); st.State != health.StateDown || st.Checks != 0 {
			t.Fatalf("b not reset on reload: %+v", st)
		}
		if st := h.status("c"); st.State != health.StateDown {
			t.Fatalf("new check c: %+v", st)
		}
		want := []changeSummary{{"b", health.StateUp, health.StateDown, health.ReasonReconfigured, 500 * time.Millisecond}}
		if got := h.changes(); !slices.Equal(got, want) {
			t.Fatalf("changes on reload:\n got %+v\nwant %+v", got, want)
		}
		if o := h.rec.Changes()[0].Result.Outcome; o != health.OutcomeNone {
			t.Errorf("reconfigured change has outcome %v, want none", o)
		}

		h.advance(2 * time.Second) // now 2.5s
		if got, want := h.offsets(h.backend.Calls("a")), secs(0.1, 2.1); !slices.Equal(got, want) {
			t.Errorf("a ran at %v, want %v", got, want)
		}
		if got, want := h.offsets(h.backend.Calls("b-v2")), secs(0.6, 1.6); !slices.Equal(got, want) {
			t.Errorf("b's new probe ran at %v, want %v", got, want)
		}

		// Removing a check.
		h.update(a2)
		if _, ok := h.s.Status("c"); ok {
			t.Error("c still there after it was removed")
		}
		if got := len(h.s.Statuses()); got != 1 {
			t.Errorf("%d checks after removal, want 1", got)
		}
	})
}

func TestConcurrencyLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, health.Options{MaxConcurrent: 4})
		h.backend.SetDelay(100 * time.Millisecond)
		var specs []health.Spec
		for i := range 20 {
			specs = append(specs, h.spec("c"+itoa(i), time.Second, 1, 1))
		}
		h.update(specs...) // all due at once
		h.advance(450 * time.Millisecond)
		if got := h.backend.MaxInFlight(); got != 4 {
			t.Errorf("max in flight %d, want exactly the limit 4", got)
		}
		if got := h.backend.Total(); got != 20 {
			t.Errorf("%d runs, want 20", got)
		}
		waves := map[time.Duration]int{}
		for i := range 20 {
			for _, c := range h.backend.Calls("c" + itoa(i)) {
				waves[c.Sub(h.t0)]++
			}
		}
		for w := range 5 {
			if got := waves[time.Duration(w)*100*time.Millisecond]; got != 4 {
				t.Errorf("wave %d: %d runs started, want 4 (waves %v)", w, got, waves)
			}
		}
		// Delayed runs keep their phase: the second round starts at 1s again, not 1.4s.
		h.advance(time.Second)
		if got := h.offsets(h.backend.Calls("c0")); !slices.Equal(got, secs(0, 1)) {
			t.Errorf("c0 ran at %v, want [0s 1s]", got)
		}
	})
}

func TestMinSpacingAndNoOverlap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, health.Options{})
		h.backend.SetDelay(900 * time.Millisecond)
		slow := h.spec("slow", time.Second, 1, 1)
		slow.Timeout, slow.MinSpacing = 2*time.Second, 500*time.Millisecond
		h.update(slow)
		h.advance(3 * time.Second)
		// 0s, then max(0s+1s, 0.9s+0.5s) = 1.4s, then max(2.4s, 2.3s+0.5s) = 2.8s.
		if got, want := h.offsets(h.backend.Calls("slow")), secs(0, 1.4, 2.8); !slices.Equal(got, want) {
			t.Errorf("runs at %v, want %v", got, want)
		}

		h2 := newHarness(t, health.Options{})
		h2.backend.SetDelay(1500 * time.Millisecond)
		over := h2.spec("over", time.Second, 1, 1)
		over.Timeout = 2 * time.Second
		h2.update(over)
		h2.advance(4 * time.Second)
		if got, want := h2.offsets(h2.backend.Calls("over")), secs(0, 1.5, 3); !slices.Equal(got, want) {
			t.Errorf("overrunning check ran at %v, want %v (never overlapping itself)", got, want)
		}
		if got := h2.backend.MaxInFlight(); got != 1 {
			t.Errorf("max in flight %d, want 1", got)
		}
	})
}

func TestTimeoutReachesChecker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, health.Options{})
		h.backend.SetDelay(5 * time.Second) // on the fake clock: never, before the real timeout
		sp := h.spec("t", 10*time.Second, 1, 1)
		sp.Timeout = 300 * time.Millisecond
		h.update(sp)
		synctest.Wait()
		// The run's context deadline is real (bubble) time: let the bubble's clock move.
		time.Sleep(time.Second)
		synctest.Wait()
		if st := h.status("t"); st.Last.Reason != health.ReasonTimeout || st.Running {
			t.Fatalf("status %+v, want a timeout result", st)
		}
	})
}

func TestWeightChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, health.Options{})
		weighted := func(w int) health.Result { return health.Result{Outcome: health.OutcomeHealthy, Weight: &w} }
		h.backend.Script("w", weighted(10), weighted(20), healthtest.Healthy(), weighted(20))
		h.update(h.spec("w", time.Second, 1, 1))
		h.advance(3 * time.Second)
		cs := h.rec.Changes()
		if len(cs) != 2 {
			t.Fatalf("%d changes, want 2 (up with weight 10, weight 20): %+v", len(cs), cs)
		}
		if cs[0].To != health.StateUp || cs[0].Weight == nil || *cs[0].Weight != 10 {
			t.Errorf("first change %+v, want up with weight 10", cs[0])
		}
		if cs[1].From != health.StateUp || cs[1].To != health.StateUp || *cs[1].Weight != 20 {
			t.Errorf("second change %+v, want up->up with weight 20", cs[1])
		}
		if st := h.status("w"); st.Weight == nil || *st.Weight != 20 {
			t.Errorf("status weight %v, want 20 (exit 0 leaves the weight unchanged)", st.Weight)
		}
	})
}

func TestCheckerPanicIsContained(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, health.Options{})
		h.backend.Panic("p", true)
		h.update(h.spec("p", time.Second, 1, 1))
		h.advance(time.Second)
		st := h.status("p")
		if st.Last.Outcome != health.OutcomeError || st.Last.Reason != health.ReasonPanic || st.Checks != 2 {
			t.Fatalf("status %+v, want two runs ending in error/panic", st)
		}
	})
}

func TestRemovedWhileRunning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, health.Options{MaxConcurrent: 1})
		h.backend.SetDelay(500 * time.Millisecond)
		h.update(h.spec("a", time.Second, 1, 1))
		h.advance(100 * time.Millisecond) // a is running
		if st := h.status("a"); !st.Running {
			t.Fatalf("a not running: %+v", st)
		}
		h.update(h.spec("b", time.Second, 1, 1)) // removes a, adds b: b waits for the only worker
		h.advance(300 * time.Millisecond)
		if got := h.backend.Calls("b"); len(got) != 0 {
			t.Fatalf("b ran while a held the only slot: %v", got)
		}
		h.advance(200 * time.Millisecond)
		if got := h.offsets(h.backend.Calls("b")); !slices.Equal(got, secs(0.5)) {
			t.Fatalf("b ran at %v, want [500ms] (when a's run returned)", got)
		}
		if cs := h.rec.Changes(); len(cs) != 0 {
			t.Fatalf("removed check's result was applied: %+v", cs)
		}
	})
}

func TestSinkMayCallScheduler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			mu   sync.Mutex
			seen []string
			h    *harness
		)
		// The Sink reads and even updates the Scheduler from OnChange: no deadlock.
		h = newHarness(t, health.Options{Sink: health.SinkFunc(func(c health.Change) {
			st, _ := h.s.Status(c.ID)
			mu.Lock()
			seen = append(seen, c.ID+":"+st.State.String()+":"+itoa(len(h.s.Statuses())))
			mu.Unlock()
			if c.ID == "a" {
				if err := h.s.Update([]health.Spec{h.spec("b", time.Second, 1, 1)}); err != nil {
					t.Error(err)
				}
			}
		})})
		h.update(h.spec("a", time.Second, 1, 1))
		h.advance(time.Second)
		mu.Lock()
		defer mu.Unlock()
		if want := []string{"a:up:1", "b:up:1"}; !slices.Equal(seen, want) {
			t.Fatalf("sink saw %v, want %v", seen, want)
		}
	})
}

func TestUpdateRejectsInvalidSpecs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, health.Options{})
		h.update(h.spec("keep", time.Second, 1, 1))
		err := h.s.Update([]health.Spec{
			h.spec("dup", time.Second, 1, 1),
			h.spec("dup", time.Second, 1, 1),
			{ID: "", Probe: healthtest.Probe{Name: "x", Backend: h.backend}},
			{ID: "noprobe"},
			{ID: "badre", Probe: health.TCP{Addr: addrPort("192.0.2.20:80"), Expect: "("}},
			{ID: "badpassive", Probe: health.Passive{}},
			{ID: "neg", Probe: healthtest.Probe{Name: "neg", Backend: h.backend}, Rise: -1},
		})
		if err == nil {
			t.Fatal("Update accepted invalid specs")
		}
		for _, want := range []string{`"dup": duplicate ID`, `"": empty ID`, `"noprobe": no probe`, `"badre": tcp: expect`, `"badpassive": passive: empty Target`, `"neg": negative Rise`} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q:\n%v", want, err)
			}
		}
		if got := h.s.Statuses(); len(got) != 1 || got[0].ID != "keep" {
			t.Errorf("a rejected Update changed the checks: %+v", got)
		}
	})
}

func TestRunTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, health.Options{})
		synctest.Wait() // the harness's Run has started
		if err := h.s.Run(t.Context()); !errors.Is(err, health.ErrRunning) {
			t.Fatalf("second Run: %v, want ErrRunning", err)
		}
	})
}

func TestStatus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, health.Options{})
		h.backend.ScriptHealthy("s", true, false)
		h.update(h.spec("s", time.Second, 1, 2))
		h.advance(1500 * time.Millisecond)
		st := h.status("s")
		if st.ID != "s" || st.Kind != "fake" || st.State != health.StateUp || st.Successes != 0 || st.Failures != 1 ||
			st.Checks != 2 || st.Last.Reason != health.ReasonRefused || st.LastChecked.Sub(h.t0) != time.Second ||
			st.NextCheck.Sub(h.t0) != 2*time.Second || st.Running {
			t.Fatalf("status %+v", st)
		}
		if st.Last.Latency != 0 {
			// The fake takes no time on the fake clock, so the scheduler measured 0.
			t.Errorf("latency %v, want 0", st.Last.Latency)
		}
	})
}

func itoa(i int) string { return strconv.Itoa(i) }

// seqRand draws the given start offsets in turn.
type seqRand struct{ offsets []time.Duration }

func (r *seqRand) Int64N(n int64) int64 {
	d := r.offsets[0]
	r.offsets = r.offsets[1:]
	return min(int64(d), n-1)
}

// TestSlackBatchesRunsWithinItsCap: a run due within Slack of a due run starts with it, early;
// a check's slack is capped at a twentieth of its interval; the phase does not move.
func TestSlackBatchesRunsWithinItsCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, health.Options{Slack: 20 * time.Millisecond,
			Rand: &seqRand{offsets: []time.Duration{0, 10 * time.Millisecond, 10 * time.Millisecond}}})
		h.update(
			h.spec("first", time.Second, 1, 1),          // due at once
			h.spec("batched", time.Second, 1, 1),        // due 10 ms later, within 20 ms
			h.spec("short", 100*time.Millisecond, 1, 1), // due 10 ms later, beyond its 5 ms cap
		)
		h.advance(0)
		if st := h.status("batched"); st.Checks != 1 {
			t.Fatalf("batched: %d runs at the first run's time, want 1 (10 ms early)", st.Checks)
		}
		if st := h.status("short"); st.Checks != 0 {
			t.Fatalf("short: ran 10 ms early with a 100 ms interval (cap 5 ms)")
		}
		h.advance(10 * time.Millisecond)
		if st := h.status("short"); st.Checks != 1 {
			t.Fatalf("short: %d runs at its due time, want 1", st.Checks)
		}
		// The phase is kept: the next run of "batched" is due 1 s after its due time, not
		// after its early start.
		if st := h.status("batched"); !st.NextCheck.Equal(h.t0.Add(1010 * time.Millisecond)) {
			t.Fatalf("batched: next check at %v, want t0+1.01s", st.NextCheck.Sub(h.t0))
		}
	})
}
