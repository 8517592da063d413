package l7proxy

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
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
