package netio_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/fulcrum-lb/fulcrum/lab/netns"
	"github.com/fulcrum-lb/fulcrum/vrrp/netio"
)

// Generous bounds: the machine has 2 cores shared with other work.
const (
	waitFor = 10 * time.Second
	quiet   = 300 * time.Millisecond // how long "nothing arrives" is watched
)

// ctxT is a context that ends with the test (or after d).
func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// listen opens a RawConn inside h's namespace, closed by the test's cleanup.
func listen(t *testing.T, h *netns.Host, opts netio.ConnOptions) *netio.RawConn {
	t.Helper()
	var c *netio.RawConn
	err := h.Do(func() (err error) {
		c, err = netio.Listen(context.Background(), opts)
		return err
	})
	if err != nil {
		t.Fatalf("%s: Listen(%+v): %v", h, opts, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// recv waits for the next packet on c.
func recv(t *testing.T, c netio.Conn) netio.Packet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	p, err := c.Recv(ctx)
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	return p
}

// expectNothing fails if c receives a packet within quiet.
func expectNothing(t *testing.T, c netio.Conn, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), quiet)
	defer cancel()
	p, err := c.Recv(ctx)
	if err == nil {
		t.Fatalf("%s: got a packet from %s to %s, want none", what, p.Src, p.Dst)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%s: Recv: %v, want context.DeadlineExceeded", what, err)
	}
}

// ifIndex is the index of iface inside h.
func ifIndex(t *testing.T, h *netns.Host, iface string) int {
	t.Helper()
	var idx int
	err := h.Netlink(func(nl *netlink.Handle) error {
		l, err := nl.LinkByName(iface)
		if err == nil {
			idx = l.Attrs().Index
		}
		return err
	})
	if err != nil {
		t.Fatalf("%s: %s: %v", h, iface, err)
	}
	return idx
}

// linkLocal is the IPv6 link-local address of iface inside h.
func linkLocal(t *testing.T, h *netns.Host, iface string) netip.Addr {
	t.Helper()
	var ll netip.Addr
	err := h.Netlink(func(nl *netlink.Handle) error {
		l, err := nl.LinkByName(iface)
		if err != nil {
			return err
		}
		addrs, err := nl.AddrList(l, netlink.FAMILY_V6)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.IsLinkLocalUnicast() {
				ll = ip
				return nil
			}
		}
		return errors.New("no link-local address")
	})
	if err != nil {
		t.Fatalf("%s: %s: %v", h, iface, err)
	}
	return ll
}

// nsHandle opens h's namespace for netlink.NewHandleAt and WatchOptions,
// closed by the test's cleanup.
func nsHandle(t *testing.T, h *netns.Host) vnetns.NsHandle {
	t.Helper()
	ns, err := vnetns.GetFromPath(h.Path())
	if err != nil {
		t.Fatalf("%s: open namespace: %v", h, err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// handleIn opens a netlink handle in h's namespace, closed by the test's cleanup.
func handleIn(t *testing.T, h *netns.Host) (*netlink.Handle, vnetns.NsHandle) {
	t.Helper()
	ns := nsHandle(t, h)
	nl, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("%s: netlink handle: %v", h, err)
	}
	t.Cleanup(nl.Close)
	return nl, ns
}

// vrrpLike is a VRRPv3-shaped advertisement for vrid with the given
// addresses and a deliberately wrong checksum (the transport must not care
// for IPv4; the kernel overwrites it for IPv6).
func vrrpLike(vrid byte, addrs ...netip.Addr) []byte {
	b := []byte{0x31, vrid, 100, byte(len(addrs)), 0x00, 0x64, 0xde, 0xad}
	for _, a := range addrs {
		b = append(b, a.AsSlice()...)
	}
	return b
}

// ipv6Checksum is the RFC 8200 §8.1 upper-layer checksum sum of msg from src
// to dst with next header nh: the one's-complement sum of the pseudo-header
// and the message, folded. A correct checksum field makes it 0xffff.
func ipv6Checksum(src, dst netip.Addr, nh byte, msg []byte) uint16 {
	var acc uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			acc += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			acc += uint32(b[len(b)-1]) << 8
		}
	}
	s, d := src.As16(), dst.As16()
	add(s[:])
	add(d[:])
	n := uint32(len(msg))
	add([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n), 0, 0, 0, nh})
	add(msg)
	for acc > 0xffff {
		acc = acc&0xffff + acc>>16
	}
	return uint16(acc)
}
