package l7proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// h1Client is the fast path to the servers of one backend: HTTP/1.1 over pooled keep-alive
// connections, with the request written and the response read in the caller's goroutine. It
// serves only what it can do simply and exactly as http.Transport would: requests without a
// body, without Upgrade or Expect, to a backend that sends no PROXY header (see eligible);
// everything else goes through the backend's http.Transport. http.Transport costs two goroutine
// hand-offs per request (its read and write loops) and several allocations; this is most of a
// proxied request's CPU time.
type h1Client struct {
	dialer         net.Dialer
	headerTimeout  time.Duration // ResponseHeaderTimeout
	maxIdlePerHost int
	idleTimeout    time.Duration

	mu     sync.Mutex
	idle   map[string][]*h1Conn // by server address, most recently used last
	closed bool
}

type h1Conn struct {
	c        net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	client   *h1Client
	addr     string
	idleFrom time.Time
	rdl      time.Time // read deadline the connection loop keeps lazily (zero: none)
}

func newH1Client(t Timeouts) *h1Client {
	return &h1Client{
		dialer:         net.Dialer{Timeout: t.Connect, KeepAlive: 30 * time.Second},
		headerTimeout:  t.Server,
		maxIdlePerHost: 256,
		idleTimeout:    90 * time.Second,
		idle:           map[string][]*h1Conn{},
	}
}

// eligible reports whether req can take the fast path. ReverseProxy has set Upgrade on the
// outbound request when the client asked for one.
func eligible(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody || req.ContentLength != 0 || len(req.TransferEncoding) > 0 {
		return false
	}
	h := req.Header
	return len(req.Trailer) == 0 && h["Upgrade"] == nil && h["Expect"] == nil && req.URL.Scheme == "http"
}

// get returns an idle connection to addr, or dials one (reused reports which).
func (hc *h1Client) get(ctx context.Context, addr string) (c *h1Conn, reused bool, err error) {
	now := time.Now()
	hc.mu.Lock()
	for list := hc.idle[addr]; len(list) > 0; list = hc.idle[addr] {
		c = list[len(list)-1]
		list[len(list)-1] = nil
		hc.idle[addr] = list[:len(list)-1]
		if now.Sub(c.idleFrom) < hc.idleTimeout {
			hc.mu.Unlock()
			return c, true, nil
		}
		c.c.Close()
	}
	hc.mu.Unlock()
	nc, err := hc.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, &dialError{err}
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		if rc, err := tc.SyscallConn(); err == nil {
			sc := &serverConn{Conn: tc, rc: rc}
			sc.writeFn, sc.readFn = sc.writeThenWait, sc.readNow
			nc = sc
		}
	}
	return &h1Conn{c: nc, br: bufio.NewReaderSize(nc, 4096), bw: bufio.NewWriterSize(nc, 4096), client: hc, addr: addr}, false, nil
}

// put returns c to the pool, or closes it when the pool is full or closed.
func (hc *h1Client) put(c *h1Conn) {
	c.idleFrom = time.Now()
	hc.mu.Lock()
	if !hc.closed && len(hc.idle[c.addr]) < hc.maxIdlePerHost {
		hc.idle[c.addr] = append(hc.idle[c.addr], c)
		hc.mu.Unlock()
		return
	}
	hc.mu.Unlock()
	c.c.Close()
}

// closeIdle closes the idle connections; with final, connections returned later are closed too.
func (hc *h1Client) closeIdle(final bool) {
	hc.mu.Lock()
	idle := hc.idle
	hc.idle = map[string][]*h1Conn{}
	hc.closed = hc.closed || final
	hc.mu.Unlock()
	for _, list := range idle {
		for _, c := range list {
			c.c.Close()
		}
	}
}

// idempotent methods may be sent again when a reused connection turns out to be closed.
func idempotent(m string) bool {
	switch m {
	case "GET", "HEAD", "OPTIONS", "TRACE", "":
		return true
	}
	return false
}

// roundTrip sends req (eligible) to addr.
func (hc *h1Client) roundTrip(req *http.Request, addr string) (*http.Response, error) {
	return hc.exchange(req, addr, nil)
}

// headWriter writes a request head itself and takes its 1xx responses (see exchange).
type headWriter interface {
	writeHead(w *bufio.Writer, addr string)
	got1xx(code int, h textproto.MIMEHeader) error
}

