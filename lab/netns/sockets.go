package netns

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// DefaultDialTimeout bounds Dial and the connections of HTTPClient.
const DefaultDialTimeout = 10 * time.Second

// literal refuses host names: the Go resolver runs lookups on other goroutines, which are not in
// the namespace (and a lab test has no business resolving names anyway). It also rewrites an
// IPv6 zone given by interface name ("fe80::1%eth0") to the interface's index in the namespace:
// the net package would look the name up in a process-wide cache that mixes namespaces.
func (h *Host) literal(network, addr string) (string, error) {
	var host, port string
	switch {
	case strings.HasPrefix(network, "unix"):
		return addr, nil
	case strings.HasPrefix(network, "ip"): // "ip4:112": the address has no port
		host = addr
	default:
		var err error
		if host, port, err = net.SplitHostPort(addr); err != nil {
			return "", fmt.Errorf("netns: %s address %q: %w", network, addr, err)
		}
	}
	if host == "" {
		return addr, nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return "", fmt.Errorf("netns: %s address %q: use an IP literal, not a name (name resolution would leave the namespace)", network, addr)
	}
	if ip, err = h.numericZone(ip); err != nil {
		return "", err
	}
	if strings.HasPrefix(network, "ip") {
		return ip.String(), nil
	}
	return net.JoinHostPort(ip.String(), port), nil
}

// numericZone replaces an interface name in ip's zone with its index inside the namespace.
func (h *Host) numericZone(ip netip.Addr) (netip.Addr, error) {
	zone := ip.Zone()
	if zone == "" {
		return ip, nil
	}
	if _, err := strconv.Atoi(zone); err == nil {
		return ip, nil
	}
	var index int
	err := h.Netlink(func(nl *netlink.Handle) error {
		l, err := nl.LinkByName(zone)
		if err == nil {
			index = l.Attrs().Index
		}
		return err
	})
	if err != nil {
		return ip, fmt.Errorf("netns: %s: zone of %s: %w", h.Name, ip, err)
	}
	return ip.WithZone(strconv.Itoa(index)), nil
}

// Listen is net.Listen inside the host's namespace ("tcp", "192.0.2.11:8080"; ":0" picks a
// port: see the listener's Addr). Addresses must be IP literals.
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	addr, err := h.literal(network, addr)
	if err != nil {
		return nil, err
	}
	var ln net.Listener
	err = h.Do(func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// ListenPacket is net.ListenPacket inside the host's namespace: "udp", "ip4:112" (a raw VRRP
// socket), "ip6:ipv6-icmp", ... Addresses must be IP literals. Wrap the result with
// golang.org/x/net/ipv4 or ipv6 to join multicast groups.
func (h *Host) ListenPacket(network, addr string) (net.PacketConn, error) {
	addr, err := h.literal(network, addr)
	if err != nil {
		return nil, err
	}
	var pc net.PacketConn
	err = h.Do(func() (err error) {
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	return pc, err
}

// Dial connects from inside the host's namespace, within DefaultDialTimeout.
func (h *Host) Dial(network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), DefaultDialTimeout)
	defer cancel()
	return h.DialContext(ctx, network, addr)
}

// DialContext connects from inside the host's namespace. Its signature fits
// http.Transport.DialContext and similar hooks. Addresses must be IP literals.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	addr, err := h.literal(network, addr)
	if err != nil {
		return nil, err
	}
	var c net.Conn
	err = h.Do(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// HTTPClient returns an HTTP client whose connections are made inside the host's namespace. It
// uses no proxy, whatever the environment says, and times requests out after
// DefaultDialTimeout. URLs must use IP literals ("http://192.0.2.11:8080/",
// "http://[2001:db8::11]:8080/"). Idle connections are closed when the host is removed.
func (h *Host) HTTPClient() *http.Client {
	tr := &http.Transport{
		DialContext:           h.DialContext,
		Proxy:                 nil,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       30 * time.Second,
		TLSHandshakeTimeout:   DefaultDialTimeout,
		ExpectContinueTimeout: time.Second,
	}
	h.onRemove(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: DefaultDialTimeout}
}

// StartHTTP serves handler on addr ("192.0.2.21:8080", ":0") inside the host's namespace until
// tb's cleanup, and returns the listening address ("192.0.2.21:8080", or "[::]:40123" for
// ":0"). It fails the test if it cannot listen. Call it from the test's goroutine.
func (h *Host) StartHTTP(tb testing.TB, addr string, handler http.Handler) string {
	tb.Helper()
	ln, err := h.Listen("tcp", addr)
	if err != nil {
		tb.Fatalf("netns: %s: listen on %s: %v", h.Name, addr, err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: DefaultDialTimeout}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			tb.Logf("netns: %s: HTTP server on %s: %v", h.Name, ln.Addr(), err)
		}
	}()
	tb.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// Ping sends ICMP echo requests from inside the host's namespace to dst, one every 200ms, until
// a reply comes back (nil) or ctx ends (an error), so ctx must have an end. A link-local IPv6
// dst needs its zone ("fe80::1%eth0"). Several Pings may run at once.
func (h *Host) Ping(ctx context.Context, dst netip.Addr) error {
	network, laddr, proto := "ip4:icmp", "0.0.0.0", 1
	var reqType, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if dst.Is6() && !dst.Is4In6() {
		network, laddr, proto = "ip6:ipv6-icmp", "::", 58
		reqType, replyType = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	dst, err := h.numericZone(dst)
	if err != nil {
		return err
	}
	var c *icmp.PacketConn
	err = h.Do(func() (err error) {
		c, err = icmp.ListenPacket(network, laddr)
		return err
	})
	if err != nil {
		return fmt.Errorf("netns: %s: ping %s: %w", h.Name, dst, err)
	}
	defer c.Close()
	id := rand.IntN(1 << 16)
	to := &net.IPAddr{IP: dst.AsSlice(), Zone: dst.Zone()}
	buf := make([]byte, 1500)
	for seq := 1; ; seq++ {
		msg := icmp.Message{Type: reqType, Body: &icmp.Echo{ID: id, Seq: seq & 0xffff, Data: []byte("fulcrum lab ping")}}
		b, err := msg.Marshal(nil) // the kernel fills in the ICMPv6 checksum
		if err != nil {
			return err
		}
		if _, err := c.WriteTo(b, to); err != nil {
			// ENETUNREACH and friends: wait and retry, the topology may be coming up.
			select {
			case <-ctx.Done():
				return fmt.Errorf("netns: %s: ping %s: %w (last error: %v)", h.Name, dst, ctx.Err(), err)
			case <-time.After(200 * time.Millisecond):
				continue
			}
		}
		deadline := time.Now().Add(200 * time.Millisecond)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		_ = c.SetReadDeadline(deadline)
		for {
			n, peer, err := c.ReadFrom(buf)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					break
				}
				return fmt.Errorf("netns: %s: ping %s: %w", h.Name, dst, err)
			}
			m, err := icmp.ParseMessage(proto, buf[:n])
			if err != nil || m.Type != replyType {
				continue
			}
			echo, ok := m.Body.(*icmp.Echo)
			if !ok || echo.ID != id {
				continue
			}
			if pa, ok := peer.(*net.IPAddr); ok {
				if got, ok := netip.AddrFromSlice(pa.IP); ok && got.Unmap() == dst.WithZone("").Unmap() {
					return nil
				}
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("netns: %s: ping %s: no reply: %w", h.Name, dst, ctx.Err())
		}
	}
}
