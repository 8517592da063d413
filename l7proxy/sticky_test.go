package l7proxy

import (
	"net/http"
	"strings"
	"testing"
)

func TestStickyCookieCodec(t *testing.T) {
	s := cookieSigner{key: []byte("k")}
	v := s.encode("p/app", "app1")
	if got, ok := s.decode("p/app", v); !ok || got != "app1" {
		t.Fatalf("decode(encode) = %q, %v", got, ok)
	}
	if _, ok := s.decode("p/other", v); ok {
		t.Error("a cookie of one backend is valid for another")
	}
	if _, ok := (cookieSigner{key: []byte("other")}).decode("p/app", v); ok {
		t.Error("a cookie verifies under another key")
	}
	name64, _, _ := strings.Cut(v, ".")
	forged := s.encode("p/app", "app2")
	_, tag, _ := strings.Cut(forged, ".")
	for _, bad := range []string{"", ".", "app1", name64 + ".", name64 + "." + tag, name64 + "==." + tag, strings.Repeat("a", 500)} {
		if got, ok := s.decode("p/app", bad); ok {
			t.Errorf("decode(%q) = %q, accepted", bad, got)
		}
	}
}

func TestStripCookie(t *testing.T) {
	h := http.Header{"Cookie": {"a=1; SRV=x; b=2", "SRV=y"}}
	stripCookie(h, "SRV")
	if got := h.Values("Cookie"); len(got) != 1 || got[0] != "a=1; b=2" {
		t.Errorf("Cookie = %q", got)
	}
	h = http.Header{"Cookie": {"SRV=x"}}
	stripCookie(h, "SRV")
	if _, ok := h["Cookie"]; ok {
		t.Error("empty Cookie header left")
	}
}

func TestStickyCookieAcrossBackendDeath(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	opts := simpleOptions(a.server(1), b.server(1))
	opts.Proxies[0].Backends[0].Sticky = StickyOptions{Cookie: "SRV"}
	opts.StickyKey = []byte("test key")
	p := startProxy(t, opts)
	url := "http://" + addrOf(t, p, "p", "http") + "/"
	c := client("")

	resp, e := get(t, c, url, "Cookie", "theme=dark")
	ck := findCookie(resp, "SRV")
	if ck == nil {
		t.Fatal("no sticky cookie set")
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "private") {
		t.Errorf("Cache-Control %q, want private", cc)
	}
	if got := e.Header.Get("Cookie"); got != "theme=dark" {
		t.Errorf("backend saw Cookie %q", got)
	}
	first := e.Server
	for range 6 {
		resp, e := get(t, c, url, "Cookie", "SRV="+ck.Value+"; theme=dark")
		if e.Server != first {
			t.Fatalf("sticky client moved from %s to %s", first, e.Server)
		}
		if findCookie(resp, "SRV") != nil {
			t.Error("cookie set again although it was valid")
		}
		if got := e.Header.Get("Cookie"); got != "theme=dark" {
			t.Errorf("the sticky cookie reached the backend: %q", got)
		}
	}
	// A forged cookie naming the other server is ignored (and replaced).
	other := map[string]string{"a": "b", "b": "a"}[first]
	resp, _ = get(t, c, url, "Cookie", "SRV="+other)
	if findCookie(resp, "SRV") == nil {
		t.Error("a forged cookie was not replaced")
	}

	// The sticky server dies: its clients move to the other and get a new cookie.
	map[string]*testBackend{"a": a, "b": b}[first].srv.Close()
	resp, e = get(t, c, url, "Cookie", "SRV="+ck.Value)
	if resp.StatusCode != 200 || e.Server != other {
		t.Fatalf("after %s died: %d from %q", first, resp.StatusCode, e.Server)
	}
	nc := findCookie(resp, "SRV")
	if nc == nil || nc.Value == ck.Value {
		t.Fatal("no new cookie after the sticky server died")
	}
	for range 3 {
		if _, e := get(t, c, url, "Cookie", "SRV="+nc.Value); e.Server != other {
			t.Fatalf("new cookie did not stick: %q", e.Server)
		}
	}
}

func findCookie(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func TestIPHashSticky(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	opts := simpleOptions(a.server(1), b.server(1))
	opts.Proxies[0].Backends[0].Sticky = StickyOptions{IPHash: true}
	p := startProxy(t, opts)
	url := "http://" + addrOf(t, p, "p", "http") + "/"
	seen := map[string]string{}
	for _, src := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7"} {
		for range 3 {
			_, e := get(t, client(src), url)
			if prev, ok := seen[src]; ok && prev != e.Server {
				t.Fatalf("client %s moved from %s to %s", src, prev, e.Server)
			}
			seen[src] = e.Server
		}
	}
}
