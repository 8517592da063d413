package ipvs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"

	mobyipvs "github.com/moby/ipvs"
)

// OpenOptions configure Open.
type OpenOptions struct {
	// NetnsPath opens the handle in the network namespace at this path (e.g.
	// /var/run/netns/lb); empty means the caller's. Probe always checks the caller's.
	NetnsPath string
}

// Netlink is the real Kernel: one moby/ipvs generic-netlink handle, serialised by a mutex
// (a netlink socket carries one request at a time).
type Netlink struct {
	mu sync.Mutex
	h  *mobyipvs.Handle
}

var _ Kernel = (*Netlink)(nil)

// Open probes for IPVS (see Probe) and opens a netlink handle. Without IPVS the error wraps
// ErrUnavailable. moby/ipvs runs "modprobe -va ip_vs" once per process when the first handle
// opens; the probe has already made sure the module is there.
func Open(opts OpenOptions) (*Netlink, error) {
	if err := Probe(); err != nil {
		return nil, err
	}
	h, err := mobyipvs.New(opts.NetnsPath)
	if err != nil {
		return nil, fmt.Errorf("ipvs: open netlink handle: %w", err)
	}
	n := &Netlink{h: h}
	// moby/ipvs resolves the IPVS family id once per process; if that happened before ip_vs was
	// loaded, the handle talks to family 0 and every request is a silent no-op. GET_CONFIG
	// always answers with the timeouts, so an empty answer exposes such a handle.
	if _, err := n.GetConfig(); err != nil {
		h.Close()
		return nil, fmt.Errorf("%w: the netlink handle does not reach IPVS (was it first opened before ip_vs was loaded? restart the process): %w", ErrUnavailable, err)
	}
	return n, nil
}

// Close releases the handle.
func (n *Netlink) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.h != nil {
		n.h.Close()
		n.h = nil
	}
	return nil
}

var errClosedHandle = errors.New("ipvs: netlink handle closed")

// do runs f under the mutex on an open handle.
func (n *Netlink) do(f func(h *mobyipvs.Handle) error) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.h == nil {
		return errClosedHandle
	}
	return f(n.h)
}

// GetServices implements Kernel.
func (n *Netlink) GetServices() ([]KernelService, error) {
	var out []KernelService
	err := n.do(func(h *mobyipvs.Handle) error {
		svcs, err := h.GetServices()
		if err != nil {
			return err
		}
		out = make([]KernelService, 0, len(svcs))
		for _, s := range svcs {
			ks, err := fromMobyService(s)
			if err != nil {
				return err
			}
			out = append(out, ks)
		}
		return nil
	})
	return out, err
}

// GetService implements Kernel.
func (n *Netlink) GetService(k ServiceKey) (KernelService, error) {
	var out KernelService
	err := n.do(func(h *mobyipvs.Handle) error {
		s, err := h.GetService(toMobyService(KernelService{Key: k}))
		if err != nil {
			return mapErr(OpGetService, err)
		}
		out, err = fromMobyService(s)
		return err
	})
	return out, err
}

// GetDestinations implements Kernel.
func (n *Netlink) GetDestinations(k ServiceKey) ([]KernelDestination, error) {
	var out []KernelDestination
	err := n.do(func(h *mobyipvs.Handle) error {
		ds, err := h.GetDestinations(toMobyService(KernelService{Key: k}))
		if err != nil {
			return mapErr(OpGetDestinations, err)
		}
		out = make([]KernelDestination, 0, len(ds))
		for _, d := range ds {
			kd, err := fromMobyDestination(d)
			if err != nil {
				return err
			}
			out = append(out, kd)
		}
		return nil
	})
	return out, err
}

// NewService implements Kernel.
func (n *Netlink) NewService(s KernelService) error {
	return n.do(func(h *mobyipvs.Handle) error { return mapErr(OpNewService, h.NewService(toMobyService(s))) })
}

// UpdateService implements Kernel.
func (n *Netlink) UpdateService(s KernelService) error {
	return n.do(func(h *mobyipvs.Handle) error { return mapErr(OpUpdateService, h.UpdateService(toMobyService(s))) })
}

// DelService implements Kernel.
func (n *Netlink) DelService(k ServiceKey) error {
	return n.do(func(h *mobyipvs.Handle) error {
		return mapErr(OpDelService, h.DelService(toMobyService(KernelService{Key: k})))
	})
}

// NewDestination implements Kernel.
func (n *Netlink) NewDestination(k ServiceKey, d KernelDestination) error {
	return n.do(func(h *mobyipvs.Handle) error {
		return mapErr(OpNewDestination, h.NewDestination(toMobyService(KernelService{Key: k}), toMobyDestination(d)))
	})
}

// UpdateDestination implements Kernel.
func (n *Netlink) UpdateDestination(k ServiceKey, d KernelDestination) error {
	return n.do(func(h *mobyipvs.Handle) error {
		return mapErr(OpUpdateDestination, h.UpdateDestination(toMobyService(KernelService{Key: k}), toMobyDestination(d)))
	})
}

// DelDestination implements Kernel.
func (n *Netlink) DelDestination(k ServiceKey, a netip.AddrPort) error {
	return n.do(func(h *mobyipvs.Handle) error {
		return mapErr(OpDelDestination, h.DelDestination(toMobyService(KernelService{Key: k}), toMobyDestination(KernelDestination{Addr: a})))
	})
}

// GetConfig implements Kernel.
func (n *Netlink) GetConfig() (Timeouts, error) {
	var out Timeouts
	err := n.do(func(h *mobyipvs.Handle) (err error) {
		// moby/ipvs indexes the answer's first message without checking; a handle bound to the
		// wrong family gets no message and would panic.
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("no answer to IPVS_CMD_GET_CONFIG (%v)", r)
			}
		}()
		c, err := h.GetConfig()
		if err != nil {
			return err
		}
		out = Timeouts{TCP: c.TimeoutTCP, TCPFin: c.TimeoutTCPFin, UDP: c.TimeoutUDP}
		return nil
	})
	return out, err
}

