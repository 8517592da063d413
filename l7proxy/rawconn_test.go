package l7proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fulcrum-lb/fulcrum/lab/require"
)

// rawPair listens on addr (port 0) as the proxy does, dials it from loopback and sends first
// (TCP_DEFER_ACCEPT holds silent connections back), and returns both ends.
func rawPair(t *testing.T, addr string, first string) (*rawConn, net.Conn, netip.AddrPort) {
	t.Helper()
	ln, err := listenFreebind(context.Background(), netip.MustParseAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	bound := addrPortOf(ln.Addr())
	port := bound.Port()
	cl, err := net.Dial("tcp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	if _, err := cl.Write([]byte(first)); err != nil {
		t.Fatal(err)
	}
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c := nc.(*rawConn)
	t.Cleanup(func() { c.Close() })
	return c, cl, bound
}

func TestRawConnServesWithoutPoller(t *testing.T) {
	c, cl, bound := rawPair(t, "127.0.0.1:0", "ping")
	if nd, err := unix.GetsockoptInt(c.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY); err != nil || nd == 0 {
		t.Errorf("accepted socket TCP_NODELAY = %d, %v; want it inherited from the listener", nd, err)
	}
	if got := addrPortOf(c.LocalAddr()); got != bound {
		t.Errorf("LocalAddr = %v, want the listener's %v", got, bound)
	}
	if got, want := addrPortOf(c.RemoteAddr()), addrPortOf(cl.LocalAddr()); got != want {
		t.Errorf("RemoteAddr = %v, want the client's %v", got, want)
	}
	c.SetReadDeadline(time.Now().Add(time.Minute))
	b := make([]byte, 64)
	n, err := c.Read(b)
	if err != nil || string(b[:n]) != "ping" {
		t.Fatalf("Read = %q, %v", b[:n], err)
	}
	if _, err := c.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if c.file.Load() != nil {
		t.Fatal("a read and a write that found the socket ready put it under the netpoller")
	}
	cl.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := io.ReadFull(cl, b[:4]); err != nil || string(b[:n]) != "pong" {
		t.Fatalf("client read %q, %v", b[:n], err)
	}

	// Nothing to read: the connection waits in the netpoller, with the deadline set before.
	go func() {
		time.Sleep(50 * time.Millisecond)
		cl.Write([]byte("again"))
	}()
	n, err = c.Read(b)
	if err != nil || string(b[:n]) != "again" {
		t.Fatalf("waiting Read = %q, %v", b[:n], err)
	}
	if c.file.Load() == nil {
		t.Fatal("a read that had to wait did not join the netpoller")
	}

	c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	_, err = c.Read(b)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline = %v, want a net.Error timeout", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Errorf("timeout error %T %v, want a *net.OpError read", err, err)
	}

	c.SetReadDeadline(time.Time{})
	cl.Close()
	if _, err := c.Read(b); err != io.EOF {
		t.Fatalf("Read after the client closed = %v, want io.EOF", err)
	}
}

func TestRawConnExpiredDeadlineBeforeWaiting(t *testing.T) {
	c, _, _ := rawPair(t, "127.0.0.1:0", "data")
	c.SetReadDeadline(time.Now().Add(-time.Second))
	_, err := c.Read(make([]byte, 8))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read with an expired deadline = %v, want a timeout though data is there", err)
	}
	c.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := c.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write with an expired deadline = %v, want a timeout", err)
	}
}

func TestRawConnCloseUnblocksRead(t *testing.T) {
	for _, waiting := range []bool{false, true} {
		c, _, _ := rawPair(t, "127.0.0.1:0", "x")
		b := make([]byte, 8)
		c.Read(b) // the "x"
		errc := make(chan error, 1)
		go func() {
			_, err := c.Read(b)
			errc <- err
		}()
		if waiting {
			time.Sleep(30 * time.Millisecond)
		}
		c.Close()
		select {
		case err := <-errc:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("Read ended by Close (waiting=%v) = %v, want net.ErrClosed", waiting, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Close did not end a blocked Read (waiting=%v)", waiting)
		}
		if err := c.Close(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("second Close = %v, want net.ErrClosed", err)
		}
		if _, err := c.Write(b); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Write after Close = %v, want net.ErrClosed", err)
		}
	}
}

