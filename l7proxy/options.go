package l7proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// Options configures a Proxy: every proxy it serves and the process-wide settings. The agent
// translates the configuration's `proxy` blocks into it (docs/config.md); defaults of the
// configuration are expected to be filled in already, so zero values here mean "off" or "no
// limit" unless a field says otherwise.
type Options struct {
	// Proxies are served side by side; names and listener addresses are unique.
	Proxies []ProxyOptions

	// Logger receives errors and notable events (certificate reloads, refused PROXY headers).
	// nil discards them.
	Logger *slog.Logger
	// AccessLog, when set, receives one record per request. nil (the default) is off.
	AccessLog *slog.Logger
	// Passive receives the outcome of every request to a server (connection errors and 5xx are
	// failures). The agent wires it to health's Scheduler.ReportPassive. nil reports nothing; the
	// proxy's own max_fails/fail_timeout accounting works either way.
	Passive PassiveReporter

	// StickyKey is the HMAC key that signs sticky cookies. Empty means a random key per New,
	// so cookies do not survive an agent restart. Apply keeps the running key when it is empty.
	StickyKey []byte
	// DrainTimeout bounds a graceful shutdown, and the draining of listeners retired or
	// replaced by Apply. 0 means 30s.
	DrainTimeout time.Duration
	// CertCheckInterval, when positive, makes Run/Start poll the certificate, key and OCSP
	// files and reload those that changed. ReloadCertificates reloads on demand either way.
	CertCheckInterval time.Duration
}

// PassiveReporter receives passive health outcomes: target is the server's address as
// netip.AddrPort.String() ("192.0.2.11:8080"), ok is false for a connection error, a timeout or
// a 5xx response. health.Scheduler implements it.
type PassiveReporter interface {
	ReportPassive(target string, ok bool)
}

// ProxyOptions is one `proxy` block: listeners, backends and what happens in between.
type ProxyOptions struct {
	Name      string
	Listeners []ListenerOptions
	Backends  []BackendOptions
	// DefaultBackend serves requests no route matches; empty means the only backend.
	DefaultBackend string
	Routes         []RouteOptions

	// MaxConnections limits concurrent client connections over all listeners; 0 is no limit.
	// Excess connections wait in the kernel's accept queue (HAProxy maxconn).
	MaxConnections int
	// MaxBodySize is the largest request body in bytes (413 beyond); 0 is no limit.
	MaxBodySize int64
	// MaxHeaderSize is the largest request line plus headers in bytes (431 beyond); 0 means 1MiB.
	MaxHeaderSize int

	RateLimit *RateLimitOptions
	Timeouts  Timeouts
	Stats     *StatsOptions

	// RequestHeaders edits requests before they go to a server (config `headers`); it is
	// applied after the X-Forwarded-* headers, so it can override them.
	RequestHeaders HeaderEdits
	// ResponseHeaders edits responses before they go to the client.
	ResponseHeaders HeaderEdits

	// TrustedProxies lists the peers whose X-Forwarded-For and X-Forwarded-Proto are kept and
	// extended; from anyone else they are replaced. The client address is then the right-most
	// untrusted address of X-Forwarded-For.
	TrustedProxies []netip.Prefix
	// Retries is how many other servers a request is retried on after a connection failure
	// (idempotent requests, or requests without a body). 0 means 2; negative means none.
	Retries int
}

// ListenerOptions is one `listener` block.
type ListenerOptions struct {
	Name string
	// Address to bind. Port 0 binds a free port (Proxy.Addr tells which), and such a listener
	// keeps its socket across Apply like any unchanged address.
	Address netip.AddrPort
	// RedirectHTTPS answers every request with a redirect to https with this status: 0 is off,
	// otherwise 301, 302, 307 or 308. Not with TLS.
	RedirectHTTPS int
	// ProxyProtocol expects a PROXY protocol v1 or v2 header on every connection.
	ProxyProtocol bool
	// TLS terminates TLS; nil is plain HTTP.
	TLS *TLSOptions
	// H2C accepts HTTP/2 with prior knowledge on a plain listener.
	H2C bool
}

