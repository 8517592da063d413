package l7proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestConnLoopPipelineAndHandoff: on one connection, two pipelined GETs (served by the loop),
// then a POST with a body (the loop hands the connection to net/http with the bytes it had
// read), then a GET (net/http's from then on): every answer arrives, in order, complete.
func TestConnLoopPipelineAndHandoff(t *testing.T) {
	b := newBackend(t, "app1")
	p := startProxy(t, simpleOptions(b.server(1)))
	c, err := net.Dial("tcp", addrOf(t, p, "p", "http"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	read := func(method, path string, bodyLen int) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://h"+path, nil)
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		var e echo
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			t.Fatalf("%s %s: body: %v", method, path, err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 || e.Path != path || e.BodyLen != bodyLen || e.Header.Get("X-Forwarded-For") != "127.0.0.1" {
			t.Fatalf("%s %s: status %d, echo %+v", method, path, resp.StatusCode, e)
		}
	}
	io.WriteString(c, "GET /one HTTP/1.1\r\nHost: h\r\n\r\nGET /two HTTP/1.1\r\nHost: h\r\n\r\n")
	read("GET", "/one", 0)
	read("GET", "/two", 0)
	io.WriteString(c, "POST /three HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /four HTTP/1.1\r\nHost: h\r\n\r\n")
	read("POST", "/three", 5)
	read("GET", "/four", 0)
	if got := b.count(); got != 4 {
		t.Fatalf("backend saw %d requests, want 4", got)
	}
}

// TestConnLoopHostileHeads: heads the loop refuses go to net/http, which answers 4xx; the
// connection is never served a 2xx for them and the proxy keeps serving.
func TestConnLoopHostileHeads(t *testing.T) {
	b := newBackend(t, "app1")
	p := startProxy(t, simpleOptions(b.server(1)))
	addr := addrOf(t, p, "p", "http")
	for _, raw := range []string{
		"GET / HTTP/1.1\r\nHost: h\r\nHost: g\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
		"GET / HTTP/1.1\r\nHo st: h\r\n\r\n",
		"GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n",
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, raw)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Fatalf("%q: status %d, want 4xx", raw, resp.StatusCode)
		}
	}
	if resp, _ := get(t, client(""), "http://"+addr+"/"); resp.StatusCode != 200 {
		t.Fatalf("after hostile heads: %d", resp.StatusCode)
	}
}

