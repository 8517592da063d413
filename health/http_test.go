package health_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/health"
	"github.com/fulcrum-lb/fulcrum/lab/netns"
)

// switchable is an HTTP handler whose status, body and delay the test sets, and which records
// what it saw.
type switchable struct {
	mu     sync.Mutex
	status int
	body   string
	delay  time.Duration
	seen   []*http.Request
	conns  atomic.Int32
}

func (s *switchable) set(status int, body string, delay time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body, s.delay = status, body, delay
}

func (s *switchable) last() *http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.seen) == 0 {
		return nil
	}
	return s.seen[len(s.seen)-1]
}

func (s *switchable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	status, body, delay := s.status, s.body, s.delay
	s.seen = append(s.seen, r)
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// serveHTTP serves h on addr inside host, over TLS if cfg is set, until the test ends.
func serveHTTP(t *testing.T, host *netns.Host, addr string, h *switchable, cfg *tls.Config) {
	t.Helper()
	ln := listen(t, host, "tcp", addr)
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				h.conns.Add(1)
			}
		},
		ErrorLog: log.New(io.Discard, "", 0), // handshake failures are what some tests cause
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Logf("serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
}

func TestHTTPChecker(t *testing.T) {
	l := newLab(t)
	h := &switchable{status: 200, body: "OK ready"}
	serveHTTP(t, l.backend, backendIP+":80", h, nil)
	probe := health.HTTP{Addr: netip.MustParseAddrPort(backendIP + ":80"), Dial: l.dial(), Path: "/healthz?full=1", Host: "www.example.org", Expect: `OK`}

	t.Run("healthy", func(t *testing.T) {
		expect(t, run(t, probe, 2*time.Second), health.OutcomeHealthy, health.ReasonNone)
		r := h.last()
		if r.Host != "www.example.org" || r.URL.Path != "/healthz" || r.URL.RawQuery != "full=1" || r.Method != "GET" {
			t.Errorf("server saw %s %s host %q", r.Method, r.URL, r.Host)
		}
		if r.Header.Get("Connection") != "close" || r.Header.Get("User-Agent") == "" {
			t.Errorf("request headers %v: want Connection: close and a User-Agent", r.Header)
		}
	})
	t.Run("no-keepalive", func(t *testing.T) {
		before := h.conns.Load()
		for range 3 {
			expect(t, run(t, probe, 2*time.Second), health.OutcomeHealthy, health.ReasonNone)
		}
		if got := h.conns.Load() - before; got != 3 {
			t.Errorf("3 checks made %d connections, want 3 (no reuse)", got)
		}
	})
	t.Run("bad-status", func(t *testing.T) {
		h.set(503, "OK but overloaded", 0)
		expect(t, run(t, probe, 2*time.Second), health.OutcomeUnhealthy, health.ReasonBadStatus)
		p := probe
		p.Status = []health.StatusRange{{200, 299}, {503, 503}}
		expect(t, run(t, p, 2*time.Second), health.OutcomeHealthy, health.ReasonNone)
		h.set(301, "OK moved", 0) // redirects are judged, not followed
		expect(t, run(t, probe, 2*time.Second), health.OutcomeUnhealthy, health.ReasonBadStatus)
	})
	t.Run("body-mismatch", func(t *testing.T) {
		h.set(200, "maintenance", 0)
		r := run(t, probe, 2*time.Second)
		expect(t, r, health.OutcomeUnhealthy, health.ReasonBodyMismatch)
		p := probe
		p.Expect = ""
		expect(t, run(t, p, 2*time.Second), health.OutcomeHealthy, health.ReasonNone)
	})
	t.Run("body-limit", func(t *testing.T) {
		h.set(200, strings.Repeat("x", 100<<10)+"MARKER", 0)
		p := probe
		p.Expect = "MARKER"
		expect(t, run(t, p, 2*time.Second), health.OutcomeUnhealthy, health.ReasonBodyMismatch) // beyond 64 KiB
		p.MaxBody = 200 << 10
		expect(t, run(t, p, 2*time.Second), health.OutcomeHealthy, health.ReasonNone)
	})
	t.Run("slow-times-out", func(t *testing.T) {
		h.set(200, "OK", 5*time.Second)
		start := time.Now()
		expect(t, run(t, probe, 300*time.Millisecond), health.OutcomeUnhealthy, health.ReasonTimeout)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("took %v to time out after 300ms", d)
		}
	})
	t.Run("method", func(t *testing.T) {
		h.set(200, "OK", 0)
		p := probe
		p.Method, p.Expect = "HEAD", ""
		expect(t, run(t, p, 2*time.Second), health.OutcomeHealthy, health.ReasonNone)
		if m := h.last().Method; m != "HEAD" {
			t.Errorf("server saw %s", m)
		}
	})
	t.Run("refused", func(t *testing.T) {
		p := probe
		p.Addr = netip.MustParseAddrPort(backendIP + ":81")
		expect(t, run(t, p, 2*time.Second), health.OutcomeUnhealthy, health.ReasonRefused)
	})
}

