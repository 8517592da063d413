package l7proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// echo is what the test backends answer: who they are and what they received.
type echo struct {
	Server     string      `json:"server"`
	Host       string      `json:"host"`
	Path       string      `json:"path"`
	RemoteAddr string      `json:"remote_addr"`
	Header     http.Header `json:"header"`
	BodyLen    int         `json:"body_len"`
}

// testBackend is a real HTTP server on loopback answering with an echo.
type testBackend struct {
	name string
	srv  *httptest.Server
	addr netip.AddrPort
	mu   sync.Mutex
	hits int
	// status, when set, is the status of every answer.
	status int
}

func newBackend(t *testing.T, name string) *testBackend {
	t.Helper()
	b := &testBackend{name: name}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.srv.Close)
	b.addr = netip.MustParseAddrPort(b.srv.Listener.Addr().String())
	return b
}

func (b *testBackend) serve(w http.ResponseWriter, r *http.Request) {
	n, _ := io.Copy(io.Discard, r.Body)
	b.mu.Lock()
	b.hits++
	status := b.status
	b.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Server", "test-backend")
	w.Header().Set("X-Backend", b.name)
	if status != 0 {
		w.WriteHeader(status)
	}
	json.NewEncoder(w).Encode(echo{Server: b.name, Host: r.Host, Path: r.URL.Path, RemoteAddr: r.RemoteAddr, Header: r.Header, BodyLen: int(n)})
}

func (b *testBackend) setStatus(code int) {
	b.mu.Lock()
	b.status = code
	b.mu.Unlock()
}

func (b *testBackend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hits
}

func (b *testBackend) server(weight int) ServerOptions {
	return ServerOptions{Name: b.name, Address: b.addr, Weight: weight}
}

var loopback = netip.MustParseAddrPort("127.0.0.1:0")

// simpleOptions is one proxy "p" with one plain listener "http" on 127.0.0.1:0 and one
// backend "app" of the given servers.
func simpleOptions(servers ...ServerOptions) Options {
	return Options{Proxies: []ProxyOptions{{
		Name:      "p",
		Listeners: []ListenerOptions{{Name: "http", Address: loopback}},
		Backends:  []BackendOptions{{Name: "app", Servers: servers}},
		Timeouts:  DefaultTimeouts(),
	}}}
}

// startProxy starts a Proxy and closes it at the end of the test.
func startProxy(t *testing.T, opts Options) *Proxy {
	t.Helper()
	p, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := p.Start(ctx); err != nil {
		cancel()
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

func addrOf(t *testing.T, p *Proxy, proxy, listener string) string {
	t.Helper()
	a := p.Addr(proxy, listener)
	if a == nil {
		t.Fatalf("no address for %s/%s", proxy, listener)
	}
	return a.String()
}

// client returns an HTTP client without keep-alive surprises, from an optional source
// address.
func client(src string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	return &http.Client{
		Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true},
		Timeout:   10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

func get(t *testing.T, c *http.Client, url string, hdr ...string) (*http.Response, echo) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
		} else {
			req.Header.Add(hdr[i], hdr[i+1])
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var e echo
	json.Unmarshal(body, &e)
	return resp, e
}

// writeCert writes a self-signed ECDSA certificate for names (the first is the CN) and its key
// into dir, returning the file names.
func writeCert(t *testing.T, dir, base string, names ...string) (certFile, keyFile string, der []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, base+".pem"), filepath.Join(dir, base+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, der
}

// tlsClient returns an HTTP client that trusts nothing in particular (the tests look at the
// certificate themselves) and speaks HTTP/2 when offered.
func tlsClient(sni string) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{ServerName: sni, InsecureSkipVerify: true},
			ForceAttemptHTTP2: true,
		},
		Timeout: 10 * time.Second,
	}
}

// peerCert dials addr with TLS and SNI and returns the leaf certificate's DER and the state.
func peerCert(t *testing.T, addr, sni string) ([]byte, tls.ConnectionState) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS dial %s (SNI %q): %v", addr, sni, err)
	}
	defer c.Close()
	st := c.ConnectionState()
	return st.PeerCertificates[0].Raw, st
}

// deadAddr returns a loopback address where nothing listens (connections are refused).
func deadAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	return a
}

// recorder is a PassiveReporter that records reports.
type recorder struct {
	mu   sync.Mutex
	seen map[string][]bool
}

func (r *recorder) ReportPassive(target string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string][]bool{}
	}
	r.seen[target] = append(r.seen[target], ok)
}

func (r *recorder) get(target string) []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bool(nil), r.seen[target]...)
}
