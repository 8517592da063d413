package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/config"
	"github.com/fulcrum-lb/fulcrum/l7proxy"
)

// writeTestCert writes a self-signed ECDSA certificate for names (the first
// is the common name) and its key as PEM files in dir.
func writeTestCert(t *testing.T, dir, base string, names ...string) (certFile, keyFile string) {
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
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, base+".pem"), filepath.Join(dir, base+".key")
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
	return certFile, keyFile
}

// loadProxyConfig writes src (after a node block) into dir and loads it as
// the agent does.
func loadProxyConfig(t *testing.T, dir, src string) *config.Config {
	t.Helper()
	path := filepath.Join(dir, "node.hcl")
	writeFile(t, path, "node \"lb1\" {}\n"+src)
	cfg, diags := loadConfig(path)
	if diags.HasErrors() {
		t.Fatalf("config:\n%s", diagnosticsText(diags))
	}
	return cfg
}

// zeroFields lists the fields of v (recursing into structs, pointers and
// the elements of slices) that hold their zero value, by path.
func zeroFields(v reflect.Value, path string, out *[]string) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			*out = append(*out, path)
			return
		}
		zeroFields(v.Elem(), path, out)
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[netip.AddrPort]() || v.Type() == reflect.TypeFor[netip.Prefix]() {
			if v.IsZero() {
				*out = append(*out, path)
			}
			return
		}
		for i := 0; i < v.NumField(); i++ {
			zeroFields(v.Field(i), path+"."+v.Type().Field(i).Name, out)
		}
	case reflect.Slice:
		if v.Len() == 0 {
			*out = append(*out, path)
			return
		}
		for i := 0; i < v.Len(); i++ {
			zeroFields(v.Index(i), fmt.Sprintf("%s[%d]", path, i), out)
		}
	default:
		if v.IsZero() {
			*out = append(*out, path)
		}
	}
}

// fullProxyConfig uses every proxy attribute, in two proxies.
func fullProxyConfig(certFile, keyFile string) string {
	return fmt.Sprintf(`
proxy "www" {
  listener "http" {
    address        = "127.0.0.1:18080"
    redirect_https = 302
    proxy_protocol = true
    h2c            = true
  }
  listener "https" {
    address        = "127.0.0.1:18443"
    proxy_protocol = true
    tls {
      min_version = "1.3"
      certificate "main" {
        cert_file = %q
        key_file  = %q
        ocsp_file = %q
      }
    }
  }
  backend "app" {
    balance             = "leastconn"
    max_fails           = 3
    fail_timeout        = "30s"
    send_proxy_protocol = 2
    server "app1" {
      address = "127.0.0.1:19001"
      weight  = 100
    }
    sticky {
      cookie = "SRV"
    }
  }
  backend "static" {
    balance             = "source"
    max_fails           = 2
    send_proxy_protocol = 1
    server "cdn1" {
      address = "[::1]:19002"
      weight  = 7
    }
    sticky {
      ip_hash = true
    }
  }
  default_backend = "app"
  route {
    host        = "*.static.example"
    path_prefix = "/assets/"
    backend     = "static"
  }
  rate_limit {
    requests                   = 50
    per                        = "10s"
    max_connections_per_client = 20
    max_clients                = 5000
  }
  max_connections = 1000
  timeouts {
    connect = "3s"
    client  = "31s"
    server  = "32s"
    idle    = "2m"
    header  = "5s"
  }
  max_body_size   = "10MiB"
  max_header_size = "64KiB"
  stats {
    path     = "/_stats"
    username = "admin"
    password = "pw-stats"
    refresh  = "5s"
  }
  headers {
    set    = { "X-Forwarded-Proto" = "https" }
    delete = ["X-Debug"]
  }
  response_headers {
    set    = { "Strict-Transport-Security" = "max-age=60" }
    delete = ["Server"]
  }
  trusted_proxies = ["198.51.100.0/24", "::1"]
  retries         = 3
  access_log      = true
  sticky_key      = "0123456789abcdef0123"
}

proxy "api" {
  listener "l" { address = "127.0.0.1:18081" }
  backend "b" {
    server "s" { address = "127.0.0.1:19003" }
  }
  retries = 0
  rate_limit {
    max_connections_per_client = 4
  }
}
`, certFile, keyFile, certFile)
}

