package l7proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The connection loop: every HTTP/1 client connection (plain, or TLS without HTTP/2 by ALPN)
// is first served by a loop of its own instead of net/http's server. It reads request heads
// into a reused buffer, parses them strictly, and forwards the simple ones (no body, no
// Upgrade or Expect, origin-form target, a backend without PROXY header; see parseHead and
// handles) to a pooled backend connection with one write, reads the response head with its own
// parser and writes head and (small) body to the client with one write. Per keep-alive request
// that is a read on each side and a write on each side, about what HAProxy does, instead of
// net/http's background read, deadline resets, response header map and separate flushes.
//
// Anything else (a request with a body, an upgrade, h2c, the statistics page, a redirecting
// listener, a head the parser doubts, a head larger than the buffer) hands the connection to
// the socket's http.Server with the bytes already read replayed in front: from then on net/http
// serves it, with every feature and error answer (400, 413, 431, ...) it has. The loop reads
// the socket's current listener per request, so a reload never replaces it.

// connLoop is the per-socket state of the connection loop: the connections it serves, and
// their buffers.
type connLoop struct {
	sock *socket

	mu      sync.Mutex
	conns   map[*loopConn]struct{}
	closing atomic.Bool    // set under mu
	wg      sync.WaitGroup // connections being served

	// Workers: goroutines that serve one connection after another. An idle worker waits on
	// work; a connection no idle worker takes starts a new one. Reusing them keeps their grown
	// stacks: a new goroutine per connection spent about 5% of a one-request connection's CPU
	// in starting, growing its stack (twice) and exiting. Idle workers are at most the peak of
	// concurrent connections; shutdown stops them.
	work     chan *loopConn
	stop     chan struct{}
	stopOnce sync.Once
	workers  sync.WaitGroup

	bufs sync.Pool // *loopBufs

	date atomic.Pointer[httpDate] // the last Date value formatted
}

// httpDate is a Date header value (RFC 9110 §5.6.7, IMF-fixdate) and the second it names.
type httpDate struct {
	sec int64
	s   string
}

// dateAt formats now for a Date header, once per second.
func (cl *connLoop) dateAt(now time.Time) string {
	sec := now.Unix()
	if d := cl.date.Load(); d != nil && d.sec == sec {
		return d.s
	}
	d := &httpDate{sec: sec, s: now.UTC().Format(http.TimeFormat)}
	cl.date.Store(d)
	return d.s
}

type loopBufs struct {
	rbuf []byte
	bw   *bufio.Writer
	// The parsed heads' slices, reused from connection to connection.
	req  loopReq
	resp loopResp
}

const (
	loopReadBuf  = 8 << 10
	loopWriteBuf = 8 << 10
	maxLoopHdrs  = 100
)

// loopConn states.
const (
	connIdle int32 = iota
	connActive
	connClosed
)

func newConnLoop(s *socket) *connLoop {
	return &connLoop{sock: s, conns: map[*loopConn]struct{}{}, work: make(chan *loopConn), stop: make(chan struct{})}
}

// start serves c (a clientConn, or a tls.Conn over one) in a goroutine of the loop. It
// reports false when the loop is shutting down (c is then the caller's).
func (cl *connLoop) start(c net.Conn, cc *clientConn, tlsConn *tls.Conn) bool {
	lc := &loopConn{loop: cl, nc: c, cc: cc, tlsConn: tlsConn}
	cl.mu.Lock()
	if cl.closing.Load() {
		cl.mu.Unlock()
		return false
	}
	cl.conns[lc] = struct{}{}
	cl.wg.Add(1)
	cl.mu.Unlock()
	select {
	case cl.work <- lc:
	default:
		cl.workers.Add(1)
		go cl.worker(lc)
	}
	return true
}

// worker serves lc, then the connections handed to it while it is idle, until shutdown.
func (cl *connLoop) worker(lc *loopConn) {
	defer cl.workers.Done()
	for {
		lc.serve()
		lc = nil
		cl.wg.Done()
		select {
		case lc = <-cl.work:
		case <-cl.stop:
			return
		}
	}
}

func (cl *connLoop) forget(lc *loopConn) {
	cl.mu.Lock()
	delete(cl.conns, lc)
	cl.mu.Unlock()
}

// shutdown closes idle connections and lets active ones finish their request, until ctx ends;
// then it closes the rest. It waits for the loop's goroutines.
func (cl *connLoop) shutdown(ctx context.Context) {
	cl.mu.Lock()
	cl.closing.Store(true)
	cl.mu.Unlock()
	defer func() {
		cl.stopOnce.Do(func() { close(cl.stop) })
		cl.workers.Wait()
	}()
	done := make(chan struct{})
	go func() { // owned: waited for below
		cl.wg.Wait()
		close(done)
	}()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	// Connections are closed outside mu: closing one whose goroutine is inside its edge-mode
	// wait callback (runEdge) returns only when the callback does.
	var toClose []*loopConn
	closeAll := func() {
		for _, lc := range toClose {
			lc.nc.Close()
		}
		toClose = toClose[:0]
	}
	for {
		cl.mu.Lock()
		for lc := range cl.conns {
			if lc.state.CompareAndSwap(connIdle, connClosed) {
				toClose = append(toClose, lc)
			}
		}
		cl.mu.Unlock()
		closeAll()
		select {
		case <-done:
			return
		case <-t.C:
		case <-ctx.Done():
			cl.mu.Lock()
			for lc := range cl.conns {
				lc.state.Store(connClosed)
				toClose = append(toClose, lc)
			}
			cl.mu.Unlock()
			closeAll()
			<-done
			return
		}
	}
}

