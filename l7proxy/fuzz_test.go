package l7proxy

import (
	"bufio"
	"bytes"
	"net/netip"
	"testing"
)

// FuzzProxyHeader: the parser never panics, never reads past a v1 line limit or the v2
// length limit, and what it accepts survives a round trip through the encoder.
func FuzzProxyHeader(f *testing.F) {
	src, dst := netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("198.51.100.2:2")
	f.Add([]byte("PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\n"))
	f.Add([]byte("PROXY TCP6 ::1 ::2 1 2\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(appendProxyHeader(nil, 2, src, dst))
	f.Add(appendProxyHeader(nil, 2, netip.MustParseAddrPort("[2001:db8::1]:1"), dst))
	f.Add(appendProxyHeader(nil, 2, netip.AddrPort{}, netip.AddrPort{}))
	f.Fuzz(func(t *testing.T, in []byte) {
		src := bytes.NewReader(in)
		r := bufio.NewReaderSize(src, 64)
		h, err := readProxyHeader(r)
		if err != nil {
			return
		}
		consumed := len(in) - src.Len() - r.Buffered()
		if h.Version == 1 && consumed > proxyV1MaxLen {
			t.Fatalf("v1 consumed %d bytes", consumed)
		}
		if h.Local {
			return
		}
		if !h.Src.IsValid() || !h.Dst.IsValid() {
			t.Fatalf("accepted header without addresses: %+v", h)
		}
		again, err := readProxyHeader(bufio.NewReader(bytes.NewReader(appendProxyHeader(nil, h.Version, h.Src, h.Dst))))
		if err != nil || again != h {
			t.Fatalf("round trip: %+v -> %+v, %v", h, again, err)
		}
	})
}

// FuzzStickyCookie: the decoder never panics, accepts only values the encoder made with the
// same key and scope, and never returns an empty or oversized name.
func FuzzStickyCookie(f *testing.F) {
	s := cookieSigner{key: []byte("fuzz key")}
	f.Add(s.encode("p/app", "app1"))
	f.Add("YXBwMQ.AAAAAAAAAAAAAAAAAAAAAA")
	f.Add(".")
	f.Add("app1")
	f.Fuzz(func(t *testing.T, v string) {
		name, ok := s.decode("p/app", v)
		if !ok {
			return
		}
		if name == "" || len(v) > maxStickyValueLen {
			t.Fatalf("accepted %q -> %q", v, name)
		}
		if s.encode("p/app", name) != v {
			t.Fatalf("accepted a value the encoder would not produce: %q", v)
		}
	})
}
