package health

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/fulcrum-lb/fulcrum/lab/netns"
)

// fakeConnector is a connector that records the runs it takes and answers them at once with
// the result its function picks, from run's goroutine.
type fakeConnector struct {
	answer func(connectReq) Result

	mu      sync.Mutex
	reqs    []connectReq
	woken   chan struct{}
	stopped chan struct{}
}

func newFakeConnector(answer func(connectReq) Result) *fakeConnector {
	return &fakeConnector{answer: answer, woken: make(chan struct{}, 1), stopped: make(chan struct{})}
}

func (f *fakeConnector) wake() {
	select {
	case f.woken <- struct{}{}:
	default:
	}
}

func (f *fakeConnector) run(ctx context.Context, host connectHost) {
	defer close(f.stopped)
	var reqs []connectReq
	for {
		var next time.Time
		reqs, next = host.dueConnects(reqs[:0], 1024)
		f.mu.Lock()
		f.reqs = append(f.reqs, reqs...)
		f.mu.Unlock()
		for _, r := range reqs {
			host.connected([]completion{{e: r.e, due: r.due, end: time.Now(), res: f.answer(r)}})
		}
		sleep := time.Hour
		if !next.IsZero() {
			sleep = max(time.Until(next), 0)
		}
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-f.woken:
		case <-t.C:
		}
		t.Stop()
	}
}

func (f *fakeConnector) requests() []connectReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]connectReq(nil), f.reqs...)
}

type zeroRand struct{}

