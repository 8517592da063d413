package netio

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Wire constants of the transport. Each names the section that fixes it.
const (
	// IPProtocol is VRRP's IPv4 protocol / IPv6 next-header number (RFC 5798
	// §5.1.1.4 and §5.1.2.4; RFC 3768 §5.2.4): 112.
	IPProtocol = 112

	// TTL is the IPv4 TTL / IPv6 Hop Limit every advertisement is sent with,
	// multicast and unicast alike (RFC 5798 §5.1.1.3 and §5.1.2.3; RFC 3768
	// §5.2.3): 255. Receivers discard anything else (RFC 5798 §7.1), which the
	// caller decides: Recv reports the TTL as received.
	TTL = 255

	// ChecksumOffset is where the 16-bit checksum sits in a VRRP message:
	// octets 6 and 7 (RFC 5798 §5.1 and §5.2.8; RFC 3768 §5.1). For IPv6 the
	// kernel fills it in (IPV6_CHECKSUM, RFC 3542 §3.1).
	ChecksumOffset = 6

	// tosInternetControl is the IPv4 TOS / IPv6 Traffic Class of
	// advertisements: precedence 6, "Internetwork Control" (RFC 791 §3.1),
	// DSCP CS6 (RFC 2474 §4.2.2.1, RFC 4594 §3.2). keepalived sets the same
	// (IP_TOS IPTOS_PREC_INTERNETCONTROL, IPV6_TCLASS 0xc0); no RFC requires it.
	tosInternetControl = 0xc0

	// maxMessage bounds a received VRRP message: the largest has 255 IPv6
	// addresses, 8 + 255*16 = 4088 octets (RFC 5798 §5.1, §5.2.5). Anything
	// longer is read whole into a buffer this large and handed on for the
	// codec to reject.
	maxMessage = 1 << 16
)

// Group4 returns 224.0.0.18, the IPv4 destination of VRRP advertisements
// (RFC 5798 §5.1.1.2; RFC 3768 §5.2.2).
func Group4() netip.Addr { return netip.AddrFrom4([4]byte{224, 0, 0, 18}) }

// Group6 returns ff02::12, the IPv6 destination of VRRP advertisements
// (RFC 5798 §5.1.2.2).
func Group6() netip.Addr { return netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 15: 0x12}) }

// Packet is one received VRRP message.
type Packet struct {
	// Payload is the VRRP message: the bytes after the IP header (and after
	// any IPv6 extension headers the kernel consumed).
	Payload []byte
	// Src and Dst are the addresses of the IP header, without zone: Dst is
	// the group (224.0.0.18, ff02::12) or one of our unicast addresses.
	Src, Dst netip.Addr
	// TTL is the IPv4 TTL or IPv6 Hop Limit the packet arrived with
	// (IP_RECVTTL / IPV6_RECVHOPLIMIT), or -1 if the kernel did not say.
	// RFC 5798 §7.1 wants 255; the caller decides.
	TTL int
	// IfIndex is the index of the interface the packet arrived on.
	IfIndex int
}

// Conn is the VRRP transport of one interface and address family. Both the
// real RawConn and netiotest.FakeConn implement it.
type Conn interface {
	// Recv returns the next packet, blocking until one arrives, ctx ends
	// (ctx.Err()) or the Conn is closed (an error matching net.ErrClosed).
	Recv(ctx context.Context) (Packet, error)
	// Send sends one VRRP message to dst (the group, or a unicast peer).
	Send(payload []byte, dst netip.Addr) error
	// Close releases the Conn; a blocked Recv returns.
	Close() error
}

// ConnOptions configures Listen.
type ConnOptions struct {
	// Family is 4 or 6.
	Family int
	// Interface is the name of the interface the instance runs on.
	Interface string
	// Unicast selects unicast mode: nothing is joined, packets go to each of
	// Peers and only packets whose source is one of Peers are returned.
	// Otherwise (multicast mode) the Conn joins 224.0.0.18 / ff02::12 on
	// Interface.
	Unicast bool
	// Source is the source address of everything sent. Unset, it is the
	// interface's first IPv4 address (its primary, as keepalived uses) or its
	// IPv6 link-local address, looked up once by Listen. For IPv6 in
	// multicast mode it must be link-local (RFC 5798 §5.1.2.1: "the IPv6
	// source address ... MUST be the link-local address of the interface").
	// The IPv4 checksum covers it (RFC 5798 §5.2.8): build messages with
	// RawConn.Source.
	Source netip.Addr
	// Peers are the unicast peers (unicast mode only).
	Peers []netip.Addr
}

