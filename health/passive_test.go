package health_test

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fulcrum-lb/fulcrum/health"
)

// TestPassiveNginxSemantics walks nginx's max_fails/fail_timeout rules
// (ngx_http_upstream_round_robin.c: free_peer counts fails and resets them only when
// accessed < checked; get_peer skips a peer with fails >= max_fails until fail_timeout has
// passed since checked).
func TestPassiveNginxSemantics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, health.Options{})
		const target = "192.0.2.20:80"
		h.update(health.Spec{ID: "p", Probe: health.Passive{Target: target, MaxFails: 3, FailTimeout: 10 * time.Second}})
		if !h.s.Healthy("p") {
			t.Fatal("a passive check does not start up")
		}
		report := func(ok bool) { h.s.ReportPassive(target, ok); synctest.Wait() }

		report(false)
		report(false)
		h.advance(time.Second)
		report(true) // within fail_timeout of the last failure: fails are not reset
		if st := h.status("p"); st.State != health.StateUp || st.Failures != 2 {
			t.Fatalf("after 2 failures and a success: %+v", st)
		}
		report(false) // third failure within fail_timeout: down
		if h.s.Healthy("p") {
			t.Fatalf("still up after max_fails failures: %+v", h.status("p"))
		}
		if st := h.status("p"); st.NextCheck.Sub(h.t0) != 11*time.Second {
			t.Errorf("recovery due at %v, want 11s (last failure + fail_timeout)", st.NextCheck.Sub(h.t0))
		}
		h.advance(9 * time.Second) // 10s
		if h.s.Healthy("p") {
			t.Fatal("up again before fail_timeout passed")
		}
		h.advance(time.Second) // 11s: tried again
		if !h.s.Healthy("p") {
			t.Fatal("not up after fail_timeout")
		}
		report(false) // fails is still >= max_fails: one failure takes it down again
		if h.s.Healthy("p") {
			t.Fatal("a failed retry did not take the check down at once")
		}
		h.advance(10 * time.Second) // 21s: up again
		h.advance(500 * time.Millisecond)
		report(true) // more than fail_timeout after the last failure: fails reset
		if st := h.status("p"); st.State != health.StateUp || st.Failures != 0 {
			t.Fatalf("success after fail_timeout did not reset fails: %+v", st)
		}
		report(false)
		if st := h.status("p"); st.State != health.StateUp || st.Failures != 1 {
			t.Fatalf("one failure after a reset: %+v, want up with 1 failure", st)
		}
		h.s.ReportPassive("198.51.100.1:80", false) // unknown target: ignored

		want := []changeSummary{
			{"p", health.StateUp, health.StateDown, health.ReasonPassiveFailures, 1 * time.Second},
			{"p", health.StateDown, health.StateUp, health.ReasonFailTimeout, 11 * time.Second},
			{"p", health.StateUp, health.StateDown, health.ReasonPassiveFailures, 11 * time.Second},
			{"p", health.StateDown, health.StateUp, health.ReasonFailTimeout, 21 * time.Second},
		}
		if got := h.changes(); !slices.Equal(got, want) {
			t.Fatalf("changes:\n got %+v\nwant %+v", got, want)
		}
		if c := h.rec.Changes()[0]; c.Failures != 3 {
			t.Errorf("down change with %d failures, want 3", c.Failures)
		}
	})
}

func TestPassiveDefaultsAndReload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, health.Options{})
		const target = "192.0.2.20:443"
		p := health.Spec{ID: "p", Probe: health.Passive{Target: target}} // max_fails 1, fail_timeout 10s
		h.update(p)
		h.s.ReportPassive(target, false)
		synctest.Wait()
		if h.s.Healthy("p") {
			t.Fatal("max_fails=1 (the default): one failure should take the check down")
		}
		h.update(p) // unchanged: stays down
		if h.s.Healthy("p") {
			t.Fatal("an unchanged passive check lost its state on reload")
		}
		h.advance(10 * time.Second)
		if !h.s.Healthy("p") {
			t.Fatal("not up after the default fail_timeout of 10s")
		}
		h.s.ReportPassive(target, false)
		synctest.Wait()
		p2 := health.Spec{ID: "p", Probe: health.Passive{Target: target, MaxFails: 5}}
		h.update(p2) // changed: reset to up
		if st := h.status("p"); st.State != health.StateUp || st.Failures != 0 {
			t.Fatalf("changed passive check not reset: %+v", st)
		}
	})
}

// BenchmarkReportPassive is the cost the proxy pays per request.
func BenchmarkReportPassive(b *testing.B) {
	s := health.New(health.Options{})
	var specs []health.Spec
	for i := range 1000 {
		specs = append(specs, health.Spec{ID: "p" + itoa(i), Probe: health.Passive{Target: "192.0.2." + itoa(i%250) + ":" + itoa(8000+i)}})
	}
	if err := s.Update(specs); err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.ReportPassive("192.0.2.17:8017", true)
		}
	})
}
