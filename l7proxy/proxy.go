package l7proxy

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy serves the proxies of one Options. All methods are safe for concurrent use.
type Proxy struct {
	mu      sync.Mutex // serializes Start, Apply, shutdown and certificate reloads
	gen     atomic.Pointer[generation]
	key     []byte // sticky HMAC key
	sockets map[netip.AddrPort]*socket
	started bool
	closed  bool
	done    chan struct{} // closed when shutdown begins
	wg      sync.WaitGroup
	watcher chan struct{} // closed when Start's context watcher has returned
}

// proxyState holds the counters of one proxy; it outlives generations (keyed by name).
type proxyState struct {
	activeConns, activeReqs                        atomic.Int64
	totalConns, totalReqs                          atomic.Uint64
	bytesIn, bytesOut                              atomic.Uint64
	errors, rateLimited, retries, redirects, noSrv atomic.Uint64
	statuses                                       classCounters
	rate                                           rateCounter
}

// generation is one applied Options: everything requests are routed by.
type generation struct {
	opts      Options
	proxies   []*proxyRT
	byName    map[string]*proxyRT
	listeners []*listenerRT
	servers   map[string]*server     // by serverKey
	states    map[string]*proxyState // by proxy name
	weights   map[*server]int32      // applied at commit
	log       *slog.Logger
}

type proxyRT struct {
	name     string
	opts     ProxyOptions
	owner    *Proxy
	state    *proxyState
	limiter  *rateLimiter
	connSem  chan struct{}
	backends []*backend
	byName   map[string]*backend
	def      *backend
	rp       *httputil.ReverseProxy
	signer   cookieSigner
	log      *slog.Logger
	access   *slog.Logger
	passive  PassiveReporter
	retries  int
	inflight atomic.Int64 // requests being served by this generation
}

type listenerRT struct {
	opts  ListenerOptions
	proxy *proxyRT
	tls   *listenerTLS
}

// New validates opts and loads the certificates; it binds nothing (see Start).
func New(opts Options) (*Proxy, error) {
	p := &Proxy{sockets: map[netip.AddrPort]*socket{}, done: make(chan struct{})}
	p.key = opts.StickyKey
	if len(p.key) == 0 {
		p.key = make([]byte, 32)
		rand.Read(p.key)
	}
	g, err := p.build(opts, nil)
	if err != nil {
		return nil, err
	}
	g.commitWeights()
	p.gen.Store(g)
	return p, nil
}

// build validates opts and prepares a generation, reusing the runtime state of old (which
// may be nil). It changes nothing visible: weights are applied by commitWeights.
func (p *Proxy) build(opts Options, old *generation) (*generation, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("l7proxy: invalid options: %w", err)
	}
	opts = cloneOptions(opts)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	key := p.key
	if len(opts.StickyKey) > 0 {
		key = opts.StickyKey
	}
	g := &generation{opts: opts, byName: map[string]*proxyRT{}, servers: map[string]*server{},
		states: map[string]*proxyState{}, weights: map[*server]int32{}, log: log}
	var errs []error
	for _, po := range opts.Proxies {
		pr := &proxyRT{name: po.Name, opts: po, owner: p, byName: map[string]*backend{},
			signer: cookieSigner{key: key}, log: log, access: opts.AccessLog, passive: opts.Passive}
		var oldPR *proxyRT
		if old != nil {
			oldPR = old.byName[po.Name]
			pr.state = old.states[po.Name]
		}
		if pr.state == nil {
			pr.state = &proxyState{}
		}
		g.states[po.Name] = pr.state
		switch {
		case oldPR != nil && oldPR.opts.MaxConnections == po.MaxConnections:
			pr.connSem = oldPR.connSem
		case po.MaxConnections > 0:
			pr.connSem = make(chan struct{}, po.MaxConnections)
		}
		if rl := po.RateLimit; rl != nil {
			if oldPR != nil && oldPR.opts.RateLimit != nil && *oldPR.opts.RateLimit == *rl {
				pr.limiter = oldPR.limiter
			} else {
				pr.limiter = newRateLimiter(*rl)
			}
		}
		pr.retries = po.Retries
		if pr.retries == 0 {
			pr.retries = defaultRetries
		}
		for _, bo := range po.Backends {
			b := &backend{name: bo.Name, proxy: po.Name, balance: bo.Balance, byName: map[string]*server{},
				maxFails: bo.MaxFails, failTimeout: bo.FailTimeout, sticky: bo.Sticky, sendProxy: bo.SendProxyProtocol}
			if b.balance == "" {
				b.balance = RoundRobin
			}
			if b.failTimeout == 0 {
				b.failTimeout = defaultFailTimeout
			}
			for _, so := range bo.Servers {
				k := serverKey(po.Name, bo.Name, so.Name)
				var s *server
				if old != nil {
					if os := old.servers[k]; os != nil && os.addr == so.Address {
						s = os
					}
				}
				if s == nil {
					s = newServer(po.Name, bo.Name, so)
				}
				g.servers[k] = s
				g.weights[s] = int32(so.Weight)
				b.servers = append(b.servers, s)
				b.byName[so.Name] = s
			}
			b.cw = make([]int, len(b.servers))
			b.transport = newTransport(b, po.Timeouts)
			if b.sendProxy == 0 {
				b.fast = newH1Client(po.Timeouts)
			}
			pr.backends = append(pr.backends, b)
			pr.byName[b.name] = b
		}
		if po.DefaultBackend != "" {
			pr.def = pr.byName[po.DefaultBackend]
		} else if len(pr.backends) == 1 {
			pr.def = pr.backends[0]
		}
		pr.rp = pr.reverseProxy()
		g.proxies = append(g.proxies, pr)
		g.byName[pr.name] = pr
		for _, lo := range po.Listeners {
			l := &listenerRT{opts: lo, proxy: pr}
			if lo.TLS != nil {
				t, err := newListenerTLS(*lo.TLS)
				if err != nil {
					errs = append(errs, fmt.Errorf("proxy %q listener %q: %w", po.Name, lo.Name, err))
					continue
				}
				l.tls = t
			}
			g.listeners = append(g.listeners, l)
		}
	}
	if err := errors.Join(errs...); err != nil {
		g.closeTransports()
		return nil, fmt.Errorf("l7proxy: %w", err)
	}
	return g, nil
}