// ErrClosed is returned by Recv and Send on a closed Conn. It is
// net.ErrClosed, so errors.Is(err, net.ErrClosed) holds for real and fake
// Conns alike.
var ErrClosed = net.ErrClosed

// validate checks the options that need no system lookup.
func (o *ConnOptions) validate() error {
	if o.Family != 4 && o.Family != 6 {
		return fmt.Errorf("netio: family %d: want 4 or 6", o.Family)
	}
	if o.Interface == "" {
		return errors.New("netio: no interface")
	}
	if len(o.Interface) >= unix.IFNAMSIZ {
		return fmt.Errorf("netio: interface name %q longer than %d bytes", o.Interface, unix.IFNAMSIZ-1)
	}
	if o.Source.IsValid() {
		if !familyOf(o.Family, o.Source) {
			return fmt.Errorf("netio: source %s is not an IPv%d address", o.Source, o.Family)
		}
		if o.Source.IsMulticast() || o.Source.IsUnspecified() {
			return fmt.Errorf("netio: source %s is not a unicast address", o.Source)
		}
		if o.Family == 6 && !o.Unicast && !o.Source.IsLinkLocalUnicast() {
			return fmt.Errorf("netio: source %s: VRRP over IPv6 must be sent from the interface's link-local address (RFC 5798 §5.1.2.1)", o.Source)
		}
	}
	if o.Unicast && len(o.Peers) == 0 {
		return errors.New("netio: unicast mode needs at least one peer")
	}
	if !o.Unicast && len(o.Peers) > 0 {
		return errors.New("netio: peers are for unicast mode only")
	}
	for _, p := range o.Peers {
		if !familyOf(o.Family, p) || p.IsMulticast() || p.IsUnspecified() {
			return fmt.Errorf("netio: peer %s is not a unicast IPv%d address", p, o.Family)
		}
	}
	return nil
}

// familyOf reports whether a (IPv4-mapped IPv6 counting as IPv4) is of family 4 or 6.
func familyOf(family int, a netip.Addr) bool {
	a = a.Unmap()
	return (family == 4 && a.Is4()) || (family == 6 && a.Is6())
}

// RawConn is the Linux VRRP transport: a raw IP socket of protocol 112 bound
// to one interface. It is safe for concurrent use; concurrent Recv calls are
// served one at a time.
type RawConn struct {
	opts    ConnOptions
	ifindex int
	source  netip.Addr
	peers   map[netip.Addr]bool
	dsts    []netip.Addr

	pc  net.PacketConn
	p4  *ipv4.PacketConn
	p6  *ipv6.PacketConn
	buf []byte // guarded by rmu

	rmu       sync.Mutex // one Recv at a time (read deadlines are per socket)
	closeOnce sync.Once
	closeErr  error
	mu        sync.Mutex
	stopCtx   func() bool // guarded by mu
	filtered  atomic.Uint64
}

var _ Conn = (*RawConn)(nil)

// Listen opens the VRRP transport on opts.Interface, which must exist. The
// socket is created in the network namespace of the calling thread (see the
// package documentation) and lives until Close or until ctx ends. Listen
// needs CAP_NET_RAW.
func Listen(ctx context.Context, opts ConnOptions) (*RawConn, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts.Peers = slices.Clone(opts.Peers)
	ifi, err := net.InterfaceByName(opts.Interface)
	if err != nil {
		return nil, fmt.Errorf("netio: interface %s: %w", opts.Interface, err)
	}
	source := opts.Source.Unmap().WithZone("")
	if !source.IsValid() {
		if source, err = defaultSource(ifi, opts.Family); err != nil {
			return nil, err
		}
	}
	c := &RawConn{
		opts:    opts,
		ifindex: ifi.Index,
		source:  source,
		peers:   map[netip.Addr]bool{},
		buf:     make([]byte, maxMessage),
	}
	for _, p := range opts.Peers {
		p = p.Unmap().WithZone("")
		c.peers[p] = true
		c.dsts = append(c.dsts, p)
	}

	network, laddr, group := "ip4:112", "0.0.0.0", Group4()
	if opts.Family == 6 {
		network, laddr, group = "ip6:112", "::", Group6()
	}
	if !opts.Unicast {
		c.dsts = []netip.Addr{group}
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = setSockopts(int(fd), opts.Family, ifi) })
		if err != nil {
			return err
		}
		return serr
	}}
	c.pc, err = lc.ListenPacket(ctx, network, laddr)
	if err != nil {
		return nil, fmt.Errorf("netio: open raw IPv%d socket for VRRP on %s: %w", opts.Family, opts.Interface, err)
	}
	gaddr := &net.IPAddr{IP: group.AsSlice()}
	if opts.Family == 4 {
		c.p4 = ipv4.NewPacketConn(c.pc)
		err = c.p4.SetControlMessage(ipv4.FlagTTL|ipv4.FlagDst|ipv4.FlagInterface, true)
		if err == nil && !opts.Unicast {
			err = c.p4.JoinGroup(ifi, gaddr)
		}
	} else {
		c.p6 = ipv6.NewPacketConn(c.pc)
		err = c.p6.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst|ipv6.FlagInterface, true)
		if err == nil && !opts.Unicast {
			err = c.p6.JoinGroup(ifi, gaddr)
		}
	}
	if err != nil {
		c.pc.Close()
		return nil, fmt.Errorf("netio: VRRP socket on %s: %w", opts.Interface, err)
	}
	c.mu.Lock()
	c.stopCtx = context.AfterFunc(ctx, func() { c.Close() })
	c.mu.Unlock()
	return c, nil
}

