package proxye2e

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"strings"
	"testing"
	"time"
)

// tlsProxy is a proxy with a redirecting plain listener and a TLS listener holding two
// certificates, routing each host name to its own backend.
func tlsProxy(t *testing.T, httpAddr, httpsAddr string, a, b *backend) (string, *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	aCert, aKey := writeCert(t, dir, "a.example.test")
	bCert, bKey := writeCert(t, dir, "b.example.test")
	roots := x509.NewCertPool()
	for _, f := range []string{aCert, bCert} {
		pem, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		roots.AppendCertsFromPEM(pem)
	}
	return fmt.Sprintf(`proxy "www" {
  listener "http" {
    address        = %q
    redirect_https = true
  }
  listener "https" {
    address = %q
    tls {
      certificate "a" {
        cert_file = %q
        key_file  = %q
      }
      certificate "b" {
        cert_file = %q
        key_file  = %q
      }
    }
  }
  backend "a" {
%s  }
  backend "b" {
%s  }
  default_backend = "a"
  route {
    host    = "b.example.test"
    backend = "b"
  }
}
`, httpAddr, httpsAddr, aCert, aKey, bCert, bKey, serverBlocks(a), serverBlocks(b)), roots
}

// TestHTTPSWithSNI: the agent terminates TLS and picks the certificate by SNI (the first one
// for an unknown name), verifies as a browser would, speaks HTTP/2 through ALPN, forwards with
// X-Forwarded-Proto https and the Host header kept, and routes by host.
func TestHTTPSWithSNI(t *testing.T) {
	a, b := newBackend(t, "app-a"), newBackend(t, "app-b")
	httpAddr, httpsAddr := freePort(t), freePort(t)
	cfg, roots := tlsProxy(t, httpAddr, httpsAddr, a, b)
	ag := newAgent(t, cfg)
	ag.start(t)

	for _, tc := range []struct{ host, cn, body string }{
		{"a.example.test", "a.example.test", "app-a proto=https host=a.example.test"},
		{"b.example.test", "b.example.test", "app-b proto=https host=b.example.test"},
	} {
		c := client(httpsAddr, &tls.Config{RootCAs: roots, ServerName: tc.host}, nil)
		resp, body := fetch(t, c, "https://"+tc.host+"/hello")
		if resp.StatusCode != 200 || body != tc.body {
			t.Errorf("%s: %d %q, want %q", tc.host, resp.StatusCode, body, tc.body)
		}
		if cn := resp.TLS.PeerCertificates[0].Subject.CommonName; cn != tc.cn {
			t.Errorf("%s: certificate %s", tc.host, cn)
		}
		if resp.Proto != "HTTP/2.0" || resp.TLS.NegotiatedProtocol != "h2" {
			t.Errorf("%s: %s over ALPN %q, want HTTP/2", tc.host, resp.Proto, resp.TLS.NegotiatedProtocol)
		}
	}

	// An unknown name gets the first certificate (a browser would refuse it; the server
	// still answers when told not to verify).
	conn, err := tls.Dial("tcp", httpsAddr, &tls.Config{ServerName: "other.example.test", InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if cn := conn.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "a.example.test" {
		t.Errorf("default certificate %s", cn)
	}
	conn.Close()
	// TLS below 1.2 is refused.
	if c, err := tls.Dial("tcp", httpsAddr, &tls.Config{ServerName: "a.example.test", RootCAs: roots, MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Error("a TLS 1.1 handshake succeeded")
	}
}

// TestRedirectToHTTPS: the plain listener redirects every request to the same URL over https
// (308 for redirect_https = true), and a browser-like client following it lands on the TLS
// listener.
func TestRedirectToHTTPS(t *testing.T) {
	a, b := newBackend(t, "app-a"), newBackend(t, "app-b")
	httpAddr, httpsAddr := freePort(t), freePort(t)
	cfg, roots := tlsProxy(t, httpAddr, httpsAddr, a, b)
	ag := newAgent(t, cfg)
	ag.start(t)

	resp, _ := fetch(t, client(httpAddr, nil, nil), "http://b.example.test/path/x?q=1&r=2")
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != "https://b.example.test/path/x?q=1&r=2" {
		t.Fatalf("redirect: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if a.hits.Load()+b.hits.Load() != 0 {
		t.Error("a redirected request reached a backend")
	}
	// Follow it.
	resp, body := fetch(t, client(httpsAddr, &tls.Config{RootCAs: roots, ServerName: "b.example.test"}, nil), resp.Header.Get("Location"))
	if resp.StatusCode != 200 || body != "app-b proto=https host=b.example.test" {
		t.Errorf("after the redirect: %d %q", resp.StatusCode, body)
	}
	if ps := ag.proxies(t); len(ps) != 1 || ps[0].Redirects != 1 {
		t.Errorf("status %+v", ps)
	}
}

// TestStickySession: with a sticky cookie a client stays on one server (round robin moves
// clients without it), also across an agent restart (the cookie is signed with sticky_key);
// when its server is disabled the client moves and gets a new cookie.
func TestStickySession(t *testing.T) {
	bs := []*backend{newBackend(t, "app1"), newBackend(t, "app2"), newBackend(t, "app3")}
	addr := freePort(t)
	ag := newAgent(t, fmt.Sprintf(`proxy "www" {
  listener "l" { address = %q }
  backend "app" {
%s    sticky {
      cookie = "SRV"
    }
  }
  sticky_key = "e2e-sticky-key-0123456789"
}
`, addr, serverBlocks(bs...)))
	ag.start(t)

	// Without cookies: round robin over all three.
	plain := client(addr, nil, nil)
	seen := map[string]bool{}
	for range 6 {
		_, body := fetch(t, plain, "http://www.example.test/")
		seen[strings.Fields(body)[0]] = true
	}
	if len(seen) != 3 {
		t.Fatalf("without cookies the requests went to %v", seen)
	}

	jar, _ := cookiejar.New(nil)
	c := client(addr, nil, jar)
	resp, body := fetch(t, c, "http://www.example.test/")
	home := strings.Fields(body)[0]
	if sc := resp.Header.Get("Set-Cookie"); !strings.HasPrefix(sc, "SRV=") || !strings.Contains(sc, "HttpOnly") {
		t.Fatalf("Set-Cookie %q", sc)
	}
	stay := func(when string) {
		t.Helper()
		for range 10 {
			resp, body := fetch(t, c, "http://www.example.test/")
			if got := strings.Fields(body)[0]; got != home {
				t.Fatalf("%s: a sticky client moved from %s to %s", when, home, got)
			}
			if sc := resp.Header.Get("Set-Cookie"); sc != "" {
				t.Fatalf("%s: the cookie was set again: %q", when, sc)
			}
		}
	}
	stay("before the restart")

	ag.stop(t)
	ag.start(t)
	stay("after an agent restart")

	// Its server disabled, the client moves and gets a new cookie that keeps it there.
	if out, code := ag.cli(t, "proxy", "disable", "www", "app", home); code != 0 || !strings.Contains(out, "disabled") {
		t.Fatalf("fulcrum proxy disable: %d %s", code, out)
	}
	resp, body = fetch(t, c, "http://www.example.test/")
	moved := strings.Fields(body)[0]
	if moved == home || !strings.HasPrefix(resp.Header.Get("Set-Cookie"), "SRV=") {
		t.Fatalf("with %s disabled: answered by %s, Set-Cookie %q", home, moved, resp.Header.Get("Set-Cookie"))
	}
	home = moved
	stay("after the move")
}

// TestRateLimit: requests beyond the limit get 429 with Retry-After, per client address
// (127.0.0.2 is limited, 127.0.0.3 is not); a client beyond max_connections_per_client has
// its extra connection closed; status counts both.
func TestRateLimit(t *testing.T) {
	app := newBackend(t, "app1")
	addr := freePort(t)
	ag := newAgent(t, fmt.Sprintf(`proxy "www" {
  listener "l" { address = %q }
  backend "app" {
%s  }
  rate_limit {
    requests                   = 5
    per                        = "1m"
    max_connections_per_client = 2
  }
}
`, addr, serverBlocks(app)))
	ag.start(t)

	from := func(src string) *http.Client {
		c := client(addr, nil, nil)
		d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c.Transport.(*http.Transport).DialContext = d.DialContext
		return c
	}
	limited := from("127.0.0.2")
	url := "http://" + addr + "/"
	for i := range 5 {
		if resp, body := fetch(t, limited, url); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %q", i+1, resp.StatusCode, body)
		}
	}
	resp, body := fetch(t, limited, url)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("request 6: %d %q Retry-After %q", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if app.hits.Load() != 5 {
		t.Errorf("the backend saw %d requests, want 5", app.hits.Load())
	}
	if resp, _ := fetch(t, from("127.0.0.3"), url); resp.StatusCode != 200 {
		t.Errorf("another client was limited too: %d", resp.StatusCode)
	}

	// Connections: two open connections of 127.0.0.4 are served; a third is closed unanswered.
	open := func() (net.Conn, *bufio.Reader) {
		d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.4")}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: www.example.test\r\n\r\n")
		return c, bufio.NewReader(c)
	}
	for i := range 2 {
		_, r := open()
		resp, err := http.ReadResponse(r, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("connection %d: %v %v", i+1, resp, err)
		}
		resp.Body.Close() // the connection stays open (keep-alive)
	}
	_, r := open()
	if resp, err := http.ReadResponse(r, nil); err == nil {
		t.Fatalf("a third connection was answered: %d", resp.StatusCode)
	}

	ps := ag.proxies(t)
	if len(ps) != 1 || ps[0].RateLimited < 2 {
		t.Errorf("status %+v, want rate_limited >= 2", ps)
	}
}