func (g *generation) commitWeights() {
	for s, w := range g.weights {
		s.weight.Store(w)
	}
}

func (g *generation) closeTransports() {
	for _, pr := range g.proxies {
		for _, b := range pr.backends {
			b.transport.CloseIdleConnections()
			if b.fast != nil {
				b.fast.closeIdle(true)
			}
		}
	}
}

// cloneOptions copies the slices and maps of o, so a caller changing its Options later does
// not reach into the running generation.
func cloneOptions(o Options) Options {
	o.StickyKey = slices.Clone(o.StickyKey)
	o.Proxies = slices.Clone(o.Proxies)
	for i := range o.Proxies {
		p := &o.Proxies[i]
		p.Listeners = slices.Clone(p.Listeners)
		for j := range p.Listeners {
			if t := p.Listeners[j].TLS; t != nil {
				c := *t
				c.Certificates = slices.Clone(t.Certificates)
				p.Listeners[j].TLS = &c
			}
		}
		p.Backends = slices.Clone(p.Backends)
		for j := range p.Backends {
			p.Backends[j].Servers = slices.Clone(p.Backends[j].Servers)
		}
		p.Routes = slices.Clone(p.Routes)
		if p.RateLimit != nil {
			c := *p.RateLimit
			p.RateLimit = &c
		}
		if p.Stats != nil {
			c := *p.Stats
			p.Stats = &c
		}
		p.RequestHeaders = cloneEdits(p.RequestHeaders)
		p.ResponseHeaders = cloneEdits(p.ResponseHeaders)
		p.TrustedProxies = slices.Clone(p.TrustedProxies)
	}
	return o
}

func cloneEdits(e HeaderEdits) HeaderEdits {
	return HeaderEdits{Set: maps.Clone(e.Set), Delete: slices.Clone(e.Delete)}
}

// Start binds every listener and serves until ctx ends or Close is called; it returns once
// the listeners are bound. A listener that cannot bind fails Start and nothing is left bound.
// When ctx ends, the proxy shuts down gracefully within Options.DrainTimeout.
func (p *Proxy) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return errors.New("l7proxy: closed")
	case p.started:
		return errors.New("l7proxy: already started")
	}
	g := p.gen.Load()
	bound, err := p.bind(ctx, g)
	if err != nil {
		return err
	}
	maps.Copy(p.sockets, bound)
	p.started = true
	p.serve(g)
	p.watcher = make(chan struct{})
	go func() { // owned: Close waits for it through p.watcher
		defer close(p.watcher)
		select {
		case <-ctx.Done():
			p.shutdown(0)
		case <-p.done:
		}
	}()
	if iv := g.opts.CertCheckInterval; iv > 0 {
		p.wg.Go(func() { p.pollCertificates(iv) })
	}
	return nil
}

// Run is Start followed by waiting for ctx to end, then a graceful shutdown.
func (p *Proxy) Run(ctx context.Context) error {
	if err := p.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return p.Close()
}

