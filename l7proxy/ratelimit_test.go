package l7proxy

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"testing"
	"time"
)

func TestSlidingWindow(t *testing.T) {
	l := newRateLimiter(RateLimitOptions{Requests: 10, Per: 10 * time.Second})
	a := netip.MustParseAddr("192.0.2.1")
	t0 := time.Unix(1000, 0) // a window boundary
	for i := range 10 {
		if ok, _ := l.allow(a, t0.Add(time.Duration(i)*time.Millisecond)); !ok {
			t.Fatalf("request %d refused", i)
		}
	}
	ok, wait := l.allow(a, t0.Add(time.Second))
	if ok {
		t.Fatal("11th request within the window allowed")
	}
	// All 10 in the current window: room again once 1/10 of them decays in the next window,
	// 9s + 1s from now.
	if wait < 9*time.Second || wait > 11*time.Second {
		t.Errorf("retry after %v", wait)
	}
	// Halfway through the next window the previous 10 count as 5: 5 more are allowed.
	mid := t0.Add(15 * time.Second)
	n := 0
	for range 20 {
		if ok, _ := l.allow(a, mid); ok {
			n++
		}
	}
	if n != 5 {
		t.Errorf("allowed %d halfway through the next window, want 5", n)
	}
	// Two windows later everything is forgotten.
	n = 0
	for range 20 {
		if ok, _ := l.allow(a, t0.Add(30*time.Second)); ok {
			n++
		}
	}
	if n != 10 {
		t.Errorf("allowed %d after two windows, want 10", n)
	}
}

func TestRateLimiterBoundedMemory(t *testing.T) {
	const bound = 10000
	l := newRateLimiter(RateLimitOptions{Requests: 5, Per: 10 * time.Second, MaxClients: bound})
	now := time.Unix(5000, 0)
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	for i := range 1_000_000 {
		var b [4]byte
		b[0], b[1], b[2], b[3] = 10, byte(i>>16), byte(i>>8), byte(i)
		l.allow(netip.AddrFrom4(b), now)
		if i%1000 == 0 {
			now = now.Add(time.Millisecond)
		}
	}
	if n := l.len(); n > bound {
		t.Errorf("%d addresses tracked after a flood of 1M, bound %d", n, bound)
	}
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	if grew := int64(ms1.HeapAlloc) - int64(ms0.HeapAlloc); grew > 16<<20 {
		t.Errorf("heap grew by %d bytes for a %d-entry table", grew, bound)
	}
	// A client seen just now still gets limited.
	hot := netip.MustParseAddr("192.0.2.99")
	for range 5 {
		l.allow(hot, now)
	}
	if ok, _ := l.allow(hot, now); ok {
		t.Error("hot client not limited after the flood")
	}
}

func TestRateLimit429PerClient(t *testing.T) {
	b := newBackend(t, "a")
	opts := simpleOptions(b.server(1))
	opts.Proxies[0].RateLimit = &RateLimitOptions{Requests: 5, Per: 10 * time.Second}
	p := startProxy(t, opts)
	url := "http://" + addrOf(t, p, "p", "http") + "/"
	noisy, quiet := client("127.0.0.2"), client("127.0.0.3")
	codes := map[int]int{}
	var retry string
	for range 8 {
		resp, _ := get(t, noisy, url)
		codes[resp.StatusCode]++
		if resp.StatusCode == http.StatusTooManyRequests {
			retry = resp.Header.Get("Retry-After")
		}
	}
	if codes[200] != 5 || codes[429] != 3 {
		t.Errorf("noisy client: %v, want 5×200 and 3×429", codes)
	}
	if s, err := strconv.Atoi(retry); err != nil || s < 1 || s > 20 {
		t.Errorf("Retry-After %q", retry)
	}
	for range 5 {
		if resp, _ := get(t, quiet, url); resp.StatusCode != 200 {
			t.Fatalf("quiet client got %d", resp.StatusCode)
		}
	}
	if n := p.Status().Proxies[0].RateLimited; n != 3 {
		t.Errorf("rate_limited = %d", n)
	}
}

func TestMaxConnsPerClient(t *testing.T) {
	b := newBackend(t, "a")
	opts := simpleOptions(b.server(1))
	opts.Proxies[0].RateLimit = &RateLimitOptions{Requests: 1000, MaxConnsPerClient: 2}
	p := startProxy(t, opts)
	addr := addrOf(t, p, "p", "http")
	dial := func(src string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	works := func(c net.Conn) bool {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		buf := make([]byte, 12)
		n, _ := io.ReadFull(c, buf)
		return string(buf[:n]) == "HTTP/1.1 200"
	}
	// One at a time: a slot is taken when the proxy starts reading the connection.
	c1 := dial("127.0.0.4")
	if !works(c1) {
		t.Fatal("first connection refused")
	}
	if !works(dial("127.0.0.4")) {
		t.Fatal("second connection refused")
	}
	if works(dial("127.0.0.4")) {
		t.Error("third concurrent connection from one client served")
	}
	if !works(dial("127.0.0.5")) {
		t.Error("another client refused")
	}
	c1.Close()
	time.Sleep(50 * time.Millisecond)
	if !works(dial("127.0.0.4")) {
		t.Error("a slot was not released on close")
	}
}

func TestMaxConnections(t *testing.T) {
	b := newBackend(t, "a")
	opts := simpleOptions(b.server(1))
	opts.Proxies[0].MaxConnections = 1
	p := startProxy(t, opts)
	addr := addrOf(t, p, "p", "http")
	c1, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c1.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	buf := make([]byte, 12)
	c1.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _ := io.ReadFull(c1, buf); string(buf[:n]) != "HTTP/1.1 200" {
		t.Fatal("first connection not served")
	}
	// The second waits in the backlog until the first closes.
	got := make(chan string, 1)
	go func() {
		resp, err := client("").Get("http://" + addr + "/")
		if err != nil {
			got <- err.Error()
			return
		}
		resp.Body.Close()
		got <- resp.Status
	}()
	select {
	case s := <-got:
		t.Fatalf("second connection served while the first was open: %s", s)
	case <-time.After(200 * time.Millisecond):
	}
	c1.Close()
	select {
	case s := <-got:
		if s != "200 OK" {
			t.Errorf("second connection: %s", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("second connection never served")
	}
}
