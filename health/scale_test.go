package health_test

import (
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fulcrum-lb/fulcrum/health"
)

// TestScale10000Checks runs 10,000 checks at a 1 s interval on the fake clock, each run taking
// 4 ms of (fake) time, with at most 48 in flight (the mean demand is 40, so bursts queue): every check must run exactly once per
// interval, on the phase of its first run, and the limit must hold. No sockets, no sleeping
// goroutine per check.
func TestScale10000Checks(t *testing.T) {
	if testing.Short() {
		t.Skip("scale test skipped in -short mode")
	}
	synctest.Test(t, func(t *testing.T) {
		const (
			n         = 10000
			intervals = 5
			limit     = 48
			interval  = time.Second
			tick      = time.Millisecond
		)
		h := newHarness(t, health.Options{MaxConcurrent: limit, Rand: rand.New(rand.NewPCG(3, 4))})
		h.backend.SetDelay(4 * time.Millisecond)
		specs := make([]health.Spec, n)
		for i := range specs {
			specs[i] = h.spec("c"+itoa(i), interval, 1, 1)
			specs[i].Timeout = 500 * time.Millisecond
		}
		h.update(specs...)
		h.advanceTicks((intervals+1)*interval, tick)

		if got := h.backend.MaxInFlight(); got > limit {
			t.Fatalf("%d runs in flight at once, limit %d", got, limit)
		} else {
			t.Logf("max in flight %d of limit %d; %d runs in %d intervals", got, limit, h.backend.Total(), intervals+1)
		}
		var firstBuckets [10]int
		worstLag := time.Duration(0)
		for i := range n {
			calls := h.backend.Calls("c" + itoa(i))
			first := calls[0]
			firstBuckets[min(first.Sub(h.t0)/(interval/10), 9)]++
			inWindow := 0
			for k, c := range calls {
				if c.Before(first.Add(intervals*interval - interval/2)) {
					inWindow++
				}
				if k > 0 {
					gap := c.Sub(calls[k-1])
					if gap < interval-50*time.Millisecond || gap > interval+50*time.Millisecond {
						t.Fatalf("check %d: runs %d and %d are %v apart, want %v (runs %v)", i, k-1, k, gap, interval, h.offsets(calls))
					}
				}
				// Phase kept: run k starts k intervals after the first, plus queueing lag.
				lag := c.Sub(first.Add(time.Duration(k) * interval))
				worstLag = max(worstLag, lag, -lag)
			}
			if inWindow != intervals {
				t.Fatalf("check %d ran %d times in %d intervals from its first run (runs %v)", i, inWindow, intervals, h.offsets(calls))
			}
		}
		for b, cnt := range firstBuckets {
			if cnt < 800 || cnt > 1200 {
				t.Errorf("first runs in tenth %d of the interval: %d, want about 1000 (%v)", b, cnt, firstBuckets)
			}
		}
		t.Logf("worst phase drift %v", worstLag)
		if worstLag > 50*time.Millisecond {
			t.Errorf("runs drifted up to %v from their phase", worstLag)
		}
	})
}
