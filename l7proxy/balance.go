package l7proxy

import (
	"hash/fnv"
	"math"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// server is the runtime state of one server. It outlives a generation: Apply hands it to the
// next one when the proxy, backend, server name and address are unchanged, so health, passive
// failures and counters survive a reload.
type server struct {
	proxy, backend, name string
	addr                 netip.AddrPort
	target               string // addr.String(), the PassiveReporter key

	weight  atomic.Int32
	healthy atomic.Bool // from SetServerHealth; true until told otherwise

	mu        sync.Mutex // guards the passive accounting below
	fails     int
	lastFail  time.Time
	downUntil time.Time

	active   atomic.Int64 // requests in flight
	total    atomic.Uint64
	errors   atomic.Uint64 // connection errors and 5xx
	statuses classCounters
	rate     rateCounter
}

func newServer(proxy, backend string, o ServerOptions) *server {
	s := &server{proxy: proxy, backend: backend, name: o.Name, addr: o.Address, target: o.Address.String()}
	s.weight.Store(int32(o.Weight))
	s.healthy.Store(true)
	return s
}

func serverKey(proxy, backend, name string) string { return proxy + "/" + backend + "/" + name }

// passiveDown reports whether max_fails took the server out at now.
func (s *server) passiveDown(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return now.Before(s.downUntil)
}

// report applies nginx's max_fails/fail_timeout accounting to one request outcome: failures
// add up until fail_timeout passes without one; reaching maxFails takes the server out for
// failTimeout after the last failure. maxFails 0 turns it off.
func (s *server) report(ok bool, maxFails int, failTimeout time.Duration, now time.Time) {
	if !ok {
		s.errors.Add(1)
	}
	if maxFails <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok {
		if now.Sub(s.lastFail) > failTimeout {
			s.fails = 0
		}
		return
	}
	s.fails++
	s.lastFail = now
	if s.fails >= maxFails {
		s.downUntil = now.Add(failTimeout)
	}
}

// usable reports whether the server may take new requests; ignorePassive is the fallback
// when every server of a backend is passively down (nginx then tries them all again).
func (s *server) usable(now time.Time, ignorePassive bool) bool {
	return s.weight.Load() > 0 && s.healthy.Load() && (ignorePassive || !s.passiveDown(now))
}

// backend is one backend of one generation.
type backend struct {
	name        string
	proxy       string
	balance     Balance
	servers     []*server
	byName      map[string]*server
	maxFails    int
	failTimeout time.Duration
	sticky      StickyOptions
	sendProxy   int
	transport   *http.Transport
	fast        *h1Client // the fast path of transport; nil with sendProxy
	// slowOnly turns the fast path and the connection loop's forwarding off for this backend:
	// a test seam, to compare them with the ReverseProxy path on the same proxy.
	slowOnly atomic.Bool

	mu sync.Mutex // guards cw and next
	cw []int      // smooth weighted round robin current weights, by index of servers
	// next rotates the starting point of least-connection ties.
	next int
}

// pick chooses a server for a request from client, skipping those in exclude (servers that
// already failed this request). It returns nil when no server is usable.
func (b *backend) pick(client netip.Addr, exclude []*server, now time.Time) *server {
	cand := make([]int, 0, len(b.servers))
	for _, ignorePassive := range []bool{false, true} {
		for i, s := range b.servers {
			if s.usable(now, ignorePassive) && !contains(exclude, s) {
				cand = append(cand, i)
			}
		}
		if len(cand) > 0 {
			break
		}
	}
	if len(cand) == 0 {
		return nil
	}
	switch {
	case b.balance == Source || b.sticky.IPHash:
		return b.servers[rendezvous(b.servers, cand, client)]
	case b.balance == LeastConn:
		return b.servers[b.leastConn(cand)]
	default:
		return b.servers[b.smoothWeighted(cand)]
	}
}

func contains(list []*server, s *server) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// smoothWeighted is nginx's smooth weighted round robin (ngx_http_upstream_get_peer): every
// candidate's current weight grows by its weight, the largest wins and loses the total. A
// server with weights 5,1,1 is picked a a b a c a a, never five times in a row.
func (b *backend) smoothWeighted(cand []int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	best, total := -1, 0
	for _, i := range cand {
		w := int(b.servers[i].weight.Load())
		b.cw[i] += w
		total += w
		if best < 0 || b.cw[i] > b.cw[best] {
			best = i
		}
	}
	b.cw[best] -= total
	return best
}

// leastConn picks the candidate with the fewest requests in flight per unit of weight; ties
// rotate.
func (b *backend) leastConn(cand []int) int {
	b.mu.Lock()
	start := b.next
	b.next++
	b.mu.Unlock()
	best := -1
	var bestA, bestW int64
	for k := range cand {
		i := cand[(start+k)%len(cand)]
		s := b.servers[i]
		a, w := s.active.Load(), int64(s.weight.Load())
		if best < 0 || a*bestW < bestA*w {
			best, bestA, bestW = i, a, w
		}
	}
	return best
}

// rendezvous is weighted rendezvous (highest random weight) hashing of the full client
// address: each candidate scores -w/ln(h) with h a hash of the client and the server in (0,1),
// the highest wins. Removing a server moves only its own clients; the hash is deterministic, so
// every node of a cluster maps a client the same way.
func rendezvous(servers []*server, cand []int, client netip.Addr) int {
	ca := client.Unmap().As16()
	best, bestScore := -1, math.Inf(-1)
	for _, i := range cand {
		s := servers[i]
		h := fnv.New64a()
		h.Write(ca[:])
		h.Write([]byte(s.name))
		h.Write([]byte{0})
		h.Write([]byte(s.target))
		u := (float64(mix64(h.Sum64())>>11) + 0.5) / (1 << 53) // in (0,1)
		score := -float64(s.weight.Load()) / math.Log(u)
		if score > bestScore {
			best, bestScore = i, score
		}
	}
	return best
}

// mix64 is splitmix64's finalizer: FNV alone is poorly mixed in its high bits.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// classCounters counts responses by class: 1xx to 5xx, and "other" at index 0.
type classCounters [6]atomic.Uint64

func (c *classCounters) add(status int) {
	i := status / 100
	if i < 1 || i > 5 {
		i = 0
	}
	c[i].Add(1)
}

// ClassCounts are response counts by status class.
type ClassCounts struct {
	Informational uint64 `json:"1xx"`
	Success       uint64 `json:"2xx"`
	Redirect      uint64 `json:"3xx"`
	ClientError   uint64 `json:"4xx"`
	ServerError   uint64 `json:"5xx"`
	Other         uint64 `json:"other"`
}

func (c *classCounters) snapshot() ClassCounts {
	return ClassCounts{c[1].Load(), c[2].Load(), c[3].Load(), c[4].Load(), c[5].Load(), c[0].Load()}
}

// rateCounter estimates events per second with two one-second windows weighted.
type rateCounter struct {
	mu        sync.Mutex
	win       int64
	cur, prev uint64
}

func (r *rateCounter) roll(now time.Time) int64 {
	sec := now.Unix()
	switch {
	case sec == r.win:
	case sec == r.win+1:
		r.prev, r.cur, r.win = r.cur, 0, sec
	default:
		r.prev, r.cur, r.win = 0, 0, sec
	}
	return sec
}

func (r *rateCounter) add(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.roll(now)
	r.cur++
}

func (r *rateCounter) rate(now time.Time) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.roll(now)
	frac := float64(now.Nanosecond()) / 1e9
	return float64(r.prev)*(1-frac) + float64(r.cur)
}

// first is the server a request tries first: its sticky server while that one is usable, else
// the balancer's pick.
func (b *backend) first(rs *reqState, now time.Time) *server {
	if rs.sticky != "" {
		if c := b.byName[rs.sticky]; c != nil && c.usable(now, false) {
			return c
		}
	}
	return b.pick(rs.client.Addr(), nil, now)
}