func TestHTTPSChecker(t *testing.T) {
	l := newLab(t)
	dir := t.TempDir()
	pki := newPKI(t, dir)
	var (
		mu  sync.Mutex
		sni []string
	)
	serverCfg := func(clientAuth tls.ClientAuthType) *tls.Config {
		return &tls.Config{
			GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
				mu.Lock()
				sni = append(sni, hello.ServerName)
				mu.Unlock()
				return nil, nil
			},
			Certificates: []tls.Certificate{pki.server},
			ClientAuth:   clientAuth,
			ClientCAs:    pki.pool,
		}
	}
	lastSNI := func() string {
		mu.Lock()
		defer mu.Unlock()
		return sni[len(sni)-1]
	}
	h := &switchable{status: 200, body: "OK"}
	serveHTTP(t, l.backend, backendIP+":443", h, serverCfg(tls.NoClientCert))
	serveHTTP(t, l.backend, backendIP+":8443", h, serverCfg(tls.RequireAndVerifyClientCert))
	base := health.HTTP{Addr: netip.MustParseAddrPort(backendIP + ":443"), Dial: l.dial(), TLS: true, CAFile: pki.caFile, Expect: "OK"}

	t.Run("verified-with-sni", func(t *testing.T) {
		p := base
		p.ServerName = "backend.example"
		expect(t, run(t, p, 2*time.Second), health.OutcomeHealthy, health.ReasonNone)
		if got := lastSNI(); got != "backend.example" {
			t.Errorf("server saw SNI %q", got)
		}
	})
	t.Run("sni-from-host", func(t *testing.T) {
		p := base
		p.Host = "backend.example:443"
		expect(t, run(t, p, 2*time.Second), health.OutcomeHealthy, health.ReasonNone)
		if got := lastSNI(); got != "backend.example" {
			t.Errorf("server saw SNI %q", got)
		}
		if got := h.last().Host; got != "backend.example:443" {
			t.Errorf("server saw Host %q", got)
		}
	})
	t.Run("ip-san-without-sni", func(t *testing.T) {
		expect(t, run(t, base, 2*time.Second), health.OutcomeHealthy, health.ReasonNone)
		if got := lastSNI(); got != "" {
			t.Errorf("server saw SNI %q for an IP check", got)
		}
	})
	t.Run("wrong-name-verify-on", func(t *testing.T) {
		p := base
		p.ServerName = "other.example"
		r := run(t, p, 2*time.Second)
		expect(t, r, health.OutcomeUnhealthy, health.ReasonTLSError)
		var herr x509.HostnameError
		if !errors.As(r.Err, &herr) {
			t.Errorf("error %v does not wrap an x509.HostnameError", r.Err)
		}
	})
	t.Run("unknown-ca-verify-on", func(t *testing.T) {
		p := base
		p.CAFile, p.ServerName = "", "backend.example" // system roots
		r := run(t, p, 2*time.Second)
		expect(t, r, health.OutcomeUnhealthy, health.ReasonTLSError)
		var uerr x509.UnknownAuthorityError
		if !errors.As(r.Err, &uerr) {
			t.Errorf("error %v does not wrap an x509.UnknownAuthorityError", r.Err)
		}
	})
	t.Run("verify-off", func(t *testing.T) {
		p := base
		p.CAFile, p.ServerName, p.SkipVerify = "", "other.example", true
		expect(t, run(t, p, 2*time.Second), health.OutcomeHealthy, health.ReasonNone)
	})
	t.Run("plain-http-to-tls-port", func(t *testing.T) {
		p := base
		p.TLS = false
		expect(t, run(t, p, 2*time.Second), health.OutcomeUnhealthy, health.ReasonBadStatus) // Go answers 400
	})
	t.Run("client-certificate", func(t *testing.T) {
		p := base
		p.Addr = netip.MustParseAddrPort(backendIP + ":8443")
		p.ServerName = "backend.example"
		expect(t, run(t, p, 2*time.Second), health.OutcomeUnhealthy, health.ReasonTLSError)
		p.CertFile, p.KeyFile = pki.clientCert, pki.clientKey
		expect(t, run(t, p, 2*time.Second), health.OutcomeHealthy, health.ReasonNone)
	})
	t.Run("build-errors", func(t *testing.T) {
		for name, p := range map[string]health.HTTP{
			"cert without key": {Addr: base.Addr, TLS: true, CertFile: pki.clientCert},
			"missing CA":       {Addr: base.Addr, TLS: true, CAFile: filepath.Join(dir, "nope.pem")},
			"bad status":       {Addr: base.Addr, Status: []health.StatusRange{{300, 200}}},
			"bad path":         {Addr: base.Addr, Path: "healthz"},
			"bad regexp":       {Addr: base.Addr, Expect: "(("},
		} {
			if _, err := p.Build(); err == nil {
				t.Errorf("%s: Build accepted it", name)
			}
		}
	})
}

