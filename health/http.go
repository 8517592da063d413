package health

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"
)

// DefaultMaxBody bounds how much of an HTTP body is read and matched.
const DefaultMaxBody = 64 << 10

// HTTP checks an HTTP or HTTPS server (keepalived HTTP_GET/SSL_GET, HAProxy option httpchk with
// http-check expect status/rstring). Every check opens a new connection and closes it: a health
// check must see what a new client sees, and a kept-alive connection would hide a server that
// no longer accepts. Redirects are not followed; a 3xx is judged by Status like any status.
type HTTP struct {
	// Addr is the real server checked.
	Addr netip.AddrPort
	Dial DialOptions
	// TLS selects https.
	TLS bool
	// Method defaults to GET.
	Method string
	// Path (with an optional query) defaults to "/".
	Path string
	// Host is the Host header; "" means the address checked.
	Host string
	// Header holds extra request headers.
	Header map[string]string
	// Status lists the acceptable statuses; empty means 200-299.
	Status []StatusRange
	// Expect, if set, is a regular expression (RE2) the first MaxBody bytes of the body must
	// match (HAProxy http-check expect rstring).
	Expect string
	// MaxBody bounds the body read for Expect; 0 means DefaultMaxBody.
	MaxBody int64

	// ServerName is the TLS SNI and the name the certificate is verified against; "" means the
	// host part of Host if that is a name, else the address checked (verified against the
	// certificate's IP SANs, no SNI sent).
	ServerName string
	// SkipVerify turns certificate verification off (keepalived's SSL_GET never verifies). By
	// default the certificate is verified against CAFile or the system roots.
	SkipVerify bool
	// CAFile is a PEM bundle of the roots to verify against; "" means the system roots.
	CAFile string
	// CertFile and KeyFile, both or neither, are a client certificate and key (PEM).
	CertFile, KeyFile string
}

// StatusRange is an inclusive range of HTTP statuses.
type StatusRange struct{ Min, Max int }

// Kind returns "http".
func (HTTP) Kind() string { return "http" }

// Build validates the probe, compiles the pattern and loads the certificates.
func (h HTTP) Build() (Checker, error) {
	target, err := h.Dial.target(h.Addr)
	if err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	c := &httpChecker{target: target, method: h.Method, host: h.Host, header: make(http.Header), status: h.Status, maxBody: h.MaxBody}
	if c.method == "" {
		c.method = http.MethodGet
	}
	if strings.ContainsAny(c.method, " \t\r\n") {
		return nil, fmt.Errorf("http: bad method %q", c.method)
	}
	path := h.Path
	if path == "" {
		path = "/"
	}
	scheme := "http"
	if h.TLS {
		scheme = "https"
	}
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("http: path %q does not start with /", path)
	}
	if c.url, err = url.Parse(scheme + "://" + target.String() + path); err != nil {
		return nil, fmt.Errorf("http: path %q: %w", path, err)
	}
	for k, v := range h.Header {
		c.header.Set(k, v)
	}
	if c.header.Get("User-Agent") == "" {
		c.header.Set("User-Agent", "fulcrum-health/1")
	}
	if len(c.status) == 0 {
		c.status = []StatusRange{{200, 299}}
	}
	for _, r := range c.status {
		if r.Min < 100 || r.Max > 599 || r.Min > r.Max {
			return nil, fmt.Errorf("http: bad status range %d-%d", r.Min, r.Max)
		}
	}
	if c.maxBody < 0 {
		return nil, errors.New("http: negative MaxBody")
	}
	if c.maxBody == 0 {
		c.maxBody = DefaultMaxBody
	}
	if c.expect, err = compile("http: expect", h.Expect); err != nil {
		return nil, err
	}

	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return h.Dial.dial(ctx, "tcp", target)
		},
		DisableKeepAlives:      true,
		DisableCompression:     true, // the body is matched as the server sends it, unencoded
		MaxResponseHeaderBytes: 64 << 10,
	}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP1(true)
	if h.TLS {
		cfg, err := h.tlsConfig(target)
		if err != nil {
			return nil, err
		}
		tr.DialTLSContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			conn, err := h.Dial.dial(ctx, "tcp", target)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(conn, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				conn.Close()
				if ctx.Err() != nil {
					return nil, fmt.Errorf("tls handshake: %w", err)
				}
				return nil, &tlsError{err}
			}
			return tc, nil
		}
	}
	c.client = &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

func (h HTTP) tlsConfig(target netip.AddrPort) (*tls.Config, error) {
	cfg := &tls.Config{
		ServerName:         h.ServerName,
		InsecureSkipVerify: h.SkipVerify,
		MinVersion:         tls.VersionTLS12,
	}
	if cfg.ServerName == "" {
		host := h.Host
		if hh, _, err := net.SplitHostPort(host); err == nil {
			host = hh
		}
		if host != "" {
			cfg.ServerName = strings.Trim(host, "[]")
		} else {
			cfg.ServerName = target.Addr().WithZone("").String()
		}
	}
	if h.CAFile != "" {
		pem, err := os.ReadFile(h.CAFile)
		if err != nil {
			return nil, fmt.Errorf("http: CA file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("http: CA file %s: no PEM certificates", h.CAFile)
		}
	}
	if (h.CertFile == "") != (h.KeyFile == "") {
		return nil, errors.New("http: set both CertFile and KeyFile, or neither")
	}
	if h.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(h.CertFile, h.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("http: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

type httpChecker struct {
	target  netip.AddrPort
	url     *url.URL
	method  string
	host    string
	header  http.Header
	status  []StatusRange
	expect  *regexp.Regexp
	maxBody int64
	client  *http.Client
}

func (c *httpChecker) Check(ctx context.Context) Result {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, c.method, c.url.String(), nil)
	if err != nil {
		return Result{Outcome: OutcomeError, Reason: ReasonLocal, Detail: err.Error(), Err: err}
	}
	req.Header = c.header.Clone()
	if c.host != "" {
		req.Host = c.host
	}
	req.Close = true
	resp, err := c.client.Do(req)
	if err != nil {
		return failure(ctx, start, err)
	}
	defer resp.Body.Close()
	if !c.statusOK(resp.StatusCode) {
		return unhealthy(start, ReasonBadStatus, fmt.Sprintf("status %d, want %s", resp.StatusCode, c.statusText()))
	}
	if c.expect == nil {
		return healthy(start, fmt.Sprintf("status %d", resp.StatusCode))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody))
	if err != nil {
		return failure(ctx, start, fmt.Errorf("read body: %w", err))
	}
	if !c.expect.Match(body) {
		return unhealthy(start, ReasonBodyMismatch, fmt.Sprintf("status %d; body (%d bytes read) does not match %q", resp.StatusCode, len(body), c.expect))
	}
	return healthy(start, fmt.Sprintf("status %d; body matched %q", resp.StatusCode, c.expect))
}

func (c *httpChecker) statusOK(code int) bool {
	for _, r := range c.status {
		if code >= r.Min && code <= r.Max {
			return true
		}
	}
	return false
}

func (c *httpChecker) statusText() string {
	parts := make([]string, len(c.status))
	for i, r := range c.status {
		if r.Min == r.Max {
			parts[i] = fmt.Sprint(r.Min)
		} else {
			parts[i] = fmt.Sprintf("%d-%d", r.Min, r.Max)
		}
	}
	return strings.Join(parts, ",")
}
