package l7proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawConn is an accepted client connection kept as a bare nonblocking descriptor until it
// first has to wait. Go's own accept spends four system calls per connection besides accept4
// itself (getsockname for LocalAddr, setsockopt TCP_NODELAY, epoll_ctl ADD on accept and DEL
// on close). With TCP_DEFER_ACCEPT the request is already there when the connection is
// accepted, so a client that sends one request and closes (a new connection per request) is
// served by accept4, read, write and close alone: the descriptor joins Go's netpoller, through
// an *os.File, only when a read or write finds nothing to do (EAGAIN). TCP_NODELAY is
// inherited from the listening socket, and the local address is the listener's when it is
// bound to one.
//
// Raw reads and writes run under mu so that a Close from another goroutine (shutdown, an idle
// connection closed by net/http) cannot free the descriptor number while a raw call uses it;
// they never block, so mu is held only for one system call. Errors are *net.OpError as a
// *net.TCPConn's would be, so callers see the same timeouts, net.ErrClosed and io.EOF.
type rawConn struct {
	mu     sync.Mutex
	fd     int
	closed atomic.Bool // set under mu
	rdl    time.Time   // deadlines, kept here until file exists
	wdl    time.Time
	file   atomic.Pointer[os.File] // set (under mu) once the connection has waited
	frc    syscall.RawConn         // file's, set before file

	// A polled Write: raw writes inside the file's RawConn.Write (which holds the descriptor
	// and waits for room), its state kept here under wmu so that it allocates nothing.
	wmu     sync.Mutex
	writeFn func(uintptr) bool // writeRaw, bound once
	wbuf    []byte
	wdone   int
	werr    error

	local  atomic.Pointer[net.TCPAddr] // nil: getsockname on first use
	remote *net.TCPAddr
}

var errNotTCP = errors.New("not a TCP address")

// newRawConn wraps an accepted descriptor; local is the listener's address when it is bound
// to one (shared, never modified), else nil.
func newRawConn(fd int, remote netip.AddrPort, local *net.TCPAddr) *rawConn {
	c := &rawConn{fd: fd, remote: net.TCPAddrFromAddrPort(remote)}
	if local != nil {
		c.local.Store(local)
	}
	return c
}

func sockaddrAddrPort(sa syscall.Sockaddr) (netip.AddrPort, bool) {
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)), true
	case *syscall.SockaddrInet6:
		addr := netip.AddrFrom16(a.Addr)
		if a.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(a.ZoneId)); err == nil {
				addr = addr.WithZone(ifi.Name)
			}
		}
		return netip.AddrPortFrom(addr, uint16(a.Port)), true
	}
	return netip.AddrPort{}, false
}

func (c *rawConn) opErr(op string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if errors.Is(err, os.ErrClosed) {
		err = net.ErrClosed
	}
	oe := &net.OpError{Op: op, Net: "tcp", Addr: c.remote, Err: err}
	if l := c.local.Load(); l != nil {
		oe.Source = l
	}
	return oe
}

// toFile puts the descriptor under Go's netpoller with the deadlines set so far. mu is held.
func (c *rawConn) toFile() *os.File {
	f := os.NewFile(uintptr(c.fd), "tcp")
	if !c.rdl.IsZero() {
		f.SetReadDeadline(c.rdl)
	}
	if !c.wdl.IsZero() {
		f.SetWriteDeadline(c.wdl)
	}
	c.frc, _ = f.SyscallConn() // fails only for a nil file
	c.writeFn = c.writeRaw
	c.file.Store(f)
	return f
}

// writePolled writes b under the netpoller with raw writes, waiting for room when the socket
// buffer is full.
func (c *rawConn) writePolled(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf, c.wdone, c.werr = b, 0, nil
	err := c.frc.Write(c.writeFn)
	n := c.wdone
	if err == nil {
		err = c.werr
	} else if c.closed.Load() {
		err = net.ErrClosed // RawConn.Write's error for a closed file is poll's own
	}
	c.wbuf = nil
	return n, c.opErr("write", err)
}

// writeRaw is writePolled's RawConn.Write callback: false asks to wait for room.
func (c *rawConn) writeRaw(fd uintptr) bool {
	for c.wdone < len(c.wbuf) {
		n, err := rawWrite(int(fd), c.wbuf[c.wdone:])
		c.wdone += n
		if err == unix.EAGAIN {
			return false
		}
		if err != nil {
			c.werr = os.NewSyscallError("write", err)
			return true
		}
	}
	return true
}

func expired(dl time.Time) bool { return !dl.IsZero() && !time.Now().Before(dl) }

