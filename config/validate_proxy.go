package config

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Proxy defaults (nginx's for passive checks, Go's net/http for the header
// size limit).
const (
	defaultBalance          = BalanceRoundRobin
	defaultServerWeight     = 1
	maxServerWeight         = 256 // HAProxy's limit
	defaultMaxFails         = 1
	defaultFailTimeout      = 10 * time.Second
	defaultConnectTimeout   = 5 * time.Second
	defaultClientTimeout    = 30 * time.Second
	defaultServerTimeout    = 30 * time.Second
	defaultIdleTimeout      = 60 * time.Second
	defaultHeaderTimeout    = 10 * time.Second
	defaultMaxHeaderSize    = 1 << 20
	defaultStatsPath        = "/stats"
	defaultRateLimitPer     = time.Second
	defaultRedirectCode     = 308
	defaultTLSMinVersion    = tls.VersionTLS12
	maxProxyTimeout         = 24 * time.Hour
	maxProxyMaxConnections  = 1 << 24
	defaultProxyRetries     = 2
	maxProxyRetries         = 16
	defaultRateLimitClients = 100000
	maxRateLimitClients     = 10000000
	maxConnectionsPerClient = 1 << 20
	minStickyKeyLen         = 16
)

func defaultTimeouts() Timeouts {
	return Timeouts{
		Connect: defaultConnectTimeout,
		Client:  defaultClientTimeout,
		Server:  defaultServerTimeout,
		Idle:    defaultIdleTimeout,
		Header:  defaultHeaderTimeout,
	}
}

func (d *decoder) decodeProxy(h header, b *proxyBlock) Proxy {
	p := Proxy{
		Name:          h.Name,
		Source:        h.DefRange,
		Timeouts:      defaultTimeouts(),
		MaxHeaderSize: defaultMaxHeaderSize,
	}
	where := fmt.Sprintf("proxy %q", h.Name)

	if len(b.Listeners) == 0 {
		d.errorf(h.DefRange, "Missing listener", "%s needs at least one listener \"NAME\" { address = \"IP:PORT\" } block.", where)
	}
	listeners := d.newUnique("listener")
	for i := range b.Listeners {
		if l, ok := d.decodeListener(&b.Listeners[i], listeners); ok {
			p.Listeners = append(p.Listeners, l)
		}
	}

	if len(b.Backends) == 0 {
		d.errorf(h.DefRange, "Missing backend", "%s needs at least one backend \"NAME\" { server \"NAME\" { ... } } block.", where)
	}
	backends := d.newUnique("backend")
	declared := make([]string, 0, len(b.Backends))
	for i := range b.Backends {
		declared = append(declared, b.Backends[i].Name)
		if be, ok := d.decodeBackend(&b.Backends[i], backends); ok {
			p.Backends = append(p.Backends, be)
		}
	}
	resolve := func(a *hcl.Attribute) (string, bool) {
		name, st := d.str(a)
		if st != valid {
			return "", false
		}
		for _, n := range declared {
			if n == name {
				return name, true
			}
		}
		d.unknownRef(a.Expr.Range(), "backend", name, where, declared)
		return "", false
	}
	switch {
	case b.DefaultBackend != nil:
		p.DefaultBackend, _ = resolve(b.DefaultBackend)
	case len(declared) == 1:
		p.DefaultBackend = declared[0]
	case len(declared) > 1:
		d.errorf(h.DefRange, "Missing default_backend", "%s has %d backends; set default_backend to the one that serves requests no route matches.", where, len(declared))
	}
	for i := range b.Routes {
		r := &b.Routes[i]
		route := Route{Source: r.DefRange}
		if r.Host == nil && r.PathPrefix == nil {
			d.errorf(r.DefRange, "Route matches everything", "A route needs host, path_prefix or both; requests that match no route go to default_backend.")
		}
		if s, st := d.str(r.Host); st == valid {
			if err := checkRouteHost(s); err != nil {
				d.errorf(r.Host.Expr.Range(), "Invalid host", "%s.", err)
			} else {
				route.Host = strings.ToLower(s)
			}
		}
		if s, st := d.str(r.PathPrefix); st == valid {
			if err := checkURLPath(s); err != nil {
				d.errorf(r.PathPrefix.Expr.Range(), "Invalid path_prefix", "%s.", err)
			} else {
				route.PathPrefix = s
			}
		}
		if d.require(r.Backend, "backend", "route", r.DefRange) {
			route.Backend, _ = resolve(r.Backend)
		}
		p.Routes = append(p.Routes, route)
	}

	if rl := b.RateLimit; rl != nil {
		p.RateLimit = d.decodeRateLimit(rl)
	}
	mc, _ := d.intOr(b.MaxConnections, 0, maxProxyMaxConnections, 0, "")
	p.MaxConnections = int(mc)
	p.MaxBodySize = d.sizeOr(b.MaxBodySize, 0)
	p.MaxHeaderSize = d.sizeOr(b.MaxHeaderSize, defaultMaxHeaderSize)
	if b.MaxHeaderSize != nil && p.MaxHeaderSize < 1024 {
		d.errorf(b.MaxHeaderSize.Expr.Range(), "max_header_size out of range", "max_header_size must be at least 1KiB; the request line and Host header alone need that much.")
	}
	if t := b.Timeouts; t != nil {
		p.Timeouts.Connect, _ = d.durationOr(t.Connect, 0, maxProxyTimeout, defaultConnectTimeout)
		p.Timeouts.Client, _ = d.durationOr(t.Client, 0, maxProxyTimeout, defaultClientTimeout)
		p.Timeouts.Server, _ = d.durationOr(t.Server, 0, maxProxyTimeout, defaultServerTimeout)
		p.Timeouts.Idle, _ = d.durationOr(t.Idle, 0, maxProxyTimeout, defaultIdleTimeout)
		p.Timeouts.Header, _ = d.durationOr(t.Header, 0, maxProxyTimeout, defaultHeaderTimeout)
	}
	if s := b.Stats; s != nil {
		p.Stats = d.decodeStats(s)
	}
	if hb := b.Headers; hb != nil {
		p.Headers = d.decodeHeaders(hb)
	}
	if hb := b.ResponseHeaders; hb != nil {
		p.ResponseHeaders = d.decodeHeaders(hb)
	}
	p.TrustedProxies = d.trustedProxies(b.TrustedProxies)
	retries, _ := d.intOr(b.Retries, 0, maxProxyRetries, defaultProxyRetries, "")
	p.Retries = int(retries)
	p.AccessLog = d.boolean(b.AccessLog, false)
	if k, st := d.nonEmptyStr(b.StickyKey); st == valid {
		if len(k) < minStickyKeyLen {
			// The detail gives the length only, never the value.
			d.errorf(b.StickyKey.Expr.Range(), "sticky_key too short", "sticky_key must be at least %d bytes (it is an HMAC-SHA256 key), not %d; generate one with `head -c 32 /dev/urandom | base64`.", minStickyKeyLen, len(k))
		} else {
			p.StickyKey = NewSecret(k)
		}
	}
	return p
}

// decodeRateLimit decodes a rate_limit block: a request rate, a limit of
// concurrent connections per client, or both.
func (d *decoder) decodeRateLimit(rl *rateLimitBlock) *RateLimit {
	r := &RateLimit{Per: defaultRateLimitPer, MaxClients: defaultRateLimitClients}
	n, _ := d.intOr(rl.Requests, 1, math.MaxInt32, 0, "")
	r.Requests = int(n)
	r.Per, _ = d.durationOr(rl.Per, time.Millisecond, 24*time.Hour, defaultRateLimitPer)
	mc, _ := d.intOr(rl.MaxConnectionsPerClient, 0, maxConnectionsPerClient, 0, "")
	r.MaxConnectionsPerClient = int(mc)
	clients, _ := d.intOr(rl.MaxClients, 1, maxRateLimitClients, defaultRateLimitClients, "")
	r.MaxClients = int(clients)
	if rl.Requests == nil && rl.MaxConnectionsPerClient == nil {
		d.errorf(rl.DefRange, "Missing required argument", "A rate_limit block needs requests (a request rate), max_connections_per_client, or both.")
	}
	return r
}

// trustedProxies decodes trusted_proxies: addresses ("192.0.2.5", meaning
// /32 or /128) and networks ("10.0.0.0/8") without host bits.
func (d *decoder) trustedProxies(a *hcl.Attribute) []netip.Prefix {
	ss, rngs, st := d.strList(a)
	if st != valid {
		return nil
	}
	var out []netip.Prefix
	for i, s := range ss {
		pf, err := parseVIP(s)
		switch {
		case err != nil:
			d.errorf(rngs[i], "Invalid prefix", "Invalid element of trusted_proxies: %s.", err)
		case pf.Masked() != pf:
			d.errorf(rngs[i], "Invalid prefix", "%s has host bits set; write the network, %s, or the single address.", s, pf.Masked())
		default:
			out = append(out, pf)
		}
	}
	return out
}

// checkRouteHost accepts a host name or a wildcard "*.example.com".
func checkRouteHost(s string) error {
	h := strings.TrimPrefix(s, "*.")
	if h == "" || len(s) > 253 || strings.ContainsAny(h, "*/:@ \t") {
		return fmt.Errorf("%q is not a host name or a wildcard such as \"*.example.com\"", s)
	}
	return nil
}

func (d *decoder) decodeListener(b *listenerBlock, names *uniqueIn) (Listener, bool) {
	ok := names.add(b.Name, b.NameRange)
	l := Listener{Name: b.Name, Source: b.DefRange, ProxyProtocol: d.boolean(b.ProxyProtocol, false), H2C: d.boolean(b.H2C, false)}
	if d.require(b.Address, "address", "listener", b.DefRange) {
		ap, st := d.addrPort(b.Address, false)
		switch {
		case st != valid:
			ok = false
		case ap.Port() == 0:
			d.errorf(b.Address.Expr.Range(), "Invalid port", "A listener needs a port between 1 and 65535.")
			ok = false
		default:
			l.Address = ap
		}
	} else {
		ok = false
	}
	if b.RedirectHTTPS != nil {
		code, rok := d.redirectCode(b.RedirectHTTPS)
		l.RedirectHTTPS, ok = code, ok && rok
	}
	if b.TLS != nil {
		l.TLS = d.decodeTLS(b.TLS)
		if l.TLS == nil {
			ok = false
		} else if l.RedirectHTTPS != 0 {
			d.errorf(b.RedirectHTTPS.NameRange, "Conflicting arguments", "redirect_https on a TLS listener would redirect https to itself; use it on the plain HTTP listener.")
			ok = false
		} else if l.H2C {
			d.errorf(b.H2C.NameRange, "Conflicting arguments", "h2c is HTTP/2 over plain TCP (prior knowledge); a TLS listener offers HTTP/2 through ALPN already.")
			ok = false
		}
	}
	return l, ok
}

// redirectCode decodes redirect_https: false (off), true (308), or one of
// the redirect status codes 301, 302, 307, 308 as a number or string.
func (d *decoder) redirectCode(a *hcl.Attribute) (int, bool) {
	v, st := d.eval(a, cty.DynamicPseudoType)
	if st != valid {
		return 0, st == absent
	}
	if v.Type() == cty.Bool {
		if v.True() {
			return defaultRedirectCode, true
		}
		return 0, true
	}
	s, sst := d.str(a)
	if sst != valid {
		return 0, false
	}
	switch code, _ := strconv.Atoi(s); code {
	case 301, 302, 307, 308:
		return code, true
	}
	d.errorf(a.Expr.Range(), "Invalid redirect_https", "redirect_https is false, true (308) or a redirect status code: 301, 302, 307 or 308; not %q.", s)
	return 0, false
}

func (d *decoder) decodeTLS(b *tlsBlock) *ListenerTLS {
	t := &ListenerTLS{MinVersion: defaultTLSMinVersion}
	ok := true
	if s, st := d.str(b.MinVersion); st == valid {
		switch s {
		case "1.2":
			t.MinVersion = tls.VersionTLS12
		case "1.3":
			t.MinVersion = tls.VersionTLS13
		case "1.0", "1.1":
			d.errorf(b.MinVersion.Expr.Range(), "Invalid min_version", "TLS %s is deprecated (RFC 8996) and not offered; use \"1.2\" or \"1.3\".", s)
			ok = false
		default:
			d.errorf(b.MinVersion.Expr.Range(), "Invalid min_version", "%q is not a TLS version; use \"1.2\" or \"1.3\".", s)
			ok = false
		}
	}
	if len(b.Certificates) == 0 {
		d.errorf(b.DefRange, "Missing certificate", "A tls block needs at least one certificate \"NAME\" { cert_file = \"...\"  key_file = \"...\" } block.")
		return nil
	}
	names := d.newUnique("certificate")
	for i := range b.Certificates {
		c := &b.Certificates[i]
		cok := names.add(c.Name, c.NameRange)
		cert := Certificate{Name: c.Name, Source: c.DefRange}
		hasCert := d.require(c.CertFile, "cert_file", "certificate", c.DefRange)
		hasKey := d.require(c.KeyFile, "key_file", "certificate", c.DefRange)
		if !hasCert || !hasKey {
			ok = false
			continue
		}
		certPath, cst := d.nonEmptyStr(c.CertFile)
		keyPath, kst := d.nonEmptyStr(c.KeyFile)
		if cst != valid || kst != valid {
			ok = false
			continue
		}
		cert.CertFile, cert.KeyFile = resolvePath(d.baseDir, certPath), resolvePath(d.baseDir, keyPath)
		cok = d.loadKeyPair(cert.CertFile, cert.KeyFile, c.CertFile.Expr.Range(), c.KeyFile.Expr.Range()) && cok
		if s, st := d.nonEmptyStr(c.OCSPFile); st == valid {
			cert.OCSPFile = resolvePath(d.baseDir, s)
			if data, err := d.sys.readFile(cert.OCSPFile, maxAuxFileSize); err != nil {
				d.errorf(c.OCSPFile.Expr.Range(), "Cannot read OCSP response file", "%s.", err)
				cok = false
			} else if len(data) == 0 {
				d.errorf(c.OCSPFile.Expr.Range(), "Empty OCSP response file", "%s is empty; it must hold a DER-encoded OCSP response.", cert.OCSPFile)
				cok = false
			}
		}
		if cok {
			t.Certificates = append(t.Certificates, cert)
		}
		ok = ok && cok
	}
	if !ok {
		return nil
	}
	return t
}

// loadKeyPair reads a certificate and key and loads them as a pair, as
// tls.LoadX509KeyPair does, but reading each file itself so that the
// diagnostic points at the attribute naming the faulty file.
func (d *decoder) loadKeyPair(certPath, keyPath string, certRng, keyRng hcl.Range) bool {
	certPEM, certErr := d.sys.readFile(certPath, maxAuxFileSize)
	if certErr != nil {
		d.errorf(certRng, "Cannot read certificate file", "%s.", certErr)
	}
	keyPEM, keyErr := d.sys.readFile(keyPath, maxAuxFileSize)
	if keyErr != nil {
		d.errorf(keyRng, "Cannot read key file", "%s.", keyErr)
	}
	if certErr != nil || keyErr != nil {
		return false
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err == nil {
		leaf := pair.Leaf
		if leaf == nil && len(pair.Certificate) > 0 {
			leaf, _ = x509.ParseCertificate(pair.Certificate[0])
		}
		if leaf != nil && time.Now().After(leaf.NotAfter) {
			d.warnf(certRng, "Certificate has expired", "The certificate in %s expired on %s.", certPath, leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		return true
	}

	// Say which file is at fault.
	leaf, lerr := firstCertificate(certPEM)
	if lerr != nil {
		d.errorf(certRng, "Invalid certificate file", "%s does not hold a PEM certificate: %s.", certPath, lerr)
		return false
	}
	key, kerr := firstPrivateKey(keyPEM)
	if kerr != nil {
		d.errorf(keyRng, "Invalid key file", "%s does not hold a PEM private key: %s.", keyPath, kerr)
		return false
	}
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); ok && !pub.Equal(key.Public()) {
		d.errorf(keyRng, "Certificate and key do not match",
			"The private key in %s is not the key of the certificate in %s (%s).", keyPath, certPath, fmt.Errorf("loading key pair: %w", err))
		return false
	}
	d.errorf(certRng, "Cannot load certificate and key", "%s and %s do not load as a key pair: %s.", certPath, keyPath, fmt.Errorf("loading key pair: %w", err))
	return false
}

func firstCertificate(data []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, fmt.Errorf("no CERTIFICATE block found")
		}
		if block.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parsing certificate: %w", err)
			}
			return c, nil
		}
	}
}

