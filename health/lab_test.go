package health_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/fulcrum-lb/fulcrum/health"
	"github.com/fulcrum-lb/fulcrum/lab/netns"
)

// lab is the bed of the checker tests: a LAN with "lb" (192.0.2.10), which runs the checks
// through DialOptions.Do = lb.Do, and "backend" (192.0.2.20), where the tests start servers.
// Everything is removed by the test's cleanup.
type lab struct {
	lan         *netns.LAN
	lb, backend *netns.Host
}

const (
	lbIP      = "192.0.2.10"
	backendIP = "192.0.2.20"
	// ghostIP is on the LAN but nobody has it; lb has a permanent neighbour entry for it with a
	// MAC nobody owns, so packets to it leave and vanish: a deterministic blackhole.
	ghostIP = "192.0.2.99"
)

func newLab(t *testing.T) *lab {
	t.Helper()
	lan := netns.NewLAN(t, netns.Options{})
	l := &lab{lan: lan, lb: lan.AddHost("lb", lbIP+"/24"), backend: lan.AddHost("backend", backendIP+"/24")}
	// ICMP errors are rate limited per destination (1/s after a burst); the tests want each one.
	if err := l.backend.SetSysctl("net.ipv4.icmp_ratelimit", "0"); err != nil {
		t.Fatal(err)
	}
	err := l.lb.Netlink(func(nl *netlink.Handle) error {
		eth0, err := nl.LinkByName("eth0")
		if err != nil {
			return err
		}
		mac, _ := net.ParseMAC("02:00:00:00:00:99")
		return nl.NeighAdd(&netlink.Neigh{LinkIndex: eth0.Attrs().Index, State: netlink.NUD_PERMANENT,
			IP: net.ParseIP(ghostIP), HardwareAddr: mac})
	})
	if err != nil {
		t.Fatalf("blackhole neighbour: %v", err)
	}
	return l
}

// dial returns DialOptions that make the check's sockets in lb.
func (l *lab) dial() health.DialOptions { return health.DialOptions{Do: l.lb.Do} }

// run builds p and runs one check with the timeout.
func run(t *testing.T, p health.Probe, timeout time.Duration) health.Result {
	t.Helper()
	c, err := p.Build()
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	return c.Check(ctx)
}

// expect checks a result's outcome and reason.
func expect(t *testing.T, r health.Result, o health.Outcome, reason health.Reason) {
	t.Helper()
	if r.Outcome != o || r.Reason != reason {
		t.Fatalf("got %v (err %v), want %v/%v", r, r.Err, o, reason)
	}
	if o == health.OutcomeHealthy && r.Latency <= 0 {
		t.Errorf("healthy result without latency: %+v", r)
	}
}

// serveTCP accepts connections on ln and hands each to handle, until the test ends.
func serveTCP(t *testing.T, ln net.Listener, handle func(net.Conn)) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Logf("accept: %v", err)
				}
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
}

func listen(t *testing.T, h *netns.Host, network, addr string) net.Listener {
	t.Helper()
	ln, err := h.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func listenPacket(t *testing.T, h *netns.Host, network, addr string) net.PacketConn {
	t.Helper()
	pc, err := h.ListenPacket(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }
