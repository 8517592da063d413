package health_test

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/health"
	"github.com/fulcrum-lb/fulcrum/health/healthtest"
)

// TestSchedulerWithRealCheckers runs the Scheduler on the system clock with real checkers in the
// lab: a TCP check goes up, then down when its listener goes away; a UDP check of a closed
// port never comes up.
func TestSchedulerWithRealCheckers(t *testing.T) {
	l := newLab(t)
	ln := listen(t, l.backend, "tcp", backendIP+":8080")
	serveTCP(t, ln, func(net.Conn) {})
	rec := &healthtest.Recorder{}
	s := health.New(health.Options{Sink: rec, MaxConcurrent: 4})
	err := s.Update([]health.Spec{
		{ID: "tcp", Probe: health.TCP{Addr: netip.MustParseAddrPort(backendIP + ":8080"), Dial: l.dial()},
			Interval: 50 * time.Millisecond, Timeout: time.Second, Rise: 2, Fall: 2},
		{ID: "udp", Probe: health.UDP{Addr: netip.MustParseAddrPort(backendIP + ":10"), Dial: l.dial(), Send: "x"},
			Interval: 50 * time.Millisecond, Timeout: time.Second, Rise: 1, Fall: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	waitFor(t, "tcp up", func() bool { return s.Healthy("tcp") })
	ln.Close()
	waitFor(t, "tcp down", func() bool { return !s.Healthy("tcp") })
	waitFor(t, "changes delivered", func() bool { return len(rec.Changes()) == 2 })
	cs := rec.Changes()
	if cs[0].ID != "tcp" || cs[0].To != health.StateUp || cs[1].To != health.StateDown || cs[1].Result.Reason != health.ReasonRefused {
		t.Fatalf("changes %+v", cs)
	}
	st, _ := s.Status("udp")
	if st.State != health.StateDown || st.Last.Reason != health.ReasonICMPUnreachable || st.Checks < 2 {
		t.Fatalf("udp status %+v", st)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