func TestRawConnWildcardLocalAddr(t *testing.T) {
	c, _, bound := rawPair(t, "0.0.0.0:0", "x")
	want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), bound.Port())
	if got := addrPortOf(c.LocalAddr()); got != want {
		t.Errorf("LocalAddr on a wildcard listener = %v, want %v (getsockname)", got, want)
	}
}

func TestRawConnWriteWaitsWhenFull(t *testing.T) {
	c, cl, _ := rawPair(t, "127.0.0.1:0", "x")
	c.Read(make([]byte, 8))     // unread data would make Close reset the connection
	big := make([]byte, 16<<20) // more than the socket buffers hold: the write has to wait
	got := make(chan int64, 1)
	go func() {
		time.Sleep(100 * time.Millisecond) // let the socket buffers fill
		n, _ := io.Copy(io.Discard, cl)
		got <- n
	}()
	n, err := c.Write(big)
	if err != nil || n != len(big) {
		t.Fatalf("Write = %d, %v; want %d", n, err, len(big))
	}
	if c.file.Load() == nil {
		t.Error("a write that filled the socket did not join the netpoller")
	}
	c.Close()
	if n := <-got; n != int64(len(big)) {
		t.Errorf("client got %d bytes, want %d", n, len(big))
	}
}

func TestRawListenerAcceptAfterClose(t *testing.T) {
	ln, err := listenFreebind(context.Background(), netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	ln.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("accept on a closed listener = %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("closing the listener did not end the accept")
	}
}

// TestRawConnReadsWhatIsLeft: under the netpoller, small reads take what arrived in order and
// nothing sent is ever left unread; a read on an empty socket waits for new data.
func TestRawConnReadsWhatIsLeft(t *testing.T) {
	c, cl, _ := rawPair(t, "127.0.0.1:0", "x")
	b := make([]byte, 4)
	if n, err := c.Read(b); err != nil || string(b[:n]) != "x" {
		t.Fatalf("first Read = %q, %v", b[:n], err)
	}
	go func() {
		time.Sleep(30 * time.Millisecond)
		cl.Write([]byte("0123456789"))
	}()
	var got []byte
	for len(got) < 10 {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(b)
		if err != nil {
			t.Fatalf("Read after %q: %v", got, err)
		}
		got = append(got, b[:n]...)
	}
	if string(got) != "0123456789" {
		t.Fatalf("read %q", got)
	}
	go func() {
		time.Sleep(30 * time.Millisecond)
		cl.Write([]byte("later"))
	}()
	n, err := c.Read(make([]byte, 64))
	if err != nil || n != 5 {
		t.Fatalf("Read that waits for new data = %d, %v", n, err)
	}
}

// TestRawListenerIPv6: an IPv6 listener accepts, and the peer address is decoded from the
// kernel's sockaddr (address and port).
func TestRawListenerIPv6(t *testing.T) {
	ln, err := listenFreebind(context.Background(), netip.MustParseAddrPort("[::1]:0"))
	if err != nil {
		require.Missing(t, "an IPv6 loopback ("+err.Error()+")", "")
	}
	defer ln.Close()
	cl, err := net.Dial("tcp6", ln.Addr().String())
	if err != nil {
		require.Missing(t, "an IPv6 loopback ("+err.Error()+")", "")
	}
	defer cl.Close()
	cl.Write([]byte("x"))
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, want := addrPortOf(c.RemoteAddr()), addrPortOf(cl.LocalAddr()); got != want {
		t.Errorf("RemoteAddr = %v, want %v", got, want)
	}
	if got, want := addrPortOf(c.LocalAddr()), addrPortOf(ln.Addr()); got != want {
		t.Errorf("LocalAddr = %v, want %v", got, want)
	}
}