// TestProxyTranslation: every proxy attribute of the config reaches
// l7proxy's options, with the translations of meaning (retries 0, a
// connections-only rate_limit, the node's sticky key, access_log).
func TestProxyTranslation(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeTestCert(t, dir, "www", "www.example")
	cfg := loadProxyConfig(t, dir, fullProxyConfig(certFile, keyFile))
	log := slog.New(slog.DiscardHandler)
	got := proxyOptions(cfg, log)

	ap := netip.MustParseAddrPort
	want := l7proxy.Options{
		Logger:       log,
		StickyKey:    []byte("0123456789abcdef0123"),
		DrainTimeout: proxyDrainTimeout,
		Proxies: []l7proxy.ProxyOptions{{
			Name: "www",
			Listeners: []l7proxy.ListenerOptions{
				{Name: "http", Address: ap("127.0.0.1:18080"), RedirectHTTPS: 302, ProxyProtocol: true, H2C: true},
				{Name: "https", Address: ap("127.0.0.1:18443"), ProxyProtocol: true, TLS: &l7proxy.TLSOptions{
					MinVersion:   tls.VersionTLS13,
					Certificates: []l7proxy.CertificateOptions{{Name: "main", CertFile: certFile, KeyFile: keyFile, OCSPFile: certFile}},
				}},
			},
			Backends: []l7proxy.BackendOptions{
				{Name: "app", Balance: l7proxy.LeastConn, MaxFails: 3, FailTimeout: 30 * time.Second, SendProxyProtocol: 2,
					Sticky:  l7proxy.StickyOptions{Cookie: "SRV"},
					Servers: []l7proxy.ServerOptions{{Name: "app1", Address: ap("127.0.0.1:19001"), Weight: 100}}},
				{Name: "static", Balance: l7proxy.Source, MaxFails: 2, FailTimeout: 10 * time.Second, SendProxyProtocol: 1,
					Sticky:  l7proxy.StickyOptions{IPHash: true},
					Servers: []l7proxy.ServerOptions{{Name: "cdn1", Address: ap("[::1]:19002"), Weight: 7}}},
			},
			DefaultBackend:  "app",
			Routes:          []l7proxy.RouteOptions{{Host: "*.static.example", PathPrefix: "/assets/", Backend: "static"}},
			MaxConnections:  1000,
			MaxBodySize:     10 << 20,
			MaxHeaderSize:   64 << 10,
			RateLimit:       &l7proxy.RateLimitOptions{Requests: 50, Per: 10 * time.Second, MaxClients: 5000, MaxConnsPerClient: 20},
			Timeouts:        l7proxy.Timeouts{Connect: 3 * time.Second, Client: 31 * time.Second, Server: 32 * time.Second, Idle: 2 * time.Minute, Header: 5 * time.Second},
			Stats:           &l7proxy.StatsOptions{Path: "/_stats", Username: "admin", Password: "pw-stats", Refresh: 5 * time.Second},
			RequestHeaders:  l7proxy.HeaderEdits{Set: map[string]string{"X-Forwarded-Proto": "https"}, Delete: []string{"X-Debug"}},
			ResponseHeaders: l7proxy.HeaderEdits{Set: map[string]string{"Strict-Transport-Security": "max-age=60"}, Delete: []string{"Server"}},
			TrustedProxies:  []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("::1/128")},
			Retries:         3,
		}, {
			Name:           "api",
			Listeners:      []l7proxy.ListenerOptions{{Name: "l", Address: ap("127.0.0.1:18081")}},
			Backends:       []l7proxy.BackendOptions{{Name: "b", Balance: l7proxy.RoundRobin, MaxFails: 1, FailTimeout: 10 * time.Second, Servers: []l7proxy.ServerOptions{{Name: "s", Address: ap("127.0.0.1:19003"), Weight: 1}}}},
			DefaultBackend: "b",
			MaxHeaderSize:  1 << 20,
			RateLimit:      &l7proxy.RateLimitOptions{Requests: math.MaxInt32, Per: time.Second, MaxClients: 100000, MaxConnsPerClient: 4},
			Timeouts:       l7proxy.DefaultTimeouts(),
			Retries:        -1, // retries = 0: none
		}},
	}
	if got.AccessLog == nil {
		t.Fatal("access_log = true in proxy www, but AccessLog is nil")
	}
	access := got.AccessLog
	got.AccessLog = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("translation differs:\n got %+v\nwant %+v", got, want)
		for i := range min(len(got.Proxies), len(want.Proxies)) {
			if !reflect.DeepEqual(got.Proxies[i], want.Proxies[i]) {
				t.Errorf("proxy %d:\n got %+v\nwant %+v", i, got.Proxies[i], want.Proxies[i])
			}
		}
	}

	// Every option of the first proxy is set from the config: an l7proxy
	// option the translation forgets shows up here.
	var zero []string
	got.AccessLog = access
	zeroFields(reflect.ValueOf(got.Proxies[0]), "Proxies[0]", &zero)
	for _, f := range []string{"Passive", "CertCheckInterval"} {
		if reflect.ValueOf(got).FieldByName(f).IsZero() {
			// Not configurable: no health subsystem yet; certificates reload on SIGHUP.
			continue
		}
		t.Errorf("%s is set", f)
	}
	allowed := map[string]bool{
		// Zero on purpose in the fixture: a TLS listener cannot redirect or
		// speak h2c, and the one that does is plain.
		"Proxies[0].Listeners[1].RedirectHTTPS": true, "Proxies[0].Listeners[1].H2C": true, "Proxies[0].Listeners[0].TLS": true,
		// A sticky backend uses a cookie or ip_hash, not both.
		"Proxies[0].Backends[0].Sticky.IPHash": true, "Proxies[0].Backends[1].Sticky.Cookie": true,
	}
	for _, f := range zero {
		if !allowed[f] {
			t.Errorf("option %s is not set by the translation of a config that uses every attribute", f)
		}
	}

	// Without access_log anywhere, there is no access logger; without
	// sticky_key, no key (l7proxy picks a random one).
	cfg = loadProxyConfig(t, dir, `
proxy "p" {
  listener "l" { address = "127.0.0.1:18082" }
  backend "b" {
    server "s" { address = "127.0.0.1:19004" }
  }
}
`)
	if o := proxyOptions(cfg, log); o.AccessLog != nil || o.StickyKey != nil || o.Proxies[0].Retries != 2 || o.Proxies[0].RateLimit != nil {
		t.Errorf("defaults: access log %v, sticky key %q, retries %d, rate limit %+v", o.AccessLog, o.StickyKey, o.Proxies[0].Retries, o.Proxies[0].RateLimit)
	}
}