func firstPrivateKey(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, fmt.Errorf("no PRIVATE KEY block found")
		}
		if !strings.HasSuffix(block.Type, "PRIVATE KEY") {
			continue
		}
		if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
			if s, ok := k.(crypto.Signer); ok {
				return s, nil
			}
			return nil, fmt.Errorf("unsupported private key type %T", k)
		}
		if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
			return k, nil
		}
		k, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing private key: %w", err)
		}
		return k, nil
	}
}

func (d *decoder) decodeBackend(b *backendBlock, names *uniqueIn) (Backend, bool) {
	ok := names.add(b.Name, b.NameRange)
	be := Backend{Name: b.Name, Source: b.DefRange, Balance: defaultBalance}
	where := fmt.Sprintf("backend %q", b.Name)
	if v, st := d.enum(b.Balance, "balance method", []string{string(BalanceRoundRobin), string(BalanceLeastConn), string(BalanceSource)}); st == valid {
		be.Balance = BalanceMethod(v)
	}
	if len(b.Servers) == 0 {
		d.errorf(b.DefRange, "Missing server", "%s needs at least one server \"NAME\" { address = \"IP:PORT\" } block.", where)
		ok = false
	}
	servers := d.newUnique("server")
	addrs := map[netip.AddrPort]hcl.Range{}
	families := map[AddressFamily]bool{}
	for i := range b.Servers {
		s := &b.Servers[i]
		sok := servers.add(s.Name, s.NameRange)
		srv := BackendServer{Name: s.Name, Source: s.DefRange}
		w, wok := d.intOr(s.Weight, 0, maxServerWeight, defaultServerWeight, "")
		srv.Weight = int(w)
		sok = sok && wok
		if d.require(s.Address, "address", "server", s.DefRange) {
			ap, st := d.addrPort(s.Address, false)
			switch {
			case st != valid:
				sok = false
			case ap.Port() == 0:
				d.errorf(s.Address.Expr.Range(), "Invalid port", "A server needs a port between 1 and 65535.")
				sok = false
			default:
				if first, dup := addrs[ap]; dup {
					d.errorf(s.Address.Expr.Range(), "Duplicate server", "%s is already a server of %s, at %s.", ap, where, pos(first))
					sok = false
				}
				addrs[ap] = s.Address.Expr.Range()
				families[FamilyOf(ap.Addr())] = true
				srv.Address = ap
			}
		} else {
			sok = false
		}
		if sok {
			be.Servers = append(be.Servers, srv)
		}
		ok = ok && sok
	}
	var family AddressFamily
	if len(families) == 1 {
		for f := range families {
			family = f
		}
	}
	be.HealthChecks = d.decodeHealthChecks(b.HealthChecks, "a proxy backend", true, family)
	if st := b.Sticky; st != nil {
		be.Sticky = d.decodeSticky(st)
	}
	mf, _ := d.intOr(b.MaxFails, 0, 1000, defaultMaxFails, "")
	be.MaxFails = int(mf)
	be.FailTimeout, _ = d.durationOr(b.FailTimeout, 0, 24*time.Hour, defaultFailTimeout)
	sp, _ := d.intOr(b.SendProxyProtocol, 0, 2, 0, "")
	be.SendProxyProtocol = int(sp)
	if be.MaxFails > 0 && be.FailTimeout == 0 {
		d.errorf(b.FailTimeout.Expr.Range(), "fail_timeout out of range", "fail_timeout must be more than 0 while max_fails is %d: it is both the window failures are counted in and how long the server is then skipped.", be.MaxFails)
	}
	return be, ok
}

