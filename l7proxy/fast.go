package l7proxy

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"strings"
	"time"
)

// The fast path: a simple HTTP/1 request (no body, no Upgrade, Expect or trailers) to a backend
// without PROXY header is sent by the handler itself, without httputil.ReverseProxy: the
// outbound head is written from the inbound request straight into the pooled server
// connection (no Request.Clone, no Header.Clone, no client trace context), and the response is
// copied to the client as ReverseProxy would. The outbound request is the one rewrite and
// ReverseProxy would make, byte for byte up to header order.

// fastEligible reports whether r can take the fast path to b.
func fastEligible(b *backend, r *http.Request) bool {
	if b.fast == nil || b.slowOnly.Load() || b.sendProxy != 0 || r.ContentLength != 0 || len(r.TransferEncoding) > 0 || len(r.Trailer) > 0 {
		return false
	}
	h := r.Header
	return h["Upgrade"] == nil && h["Expect"] == nil && queryClean(r.URL.RawQuery)
}

// queryClean reports whether ReverseProxy would send the query unchanged (see its
// cleanQueryParams: a ';' or a bad escape makes it re-encode the query).
func queryClean(s string) bool {
	for i := 0; i < len(s); {
		switch s[i] {
		case ';':
			return false
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
			i += 3
		default:
			i++
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// hopHeaders are the hop-by-hop headers ReverseProxy removes (besides those named by
// Connection).
var hopHeaders = [...]string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func isHop(k string) bool {
	for _, h := range hopHeaders {
		if h == k {
			return true
		}
	}
	return false
}

// connToken reports whether the Connection header of h names k.
func connToken(conn []string, k string) bool {
	for _, line := range conn {
		for tok := range strings.SplitSeq(line, ",") {
			if tok = textproto.TrimString(tok); tok != "" && http.CanonicalHeaderKey(tok) == k {
				return true
			}
		}
	}
	return false
}

// removeHopByHop removes the hop-by-hop headers of h, as ReverseProxy does.
func removeHopByHop(h http.Header) {
	for _, line := range h["Connection"] {
		for tok := range strings.SplitSeq(line, ",") {
			if tok = textproto.TrimString(tok); tok != "" {
				h.Del(tok)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// hasToken reports whether the comma-separated values contain token (case-insensitive).
func hasToken(values []string, token string) bool {
	for _, line := range values {
		for tok := range strings.SplitSeq(line, ",") {
			if strings.EqualFold(textproto.TrimString(tok), token) {
				return true
			}
		}
	}
	return false
}

// headerEdited reports whether the configured request header changes delete or set k.
func (pr *proxyRT) headerEdited(k string) bool {
	rh := &pr.opts.RequestHeaders
	for _, d := range rh.Delete {
		if http.CanonicalHeaderKey(d) == k {
			return true
		}
	}
	for s := range rh.Set {
		if http.CanonicalHeaderKey(s) == k {
			return true
		}
	}
	return false
}

// writeHead writes the outbound request head for r, as rewrite and ReverseProxy shape it and
// h1Conn.writeRequest writes it.
// fastReq is the fast path's state of a request: the headWriter of its exchange.
type fastReq struct {
	pr        *proxyRT
	rs        *reqState
	w         http.ResponseWriter
	r         *http.Request
	cookie    string // the Cookie header without the sticky cookie
	hasCookie bool   // cookie replaces the request's Cookie header
	ab        activeBody
}

func (f *fastReq) writeHead(w *bufio.Writer, addr string) {
	f.pr.writeHead(w, f.r, f.rs, addr, f.cookie, f.hasCookie)
}

// got1xx forwards a 1xx response to the client, as ReverseProxy does.
func (f *fastReq) got1xx(code int, header textproto.MIMEHeader) error {
	h := f.w.Header()
	for k, vv := range header {
		h[k] = append(h[k], vv...)
	}
	f.w.WriteHeader(code)
	clear(h)
	return nil
}

func (pr *proxyRT) writeHead(w *bufio.Writer, r *http.Request, rs *reqState, addr, cookie string, hasCookie bool) {
	edits := len(pr.opts.RequestHeaders.Delete) > 0 || len(pr.opts.RequestHeaders.Set) > 0
	uri := r.URL.RequestURI()
	if r.URL.Opaque == "" && r.URL.Path == "" && r.URL.RawQuery == "" {
		uri = "/"
	}
	host := r.Host
	if host == "" {
		host = addr
	}
	w.WriteString(r.Method)
	w.WriteByte(' ')
	w.WriteString(uri)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(sanitizeValue(host))
	w.WriteString("\r\n")
	conn := r.Header["Connection"]
	for k, vs := range r.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer",
			"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip":
			continue
		case "User-Agent":
			if len(vs) == 0 || vs[0] == "" {
				continue
			}
		case "Cookie":
			if hasCookie {
				continue // written below, without the sticky cookie
			}
		}
		if isHop(k) || len(conn) > 0 && connToken(conn, k) || edits && pr.headerEdited(k) {
			continue
		}
		for _, v := range vs {
			writeHeader(w, k, v)
		}
	}
	if hasCookie && cookie != "" && !(edits && pr.headerEdited("Cookie")) && !(len(conn) > 0 && connToken(conn, "Cookie")) {
		writeHeader(w, "Cookie", cookie)
	}
	if te := r.Header["Te"]; te != nil && hasToken(te, "trailers") && !(edits && pr.headerEdited("Te")) {
		writeHeader(w, "Te", "trailers")
	}
	fwdKeys := [4]string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Real-Ip"}
	for i, k := range fwdKeys {
		if !(edits && pr.headerEdited(k)) {
			writeHeader(w, k, rs.fwd[i])
		}
	}
	// Delete then Set, as rewrite does: a key both deleted and set is set.
	endRequestHead(w, pr.opts.RequestHeaders.Set, r.Method)
}

// endRequestHead ends a request head to a server: the configured header sets (not the framing
// headers; an empty User-Agent means none), Content-Length: 0 for a bodiless POST, PUT or
// PATCH (as net/http sends), and the blank line.
func endRequestHead(w *bufio.Writer, set map[string]string, method string) {
	for k, v := range set {
		switch k = http.CanonicalHeaderKey(k); k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		case "User-Agent":
			if v == "" {
				continue
			}
		}
		writeHeader(w, k, v)
	}
	switch method {
	case "POST", "PUT", "PATCH":
		w.WriteString("Content-Length: 0\r\n")
	}
	w.WriteString("\r\n")
}

func writeHeader(w *bufio.Writer, k, v string) {
	w.WriteString(k)
	w.WriteString(": ")
	w.WriteString(sanitizeValue(v))
	w.WriteString("\r\n")
}

// fastForward proxies r (fastEligible) with the same outcome as ReverseProxy with rewrite,
// roundTripper, modifyResponse and errorHandler.
func (pr *proxyRT) fastForward(w http.ResponseWriter, r *http.Request, req *request) {
	rs := &req.rs
	f := &req.fast
	f.pr, f.rs, f.w, f.r = pr, rs, w, r
	b := rs.b
	pr.forwardedValues(rs, r)
	if name := b.sticky.Cookie; name != "" {
		rs.sticky = stickyServer(r, name, pr.signer, pr.name+"/"+b.name)
		if lines := r.Header["Cookie"]; len(lines) > 0 {
			h := http.Header{"Cookie": lines}
			stripCookie(h, name)
			f.cookie, f.hasCookie = h.Get("Cookie"), true
		}
	}
	now := time.Now()
	var s *server
	if rs.sticky != "" {
		if c := b.byName[rs.sticky]; c != nil && c.usable(now, false) {
			s = c
		}
	}
	if s == nil {
		s = b.pick(rs.client.Addr(), nil, now)
	}
	var tried []*server
	var resp *http.Response
	for {
		if s == nil {
			pr.errorHandler(w, r, errNoServer)
			return
		}
		rs.server = s
		rs.setCookie = b.sticky.Cookie != "" && rs.sticky != s.name
		s.active.Add(1)
		s.total.Add(1)
		s.rate.add(now)
		var err error
		resp, err = b.fast.exchange(r, s.target, f)
		if err == nil {
			s.statuses.add(resp.StatusCode)
			pr.report(b, s, resp.StatusCode < 500)
			break
		}
		s.active.Add(-1)
		if r.Context().Err() != nil {
			pr.errorHandler(w, r, err) // the client's doing, not the server's
			return
		}
		pr.report(b, s, false)
		var de *dialError
		if !errors.As(err, &de) || len(tried) >= pr.retries {
			pr.errorHandler(w, r, err)
			return
		}
		tried = append(tried, s)
		now = time.Now()
		next := b.pick(rs.client.Addr(), tried, now)
		if next == nil {
			pr.errorHandler(w, r, err)
			return
		}
		s = next
		pr.state.retries.Add(1)
		pr.log.Debug("retrying on another server", "proxy", pr.name, "backend", b.name,
			"failed", tried[len(tried)-1].name, "server", s.name, "error", err)
	}
	body := &f.ab
	body.ReadCloser, body.s = resp.Body, s
	defer body.Close()

	removeHopByHop(resp.Header)
	pr.modifyResponse(resp)
	h := w.Header()
	for k, vv := range resp.Header {
		if h[k] == nil {
			h[k] = vv // resp.Header is not used after this
		} else {
			h[k] = append(h[k], vv...)
		}
	}
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		h.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(resp.StatusCode)

	flush := resp.ContentLength == -1
	if !flush {
		if ct := resp.Header["Content-Type"]; len(ct) > 0 {
			base, _, _ := strings.Cut(ct[0], ";")
			flush = strings.EqualFold(strings.TrimSpace(base), "text/event-stream")
		}
	}
	buf := copyBuffers.Get()
	err := copyBody(w, body, buf, flush)
	copyBuffers.Put(buf)
	if err != nil {
		// As ReverseProxy: all that can be done while streaming is to abort the response.
		pr.log.Debug("proxy copy error", "proxy", pr.name, "uri", r.RequestURI, "error", err)
		panic(http.ErrAbortHandler)
	}
	body.Close() // now, to populate resp.Trailer
	if len(resp.Trailer) > 0 {
		// Force chunking: a trailer was seen.
		http.NewResponseController(w).Flush()
	}
	if len(resp.Trailer) == announced {
		for k, vv := range resp.Trailer {
			h[k] = append(h[k], vv...)
		}
		return
	}
	for k, vv := range resp.Trailer {
		k = http.TrailerPrefix + k
		for _, v := range vv {
			h.Add(k, v)
		}
	}
}

// copyBody copies the response body as ReverseProxy's copyBuffer does, flushing after every
// write with flush.
func copyBody(w http.ResponseWriter, src io.Reader, buf []byte, flush bool) error {
	var fl http.Flusher
	if flush {
		fl, _ = w.(http.Flusher)
	}
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := w.Write(buf[:nr])
			if werr != nil {
				return werr
			}
			if nw != nr {
				return io.ErrShortWrite
			}
			if fl != nil {
				fl.Flush()
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return nil
			}
			return rerr
		}
	}
}