// TestConnLoopDate: a response the server sent without Date gets one from the proxy (RFC 9110
// §6.6.1, as net/http's path does); a server's own Date is passed on alone; so is the 429.
func TestConnLoopDate(t *testing.T) {
	const fixed = "Mon, 02 Jan 2006 15:04:05 GMT"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/nodate" {
			w.Header()["Date"] = nil // net/http sends none
		} else {
			w.Header().Set("Date", fixed)
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	opts := simpleOptions(ServerOptions{Name: "s", Address: netip.MustParseAddrPort(srv.Listener.Addr().String()), Weight: 1})
	opts.Proxies[0].RateLimit = &RateLimitOptions{Requests: 2, Per: time.Minute}
	p := startProxy(t, opts)
	c, err := net.Dial("tcp", addrOf(t, p, "p", "http"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	dates := func(path string) (int, []string) {
		t.Helper()
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: h\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Values("Date")
	}
	before := time.Now().Add(-time.Second)
	if code, d := dates("/nodate"); code != 200 || len(d) != 1 {
		t.Fatalf("without Date from the server: %d, Date %q; want one added", code, d)
	} else if at, err := http.ParseTime(d[0]); err != nil || at.Before(before.Truncate(time.Second)) || at.After(time.Now().Add(time.Second)) {
		t.Fatalf("added Date %q (%v) is not now", d[0], err)
	}
	if code, d := dates("/date"); code != 200 || len(d) != 1 || d[0] != fixed {
		t.Fatalf("with the server's Date: %d, Date %q; want %q alone", code, d, fixed)
	}
	if code, d := dates("/date"); code != http.StatusTooManyRequests || len(d) != 1 {
		t.Fatalf("rate limited: %d, Date %q; want 429 with one Date", code, d)
	}
}

// edgeConn opens a keep-alive connection to a proxy in front of h and returns it with a reader.
func edgeConn(t *testing.T, h http.HandlerFunc, tweak func(*Options)) (net.Conn, *bufio.Reader, *Proxy) {
	t.Helper()
	srv := httptestServer(t, h)
	opts := simpleOptions(ServerOptions{Name: "s", Address: srv, Weight: 1})
	if tweak != nil {
		tweak(&opts)
	}
	p := startProxy(t, opts)
	c, err := net.Dial("tcp", addrOf(t, p, "p", "http"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c), p
}

func readBody(t *testing.T, br *bufio.Reader, what string) string {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return string(b)
}

// TestEdgePipelinedWhileServing: a request that arrives while the one before it is still with
// the server (after the loop's last read, before it waits again) is served, not left in the
// socket: edge mode must not lose readiness it has not read yet.
func TestEdgePipelinedWhileServing(t *testing.T) {
	c, br, _ := edgeConn(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(150 * time.Millisecond)
		}
		io.WriteString(w, r.URL.Path)
	}, nil)
	for round := range 3 {
		io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
		time.Sleep(50 * time.Millisecond) // the proxy is waiting for the server now
		io.WriteString(c, "GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
		if got := readBody(t, br, "first"); got != "/slow" {
			t.Fatalf("round %d: first answer %q", round, got)
		}
		if got := readBody(t, br, "pipelined"); got != "/next" {
			t.Fatalf("round %d: pipelined answer %q", round, got)
		}
	}
}

// TestEdgeKeepAliveTimeouts: on a kept-alive connection the idle timeout closes it, and a
// later request's head that trickles in is cut at the header timeout.
func TestEdgeKeepAliveTimeouts(t *testing.T) {
	ok := func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }
	tweak := func(o *Options) {
		o.Proxies[0].Timeouts.Idle = 300 * time.Millisecond
		o.Proxies[0].Timeouts.Header = 300 * time.Millisecond
	}
	c, br, _ := edgeConn(t, ok, tweak)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	readBody(t, br, "request")
	start := time.Now()
	closedWithin(t, br, start, 3*time.Second, "idle connection (idle timeout 300ms)")

	c2, br2, _ := edgeConn(t, ok, tweak)
	io.WriteString(c2, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	readBody(t, br2, "request")
	start = time.Now()
	io.WriteString(c2, "GET / HTTP/1.1\r\n")
	go func() {
		for range 60 {
			if _, err := io.WriteString(c2, "X-A: b\r\n"); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	closedWithin(t, br2, start, 2*time.Second, "trickling head (header timeout 300ms)")
}

// TestEdgeIdleConnClosedOnShutdown: Close ends an idle kept-alive connection at once.
func TestEdgeIdleConnClosedOnShutdown(t *testing.T) {
	p := okProxyClosedByTest(t)
	c, err := net.Dial("tcp", addrOf(t, p, "p", "http"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	readBody(t, br, "request")
	time.Sleep(50 * time.Millisecond) // waiting for the next request now
	closed := make(chan struct{})
	start := time.Now()
	go func() { p.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return with an idle connection open")
	}
	closedWithin(t, br, start, 3*time.Second, "idle connection at Close")
}

// TestConnLoopWorkersStop: the loop's worker goroutines, parked between connections, end when
// the proxy closes.
func TestConnLoopWorkersStop(t *testing.T) {
	p := okProxyClosedByTest(t)
	url := "http://" + addrOf(t, p, "p", "http") + "/"
	for range 10 {
		get(t, client(""), url)
	}
	if !workersRunning() {
		t.Fatal("no worker goroutine after serving: the check below would prove nothing")
	}
	p.Close()
	deadline := time.Now().Add(5 * time.Second)
	for workersRunning() {
		if time.Now().After(deadline) {
			t.Fatal("worker goroutines still running after Close")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func workersRunning() bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "(*connLoop).worker")
}

// okProxyClosedByTest starts a proxy in front of a server answering "ok"; the test closes it.
func okProxyClosedByTest(t *testing.T) *Proxy {
	t.Helper()
	srv := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	p, err := New(simpleOptions(ServerOptions{Name: "s", Address: srv, Weight: 1}))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return p
}

// closedWithin requires the proxy to close the connection behind br without a byte more, within
// bound of start (a generous bound: it catches a connection left open, not a slow one).
func closedWithin(t *testing.T, br *bufio.Reader, start time.Time, bound time.Duration, what string) {
	t.Helper()
	if _, err := br.ReadByte(); err == nil {
		t.Fatalf("%s: got bytes, want the connection closed", what)
	}
	if d := time.Since(start); d > bound {
		t.Fatalf("%s: closed after %v", what, d)
	}
}
