package ipvs

import (
	"errors"
	"net/netip"
)

// Kernel constants, from Linux's include/uapi/linux/ip_vs.h unless noted.
const (
	// Virtual service flags (IP_VS_SVC_F_*).
	KernelFlagPersistent uint32 = 0x0001 // IP_VS_SVC_F_PERSISTENT: persistent port
	KernelFlagHashed     uint32 = 0x0002 // IP_VS_SVC_F_HASHED: set by the kernel on every hashed service
	KernelFlagOnePacket  uint32 = 0x0004 // IP_VS_SVC_F_ONEPACKET: one-packet scheduling
	KernelFlagSched1     uint32 = 0x0008 // IP_VS_SVC_F_SCHED1: scheduler flag 1
	KernelFlagSched2     uint32 = 0x0010 // IP_VS_SVC_F_SCHED2: scheduler flag 2
	KernelFlagSched3     uint32 = 0x0020 // IP_VS_SVC_F_SCHED3: scheduler flag 3

	// IP_VS_SVC_F_SCHED_SH_FALLBACK and IP_VS_SVC_F_SCHED_SH_PORT (include/uapi/linux/ip_vs.h).
	KernelFlagSHFallback = KernelFlagSched1
	KernelFlagSHPort     = KernelFlagSched2
	// IP_VS_SVC_F_SCHED_MH_FALLBACK and IP_VS_SVC_F_SCHED_MH_PORT, defined in
	// net/netfilter/ipvs/ip_vs_mh.c (not in the uapi header; ipvsadm 1.30+ has the same values).
	KernelFlagMHFallback = KernelFlagSched1
	KernelFlagMHPort     = KernelFlagSched2

	// Forwarding methods (IP_VS_CONN_F_FWD_MASK bits of a destination's conn_flags).
	KernelFwdMasq      uint32 = 0x0000 // IP_VS_CONN_F_MASQ
	KernelFwdLocalNode uint32 = 0x0001 // IP_VS_CONN_F_LOCALNODE
	KernelFwdTunnel    uint32 = 0x0002 // IP_VS_CONN_F_TUNNEL
	KernelFwdRoute     uint32 = 0x0003 // IP_VS_CONN_F_DROUTE
	KernelFwdMask      uint32 = 0x0007 // IP_VS_CONN_F_FWD_MASK

	// MaxWeight is the largest weight this package sets. The kernel keeps an int, but ipvsadm
	// caps weights at 65535 and moby/ipvs reads the IPVS_DEST_ATTR_WEIGHT attribute back as a
	// 16-bit value, so a larger weight could not be read back faithfully.
	MaxWeight = 65535

	// maxTimeoutSeconds bounds persistence and global timeouts: the kernel multiplies them by
	// HZ (at most 1000) into an int of jiffies (ip_vs_set_timeout rejects larger values).
	maxTimeoutSeconds = (1<<31 - 1) / 1000
)

// Errors a Kernel returns for a service or destination that is not there; implementations
// wrap the kernel's errno with them, so errors.Is works on both.
var (
	// ErrNoService: the service does not exist (the kernel's ESRCH).
	ErrNoService = errors.New("no such IPVS service")
	// ErrNoDestination: the destination does not exist (the kernel's ENOENT on a destination).
	ErrNoDestination = errors.New("no such IPVS destination")
	// ErrExists: the service or destination exists already (EEXIST).
	ErrExists = errors.New("IPVS object exists already")
	// ErrSchedulerUnavailable: the kernel has no module for the scheduler (ENOENT on a
	// service), for instance twos before Linux 6.2.
	ErrSchedulerUnavailable = errors.New("IPVS scheduler not available in this kernel")
)

// Kernel is the narrow view of kernel IPVS the Reconciler needs: one call per generic-netlink
// operation, in this package's own types. Open returns the real one (moby/ipvs over netlink,
// serialised by a mutex); ipvstest.Fake is the in-memory one for tests. Implementations must
// be safe for concurrent use.
type Kernel interface {
	// GetServices dumps every service of the network namespace (owned or not), without
	// destinations.
	GetServices() ([]KernelService, error)
	// GetService reads one service; ErrNoService when absent.
	GetService(ServiceKey) (KernelService, error)
	// GetDestinations dumps the destinations of one service. The kernel answers an empty list
	// (not an error) when the service does not exist.
	GetDestinations(ServiceKey) ([]KernelDestination, error)
	// NewService adds a service (ErrExists when present, ErrSchedulerUnavailable when the
	// scheduler is unknown to the kernel).
	NewService(KernelService) error
	// UpdateService changes a service's scheduler, flags, timeout and netmask in place.
	UpdateService(KernelService) error
	// DelService deletes a service and its destinations.
	DelService(ServiceKey) error
	// NewDestination adds a destination to a service.
	NewDestination(ServiceKey, KernelDestination) error
	// UpdateDestination changes a destination's weight, forwarding and thresholds in place.
	UpdateDestination(ServiceKey, KernelDestination) error
	// DelDestination deletes a destination.
	DelDestination(ServiceKey, netip.AddrPort) error
	// GetConfig reads the global timeouts.
	GetConfig() (Timeouts, error)
	// SetConfig sets the global timeouts; a zero field leaves that timeout unchanged.
	SetConfig(Timeouts) error
	// Close releases the handle.
	Close() error
}