func (cl *connLoop) isClosing() bool { return cl.closing.Load() }

// loopConn is one client connection served by the loop.
type loopConn struct {
	loop    *connLoop
	nc      net.Conn
	cc      *clientConn
	tlsConn *tls.Conn
	state   atomic.Int32

	bufs     *loopBufs
	rbuf     []byte
	r, w     int // unread bytes are rbuf[r:w]
	bw       *bufio.Writer
	rdl, wdl time.Time // deadlines set on nc (zero: none)
	served   int

	headStart time.Time  // when the first bytes of the head being read came
	edge      *edgeState // edge mode (see runEdge); nil: reads go through nc

	req  loopReq
	resp loopResp
}

type hdr struct{ k, v string }

// loopReq is a parsed request head; its strings point into one copy of the head.
type loopReq struct {
	head      string
	method    string
	target    string // origin-form
	path      string
	query     string
	http10    bool
	host      string
	close     bool // Connection: close (or HTTP/1.0 without keep-alive)
	te        bool // Te names trailers
	hdrs      []hdr
	cookies   []string
	xff       []string
	xfp, xfh  string
	userAgent bool
}

// loopResp is a parsed response head.
type loopResp struct {
	head     string
	status   int
	http10   bool
	hdrs     []hdr
	chunked  bool
	length   int64 // -1: none
	close    bool  // the server closes or asked to
	hasKA    bool
	hasDate  bool
	connToks []string
}

// slack bounds how early a lazily kept deadline may fire: a deadline is pushed on only when
// less than timeout-slack of it is left, so a keep-alive connection resets it rarely.
func slack(d time.Duration) time.Duration { return d / 8 }

func (lc *loopConn) setReadDeadline(t time.Time) {
	if t != lc.rdl {
		lc.rdl = t
		lc.nc.SetReadDeadline(t)
	}
}

// readDeadlineAtLeast makes the read deadline d from now, give or take slack(d) early.
func (lc *loopConn) readDeadlineAtLeast(now time.Time, d time.Duration) {
	if d <= 0 {
		lc.setReadDeadline(time.Time{})
		return
	}
	if lc.rdl.IsZero() || lc.rdl.Sub(now) < d-slack(d) || lc.rdl.Sub(now) > d {
		lc.setReadDeadline(now.Add(d))
	}
}

func (lc *loopConn) writeDeadlineAtLeast(now time.Time, d time.Duration) {
	if d <= 0 {
		if !lc.wdl.IsZero() {
			lc.wdl = time.Time{}
			lc.nc.SetWriteDeadline(time.Time{})
		}
		return
	}
	if lc.wdl.IsZero() || lc.wdl.Sub(now) < d-slack(d) || lc.wdl.Sub(now) > d {
		lc.wdl = now.Add(d)
		lc.nc.SetWriteDeadline(lc.wdl)
	}
}

func (lc *loopConn) current() *listenerRT { return lc.loop.sock.cur.Load().l }

func (lc *loopConn) serve() {
	handed := false
	defer func() {
		if lc.bufs != nil {
			lc.bw.Reset(nil)
			lc.bufs.req = loopReq{hdrs: lc.req.hdrs[:0], cookies: lc.req.cookies[:0], xff: lc.req.xff[:0]}
			lc.bufs.resp = loopResp{hdrs: lc.resp.hdrs[:0], connToks: lc.resp.connToks[:0]}
			lc.loop.bufs.Put(lc.bufs)
		}
		lc.loop.forget(lc)
		if !handed {
			lc.nc.Close()
		}
	}()
	if lc.tlsConn != nil {
		l := lc.current()
		if d := l.proxy.opts.Timeouts.Header; d > 0 {
			lc.nc.SetDeadline(time.Now().Add(d))
		}
		if err := lc.tlsConn.Handshake(); err != nil {
			return
		}
		lc.nc.SetDeadline(time.Time{})
		if lc.tlsConn.ConnectionState().NegotiatedProtocol == "h2" {
			handed = lc.handoff(lc.nc)
			return
		}
	}
	if v, ok := lc.loop.bufs.Get().(*loopBufs); ok {
		lc.bufs = v
		lc.bw = v.bw
		lc.bw.Reset(lc.nc)
	} else {
		lc.bufs = &loopBufs{rbuf: make([]byte, loopReadBuf), bw: bufio.NewWriterSize(lc.nc, loopWriteBuf)}
		lc.bw = lc.bufs.bw
	}
	lc.rbuf = lc.bufs.rbuf
	lc.req, lc.resp = lc.bufs.req, lc.bufs.resp
	var st runStatus
	if rc := lc.rawClient(); rc != nil {
		st = lc.runEdge(rc)
	} else {
		st = lc.run()
	}
	if st == runHandoff {
		handed = lc.handoffBuffered()
	}
}

// runStatus is how run left the connection.
type runStatus int

const (
	runDone    runStatus = iota // close it
	runHandoff                  // give it to net/http
	runWait                     // (edge mode) wait until it is readable, then run again
)

// run serves requests until the connection is done, is to be handed off, or (edge mode) has
// to wait for data.
func (lc *loopConn) run() runStatus {
	for {
		end, hs := lc.readHead()
		switch hs {
		case headClosed:
			return runDone
		case headWait:
			return runWait
		}
		if end < 0 {
			return runHandoff
		}
		l := lc.current()
		pr := l.proxy
		if !lc.parse(end) || !lc.handles(l) {
			return runHandoff
		}
		lc.r += end
		if lc.r == lc.w {
			lc.r, lc.w = 0, 0
		}
		keep := lc.serveRequest(pr, l)
		lc.served++
		if !keep || lc.loop.isClosing() {
			lc.bw.Flush()
			return runDone
		}
		if !lc.state.CompareAndSwap(connActive, connIdle) {
			return runDone
		}
	}
}

