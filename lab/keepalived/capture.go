package keepalived

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/fulcrum-lb/fulcrum/lab/netns"
)

// VRRP's IP protocol number and multicast groups (RFC 5798 §5.1).
const (
	protoVRRP = 112
)

var (
	group4 = netip.MustParseAddr("224.0.0.18")
	group6 = netip.MustParseAddr("ff02::12")
)

// Advert is one VRRP packet received from the wire.
type Advert struct {
	// Payload is the VRRP message: the IP payload, from the version/type octet on.
	Payload []byte
	// Src and Dst are the IP source and destination (without zone).
	Src, Dst netip.Addr
	// TTL is the IPv4 TTL or the IPv6 hop limit.
	TTL int
	// TOS is the IPv4 type of service or the IPv6 traffic class.
	TOS int
	// DontFragment is the IPv4 DF flag (false for IPv6).
	DontFragment bool
	// Time the packet was read.
	Time time.Time
}

// CaptureAdvert receives one VRRPv2/v3 advert over IPv4 inside host and returns its VRRP
// payload, IP source and destination, and TTL; see Capture. It fails the test if none arrives
// within timeout. Call it from the test's goroutine.
func CaptureAdvert(t testing.TB, host *netns.Host, timeout time.Duration) (payload []byte, src, dst netip.Addr, ttl int) {
	t.Helper()
	a := Capture(t, host, false, timeout)
	return a.Payload, a.Src, a.Dst, a.TTL
}

// Capture receives one VRRP advert (IP protocol 112) inside host, over IPv6 if ipv6 is set and
// IPv4 otherwise. It opens a raw socket in the host's namespace and joins the VRRP group
// (224.0.0.18 or ff02::12) on each of the host's interfaces, so it sees the multicast adverts
// on the host's LANs as well as unicast adverts addressed to the host. Run it in a host of its
// own to watch a segment, or in a unicast peer. It fails the test if nothing arrives within
// timeout. Call it from the test's goroutine.
func Capture(t testing.TB, host *netns.Host, ipv6 bool, timeout time.Duration) Advert {
	t.Helper()
	a, err := capture(host, ipv6, timeout)
	if err != nil {
		t.Fatalf("keepalived: capture on %s: %v", host.Name, err)
	}
	return a
}

func capture(host *netns.Host, v6 bool, timeout time.Duration) (Advert, error) {
	var ifaces []net.Interface
	err := host.Netlink(func(nl *netlink.Handle) error {
		for _, l := range host.Links() {
			link, err := nl.LinkByName(l.Name)
			if err != nil {
				return err
			}
			ifaces = append(ifaces, net.Interface{Index: link.Attrs().Index, Name: l.Name})
		}
		return nil
	})
	if err != nil {
		return Advert{}, err
	}
	if len(ifaces) == 0 {
		return Advert{}, errors.New("the host has no interfaces")
	}
	deadline := time.Now().Add(timeout)
	if v6 {
		return capture6(host, ifaces, deadline)
	}
	return capture4(host, ifaces, deadline)
}

func capture4(host *netns.Host, ifaces []net.Interface, deadline time.Time) (Advert, error) {
	var rc *ipv4.RawConn
	err := host.Do(func() error {
		c, err := net.ListenPacket(fmt.Sprintf("ip4:%d", protoVRRP), "0.0.0.0")
		if err != nil {
			return err
		}
		if rc, err = ipv4.NewRawConn(c); err != nil {
			c.Close()
			return err
		}
		for i := range ifaces {
			if err := rc.JoinGroup(&ifaces[i], &net.IPAddr{IP: group4.AsSlice()}); err != nil {
				rc.Close()
				return fmt.Errorf("join %s on %s: %w", group4, ifaces[i].Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return Advert{}, err
	}
	defer rc.Close()
	if err := rc.SetReadDeadline(deadline); err != nil {
		return Advert{}, err
	}
	buf := make([]byte, 65536)
	for {
		h, p, _, err := rc.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return Advert{}, fmt.Errorf("no VRRP packet over IPv4 before the deadline")
		}
		if err != nil {
			return Advert{}, err
		}
		if h.Protocol != protoVRRP || len(p) == 0 {
			continue
		}
		src, _ := netip.AddrFromSlice(h.Src)
		dst, _ := netip.AddrFromSlice(h.Dst)
		return Advert{
			Payload:      append([]byte(nil), p...),
			Src:          src.Unmap(),
			Dst:          dst.Unmap(),
			TTL:          h.TTL,
			TOS:          h.TOS,
			DontFragment: h.Flags&ipv4.DontFragment != 0,
			Time:         time.Now(),
		}, nil
	}
}

func capture6(host *netns.Host, ifaces []net.Interface, deadline time.Time) (Advert, error) {
	var pc *ipv6.PacketConn
	err := host.Do(func() error {
		c, err := net.ListenPacket(fmt.Sprintf("ip6:%d", protoVRRP), "::")
		if err != nil {
			return err
		}
		pc = ipv6.NewPacketConn(c)
		if err := pc.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst|ipv6.FlagTrafficClass, true); err != nil {
			pc.Close()
			return err
		}
		for i := range ifaces {
			if err := pc.JoinGroup(&ifaces[i], &net.IPAddr{IP: group6.AsSlice()}); err != nil {
				pc.Close()
				return fmt.Errorf("join %s on %s: %w", group6, ifaces[i].Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return Advert{}, err
	}
	defer pc.Close()
	if err := pc.SetReadDeadline(deadline); err != nil {
		return Advert{}, err
	}
	buf := make([]byte, 65536)
	for {
		n, cm, from, err := pc.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return Advert{}, fmt.Errorf("no VRRP packet over IPv6 before the deadline")
		}
		if err != nil {
			return Advert{}, err
		}
		if n == 0 || cm == nil {
			continue
		}
		a := Advert{Payload: append([]byte(nil), buf[:n]...), TTL: cm.HopLimit, TOS: cm.TrafficClass, Time: time.Now()}
		if ia, ok := from.(*net.IPAddr); ok {
			a.Src, _ = netip.AddrFromSlice(ia.IP)
		}
		a.Dst, _ = netip.AddrFromSlice(cm.Dst)
		return a, nil
	}
}