func (c *rawConn) Read(b []byte) (int, error) {
	if f := c.file.Load(); f != nil {
		n, err := f.Read(b)
		return n, c.opErr("read", err)
	}
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		return 0, c.opErr("read", net.ErrClosed)
	}
	f := c.file.Load()
	if f == nil {
		if expired(c.rdl) {
			c.mu.Unlock()
			return 0, c.opErr("read", os.ErrDeadlineExceeded)
		}
		n, err := rawRead(c.fd, b)
		switch {
		case err == nil && n == 0 && len(b) > 0:
			c.mu.Unlock()
			return 0, io.EOF
		case err == nil:
			c.mu.Unlock()
			return n, nil
		case err != unix.EAGAIN:
			c.mu.Unlock()
			return 0, c.opErr("read", os.NewSyscallError("read", err))
		}
		f = c.toFile()
	}
	c.mu.Unlock()
	n, err := f.Read(b)
	return n, c.opErr("read", err)
}

// readNoWait reads what the socket holds without waiting: errWouldBlock when it holds
// nothing, and from then on the descriptor is in the netpoller (polled).
func (c *rawConn) readNoWait(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed.Load():
		return 0, c.opErr("read", net.ErrClosed)
	case c.file.Load() != nil:
		return 0, errWouldBlock
	case expired(c.rdl):
		return 0, c.opErr("read", os.ErrDeadlineExceeded)
	}
	n, err := rawRead(c.fd, b)
	switch {
	case err == unix.EAGAIN:
		c.toFile()
		return 0, errWouldBlock
	case err != nil:
		return 0, c.opErr("read", os.NewSyscallError("read", err))
	case n == 0 && len(b) > 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *rawConn) Write(b []byte) (int, error) {
	if c.file.Load() != nil {
		return c.writePolled(b)
	}
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		return 0, c.opErr("write", net.ErrClosed)
	}
	done := 0
	f := c.file.Load()
	if f == nil {
		if expired(c.wdl) {
			c.mu.Unlock()
			return 0, c.opErr("write", os.ErrDeadlineExceeded)
		}
		for done < len(b) {
			n, err := rawWrite(c.fd, b[done:])
			if n > 0 {
				done += n
			}
			if err == unix.EAGAIN {
				break
			}
			if err != nil {
				c.mu.Unlock()
				return done, c.opErr("write", os.NewSyscallError("write", err))
			}
		}
		if done == len(b) {
			c.mu.Unlock()
			return done, nil
		}
		f = c.toFile()
	}
	c.mu.Unlock()
	n, err := f.Write(b[done:])
	return done + n, c.opErr("write", err)
}

func (c *rawConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return c.opErr("close", net.ErrClosed)
	}
	c.closed.Store(true)
	if f := c.file.Load(); f != nil {
		return c.opErr("close", f.Close())
	}
	return c.opErr("close", os.NewSyscallError("close", rawClose(c.fd)))
}

func (c *rawConn) LocalAddr() net.Addr {
	if l := c.local.Load(); l != nil {
		return l
	}
	c.mu.Lock() // the descriptor stays open while getsockname uses it
	defer c.mu.Unlock()
	if !c.closed.Load() {
		if sa, err := syscall.Getsockname(c.fd); err == nil {
			if ap, ok := sockaddrAddrPort(sa); ok {
				l := net.TCPAddrFromAddrPort(ap)
				c.local.Store(l)
				return l
			}
		}
	}
	return &net.TCPAddr{}
}

func (c *rawConn) RemoteAddr() net.Addr { return c.remote }

func (c *rawConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *rawConn) SetReadDeadline(t time.Time) error {
	return c.setDeadline(&c.rdl, t, (*os.File).SetReadDeadline)
}

func (c *rawConn) SetWriteDeadline(t time.Time) error {
	return c.setDeadline(&c.wdl, t, (*os.File).SetWriteDeadline)
}

func (c *rawConn) setDeadline(dl *time.Time, t time.Time, set func(*os.File, time.Time) error) error {
	if f := c.file.Load(); f != nil {
		return c.opErr("set", set(f, t))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return c.opErr("set", net.ErrClosed)
	}
	if f := c.file.Load(); f != nil {
		return c.opErr("set", set(f, t))
	}
	*dl = t
	return nil
}

// rawListener is a listening TCP socket whose Accept returns rawConns. The descriptor waits
// for connections in Go's netpoller through an *os.File.
type rawListener struct {
	file   *os.File
	rc     syscall.RawConn
	addr   netip.AddrPort // as bound (the port filled in)
	local  *net.TCPAddr   // addr when it is not a wildcard (the connections' local address)
	closed atomic.Bool

	// One Accept at a time uses the accept state, so that accepting allocates nothing but
	// the connection.
	mu       sync.Mutex
	acceptFn func(uintptr) bool // l.accept4, bound once
	nfd      int
	peer     netip.AddrPort
	aerr     syscall.Errno
}