func (d *decoder) decodeSticky(b *stickyBlock) *Sticky {
	s := &Sticky{IPHash: d.boolean(b.IPHash, false)}
	if c, st := d.str(b.Cookie); st == valid {
		if !isToken(c) {
			d.errorf(b.Cookie.Expr.Range(), "Invalid cookie name", "%q is not a cookie name (RFC 6265 §4.1.1: an HTTP token).", c)
		} else {
			s.Cookie = c
		}
	}
	switch {
	case b.Cookie != nil && s.IPHash:
		d.errorf(b.IPHash.NameRange, "Conflicting arguments", "sticky uses either a cookie or the client address (ip_hash), not both.")
	case b.Cookie == nil && !s.IPHash:
		d.errorf(b.DefRange, "Missing cookie or ip_hash", "sticky needs cookie = \"NAME\" or ip_hash = true.")
	}
	return s
}

func (d *decoder) decodeStats(b *statsBlock) *Stats {
	s := &Stats{Path: defaultStatsPath}
	if p, st := d.str(b.Path); st == valid {
		if err := checkURLPath(p); err != nil {
			d.errorf(b.Path.Expr.Range(), "Invalid path", "%s.", err)
		} else {
			s.Path = p
		}
	}
	if u, st := d.nonEmptyStr(b.Username); st == valid {
		if strings.Contains(u, ":") {
			d.errorf(b.Username.Expr.Range(), "Invalid username", "A basic authentication user name cannot contain ':' (RFC 7617 §2).")
		} else {
			s.Username = u
		}
	}
	if pw, st := d.nonEmptyStr(b.Password); st == valid {
		s.Password = NewSecret(pw)
	}
	switch {
	case b.Username != nil && b.Password == nil:
		d.errorf(b.DefRange, "Missing required argument", "stats has a username but no password; set both or neither.")
	case b.Username == nil && b.Password != nil:
		d.errorf(b.DefRange, "Missing required argument", "stats has a password but no username; set both or neither.")
	}
	s.Refresh, _ = d.durationOr(b.Refresh, 0, time.Hour, 0)
	return s
}

