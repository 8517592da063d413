package netio

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
)

// Announcement constants.
const (
	// NDHopLimit is the Hop Limit of every Neighbor Discovery message; a
	// receiver drops any other (RFC 4861 §7.1.2, §7.2.6).
	NDHopLimit = 255

	// ipv6HeaderLen is the fixed IPv6 header (RFC 8200 §3).
	ipv6HeaderLen = 40
	// protoICMPv6 is ICMPv6's next-header number (RFC 4443 §1).
	protoICMPv6 = 58
)

// allNodes is ff02::1, the destination of unsolicited Neighbor
// Advertisements (RFC 4861 §7.2.6: "the destination address SHOULD be the
// all-nodes multicast address").
func allNodes() netip.Addr { return netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 15: 0x01}) }

// allNodesMAC is the Ethernet address of ff02::1: 33:33 and the address's
// last 32 bits (RFC 2464 §7).
func allNodesMAC() net.HardwareAddr { return net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1} }

// Announcer tells the LAN where the virtual addresses now are. Both the real
// RawAnnouncer and netiotest.FakeAnnouncer implement it.
type Announcer interface {
	// Announce sends one round: for every IPv4 VIP a gratuitous ARP request
	// and a gratuitous ARP reply, for every IPv6 VIP one unsolicited
	// Neighbor Advertisement. It returns the errors of the frames that
	// failed, after trying every VIP.
	Announce(ctx context.Context, vips []netip.Addr) error
}

// AnnouncerOptions configures NewAnnouncer.
type AnnouncerOptions struct {
	// Interface is where the VIPs live and the frames go out.
	Interface string
	// HardwareAddr is the link-layer address announced for the VIPs: the
	// Ethernet source, the ARP sender hardware address and the NA's Target
	// Link-Layer Address. Unset, it is the interface's own (read once by
	// NewAnnouncer).
	HardwareAddr net.HardwareAddr
	// Router sets the Router flag of Neighbor Advertisements. RFC 4861
	// §7.2.6 says an unsolicited NA carries the sender's real IsRouter
	// value, and RFC 5798 §6.4.1 sends a virtual router's NAs with R set;
	// keepalived sets it when IPv6 forwarding is on for the interface.
	// Set it when the VIP is a gateway that clients route through: a
	// receiver that sees R go from set to clear removes the sender from its
	// default router list (RFC 4861 §7.2.5). The default is clear.
	Router bool
}

// AnnounceStats counts what a RawAnnouncer sent.
type AnnounceStats struct {
	// Rounds is the number of Announce calls; Frames the frames sent;
	// Errors the frames that failed.
	Rounds, Frames, Errors uint64
	// FirstFrame is when the first frame of all was handed to the kernel;
	// RoundFirstFrame when the first frame of the latest round was (zero if
	// that round sent nothing). "VIP added to first GARP" is
	// RoundFirstFrame minus the time the VIP was added.
	FirstFrame, RoundFirstFrame time.Time
}

// RawAnnouncer sends gratuitous ARP and unsolicited Neighbor Advertisements
// as whole Ethernet frames on an AF_PACKET socket bound to one interface
// (CAP_NET_RAW). It needs no IP address on the interface: the ARP sender
// address and the NA's IPv6 source are the VIP itself (as keepalived
// does), so it works on an interface without IPv4, or with IPv6 only. It
// is safe for concurrent use.
type RawAnnouncer struct {
	iface  string
	mac    net.HardwareAddr
	router bool
	conn   *packet.Conn

	mu    sync.Mutex
	stats AnnounceStats
}

var _ Announcer = (*RawAnnouncer)(nil)

