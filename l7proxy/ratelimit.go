package l7proxy

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// rateLimiter limits requests per client address with a sliding window estimated from two
// fixed windows (as HAProxy's http_req_rate and Cloudflare's limiter): the previous window's
// count weighted by how much of it still overlaps the sliding window, plus the current count.
// The table is sharded; each shard holds at most maxClients/shards addresses and, when full,
// evicts a stale entry or the least recently seen of a small random sample (Go's map iteration
// order), so a flood of distinct addresses costs bounded memory and O(1) work per request.
// It also counts concurrent connections per address when maxConns is set.
type rateLimiter struct {
	limit    int
	window   time.Duration
	perShard int
	maxConns int
	seed     maphash.Seed
	shards   [rlShards]rlShard
}

const (
	rlShards      = 64
	rlEvictSample = 8
)

type rlShard struct {
	mu    sync.Mutex
	m     map[netip.Addr]rlEntry
	conns map[netip.Addr]int
}

type rlEntry struct {
	win       int64 // index of the current fixed window
	cur, prev int32
	seen      int64 // unix nanoseconds of the last request
}

func newRateLimiter(o RateLimitOptions) *rateLimiter {
	l := &rateLimiter{limit: o.Requests, window: o.Per, maxConns: o.MaxConnsPerClient, seed: maphash.MakeSeed()}
	if l.window <= 0 {
		l.window = time.Second
	}
	maxClients := o.MaxClients
	if maxClients <= 0 {
		maxClients = defaultMaxClients
	}
	l.perShard = max(1, maxClients/rlShards)
	for i := range l.shards {
		l.shards[i].m = make(map[netip.Addr]rlEntry)
		l.shards[i].conns = make(map[netip.Addr]int)
	}
	return l
}

func (l *rateLimiter) shard(a netip.Addr) *rlShard {
	return &l.shards[maphash.Comparable(l.seed, a)%rlShards]
}

// allow counts one request from a at now. When the request would exceed the limit it is not
// counted, and retryAfter estimates when one would be allowed.
func (l *rateLimiter) allow(a netip.Addr, now time.Time) (ok bool, retryAfter time.Duration) {
	if l.limit <= 0 {
		return true, 0
	}
	a = a.Unmap()
	sh := l.shard(a)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	w := int64(l.window)
	t := now.UnixNano()
	idx := t / w
	e, found := sh.m[a]
	if !found && len(sh.m) >= l.perShard {
		sh.evict(idx)
	}
	switch {
	case e.win == idx:
	case e.win == idx-1:
		e.prev, e.cur, e.win = e.cur, 0, idx
	default:
		e.prev, e.cur, e.win = 0, 0, idx
	}
	e.seen = t
	elapsed := t - idx*w // into the current window
	rate := float64(e.prev)*float64(w-elapsed)/float64(w) + float64(e.cur)
	if rate+1 > float64(l.limit) {
		sh.m[a] = e
		return false, l.retryAfter(e, elapsed)
	}
	e.cur++
	sh.m[a] = e
	return true, 0
}

// retryAfter is the time until the estimate has room for one more request.
func (l *rateLimiter) retryAfter(e rlEntry, elapsed int64) time.Duration {
	w := float64(l.window)
	room := float64(l.limit - 1)
	var wait float64
	if float64(e.cur) > room {
		// Only the next window helps: cur becomes prev and must decay to room.
		wait = w - float64(elapsed) + w*(1-room/float64(e.cur))
	} else {
		// prev*(w-elapsed-x)/w + cur <= room
		wait = (w - float64(elapsed)) - (room-float64(e.cur))*w/float64(e.prev)
	}
	return max(time.Duration(wait), time.Millisecond)
}

// evict makes room for one entry. sh.mu must be held.
func (sh *rlShard) evict(idx int64) {
	var victim netip.Addr
	oldest, n := int64(0), 0
	for a, e := range sh.m {
		if e.win < idx-1 { // nothing left in the sliding window
			delete(sh.m, a)
			return
		}
		if n == 0 || e.seen < oldest {
			victim, oldest = a, e.seen
		}
		if n++; n >= rlEvictSample {
			break
		}
	}
	delete(sh.m, victim)
}

// len is the number of addresses tracked.
func (l *rateLimiter) len() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// acquireConn counts a connection from a, refusing it beyond maxConns. The conns map holds
// only addresses with open connections, bounded by the connections themselves.
func (l *rateLimiter) acquireConn(a netip.Addr) bool {
	if l.maxConns <= 0 {
		return true
	}
	a = a.Unmap()
	sh := l.shard(a)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.conns[a] >= l.maxConns {
		return false
	}
	sh.conns[a]++
	return true
}

func (l *rateLimiter) releaseConn(a netip.Addr) {
	if l.maxConns <= 0 {
		return
	}
	a = a.Unmap()
	sh := l.shard(a)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.conns[a] <= 1 {
		delete(sh.conns, a)
	} else {
		sh.conns[a]--
	}
}
