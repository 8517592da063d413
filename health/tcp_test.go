package health_test

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/fulcrum-lb/fulcrum/health"
)

func TestTCPChecker(t *testing.T) {
	l := newLab(t)
	// :8080 accepts and, for a line "PING", answers "+PONG"; other lines get "-ERR".
	peers := make(chan netip.AddrPort, 16)
	serveTCP(t, listen(t, l.backend, "tcp", backendIP+":8080"), func(c net.Conn) {
		peers <- netip.MustParseAddrPort(c.RemoteAddr().String())
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return
		}
		if line == "PING\r\n" {
			io.WriteString(c, "+PONG\r\n")
		} else {
			io.WriteString(c, "-ERR unknown\r\n")
		}
	})
	// :8081 sends a banner and keeps the connection open.
	serveTCP(t, listen(t, l.backend, "tcp", backendIP+":8081"), func(c net.Conn) {
		io.WriteString(c, "220 hello\r\n")
		io.Copy(io.Discard, c)
	})
	be := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr(backendIP), port) }
	drain := func() {
		for len(peers) > 0 {
			<-peers
		}
	}

	t.Run("connect", func(t *testing.T) {
		expect(t, run(t, health.TCP{Addr: be(8080), Dial: l.dial()}, 2*time.Second), health.OutcomeHealthy, health.ReasonNone)
	})
	t.Run("refused", func(t *testing.T) {
		expect(t, run(t, health.TCP{Addr: be(8099), Dial: l.dial()}, 2*time.Second), health.OutcomeUnhealthy, health.ReasonRefused)
	})
	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		r := run(t, health.TCP{Addr: netip.MustParseAddrPort(ghostIP + ":80"), Dial: l.dial()}, 300*time.Millisecond)
		expect(t, r, health.OutcomeUnhealthy, health.ReasonTimeout)
		if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
			t.Errorf("timed out after %v, want about 300ms", d)
		}
	})
	t.Run("send-expect", func(t *testing.T) {
		p := health.TCP{Addr: be(8080), Dial: l.dial(), Send: "PING\r\n", Expect: `^\+PONG`}
		expect(t, run(t, p, 2*time.Second), health.OutcomeHealthy, health.ReasonNone)
		p.Send = "HELLO\r\n"
		expect(t, run(t, p, 2*time.Second), health.OutcomeUnhealthy, health.ReasonReplyMismatch)
	})
	t.Run("banner-no-match-times-out", func(t *testing.T) {
		p := health.TCP{Addr: be(8081), Dial: l.dial(), Expect: `^220 `}
		expect(t, run(t, p, 2*time.Second), health.OutcomeHealthy, health.ReasonNone)
		p.Expect = `^421`
		expect(t, run(t, p, 300*time.Millisecond), health.OutcomeUnhealthy, health.ReasonTimeout)
	})
	t.Run("check-address-and-port", func(t *testing.T) {
		d := l.dial()
		d.Port = 8080
		expect(t, run(t, health.TCP{Addr: be(9), Dial: d}, 2*time.Second), health.OutcomeHealthy, health.ReasonNone)
		d.Addr = netip.MustParseAddr(backendIP)
		expect(t, run(t, health.TCP{Addr: netip.MustParseAddrPort("203.0.113.7:80"), Dial: d}, 2*time.Second), health.OutcomeHealthy, health.ReasonNone)
	})
	t.Run("source-address", func(t *testing.T) {
		if err := l.lb.AddAddr("eth0", "192.0.2.11/24"); err != nil {
			t.Fatal(err)
		}
		drain()
		d := l.dial()
		d.Source = netip.MustParseAddr("192.0.2.11")
		expect(t, run(t, health.TCP{Addr: be(8080), Dial: d}, 2*time.Second), health.OutcomeHealthy, health.ReasonNone)
		// The backend records peers asynchronously, so a connection from
		// an earlier subtest (from 192.0.2.10) may still arrive after
		// drain(); wait for ours, which never comes if the bind failed.
		var seen []netip.Addr
		for deadline := time.After(2 * time.Second); ; {
			select {
			case p := <-peers:
				seen = append(seen, p.Addr())
				if p.Addr() != d.Source {
					continue
				}
			case <-deadline:
				t.Errorf("backend never saw the check from %v; saw %v", d.Source, seen)
			}
			break
		}
		d.Source = netip.MustParseAddr("192.0.2.12") // not lb's
		expect(t, run(t, health.TCP{Addr: be(8080), Dial: d}, 2*time.Second), health.OutcomeError, health.ReasonLocal)
	})
	t.Run("bind-to-device", func(t *testing.T) {
		d := l.dial()
		d.Interface = "eth0"
		expect(t, run(t, health.TCP{Addr: be(8080), Dial: d}, 2*time.Second), health.OutcomeHealthy, health.ReasonNone)
		d.Interface = "nosuch0"
		r := run(t, health.TCP{Addr: be(8080), Dial: d}, 2*time.Second)
		expect(t, r, health.OutcomeError, health.ReasonLocal)
		if !errorsIs(r.Err, unix.ENODEV) {
			t.Errorf("error %v is not ENODEV", r.Err)
		}
	})
	t.Run("mark-follows-policy-route", func(t *testing.T) {
		// In lb, the backend is unreachable by the main table; packets marked 7 use table 100,
		// which has the LAN: a check must carry the mark to get through (as a DR check would).
		err := l.lb.Netlink(func(nl *netlink.Handle) error {
			eth0, err := nl.LinkByName("eth0")
			if err != nil {
				return err
			}
			_, lanNet, _ := net.ParseCIDR("192.0.2.0/24")
			if err := nl.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: lanNet, Table: 100, Scope: netlink.SCOPE_LINK}); err != nil {
				return err
			}
			_, host, _ := net.ParseCIDR(backendIP + "/32")
			if err := nl.RouteAdd(&netlink.Route{Dst: host, Type: unix.RTN_UNREACHABLE}); err != nil {
				return err
			}
			rule := netlink.NewRule()
			rule.Family, rule.Priority, rule.Mark, rule.Table = unix.AF_INET, 100, 7, 100
			return nl.RuleAdd(rule)
		})
		if err != nil {
			t.Fatal(err)
		}
		expect(t, run(t, health.TCP{Addr: be(8080), Dial: l.dial()}, 2*time.Second), health.OutcomeUnhealthy, health.ReasonUnreachable)
		d := l.dial()
		d.Mark = 7
		expect(t, run(t, health.TCP{Addr: be(8080), Dial: d}, 2*time.Second), health.OutcomeHealthy, health.ReasonNone)
	})
}

func TestTCPBuildErrors(t *testing.T) {
	for name, p := range map[string]health.TCP{
		"no address": {},
		"no port":    {Addr: netip.AddrPortFrom(netip.MustParseAddr(backendIP), 0)},
		"bad regexp": {Addr: netip.MustParseAddrPort(backendIP + ":80"), Expect: "("},
		"families":   {Addr: netip.MustParseAddrPort(backendIP + ":80"), Dial: health.DialOptions{Source: netip.MustParseAddr("2001:db8::1")}},
		"long iface": {Addr: netip.MustParseAddrPort(backendIP + ":80"), Dial: health.DialOptions{Interface: "a-very-long-interface-name"}},
	} {
		if _, err := p.Build(); err == nil {
			t.Errorf("%s: Build accepted %+v", name, p)
		}
	}
}