func (zeroRand) Int64N(int64) int64 { return 0 }

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestSchedulerConnectorRouting: plain connect checks go to the connector with their target,
// options and deadline, and their results count; TCP with Send, and every check with
// NoConnectEngine, stay with the workers (here: refused on a closed loopback port).
func TestSchedulerConnectorRouting(t *testing.T) {
	target := netip.MustParseAddrPort("127.0.0.1:9") // nothing listens: the workers get refused
	fake := newFakeConnector(func(r connectReq) Result {
		if r.target.Port() == 10 {
			return Result{Outcome: OutcomeUnhealthy, Reason: ReasonRefused, Detail: "fake refused"}
		}
		return Result{Outcome: OutcomeHealthy, Detail: "connected"}
	})
	var results sync.Map
	s := New(Options{connector: fake, Rand: zeroRand{}, MaxConcurrent: 1, OnResult: func(r Result) {
		results.Store(r.Outcome, true)
	}})
	err := s.Update([]Spec{
		{ID: "plain", Probe: TCP{Addr: target, Dial: DialOptions{Mark: 7}}, Interval: time.Hour, Timeout: 3 * time.Second, Rise: 1, Fall: 1},
		{ID: "plain-down", Probe: TCP{Addr: netip.MustParseAddrPort("127.0.0.1:10")}, Interval: time.Hour, Rise: 1, Fall: 1, Initial: StateUp},
		{ID: "send", Probe: TCP{Addr: target, Send: "x"}, Interval: time.Hour, Rise: 1, Fall: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitUntil(t, "three results", func() bool {
		n := 0
		for _, st := range s.Statuses() {
			n += int(st.Checks)
		}
		return n == 3
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case <-fake.stopped:
	default:
		t.Fatal("the connector's run still runs after Run returned")
	}
	reqs := fake.requests()
	if len(reqs) != 2 {
		t.Fatalf("connector got %d runs, want 2 (the plain checks): %+v", len(reqs), reqs)
	}
	for _, r := range reqs {
		if r.target.Port() == 9 {
			if r.dial.Mark != 7 {
				t.Errorf("dial options not passed: %+v", r.dial)
			}
			if r.timeout != 3*time.Second {
				t.Errorf("timeout %v, want the spec's 3 s", r.timeout)
			}
		}
	}
	if st, _ := s.Status("plain"); st.State != StateUp || st.Last.Detail != "connected" {
		t.Errorf("plain: %+v", st)
	}
	if st, _ := s.Status("plain-down"); st.State != StateDown || st.Last.Reason != ReasonRefused {
		t.Errorf("plain-down: %+v", st)
	}
	if st, _ := s.Status("send"); st.Last.Reason != ReasonRefused || st.Last.Detail == "fake refused" {
		t.Errorf("send did not run on a worker: %+v", st)
	}
	if _, ok := results.Load(OutcomeHealthy); !ok {
		t.Error("OnResult did not see the connector's healthy result")
	}

	// NoConnectEngine: the system clock, no connector made.
	s2 := New(Options{NoConnectEngine: true})
	if s2.engine || s2.conn != nil {
		t.Error("NoConnectEngine still runs an engine")
	}
}

// TestEpollConnector runs the real engine against sockets in network namespaces: healthy,
// refused, timeout, source address, bind to device, SO_MARK and a prompt stop with
// connects in progress.
func TestEpollConnector(t *testing.T) {
	const (
		lbIP, backendIP, ghostIP = "192.0.2.10", "192.0.2.20", "192.0.2.99"
	)
	lan := netns.NewLAN(t, netns.Options{})
	lb, backend := lan.AddHost("lb", lbIP+"/24"), lan.AddHost("backend", backendIP+"/24")
	err := lb.Netlink(func(nl *netlink.Handle) error {
		eth0, err := nl.LinkByName("eth0")
		if err != nil {
			return err
		}
		// A permanent neighbour nobody owns: packets to ghostIP vanish, a deterministic blackhole.
		mac, _ := net.ParseMAC("02:00:00:00:00:99")
		return nl.NeighAdd(&netlink.Neigh{LinkIndex: eth0.Attrs().Index, State: netlink.NUD_PERMANENT,
			IP: net.ParseIP(ghostIP), HardwareAddr: mac})
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := backend.Listen("tcp", backendIP+":8080")
	if err != nil {
		t.Fatal(err)
	}
	peers := make(chan netip.Addr, 64)
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			peers <- netip.MustParseAddrPort(c.RemoteAddr().String()).Addr().Unmap()
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-acceptDone })

	c, err := newEpollConnector()
	if err != nil {
		t.Fatal(err)
	}
	if c.rc == nil {
		t.Error("the epoll instance is not in Go's netpoller: run blocks a thread in epoll_wait")
	}
	results := make(chan completion, 16)
	host := &queueHost{done: func(b []completion) {
		for _, x := range b {
			results <- x
		}
	}}
	submit := func(reqs []connectReq) {
		host.add(reqs)
		c.wake()
	}
	ctx, cancel := context.WithCancel(t.Context())
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		c.run(ctx, host)
	}()
	defer func() { cancel(); <-runDone }()

	be := netip.MustParseAddrPort(backendIP + ":8080")
	check := func(t *testing.T, target netip.AddrPort, o DialOptions, timeout time.Duration) Result {
		t.Helper()
		o.Do = lb.Do
		e := &entry{}
		submit([]connectReq{{e: e, target: target, dial: &o, timeout: timeout}})
		select {
		case r := <-results:
			if r.e != e {
				t.Fatalf("result for another run: %+v", r)
			}
			return r.res
		case <-time.After(timeout + 5*time.Second):
			t.Fatalf("no result within %v", timeout+5*time.Second)
		}
		return Result{}
	}
	want := func(t *testing.T, r Result, o Outcome, reason Reason) {
		t.Helper()
		if r.Outcome != o || r.Reason != reason {
			t.Fatalf("got %v (err %v), want %v/%v", r, r.Err, o, reason)
		}
		if r.Latency <= 0 {
			t.Errorf("no latency: %+v", r)
		}
	}
	drain := func() {
		for len(peers) > 0 {
			<-peers
		}
	}

	t.Run("healthy", func(t *testing.T) {
		want(t, check(t, be, DialOptions{}, 2*time.Second), OutcomeHealthy, ReasonNone)
	})
	t.Run("refused", func(t *testing.T) {
		r := check(t, netip.MustParseAddrPort(backendIP+":8099"), DialOptions{}, 2*time.Second)
		want(t, r, OutcomeUnhealthy, ReasonRefused)
		if !errors.Is(r.Err, unix.ECONNREFUSED) {
			t.Errorf("error %v does not wrap ECONNREFUSED", r.Err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		r := check(t, netip.MustParseAddrPort(ghostIP+":80"), DialOptions{}, 300*time.Millisecond)
		want(t, r, OutcomeUnhealthy, ReasonTimeout)
		if r.Latency < 300*time.Millisecond || r.Latency > 2*time.Second {
			t.Errorf("timed out after %v, want about 300ms", r.Latency)
		}
	})
	t.Run("source-address", func(t *testing.T) {
		if err := lb.AddAddr("eth0", "192.0.2.11/24"); err != nil {
			t.Fatal(err)
		}
		drain()
		src := netip.MustParseAddr("192.0.2.11")
		want(t, check(t, be, DialOptions{Source: src}, 2*time.Second), OutcomeHealthy, ReasonNone)
		var seen []netip.Addr
		for deadline := time.After(2 * time.Second); ; {
			select {
			case p := <-peers:
				seen = append(seen, p)
				if p != src {
					continue
				}
			case <-deadline:
				t.Errorf("backend never saw the check from %v; saw %v", src, seen)
			}
			break
		}
		r := check(t, be, DialOptions{Source: netip.MustParseAddr("192.0.2.12")}, 2*time.Second) // not lb's
		want(t, r, OutcomeError, ReasonLocal)
		if !errors.Is(r.Err, unix.EADDRNOTAVAIL) {
			t.Errorf("error %v is not EADDRNOTAVAIL", r.Err)
		}
	})
	t.Run("bind-to-device", func(t *testing.T) {
		want(t, check(t, be, DialOptions{Interface: "eth0"}, 2*time.Second), OutcomeHealthy, ReasonNone)
		r := check(t, be, DialOptions{Interface: "nosuch0"}, 2*time.Second)
		want(t, r, OutcomeError, ReasonLocal)
		if !errors.Is(r.Err, unix.ENODEV) {
			t.Errorf("error %v is not ENODEV", r.Err)
		}
	})
	t.Run("more-ready-than-maxEvents", func(t *testing.T) {
		// More answered connects than one read of events holds, all ready at once: every one
		// is healthy (none timed out behind the first maxEvents) and run keeps turning.
		ln2, err := backend.Listen("tcp", backendIP+":8081")
		if err != nil {
			t.Fatal(err)
		}
		defer ln2.Close()
		go func() {
			for {
				c, err := ln2.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		o := DialOptions{Do: lb.Do}
		reqs := make([]connectReq, 3*maxEvents)
		for i := range reqs {
			reqs[i] = connectReq{e: &entry{}, target: netip.MustParseAddrPort(backendIP + ":8081"), dial: &o, timeout: 5 * time.Second}
		}
		got := make(chan completion, len(reqs))
		host.setDone(func(b []completion) {
			for _, x := range b {
				got <- x
			}
		})
		defer host.setDone(func(b []completion) {
			for _, x := range b {
				results <- x
			}
		})
		submit(reqs)
		for i := range reqs {
			select {
			case r := <-got:
				want(t, r.res, OutcomeHealthy, ReasonNone)
			case <-time.After(10 * time.Second):
				t.Fatalf("%d results of %d", i, len(reqs))
			}
		}
	})
	t.Run("deadline-from-each-connect", func(t *testing.T) {
		// A slow batch: each socket takes 150 ms to make, more than half the timeout. Every
		// connect gets its whole 300 ms from its own start, healthy or not.
		slow := DialOptions{Do: func(fn func() error) error {
			time.Sleep(150 * time.Millisecond)
			return lb.Do(fn)
		}}
		reqs := make([]connectReq, 4)
		for i := range reqs {
			target := be
			if i%2 == 1 {
				target = netip.MustParseAddrPort(ghostIP + ":80")
			}
			reqs[i] = connectReq{e: &entry{}, target: target, dial: &slow, timeout: 300 * time.Millisecond}
		}
		submit(reqs)
		for range reqs {
			var r completion
			select {
			case r = <-results:
			case <-time.After(5 * time.Second):
				t.Fatal("no result")
			}
			i := 0
			for i < len(reqs) && reqs[i].e != r.e {
				i++
			}
			if i%2 == 0 {
				want(t, r.res, OutcomeHealthy, ReasonNone)
				continue
			}
			want(t, r.res, OutcomeUnhealthy, ReasonTimeout)
			if r.res.Latency < 300*time.Millisecond {
				t.Errorf("connect %d timed out after %v, before its 300 ms", i, r.res.Latency)
			}
		}
	})
	t.Run("mark-follows-policy-route", func(t *testing.T) {
		// The backend is unreachable by lb's main table; packets marked 7 use table 100.
		err := lb.Netlink(func(nl *netlink.Handle) error {
			eth0, err := nl.LinkByName("eth0")
			if err != nil {
				return err
			}
			_, lanNet, _ := net.ParseCIDR("192.0.2.0/24")
			if err := nl.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: lanNet, Table: 100, Scope: netlink.SCOPE_LINK}); err != nil {
				return err
			}
			_, host, _ := net.ParseCIDR(backendIP + "/32")
			if err := nl.RouteAdd(&netlink.Route{Dst: host, Type: unix.RTN_UNREACHABLE}); err != nil {
				return err
			}
			rule := netlink.NewRule()
			rule.Family, rule.Priority, rule.Mark, rule.Table = unix.AF_INET, 100, 7, 100
			return nl.RuleAdd(rule)
		})
		if err != nil {
			t.Fatal(err)
		}
		want(t, check(t, be, DialOptions{}, 2*time.Second), OutcomeUnhealthy, ReasonUnreachable)
		want(t, check(t, be, DialOptions{Mark: 7}, 2*time.Second), OutcomeHealthy, ReasonNone)
	})
	t.Run("stop-with-connects-in-progress", func(t *testing.T) {
		o := DialOptions{Do: lb.Do}
		reqs := make([]connectReq, 100)
		for i := range reqs {
			reqs[i] = connectReq{e: &entry{}, target: netip.MustParseAddrPort(ghostIP + ":80"), dial: &o, timeout: time.Hour}
		}
		taken := host.add(reqs)
		c.wake()
		// run asks again only once it has started what it took.
		waitUntil(t, "the connects started", func() bool { return host.asked() > taken+1 })
		t0 := time.Now()
		cancel()
		select {
		case <-runDone:
		case <-time.After(time.Second):
			t.Fatal("run did not return within 1 s of its context ending")
		}
		t.Logf("stopped in %v", time.Since(t0))
		if len(results) != 0 {
			t.Errorf("%d results delivered after the stop", len(results))
		}
	})
}

// queueHost is a connectHost that hands out what was added, all due at once, and has no due
// time of its own.
type queueHost struct {
	done func([]completion)

	mu    sync.Mutex
	queue []connectReq
	calls int
}

// add queues reqs and returns how many times dueConnects was called before.
func (h *queueHost) add(reqs []connectReq) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.queue = append(h.queue, reqs...)
	return h.calls
}

func (h *queueHost) asked() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls
}

func (h *queueHost) dueConnects(reqs []connectReq, limit int) ([]connectReq, time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls++
	n := min(limit, len(h.queue))
	reqs = append(reqs, h.queue[:n]...)
	h.queue = h.queue[n:]
	return reqs, time.Time{}
}

func (h *queueHost) setDone(done func([]completion)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.done = done
}

func (h *queueHost) connected(b []completion) {
	h.mu.Lock()
	done := h.done
	h.mu.Unlock()
	done(b)
}
