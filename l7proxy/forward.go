package l7proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// errNoServer is returned by the round tripper when no server of the backend is usable.
var errNoServer = errors.New("no server available")

// dialError marks a failure to connect to a server: nothing was sent, so the request may be
// retried elsewhere.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connect: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// reqState travels with a request through the ReverseProxy in its context.
type reqState struct {
	pr     *proxyRT
	b      *backend
	peer   netip.AddrPort // TCP peer, or the PROXY header's source
	local  netip.AddrPort // where the client connected to
	client netip.AddrPort // the client: peer, or from X-Forwarded-For of a trusted peer
	tls    bool

	peerStr string // peer.Addr().String()

	sticky    string // server named by a valid sticky cookie
	server    *server
	setCookie bool
	body      *guardedBody
	fwd       [4]string // backing of the X-Forwarded-* and X-Real-IP header values
}

// request is everything ServeHTTP allocates per request, in one allocation.
type request struct {
	rs   reqState
	sw   statusWriter
	body countingBody
	fast fastReq
}

type stateKey struct{}

// stateOf finds the request's state: on an HTTP/1 connection (one request at a time) it is
// held by the connection, else it is a value of the request's context.
func stateOf(ctx context.Context) *reqState {
	if rs, ok := ctx.Value(stateKey{}).(*reqState); ok {
		return rs
	}
	if cc, _ := ctx.Value(connKey{}).(*clientConn); cc != nil {
		return cc.cur.Load()
	}
	return nil
}

func newTransport(b *backend, t Timeouts) *http.Transport {
	d := &net.Dialer{Timeout: t.Connect, KeepAlive: 30 * time.Second}
	send := b.sendProxy
	return &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, &dialError{err}
			}
			if send != 0 {
				var src, dst netip.AddrPort
				if rs := stateOf(ctx); rs != nil {
					src, dst = rs.peer, rs.local
				}
				if t.Connect > 0 {
					c.SetWriteDeadline(time.Now().Add(t.Connect))
				}
				if _, err := c.Write(appendProxyHeader(nil, send, src, dst)); err != nil {
					c.Close()
					return nil, &dialError{err}
				}
				c.SetWriteDeadline(time.Time{})
			}
			return c, nil
		},
		// A PROXY header names one client: such connections carry one request each.
		DisableKeepAlives:     send != 0,
		DisableCompression:    true,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: t.Server,
		ExpectContinueTimeout: time.Second,
	}
}