// exchange is roundTrip with the request head written by hw (when not nil, req serves only
// for its context and method), which also gets the 1xx responses.
func (hc *h1Client) exchange(req *http.Request, addr string, hw headWriter) (*http.Response, error) {
	ctx := req.Context()
	for attempt := 0; ; attempt++ {
		c, reused, err := hc.get(ctx, addr)
		if err != nil {
			return nil, err
		}
		resp, err := c.roundTrip(req, hc.headerTimeout, hw)
		if err == nil {
			return resp, nil
		}
		c.c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// A kept-alive connection the server had closed meanwhile: nothing of the response came,
		// so the request is sent again on another connection, as http.Transport does.
		if reused && errors.Is(err, errStaleConn) && idempotent(req.Method) && attempt < 2 {
			continue
		}
		return nil, err
	}
}

// errStaleConn marks a failure before any byte of the response was read.
var errStaleConn = errors.New("server closed the connection before responding")

type staleErr struct{ err error }

func (e *staleErr) Error() string        { return errStaleConn.Error() + ": " + e.err.Error() }
func (e *staleErr) Is(target error) bool { return target == errStaleConn }
func (e *staleErr) Unwrap() error        { return e.err }

func (c *h1Conn) roundTrip(req *http.Request, headerTimeout time.Duration, hw headWriter) (*http.Response, error) {
	var werr error
	if hw != nil {
		hw.writeHead(c.bw, c.addr)
		werr = c.bw.Flush()
	} else {
		werr = c.writeRequest(req)
	}
	if err := werr; err != nil {
		return nil, &staleErr{err}
	}
	if headerTimeout <= 0 && !c.rdl.IsZero() {
		c.c.SetReadDeadline(time.Time{})
	}
	c.rdl = time.Time{} // cleared below in any case
	ctx := req.Context()
	// The client going away aborts the wait for the response, as with http.Transport.
	stop := context.AfterFunc(ctx, func() { c.c.SetReadDeadline(aLongTimeAgo) })
	if headerTimeout > 0 {
		c.c.SetReadDeadline(time.Now().Add(headerTimeout))
	}
	if _, err := c.br.Peek(1); err != nil {
		stop()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, err
		}
		return nil, &staleErr{err}
	}
	var resp *http.Response
	var err error
	for {
		resp, err = http.ReadResponse(c.br, req)
		if err != nil || resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		// 1xx: hand it to ReverseProxy (which forwards it to the client) and read on.
		if hw != nil {
			if err = hw.got1xx(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
				break
			}
		} else if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.Got1xxResponse != nil {
			if err = trace.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
				break
			}
		}
	}
	aborted := !stop()
	if headerTimeout > 0 || aborted {
		c.c.SetReadDeadline(time.Time{})
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	if aborted {
		return nil, context.Canceled // the caller closes the connection
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return nil, errors.New("unexpected 101 Switching Protocols without an upgrade request")
	}
	keep := !resp.Close && resp.ProtoAtLeast(1, 1)
	if resp.Body == http.NoBody {
		if keep {
			c.client.put(c)
		} else {
			c.c.Close()
		}
		return resp, nil
	}
	resp.Body = &h1Body{rc: resp.Body, c: c, keep: keep}
	return resp, nil
}

// aLongTimeAgo is a deadline in the past: it makes blocked reads return at once.
var aLongTimeAgo = time.Unix(1, 0)

// writeRequest writes the request head (eligible: no body) like Request.Write does.
func (c *h1Conn) writeRequest(req *http.Request) error {
	w := c.bw
	uri := req.URL.RequestURI()
	if req.URL.Opaque == "" && req.URL.Path == "" && req.URL.RawQuery == "" {
		uri = "/"
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	method := req.Method
	if method == "" {
		method = "GET"
	}
	w.WriteString(method)
	w.WriteByte(' ')
	w.WriteString(uri)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(sanitizeValue(host))
	w.WriteString("\r\n")
	for k, vs := range req.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		case "User-Agent":
			if len(vs) == 0 || vs[0] == "" {
				continue
			}
		}
		for _, v := range vs {
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(sanitizeValue(v))
			w.WriteString("\r\n")
		}
	}
	switch req.Method {
	case "POST", "PUT", "PATCH":
		w.WriteString("Content-Length: 0\r\n")
	}
	w.WriteString("\r\n")
	return w.Flush()
}

// sanitizeValue replaces line breaks in a header value by spaces, as Header.Write does.
func sanitizeValue(v string) string {
	for i := 0; i < len(v); i++ {
		if v[i] == '\r' || v[i] == '\n' {
			b := []byte(v)
			for j := i; j < len(b); j++ {
				if b[j] == '\r' || b[j] == '\n' {
					b[j] = ' '
				}
			}
			return string(b)
		}
	}
	return v
}