// Edge mode. A plain connection accepted raw (rawConn, no PROXY header) is read with read(2)
// on its descriptor, and waits for data in one RawConn.Read that lasts as long as the
// connection: run is its callback. Go's netpoller forgets readiness only when a wait begins
// (prepareRead), which is once here, so inside the callback the loop can trust what it knows:
// after a read that left the socket empty (it returned less than asked) the next request is
// waited for without a read that would find nothing, as HAProxy and nginx do from their own
// readiness flags; any data that arrives later, pipelined or not, leaves the descriptor marked
// ready, and a wake-up for data already read costs one read that finds nothing. Go's own
// Read, by contrast, reads first on every call: on a keep-alive connection one read per
// request returns EAGAIN.
//
// Before the connection first has to wait it is not in the netpoller at all (rawConn): the
// first request is read raw, and only a read that finds nothing registers the descriptor.

// edgeState is a connection's edge-mode state.
type edgeState struct {
	raw     *rawConn
	inPoll  bool // run is the RawConn.Read callback
	mayRead bool // the socket may hold data: a wake-up since the last read that drained it
}

// errWouldBlock is a read in edge mode that has to wait.
var errWouldBlock = errors.New("read would block")

// rawClient returns the connection's rawConn when edge mode can serve it.
func (lc *loopConn) rawClient() *rawConn {
	if lc.tlsConn != nil || lc.cc == nil {
		return nil
	}
	rc, ok := lc.cc.Conn.(*rawConn)
	if !ok {
		return nil
	}
	if err := lc.cc.init(); err != nil || lc.cc.br != nil {
		return nil // refused, or a PROXY header's bufio holds bytes: Go's reads
	}
	return rc
}

func (lc *loopConn) runEdge(rc *rawConn) runStatus {
	lc.edge = &edgeState{raw: rc}
	st := lc.run() // raw, until a read finds nothing
	if st != runWait {
		return st
	}
	f := rc.file.Load() // set by the read that found nothing
	if f == nil {
		return runDone
	}
	prc, err := f.SyscallConn()
	if err != nil {
		return runDone
	}
	lc.edge.inPoll = true
	err = prc.Read(func(uintptr) bool {
		lc.edge.mayRead = true // first call (after the poller's reset), or a wake-up
		st = lc.run()
		return st != runWait
	})
	if err != nil {
		return runDone // the read deadline, or closed
	}
	return st
}

// read reads client bytes: through the connection, or in edge mode from its descriptor.
func (lc *loopConn) read(b []byte) (int, error) {
	e := lc.edge
	if e == nil {
		return lc.nc.Read(b)
	}
	if !e.inPoll {
		return e.raw.readNoWait(b)
	}
	if !e.mayRead {
		return 0, errWouldBlock
	}
	n, err := rawRead(e.raw.fd, b)
	switch {
	case err == unix.EAGAIN:
		e.mayRead = false
		return 0, errWouldBlock
	case err != nil:
		return 0, err
	case n == 0:
		return 0, io.EOF
	}
	if n < len(b) {
		e.mayRead = false // drained: the next data will be an edge
	}
	return n, nil
}

// headStatus is how readHead ended.
type headStatus int

const (
	headOK     headStatus = iota // a complete head, or one too large (end -1)
	headWait                     // edge mode: wait for more
	headClosed                   // the connection is done
)

// activate marks the connection busy as bytes of a request arrive; false when shutdown closed
// it meanwhile.
func (lc *loopConn) activate() bool {
	switch lc.state.Load() {
	case connActive:
		return true
	case connIdle:
		return lc.state.CompareAndSwap(connIdle, connActive)
	}
	return false
}

// readHead reads until rbuf[r:w] holds a complete head; it returns the head's length, or -1
// when the head does not fit (net/http takes over).
func (lc *loopConn) readHead() (int, headStatus) {
	l := lc.current()
	t := l.proxy.opts.Timeouts
	if lc.r == lc.w {
		// Waiting for the next request: the idle timeout (the header timeout for the first).
		lc.headStart = time.Time{}
		now := time.Now()
		if lc.served == 0 && t.Header > 0 {
			lc.readDeadlineAtLeast(now, t.Header)
		} else {
			lc.readDeadlineAtLeast(now, t.Idle)
		}
	} else if lc.headStart.IsZero() {
		lc.headStart = time.Now()
	}
	if lc.r < lc.w && !lc.activate() {
		return 0, headClosed // closed by shutdown
	}
	limit := len(lc.rbuf)
	if mh := l.proxy.opts.MaxHeaderSize; mh > 0 && mh+4096 < limit {
		limit = mh + 4096
	}
	for {
		if i := headEnd(lc.rbuf[lc.r:lc.w]); i >= 0 {
			lc.headStart = time.Time{}
			return i, headOK
		}
		if lc.w-lc.r >= limit {
			return -1, headOK
		}
		if lc.w == len(lc.rbuf) {
			n := copy(lc.rbuf, lc.rbuf[lc.r:lc.w])
			lc.r, lc.w = 0, n
		}
		if !lc.headStart.IsZero() && t.Header > 0 && lc.served > 0 {
			// Part of a head: the rest within the header timeout (slowloris).
			lc.setReadDeadline(lc.headStart.Add(t.Header))
		}
		n, err := lc.read(lc.rbuf[lc.w:])
		if n > 0 {
			if !lc.activate() {
				return 0, headClosed // closed by shutdown
			}
			if lc.headStart.IsZero() {
				lc.headStart = time.Now()
			}
			lc.w += n
			continue
		}
		if err == errWouldBlock {
			return 0, headWait
		}
		if err != nil {
			return 0, headClosed
		}
	}
}