// TLSOptions is a listener's `tls` block.
type TLSOptions struct {
	// MinVersion is tls.VersionTLS12 (also for 0) or tls.VersionTLS13.
	MinVersion uint16
	// Certificates are chosen by SNI; the first is the default.
	Certificates []CertificateOptions
}

// CertificateOptions names a certificate chain and key in PEM files, and an optional DER OCSP
// response to staple.
type CertificateOptions struct {
	Name     string
	CertFile string
	KeyFile  string
	OCSPFile string
}

// Balance is a backend's balancing algorithm.
type Balance string

// Balancing algorithms.
const (
	RoundRobin Balance = "roundrobin" // smooth weighted round robin (nginx)
	LeastConn  Balance = "leastconn"  // fewest active requests per unit of weight
	Source     Balance = "source"     // consistent hash of the full client address
)

// BackendOptions is one `backend` block.
type BackendOptions struct {
	Name    string
	Balance Balance // "" means RoundRobin
	Servers []ServerOptions
	// MaxFails failures within FailTimeout take a server out for FailTimeout (nginx); 0 turns
	// passive checking off.
	MaxFails    int
	FailTimeout time.Duration // 0 means 10s
	Sticky      StickyOptions
	// SendProxyProtocol sends a PROXY protocol header of this version (1 or 2) on every
	// connection to a server; 0 is off.
	SendProxyProtocol int
}

// ServerOptions is one `server` block.
type ServerOptions struct {
	Name    string
	Address netip.AddrPort
	// Weight is 0–256 (the configuration defaults to 1); 0 sends no new requests.
	Weight int
}

// StickyOptions keeps a client on one server: by an inserted cookie, or by a hash of its
// address. At most one is set.
type StickyOptions struct {
	Cookie string
	IPHash bool
}

// RouteOptions sends matching requests to Backend. Host is exact (case-insensitive) or
// "*.example.com" (one or more labels before example.com); PathPrefix starts with "/".
type RouteOptions struct {
	Host       string
	PathPrefix string
	Backend    string
}

// RateLimitOptions limits requests per client address with a sliding window.
type RateLimitOptions struct {
	Requests int           // allowed per Per, at least 1
	Per      time.Duration // the window; 0 means 1s
	// MaxClients bounds the number of client addresses tracked; 0 means 100000.
	MaxClients int
	// MaxConnsPerClient limits concurrent connections per client address; 0 is no limit.
	MaxConnsPerClient int
}

// Timeouts of a proxy; 0 means no timeout (the configuration's defaults are applied by the
// agent; DefaultTimeouts returns them).
type Timeouts struct {
	Connect time.Duration // connecting to a server
	Client  time.Duration // client inactivity while a request is in progress
	Server  time.Duration // waiting for a server's response headers
	Idle    time.Duration // idle keep-alive client connections
	Header  time.Duration // receiving a request's headers (slowloris)
}

// DefaultTimeouts returns the configuration's defaults.
func DefaultTimeouts() Timeouts {
	return Timeouts{Connect: 5 * time.Second, Client: 30 * time.Second, Server: 30 * time.Second,
		Idle: 60 * time.Second, Header: 10 * time.Second}
}

// StatsOptions serves the statistics page on the proxy's listeners.
type StatsOptions struct {
	Path     string // "" means "/stats"
	Username string // basic auth, with Password; both empty is no authentication
	Password string
	Refresh  time.Duration // meta refresh interval; 0 is none
}

// HeaderEdits sets and deletes headers.
type HeaderEdits struct {
	Set    map[string]string
	Delete []string
}

const (
	defaultMaxHeaderSize = 1 << 20
	defaultFailTimeout   = 10 * time.Second
	defaultDrainTimeout  = 30 * time.Second
	defaultMaxClients    = 100000
	defaultRetries       = 2
	maxWeight            = 256
)