// SetConfig implements Kernel.
func (n *Netlink) SetConfig(t Timeouts) error {
	return n.do(func(h *mobyipvs.Handle) error {
		return h.SetConfig(&mobyipvs.Config{TimeoutTCP: t.TCP, TimeoutTCPFin: t.TCPFin, TimeoutUDP: t.UDP})
	})
}

// mapErr wraps the kernel's errno with this package's sentinels, keeping the errno.
func mapErr(op OpKind, err error) error {
	var errno syscall.Errno
	if err == nil || !errors.As(err, &errno) {
		return err
	}
	switch {
	case errno == syscall.EEXIST && (op == OpNewService || op == OpNewDestination):
		return fmt.Errorf("%w: %w", ErrExists, err)
	case errno == syscall.ESRCH:
		return fmt.Errorf("%w: %w", ErrNoService, err)
	case errno == syscall.ENOENT && (op == OpNewService || op == OpUpdateService):
		return fmt.Errorf("%w: %w", ErrSchedulerUnavailable, err)
	case errno == syscall.ENOENT && (op == OpUpdateDestination || op == OpDelDestination):
		return fmt.Errorf("%w: %w", ErrNoDestination, err)
	}
	return err
}

// toMobyService converts a kernel service to moby/ipvs's form.
func toMobyService(s KernelService) *mobyipvs.Service {
	m := &mobyipvs.Service{
		AddressFamily: uint16(s.Key.Family),
		FWMark:        s.Key.FWMark,
		SchedName:     s.Scheduler,
		Flags:         s.Flags &^ KernelFlagHashed,
		Timeout:       s.Timeout,
		Netmask:       s.Netmask,
	}
	if !s.Key.IsMark() {
		m.Protocol = uint16(s.Key.Protocol)
		m.Address = net.IP(s.Key.Addr.Addr().AsSlice())
		m.Port = s.Key.Addr.Port()
	}
	if s.Key.Family == IPv4 {
		// IPVS_SVC_ATTR_NETMASK is a __be32 for IPv4; moby/ipvs writes the value in host
		// order, so hand it the number whose host-order bytes are the mask's network-order
		// bytes.
		m.Netmask = binary.NativeEndian.Uint32(binary.BigEndian.AppendUint32(nil, s.Netmask))
	}
	return m
}

// fromMobyService converts moby/ipvs's service to a KernelService.
func fromMobyService(m *mobyipvs.Service) (KernelService, error) {
	fam := Family(m.AddressFamily)
	ks := KernelService{
		Scheduler: m.SchedName,
		Flags:     m.Flags,
		Timeout:   m.Timeout,
		Netmask:   m.Netmask,
		Stats:     fromMobyStats(mobyipvs.SvcStats(m.Stats)),
	}
	if fam == IPv4 {
		ks.Netmask = binary.BigEndian.Uint32(binary.NativeEndian.AppendUint32(nil, m.Netmask))
	}
	if m.FWMark != 0 {
		ks.Key = MarkKey(m.FWMark, fam)
		return ks, nil
	}
	a, ok := netip.AddrFromSlice(m.Address)
	if !ok {
		return ks, fmt.Errorf("ipvs: kernel service with unreadable address %v", m.Address)
	}
	ks.Key = AddrKey(Protocol(m.Protocol), netip.AddrPortFrom(a.Unmap(), m.Port))
	return ks, nil
}

// toMobyDestination converts a kernel destination to moby/ipvs's form.
func toMobyDestination(d KernelDestination) *mobyipvs.Destination {
	m := &mobyipvs.Destination{
		Address:         net.IP(d.Addr.Addr().AsSlice()),
		Port:            d.Addr.Port(),
		Weight:          d.Weight,
		ConnectionFlags: d.FwdMethod & KernelFwdMask,
		UpperThreshold:  d.UpperThreshold,
		LowerThreshold:  d.LowerThreshold,
	}
	if d.Addr.Addr().Is4() {
		m.AddressFamily = uint16(IPv4)
	} else {
		m.AddressFamily = uint16(IPv6)
	}
	return m
}

// fromMobyDestination converts moby/ipvs's destination to a KernelDestination.
func fromMobyDestination(m *mobyipvs.Destination) (KernelDestination, error) {
	a, ok := netip.AddrFromSlice(m.Address)
	if !ok {
		return KernelDestination{}, fmt.Errorf("ipvs: kernel destination with unreadable address %v", m.Address)
	}
	return KernelDestination{
		Addr:           netip.AddrPortFrom(a.Unmap(), m.Port),
		Weight:         m.Weight,
		FwdMethod:      m.ConnectionFlags & KernelFwdMask,
		UpperThreshold: m.UpperThreshold,
		LowerThreshold: m.LowerThreshold,
		ActiveConns:    uint32(m.ActiveConnections),
		InactiveConns:  uint32(m.InactiveConnections),
		Stats:          fromMobyStats(mobyipvs.SvcStats(m.Stats)),
	}, nil
}

func fromMobyStats(s mobyipvs.SvcStats) Stats {
	return Stats{
		Conns: uint64(s.Connections), PacketsIn: uint64(s.PacketsIn), PacketsOut: uint64(s.PacketsOut),
		BytesIn: s.BytesIn, BytesOut: s.BytesOut, CPS: uint64(s.CPS),
		PPSIn: uint64(s.PPSIn), PPSOut: uint64(s.PPSOut), BPSIn: uint64(s.BPSIn), BPSOut: uint64(s.BPSOut),
	}
}
