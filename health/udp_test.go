package health_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/health"
)

// serveUDP answers each datagram on pc with the datagrams reply returns (none: silence), until
// the test ends.
func serveUDP(t *testing.T, pc net.PacketConn, reply func([]byte) [][]byte) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			for _, r := range reply(buf[:n]) {
				_, _ = pc.WriteTo(r, from)
			}
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
}

func TestUDPChecker(t *testing.T) {
	l := newLab(t)
	serveUDP(t, listenPacket(t, l.backend, "udp", backendIP+":7"), func(b []byte) [][]byte {
		if string(b) == "PING" {
			return [][]byte{[]byte("PONG")}
		}
		return [][]byte{[]byte("ERR")}
	})
	serveUDP(t, listenPacket(t, l.backend, "udp", backendIP+":9"), func([]byte) [][]byte { return nil }) // discard
	echo := netip.MustParseAddrPort(backendIP + ":7")
	silent := netip.MustParseAddrPort(backendIP + ":9")
	closed := netip.MustParseAddrPort(backendIP + ":10")

	t.Run("reply", func(t *testing.T) {
		expect(t, run(t, health.UDP{Addr: echo, Dial: l.dial(), Send: "PING"}, 2*time.Second), health.OutcomeHealthy, health.ReasonNone)
		expect(t, run(t, health.UDP{Addr: echo, Dial: l.dial(), Send: "PING", Expect: "^PONG$"}, 2*time.Second), health.OutcomeHealthy, health.ReasonNone)
		expect(t, run(t, health.UDP{Addr: echo, Dial: l.dial(), Send: "HELLO", Expect: "^PONG$"}, 2*time.Second), health.OutcomeUnhealthy, health.ReasonReplyMismatch)
	})
	t.Run("no-reply-times-out", func(t *testing.T) {
		expect(t, run(t, health.UDP{Addr: silent, Dial: l.dial(), Send: "PING"}, 300*time.Millisecond), health.OutcomeUnhealthy, health.ReasonTimeout)
	})
	t.Run("closed-port-icmp", func(t *testing.T) {
		expect(t, run(t, health.UDP{Addr: closed, Dial: l.dial(), Send: "PING"}, 2*time.Second), health.OutcomeUnhealthy, health.ReasonICMPUnreachable)
	})
	t.Run("no-icmp-mode", func(t *testing.T) {
		p := health.UDP{Addr: silent, Dial: l.dial(), Send: "PING", NoReplyOK: true}
		expect(t, run(t, p, 300*time.Millisecond), health.OutcomeHealthy, health.ReasonNone)
		p.Addr = closed
		expect(t, run(t, p, 2*time.Second), health.OutcomeUnhealthy, health.ReasonICMPUnreachable)
		p.Addr = echo
		expect(t, run(t, p, 2*time.Second), health.OutcomeHealthy, health.ReasonNone)
		// Wait bounds the silence waited for, whatever the timeout.
		p.Addr, p.Wait = silent, 200*time.Millisecond
		start := time.Now()
		expect(t, run(t, p, 5*time.Second), health.OutcomeHealthy, health.ReasonNone)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("no-ICMP check with Wait 200ms took %v", d)
		}
	})
	t.Run("blackhole", func(t *testing.T) {
		p := health.UDP{Addr: netip.MustParseAddrPort(ghostIP + ":7"), Dial: l.dial(), Send: "PING"}
		expect(t, run(t, p, 300*time.Millisecond), health.OutcomeUnhealthy, health.ReasonTimeout)
	})
}