// headEnd returns the length of the head in b (through its blank line), or -1.
func headEnd(b []byte) int {
	for i := 0; i+3 < len(b); i++ {
		if b[i] == '\r' && b[i+1] == '\n' && b[i+2] == '\r' && b[i+3] == '\n' {
			return i + 4
		}
		if b[i] == '\n' && b[i+1] == '\n' {
			return i + 2 // bare LF: parse refuses it, net/http decides
		}
	}
	return -1
}

// handoff gives c to the socket's http.Server. It reports whether it was taken.
func (lc *loopConn) handoff(c net.Conn) bool {
	s := lc.loop.sock
	select {
	case s.handoff <- c:
		return true
	case <-s.done:
		return false
	}
}

// handoffBuffered hands the connection over with the unread bytes in front.
func (lc *loopConn) handoffBuffered() bool {
	if err := lc.bw.Flush(); err != nil {
		return false
	}
	lc.nc.SetReadDeadline(time.Time{})
	lc.nc.SetWriteDeadline(time.Time{})
	var c net.Conn = lc.nc
	if lc.r < lc.w {
		pre := make([]byte, lc.w-lc.r)
		copy(pre, lc.rbuf[lc.r:lc.w])
		c = &replayConn{Conn: lc.nc, pre: pre, cc: lc.cc, tls: lc.tlsConn}
	}
	return lc.handoff(c)
}

// replayConn is a connection handed to net/http with bytes the loop had read.
type replayConn struct {
	net.Conn
	pre []byte
	cc  *clientConn
	tls *tls.Conn
}

func (r *replayConn) Read(b []byte) (int, error) {
	if len(r.pre) > 0 {
		n := copy(b, r.pre)
		r.pre = r.pre[n:]
		return n, nil
	}
	return r.Conn.Read(b)
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

// validValue refuses control characters other than HTAB.
func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// pathChar: bytes url.URL.EscapedPath keeps as they are.
func pathChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-_.~$&+,/:;=@!'()*", c) >= 0
}