// listenBacklog is passed to listen(2); the kernel caps it at net.core.somaxconn, as Go's own
// listeners are capped.
const listenBacklog = 1<<16 - 1

func newRawListener(addr netip.AddrPort) (_ *rawListener, err error) {
	family, v6 := unix.AF_INET, addr.Addr().Is6()
	var sa unix.Sockaddr
	if v6 {
		family = unix.AF_INET6
		a := &unix.SockaddrInet6{Port: int(addr.Port()), Addr: addr.Addr().As16()}
		if z := addr.Addr().Zone(); z != "" {
			ifi, err := net.InterfaceByName(z)
			if err != nil {
				return nil, fmt.Errorf("zone %q: %w", z, err)
			}
			a.ZoneId = uint32(ifi.Index)
		}
		sa = a
	} else {
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
		}
	}()
	// As net.Listen: SO_REUSEADDR, and an IPv6 socket for IPv6 only.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return nil, os.NewSyscallError("setsockopt", err)
	}
	if v6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return nil, os.NewSyscallError("setsockopt", err)
		}
	}
	if err := listenSockopts(fd, v6); err != nil {
		return nil, fmt.Errorf("set socket options: %w", os.NewSyscallError("setsockopt", err))
	}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, os.NewSyscallError("bind", err)
	}
	if err := unix.Listen(fd, listenBacklog); err != nil {
		return nil, os.NewSyscallError("listen", err)
	}
	bound, err := syscall.Getsockname(fd)
	if err != nil {
		return nil, os.NewSyscallError("getsockname", err)
	}
	ap, ok := sockaddrAddrPort(bound)
	if !ok {
		return nil, errNotTCP
	}
	f := os.NewFile(uintptr(fd), "tcp-listener")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	l := &rawListener{file: f, rc: rc, addr: ap}
	if !ap.Addr().IsUnspecified() {
		l.local = net.TCPAddrFromAddrPort(ap)
	}
	l.acceptFn = l.accept4
	return l, nil
}

// accept4 is the RawConn.Read callback of Accept: accept4(2) called directly, with the peer
// decoded from the kernel's sockaddr in place. (x/sys/unix's Accept4 also asks
// getsockopt(SO_PROTOCOL) on every call to tell L2TP sockets apart; syscall's allocates the
// address.)
func (l *rawListener) accept4(fd uintptr) bool {
	var rsa syscall.RawSockaddrAny
	r, e := rawAccept4(fd, &rsa)
	l.nfd, l.aerr, l.peer = r, e, netip.AddrPort{}
	if e != 0 {
		return e != syscall.EAGAIN
	}
	switch rsa.Addr.Family {
	case syscall.AF_INET:
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&rsa))
		port := (*[2]byte)(unsafe.Pointer(&sa.Port)) // network byte order
		l.peer = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(port[0])<<8|uint16(port[1]))
	case syscall.AF_INET6:
		sa := (*syscall.RawSockaddrInet6)(unsafe.Pointer(&rsa))
		port := (*[2]byte)(unsafe.Pointer(&sa.Port))
		addr := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			if ifi, err := net.InterfaceByIndex(int(sa.Scope_id)); err == nil {
				addr = addr.WithZone(ifi.Name)
			}
		}
		l.peer = netip.AddrPortFrom(addr, uint16(port[0])<<8|uint16(port[1]))
	}
	return true
}

// Accept waits for the next connection. Aborted handshakes are skipped as Go's Accept skips
// them. After Close it returns an error that is net.ErrClosed.
func (l *rawListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		err := l.rc.Read(l.acceptFn)
		switch {
		case l.closed.Load():
			if err == nil && l.aerr == 0 {
				unix.Close(l.nfd)
			}
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: net.ErrClosed}
		case err != nil:
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: err}
		case l.aerr == syscall.EINTR || l.aerr == syscall.ECONNABORTED:
			continue
		case l.aerr != 0:
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: os.NewSyscallError("accept4", l.aerr)}
		case !l.peer.IsValid():
			unix.Close(l.nfd) // not an IP peer: cannot happen on a TCP socket
			continue
		}
		return newRawConn(l.nfd, l.peer, l.local), nil
	}
}

func (l *rawListener) Close() error {
	l.closed.Store(true)
	return l.file.Close()
}

func (l *rawListener) Addr() net.Addr { return net.TCPAddrFromAddrPort(l.addr) }