// handler serves a socket: each request by the socket's listener in the active generation.
type handler struct{ sock *socket }

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l := h.sock.cur.Load().l
	pr := l.proxy
	pr.inflight.Add(1)
	defer pr.inflight.Add(-1)
	st := pr.state
	start := time.Now()
	st.activeReqs.Add(1)
	defer st.activeReqs.Add(-1)
	st.totalReqs.Add(1)
	st.rate.add(start)

	req := &request{}
	rs := &req.rs
	cc, _ := r.Context().Value(connKey{}).(*clientConn)
	// A TLS connection the connection loop handed over with bytes it had read is not a
	// *tls.Conn to net/http: the connection knows.
	rs.pr, rs.tls = pr, r.TLS != nil || cc != nil && cc.l.tls != nil
	if cc != nil {
		rs.peer, rs.local, rs.peerStr = cc.client, cc.localAP, cc.clientStr
		if r.ProtoMajor == 1 {
			// One request at a time on this connection: it holds the state, which saves
			// ReverseProxy a copy of the request (see forward).
			cc.cur.Store(rs)
			defer cc.cur.Store(nil)
		}
	} else {
		rs.peer, _ = netip.ParseAddrPort(r.RemoteAddr)
	}
	if rs.peerStr == "" {
		rs.peerStr = rs.peer.Addr().String()
	}
	rs.client = pr.clientAddr(rs.peer, r.Header)

	sw := &req.sw
	sw.ResponseWriter = w
	body := &req.body
	body.rc = r.Body
	r.Body = body
	upgrade := r.Header["Upgrade"] != nil
	if to := pr.opts.Timeouts.Client; to > 0 && !upgrade {
		// Client inactivity: every read of the body and every write of the response pushes
		// the deadline on; both are lifted when the handler returns (keep-alive idle time is
		// Timeouts.Idle's).
		rc := http.NewResponseController(w)
		body.rctl, body.timeout = rc, to
		sw.rctl, sw.timeout = rc, to
		defer func() {
			if body.failed.Load() {
				// Leave the expired deadline: net/http would otherwise wait to drain the
				// rest of a stalled body after the handler.
				rc.SetReadDeadline(time.Now())
			} else if body.extended {
				rc.SetReadDeadline(time.Time{})
			}
			if sw.extended {
				rc.SetWriteDeadline(time.Time{})
			}
		}()
	}

	switch {
	case l.opts.RedirectHTTPS != 0:
		st.redirects.Add(1)
		redirectHTTPS(sw, r, l.opts.RedirectHTTPS)
	case pr.isStatsPath(r.URL.Path):
		pr.serveStats(sw, r)
	default:
		pr.forward(sw, r, req, cc)
	}

	status := sw.status
	if status == 0 {
		status = http.StatusOK
		if upgrade && rs.server != nil {
			status = http.StatusSwitchingProtocols
		}
	}
	st.statuses.add(status)
	in, out := uint64(body.n.Load()), uint64(sw.n)
	st.bytesIn.Add(in)
	st.bytesOut.Add(out)
	if pr.access != nil {
		attrs := []slog.Attr{
			slog.String("proxy", pr.name), slog.String("listener", l.opts.Name),
			slog.String("client", rs.client.Addr().String()), slog.String("method", r.Method),
			slog.String("host", r.Host), slog.String("uri", r.RequestURI), slog.String("proto", r.Proto),
			slog.Int("status", status), slog.Uint64("bytes_in", in), slog.Uint64("bytes_out", out),
			slog.Duration("duration", time.Since(start)),
		}
		if rs.b != nil {
			attrs = append(attrs, slog.String("backend", rs.b.name))
		}
		if rs.server != nil {
			attrs = append(attrs, slog.String("server", rs.server.name))
		}
		pr.access.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
	}
}

func redirectHTTPS(w http.ResponseWriter, r *http.Request, code int) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
		if strings.Contains(h, ":") {
			host = "[" + h + "]"
		}
	}
	if host == "" || strings.ContainsAny(host, "/\\ @") {
		http.Error(w, "400 Bad Request: no valid Host", http.StatusBadRequest)
		return
	}
	w.Header().Set("Location", "https://"+host+r.URL.RequestURI())
	w.WriteHeader(code)
}

