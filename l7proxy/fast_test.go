package l7proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// exchangeResult is what a backend saw and what the client got for one request.
type exchangeResult struct {
	method, uri, host string
	reqHeader         http.Header
	status            int
	respHeader        http.Header
	body              string
	trailer           http.Header
	early             []int
}

// TestFastPathMatchesReverseProxy sends the same requests through the fast path and through
// ReverseProxy and compares what the server received and what the client got.
func TestFastPathMatchesReverseProxy(t *testing.T) {
	seen := make(chan exchangeResult, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- exchangeResult{method: r.Method, uri: r.RequestURI, host: r.Host, reqHeader: r.Header.Clone()}
		h := w.Header()
		switch r.URL.Path {
		case "/early":
			h.Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
		case "/trailer":
			h.Set("Trailer", "X-Sum")
		}
		h.Set("Connection", "X-Hop")
		h.Set("X-Hop", "1")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("Proxy-Authenticate", "Basic")
		h.Set("Cache-Control", "public, max-age=10")
		h.Set("X-Resp", "a")
		h.Add("X-Multi", "1")
		h.Add("X-Multi", "2")
		switch r.URL.Path {
		case "/chunked":
			w.Write([]byte("part1 "))
			w.(http.Flusher).Flush()
			w.Write([]byte("part2"))
		case "/trailer":
			w.Write([]byte("body"))
			h.Set("X-Sum", "42")
			h.Set(http.TrailerPrefix+"X-Late", "late")
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/500":
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte("oops"))
		default:
			w.Write([]byte("hello " + r.URL.Path))
		}
	}))
	t.Cleanup(srv.Close)
	opts := simpleOptions(ServerOptions{Name: "s1", Address: netip.MustParseAddrPort(srv.Listener.Addr().String()), Weight: 1})
	po := &opts.Proxies[0]
	po.Backends[0].Sticky = StickyOptions{Cookie: "SRV"}
	po.RequestHeaders = HeaderEdits{Delete: []string{"x-drop-me"}, Set: map[string]string{"X-Added": "yes", "x-override": "set"}}
	po.ResponseHeaders = HeaderEdits{Delete: []string{"X-Resp"}, Set: map[string]string{"X-Resp-Added": "r"}}
	p := startProxy(t, opts)
	addr := addrOf(t, p, "p", "http")

	do := func(raw string) exchangeResult {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		var res exchangeResult
		for {
			req, _ := http.NewRequest(strings.Fields(raw)[0], "http://x/", nil)
			resp, err := http.ReadResponse(br, req)
			if err != nil {
				t.Fatalf("%q: %v", raw, err)
			}
			if resp.StatusCode < 200 {
				res.early = append(res.early, resp.StatusCode)
				continue
			}
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("%q: body: %v", raw, err)
			}
			res.status, res.respHeader, res.body, res.trailer = resp.StatusCode, resp.Header, string(b), resp.Trailer
			break
		}
		select {
		case s := <-seen:
			res.method, res.uri, res.host, res.reqHeader = s.method, s.uri, s.host, s.reqHeader
		default:
		}
		delete(res.respHeader, "Date")
		return res
	}
	reqs := []string{
		"GET /plain?a=1&b=%20 HTTP/1.1\r\nHost: Example.COM\r\nUser-Agent: ua\r\nAccept: */*\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Custom-Hop, Cookie\r\nX-Custom-Hop: 1\r\nProxy-Authorization: x\r\nProxy-Connection: y\r\nKeep-Alive: 1\r\nTe: trailers, deflate\r\nCookie: a=1\r\n\r\n",
		"GET /f HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\nX-Real-IP: 9.9.9.9\r\nForwarded: for=1.1.1.1\r\nX-Drop-Me: 1\r\nX-Override: client\r\nX-Multi: 1\r\nX-Multi: 2\r\n\r\n",
		"GET /c HTTP/1.1\r\nHost: h\r\nCookie: a=1; SRV=bogus; b=2\r\nCookie: c=3\r\n\r\n",
		"GET /c2 HTTP/1.1\r\nHost: h\r\nCookie: SRV=bogus\r\n\r\n",
		"HEAD /head HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /post HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
		"DELETE /del HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /chunked HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /trailer HTTP/1.1\r\nHost: h\r\nTe: trailers\r\n\r\n",
		"GET /early HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /204 HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /500 HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /semi?a=1;b=2 HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET http://h/abs?q HTTP/1.1\r\nHost: h\r\nX-Bad: a\x01b\r\n\r\n",
		"GET /ten HTTP/1.0\r\nHost: h\r\n\r\n",
		"GET /noua HTTP/1.1\r\nHost: h\r\nUser-Agent: \r\n\r\n",
	}
	b := p.gen.Load().proxies[0].backends[0]
	for _, raw := range reqs {
		b.slowOnly.Store(false)
		fast := do(raw)
		b.slowOnly.Store(true)
		slow := do(raw)
		b.slowOnly.Store(false)
		if f, s := fmt.Sprintf("%#v", fast), fmt.Sprintf("%#v", slow); !equalResults(fast, slow) {
			t.Errorf("%q:\nfast %s\nslow %s", raw, f, s)
		}
	}
}

func equalResults(a, b exchangeResult) bool {
	eq := func(x, y http.Header) bool {
		if len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if !slices.Equal(v, y[k]) {
				return false
			}
		}
		return true
	}
	return a.method == b.method && a.uri == b.uri && a.host == b.host && a.status == b.status &&
		a.body == b.body && slices.Equal(a.early, b.early) &&
		eq(a.reqHeader, b.reqHeader) && eq(a.respHeader, b.respHeader) && eq(a.trailer, b.trailer)
}
