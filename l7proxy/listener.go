package l7proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// deferAcceptSeconds bounds how long the kernel holds a connection that sent nothing before
// accepting it anyway (TCP_DEFER_ACCEPT).
const deferAcceptSeconds = 5

// listenFreebind binds a TCP listener with IP_FREEBIND (IPV6_FREEBIND for IPv6), so an address
// not (yet) configured on the host, such as a VRRP virtual IP on a backup node, binds at once.
// The socket is made here rather than by net.Listen so that connections are accepted raw
// (rawListener, rawconn.go). ctx is unused: socket, bind and listen do not block.
func listenFreebind(_ context.Context, addr netip.AddrPort) (net.Listener, error) {
	ln, err := newRawListener(addr)
	if err != nil {
		return nil, fmt.Errorf("listen %v: %w", addr, err)
	}
	return ln, nil
}

// listenSockopts are the listening socket's options besides SO_REUSEADDR (and IPV6_V6ONLY),
// which net.Listen would also set.
func listenSockopts(fd int, v6 bool) error {
	var err error
	if !v6 {
		err = unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_FREEBIND, 1)
	} else {
		err = unix.SetsockoptInt(fd, unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
	}
	if err == nil {
		// TCP_DEFER_ACCEPT (nginx's `deferred`, HAProxy's defer-accept): the kernel hands a
		// connection over once its first bytes are there, so serving it starts with a read
		// that finds data instead of one that parks until they come. HTTP, TLS and the PROXY
		// protocol all speak first from the client. The value is seconds; after it the kernel
		// hands the connection over anyway, empty.
		err = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, deferAcceptSeconds)
	}
	if err == nil {
		// TCP_NODELAY, as Go sets on every connection it accepts: Linux copies it to accepted
		// sockets, so the raw accept needs no setsockopt per connection.
		err = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}
	// No SO_KEEPALIVE: no TCP keep-alive probes on client connections (HAProxy's default,
	// no clitcpka); the idle and client timeouts bound them.
	return err
}

// socket is a bound listening socket. It outlives generations: Apply keeps the socket of an
// address that stays. One goroutine accepts, applies the current listener's options to every
// connection (limits, PROXY protocol, TLS) and starts it on the socket's connection loop
// (h1server.go), which hands what it does not serve to the socket's http.Server through a
// frontListener. The listener is taken per connection, so a connection accepted before a
// reload keeps the connection-level settings it was accepted with.
type socket struct {
	addr  netip.AddrPort
	ln    net.Listener
	done  chan struct{}
	ready chan struct{} // closed when the socket first gets a listener
	once  sync.Once
	wg    sync.WaitGroup

	// cur is the listener of the active generation on this socket: the connection loop and
	// the long-lived server below route every request and accept every connection by it, so
	// a reload swaps it without shutting down the server that owns the socket's connections.
	cur atomic.Pointer[socketCur]
	// The server of the socket and the settings it was built with; guarded by Proxy.mu. It
	// is replaced only when settings net/http reads from http.Server change.
	srv   *http.Server
	front *frontListener
	key   serverSettings

	// loop serves HTTP/1 connections first; handoff carries the connections it gives to the
	// socket's current server.
	loop    *connLoop
	handoff chan net.Conn
}

// socketCur is the current listener of a socket; changed is closed when it is replaced.
type socketCur struct {
	l       *listenerRT
	changed chan struct{}
}

// setCurrent makes l the socket's listener. Proxy.mu is held.
func (s *socket) setCurrent(l *listenerRT) {
	old := s.cur.Swap(&socketCur{l: l, changed: make(chan struct{})})
	if old != nil {
		close(old.changed)
	} else {
		close(s.ready)
	}
}

func newSocket(addr netip.AddrPort, ln net.Listener, log *slog.Logger) *socket {
	s := &socket{addr: addr, ln: ln, done: make(chan struct{}), ready: make(chan struct{}), handoff: make(chan net.Conn)}
	s.loop = newConnLoop(s)
	s.wg.Go(func() { s.acceptLoop(log) })
	return s
}