// bind opens the sockets g needs that are not open yet. On error it closes what it opened.
func (p *Proxy) bind(ctx context.Context, g *generation) (map[netip.AddrPort]*socket, error) {
	bound := map[netip.AddrPort]*socket{}
	for _, l := range g.listeners {
		a := l.opts.Address
		if p.sockets[a] != nil {
			continue
		}
		ln, err := listenFreebind(ctx, a)
		if err != nil {
			for _, s := range bound {
				s.close()
			}
			return nil, fmt.Errorf("l7proxy: proxy %q listener %q: %w", l.proxy.name, l.opts.Name, err)
		}
		bound[a] = newSocket(a, ln, g.log)
	}
	return bound, nil
}

// serve makes g's listeners current on their sockets. A socket keeps its http.Server across
// generations (its connections are never shut down by a reload); only a socket without one, or
// whose server settings change, gets a new server, and the old one is returned for draining.
// p.mu is held.
func (p *Proxy) serve(g *generation) (replaced []*socketServer) {
	for _, l := range g.listeners {
		sock := p.sockets[l.opts.Address]
		sock.setCurrent(l)
		k := l.serverSettings()
		if sock.srv != nil && sock.key == k {
			continue
		}
		if sock.srv != nil {
			replaced = append(replaced, &socketServer{srv: sock.srv, front: sock.front})
		}
		front := &frontListener{sock: sock, done: make(chan struct{})}
		srv := newHTTPServer(sock, k, l.proxy.log)
		sock.srv, sock.front, sock.key = srv, front, k
		p.wg.Go(func() {
			if err := srv.Serve(front); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				g.log.Error("listener stopped", "proxy", l.proxy.name, "listener", l.opts.Name, "error", err)
			}
		})
	}
	return replaced
}

// serverSettings are the settings net/http reads from http.Server; a change replaces the
// socket's server.
type serverSettings struct {
	readHeaderTimeout, idleTimeout time.Duration
	maxHeaderBytes                 int
	h2c                            bool
}

func (l *listenerRT) serverSettings() serverSettings {
	po := l.proxy.opts
	maxHdr := po.MaxHeaderSize
	if maxHdr == 0 {
		maxHdr = defaultMaxHeaderSize
	}
	return serverSettings{readHeaderTimeout: po.Timeouts.Header, idleTimeout: po.Timeouts.Idle,
		maxHeaderBytes: maxHdr, h2c: l.opts.H2C}
}

func newHTTPServer(sock *socket, k serverSettings, log *slog.Logger) *http.Server {
	var protos http.Protocols
	protos.SetHTTP1(true)
	// HTTP/2 over TLS is negotiated by ALPN, so it only applies to TLS connections; whether a
	// connection is TLS is decided per connection by the current listener (frontListener).
	protos.SetHTTP2(true)
	protos.SetUnencryptedHTTP2(k.h2c)
	return &http.Server{
		Handler:           &handler{sock: sock},
		ReadHeaderTimeout: k.readHeaderTimeout,
		IdleTimeout:       k.idleTimeout,
		MaxHeaderBytes:    k.maxHeaderBytes,
		Protocols:         &protos,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, connOf(c))
		},
	}
}

type connKey struct{}

// socketServer is a socket's http.Server with its frontListener.
type socketServer struct {
	srv   *http.Server
	front *frontListener
	loop  *connLoop // the socket's connection loop when the socket closes; else nil
}

// retire stops servers from accepting and drains them in the background, bounded by the drain
// timeout; then, once their requests have finished (within the same bound), the transports of
// the retired generations are closed. p.mu is held.
func (p *Proxy) retire(servers []*socketServer, gens []*generation, timeout time.Duration) {
	for _, s := range servers {
		s.front.Close()
	}
	p.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var wg sync.WaitGroup
		for _, s := range servers {
			wg.Go(func() {
				if err := s.srv.Shutdown(ctx); err != nil {
					s.srv.Close()
				}
			})
			if s.loop != nil {
				wg.Go(func() { s.loop.shutdown(ctx) })
			}
		}
		wg.Wait()
		for _, g := range gens {
			g.awaitRequests(ctx)
			g.closeTransports()
		}
	})
}

// awaitRequests waits until no request is served by g or ctx ends.
func (g *generation) awaitRequests(ctx context.Context) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		var n int64
		for _, pr := range g.proxies {
			n += pr.inflight.Load()
		}
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func drainTimeout(o Options) time.Duration {
	if o.DrainTimeout > 0 {
		return o.DrainTimeout
	}
	return defaultDrainTimeout
}

