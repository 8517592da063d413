package l7proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func parse(b []byte) (proxyHeader, error) {
	return readProxyHeader(bufio.NewReaderSize(bytes.NewReader(b), 64))
}

func TestProxyHeaderParse(t *testing.T) {
	v4src, v4dst := netip.MustParseAddrPort("192.0.2.1:5000"), netip.MustParseAddrPort("198.51.100.2:443")
	v6src, v6dst := netip.MustParseAddrPort("[2001:db8::1]:5000"), netip.MustParseAddrPort("[2001:db8::2]:443")
	good := []struct {
		in   []byte
		want proxyHeader
	}{
		{[]byte("PROXY TCP4 192.0.2.1 198.51.100.2 5000 443\r\nGET"), proxyHeader{Version: 1, Src: v4src, Dst: v4dst}},
		{[]byte("PROXY TCP6 2001:db8::1 2001:db8::2 5000 443\r\n"), proxyHeader{Version: 1, Src: v6src, Dst: v6dst}},
		{[]byte("PROXY UNKNOWN\r\n"), proxyHeader{Version: 1, Local: true}},
		{[]byte("PROXY UNKNOWN ffff:f...f:ffff 65535 65535\r\n"), proxyHeader{Version: 1, Local: true}},
		{appendProxyHeader(nil, 2, v4src, v4dst), proxyHeader{Version: 2, Src: v4src, Dst: v4dst}},
		{appendProxyHeader(nil, 2, v6src, v6dst), proxyHeader{Version: 2, Src: v6src, Dst: v6dst}},
		{appendProxyHeader(nil, 1, v6src, v6dst), proxyHeader{Version: 1, Src: v6src, Dst: v6dst}},
		{appendProxyHeader(nil, 2, netip.AddrPort{}, netip.AddrPort{}), proxyHeader{Version: 2, Local: true}},
		// v2 with a TLV (PP2_TYPE_AUTHORITY "x").
		{append(withLen(appendProxyHeader(nil, 2, v4src, v4dst), 12+4), 0x02, 0, 1, 'x'), proxyHeader{Version: 2, Src: v4src, Dst: v4dst}},
	}
	for _, tc := range good {
		got, err := parse(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parse(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	v2 := appendProxyHeader(nil, 2, v4src, v4dst)
	bad := [][]byte{
		nil,
		[]byte("GET / HTTP/1.1\r\n"),
		[]byte("PROXY TCP4 192.0.2.1 198.51.100.2 5000 443\n"),
		[]byte("PROXY TCP4 192.0.2.1 198.51.100.2 5000 443"),
		[]byte("PROXY TCP4 192.0.2.1 198.51.100.2 5000 65536\r\n"),
		[]byte("PROXY TCP4 192.0.2.1 198.51.100.2 05000 443\r\n"),
		[]byte("PROXY TCP4 192.0.2.1 198.51.100.2 +5000 443\r\n"),
		[]byte("PROXY TCP4 2001:db8::1 198.51.100.2 5000 443\r\n"),
		[]byte("PROXY TCP6 192.0.2.1 198.51.100.2 5000 443\r\n"),
		[]byte("PROXY TCP4  192.0.2.1 198.51.100.2 5000 443\r\n"),
		[]byte("PROXY UDP4 192.0.2.1 198.51.100.2 5000 443\r\n"),
		[]byte("PROXY TCP4 192.0.2.1 198.51.100.2 5000 443 extra\r\n"),
		[]byte("PROXY " + strings.Repeat("A", 200) + "\r\n"),
		v2[:20],
		withLen(slicesClone(v2), 4),     // shorter than the addresses
		withLen(slicesClone(v2), 60000), // above our limit
		withLen(append(slicesClone(v2), 0x02, 0, 9, 'x'), 12+4), // TLV longer than the block
		setByte(v2, 12, 0x11), // version 1 in a v2 header
		setByte(v2, 12, 0x22), // unknown command
		setByte(v2, 13, 0x41), // unknown family
		setByte(v2, 3, 'X'),   // bad signature
	}
	for _, in := range bad {
		if got, err := parse(in); err == nil || !errors.Is(err, errProxyHeader) {
			t.Errorf("parse(%q) = %+v, %v; want an error", in, got, err)
		}
	}
}

func slicesClone(b []byte) []byte { return append([]byte(nil), b...) }

func withLen(b []byte, n int) []byte {
	b[14], b[15] = byte(n>>8), byte(n)
	return b
}

func setByte(b []byte, i int, v byte) []byte {
	c := slicesClone(b)
	c[i] = v
	return c
}

// rawRequest sends a PROXY header and a request on a fresh connection and returns the
// response, or "" if the proxy closed the connection.
func rawRequest(t *testing.T, addr string, header []byte) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write(append(header, "GET / HTTP/1.1\r\nHost: pp.test\r\nConnection: close\r\n\r\n"...))
	b, _ := io.ReadAll(c)
	return string(b)
}

func TestProxyProtocolAccept(t *testing.T) {
	b := newBackend(t, "a")
	opts := simpleOptions(b.server(1))
	opts.Proxies[0].Listeners[0].ProxyProtocol = true
	p := startProxy(t, opts)
	addr := addrOf(t, p, "p", "http")
	dst := netip.MustParseAddrPort("198.51.100.2:443")
	for v, src := range map[int]string{1: "192.0.2.77:1234", 2: "[2001:db8::77]:1234"} {
		resp := rawRequest(t, addr, appendProxyHeader(nil, v, netip.MustParseAddrPort(src), dst))
		want := netip.MustParseAddrPort(src).Addr().String()
		if !strings.HasPrefix(resp, "HTTP/1.1 200") || !strings.Contains(resp, `"X-Real-Ip":["`+want+`"]`) {
			t.Errorf("v%d: response %q lacks X-Real-IP %s", v, resp, want)
		}
	}
	// No header, or a broken one: the connection is closed without an answer.
	for _, h := range []string{"", "PROXY TCP4 1.2.3.4\r\n", "PROXY TCP4 300.1.1.1 1.1.1.1 1 1\r\n"} {
		if resp := rawRequest(t, addr, []byte(h)); resp != "" {
			t.Errorf("header %q: got %q", h, resp)
		}
	}
	if p.Status().Proxies[0].Errors < 3 {
		t.Error("refused PROXY headers not counted as errors")
	}
}

// ppBackend is a backend that expects a PROXY header and records it.
type ppBackend struct {
	mu   sync.Mutex
	seen []proxyHeader
	addr netip.AddrPort
}

func newPPBackend(t *testing.T) *ppBackend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pb := &ppBackend{addr: netip.MustParseAddrPort(ln.Addr().String())}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				br := bufio.NewReader(c)
				h, err := readProxyHeader(br)
				if err != nil {
					return
				}
				pb.mu.Lock()
				pb.seen = append(pb.seen, h)
				pb.mu.Unlock()
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
			})
		}
	})
	return pb
}