// setSockopts sets every option of a VRRP socket, before it is bound. Each
// is explained in the package documentation.
func setSockopts(fd, family int, ifi *net.Interface) error {
	type opt struct {
		name        string
		level, code int
		value       int
	}
	var opts []opt
	if family == 4 {
		opts = []opt{
			{"IP_MULTICAST_ALL", unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0},
			{"IP_MULTICAST_LOOP", unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0},
			{"IP_MULTICAST_TTL", unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, TTL},
			{"IP_TTL", unix.IPPROTO_IP, unix.IP_TTL, TTL},
			{"IP_TOS", unix.IPPROTO_IP, unix.IP_TOS, tosInternetControl},
		}
	} else {
		opts = []opt{
			{"IPV6_MULTICAST_ALL", unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_ALL, 0},
			{"IPV6_MULTICAST_LOOP", unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, 0},
			{"IPV6_MULTICAST_HOPS", unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, TTL},
			{"IPV6_UNICAST_HOPS", unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, TTL},
			{"IPV6_TCLASS", unix.IPPROTO_IPV6, unix.IPV6_TCLASS, tosInternetControl},
			{"IPV6_MULTICAST_IF", unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifi.Index},
			{"IPV6_CHECKSUM", unix.IPPROTO_IPV6, unix.IPV6_CHECKSUM, ChecksumOffset},
		}
	}
	if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifi.Name); err != nil {
		return fmt.Errorf("SO_BINDTODEVICE %s: %w", ifi.Name, err)
	}
	for _, o := range opts {
		if err := unix.SetsockoptInt(fd, o.level, o.code, o.value); err != nil {
			return fmt.Errorf("%s=%d: %w", o.name, o.value, err)
		}
	}
	if family == 4 {
		mreq := &unix.IPMreqn{Ifindex: int32(ifi.Index)}
		if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, mreq); err != nil {
			return fmt.Errorf("IP_MULTICAST_IF %s: %w", ifi.Name, err)
		}
	}
	return nil
}

// defaultSource picks the interface's first IPv4 address or its IPv6
// link-local address.
func defaultSource(ifi *net.Interface, family int) (netip.Addr, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("netio: addresses of %s: %w", ifi.Name, err)
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if family == 4 && ip.Is4() {
			return ip, nil
		}
		if family == 6 && ip.Is6() && ip.IsLinkLocalUnicast() {
			return ip, nil
		}
	}
	what := "IPv4 address"
	if family == 6 {
		what = "IPv6 link-local address"
	}
	return netip.Addr{}, fmt.Errorf("netio: %s has no %s to send VRRP from; set ConnOptions.Source: %w", ifi.Name, what, ErrNoSource)
}

// ErrNoSource is returned by Listen when the interface has no address to
// send from and ConnOptions.Source is unset.
var ErrNoSource = errors.New("no source address")

// Source is the source address of everything the Conn sends: the one to use
// in the IPv4 pseudo-header of the VRRPv3 checksum (RFC 5798 §5.2.8).
func (c *RawConn) Source() netip.Addr { return c.source }

// Destinations are where an advertisement goes: the group in multicast mode,
// every peer in unicast mode.
func (c *RawConn) Destinations() []netip.Addr { return slices.Clone(c.dsts) }

// IfIndex is the index of the interface, as looked up by Listen.
func (c *RawConn) IfIndex() int { return c.ifindex }

// Options returns the options the Conn was opened with.
func (c *RawConn) Options() ConnOptions {
	o := c.opts
	o.Peers = slices.Clone(o.Peers)
	return o
}