// KernelService is a virtual service as the kernel holds it (the IPVS_SVC_ATTR_* attributes).
type KernelService struct {
	Key       ServiceKey
	Scheduler string
	// Flags are IP_VS_SVC_F_* bits. The kernel adds KernelFlagHashed to every service it
	// reports; comparisons ignore that bit.
	Flags uint32
	// Timeout is the persistence timeout in seconds.
	Timeout uint32
	// Netmask groups persistent clients: for IPv4 a mask in host byte order (0xffffff00 is
	// /24), for IPv6 a prefix length (1 to 128).
	Netmask uint32
	// Stats are the kernel's counters (read only).
	Stats Stats
}

// KernelDestination is a real server as the kernel holds it (the IPVS_DEST_ATTR_* attributes).
type KernelDestination struct {
	Addr           netip.AddrPort
	Weight         int
	FwdMethod      uint32 // KernelFwd* (IP_VS_CONN_F_FWD_MASK bits)
	UpperThreshold uint32
	LowerThreshold uint32
	// Read only: the kernel's connection counts and counters.
	ActiveConns   uint32
	InactiveConns uint32
	Stats         Stats
}

// Stats are kernel IPVS counters of a service or destination, as moby/ipvs reads them from the
// 32-bit IPVS_SVC_ATTR_STATS / IPVS_DEST_ATTR_STATS (connection and packet counts wrap at 2^32).
type Stats struct {
	Conns      uint64 `json:"conns"`
	PacketsIn  uint64 `json:"packets_in"`
	PacketsOut uint64 `json:"packets_out"`
	BytesIn    uint64 `json:"bytes_in"`
	BytesOut   uint64 `json:"bytes_out"`
	CPS        uint64 `json:"cps"` // connections per second (the kernel's estimator)
	PPSIn      uint64 `json:"pps_in"`
	PPSOut     uint64 `json:"pps_out"`
	BPSIn      uint64 `json:"bps_in"`
	BPSOut     uint64 `json:"bps_out"`
}

// sameService reports whether two kernel services have the same settings (not stats), the
// kernel-maintained hashed bit aside.
func sameService(a, b KernelService) bool {
	return a.Key == b.Key && a.Scheduler == b.Scheduler &&
		a.Flags&^KernelFlagHashed == b.Flags&^KernelFlagHashed &&
		a.Timeout == b.Timeout && a.Netmask == b.Netmask
}

// sameDestination reports whether two kernel destinations have the same settings (not
// counters).
func sameDestination(a, b KernelDestination) bool {
	return a.Addr == b.Addr && a.Weight == b.Weight && a.FwdMethod&KernelFwdMask == b.FwdMethod&KernelFwdMask &&
		a.UpperThreshold == b.UpperThreshold && a.LowerThreshold == b.LowerThreshold
}

// kernelFwd maps a Forwarding to the kernel's method bits.
func kernelFwd(f Forwarding) uint32 {
	switch f {
	case Route:
		return KernelFwdRoute
	case Tunnel:
		return KernelFwdTunnel
	}
	return KernelFwdMasq
}

// FwdName names kernel forwarding bits as ipvsadm -Ln does: Masq, Local, Tunnel, Route.
func FwdName(m uint32) string {
	switch m & KernelFwdMask {
	case KernelFwdMasq:
		return "Masq"
	case KernelFwdLocalNode:
		return "Local"
	case KernelFwdTunnel:
		return "Tunnel"
	case KernelFwdRoute:
		return "Route"
	}
	return "Bypass"
}

// kernelFlags maps scheduler flags and persistence to IP_VS_SVC_F_* bits.
func kernelFlags(f SchedFlags, persistent bool) uint32 {
	var k uint32
	if persistent {
		k |= KernelFlagPersistent
	}
	if f&SHFallback != 0 {
		k |= KernelFlagSHFallback
	}
	if f&SHPort != 0 {
		k |= KernelFlagSHPort
	}
	if f&MHFallback != 0 {
		k |= KernelFlagMHFallback
	}
	if f&MHPort != 0 {
		k |= KernelFlagMHPort
	}
	return k
}

// prefixMask4 is the IPv4 netmask of a prefix length, in host byte order.
func prefixMask4(bits int) uint32 {
	if bits <= 0 {
		return 0
	}
	return ^uint32(0) << (32 - bits)
}

// kernelService is the kernel form of a validated service.
func kernelService(s *Service) KernelService {
	ks := KernelService{
		Key:       s.Key,
		Scheduler: string(s.Scheduler),
		Flags:     kernelFlags(s.Flags, s.Persistence.Timeout > 0),
		Timeout:   uint32(s.Persistence.Timeout.Seconds()),
	}
	// The kernel rejects an IPv6 service with netmask 0, and an IPv4 mask of 0 would lump all
	// clients together, so a service always carries a full mask unless told otherwise, as
	// ipvsadm does.
	prefix := s.Persistence.Prefix
	if prefix == 0 {
		prefix = s.Key.Family.bits()
	}
	if s.Key.Family == IPv4 {
		ks.Netmask = prefixMask4(prefix)
	} else {
		ks.Netmask = uint32(prefix)
	}
	return ks
}

// kernelDestination is the kernel form of a validated destination with an effective weight.
func kernelDestination(d *Destination, weight int) KernelDestination {
	return KernelDestination{
		Addr:           d.Addr,
		Weight:         weight,
		FwdMethod:      kernelFwd(d.Forwarding),
		UpperThreshold: d.UpperThreshold,
		LowerThreshold: d.LowerThreshold,
	}
}