func validHost(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_') {
			return false
		}
	}
	return s != ""
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// parseRequestHead parses a request head (through its blank line) into q. It accepts only
// what the loop forwards itself and reports false for everything else, valid or not: net/http
// then serves the request.
func parseRequestHead(head string, q *loopReq) bool {
	hdrs := q.hdrs[:0]
	cookies, xff := q.cookies[:0], q.xff[:0]
	*q = loopReq{head: head, hdrs: hdrs, cookies: cookies, xff: xff}
	line, rest, ok := strings.Cut(head, "\r\n")
	if !ok {
		return false
	}
	method, line, ok := strings.Cut(line, " ")
	if !ok || !isToken(method) || len(method) > 32 || method == "PRI" || method == "CONNECT" {
		return false
	}
	target, proto, ok := strings.Cut(line, " ")
	if !ok || len(target) == 0 || target[0] != '/' {
		return false
	}
	switch proto {
	case "HTTP/1.1":
	case "HTTP/1.0":
		q.http10, q.close = true, true
	default:
		return false
	}
	path, query, hasQuery := strings.Cut(target, "?")
	for i := 0; i < len(path); i++ {
		if !pathChar(path[i]) {
			return false
		}
	}
	for i := 0; i < len(query); i++ {
		if c := query[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	if hasQuery && (query == "" || !queryClean(query)) {
		return false
	}
	q.method, q.target, q.path, q.query = method, target, path, query
	hosts := 0
	for {
		line, rest, ok = strings.Cut(rest, "\r\n")
		if !ok {
			return false
		}
		if line == "" {
			break
		}
		if len(q.hdrs) >= maxLoopHdrs || line[0] == ' ' || line[0] == '\t' {
			return false
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || !isToken(k) {
			return false
		}
		v = trimOWS(v)
		if !validValue(v) {
			return false
		}
		switch len(k) {
		case 2:
			if strings.EqualFold(k, "Te") {
				q.te = q.te || hasToken([]string{v}, "trailers")
				continue
			}
		case 4:
			if strings.EqualFold(k, "Host") {
				if hosts++; hosts > 1 || !validHost(v) {
					return false
				}
				q.host = v
				continue
			}
		case 6:
			if strings.EqualFold(k, "Expect") {
				return false
			}
			if strings.EqualFold(k, "Cookie") {
				q.cookies = append(q.cookies, v)
				continue
			}
		case 7:
			if strings.EqualFold(k, "Upgrade") || strings.EqualFold(k, "Trailer") {
				return false
			}
		case 9:
			if strings.EqualFold(k, "Forwarded") {
				continue
			}
		case 10:
			if strings.EqualFold(k, "Connection") {
				for tok := range strings.SplitSeq(v, ",") {
					switch tok = trimOWS(tok); {
					case tok == "":
					case strings.EqualFold(tok, "close"):
						q.close = true
					case strings.EqualFold(tok, "keep-alive"):
						// HTTP/1.0 keep-alive: answered with a close all the same.
					default:
						return false // a hop-by-hop header named by the client
					}
				}
				continue
			}
			if strings.EqualFold(k, "Keep-Alive") || strings.EqualFold(k, "User-Agent") && v == "" {
				continue
			}
		case 14:
			if strings.EqualFold(k, "Content-Length") {
				if v != "0" {
					return false
				}
				continue
			}
		case 15:
			if strings.EqualFold(k, "X-Forwarded-For") {
				q.xff = append(q.xff, v)
				continue
			}
		case 16:
			if strings.EqualFold(k, "X-Forwarded-Host") {
				if q.xfh == "" {
					q.xfh = v
				}
				continue
			}
			if strings.EqualFold(k, "Proxy-Connection") {
				continue
			}
		case 17:
			if strings.EqualFold(k, "Transfer-Encoding") {
				return false
			}
			if strings.EqualFold(k, "X-Forwarded-Proto") {
				if q.xfp == "" {
					q.xfp = v
				}
				continue
			}
		case 19:
			if strings.EqualFold(k, "Proxy-Authorization") {
				continue
			}
		case 18:
			if strings.EqualFold(k, "Proxy-Authenticate") {
				continue
			}
		}
		if len(k) == 9 && strings.EqualFold(k, "X-Real-Ip") {
			continue
		}
		q.hdrs = append(q.hdrs, hdr{k, v})
	}
	if rest != "" || q.host == "" {
		return false
	}
	return true
}

func (lc *loopConn) parse(end int) bool {
	return parseRequestHead(string(lc.rbuf[lc.r:lc.r+end]), &lc.req)
}

// handles reports whether the loop forwards the parsed request itself on l.
func (lc *loopConn) handles(l *listenerRT) bool {
	if l.opts.RedirectHTTPS != 0 {
		return false
	}
	pr := l.proxy
	if pr.isStatsPath(lc.req.path) {
		return false
	}
	b := pr.routeHostPath(lc.req.host, lc.req.path)
	return b != nil && b.fast != nil && b.sendProxy == 0 && !b.slowOnly.Load()
}

// serveRequest forwards the parsed request; it reports whether the connection stays open.
func (lc *loopConn) serveRequest(pr *proxyRT, l *listenerRT) bool {
	q := &lc.req
	pr.inflight.Add(1)
	defer pr.inflight.Add(-1)
	st := pr.state
	start := time.Now()
	st.activeReqs.Add(1)
	defer st.activeReqs.Add(-1)
	st.totalReqs.Add(1)
	st.rate.add(start)
	lc.writeDeadlineAtLeast(start, pr.opts.Timeouts.Client)

	var rs reqState
	rs.pr, rs.tls = pr, lc.tlsConn != nil
	cc := lc.cc
	rs.peer, rs.local, rs.peerStr = cc.client, cc.localAP, cc.clientStr
	if pr.trusted(rs.peer.Addr()) {
		rs.client = clientFromHops(pr, rs.peer, hopsOf(q.xff))
	} else {
		rs.client = rs.peer
	}
	keep := !q.close
	status, n := 0, int64(0)
	if pr.limiter != nil {
		if ok, wait := pr.limiter.allow(rs.client.Addr(), start); !ok {
			st.rateLimited.Add(1)
			secs := int64((wait + time.Second - 1) / time.Second)
			status = http.StatusTooManyRequests
			lc.writeError(status, "Retry-After: "+strconv.FormatInt(max(secs, 1), 10), keep)
		}
	}
	if status == 0 {
		rs.b = pr.routeHostPath(q.host, q.path)
		status, n, keep = lc.forward(pr, &rs, keep)
	}
	if keep {
		keep = lc.bw.Flush() == nil
	}
	st.statuses.add(status)
	st.bytesOut.Add(uint64(n))
	if pr.access != nil {
		attrs := []slog.Attr{
			slog.String("proxy", pr.name), slog.String("listener", l.opts.Name),
			slog.String("client", rs.client.Addr().String()), slog.String("method", q.method),
			slog.String("host", q.host), slog.String("uri", q.target), slog.String("proto", protoOf(q)),
			slog.Int("status", status), slog.Uint64("bytes_in", 0), slog.Uint64("bytes_out", uint64(n)),
			slog.Duration("duration", time.Since(start)),
		}
		if rs.b != nil {
			attrs = append(attrs, slog.String("backend", rs.b.name))
		}
		if rs.server != nil {
			attrs = append(attrs, slog.String("server", rs.server.name))
		}
		pr.access.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
	}
	return keep
}

func protoOf(q *loopReq) string {
	if q.http10 {
		return "HTTP/1.0"
	}
	return "HTTP/1.1"
}

// writeError answers with a short text/plain body, as http.Error does.
func (lc *loopConn) writeError(code int, extra string, keep bool) {
	w := lc.bw
	text := strconv.Itoa(code) + " " + http.StatusText(code)
	w.WriteString("HTTP/1.1 ")
	w.WriteString(text)
	w.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n")
	writeHeader(w, "Date", lc.loop.dateAt(time.Now()))
	if extra != "" {
		w.WriteString(extra)
		w.WriteString("\r\n")
	}
	if !keep {
		w.WriteString("Connection: close\r\n")
	}
	w.WriteString("Content-Length: ")
	w.WriteString(strconv.Itoa(len(text) + 1))
	w.WriteString("\r\n\r\n")
	if lc.req.method != "HEAD" {
		w.WriteString(text)
		w.WriteString("\n")
	}
}

// forward sends the request to a server of rs.b, with retries of connection failures as
// fastForward, and copies the response. It returns the status, the body bytes written and
// whether the client connection stays open.
func (lc *loopConn) forward(pr *proxyRT, rs *reqState, keep bool) (int, int64, bool) {
	q := &lc.req
	b := rs.b
	pr.setForwarded(rs, lc.req.xff, lc.req.xfp, lc.req.host, lc.req.xfh)
	var cookie string
	hasCookie := false
	if name := b.sticky.Cookie; name != "" {
		rs.sticky = stickyFromLines(q.cookies, name, pr.signer, pr.name+"/"+b.name)
		if len(q.cookies) > 0 {
			h := http.Header{"Cookie": q.cookies}
			stripCookie(h, name)
			cookie, hasCookie = h.Get("Cookie"), true
		}
	}
	now := time.Now()
	s := b.first(rs, now)
	var tried []*server
	var bc *h1Conn
	for {
		if s == nil {
			pr.state.noSrv.Add(1)
			pr.state.errors.Add(1)
			lc.writeError(http.StatusServiceUnavailable, "", keep)
			return http.StatusServiceUnavailable, 0, keep
		}
		rs.server = s
		rs.setCookie = b.sticky.Cookie != "" && rs.sticky != s.name
		s.active.Add(1)
		s.total.Add(1)
		s.rate.add(now)
		var err error
		bc, err = lc.exchange(pr, b.fast, s.target, rs, cookie, hasCookie)
		if err == nil {
			break
		}
		s.active.Add(-1)
		pr.report(b, s, false)
		var de *dialError
		if !errors.As(err, &de) || len(tried) >= pr.retries {
			return lc.gatewayError(pr, err, keep)
		}
		tried = append(tried, s)
		now = time.Now()
		next := b.pick(rs.client.Addr(), tried, now)
		if next == nil {
			return lc.gatewayError(pr, err, keep)
		}
		s = next
		pr.state.retries.Add(1)
		pr.log.Debug("retrying on another server", "proxy", pr.name, "backend", b.name,
			"failed", tried[len(tried)-1].name, "server", s.name, "error", err)
	}
	defer s.active.Add(-1)
	p := &lc.resp
	s.statuses.add(p.status)
	pr.report(b, s, p.status < 500)
	n, keep, err := lc.copyResponse(pr, rs, bc, keep)
	if err != nil {
		pr.log.Debug("proxy copy error", "proxy", pr.name, "uri", q.target, "error", err)
		return p.status, n, false
	}
	return p.status, n, keep
}

func (lc *loopConn) gatewayError(pr *proxyRT, err error, keep bool) (int, int64, bool) {
	var ne net.Error
	code := http.StatusBadGateway
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		code = http.StatusGatewayTimeout
	}
	pr.state.errors.Add(1)
	pr.log.Debug("proxy error", "proxy", pr.name, "uri", lc.req.target, "status", code, "error", err)
	lc.writeError(code, "", keep)
	return code, 0, keep
}

// editedFold reports whether the request header changes delete or set k (any case).
func editedFold(e *HeaderEdits, k string) bool {
	for _, d := range e.Delete {
		if strings.EqualFold(d, k) {
			return true
		}
	}
	for s := range e.Set {
		if strings.EqualFold(s, k) {
			return true
		}
	}
	return false
}

// writeRequestHead writes the outbound head as writeHead does for net/http's requests.
func (lc *loopConn) writeRequestHead(pr *proxyRT, w *bufio.Writer, rs *reqState, cookie string, hasCookie bool) {
	q := &lc.req
	rh := &pr.opts.RequestHeaders
	edits := len(rh.Delete) > 0 || len(rh.Set) > 0
	w.WriteString(q.method)
	w.WriteByte(' ')
	w.WriteString(q.target)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(q.host)
	w.WriteString("\r\n")
	for _, h := range q.hdrs {
		if edits && editedFold(rh, h.k) {
			continue
		}
		w.WriteString(h.k)
		w.WriteString(": ")
		w.WriteString(h.v)
		w.WriteString("\r\n")
	}
	if hasCookie {
		if cookie != "" && !(edits && editedFold(rh, "Cookie")) {
			writeHeader(w, "Cookie", cookie)
		}
	} else if !(edits && editedFold(rh, "Cookie")) {
		for _, c := range q.cookies {
			writeHeader(w, "Cookie", c)
		}
	}
	if q.te && !(edits && editedFold(rh, "Te")) {
		w.WriteString("Te: trailers\r\n")
	}
	fwdKeys := [4]string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Real-Ip"}
	for i, k := range fwdKeys {
		if !(edits && editedFold(rh, k)) {
			writeHeader(w, k, rs.fwd[i])
		}
	}
	endRequestHead(w, rh.Set, q.method)
}

// exchange sends the request to addr over a pooled connection and reads the final response
// head into lc.resp (1xx responses are forwarded to the client on the way). A kept-alive
// connection found closed is replaced, as h1Client.exchange does.
func (lc *loopConn) exchange(pr *proxyRT, hc *h1Client, addr string, rs *reqState, cookie string, hasCookie bool) (*h1Conn, error) {
	for attempt := 0; ; attempt++ {
		c, reused, err := hc.get(context.Background(), addr)
		if err != nil {
			return nil, err
		}
		err = lc.roundTrip(pr, hc, c, rs, cookie, hasCookie)
		if err == nil {
			return c, nil
		}
		c.c.Close()
		if reused && errors.Is(err, errStaleConn) && idempotent(lc.req.method) && attempt < 2 {
			continue
		}
		return nil, err
	}
}

func (lc *loopConn) roundTrip(pr *proxyRT, hc *h1Client, c *h1Conn, rs *reqState, cookie string, hasCookie bool) error {
	lc.writeRequestHead(pr, c.bw, rs, cookie, hasCookie)
	// The read deadline first: the flush waits for the answer under it (serverConn).
	if d := hc.headerTimeout; d > 0 {
		now := time.Now()
		if c.rdl.IsZero() || c.rdl.Sub(now) < d-slack(d) || c.rdl.Sub(now) > d {
			c.rdl = now.Add(d)
			c.c.SetReadDeadline(c.rdl)
		}
	} else if !c.rdl.IsZero() {
		c.rdl = time.Time{}
		c.c.SetReadDeadline(time.Time{})
	}
	sc, _ := c.c.(*serverConn)
	if sc != nil {
		sc.awaitAnswer()
	}
	err := c.bw.Flush()
	if sc != nil {
		sc.await = false // when the flush had nothing left to write
	}
	if err != nil {
		return &staleErr{err}
	}
	first := true
	for {
		head, err := readResponseHead(c.br)
		if err != nil {
			var ne net.Error
			if first && !errors.As(err, &ne) && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || isConnReset(err)) {
				return &staleErr{err}
			}
			return err
		}
		first = false
		p := &lc.resp
		if err := parseResponseHead(head, p); err != nil {
			return err
		}
		if p.status == http.StatusSwitchingProtocols {
			return errors.New("unexpected 101 Switching Protocols without an upgrade request")
		}
		if p.status >= 200 {
			return nil
		}
		// 1xx: to the client, then read on.
		lc.bw.WriteString(p.head)
		if err := lc.bw.Flush(); err != nil {
			return err
		}
	}
}

func isConnReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && !oe.Timeout()
}