// TestProxyHealthCheckRefused: what health checks of a proxy backend may
// say but the build lacks (dynamic_weight) is an error at its position.
func TestProxyHealthCheckRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.hcl")
	writeFile(t, path, `node "lb1" {}
proxy "www" {
  listener "l" { address = "127.0.0.1:18083" }
  backend "app" {
    server "s" { address = "127.0.0.1:19005" }
    health_check "exec" {
      command = ["/bin/true"]
      dynamic_weight = true
    }
  }
}
`)
	diags := Validate(path)
	list := DiagnosticList(diags)
	if !diags.HasErrors() || len(list) != 1 {
		t.Fatalf("diagnostics %+v", list)
	}
	d := list[0]
	if d.Summary != "dynamic_weight is not supported yet" || d.Line != 6 || d.Column != 5 ||
		!strings.Contains(d.Snippet, `health_check "exec"`) || !strings.Contains(d.Detail, "dynamic_weight") {
		t.Errorf("diagnostic %+v", d)
	}
}

// proxyBackend is an HTTP server standing for a proxy server: it answers
// its name.
type proxyBackend struct {
	name string
	srv  *httptest.Server
	hits atomic.Int64
}

func newProxyBackend(t *testing.T, name string) *proxyBackend {
	t.Helper()
	b := &proxyBackend{name: name}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		w.Header().Set("X-Backend", name)
		fmt.Fprintf(w, "%s %s", name, r.Header.Get("X-Real-IP"))
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *proxyBackend) addr() string { return b.srv.Listener.Addr().String() }

// proxyBlock renders a proxy with one listener and one backend of the
// given servers (name = backend address).
func proxyBlock(name, listen string, extra string, servers ...*proxyBackend) string {
	var b strings.Builder
	fmt.Fprintf(&b, "proxy %q {\n  listener \"l\" { address = %q }\n  backend \"app\" {\n    max_fails = 1\n    fail_timeout = \"30s\"\n", name, listen)
	for _, s := range servers {
		fmt.Fprintf(&b, "    server %q { address = %q }\n", s.name, s.addr())
	}
	b.WriteString("  }\n" + extra + "}\n")
	return b.String()
}

// get fetches url with a fresh connection and returns the body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// proxyDetail returns the l7proxy subsystem's status.
func proxyDetail(t *testing.T, a *Agent) (SubsystemStatus, []ProxyStatus) {
	t.Helper()
	for _, s := range a.Status().Subsystems {
		if s.Name == "l7proxy" {
			ps, _ := s.Detail["proxies"].([]ProxyStatus)
			return s, ps
		}
	}
	t.Fatal("no l7proxy subsystem in status")
	return SubsystemStatus{}, nil
}