// Apply replaces the configuration. Everything is validated and prepared first (certificates
// loaded, new addresses bound); on any error nothing changes. Then routing swaps atomically:
// new connections see the new configuration at once; sockets of unchanged addresses stay
// bound (no connection is refused across a reload), requests in flight finish on the old
// configuration within DrainTimeout, and sockets of removed addresses close. Server state
// (health, passive failures, counters) carries over for servers whose proxy, backend, name and
// address are unchanged.
func (p *Proxy) Apply(opts Options) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("l7proxy: closed")
	}
	old := p.gen.Load()
	g, err := p.build(opts, old)
	if err != nil {
		return err
	}
	if !p.started {
		g.commitWeights()
		p.gen.Store(g)
		old.closeTransports()
		return nil
	}
	bound, err := p.bind(context.Background(), g)
	if err != nil {
		g.closeTransports()
		return err
	}
	maps.Copy(p.sockets, bound)
	g.commitWeights()
	p.gen.Store(g)
	retired := p.serve(g)
	keep := map[netip.AddrPort]bool{}
	for _, l := range g.listeners {
		keep[l.opts.Address] = true
	}
	for a, s := range p.sockets {
		if !keep[a] {
			if s.srv != nil {
				retired = append(retired, &socketServer{srv: s.srv, front: s.front, loop: s.loop})
			}
			s.close()
			delete(p.sockets, a)
		}
	}
	p.retire(retired, []*generation{old}, drainTimeout(old.opts))
	if old.opts.CertCheckInterval <= 0 && g.opts.CertCheckInterval > 0 {
		p.wg.Go(func() { p.pollCertificates(g.opts.CertCheckInterval) })
	}
	return nil
}

// Close shuts down gracefully: listeners stop, idle connections close, requests in flight get
// up to DrainTimeout to finish, then everything is closed. It waits for every goroutine of the
// Proxy. Calling it again is harmless.
func (p *Proxy) Close() error {
	p.shutdown(0)
	return p.wait()
}

func (p *Proxy) wait() error {
	p.mu.Lock()
	w := p.watcher
	p.mu.Unlock()
	if w != nil {
		<-w
	}
	p.wg.Wait()
	return nil
}

// Shutdown is Close with a deadline of ctx instead of DrainTimeout for requests in flight.
func (p *Proxy) Shutdown(ctx context.Context) error {
	var d time.Duration
	if dl, ok := ctx.Deadline(); ok {
		d = max(time.Until(dl), time.Millisecond)
	}
	p.shutdown(d)
	return p.wait()
}

// shutdown begins a graceful shutdown with drain timeout d (0: the configured one).
func (p *Proxy) shutdown(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	close(p.done)
	g := p.gen.Load()
	if d <= 0 {
		d = drainTimeout(g.opts)
	}
	var servers []*socketServer
	for a, s := range p.sockets {
		if s.srv != nil {
			servers = append(servers, &socketServer{srv: s.srv, front: s.front, loop: s.loop})
		}
		s.close()
		delete(p.sockets, a)
	}
	if p.started {
		p.retire(servers, []*generation{g}, d)
	} else {
		g.closeTransports()
	}
}

// SetServerHealth takes a server in (healthy) or out of its backend's rotation; the agent calls
// it with the health package's results. Requests in flight are not interrupted. The state
// survives Apply while the server's address is unchanged.
func (p *Proxy) SetServerHealth(proxy, backend, server string, healthy bool) error {
	s := p.gen.Load().servers[serverKey(proxy, backend, server)]
	if s == nil {
		return fmt.Errorf("l7proxy: unknown server %q in backend %q of proxy %q", server, backend, proxy)
	}
	s.healthy.Store(healthy)
	return nil
}

// ReloadCertificates loads the certificate, key and OCSP files of every TLS listener again.
// New handshakes use the new certificates; established connections are untouched. A listener
// whose files fail to load keeps its certificates, and the error names it.
func (p *Proxy) ReloadCertificates() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reloadCertificates(false)
}

func (p *Proxy) reloadCertificates(onlyChanged bool) error {
	g := p.gen.Load()
	var errs []error
	for _, l := range g.listeners {
		if l.tls == nil || (onlyChanged && !l.tls.cur.Load().changed()) {
			continue
		}
		if err := l.tls.reload(); err != nil {
			errs = append(errs, fmt.Errorf("proxy %q listener %q: %w", l.proxy.name, l.opts.Name, err))
			g.log.Error("certificate reload failed", "proxy", l.proxy.name, "listener", l.opts.Name, "error", err)
			continue
		}
		g.log.Info("certificates reloaded", "proxy", l.proxy.name, "listener", l.opts.Name)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("l7proxy: %w", err)
	}
	return nil
}

func (p *Proxy) pollCertificates(iv time.Duration) {
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
			p.mu.Lock()
			stop := p.gen.Load().opts.CertCheckInterval <= 0
			if !stop {
				p.reloadCertificates(true)
			}
			p.mu.Unlock()
			if stop {
				return
			}
		}
	}
}

// Addr returns the bound address of a listener (useful with port 0 in tests), or nil.
func (p *Proxy) Addr(proxy, listener string) net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.gen.Load().listeners {
		if l.proxy.name == proxy && l.opts.Name == listener {
			if s := p.sockets[l.opts.Address]; s != nil {
				return s.ln.Addr()
			}
		}
	}
	return nil
}
