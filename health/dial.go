package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DialOptions say how a network checker reaches its target. The zero value dials the target
// from the default source, in the caller's network namespace.
type DialOptions struct {
	// Addr, if valid, is connected to instead of the target's address (keepalived connect_ip):
	// check a real server through another address of it.
	Addr netip.Addr
	// Port, if not 0, is connected to instead of the target's port (connect_port).
	Port uint16
	// Source, if valid, is the local address the check binds to (bind_to).
	Source netip.Addr
	// Interface, if set, binds the socket to that device with SO_BINDTODEVICE (bind_if).
	Interface string
	// Mark, if not 0, is set as SO_MARK on the socket, so that policy routing (ip rule fwmark)
	// can send the check along the path real traffic takes, a DR path for instance.
	Mark uint32
	// Do, if set, runs fn where the check's sockets must be created: lab/netns Host.Do in tests,
	// or a function that enters another network namespace. Only socket creation and connect
	// run inside fn; I/O happens outside. It is not part of the definition.
	Do func(fn func() error) error `json:"-"`
}

// target is where to connect for a check of real.
func (o DialOptions) target(real netip.AddrPort) (netip.AddrPort, error) {
	addr, port := real.Addr(), real.Port()
	if o.Addr.IsValid() {
		addr = o.Addr
	}
	if o.Port != 0 {
		port = o.Port
	}
	if !addr.IsValid() {
		return netip.AddrPort{}, errors.New("no address to check: set the target (Addr) or DialOptions.Addr")
	}
	if port == 0 {
		return netip.AddrPort{}, errors.New("no port to check: set the target's port or DialOptions.Port")
	}
	if o.Source.IsValid() && o.Source.Unmap().Is4() != addr.Unmap().Is4() {
		return netip.AddrPort{}, fmt.Errorf("source %s and target %s are of different address families", o.Source, addr)
	}
	if len(o.Interface) >= unix.IFNAMSIZ {
		return netip.AddrPort{}, fmt.Errorf("interface name %q is too long", o.Interface)
	}
	return netip.AddrPortFrom(addr, port), nil
}

// dialer returns a net.Dialer for network ("tcp" or "udp") that applies the options.
func (o DialOptions) dialer(network string) *net.Dialer {
	d := &net.Dialer{KeepAlive: -1} // a check's connection is short: no TCP keepalive probes
	if o.Source.IsValid() {
		ip := o.Source.AsSlice()
		zone := o.Source.Zone()
		switch network {
		case "udp", "udp4", "udp6":
			d.LocalAddr = &net.UDPAddr{IP: ip, Zone: zone}
		default:
			d.LocalAddr = &net.TCPAddr{IP: ip, Zone: zone}
		}
	}
	if o.Mark != 0 || o.Interface != "" {
		mark, iface := o.Mark, o.Interface
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				if mark != 0 {
					if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
						serr = fmt.Errorf("set SO_MARK %#x: %w", mark, err)
						return
					}
				}
				if iface != "" {
					if err := unix.BindToDevice(int(fd), iface); err != nil {
						serr = fmt.Errorf("bind to device %q: %w", iface, err)
					}
				}
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	return d
}

// dial connects to addr over network, inside o.Do if set.
func (o DialOptions) dial(ctx context.Context, network string, addr netip.AddrPort) (net.Conn, error) {
	d := o.dialer(network)
	var c net.Conn
	connect := func() (err error) {
		c, err = d.DialContext(ctx, network, addr.String())
		return err
	}
	var err error
	if o.Do != nil {
		err = o.Do(connect)
	} else {
		err = connect()
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// deadlineFrom sets c's deadline to ctx's and makes a cancellation of ctx interrupt pending I/O.
// The returned function undoes the latter; call it before closing c.
func deadlineFrom(ctx context.Context, c net.Conn) (stop func() bool) {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	// A deadline in the past makes pending I/O return at once.
	return context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
}