// TestProxyServesThroughAgent: an agent with a proxy block forwards
// requests, reports status detail and metrics, and logs access records of
// the proxies that ask for them only, to journald with the documented
// fields.
func TestProxyServesThroughAgent(t *testing.T) {
	app1, app2 := newProxyBackend(t, "app1"), newProxyBackend(t, "app2")
	www, api := freeAddr(t, "127.0.0.1"), freeAddr(t, "127.0.0.1")
	journal := newFakeJournal(t)
	ta := startAgent(t, testConfig{target: "journald", metrics: freeAddr(t, "127.0.0.1"),
		extra: proxyBlock("www", www, "  access_log = true\n", app1, app2) + proxyBlock("api", api, "", app2)},
		func(o *Options) { o.JournalSocket = journal.path })

	seen := map[string]int{}
	for range 4 {
		code, body := get(t, "http://"+www+"/x")
		if code != 200 {
			t.Fatalf("status %d: %s", code, body)
		}
		seen[strings.Fields(body)[0]]++
	}
	if seen["app1"] != 2 || seen["app2"] != 2 {
		t.Errorf("round robin gave %v", seen)
	}
	if code, body := get(t, "http://"+api+"/"); code != 200 || !strings.HasPrefix(body, "app2") {
		t.Errorf("api: %d %q", code, body)
	}

	st, proxies := proxyDetail(t, ta.Agent)
	if st.Configured != 2 || st.State != "running: 2 proxies, 2 listeners, 3/3 servers up" {
		t.Errorf("status %+v", st)
	}
	if len(proxies) != 2 || proxies[0].Name != "www" || proxies[0].TotalRequests != 4 || proxies[0].Responses.Success != 4 ||
		proxies[0].Listeners[0].Address != www || len(proxies[0].Backends[0].Servers) != 2 ||
		proxies[0].Backends[0].Servers[0].State != ProxyServerUp || proxies[0].Backends[0].Servers[0].TotalSessions != 2 {
		t.Errorf("detail %+v", proxies)
	}

	// Metrics.
	if v := proxyGather(t, ta.Agent, "fulcrum_proxy_requests_total", map[string]string{"proxy": "www", "class": "2xx"}); v != 4 {
		t.Errorf("requests_total{2xx} = %v", v)
	}
	if v := proxyGather(t, ta.Agent, "fulcrum_proxy_server_up", map[string]string{"proxy": "www", "backend": "app", "server": "app1"}); v != 1 {
		t.Errorf("server_up = %v", v)
	}
	if v := proxyGather(t, ta.Agent, "fulcrum_proxy_server_sessions_total", map[string]string{"proxy": "www", "server": "app2"}); v != 2 {
		t.Errorf("server_sessions_total = %v", v)
	}
	if v := proxyGather(t, ta.Agent, "fulcrum_proxy_bytes_total", map[string]string{"proxy": "www", "direction": "out"}); v == 0 {
		t.Errorf("bytes out = %v", v)
	}
	for _, name := range []string{"fulcrum_proxy_errors_total", "fulcrum_proxy_rate_limited_total", "fulcrum_proxy_retries_total", "fulcrum_proxy_active_sessions", "fulcrum_proxy_server_weight", "fulcrum_proxy_server_active_sessions"} {
		proxyGather(t, ta.Agent, name, map[string]string{"proxy": "www"})
	}

	// Access log: four records of www in journald, none of api.
	var records []map[string][]string
	deadline := time.Now().Add(5 * time.Second)
	for len(records) < 4 && time.Now().Before(deadline) {
		m := journal.next(t)
		if first(m["MESSAGE"]) == "request" {
			records = append(records, m)
		}
	}
	if len(records) != 4 {
		t.Fatalf("%d access records", len(records))
	}
	for _, r := range records {
		if first(r["PROXY"]) != "www" || first(r["BACKEND"]) != "app" || first(r["STATUS"]) != "200" ||
			first(r["CLIENT"]) != "127.0.0.1" || first(r["SUBSYSTEM"]) != "l7proxy" || first(r["DURATION_MS"]) == "" ||
			(first(r["SERVER"]) != "app1" && first(r["SERVER"]) != "app2") || r["DURATION"] != nil {
			t.Errorf("access record %v", r)
		}
	}
	// Requests of proxy api are not logged: nothing more arrives.
	get(t, "http://"+api+"/")
	_ = journal.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 1<<16)
	for {
		n, _, err := journal.conn.ReadFromUnix(buf)
		if err != nil {
			break
		}
		if strings.Contains(string(buf[:n]), "MESSAGE=request\n") {
			t.Errorf("a request of proxy api was logged: %q", buf[:n])
		}
	}
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// proxyGather returns the value of the series name whose labels include
// labels.
func proxyGather(t *testing.T, a *Agent, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				found := false
				for _, l := range m.GetLabel() {
					found = found || l.GetName() == k && l.GetValue() == v
				}
				if !found {
					continue next
				}
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

// hammerResult counts the outcomes of hammer's requests.
type hammerResult struct {
	ok, refused, eof, other atomic.Int64
	mu                      sync.Mutex
	firstOther              error
}

// hammer sends requests to url on fresh connections until stop is closed
// (at most 20000), sorting failures: refused (a listener was closed), EOF
// (accepted, then closed unanswered) and any other error or status.
func hammer(url string, stop <-chan struct{}) (*hammerResult, chan struct{}) {
	res, done := &hammerResult{}, make(chan struct{})
	go func() {
		defer close(done)
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		for range 20000 {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := c.Get(url)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			switch {
			case err == nil:
				res.ok.Add(1)
			case errors.Is(err, syscall.ECONNREFUSED):
				res.refused.Add(1)
			case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
				res.eof.Add(1)
			default:
				res.other.Add(1)
				res.mu.Lock()
				if res.firstOther == nil {
					res.firstOther = err
				}
				res.mu.Unlock()
			}
		}
	}()
	return res, done
}

func (r *hammerResult) String() string {
	return fmt.Sprintf("%d ok, %d refused, %d EOF, %d other (first: %v)", r.ok.Load(), r.refused.Load(), r.eof.Load(), r.other.Load(), r.firstOther)
}

// TestProxyReloadKeepsListeners: reloads keep the proxy's listening
// socket: a client connecting all along is never refused, and a changed
// configuration takes effect at once. A reload that leaves the proxies
// unchanged does not disturb them at all (not one request lost).
func TestProxyReloadKeepsListeners(t *testing.T) {
	app1, app2 := newProxyBackend(t, "app1"), newProxyBackend(t, "app2")
	www := freeAddr(t, "127.0.0.1")
	ta := startAgent(t, testConfig{extra: proxyBlock("www", www, "", app1)})
	if _, body := get(t, "http://"+www+"/"); !strings.HasPrefix(body, "app1") {
		t.Fatalf("body %q", body)
	}

	// Reloads that change something else (the log level): the proxy is
	// left alone: an idle keep-alive connection stays open, and every
	// request is answered.
	keep := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	reused := func() bool {
		t.Helper()
		var info httptrace.GotConnInfo
		req, _ := http.NewRequest(http.MethodGet, "http://"+www+"/", nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { info = i }}))
		resp, err := keep.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return info.Reused
	}
	reused()
	ta.rewrite(t, testConfig{level: "debug", extra: proxyBlock("www", www, "", app1)})
	if r := ta.Reload(context.Background()); !r.OK {
		t.Fatal(r)
	}
	if !reused() {
		t.Error("a reload that leaves the proxy unchanged closed an idle client connection")
	}
	stop := make(chan struct{})
	res, done := hammer("http://"+www+"/", stop)
	for i := range 6 {
		level := []string{"debug", "info"}[i%2]
		ta.rewrite(t, testConfig{level: level, extra: proxyBlock("www", www, "", app1)})
		if r := ta.Reload(context.Background()); !r.OK {
			t.Fatalf("reload %d: %+v", i, r)
		}
		time.Sleep(30 * time.Millisecond)
	}
	close(stop)
	<-done
	if res.ok.Load() == 0 || res.refused.Load()+res.eof.Load()+res.other.Load() > 0 {
		t.Errorf("across reloads that leave the proxy unchanged: %s", res)
	}

	// Reloads that change the proxy: new routing at once, the socket kept.
	stop = make(chan struct{})
	res, done = hammer("http://"+www+"/", stop)
	const reloads = 6
	for i := range reloads {
		servers := []*proxyBackend{app1}
		if i%2 == 0 {
			servers = []*proxyBackend{app2}
		}
		ta.rewrite(t, testConfig{extra: proxyBlock("www", www, fmt.Sprintf("  max_body_size = \"%dKiB\"\n", i+1), servers...)})
		if r := ta.Reload(context.Background()); !r.OK {
			t.Fatalf("reload %d: %+v", i, r)
		}
		want := servers[0].name
		if _, body := get(t, "http://"+www+"/"); !strings.HasPrefix(body, want) {
			t.Fatalf("after reload %d the answer is %q, want %s", i, body, want)
		}
		time.Sleep(30 * time.Millisecond)
	}
	close(stop)
	<-done
	// A refused connection would mean the listener was closed; an EOF, a
	// request dropped by a reload. Neither may happen: each socket keeps
	// one long-lived server and a reload only swaps its configuration.
	if res.ok.Load() == 0 || res.refused.Load()+res.eof.Load()+res.other.Load() > 0 {
		t.Errorf("across reloads that change the proxy: %s", res)
	}
	if st := ta.Status(); st.Config.Generation != 2+6+reloads {
		t.Errorf("generation %d", st.Config.Generation)
	}
}

