package l7proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// serverConnPair dials a loopback listener through h1Client (so the connection is a
// serverConn) and returns it with the server's end.
func serverConnPair(t *testing.T) (*serverConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	hc := newH1Client(DefaultTimeouts())
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	c, _, err := hc.get(context.Background(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, ok := c.c.(*serverConn)
	if !ok {
		t.Fatalf("pooled connection is %T, want *serverConn", c.c)
	}
	srv := <-acc
	t.Cleanup(func() { sc.Close(); srv.Close() })
	return sc, srv
}

// TestServerConnWriteAwaitsAnswer: a write armed with awaitAnswer returns once the server has
// answered, and the read that follows finds the answer.
func TestServerConnWriteAwaitsAnswer(t *testing.T) {
	sc, srv := serverConnPair(t)
	go func() {
		b := make([]byte, 3)
		io.ReadFull(srv, b)
		time.Sleep(100 * time.Millisecond)
		srv.Write([]byte("answer"))
	}()
	sc.SetReadDeadline(time.Now().Add(10 * time.Second))
	sc.awaitAnswer()
	start := time.Now()
	if n, err := sc.Write([]byte("req")); n != 3 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if d := time.Since(start); d < 80*time.Millisecond {
		t.Errorf("Write returned after %v, before the server answered (100 ms)", d)
	}
	b := make([]byte, 16)
	if n, err := sc.Read(b); err != nil || string(b[:n]) != "answer" {
		t.Fatalf("Read = %q, %v", b[:n], err)
	}
	// Unarmed, a write returns at once.
	start = time.Now()
	if _, err := sc.Write([]byte("x")); err != nil || time.Since(start) > time.Second {
		t.Fatalf("plain Write: %v after %v", err, time.Since(start))
	}
}

// TestServerConnAwaitEnds: the wait ends with the read deadline, and when the server closes;
// the read that follows reports it.
func TestServerConnAwaitEnds(t *testing.T) {
	sc, _ := serverConnPair(t)
	sc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	sc.awaitAnswer()
	if _, err := sc.Write([]byte("req")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	_, err := sc.Read(make([]byte, 8))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read after an unanswered request = %v, want a timeout", err)
	}

	sc2, srv2 := serverConnPair(t)
	go func() {
		time.Sleep(50 * time.Millisecond)
		srv2.Close()
	}()
	sc2.SetReadDeadline(time.Now().Add(10 * time.Second))
	sc2.awaitAnswer()
	sc2.Write([]byte("req"))
	if _, err := sc2.Read(make([]byte, 8)); err == nil {
		t.Fatal("Read after the server closed: no error")
	}
}

// TestServerConnAwaitLargeWrite: a request larger than the socket buffers is written whole
// (the rest after EAGAIN as any write), then the answer is read.
func TestServerConnAwaitLargeWrite(t *testing.T) {
	sc, srv := serverConnPair(t)
	big := make([]byte, 16<<20)
	go func() {
		time.Sleep(50 * time.Millisecond)
		io.ReadFull(srv, make([]byte, len(big)))
		srv.Write([]byte("ok"))
	}()
	sc.SetDeadline(time.Now().Add(30 * time.Second))
	sc.awaitAnswer()
	if n, err := sc.Write(big); n != len(big) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	b := make([]byte, 8)
	if n, err := io.ReadFull(sc, b[:2]); err != nil || string(b[:n]) != "ok" {
		t.Fatalf("Read = %q, %v", b[:n], err)
	}
}