func TestProxyProtocolSend(t *testing.T) {
	for _, v := range []int{1, 2} {
		pb := newPPBackend(t)
		opts := simpleOptions(ServerOptions{Name: "pp", Address: pb.addr, Weight: 1})
		opts.Proxies[0].Backends[0].SendProxyProtocol = v
		p := startProxy(t, opts)
		addr := addrOf(t, p, "p", "http")
		for _, src := range []string{"127.0.0.2", "127.0.0.3"} {
			c := client(src)
			c.Transport.(*http.Transport).DisableKeepAlives = false
			for range 2 { // keep-alive from the client; one server connection per request
				resp, err := c.Get("http://" + addr + "/")
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("v%d: status %d", v, resp.StatusCode)
				}
			}
		}
		pb.mu.Lock()
		seen := pb.seen
		pb.mu.Unlock()
		if len(seen) != 4 {
			t.Fatalf("v%d: %d headers, want 4", v, len(seen))
		}
		proxyAddr := netip.MustParseAddrPort(addr)
		for i, h := range seen {
			wantSrc := []string{"127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3"}[i]
			if h.Version != v || h.Src.Addr().String() != wantSrc || h.Dst != proxyAddr {
				t.Errorf("v%d header %d: %+v, want src %s dst %v", v, i, h, wantSrc, proxyAddr)
			}
		}
	}
}
