package l7proxy

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
)

var requestHeadSeeds = []string{
	"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
	"GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: wrk\r\nCookie: a=1; SRV=x.y\r\n\r\n",
	"HEAD /x HTTP/1.0\r\nHost: [::1]:80\r\nConnection: keep-alive\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\nTe: trailers, deflate\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 192.0.2.1, 198.51.100.2\r\nX-Forwarded-Proto: https\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nHost: g\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
	"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",
	"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
	"GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET /%zz HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"GET / HTTP/1.1\nHost: h\n\n",
	"GET / HTTP/1.1\r\nHost: h\r\nConnection: close, X-Secret\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
}

// FuzzRequestHead: the connection loop's request parser never panics, and whatever it
// accepts net/http accepts too, as the same request without a body: the loop serves no
// request net/http would refuse, and hands everything it doubts over to net/http.
func FuzzRequestHead(f *testing.F) {
	for _, s := range requestHeadSeeds {
		f.Add(s)
	}
	var q loopReq
	f.Fuzz(func(t *testing.T, in string) {
		end := headEnd([]byte(in))
		if end < 0 {
			return
		}
		head := in[:end]
		if !parseRequestHead(head, &q) {
			return
		}
		r, err := readRequestNetHTTP(head)
		if err != nil {
			t.Fatalf("accepted %q, net/http refuses it: %v", head, err)
		}
		if r.Method != q.method || r.RequestURI != q.target || r.Host != q.host || r.URL.Path != q.path || r.URL.RawQuery != q.query {
			t.Fatalf("%q: loop %q %q %q %q %q, net/http %q %q %q %q %q", head, q.method, q.target, q.host, q.path, q.query,
				r.Method, r.RequestURI, r.Host, r.URL.Path, r.URL.RawQuery)
		}
		if r.ContentLength > 0 || len(r.TransferEncoding) > 0 {
			t.Fatalf("accepted %q with a body", head)
		}
		if r.Header["Upgrade"] != nil || r.Header["Expect"] != nil {
			t.Fatalf("accepted %q with Upgrade or Expect", head)
		}
		if q.close != r.Close && !q.http10 {
			t.Fatalf("%q: close %v, net/http %v", head, q.close, r.Close)
		}
	})
}

// FuzzResponseHead: the response parser never panics, and a head it accepts net/http reads
// with the same status and framing.
func FuzzResponseHead(f *testing.F) {
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: 64\r\nContent-Type: text/plain\r\n\r\n")
	f.Add("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\n\r\n")
	f.Add("HTTP/1.0 404 Not Found\r\nConnection: keep-alive\r\n\r\n")
	f.Add("HTTP/1.1 100 Continue\r\n\r\n")
	f.Add("HTTP/1.1 204 No Content\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n\r\n")
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n")
	f.Add("HTTP/1.1 999\r\n\r\n")
	var p loopResp
	f.Fuzz(func(t *testing.T, in string) {
		br := bufio.NewReaderSize(strings.NewReader(in), 4096)
		head, err := readResponseHead(br)
		if err != nil {
			return
		}
		if err := parseResponseHead(head, &p); err != nil {
			return
		}
		resp, err := readResponseNetHTTP(head)
		if err != nil {
			t.Fatalf("accepted %q, net/http refuses it: %v", head, err)
		}
		if resp.StatusCode != p.status {
			t.Fatalf("%q: status %d, net/http %d", head, p.status, resp.StatusCode)
		}
		if p.chunked != (len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked") {
			t.Fatalf("%q: chunked %v, net/http %v", head, p.chunked, resp.TransferEncoding)
		}
		if !p.chunked && p.length >= 0 && p.status >= 200 && p.status != 204 && p.status != 304 && resp.ContentLength != p.length {
			t.Fatalf("%q: length %d, net/http %d", head, p.length, resp.ContentLength)
		}
	})
}

func readRequestNetHTTP(head string) (*http.Request, error) {
	return http.ReadRequest(bufio.NewReader(strings.NewReader(head)))
}

func readResponseNetHTTP(head string) (*http.Response, error) {
	return http.ReadResponse(bufio.NewReader(strings.NewReader(head)), nil)
}