// Filtered counts packets Recv dropped in unicast mode because their source
// was none of the peers.
func (c *RawConn) Filtered() uint64 { return c.filtered.Load() }

// Recv returns the next VRRP packet that arrived on the interface: in
// unicast mode only from a configured peer. It never returns our own
// multicast advertisements (multicast loop is off). For IPv6 the kernel has
// already verified the checksum and silently dropped bad ones.
func (c *RawConn) Recv(ctx context.Context) (Packet, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		p, err := c.recvOne(ctx)
		if err != nil {
			return Packet{}, err
		}
		if !c.opts.Unicast || c.peers[p.Src] {
			return p, nil
		}
		c.filtered.Add(1)
	}
}

// aLongTimeAgo is a deadline in the past, to interrupt a blocked read.
func aLongTimeAgo() time.Time { return time.Unix(1, 0) }

func (c *RawConn) recvOne(ctx context.Context) (Packet, error) {
	if err := ctx.Err(); err != nil {
		return Packet{}, err
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.pc.SetReadDeadline(aLongTimeAgo())
		close(fired)
	})
	p, err := c.read()
	if !stop() {
		// ctx ended while reading: let the deadline setter finish, then clear it
		// for the next Recv.
		<-fired
		c.pc.SetReadDeadline(time.Time{})
		if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			return Packet{}, ctx.Err()
		}
	}
	if err != nil {
		if errors.Is(err, net.ErrClosed) {
			return Packet{}, fmt.Errorf("netio: recv on %s: %w", c.opts.Interface, ErrClosed)
		}
		return Packet{}, fmt.Errorf("netio: recv on %s: %w", c.opts.Interface, err)
	}
	return p, nil
}

// read reads one datagram and its control messages.
func (c *RawConn) read() (Packet, error) {
	p := Packet{TTL: -1}
	var (
		n   int
		src net.Addr
		err error
	)
	if c.p4 != nil {
		var cm *ipv4.ControlMessage
		n, cm, src, err = c.p4.ReadFrom(c.buf)
		if err != nil {
			return p, err
		}
		if cm != nil {
			p.TTL, p.IfIndex = cm.TTL, cm.IfIndex
			p.Dst = ipAddr(cm.Dst)
		}
	} else {
		var cm *ipv6.ControlMessage
		n, cm, src, err = c.p6.ReadFrom(c.buf)
		if err != nil {
			return p, err
		}
		if cm != nil {
			p.TTL, p.IfIndex = cm.HopLimit, cm.IfIndex
			p.Dst = ipAddr(cm.Dst)
		}
	}
	if a, ok := src.(*net.IPAddr); ok {
		p.Src = ipAddr(a.IP)
	}
	p.Payload = slices.Clone(c.buf[:n])
	return p, nil
}

// ipAddr converts a net.IP to a zoneless netip.Addr, IPv4 unmapped.
func ipAddr(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// Send sends payload to dst from Source, out of the interface, with TTL /
// Hop Limit 255. For IPv4 payload must carry its checksum already; for IPv6
// the kernel overwrites octets 6-7 with the checksum over the RFC 8200 §8.1
// pseudo-header (source, destination, length, next header 112), as RFC 5798
// §5.2.8 asks.
func (c *RawConn) Send(payload []byte, dst netip.Addr) error {
	dst = dst.Unmap().WithZone("")
	if !familyOf(c.opts.Family, dst) {
		return fmt.Errorf("netio: send to %s on an IPv%d conn", dst, c.opts.Family)
	}
	to := &net.IPAddr{IP: dst.AsSlice()}
	var err error
	if c.p4 != nil {
		cm := &ipv4.ControlMessage{Src: c.source.AsSlice(), IfIndex: c.ifindex}
		_, err = c.p4.WriteTo(payload, cm, to)
	} else {
		cm := &ipv6.ControlMessage{Src: c.source.AsSlice(), IfIndex: c.ifindex, HopLimit: TTL, TrafficClass: tosInternetControl}
		_, err = c.p6.WriteTo(payload, cm, to)
	}
	if err != nil {
		if errors.Is(err, net.ErrClosed) {
			err = ErrClosed
		}
		return fmt.Errorf("netio: send to %s from %s on %s: %w", dst, c.source, c.opts.Interface, err)
	}
	return nil
}

// Close closes the socket (leaving the group). It is safe to call more than
// once.
func (c *RawConn) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		if c.stopCtx != nil {
			c.stopCtx()
		}
		c.mu.Unlock()
		if err := c.pc.Close(); err != nil {
			c.closeErr = fmt.Errorf("netio: close VRRP socket on %s: %w", c.opts.Interface, err)
		}
	})
	return c.closeErr
}