// TestProxyBadReloadKeepsServing: a reload the proxy refuses (a new
// listener on an address in use; an invalid file; a backend health_check)
// leaves the running proxy serving, unchanged.
func TestProxyBadReloadKeepsServing(t *testing.T) {
	app1, app2 := newProxyBackend(t, "app1"), newProxyBackend(t, "app2")
	www := freeAddr(t, "127.0.0.1")
	ta := startAgent(t, testConfig{extra: proxyBlock("www", www, "", app1)})

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	sub := ta.Events().Subscribe(64)
	defer sub.Close()

	bad := []struct {
		name, src, want string
	}{
		{"address in use", proxyBlock("www", www, "", app2) + proxyBlock("two", busy.Addr().String(), "", app2), "address already in use"},
		{"invalid file", proxyBlock("www", www, "  max_body_size = \"lots\"\n", app2), "Invalid size"},
		{"health check", strings.Replace(proxyBlock("www", www, "", app2), "  backend \"app\" {\n", "  backend \"app\" {\n    health_check \"exec\" {\n      command = [\"/bin/true\"]\n      dynamic_weight = true\n    }\n", 1), "dynamic_weight is not supported yet"},
	}
	for _, tc := range bad {
		ta.rewrite(t, testConfig{extra: tc.src})
		res := ta.Reload(context.Background())
		if res.OK || !strings.Contains(res.Error, tc.want) {
			t.Fatalf("%s: reload answered %+v, want an error with %q", tc.name, res, tc.want)
		}
		nextEvent(t, sub, EventConfigReloadFailed)
		if code, body := get(t, "http://"+www+"/"); code != 200 || !strings.HasPrefix(body, "app1") {
			t.Fatalf("%s: after the refused reload: %d %q", tc.name, code, body)
		}
	}
	if st := ta.Status(); st.Config.Generation != 1 {
		t.Errorf("generation %d", st.Config.Generation)
	}
	if _, proxies := proxyDetail(t, ta.Agent); len(proxies) != 1 || proxies[0].Backends[0].Servers[0].Name != "app1" {
		t.Errorf("detail after refused reloads: %+v", proxies)
	}
}

