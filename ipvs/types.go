package ipvs

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Protocol is the transport protocol of an address-based virtual service. The values are the
// IANA protocol numbers the kernel uses (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP).
type Protocol uint8

// The protocols IPVS balances.
const (
	TCP  Protocol = unix.IPPROTO_TCP  // 6
	UDP  Protocol = unix.IPPROTO_UDP  // 17
	SCTP Protocol = unix.IPPROTO_SCTP // 132
)

// String returns "tcp", "udp", "sctp", or "proto(N)".
func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case SCTP:
		return "sctp"
	}
	return "proto(" + strconv.Itoa(int(p)) + ")"
}

// ParseProtocol parses "tcp", "udp" or "sctp".
func ParseProtocol(s string) (Protocol, error) {
	switch strings.ToLower(s) {
	case "tcp":
		return TCP, nil
	case "udp":
		return UDP, nil
	case "sctp":
		return SCTP, nil
	}
	return 0, fmt.Errorf("unknown protocol %q (want tcp, udp or sctp)", s)
}

// Family is an address family, with the kernel's values (AF_INET, AF_INET6).
type Family uint16

// The address families.
const (
	IPv4 Family = unix.AF_INET  // 2
	IPv6 Family = unix.AF_INET6 // 10
)

// String returns "ipv4", "ipv6" or "af(N)".
func (f Family) String() string {
	switch f {
	case IPv4:
		return "ipv4"
	case IPv6:
		return "ipv6"
	}
	return "af(" + strconv.Itoa(int(f)) + ")"
}

// familyOf returns the family of a (non-mapped) address.
func familyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// bits is the address length of the family in bits.
func (f Family) bits() int {
	if f == IPv4 {
		return 32
	}
	return 128
}

// ServiceKey identifies a virtual service: either an address, port and protocol, or a
// firewall mark and an address family. It is comparable and is the map key throughout the
// package. Build it with AddrKey or MarkKey so that Family is filled in consistently.
type ServiceKey struct {
	Protocol Protocol       // TCP, UDP or SCTP; zero for a firewall-mark service
	Addr     netip.AddrPort // the virtual address; zero for a firewall-mark service
	FWMark   uint32         // the firewall mark; zero for an address service
	Family   Family         // IPv4 or IPv6; for an address service, that of Addr
}

// AddrKey is the key of an address service.
func AddrKey(p Protocol, ap netip.AddrPort) ServiceKey {
	k := ServiceKey{Protocol: p, Addr: ap}
	if ap.Addr().IsValid() {
		k.Family = familyOf(ap.Addr())
	}
	return k
}

// MarkKey is the key of a firewall-mark service.
func MarkKey(mark uint32, f Family) ServiceKey {
	return ServiceKey{FWMark: mark, Family: f}
}

// IsMark reports whether the key names a firewall-mark service.
func (k ServiceKey) IsMark() bool { return k.FWMark != 0 }

// String returns "tcp/192.0.2.1:80", "udp/[2001:db8::1]:53" or "fwmark/ipv4/10"; ParseServiceKey
// reads it back.
func (k ServiceKey) String() string {
	if k.IsMark() {
		return "fwmark/" + k.Family.String() + "/" + strconv.FormatUint(uint64(k.FWMark), 10)
	}
	return k.Protocol.String() + "/" + k.Addr.String()
}