// h1Body returns its connection to the pool when the body was read to the end.
type h1Body struct {
	rc   io.ReadCloser
	c    *h1Conn // nil once released or closed
	keep bool
	done bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err != nil {
		b.done = true
	}
	if err == io.EOF && b.c != nil {
		c := b.c
		b.c = nil
		if b.keep {
			c.client.put(c)
		} else {
			c.c.Close()
		}
	} else if err != nil && b.c != nil {
		b.c.c.Close()
		b.c = nil
	}
	return n, err
}

func (b *h1Body) Close() error {
	b.done = true
	if b.c != nil {
		// Not read to the end: the connection is in an unknown place of the stream.
		b.c.c.Close()
		b.c = nil
	}
	return nil
}

// serverConn is a connection to a server whose next Write may also wait for the answer
// (awaitAnswer). Go reads before it waits: after a request is written, the read that follows
// finds nothing (the server has not answered yet) and only then parks in the netpoller, a
// system call for nothing per request. The netpoller forgets readiness seen before a wait
// starts (its prepareRead), so the wait must begin before the request leaves: the write is
// made from inside RawConn.Read, whose first callback runs after that reset, and the callback
// then asks to wait. The server cannot answer before it has the request, and a reset or close
// after it is an event too, so no answer is missed; the read that follows finds the answer.
// Only the goroutine serving the request uses it (the pool hands it over under a lock).
type serverConn struct {
	net.Conn
	rc    syscall.RawConn
	await bool // the next Write waits for the socket to become readable

	// The state of one awaiting Write, kept here so that it allocates nothing.
	writeFn func(uintptr) bool // writeThenWait, bound once
	wbuf    []byte
	done    int
	werr    error
	sent    bool

	// The state of one Read (raw reads inside RawConn.Read, see rawsys.go).
	readFn func(uintptr) bool // readNow, bound once
	rbuf   []byte
	rn     int
	rerr   error
}

func (c *serverConn) Read(b []byte) (int, error) {
	c.rbuf, c.rn, c.rerr = b, 0, nil
	err := c.rc.Read(c.readFn)
	n, rerr := c.rn, c.rerr
	c.rbuf = nil
	switch {
	case err != nil: // the wait's: the read deadline, a closed connection
		var oe *net.OpError
		if errors.As(err, &oe) {
			oe.Op = "read" // RawConn.Read's "raw-read": the error is a read's, as Conn.Read's
		}
		return 0, err
	case rerr != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
	case n == 0 && len(b) > 0:
		return 0, io.EOF
	}
	return n, nil
}

// readNow is Read's RawConn.Read callback: false (nothing there yet) asks to wait.
func (c *serverConn) readNow(fd uintptr) bool {
	c.rn, c.rerr = rawRead(int(fd), c.rbuf)
	return c.rerr != unix.EAGAIN
}

// awaitAnswer makes the next Write (the flush of a request) return only once the server's
// answer can be read, or the read deadline passed, or the connection failed.
func (c *serverConn) awaitAnswer() { c.await = true }

func (c *serverConn) Write(b []byte) (int, error) {
	if !c.await {
		return c.Conn.Write(b)
	}
	c.await = false
	c.wbuf, c.done, c.werr, c.sent = b, 0, nil, false
	// A wait error (the read deadline, a closed connection) is left to the read that follows,
	// which meets it again: the request was written.
	c.rc.Read(c.writeFn)
	done, werr := c.done, c.werr
	c.wbuf = nil
	switch {
	case werr == unix.EAGAIN:
		// The socket buffer is full: the rest waits for room as any write does.
		n, err := c.Conn.Write(b[done:])
		return done + n, err
	case werr != nil:
		return done, &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("write", werr)}
	}
	return done, nil
}

// writeThenWait is the RawConn.Read callback of an awaiting Write: the first call writes
// c.wbuf and asks to wait; the call after the wake-up ends the wait.
func (c *serverConn) writeThenWait(fd uintptr) bool {
	if c.sent {
		return true // readable (or failed): the answer is there to read
	}
	c.sent = true
	for c.done < len(c.wbuf) && c.werr == nil {
		n, err := rawWrite(int(fd), c.wbuf[c.done:])
		if n > 0 {
			c.done += n
		}
		c.werr = err
	}
	return c.werr != nil // all written: wait for the answer
}