// TestProxyDisableEnable: the operator takes a server out and back, over
// the control API; events, status and metrics follow, and the override
// lasts across a reload.
func TestProxyDisableEnable(t *testing.T) {
	app1, app2 := newProxyBackend(t, "app1"), newProxyBackend(t, "app2")
	www := freeAddr(t, "127.0.0.1")
	ta := startAgent(t, testConfig{extra: proxyBlock("www", www, "", app1, app2)})
	sub := ta.Events().Subscribe(64)
	defer sub.Close()
	c := ta.client()
	ctx := context.Background()

	res, err := c.ProxyDisable(ctx, ProxyServerRequest{Proxy: "www", Backend: "app", Server: "app1"})
	if err != nil || !res.OK || !res.Disabled || !res.Changed || res.State != ProxyServerDisabled || res.Address != app1.addr() {
		t.Fatalf("disable: %+v %v", res, err)
	}
	ev := nextEvent(t, sub, EventProxyServerStateChanged)
	if ev.Subsystem != "l7proxy" || ev.Attrs["server"] != "app1" || ev.Attrs["from"] != "up" || ev.Attrs["to"] != "disabled" || ev.Attrs["reason"] != "operator" {
		t.Errorf("event %+v", ev)
	}
	for range 4 {
		if _, body := get(t, "http://"+www+"/"); !strings.HasPrefix(body, "app2") {
			t.Fatalf("a disabled server got a request: %q", body)
		}
	}
	if v := proxyGather(t, ta.Agent, "fulcrum_proxy_server_disabled", map[string]string{"server": "app1"}); v != 1 {
		t.Errorf("server_disabled = %v", v)
	}
	if st, _ := proxyDetail(t, ta.Agent); !strings.Contains(st.State, "1/2 servers up, 1 disabled") {
		t.Errorf("state %q", st.State)
	}

	// Across a reload.
	ta.rewrite(t, testConfig{extra: proxyBlock("www", www, "  retries = 1\n", app1, app2)})
	if r := ta.Reload(ctx); !r.OK {
		t.Fatal(r)
	}
	if _, body := get(t, "http://"+www+"/"); !strings.HasPrefix(body, "app2") {
		t.Fatalf("after a reload a disabled server got a request: %q", body)
	}
	if res, err := c.ProxyDisable(ctx, ProxyServerRequest{Proxy: "www", Backend: "app", Server: "app1"}); err != nil || res.Changed {
		t.Errorf("disable again: %+v %v", res, err)
	}

	res, err = c.ProxyEnable(ctx, ProxyServerRequest{Proxy: "www", Backend: "app", Server: "app1"})
	if err != nil || res.Disabled || !res.Changed || res.State != ProxyServerUp {
		t.Fatalf("enable: %+v %v", res, err)
	}
	if ev := nextEvent(t, sub, EventProxyServerStateChanged); ev.Attrs["from"] != "disabled" || ev.Attrs["to"] != "up" {
		t.Errorf("event %+v", ev)
	}
	seen := map[string]bool{}
	for range 4 {
		_, body := get(t, "http://"+www+"/")
		seen[strings.Fields(body)[0]] = true
	}
	if !seen["app1"] {
		t.Error("an enabled server got no request")
	}

	// Errors.
	var apiErr *APIError
	if _, err := c.ProxyDisable(ctx, ProxyServerRequest{Proxy: "www", Backend: "app", Server: "nope"}); !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || !strings.Contains(err.Error(), "app1, app2") {
		t.Errorf("unknown server: %v", err)
	}
	if _, err := c.ProxyDisable(ctx, ProxyServerRequest{Proxy: "www"}); !errors.As(err, &apiErr) || apiErr.StatusCode != 400 {
		t.Errorf("incomplete request: %v", err)
	}
}