// MarshalText implements encoding.TextMarshaler (the String form).
func (k ServiceKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *ServiceKey) UnmarshalText(b []byte) error {
	v, err := ParseServiceKey(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// ParseServiceKey parses the String form of a key: "tcp/ADDR:PORT", "udp/...", "sctp/...",
// "fwmark/ipv4/MARK" or "fwmark/ipv6/MARK".
func ParseServiceKey(s string) (ServiceKey, error) {
	head, rest, ok := strings.Cut(s, "/")
	if !ok {
		return ServiceKey{}, fmt.Errorf("service key %q: want PROTO/ADDR:PORT or fwmark/FAMILY/MARK", s)
	}
	if head == "fwmark" {
		fam, mark, ok := strings.Cut(rest, "/")
		if !ok {
			return ServiceKey{}, fmt.Errorf("service key %q: want fwmark/ipv4/MARK or fwmark/ipv6/MARK", s)
		}
		var f Family
		switch fam {
		case "ipv4":
			f = IPv4
		case "ipv6":
			f = IPv6
		default:
			return ServiceKey{}, fmt.Errorf("service key %q: family %q is not ipv4 or ipv6", s, fam)
		}
		m, err := strconv.ParseUint(mark, 10, 32)
		if err != nil || m == 0 {
			return ServiceKey{}, fmt.Errorf("service key %q: mark %q is not a number from 1 to 4294967295", s, mark)
		}
		return MarkKey(uint32(m), f), nil
	}
	p, err := ParseProtocol(head)
	if err != nil {
		return ServiceKey{}, fmt.Errorf("service key %q: %w", s, err)
	}
	ap, err := netip.ParseAddrPort(rest)
	if err != nil {
		return ServiceKey{}, fmt.Errorf("service key %q: %w", s, err)
	}
	return AddrKey(p, ap), nil
}

// Scheduler names an IPVS scheduling algorithm (the kernel module ip_vs_<name>).
type Scheduler string

// The schedulers of Linux's IPVS. Which ones a kernel has depends on its version and build:
// twos appeared in Linux 6.2, so Debian 12's 6.1 kernel lacks it; the kernel then answers
// ENOENT, reported as ErrSchedulerUnavailable.
const (
	RoundRobin                  Scheduler = "rr"
	WeightedRoundRobin          Scheduler = "wrr"
	LeastConnection             Scheduler = "lc"
	WeightedLeastConnection     Scheduler = "wlc"
	LocalityLeastConnection     Scheduler = "lblc"
	LocalityLeastConnectionRepl Scheduler = "lblcr"
	DestinationHashing          Scheduler = "dh"
	SourceHashing               Scheduler = "sh"
	ShortestExpectedDelay       Scheduler = "sed"
	NeverQueue                  Scheduler = "nq"
	WeightedFailover            Scheduler = "fo"
	WeightedOverflow            Scheduler = "ovf"
	MaglevHashing               Scheduler = "mh"
	WeightedRandomTwoChoices    Scheduler = "twos"
)

// Schedulers lists every scheduler the package accepts, in the kernel's documentation order.
func Schedulers() []Scheduler {
	return []Scheduler{
		RoundRobin, WeightedRoundRobin, LeastConnection, WeightedLeastConnection,
		LocalityLeastConnection, LocalityLeastConnectionRepl, DestinationHashing, SourceHashing,
		ShortestExpectedDelay, NeverQueue, WeightedFailover, WeightedOverflow, MaglevHashing,
		WeightedRandomTwoChoices,
	}
}

// Valid reports whether s is one of Schedulers.
func (s Scheduler) Valid() bool {
	for _, v := range Schedulers() {
		if s == v {
			return true
		}
	}
	return false
}

// SchedFlags are the scheduler flags of a service. Each is meaningful for one scheduler only:
// the sh flags for sh, the mh flags for mh (validation rejects any other pairing).
type SchedFlags uint8

// The scheduler flags, as ipvsadm's -b option names them.
const (
	SHFallback SchedFlags = 1 << iota // sh-fallback: skip an unavailable server, rehash
	SHPort                            // sh-port: hash the source port too
	MHFallback                        // mh-fallback: skip an unavailable server, rehash
	MHPort                            // mh-port: hash the source port too
)

// flagName pairs a flag with its ipvsadm name.
type flagName struct {
	f    SchedFlags
	name string
}

// flagNames lists the flags with their ipvsadm names (a function: no package-level state).
func flagNames() [4]flagName {
	return [...]flagName{{SHFallback, "sh-fallback"}, {SHPort, "sh-port"}, {MHFallback, "mh-fallback"}, {MHPort, "mh-port"}}
}

// Names returns the ipvsadm names of the flags set, e.g. ["mh-fallback", "mh-port"].
func (f SchedFlags) Names() []string {
	var out []string
	for _, n := range flagNames() {
		if f&n.f != 0 {
			out = append(out, n.name)
		}
	}
	if rest := f &^ (SHFallback | SHPort | MHFallback | MHPort); rest != 0 {
		out = append(out, fmt.Sprintf("unknown(%#x)", uint8(rest)))
	}
	return out
}

// String returns the names joined by commas, as ipvsadm -b takes them.
func (f SchedFlags) String() string { return strings.Join(f.Names(), ",") }

// ParseSchedFlag parses one ipvsadm flag name ("sh-fallback", "sh-port", "mh-fallback",
// "mh-port").
func ParseSchedFlag(s string) (SchedFlags, error) {
	for _, n := range flagNames() {
		if n.name == s {
			return n.f, nil
		}
	}
	return 0, fmt.Errorf("unknown scheduler flag %q (want sh-fallback, sh-port, mh-fallback or mh-port)", s)
}

// Forwarding is a destination's packet-forwarding method.
type Forwarding uint8

// The forwarding methods. The zero value is not a method: validation rejects it, so that a
// forgotten field never silently means NAT.
const (
	Masq   Forwarding = iota + 1 // NAT (ipvsadm -m)
	Route                        // direct routing, "DR" (ipvsadm -g)
	Tunnel                       // IP-in-IP tunnel (ipvsadm -i)
)

// String returns "masq", "route", "tunnel" or "forwarding(N)".
func (f Forwarding) String() string {
	switch f {
	case Masq:
		return "masq"
	case Route:
		return "route"
	case Tunnel:
		return "tunnel"
	}
	return "forwarding(" + strconv.Itoa(int(f)) + ")"
}

// ParseForwarding parses "masq" (or "nat"), "route" (or "dr"), "tunnel" (or "tun").
func ParseForwarding(s string) (Forwarding, error) {
	switch strings.ToLower(s) {
	case "masq", "nat":
		return Masq, nil
	case "route", "dr":
		return Route, nil
	case "tunnel", "tun":
		return Tunnel, nil
	}
	return 0, fmt.Errorf("unknown forwarding method %q (want masq, route or tunnel)", s)
}

// FailurePolicy says what happens to a destination that fails its health check.
type FailurePolicy uint8

// The failure policies.
const (
	// Drain sets the failed destination's weight to 0: no new connections, existing ones
	// finish (keepalived's inhibit_on_failure). The default.
	Drain FailurePolicy = iota
	// Remove deletes the failed destination from the kernel, and adds it back on recovery.
	Remove
)

// String returns "drain" or "remove".
func (p FailurePolicy) String() string {
	switch p {
	case Drain:
		return "drain"
	case Remove:
		return "remove"
	}
	return "policy(" + strconv.Itoa(int(p)) + ")"
}

// Destination is a real server of a service, as the caller wants it.
type Destination struct {
	// Addr is the real server's address and port. The family must be the service's. A zero
	// port means the service's port. With Route and Tunnel forwarding the kernel cannot change
	// the port, so it must be the service's (or zero).
	Addr netip.AddrPort
	// Weight is the configured weight, 0 to 65535. 0 takes no new connections.
	Weight int
	// Forwarding is Masq, Route or Tunnel.
	Forwarding Forwarding
	// UpperThreshold caps the server's connections (0: no cap); LowerThreshold is where it
	// takes new ones again (0: at 3/4 of the cap). LowerThreshold must not exceed
	// UpperThreshold.
	UpperThreshold uint32
	LowerThreshold uint32
}

// Persistence makes a client stick to one destination for a while.
type Persistence struct {
	// Timeout is how long a client's affinity lasts after its last connection, in whole
	// seconds. Zero means the service is not persistent.
	Timeout time.Duration
	// Prefix groups clients: those in the same /Prefix network share affinity. For IPv4 the
	// kernel takes it as a netmask (24 = 255.255.255.0), for IPv6 as a prefix length. Zero
	// means a full mask (32 or 128): each client address on its own.
	Prefix int
}

// Quorum installs a sorry server when too few destinations are up.
type Quorum struct {
	// MinUp is the number of destinations that must be up (healthy, not drained by the
	// operator, configured weight above 0). Below it the quorum is lost: the sorry server is
	// added and the other destinations are drained or removed by the service's failure
	// policy. Zero disables the quorum.
	MinUp int
	// Hysteresis: once lost, the quorum is back only when MinUp+Hysteresis destinations are up.
	Hysteresis int
	// Sorry is the sorry server; nil means none (a lost quorum is then only reported). A zero
	// weight means 1.
	Sorry *Destination
}

// Service is a virtual service as the caller wants it.
type Service struct {
	Key ServiceKey
	// Scheduler is the scheduling algorithm; empty means wlc, the kernel's usual default.
	Scheduler Scheduler
	// Flags are scheduler flags (sh-*, mh-*), for the sh and mh schedulers only.
	Flags SchedFlags
	// Persistence makes clients sticky; the zero value means not persistent. A service with
	// port 0 (all ports) must be persistent.
	Persistence Persistence
	// Destinations are the real servers.
	Destinations []Destination
	// OnFailure is what a failed health check does to a destination: Drain (default) or Remove.
	OnFailure FailurePolicy
	// Quorum, if MinUp > 0, installs a sorry server when too few destinations are up.
	Quorum Quorum
	// SlowStart ramps a recovered destination's weight up linearly from 1 to its configured
	// weight over this long. Zero: full weight at once.
	SlowStart time.Duration
}

// Timeouts are IPVS's global connection timeouts (ipvsadm --set). Zero means "leave the
// kernel's value"; otherwise whole seconds.
type Timeouts struct {
	TCP    time.Duration // established TCP connections (kernel default 900 s)
	TCPFin time.Duration // TCP after a FIN (default 120 s)
	UDP    time.Duration // UDP (default 300 s)
}

// IsZero reports whether no timeout is set.
func (t Timeouts) IsZero() bool { return t == Timeouts{} }

// Desired is the whole state the caller wants: the services this agent owns and the global
// timeouts. Apply takes all of it at once.
type Desired struct {
	Services []Service
	Timeouts Timeouts
}