func (s *socket) acceptLoop(log *slog.Logger) {
	select {
	case <-s.ready:
	case <-s.done:
		return
	}
	var backoff time.Duration
	for {
		// A proxy's max_connections: wait for a slot before accepting (excess connections
		// wait in the kernel's backlog).
		cur := s.cur.Load()
		sem := cur.l.proxy.connSem
		if sem != nil {
			select {
			case sem <- struct{}{}:
			case <-cur.changed:
				continue
			case <-s.done:
				return
			}
		}
		c, err := s.ln.Accept()
		if err != nil {
			if sem != nil {
				<-sem
			}
			select {
			case <-s.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: back off as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			log.Warn("accept failed", "address", s.addr.String(), "error", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-s.done:
				return
			}
			continue
		}
		backoff = 0
		l := s.cur.Load().l
		if l.proxy.connSem != sem {
			// Reloaded while accepting: the slot is the new proxy's to give.
			if sem != nil {
				<-sem
			}
			if sem = l.proxy.connSem; sem != nil {
				select {
				case sem <- struct{}{}:
				case <-s.done:
					c.Close()
					return
				}
			}
		}
		s.startConn(c, l, sem)
	}
}

// startConn starts an accepted connection on the connection loop.
func (s *socket) startConn(raw net.Conn, l *listenerRT, sem chan struct{}) {
	c := &clientConn{Conn: raw, l: l, sem: sem}
	l.proxy.state.activeConns.Add(1)
	l.proxy.state.totalConns.Add(1)
	var nc net.Conn = c
	var tc *tls.Conn
	if l.tls != nil {
		tc = tls.Server(c, l.tls.cfg)
		nc = tc
	}
	if !s.loop.start(nc, c, tc) {
		nc.Close()
	}
}

// close stops accepting and closes the socket; connections already handed out are unaffected.
func (s *socket) close() {
	s.once.Do(func() {
		close(s.done)
		s.ln.Close()
	})
	s.wg.Wait()
}

// frontListener is a server's view of a socket: the connections the connection loop hands
// over. It stops (without closing the socket) when the server is retired.
type frontListener struct {
	sock *socket
	done chan struct{}
	once sync.Once
}

func (f *frontListener) Accept() (net.Conn, error) {
	select {
	case c := <-f.sock.handoff:
		return c, nil
	case <-f.done:
		return nil, net.ErrClosed
	}
}

func (f *frontListener) Close() error {
	f.once.Do(func() { close(f.done) })
	return nil
}

func (f *frontListener) Addr() net.Addr { return f.sock.ln.Addr() }

// clientConn is an accepted client connection. With PROXY protocol its first use (Read,
// RemoteAddr, LocalAddr; in the connection's own goroutine) reads the header under the
// header timeout; the client address is then the one it names. Connection limits per client
// address are taken there too.
type clientConn struct {
	net.Conn
	l   *listenerRT
	sem chan struct{}

	initOnce      sync.Once
	initErr       error
	br            *bufio.Reader
	remote, local net.Addr
	client        netip.AddrPort           // the client per PROXY header, or the peer
	clientStr     string                   // client.Addr().String()
	localAP       netip.AddrPort           // addrPortOf(local)
	cur           atomic.Pointer[reqState] // the HTTP/1 request being served
	limited       bool                     // holds a per-client connection slot
	closed        atomic.Bool
}

func (c *clientConn) init() error {
	c.initOnce.Do(func() {
		c.remote, c.local = c.Conn.RemoteAddr(), c.Conn.LocalAddr()
		c.client = addrPortOf(c.remote)
		if c.l.opts.ProxyProtocol {
			if d := c.l.proxy.opts.Timeouts.Header; d > 0 {
				c.Conn.SetReadDeadline(time.Now().Add(d))
			}
			c.br = bufio.NewReaderSize(c.Conn, 512)
			h, err := readProxyHeader(c.br)
			c.Conn.SetReadDeadline(time.Time{})
			if err != nil {
				c.initErr = err
				c.l.proxy.state.errors.Add(1)
				c.l.proxy.log.Debug("PROXY protocol header refused", "proxy", c.l.proxy.name,
					"listener", c.l.opts.Name, "peer", c.remote.String(), "error", err)
				return
			}
			if !h.Local {
				c.client = h.Src
				c.remote = net.TCPAddrFromAddrPort(h.Src)
				c.local = net.TCPAddrFromAddrPort(h.Dst)
			}
		}
		c.clientStr = c.client.Addr().String()
		c.localAP = addrPortOf(c.local)
		if rl := c.l.proxy.limiter; rl != nil {
			if !rl.acquireConn(c.client.Addr()) {
				c.initErr = errors.New("too many connections from this client")
				c.l.proxy.state.rateLimited.Add(1)
				return
			}
			c.limited = true
		}
	})
	return c.initErr
}

func (c *clientConn) Read(b []byte) (int, error) {
	if err := c.init(); err != nil {
		return 0, err
	}
	if c.br != nil {
		return c.br.Read(b)
	}
	return c.Conn.Read(b)
}

func (c *clientConn) Write(b []byte) (int, error) {
	if err := c.init(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

func (c *clientConn) RemoteAddr() net.Addr {
	c.init()
	return c.remote
}

func (c *clientConn) LocalAddr() net.Addr {
	c.init()
	return c.local
}

func (c *clientConn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.l.proxy.state.activeConns.Add(-1)
		if c.sem != nil {
			<-c.sem
		}
		// initOnce has run or never will: a Close racing init is ordered by Once.
		c.initOnce.Do(func() { c.initErr = net.ErrClosed })
		if c.limited {
			c.l.proxy.limiter.releaseConn(c.client.Addr())
		}
	}
	return err
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		ap := t.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// connOf finds the clientConn under a connection handed to http.Server.
func connOf(c net.Conn) *clientConn {
	if r, ok := c.(*replayConn); ok {
		return r.cc
	}
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	cc, _ := c.(*clientConn)
	return cc
}