// TestProxyNoneConfigured: without proxy blocks, the subsystem idles and
// operator requests answer 409.
func TestProxyNoneConfigured(t *testing.T) {
	ta := startAgent(t, testConfig{})
	if st, _ := proxyDetail(t, ta.Agent); st.Configured != 0 || st.State != StateNoneConfigured || st.Detail != nil {
		t.Errorf("status %+v", st)
	}
	var apiErr *APIError
	if _, err := ta.client().ProxyDisable(context.Background(), ProxyServerRequest{Proxy: "a", Backend: "b", Server: "c"}); !errors.As(err, &apiErr) || apiErr.StatusCode != 409 {
		t.Errorf("disable: %v", err)
	}
}

// TestProxyPassiveDownEvent: passive checking (max_fails) works without
// the health subsystem, and its state changes are published.
func TestProxyPassiveDownEvent(t *testing.T) {
	app1 := newProxyBackend(t, "app1")
	dead := &proxyBackend{name: "dead"}
	dead.srv = httptest.NewServer(http.NotFoundHandler())
	dead.srv.Close() // its address refuses connections now
	www := freeAddr(t, "127.0.0.1")
	ta := startAgent(t, testConfig{extra: proxyBlock("www", www, "", dead, app1)})
	sub := ta.Events().Subscribe(64)
	defer sub.Close()

	for range 2 { // round robin: one of them tries dead first, then retries on app1
		if code, body := get(t, "http://"+www+"/"); code != 200 || !strings.HasPrefix(body, "app1") {
			t.Fatalf("%d %q", code, body)
		}
	}
	ev := nextEvent(t, sub, EventProxyServerStateChanged)
	if ev.Attrs["server"] != "dead" || ev.Attrs["from"] != "up" || ev.Attrs["to"] != ProxyServerPassiveDown || ev.Attrs["reason"] != "max_fails" {
		t.Errorf("event %+v", ev)
	}
	_, proxies := proxyDetail(t, ta.Agent)
	if s := proxies[0].Backends[0].Servers[0]; s.State != ProxyServerPassiveDown || s.PassiveFails != 1 {
		t.Errorf("server %+v", s)
	}
	if proxies[0].Retries != 1 {
		t.Errorf("retries %d", proxies[0].Retries)
	}
}