// pki is a test CA with a server certificate for backend.example and 192.0.2.20, and a client
// certificate, in PEM files.
type pki struct {
	pool                          *x509.CertPool
	server                        tls.Certificate
	caFile, clientCert, clientKey string
}

func newPKI(t *testing.T, dir string) pki {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	serial := int64(0)
	issue := func(tmpl *x509.Certificate, key *ecdsa.PrivateKey, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, []byte) {
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return cert, der
	}
	writePEM := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	caKey := newKey()
	ca, caDER := issue(&x509.Certificate{Subject: pkix.Name{CommonName: "fulcrum test CA"}, IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}, caKey, nil, nil)
	srvKey := newKey()
	_, srvDER := issue(&x509.Certificate{Subject: pkix.Name{CommonName: "backend.example"},
		DNSNames: []string{"backend.example"}, IPAddresses: []net.IP{net.ParseIP(backendIP)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, srvKey, ca, caKey)
	cliKey := newKey()
	_, cliDER := issue(&x509.Certificate{Subject: pkix.Name{CommonName: "fulcrum health check"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, cliKey, ca, caKey)
	cliKeyDER, err := x509.MarshalECPrivateKey(cliKey)
	if err != nil {
		t.Fatal(err)
	}
	p := pki{pool: x509.NewCertPool(), server: tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}}
	p.pool.AddCert(ca)
	p.caFile = writePEM("ca.pem", "CERTIFICATE", caDER)
	p.clientCert = writePEM("client.pem", "CERTIFICATE", cliDER)
	p.clientKey = writePEM("client-key.pem", "EC PRIVATE KEY", cliKeyDER)
	return p
}
