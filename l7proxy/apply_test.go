package l7proxy

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestApplyReload(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	keep := deadAddr(t) // a free port, configured explicitly as the agent would
	opts := simpleOptions(a.server(1))
	opts.Proxies[0].Listeners[0].Address = keep
	p := startProxy(t, opts)
	addr := addrOf(t, p, "p", "http")
	c := client("")
	if _, e := get(t, c, "http://"+addr+"/"); e.Server != "a" {
		t.Fatalf("before: %q", e.Server)
	}
	p.SetServerHealth("p", "app", "a", false)

	// An open idle connection and a listener that stays: same socket, new routing.
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()

	next := simpleOptions(a.server(1), b.server(1))
	next.Proxies[0].Listeners[0].Address = keep
	next.Proxies[0].Listeners = append(next.Proxies[0].Listeners, ListenerOptions{Name: "extra", Address: netip.MustParseAddrPort("127.0.0.2:0")})
	if err := p.Apply(next); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if got := addrOf(t, p, "p", "http"); got != addr {
		t.Errorf("kept listener moved from %s to %s", addr, got)
	}
	// a keeps its health across the reload, so everything goes to b.
	for range 3 {
		if _, e := get(t, c, "http://"+addr+"/"); e.Server != "b" {
			t.Fatalf("after Apply: %q", e.Server)
		}
	}
	extra := addrOf(t, p, "p", "extra")
	if _, e := get(t, c, "http://"+extra+"/"); e.Server != "b" {
		t.Errorf("new listener: %q", e.Server)
	}

	// Invalid options change nothing.
	bad := next
	bad.Proxies = append([]ProxyOptions(nil), next.Proxies...)
	bad.Proxies[0].Backends = []BackendOptions{{Name: "app", Servers: []ServerOptions{{Name: "x", Weight: 1}}}}
	if err := p.Apply(bad); err == nil || !strings.Contains(err.Error(), "invalid or duplicate address") {
		t.Errorf("Apply of invalid options: %v", err)
	}
	// A certificate that does not load changes nothing either.
	withTLS := simpleOptions(b.server(1))
	withTLS.Proxies[0].Listeners = []ListenerOptions{{Name: "http", Address: keep,
		TLS: &TLSOptions{Certificates: []CertificateOptions{{Name: "c", CertFile: "/nonexistent.pem", KeyFile: "/nonexistent.key"}}}}}
	if err := p.Apply(withTLS); err == nil {
		t.Error("Apply with a missing certificate succeeded")
	}
	// An address already taken by someone else fails before anything changes.
	ln, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := next
	taken.Proxies = append([]ProxyOptions(nil), next.Proxies...)
	taken.Proxies[0].Listeners = []ListenerOptions{next.Proxies[0].Listeners[0], {Name: "taken", Address: netip.MustParseAddrPort(ln.Addr().String())}}
	if err := p.Apply(taken); err == nil {
		t.Error("Apply with an address in use succeeded")
	}
	if _, e := get(t, c, "http://"+extra+"/"); e.Server != "b" {
		t.Errorf("after failed Applies the extra listener serves %q", e.Server)
	}

	// Dropping the extra listener closes its socket.
	if err := p.Apply(next.withoutListener("extra")); err != nil {
		t.Fatal(err)
	}
	if p.Addr("p", "extra") != nil {
		t.Error("removed listener still reported")
	}
	if conn, err := net.DialTimeout("tcp", extra, time.Second); err == nil {
		conn.Close()
		t.Error("removed listener still accepts")
	}
	if _, e := get(t, c, "http://"+addr+"/"); e.Server != "b" {
		t.Errorf("kept listener after the second Apply: %q", e.Server)
	}
}

func (o Options) withoutListener(name string) Options {
	o.Proxies = append([]ProxyOptions(nil), o.Proxies...)
	var ls []ListenerOptions
	for _, l := range o.Proxies[0].Listeners {
		if l.Name != name {
			ls = append(ls, l)
		}
	}
	o.Proxies[0].Listeners = ls
	return o
}

func TestValidate(t *testing.T) {
	good := simpleOptions(ServerOptions{Name: "a", Address: netip.MustParseAddrPort("192.0.2.1:80"), Weight: 1})
	if err := good.validate(); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	cases := map[string]func(o *Options){
		"duplicate proxy": func(o *Options) { o.Proxies = append(o.Proxies, o.Proxies[0]) },
		"wildcard conflict": func(o *Options) {
			o.Proxies[0].Listeners = []ListenerOptions{{Name: "a", Address: netip.MustParseAddrPort("0.0.0.0:80")}, {Name: "b", Address: netip.MustParseAddrPort("192.0.2.1:80")}}
		},
		"redirect code":   func(o *Options) { o.Proxies[0].Listeners[0].RedirectHTTPS = 303 },
		"balance":         func(o *Options) { o.Proxies[0].Backends[0].Balance = "random" },
		"weight":          func(o *Options) { o.Proxies[0].Backends[0].Servers[0].Weight = 257 },
		"sticky both":     func(o *Options) { o.Proxies[0].Backends[0].Sticky = StickyOptions{Cookie: "S", IPHash: true} },
		"cookie token":    func(o *Options) { o.Proxies[0].Backends[0].Sticky = StickyOptions{Cookie: "S;x"} },
		"default backend": func(o *Options) { o.Proxies[0].DefaultBackend = "nope" },
		"route":           func(o *Options) { o.Proxies[0].Routes = []RouteOptions{{Backend: "app"}} },
		"stats auth":      func(o *Options) { o.Proxies[0].Stats = &StatsOptions{Username: "u"} },
		"header both": func(o *Options) {
			o.Proxies[0].RequestHeaders = HeaderEdits{Set: map[string]string{"X-A": "1"}, Delete: []string{"x-a"}}
		},
		"header value": func(o *Options) {
			o.Proxies[0].RequestHeaders = HeaderEdits{Set: map[string]string{"X-A": "1\r\nX-B: 2"}}
		},
		"negative timeout": func(o *Options) { o.Proxies[0].Timeouts.Connect = -1 },
		"rate limit":       func(o *Options) { o.Proxies[0].RateLimit = &RateLimitOptions{} },
		"tls redirect": func(o *Options) {
			o.Proxies[0].Listeners[0].RedirectHTTPS = 301
			o.Proxies[0].Listeners[0].TLS = &TLSOptions{}
		},
		"send proxy": func(o *Options) { o.Proxies[0].Backends[0].SendProxyProtocol = 3 },
	}
	for name, mutate := range cases {
		o := cloneOptions(good)
		mutate(&o)
		if err := o.validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