// TestProxySIGHUPReloadsCertificates: SIGHUP reloads the certificates
// even when the configuration file is broken (the reload is refused).
func TestProxySIGHUPReloadsCertificates(t *testing.T) {
	app1 := newProxyBackend(t, "app1")
	dir := t.TempDir()
	certFile, keyFile := writeTestCert(t, dir, "www", "www.example")
	www := freeAddr(t, "127.0.0.1")
	tlsBlock := fmt.Sprintf("    tls {\n      certificate \"c\" {\n        cert_file = %q\n        key_file = %q\n      }\n    }\n", certFile, keyFile)
	src := strings.Replace(proxyBlock("www", www, "", app1), fmt.Sprintf("  listener \"l\" { address = %q }\n", www),
		fmt.Sprintf("  listener \"l\" {\n    address = %q\n%s  }\n", www, tlsBlock), 1)
	ta := startAgent(t, testConfig{extra: src})
	sub := ta.Events().Subscribe(64)
	defer sub.Close()

	serial := func() string {
		t.Helper()
		c, err := tls.Dial("tcp", www, &tls.Config{InsecureSkipVerify: true, ServerName: "www.example"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	writeTestCert(t, dir, "www", "www.example") // new pair, same files
	ta.rewrite(t, testConfig{extra: src + "broken {"})
	ta.signals <- syscall.SIGHUP
	nextEvent(t, sub, EventConfigReloadFailed)
	eventually(t, "the new certificate", func() bool { return serial() != before })
	if code, _ := getTLS(t, www); code != 200 {
		t.Errorf("status %d", code)
	}
}

func getTLS(t *testing.T, addr string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "www.example"}}}
	resp, err := c.Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestAccessLogHandler: records of other proxies are dropped; duration
// becomes duration_ms.
func TestAccessLogHandler(t *testing.T) {
	var buf syncBuffer
	h := &accessLogHandler{next: slog.NewTextHandler(&buf, nil), proxies: map[string]bool{"www": true}}
	log := slog.New(h).With("subsystem", "l7proxy")
	log.Info("request", "proxy", "api", "status", 200, "duration", time.Millisecond)
	log.Info("request", "proxy", "www", "status", 201, "duration", 1500*time.Microsecond)
	out := buf.String()
	if strings.Contains(out, "api") || !strings.Contains(out, "subsystem=l7proxy proxy=www status=201 duration_ms=1.5") {
		t.Errorf("log:\n%s", out)
	}
}

// TestProxySubsystemIsWired: the default subsystems run the real proxy.
func TestProxySubsystemIsWired(t *testing.T) {
	for _, f := range defaultSubsystems() {
		if f.name != "l7proxy" {
			continue
		}
		s := f.new(subsystemDeps{Log: slog.New(slog.DiscardHandler), Events: NewBus(systemClock{}, nil)})
		if _, ok := s.(*proxySubsystem); !ok {
			t.Fatalf("l7proxy subsystem is %T", s)
		}
		return
	}
	t.Fatal("no l7proxy subsystem")
}

// TestProxyDisableAcrossRestart: a disable is recorded in the state folder
// and holds in the next agent; a record that cannot be written changes
// nothing.
func TestProxyDisableAcrossRestart(t *testing.T) {
	app1, app2 := newProxyBackend(t, "app1"), newProxyBackend(t, "app2")
	www := freeAddr(t, "127.0.0.1")
	state := t.TempDir()
	withState := func(o *Options) { o.StateDir = state }
	ctx := context.Background()
	req := ProxyServerRequest{Proxy: "www", Backend: "app", Server: "app1"}

	first := startAgent(t, testConfig{extra: proxyBlock("www", www, "", app1, app2)}, withState)
	if _, err := first.client().ProxyDisable(ctx, req); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(state, proxyStateFileName))
	if err != nil || !strings.Contains(string(b), `"www/app/app1"`) {
		t.Fatalf("state file: %q %v", b, err)
	}
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}

	second := startAgent(t, testConfig{extra: proxyBlock("www", www, "", app1, app2)}, withState)
	for range 4 {
		if _, body := get(t, "http://"+www+"/"); !strings.HasPrefix(body, "app2") {
			t.Fatalf("after a restart a disabled server got a request: %q", body)
		}
	}
	if st, _ := proxyDetail(t, second.Agent); !strings.Contains(st.State, "1 disabled") {
		t.Errorf("state after restart %q", st.State)
	}
	if _, err := second.client().ProxyEnable(ctx, req); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(state, proxyStateFileName)); strings.Contains(string(b), "app1") {
		t.Errorf("enable left the record: %s", b)
	}
	if err := second.stop(t); err != nil {
		t.Fatal(err)
	}

	// A state folder that cannot be made (its parent is a file): the
	// disable fails and the server keeps serving.
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	third := startAgent(t, testConfig{extra: proxyBlock("www", www, "", app1, app2)}, func(o *Options) { o.StateDir = filepath.Join(blocker, "state") })
	if _, err := third.client().ProxyDisable(ctx, req); err == nil {
		t.Fatal("a disable that cannot be recorded succeeded")
	}
	if st, _ := proxyDetail(t, third.Agent); strings.Contains(st.State, "disabled") {
		t.Errorf("a failed disable changed the state: %q", st.State)
	}
}

func TestDefaultStateDir(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	if got := defaultStateDir(getenv); got != DefaultStateDir {
		t.Errorf("no STATE_DIRECTORY: %q", got)
	}
	env["STATE_DIRECTORY"] = "/var/lib/fulcrum-a:/var/lib/other"
	if got := defaultStateDir(getenv); got != "/var/lib/fulcrum-a" {
		t.Errorf("STATE_DIRECTORY list: %q", got)
	}
}