func (pr *proxyRT) forward(w http.ResponseWriter, r *http.Request, req *request, cc *clientConn) {
	rs := &req.rs
	st := pr.state
	if pr.limiter != nil {
		if ok, wait := pr.limiter.allow(rs.client.Addr(), time.Now()); !ok {
			st.rateLimited.Add(1)
			secs := int64((wait + time.Second - 1) / time.Second)
			w.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
			http.Error(w, "429 Too Many Requests", http.StatusTooManyRequests)
			return
		}
	}
	if limit := pr.opts.MaxBodySize; limit > 0 {
		if r.ContentLength > limit {
			http.Error(w, "413 Request Entity Too Large", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
	}
	rs.b = pr.route(r)
	if rs.b == nil {
		st.noSrv.Add(1)
		http.Error(w, "503 Service Unavailable", http.StatusServiceUnavailable)
		return
	}
	// The PROXY header dial of http.Transport may outlive the request: it gets the state
	// from the context.
	if cc != nil && r.ProtoMajor == 1 && cc.cur.Load() == rs && fastEligible(rs.b, r) {
		pr.fastForward(w, r, req)
		return
	}
	if cc == nil || r.ProtoMajor != 1 || cc.cur.Load() != rs || rs.b.sendProxy != 0 {
		r = r.WithContext(context.WithValue(r.Context(), stateKey{}, rs))
	}
	pr.rp.ServeHTTP(w, r)
}

// route picks the backend: the first matching route, else the default backend.
func (pr *proxyRT) route(r *http.Request) *backend {
	return pr.routeHostPath(r.Host, r.URL.Path)
}

// routeHostPath is route for a request's Host and (unescaped) path.
func (pr *proxyRT) routeHostPath(host, path string) *backend {
	host = strings.ToLower(host)
	if strings.IndexByte(host, ':') >= 0 {
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	}
	host = strings.TrimSuffix(host, ".")
	for _, rt := range pr.opts.Routes {
		if rt.Host != "" && !hostMatch(strings.ToLower(rt.Host), host) {
			continue
		}
		if rt.PathPrefix != "" && !strings.HasPrefix(path, rt.PathPrefix) {
			continue
		}
		return pr.byName[rt.Backend]
	}
	return pr.def
}

func hostMatch(pattern, host string) bool {
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		return len(host) > len(suffix) && strings.HasSuffix(host, suffix) && strings.HasPrefix(suffix, ".")
	}
	return pattern == host
}

func (pr *proxyRT) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range pr.opts.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddr is the client behind peer: with a trusted peer, the right-most address of
// X-Forwarded-For that is not itself a trusted proxy.
func (pr *proxyRT) clientAddr(peer netip.AddrPort, h http.Header) netip.AddrPort {
	if !pr.trusted(peer.Addr()) {
		return peer
	}
	return clientFromHops(pr, peer, hopsOf(h["X-Forwarded-For"]))
}

// clientFromHops is clientAddr with the X-Forwarded-For hops of a trusted peer.
func clientFromHops(pr *proxyRT, peer netip.AddrPort, hops []string) netip.AddrPort {
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(hops[i])
		if err != nil {
			break
		}
		client = netip.AddrPortFrom(a.Unmap(), 0)
		if !pr.trusted(a) {
			break
		}
	}
	return client
}

// hopsOf lists the addresses of X-Forwarded-For lines, in order, without blanks.
func hopsOf(lines []string) []string {
	var out []string
	for _, line := range lines {
		for part := range strings.SplitSeq(line, ",") {
			if p := strings.TrimSpace(part); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func (pr *proxyRT) reverseProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite:        pr.rewrite,
		Transport:      &roundTripper{pr: pr},
		ModifyResponse: pr.modifyResponse,
		ErrorHandler:   pr.errorHandler,
		ErrorLog:       slog.NewLogLogger(pr.log.Handler(), slog.LevelDebug),
		BufferPool:     copyBuffers,
	}
}

// copyBuffers pools the buffers ReverseProxy copies response bodies with (without a pool it
// allocates 32KiB per request).
var copyBuffers = &bufferPool{}

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == 32<<10 {
		buf = buf[:cap(buf)]
		b.p.Put(&buf)
	}
}

// rewrite prepares the outbound request. ReverseProxy has already removed hop-by-hop headers
// and the client's X-Forwarded-* headers from Out.
func (pr *proxyRT) rewrite(p *httputil.ProxyRequest) {
	rs := stateOf(p.In.Context())
	in, out := p.In, p.Out
	out.URL.Scheme = "http"
	out.URL.Host = "backend.invalid" // the round tripper sets the server
	out.Host = in.Host

	pr.forwardedValues(rs, in)
	fwd := &rs.fwd
	h := out.Header
	h["X-Forwarded-For"] = fwd[0:1:1]
	h["X-Forwarded-Proto"] = fwd[1:2:2]
	h["X-Forwarded-Host"] = fwd[2:3:3]
	h["X-Real-Ip"] = fwd[3:4:4]

	if name := rs.b.sticky.Cookie; name != "" {
		rs.sticky = stickyServer(in, name, pr.signer, pr.name+"/"+rs.b.name)
		stripCookie(out.Header, name)
	}
	for _, k := range pr.opts.RequestHeaders.Delete {
		out.Header.Del(k)
	}
	for k, v := range pr.opts.RequestHeaders.Set {
		out.Header.Set(k, v)
	}
	if out.Body != nil && out.Body != http.NoBody {
		rs.body = &guardedBody{rc: out.Body}
		out.Body = rs.body
	}
}

