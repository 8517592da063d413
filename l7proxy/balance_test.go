package l7proxy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func testBackendRT(balance Balance, weights ...int) *backend {
	b := &backend{name: "app", balance: balance, byName: map[string]*server{}}
	for i, w := range weights {
		s := newServer("p", "app", ServerOptions{Name: string(rune('a' + i)),
			Address: netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}), 80), Weight: w})
		b.servers = append(b.servers, s)
		b.byName[s.name] = s
	}
	b.cw = make([]int, len(b.servers))
	return b
}

func TestSmoothWeightedRoundRobin(t *testing.T) {
	b := testBackendRT(RoundRobin, 5, 1, 1)
	var seq strings.Builder
	now := time.Now()
	for range 14 {
		seq.WriteString(b.pick(netip.Addr{}, nil, now).name)
	}
	// nginx's documented sequence for weights 5,1,1.
	if got := seq.String(); got != "aabacaaaabacaa" {
		t.Errorf("sequence %s", got)
	}
	// Weight 0 and unhealthy servers get nothing.
	b = testBackendRT(RoundRobin, 1, 0, 1)
	b.servers[2].healthy.Store(false)
	for range 5 {
		if s := b.pick(netip.Addr{}, nil, now); s.name != "a" {
			t.Fatalf("picked %s", s.name)
		}
	}
}

func TestLeastConn(t *testing.T) {
	b := testBackendRT(LeastConn, 1, 1, 2)
	b.servers[0].active.Store(3)
	b.servers[1].active.Store(1)
	b.servers[2].active.Store(3) // 1.5 per unit of weight
	now := time.Now()
	if s := b.pick(netip.Addr{}, nil, now); s.name != "b" {
		t.Errorf("picked %s, want b", s.name)
	}
	b.servers[1].active.Store(2)
	if s := b.pick(netip.Addr{}, nil, now); s.name != "c" {
		t.Errorf("picked %s, want c (weighted)", s.name)
	}
	if s := b.pick(netip.Addr{}, []*server{b.servers[2]}, now); s.name != "b" {
		t.Errorf("with c excluded picked %s, want b", s.name)
	}
}

func TestSourceHashConsistent(t *testing.T) {
	b := testBackendRT(Source, 1, 1, 1, 1)
	now := time.Now()
	before := map[netip.Addr]string{}
	counts := map[string]int{}
	for i := range 4000 {
		a := netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", i))
		if i%2 == 0 {
			a = netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
		}
		s := b.pick(a, nil, now).name
		before[a] = s
		counts[s]++
		if again := b.pick(a, nil, now).name; again != s {
			t.Fatal("hash not stable")
		}
	}
	for name, n := range counts {
		if n < 700 || n > 1300 {
			t.Errorf("server %s got %d of 4000 clients", name, n)
		}
	}
	// Server b goes down: only its clients move.
	b.servers[1].healthy.Store(false)
	for a, s := range before {
		now := b.pick(a, nil, now).name
		if s != "b" && now != s {
			t.Fatalf("client %v moved from %s to %s although %s is up", a, s, now, s)
		}
		if now == "b" {
			t.Fatal("client sent to a down server")
		}
	}
}

func TestPassiveAccounting(t *testing.T) {
	s := newServer("p", "app", ServerOptions{Name: "a", Weight: 1})
	t0 := time.Unix(100, 0)
	s.report(false, 3, 10*time.Second, t0)
	s.report(true, 3, 10*time.Second, t0.Add(time.Second)) // within fail_timeout: no reset
	s.report(false, 3, 10*time.Second, t0.Add(2*time.Second))
	if s.passiveDown(t0.Add(2 * time.Second)) {
		t.Fatal("down after 2 of 3 failures")
	}
	s.report(false, 3, 10*time.Second, t0.Add(3*time.Second))
	if !s.passiveDown(t0.Add(3*time.Second)) || !s.passiveDown(t0.Add(12*time.Second)) {
		t.Fatal("not down for fail_timeout after 3 failures")
	}
	if s.passiveDown(t0.Add(13*time.Second + time.Millisecond)) {
		t.Fatal("still down after fail_timeout")
	}
	s.report(true, 3, 10*time.Second, t0.Add(20*time.Second)) // long after: reset
	s.report(false, 3, 10*time.Second, t0.Add(21*time.Second))
	if s.passiveDown(t0.Add(21 * time.Second)) {
		t.Fatal("failures were not reset by a late success")
	}
}