func (d *decoder) decodeHeaders(b *headersBlock) Headers {
	var h Headers
	set, keyRngs, st := d.strMap(b.Set)
	if st == valid {
		h.Set = map[string]string{}
		for k, v := range set {
			switch {
			case !isToken(k):
				d.errorf(keyRngs[k], "Invalid header name", "%q is not a header field name (RFC 9110 §5.1).", k)
			case strings.ContainsAny(v, "\r\n\x00"):
				d.errorf(keyRngs[k], "Invalid header value", "The value of %s contains a line break or NUL (RFC 9110 §5.5).", k)
			default:
				h.Set[k] = v
			}
		}
	}
	del, rngs, st := d.strList(b.Delete)
	if st == valid {
		for i, k := range del {
			if !isToken(k) {
				d.errorf(rngs[i], "Invalid header name", "%q is not a header field name (RFC 9110 §5.1).", k)
				continue
			}
			for s := range set {
				if strings.EqualFold(s, k) {
					d.errorf(rngs[i], "Header both set and deleted", "%s is in both set and delete; keep one.", k)
				}
			}
			h.Delete = append(h.Delete, k)
		}
	}
	return h
}

// validateProxies checks what spans proxies: no two listeners bind the
// same address, and sticky_key, which is one key per node, has one value.
func (d *decoder) validateProxies(ps []Proxy, raws []*proxyBlock) {
	var key Secret
	var keyAt hcl.Range
	for i, p := range ps {
		if !p.StickyKey.IsSet() {
			continue
		}
		if !key.IsSet() {
			key, keyAt = p.StickyKey, raws[i].StickyKey.Expr.Range()
			continue
		}
		if p.StickyKey.Reveal() != key.Reveal() {
			d.errorf(raws[i].StickyKey.Expr.Range(), "Conflicting sticky_key",
				"One key signs the sticky cookies of every proxy of the node; this sticky_key differs from the one at %s. Set the same value in each proxy, or in one only.", pos(keyAt))
		}
	}
	type bound struct {
		proxy string
		l     Listener
	}
	var seen []bound
	for _, p := range ps {
		for _, l := range p.Listeners {
			if !l.Address.IsValid() {
				continue
			}
			for _, o := range seen {
				if listenersConflict(o.l.Address, l.Address) {
					d.errorf(l.Source, "Listener address conflict",
						"%s conflicts with listener %q of proxy %q (%s, at %s): both cannot be bound.",
						l.Address, o.l.Name, o.proxy, o.l.Address, pos(o.l.Source))
					break
				}
			}
			seen = append(seen, bound{proxy: p.Name, l: l})
		}
	}
}

// listenersConflict reports whether binding both addresses would fail: same
// port, and the same address or a wildcard of the same family.
func listenersConflict(a, b netip.AddrPort) bool {
	if a.Port() != b.Port() {
		return false
	}
	if a.Addr() == b.Addr() {
		return true
	}
	sameFamily := a.Addr().Is4() == b.Addr().Is4()
	return sameFamily && (a.Addr().IsUnspecified() || b.Addr().IsUnspecified())
}