// NewAnnouncer opens the announcer of opts.Interface. The socket is
// created in the network namespace of the calling thread (see the package
// documentation); afterwards the announcer may be used from any goroutine.
// It binds the socket with protocol 0, so the kernel queues nothing to it:
// it only sends. ctx bounds the setup only; Close releases the socket.
func NewAnnouncer(ctx context.Context, opts AnnouncerOptions) (*RawAnnouncer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ifi, err := net.InterfaceByName(opts.Interface)
	if err != nil {
		return nil, fmt.Errorf("netio: announcer: interface %q: %w", opts.Interface, err)
	}
	mac := opts.HardwareAddr
	if len(mac) == 0 {
		mac = ifi.HardwareAddr
	}
	if len(mac) != 6 {
		return nil, fmt.Errorf("netio: announcer: %s has no Ethernet address (%q): %w", ifi.Name, mac, ErrNoLinkLayer)
	}
	conn, err := packet.Listen(ifi, packet.Raw, 0, nil)
	if err != nil {
		return nil, fmt.Errorf("netio: announcer: packet socket on %s: %w", ifi.Name, err)
	}
	return &RawAnnouncer{iface: ifi.Name, mac: append(net.HardwareAddr(nil), mac...), router: opts.Router, conn: conn}, nil
}

// ErrNoLinkLayer is returned by NewAnnouncer for an interface without an
// Ethernet address (a tun device, say), where there is nothing to announce.
var ErrNoLinkLayer = errors.New("no Ethernet address")

// HardwareAddr is the announced link-layer address.
func (a *RawAnnouncer) HardwareAddr() net.HardwareAddr {
	return append(net.HardwareAddr(nil), a.mac...)
}

// Stats returns the counters.
func (a *RawAnnouncer) Stats() AnnounceStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}

// Announce sends one round for vips (see Announcer). IPv4 VIPs get two
// frames, in this order:
//
//   - an ARP request: sender and target protocol address the VIP, target
//     hardware address zero (RFC 5227 §2.3, "ARP Announcement"; RFC 5944
//     §4.6);
//   - an ARP reply: the same with the target hardware address equal to the
//     sender's, which Linux requires before it treats a reply as gratuitous
//     (RFC 5944 §4.6);
//
// both to the Ethernet broadcast address. Hosts update an existing ARP
// entry from either; whether one is created depends on their arp_accept.
// IPv6 VIPs get one unsolicited Neighbor Advertisement from the VIP to
// ff02::1, Hop Limit 255, Override set, Solicited clear, Router as
// configured, with a Target Link-Layer Address option (RFC 4861 §4.4,
// §7.2.6). Per RFC 4861 §7.2.5 it only updates entries that exist.
func (a *RawAnnouncer) Announce(ctx context.Context, vips []netip.Addr) error {
	a.mu.Lock()
	a.stats.Rounds++
	a.stats.RoundFirstFrame = time.Time{}
	a.mu.Unlock()
	var errs []error
	for _, vip := range vips {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		frames, err := announceFrames(a.mac, vip.Unmap().WithZone(""), a.router)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range frames {
			errs = append(errs, a.write(f.data, f.dst, vip))
		}
	}
	return errors.Join(errs...)
}

func (a *RawAnnouncer) write(frame []byte, dst net.HardwareAddr, vip netip.Addr) error {
	_, err := a.conn.WriteTo(frame, &packet.Addr{HardwareAddr: dst})
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.stats.Errors++
		return fmt.Errorf("netio: announce %s on %s: %w", vip, a.iface, err)
	}
	a.stats.Frames++
	if a.stats.FirstFrame.IsZero() {
		a.stats.FirstFrame = now
	}
	if a.stats.RoundFirstFrame.IsZero() {
		a.stats.RoundFirstFrame = now
	}
	return nil
}

// Close releases the socket.
func (a *RawAnnouncer) Close() error {
	if err := a.conn.Close(); err != nil {
		return fmt.Errorf("netio: announcer on %s: close: %w", a.iface, err)
	}
	return nil
}

// frame is one Ethernet frame to send, with its destination.
type frame struct {
	data []byte
	dst  net.HardwareAddr
}

// announceFrames builds the frames that announce vip at mac.
func announceFrames(mac net.HardwareAddr, vip netip.Addr, router bool) ([]frame, error) {
	switch {
	case vip.Is4():
		req, err := garpFrame(arp.OperationRequest, mac, vip)
		if err != nil {
			return nil, err
		}
		rep, err := garpFrame(arp.OperationReply, mac, vip)
		if err != nil {
			return nil, err
		}
		return []frame{{req, ethernet.Broadcast}, {rep, ethernet.Broadcast}}, nil
	case vip.Is6():
		na, err := naFrame(mac, vip, router)
		if err != nil {
			return nil, err
		}
		return []frame{{na, allNodesMAC()}}, nil
	default:
		return nil, fmt.Errorf("netio: announce: %v is not an IP address", vip)
	}
}