// errBadResponse is a response head the proxy cannot forward.
var errBadResponse = errors.New("malformed response from server")

// readResponseHead reads a response head from br (it stays buffered: the caller discards it)
// and returns it as a string; the head must fit br's buffer.
func readResponseHead(br *bufio.Reader) (string, error) {
	for {
		if n := br.Buffered(); n > 0 {
			b, _ := br.Peek(n)
			if i := headEnd(b); i >= 0 {
				s := string(b[:i])
				br.Discard(i)
				return s, nil
			}
			if n >= br.Size() {
				return "", errBadResponse
			}
		}
		b, err := br.Peek(br.Buffered() + 1)
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return "", errBadResponse
			}
			if len(b) > 0 && errors.Is(err, io.EOF) {
				return "", io.ErrUnexpectedEOF
			}
			return "", err
		}
	}
}

// parseResponseHead parses a response head (status line and headers, through the blank line).
func parseResponseHead(head string, p *loopResp) error {
	hdrs, toks := p.hdrs[:0], p.connToks[:0]
	*p = loopResp{head: head, hdrs: hdrs, connToks: toks, length: -1}
	line, rest, ok := strings.Cut(head, "\r\n")
	if !ok {
		return errBadResponse
	}
	proto, line, ok := strings.Cut(line, " ")
	switch {
	case !ok || !validValue(line):
		return errBadResponse
	case proto == "HTTP/1.1":
	case proto == "HTTP/1.0":
		p.http10 = true
	default:
		return errBadResponse
	}
	code, _, _ := strings.Cut(line, " ")
	if len(code) != 3 {
		return errBadResponse
	}
	st, err := strconv.Atoi(code)
	if err != nil || st < 100 {
		return errBadResponse
	}
	p.status = st
	for {
		line, rest, ok = strings.Cut(rest, "\r\n")
		if !ok {
			return errBadResponse
		}
		if line == "" {
			break
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || !isToken(k) {
			return errBadResponse
		}
		v = trimOWS(v)
		if !validValue(v) {
			return errBadResponse
		}
		switch {
		case strings.EqualFold(k, "Content-Length"):
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 || v[0] < '0' || v[0] > '9' || p.length >= 0 && p.length != n {
				return errBadResponse
			}
			p.length = n
		case strings.EqualFold(k, "Date"):
			p.hasDate = true
		case strings.EqualFold(k, "Transfer-Encoding"):
			if !strings.EqualFold(v, "chunked") || p.chunked {
				return errBadResponse
			}
			p.chunked = true
			continue
		case strings.EqualFold(k, "Connection"):
			for tok := range strings.SplitSeq(v, ",") {
				switch tok = trimOWS(tok); {
				case strings.EqualFold(tok, "close"):
					p.close = true
				case strings.EqualFold(tok, "keep-alive"):
					p.hasKA = true
				case tok != "":
					p.connToks = append(p.connToks, tok)
				}
			}
			continue
		}
		p.hdrs = append(p.hdrs, hdr{k, v})
	}
	if p.chunked {
		p.length = -1
	}
	if p.http10 && !p.hasKA {
		p.close = true
	}
	return nil
}

var respHop = [...]string{"Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Upgrade"}

func (p *loopResp) skip(k string, rh *HeaderEdits) bool {
	for _, h := range respHop {
		if strings.EqualFold(h, k) {
			return true
		}
	}
	for _, t := range p.connToks {
		if strings.EqualFold(t, k) {
			return true
		}
	}
	return (len(rh.Delete) > 0 || len(rh.Set) > 0) && editedFold(rh, k)
}

// copyResponse writes the response head and body to the client and releases bc.
func (lc *loopConn) copyResponse(pr *proxyRT, rs *reqState, bc *h1Conn, keep bool) (n int64, _ bool, err error) {
	p := &lc.resp
	q := &lc.req
	bodyless := q.method == "HEAD" || p.status == 204 || p.status == 304
	length := p.length
	if bodyless {
		length = 0
	}
	untilClose := !bodyless && !p.chunked && length < 0
	reuse := !p.close && !untilClose
	chunkOut := !bodyless && length < 0 && !q.http10
	if !bodyless && length < 0 && q.http10 {
		keep = false
	}
	w := lc.bw
	w.WriteString("HTTP/1.1 ")
	_, status, _ := strings.Cut(p.head[:strings.IndexByte(p.head, '\r')], " ")
	w.WriteString(status)
	w.WriteString("\r\n")
	rh := &pr.opts.ResponseHeaders
	sticky := rs.setCookie && rs.server != nil
	var cacheControl []string
	for _, h := range p.hdrs {
		if p.skip(h.k, rh) || p.chunked && strings.EqualFold(h.k, "Content-Length") {
			continue
		}
		if sticky && strings.EqualFold(h.k, "Cache-Control") {
			cacheControl = append(cacheControl, h.v)
			continue
		}
		if strings.EqualFold(h.k, "Trailer") && !chunkOut {
			continue
		}
		w.WriteString(h.k)
		w.WriteString(": ")
		w.WriteString(h.v)
		w.WriteString("\r\n")
	}
	if sticky && !editedFold(rh, "Set-Cookie") {
		h := http.Header{}
		if len(cacheControl) > 0 {
			h["Cache-Control"] = cacheControl
		}
		setStickyCookie(h, rs.b.sticky.Cookie, pr.signer.encode(pr.name+"/"+rs.b.name, rs.server.name), rs.tls)
		for _, k := range [...]string{"Set-Cookie", "Cache-Control"} {
			if k == "Cache-Control" && editedFold(rh, k) {
				continue
			}
			for _, v := range h[k] {
				writeHeader(w, k, v)
			}
		}
	} else if sticky {
		for _, v := range cacheControl {
			writeHeader(w, "Cache-Control", v)
		}
	}
	for k, v := range rh.Set {
		writeHeader(w, http.CanonicalHeaderKey(k), v)
	}
	if !p.hasDate && !editedFold(rh, "Date") {
		// RFC 9110 §6.6.1: a recipient with a clock forwarding a response without Date adds
		// the time it received it (net/http does the same on the handed-off path).
		writeHeader(w, "Date", lc.loop.dateAt(time.Now()))
	}
	if chunkOut {
		w.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if !keep {
		w.WriteString("Connection: close\r\n")
	}
	w.WriteString("\r\n")

	br := bc.br
	release := func(ok bool) {
		if ok && reuse {
			bc.client.put(bc)
		} else {
			bc.c.Close()
		}
	}
	switch {
	case bodyless || length == 0:
		release(true)
	case length > 0:
		if int64(br.Buffered()) < length {
			// A body larger than what arrived with the head: no read deadline while it streams.
			bc.rdl = time.Time{}
			bc.c.SetReadDeadline(time.Time{})
		}
		n, err = lc.copyN(w, br, length)
		release(err == nil)
		if err != nil {
			return n, false, err
		}
	default:
		bc.rdl = time.Time{}
		bc.c.SetReadDeadline(time.Time{})
		var src io.Reader = br
		if p.chunked {
			src = httputil.NewChunkedReader(br)
		}
		n, err = lc.copyStream(w, src, br, chunkOut)
		if err == nil && p.chunked {
			err = copyTrailers(w, br, chunkOut)
		} else if err == nil && chunkOut {
			w.WriteString("0\r\n\r\n")
		}
		release(err == nil && p.chunked)
		if err != nil {
			return n, false, err
		}
	}
	return n, keep, nil
}

// copyN copies a body of known length; data that must wait for the server is flushed first.
func (lc *loopConn) copyN(w *bufio.Writer, br *bufio.Reader, length int64) (int64, error) {
	var n int64
	for n < length {
		if br.Buffered() == 0 {
			lc.writeDeadlineAtLeast(time.Now(), lc.current().proxy.opts.Timeouts.Client)
			if err := w.Flush(); err != nil {
				return n, err
			}
		}
		b, err := br.Peek(min(max(br.Buffered(), 1), int(min(length-n, int64(br.Size())))))
		if len(b) > 0 {
			w.Write(b)
			br.Discard(len(b))
			n += int64(len(b))
		}
		if err != nil && n < length {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
	}
	return n, nil
}

// copyStream copies a body until src ends, chunked towards the client with chunkOut, flushed
// whenever the server has nothing more buffered (server-sent events stay live).
func (lc *loopConn) copyStream(w *bufio.Writer, src io.Reader, br *bufio.Reader, chunkOut bool) (int64, error) {
	buf := copyBuffers.Get()
	defer copyBuffers.Put(buf)
	var n int64
	for {
		if br.Buffered() == 0 {
			lc.writeDeadlineAtLeast(time.Now(), lc.current().proxy.opts.Timeouts.Client)
			if err := w.Flush(); err != nil {
				return n, err
			}
		}
		nr, err := src.Read(buf)
		if nr > 0 {
			if chunkOut {
				w.WriteString(strconv.FormatInt(int64(nr), 16))
				w.WriteString("\r\n")
			}
			w.Write(buf[:nr])
			if chunkOut {
				w.WriteString("\r\n")
			}
			n += int64(nr)
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// copyTrailers copies the trailer section after a chunked body (forwarded with chunkOut).
func copyTrailers(w *bufio.Writer, br *bufio.Reader, chunkOut bool) error {
	if chunkOut {
		w.WriteString("0\r\n")
	}
	for i := 0; ; i++ {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if i > maxLoopHdrs {
			return errBadResponse
		}
		s := strings.TrimRight(string(line), "\r\n")
		if s == "" {
			if chunkOut {
				w.WriteString("\r\n")
			}
			return nil
		}
		k, v, ok := strings.Cut(s, ":")
		if !ok || !isToken(k) || !validValue(v) {
			return errBadResponse
		}
		if chunkOut {
			w.WriteString(s)
			w.WriteString("\r\n")
		}
	}
}

// stickyFromLines is stickyServer for the Cookie header lines of a parsed head.
func stickyFromLines(lines []string, name string, s cookieSigner, scope string) string {
	r := http.Request{Header: http.Header{"Cookie": lines}}
	return stickyServer(&r, name, s, scope)
}