// validate checks everything that can be checked without touching the system, and returns
// every problem found.
func (o *Options) validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if o.DrainTimeout < 0 {
		add("drain timeout %v is negative", o.DrainTimeout)
	}
	proxies := map[string]bool{}
	addrs := map[netip.AddrPort]string{}
	for i := range o.Proxies {
		p := &o.Proxies[i]
		where := fmt.Sprintf("proxy %q", p.Name)
		if !validName(p.Name) {
			add("%s: invalid name", where)
		}
		if proxies[p.Name] {
			add("%s: duplicate proxy", where)
		}
		proxies[p.Name] = true
		if len(p.Listeners) == 0 {
			add("%s: no listener", where)
		}
		if len(p.Backends) == 0 {
			add("%s: no backend", where)
		}
		lnames := map[string]bool{}
		for _, l := range p.Listeners {
			lw := fmt.Sprintf("%s listener %q", where, l.Name)
			if !validName(l.Name) || lnames[l.Name] {
				add("%s: invalid or duplicate name", lw)
			}
			lnames[l.Name] = true
			if !l.Address.IsValid() || l.Address.Addr().Zone() != "" {
				add("%s: invalid address %v", lw, l.Address)
			} else if owner, dup := addrs[l.Address]; dup {
				add("%s: address %v is also bound by %s", lw, l.Address, owner)
			} else if l.Address.Port() != 0 {
				for other, owner := range addrs {
					if other.Port() == l.Address.Port() && addrConflict(other.Addr(), l.Address.Addr()) {
						add("%s: address %v conflicts with %v of %s", lw, l.Address, other, owner)
					}
				}
			}
			if l.Address.IsValid() {
				addrs[l.Address] = lw
			}
			switch l.RedirectHTTPS {
			case 0, http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
			default:
				add("%s: redirect status %d is not 301, 302, 307 or 308", lw, l.RedirectHTTPS)
			}
			if l.TLS != nil {
				if l.RedirectHTTPS != 0 {
					add("%s: redirect_https on a TLS listener", lw)
				}
				if l.H2C {
					add("%s: h2c on a TLS listener", lw)
				}
				switch l.TLS.MinVersion {
				case 0, tls.VersionTLS12, tls.VersionTLS13:
				default:
					add("%s: TLS minimum version %#x is not 1.2 or 1.3", lw, l.TLS.MinVersion)
				}
				if len(l.TLS.Certificates) == 0 {
					add("%s: TLS without certificates", lw)
				}
				for _, c := range l.TLS.Certificates {
					if c.CertFile == "" || c.KeyFile == "" {
						add("%s certificate %q: cert_file and key_file are required", lw, c.Name)
					}
				}
			}
		}
		backends := map[string]bool{}
		for _, b := range p.Backends {
			bw := fmt.Sprintf("%s backend %q", where, b.Name)
			if !validName(b.Name) || backends[b.Name] {
				add("%s: invalid or duplicate name", bw)
			}
			backends[b.Name] = true
			switch b.Balance {
			case "", RoundRobin, LeastConn, Source:
			default:
				add("%s: unknown balance %q", bw, b.Balance)
			}
			if b.MaxFails < 0 || b.FailTimeout < 0 {
				add("%s: negative max_fails or fail_timeout", bw)
			}
			if b.Sticky.Cookie != "" && b.Sticky.IPHash {
				add("%s: sticky cookie and ip_hash are exclusive", bw)
			}
			if b.Sticky.Cookie != "" && !validToken(b.Sticky.Cookie) {
				add("%s: sticky cookie name %q is not an HTTP token", bw, b.Sticky.Cookie)
			}
			switch b.SendProxyProtocol {
			case 0, 1, 2:
			default:
				add("%s: PROXY protocol version %d is not 1 or 2", bw, b.SendProxyProtocol)
			}
			if len(b.Servers) == 0 {
				add("%s: no server", bw)
			}
			snames := map[string]bool{}
			saddrs := map[netip.AddrPort]bool{}
			for _, s := range b.Servers {
				sw := fmt.Sprintf("%s server %q", bw, s.Name)
				if !validName(s.Name) || snames[s.Name] {
					add("%s: invalid or duplicate name", sw)
				}
				snames[s.Name] = true
				if !s.Address.IsValid() || s.Address.Port() == 0 || saddrs[s.Address] {
					add("%s: invalid or duplicate address %v", sw, s.Address)
				}
				saddrs[s.Address] = true
				if s.Weight < 0 || s.Weight > maxWeight {
					add("%s: weight %d outside 0-256", sw, s.Weight)
				}
			}
		}
		switch {
		case p.DefaultBackend == "" && len(p.Backends) > 1:
			add("%s: default_backend is required with more than one backend", where)
		case p.DefaultBackend != "" && !backends[p.DefaultBackend]:
			add("%s: default_backend %q is not a backend", where, p.DefaultBackend)
		}
		for i, r := range p.Routes {
			rw := fmt.Sprintf("%s route %d", where, i+1)
			if r.Host == "" && r.PathPrefix == "" {
				add("%s: needs host, path_prefix or both", rw)
			}
			if r.PathPrefix != "" && !strings.HasPrefix(r.PathPrefix, "/") {
				add("%s: path_prefix must start with /", rw)
			}
			if !backends[r.Backend] {
				add("%s: backend %q is not a backend", rw, r.Backend)
			}
		}
		if p.MaxConnections < 0 || p.MaxBodySize < 0 || p.MaxHeaderSize < 0 {
			add("%s: negative limit", where)
		}
		if p.MaxConnections > 1<<24 {
			add("%s: max_connections above 16777216", where)
		}
		if rl := p.RateLimit; rl != nil {
			if rl.Requests < 1 || rl.Per < 0 || rl.MaxClients < 0 || rl.MaxConnsPerClient < 0 {
				add("%s: rate_limit needs requests >= 1 and no negative values", where)
			}
		}
		t := p.Timeouts
		if t.Connect < 0 || t.Client < 0 || t.Server < 0 || t.Idle < 0 || t.Header < 0 {
			add("%s: negative timeout", where)
		}
		if s := p.Stats; s != nil {
			if s.Path != "" && (!strings.HasPrefix(s.Path, "/") || strings.ContainsAny(s.Path, " ?#")) {
				add("%s: stats path %q must start with / and hold no space, ? or #", where, s.Path)
			}
			if (s.Username == "") != (s.Password == "") || strings.Contains(s.Username, ":") {
				add("%s: stats username and password go together; no : in the username", where)
			}
			if s.Refresh < 0 {
				add("%s: negative stats refresh", where)
			}
		}
		for _, e := range []HeaderEdits{p.RequestHeaders, p.ResponseHeaders} {
			for k, v := range e.Set {
				if !validToken(k) || strings.ContainsAny(v, "\r\n\x00") {
					add("%s: invalid header %q", where, k)
				}
			}
			for _, k := range e.Delete {
				if !validToken(k) {
					add("%s: invalid header name %q", where, k)
				}
				if _, ok := e.Set[http.CanonicalHeaderKey(k)]; ok {
					add("%s: header %q both set and deleted", where, k)
				}
			}
		}
		for _, pf := range p.TrustedProxies {
			if !pf.IsValid() {
				add("%s: invalid trusted proxy prefix", where)
			}
		}
	}
	return errors.Join(errs...)
}

func addrConflict(a, b netip.Addr) bool {
	if a == b {
		return true
	}
	if a.Is4() != b.Is4() {
		return false
	}
	return a.IsUnspecified() || b.IsUnspecified()
}

func validName(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i, c := range []byte(s) {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '-' && c != '.') {
			return false
		}
	}
	return true
}

// validToken reports whether s is an RFC 9110 token.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}