// garpFrame builds a broadcast gratuitous ARP frame of operation op for vip
// at mac: a request has a zero target hardware address, a reply has mac.
func garpFrame(op arp.Operation, mac net.HardwareAddr, vip netip.Addr) ([]byte, error) {
	tha := make(net.HardwareAddr, len(mac))
	if op == arp.OperationReply {
		copy(tha, mac)
	}
	p, err := arp.NewPacket(op, mac, vip, tha, vip)
	if err != nil {
		return nil, fmt.Errorf("netio: gratuitous ARP for %s: %w", vip, err)
	}
	pb, err := p.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("netio: gratuitous ARP for %s: %w", vip, err)
	}
	f := &ethernet.Frame{Destination: ethernet.Broadcast, Source: mac, EtherType: ethernet.EtherTypeARP, Payload: pb}
	return f.MarshalBinary()
}

// naFrame builds an unsolicited Neighbor Advertisement for vip at mac, from
// vip to ff02::1, as a whole Ethernet frame.
func naFrame(mac net.HardwareAddr, vip netip.Addr, router bool) ([]byte, error) {
	na := &ndp.NeighborAdvertisement{
		Router:        router,
		Solicited:     false,
		Override:      true,
		TargetAddress: vip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}},
	}
	icmp, err := ndp.MarshalMessageChecksum(na, vip, allNodes())
	if err != nil {
		return nil, fmt.Errorf("netio: neighbor advertisement for %s: %w", vip, err)
	}
	ip := make([]byte, ipv6HeaderLen, ipv6HeaderLen+len(icmp))
	ip[0] = 6 << 4 // version 6, traffic class 0, flow label 0 (RFC 8200 §3)
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(icmp)))
	ip[6] = protoICMPv6
	ip[7] = NDHopLimit
	src, dst := vip.As16(), allNodes().As16()
	copy(ip[8:24], src[:])
	copy(ip[24:40], dst[:])
	ip = append(ip, icmp...)
	f := &ethernet.Frame{Destination: allNodesMAC(), Source: mac, EtherType: ethernet.EtherTypeIPv6, Payload: ip}
	return f.MarshalBinary()
}

// BurstOptions paces Burst.
type BurstOptions struct {
	// Count is the number of rounds; less than 1 means 1. keepalived sends
	// garp_master_repeat (default 5) rounds on becoming Master.
	Count int
	// Interval is the pause between the end of one round and the start of
	// the next; 0 sends them back to back (keepalived's default,
	// garp_interval 0).
	Interval time.Duration
	// After is the clock: it returns a channel that delivers once d has
	// passed. nil means time.After. Tests pass a fake; a vrrp.Clock adapts
	// as func(d) { ch := make(chan time.Time, 1); clock.AfterFunc(d, func()
	// { ch <- clock.Now() }); return ch }.
	After func(d time.Duration) <-chan time.Time
}

// Burst calls a.Announce Count times, Interval apart, and returns the
// errors of the rounds that failed (a failed round does not stop the
// burst) or ctx.Err() if ctx ends first. The first round starts at once.
// Burst blocks: the VRRP Actions.Announce callback, which must not block,
// should run it on a goroutine of its own, under a context that ends when
// the instance leaves Master. keepalived repeats the whole burst
// garp_master_delay (default 5 s) later; the state machine's
// ReannounceDelay does that here.
func Burst(ctx context.Context, a Announcer, vips []netip.Addr, opts BurstOptions) error {
	n := max(opts.Count, 1)
	after := opts.After
	if after == nil {
		after = time.After
	}
	var errs []error
	for i := range n {
		if i > 0 && opts.Interval > 0 {
			select {
			case <-after(opts.Interval):
			case <-ctx.Done():
				return errors.Join(append(errs, ctx.Err())...)
			}
		}
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		if err := a.Announce(ctx, vips); err != nil {
			errs = append(errs, fmt.Errorf("round %d of %d: %w", i+1, n, err))
		}
	}
	return errors.Join(errs...)
}
