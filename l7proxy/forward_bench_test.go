package l7proxy

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// rawBackend is a minimal HTTP/1.1 server answering every request with a fixed 64-byte body and
// allocating nothing per request, so that a benchmark's allocs/op are the proxy's own (and the
// raw client's, which allocates nothing per request either).
func rawBackend(tb testing.TB) netip.AddrPort {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 64\r\n\r\n" + string(bytes.Repeat([]byte("x"), 63)) + "\n")
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 0, 8192)
				tmp := make([]byte, 8192)
				for {
					n, err := c.Read(tmp)
					buf = append(buf, tmp[:n]...)
					for {
						i := bytes.Index(buf, []byte("\r\n\r\n"))
						if i < 0 {
							break
						}
						buf = buf[:copy(buf, buf[i+4:])]
						if _, err := c.Write(resp); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return netip.MustParseAddrPort(l.Addr().String())
}

// rawClient sends GETs on one connection and reads each response (Content-Length framed).
type rawClient struct {
	c   net.Conn
	br  *bufio.Reader
	req []byte
}

func (rc *rawClient) do(tb testing.TB) {
	if _, err := rc.c.Write(rc.req); err != nil {
		tb.Fatal(err)
	}
	clen := -1
	for {
		line, err := rc.br.ReadSlice('\n')
		if err != nil {
			tb.Fatal(err)
		}
		if len(line) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			clen, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if clen < 0 {
		tb.Fatal("no Content-Length")
	}
	if _, err := rc.br.Discard(clen); err != nil {
		tb.Fatal(err)
	}
}

func benchProxy(b *testing.B) string {
	b.Helper()
	srv := rawBackend(b)
	p, err := New(simpleOptions(ServerOptions{Name: "s1", Address: srv, Weight: 1}))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := p.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cancel(); p.Close() })
	return p.Addr("p", "http").String()
}

// BenchmarkForwardKeepAlive is one proxied GET on a kept-alive client connection (and a
// kept-alive server connection).
func BenchmarkForwardKeepAlive(b *testing.B) {
	addr := benchProxy(b)
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	rc := &rawClient{c: c, br: bufio.NewReader(c), req: []byte("GET /bench?x=1 HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")}
	rc.do(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rc.do(b)
	}
}

// BenchmarkForwardNewConn is one proxied GET on a new client connection (Connection: close).
func BenchmarkForwardNewConn(b *testing.B) {
	addr := benchProxy(b)
	req := []byte("GET /bench HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: bench\r\nConnection: close\r\n\r\n")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			b.Fatal(err)
		}
		rc := &rawClient{c: c, br: bufio.NewReader(c), req: req}
		rc.do(b)
		c.Close()
	}
}

// BenchmarkForwardParallel is BenchmarkForwardKeepAlive from GOMAXPROCS clients at once.
func BenchmarkForwardParallel(b *testing.B) {
	addr := benchProxy(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		rc := &rawClient{c: c, br: bufio.NewReader(c), req: []byte("GET / HTTP/1.1\r\nHost: bench.example\r\n\r\n")}
		for pb.Next() {
			rc.do(b)
		}
	})
}