// forwardedValues sets rs.fwd for a request net/http parsed; see setForwarded.
func (pr *proxyRT) forwardedValues(rs *reqState, in *http.Request) {
	h := in.Header
	pr.setForwarded(rs, h["X-Forwarded-For"], h.Get("X-Forwarded-Proto"), in.Host, h.Get("X-Forwarded-Host"))
}

// setForwarded sets rs.fwd: the X-Forwarded-For, -Proto, -Host and X-Real-IP values of the
// outbound request, from what the client sent: its X-Forwarded-For lines, its first
// X-Forwarded-Proto and X-Forwarded-Host, and its Host. The client's values count only from a
// trusted proxy. The four values share one backing array (in the request's state), and the
// keys are canonical already: no allocation per header.
func (pr *proxyRT) setForwarded(rs *reqState, xffLines []string, xfp, host, xfh string) {
	trusted := len(pr.opts.TrustedProxies) > 0 && pr.trusted(rs.peer.Addr())
	peer := rs.peerStr
	fwd := &rs.fwd
	fwd[0] = peer
	if trusted {
		if prior := hopsOf(xffLines); len(prior) > 0 {
			fwd[0] = strings.Join(prior, ", ") + ", " + peer
		}
	}
	proto := "http"
	if rs.tls {
		proto = "https"
	}
	if trusted && (xfp == "http" || xfp == "https") {
		proto = xfp
	}
	fwd[1] = proto
	fwd[2] = host
	if trusted && xfh != "" {
		fwd[2] = xfh
	}
	if rs.client == rs.peer {
		fwd[3] = peer
	} else {
		fwd[3] = rs.client.Addr().String()
	}
}

func (pr *proxyRT) modifyResponse(resp *http.Response) error {
	rs := stateOf(resp.Request.Context())
	if rs != nil && rs.setCookie && rs.server != nil {
		v := pr.signer.encode(pr.name+"/"+rs.b.name, rs.server.name)
		setStickyCookie(resp.Header, rs.b.sticky.Cookie, v, rs.tls)
	}
	for _, k := range pr.opts.ResponseHeaders.Delete {
		resp.Header.Del(k)
	}
	for k, v := range pr.opts.ResponseHeaders.Set {
		resp.Header.Set(k, v)
	}
	return nil
}

func (pr *proxyRT) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	var mbe *http.MaxBytesError
	var ne net.Error
	code := http.StatusBadGateway
	switch {
	case errors.As(err, &mbe):
		code = http.StatusRequestEntityTooLarge
	case errors.Is(err, errNoServer):
		code = http.StatusServiceUnavailable
		pr.state.noSrv.Add(1)
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		code = http.StatusGatewayTimeout
	}
	if code != http.StatusRequestEntityTooLarge {
		pr.state.errors.Add(1)
	}
	pr.log.Debug("proxy error", "proxy", pr.name, "uri", r.RequestURI, "status", code, "error", err)
	http.Error(w, strconv.Itoa(code)+" "+http.StatusText(code), code)
}

// roundTripper picks the server for each attempt and retries connection failures elsewhere.
type roundTripper struct{ pr *proxyRT }

