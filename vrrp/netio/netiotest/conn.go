// Package netiotest holds in-memory fakes of package netio's interfaces, for
// unit tests of the VRRP runner and the agent: FakeConn (conns joined by a
// Wire), FakeVIPs and FakeAnnouncer. Each records what it was asked to do.
// None needs privileges or touches the network. All are safe for
// concurrent use.
package netiotest

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/fulcrum-lb/fulcrum/vrrp/netio"
)

// QueueLen is how many undelivered packets a FakeConn holds before it drops
// new ones, like a full socket buffer.
const QueueLen = 256

// Wire is an in-memory link. A packet sent to a multicast address reaches
// every other open conn of the same family on the wire; one sent to a
// unicast address reaches the conn that has it. Delivery is synchronous
// (the packet is queued before Send returns), in order, with TTL 255.
type Wire struct {
	mu    sync.Mutex
	conns []*FakeConn
	down  bool
	drop  func(from *FakeConn, p netio.Packet) bool
}

// NewWire returns an empty wire.
func NewWire() *Wire { return &Wire{} }

// Pair returns two conns on a new wire, with addresses a and b.
func Pair(a, b netip.Addr) (*FakeConn, *FakeConn) {
	w := NewWire()
	return w.Conn(a), w.Conn(b)
}

// Conn attaches a new conn with address addr to the wire. With peers it is
// a unicast-mode conn: it receives only packets whose source is one of
// peers, and Destinations lists them.
func (w *Wire) Conn(addr netip.Addr, peers ...netip.Addr) *FakeConn {
	c := &FakeConn{
		wire:  w,
		addr:  addr,
		peers: slices.Clone(peers),
		in:    make(chan netio.Packet, QueueLen),
		done:  make(chan struct{}),
	}
	w.mu.Lock()
	c.ifindex = len(w.conns) + 1
	w.conns = append(w.conns, c)
	w.mu.Unlock()
	return c
}

// SetDown cuts (true) or restores (false) the wire: while down, every packet
// sent is lost.
func (w *Wire) SetDown(down bool) {
	w.mu.Lock()
	w.down = down
	w.mu.Unlock()
}

// SetDrop installs a filter: a packet for which drop returns true is lost.
// nil removes the filter.
func (w *Wire) SetDrop(drop func(from *FakeConn, p netio.Packet) bool) {
	w.mu.Lock()
	w.drop = drop
	w.mu.Unlock()
}

// Sent is one recorded Send.
type Sent struct {
	At      time.Time
	Payload []byte
	Dst     netip.Addr
}

// FakeConn is a netio.Conn on a Wire.
type FakeConn struct {
	wire    *Wire
	addr    netip.Addr
	peers   []netip.Addr
	ifindex int

	in   chan netio.Packet
	done chan struct{}

	mu      sync.Mutex
	closed  bool
	sent    []Sent
	dropped int
}

var _ netio.Conn = (*FakeConn)(nil)

// Addr is the conn's address: the source of what it sends.
func (c *FakeConn) Addr() netip.Addr { return c.addr }

// Source is Addr, as netio.RawConn.Source.
func (c *FakeConn) Source() netip.Addr { return c.addr }

// Destinations is the group of the conn's family, or the peers of a
// unicast-mode conn, as netio.RawConn.Destinations.
func (c *FakeConn) Destinations() []netip.Addr {
	if len(c.peers) > 0 {
		return slices.Clone(c.peers)
	}
	if c.addr.Is4() {
		return []netip.Addr{netio.Group4()}
	}
	return []netip.Addr{netio.Group6()}
}

// Recv returns the next delivered packet, ctx.Err() when ctx ends, or an
// error matching net.ErrClosed once the conn is closed.
func (c *FakeConn) Recv(ctx context.Context) (netio.Packet, error) {
	select {
	case <-c.done:
		return netio.Packet{}, fmt.Errorf("netiotest: recv on %s: %w", c.addr, netio.ErrClosed)
	default:
	}
	select {
	case p := <-c.in:
		return p, nil
	default:
	}
	select {
	case p := <-c.in:
		return p, nil
	case <-ctx.Done():
		return netio.Packet{}, ctx.Err()
	case <-c.done:
		return netio.Packet{}, fmt.Errorf("netiotest: recv on %s: %w", c.addr, netio.ErrClosed)
	}
}

// Send records the packet and delivers it over the wire.
func (c *FakeConn) Send(payload []byte, dst netip.Addr) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return fmt.Errorf("netiotest: send from %s: %w", c.addr, netio.ErrClosed)
	}
	if dst.Is4() != c.addr.Is4() {
		c.mu.Unlock()
		return fmt.Errorf("netiotest: send from %s to %s: address families differ", c.addr, dst)
	}
	c.sent = append(c.sent, Sent{At: time.Now(), Payload: slices.Clone(payload), Dst: dst})
	c.mu.Unlock()

	w := c.wire
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.down {
		return nil
	}
	for _, r := range w.conns {
		if r == c || r.addr.Is4() != c.addr.Is4() {
			continue
		}
		if !dst.IsMulticast() && r.addr != dst {
			continue
		}
		p := netio.Packet{Payload: slices.Clone(payload), Src: c.addr, Dst: dst, TTL: netio.TTL, IfIndex: r.ifindex}
		if w.drop != nil && w.drop(c, p) {
			continue
		}
		r.deliver(p)
	}
	return nil
}

// deliver queues p unless the conn is closed, filters it out, or is full.
func (c *FakeConn) deliver(p netio.Packet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || (len(c.peers) > 0 && !slices.Contains(c.peers, p.Src)) {
		return
	}
	select {
	case c.in <- p:
	default:
		c.dropped++
	}
}

// Inject queues p as if it had arrived (for a TTL of 64, a forged source, a
// malformed payload). IfIndex 0 is replaced by the conn's. Unlike Send it
// bypasses the unicast peer filter.
func (c *FakeConn) Inject(p netio.Packet) {
	if p.IfIndex == 0 {
		p.IfIndex = c.ifindex
	}
	p.Payload = slices.Clone(p.Payload)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	select {
	case c.in <- p:
	default:
		c.dropped++
	}
}

// Sent returns every Send so far, in order.
func (c *FakeConn) Sent() []Sent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sent)
}

// Dropped counts packets lost because the queue was full.
func (c *FakeConn) Dropped() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}

// Close closes the conn: Recv and Send return netio.ErrClosed.
func (c *FakeConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.done)
	}
	return nil
}
