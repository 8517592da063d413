// Package proxye2e tests the L7 proxy of the built fulcrum binary from the outside: `fulcrum
// agent` runs with proxy blocks on loopback ports, in front of HTTP servers the test starts,
// and the test is the client: TLS with SNI, the redirect to https, sticky sessions across an
// agent restart, per-client rate limits, the operator's disable/enable, and the statistics
// page as headless Chromium renders it.
//
// Everything listens on 127.0.0.0/8 in the host's namespace; no root is needed except for
// what Chromium's tests require (the chromium binary).
package proxye2e

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
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lab/fulcrumbin"
	"github.com/fulcrum-lb/fulcrum/lab/netns"
)

// binary is the fulcrum binary built once for the whole package.
var binary string

func TestMain(m *testing.M) {
	os.Exit(fulcrumbin.Main(m, &binary))
}

// hangGuard bounds every wait; generous, it only catches hangs.
const hangGuard = 30 * time.Second

// agent is one `fulcrum agent` process with its directory.
type agent struct {
	dir    string
	config string
	socket string
	proc   *netns.Proc
}

// newAgent writes a config of the proxy blocks in body (after node, control and log blocks)
// into a fresh directory. Paths stay short: the control socket lives there too.
func newAgent(t *testing.T, body string) *agent {
	t.Helper()
	dir, err := os.MkdirTemp("", "fpx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	a := &agent{dir: dir, config: filepath.Join(dir, "node.hcl"), socket: filepath.Join(dir, "f.sock")}
	a.write(t, body)
	return a
}

// write replaces the config with body.
func (a *agent) write(t *testing.T, body string) {
	t.Helper()
	cfg := fmt.Sprintf("node \"lb1\" {}\ncontrol {\n  socket = %q\n}\nlog {\n  target = \"stderr\"\n}\n%s", a.socket, body)
	if err := os.WriteFile(a.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// start runs the agent and waits until its control socket answers.
func (a *agent) start(t *testing.T) {
	t.Helper()
	a.proc = netns.StartCmd(t, "fulcrum-agent", exec.Command(binary, "agent", "-config", a.config, "-state-dir", filepath.Join(a.dir, "state")))
	fulcrumbin.WaitSocket(t, a.proc, a.socket, hangGuard)
}

// stop sends SIGTERM and expects a clean exit.
func (a *agent) stop(t *testing.T) {
	t.Helper()
	fulcrumbin.Stop(t, a.proc, hangGuard)
}

// cli runs a fulcrum client subcommand against this agent's socket.
func (a *agent) cli(t *testing.T, args ...string) (string, int) {
	t.Helper()
	return fulcrumbin.CLI(t, binary, a.socket, hangGuard, args...)
}

// proxyStatus is the part of `fulcrum status -json` these tests read.
type proxyStatus struct {
	Name        string `json:"name"`
	RateLimited uint64 `json:"rate_limited"`
	Redirects   uint64 `json:"redirects"`
	Backends    []struct {
		Name    string `json:"name"`
		Servers []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"servers"`
	} `json:"backends"`
}

// proxies returns the l7proxy status detail.
func (a *agent) proxies(t *testing.T) []proxyStatus {
	t.Helper()
	out, code := a.cli(t, "status", "-json")
	if code != 0 {
		t.Fatalf("fulcrum status -json exited %d: %s", code, out)
	}
	var st struct {
		Subsystems []struct {
			Name   string `json:"name"`
			Detail struct {
				Proxies []proxyStatus `json:"proxies"`
			} `json:"detail"`
		} `json:"subsystems"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status is not JSON: %v\n%s", err, out)
	}
	for _, s := range st.Subsystems {
		if s.Name == "l7proxy" {
			return s.Detail.Proxies
		}
	}
	t.Fatalf("no l7proxy subsystem:\n%s", out)
	return nil
}

// freePort returns 127.0.0.1:PORT with a port that was free a moment ago (the configuration
// refuses port 0).
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// backend is an HTTP server behind the proxy; it answers "NAME proto=X-Forwarded-Proto
// host=Host".
type backend struct {
	name string
	srv  *httptest.Server
	hits atomic.Int64
}

func newBackend(t *testing.T, name string) *backend {
	t.Helper()
	b := &backend{name: name}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		fmt.Fprintf(w, "%s proto=%s host=%s", name, r.Header.Get("X-Forwarded-Proto"), r.Host)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) addr() string { return b.srv.Listener.Addr().String() }

// serverBlocks renders server blocks for backends.
func serverBlocks(bs ...*backend) string {
	var s strings.Builder
	for _, b := range bs {
		fmt.Fprintf(&s, "    server %q { address = %q }\n", b.name, b.addr())
	}
	return s.String()
}

// writeCert writes a self-signed certificate for name and its key into dir and returns the
// paths.
func writeCert(t *testing.T, dir, name string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
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
	cert, keyFile := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, keyFile
}

// client is an HTTP client that connects to addr whatever the URL says (so URLs can carry
// real host names), does not follow redirects and uses a fresh connection per request unless
// keepAlive.
func client(addr string, tlsCfg *tls.Config, jar http.CookieJar) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		DisableKeepAlives: true,
		ForceAttemptHTTP2: true,
	}
	if tlsCfg != nil {
		tr.TLSClientConfig = tlsCfg
	}
	return &http.Client{
		Transport:     tr,
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// fetch GETs url with c and returns the response and its body.
func fetch(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	return resp, string(body)
}