func (t *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	pr := t.pr
	rs := stateOf(req.Context())
	if rs == nil || rs.b == nil {
		return nil, errNoServer
	}
	b := rs.b
	now := time.Now()
	s := b.first(rs, now)
	var tried []*server
	for {
		if s == nil {
			return nil, errNoServer
		}
		rs.server = s
		rs.setCookie = b.sticky.Cookie != "" && rs.sticky != s.name
		req.URL.Host = s.target
		s.active.Add(1)
		s.total.Add(1)
		s.rate.add(now)
		var resp *http.Response
		var err error
		if b.fast != nil && eligible(req) {
			resp, err = b.fast.roundTrip(req, s.target)
		} else {
			resp, err = b.transport.RoundTrip(req)
		}
		if err == nil {
			s.statuses.add(resp.StatusCode)
			pr.report(b, s, resp.StatusCode < 500)
			if rwc, ok := resp.Body.(io.ReadWriteCloser); ok && resp.StatusCode == http.StatusSwitchingProtocols {
				// An upgraded connection: ReverseProxy needs the writable body.
				resp.Body = &activeConn{ReadWriteCloser: rwc, s: s}
			} else {
				resp.Body = &activeBody{ReadCloser: resp.Body, s: s}
			}
			return resp, nil
		}
		s.active.Add(-1)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) || req.Context().Err() != nil {
			return nil, err // the client's doing, not the server's
		}
		pr.report(b, s, false)
		var de *dialError
		if !errors.As(err, &de) || !rs.body.unread() || len(tried) >= pr.retries {
			return nil, err
		}
		tried = append(tried, s)
		now = time.Now()
		if s = b.pick(rs.client.Addr(), tried, now); s == nil {
			return nil, err
		}
		pr.state.retries.Add(1)
		pr.log.Debug("retrying on another server", "proxy", pr.name, "backend", b.name,
			"failed", tried[len(tried)-1].name, "server", s.name, "error", err)
	}
}

func (pr *proxyRT) report(b *backend, s *server, ok bool) {
	s.report(ok, b.maxFails, b.failTimeout, time.Now())
	if pr.passive != nil {
		pr.passive.ReportPassive(s.target, ok)
	}
}

// activeBody keeps a request counted as active on its server until the response body is
// closed.
type activeBody struct {
	io.ReadCloser
	s    *server
	done atomic.Bool
}

func (b *activeBody) Close() error {
	if b.done.CompareAndSwap(false, true) {
		b.s.active.Add(-1)
	}
	return b.ReadCloser.Close()
}

// activeConn is activeBody for an upgraded (WebSocket) connection.
type activeConn struct {
	io.ReadWriteCloser
	s    *server
	done atomic.Bool
}

func (c *activeConn) Close() error {
	if c.done.CompareAndSwap(false, true) {
		c.s.active.Add(-1)
	}
	return c.ReadWriteCloser.Close()
}

// guardedBody lets a request be retried after a connection failure: it records whether any
// byte was read, and while none was, the transport's Close (which it does on every error) does
// not close the client's body. Once reading started, Close passes through, so that net/http
// does not try to drain a half-read body (a stalled client) after the handler returns.
type guardedBody struct {
	rc   io.ReadCloser
	read atomic.Bool
}

func (g *guardedBody) Read(p []byte) (int, error) {
	g.read.Store(true)
	return g.rc.Read(p)
}

func (g *guardedBody) Close() error {
	if g.read.Load() {
		return g.rc.Close()
	}
	return nil
}

func (g *guardedBody) unread() bool { return g == nil || !g.read.Load() }

// countingBody counts request body bytes and drives the client inactivity deadline.
type countingBody struct {
	rc     io.ReadCloser
	n      atomic.Int64
	failed atomic.Bool // a read failed (timeout, reset): the connection is done for
	// With a client timeout: every read pushes the read deadline on, EOF lifts it.
	rctl     *http.ResponseController
	timeout  time.Duration
	extended bool
}

func (c *countingBody) Read(p []byte) (int, error) {
	if c.rctl != nil {
		c.extended = true
		c.rctl.SetReadDeadline(time.Now().Add(c.timeout))
	}
	n, err := c.rc.Read(p)
	c.n.Add(int64(n))
	switch {
	case err == io.EOF && c.rctl != nil:
		c.rctl.SetReadDeadline(time.Time{})
	case err != nil && err != io.EOF:
		c.failed.Store(true)
	}
	return n, err
}

func (c *countingBody) Close() error { return c.rc.Close() }

// statusWriter records the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status        int
	informational int
	n             int64
	// With a client timeout: every write pushes the write deadline on.
	rctl     *http.ResponseController
	timeout  time.Duration
	extended bool
}

func (w *statusWriter) WriteHeader(code int) {
	if code < 200 {
		w.informational = code
	} else if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.rctl != nil {
		w.extended = true
		w.rctl.SetWriteDeadline(time.Now().Add(w.timeout))
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

func (w *statusWriter) Flush() { http.NewResponseController(w.ResponseWriter).Flush() }

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
