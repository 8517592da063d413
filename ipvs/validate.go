package ipvs

import (
	"fmt"
	"net/netip"
	"time"
)

// Validate checks a whole desired state and returns nil or a *ValidationError listing every
// problem. Apply calls it before any kernel operation; callers (the agent's config check) may
// call it on their own.
func Validate(d Desired) error {
	_, err := normalize(d)
	return err
}

// normalize validates d and returns a deep copy with defaults filled in: scheduler wlc, a
// destination's zero port set to the service's, a sorry server's zero weight set to 1.
func normalize(d Desired) (Desired, error) {
	var probs []string
	bad := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }

	checkTimeout := func(name string, v time.Duration) {
		switch {
		case v < 0:
			bad("timeout %s %v is negative", name, v)
		case v%time.Second != 0:
			bad("timeout %s %v is not a whole number of seconds", name, v)
		case v > maxTimeoutSeconds*time.Second:
			bad("timeout %s %v exceeds %ds", name, v, maxTimeoutSeconds)
		}
	}
	checkTimeout("tcp", d.Timeouts.TCP)
	checkTimeout("tcpfin", d.Timeouts.TCPFin)
	checkTimeout("udp", d.Timeouts.UDP)

	out := Desired{Timeouts: d.Timeouts, Services: make([]Service, 0, len(d.Services))}
	seen := make(map[ServiceKey]int, len(d.Services))
	for i := range d.Services {
		s := d.Services[i] // copy
		name := fmt.Sprintf("service %d (%s)", i, s.Key)
		if j, dup := seen[s.Key]; dup {
			bad("%s: duplicate of service %d", name, j)
		}
		seen[s.Key] = i

		probs = append(probs, checkKey(name, s.Key)...)
		if s.Scheduler == "" {
			s.Scheduler = WeightedLeastConnection
		}
		if !s.Scheduler.Valid() {
			bad("%s: unknown scheduler %q (want one of rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh twos)", name, s.Scheduler)
		}
		if rest := s.Flags &^ (SHFallback | SHPort | MHFallback | MHPort); rest != 0 {
			bad("%s: unknown scheduler flag bits %#x", name, uint8(rest))
		}
		if s.Flags&(SHFallback|SHPort) != 0 && s.Scheduler != SourceHashing {
			bad("%s: flags %s apply to the sh scheduler only, not %s", name, s.Flags&(SHFallback|SHPort), s.Scheduler)
		}
		if s.Flags&(MHFallback|MHPort) != 0 && s.Scheduler != MaglevHashing {
			bad("%s: flags %s apply to the mh scheduler only, not %s", name, s.Flags&(MHFallback|MHPort), s.Scheduler)
		}

		p := s.Persistence
		switch {
		case p.Timeout < 0:
			bad("%s: persistence timeout %v is negative", name, p.Timeout)
		case p.Timeout > 0 && p.Timeout%time.Second != 0:
			bad("%s: persistence timeout %v is not a whole number of seconds", name, p.Timeout)
		case p.Timeout > maxTimeoutSeconds*time.Second:
			bad("%s: persistence timeout %v exceeds %ds", name, p.Timeout, maxTimeoutSeconds)
		}
		if p.Prefix != 0 {
			if p.Timeout == 0 {
				bad("%s: a persistence netmask without a persistence timeout", name)
			}
			if max := s.Key.Family.bits(); p.Prefix < 1 || p.Prefix > max {
				bad("%s: persistence prefix /%d out of range 1-%d for %s", name, p.Prefix, max, s.Key.Family)
			}
		}
		if !s.Key.IsMark() && s.Key.Addr.Port() == 0 && p.Timeout == 0 {
			bad("%s: port 0 (all ports) requires persistence", name)
		}

		switch s.OnFailure {
		case Drain, Remove:
		default:
			bad("%s: unknown failure policy %d", name, s.OnFailure)
		}
		if s.SlowStart < 0 {
			bad("%s: slow start %v is negative", name, s.SlowStart)
		}
		q := s.Quorum
		if q.MinUp < 0 || q.Hysteresis < 0 {
			bad("%s: quorum min_up %d and hysteresis %d must not be negative", name, q.MinUp, q.Hysteresis)
		}

		dests := make([]Destination, len(s.Destinations))
		seenDest := make(map[netip.AddrPort]int, len(s.Destinations))
		for j := range s.Destinations {
			dd := s.Destinations[j]
			dname := fmt.Sprintf("%s destination %d (%s)", name, j, dd.Addr)
			probs = append(probs, checkDest(dname, s.Key, &dd)...)
			if k, dup := seenDest[dd.Addr]; dup {
				bad("%s: duplicate of destination %d", dname, k)
			}
			seenDest[dd.Addr] = j
			dests[j] = dd
		}
		s.Destinations = dests

		if q.Sorry != nil {
			sorry := *q.Sorry
			if sorry.Weight == 0 {
				sorry.Weight = 1
			}
			dname := fmt.Sprintf("%s sorry server (%s)", name, sorry.Addr)
			probs = append(probs, checkDest(dname, s.Key, &sorry)...)
			if k, dup := seenDest[sorry.Addr]; dup {
				bad("%s: same address as destination %d", dname, k)
			}
			s.Quorum.Sorry = &sorry
			if q.MinUp == 0 {
				bad("%s: a sorry server needs a quorum (min_up > 0)", name)
			}
		}
		out.Services = append(out.Services, s)
	}
	if len(probs) > 0 {
		return Desired{}, &ValidationError{Problems: probs}
	}
	return out, nil
}

// checkKey validates a service key.
func checkKey(name string, k ServiceKey) []string {
	var probs []string
	bad := func(format string, args ...any) { probs = append(probs, name+": "+fmt.Sprintf(format, args...)) }
	if k.Family != IPv4 && k.Family != IPv6 {
		bad("address family %s is not ipv4 or ipv6", k.Family)
	}
	if k.IsMark() {
		if k.Protocol != 0 || k.Addr != (netip.AddrPort{}) {
			bad("a firewall-mark service has no protocol or address")
		}
		return probs
	}
	switch k.Protocol {
	case TCP, UDP, SCTP:
	default:
		bad("protocol %s is not tcp, udp or sctp (or set a firewall mark)", k.Protocol)
	}
	a := k.Addr.Addr()
	switch {
	case !a.IsValid():
		bad("no address")
	case a.Is4In6():
		bad("IPv4-mapped IPv6 address %s: write it as IPv4", a)
	case a.Zone() != "":
		bad("address %s has a zone", a)
	case a.IsUnspecified() || a.IsMulticast():
		bad("address %s is not a unicast address", a)
	case familyOf(a) != k.Family:
		bad("address %s is not %s (build keys with AddrKey)", a, k.Family)
	}
	return probs
}

// checkDest validates a destination of the service with key k and fills in a zero port.
func checkDest(name string, k ServiceKey, d *Destination) []string {
	var probs []string
	bad := func(format string, args ...any) { probs = append(probs, name+": "+fmt.Sprintf(format, args...)) }
	a := d.Addr.Addr()
	switch {
	case !a.IsValid():
		bad("no address")
		return probs
	case a.Is4In6():
		bad("IPv4-mapped IPv6 address %s: write it as IPv4", a)
	case a.Zone() != "":
		bad("address %s has a zone", a)
	case a.IsUnspecified() || a.IsMulticast():
		bad("address %s is not a unicast address", a)
	case familyOf(a) != k.Family:
		// moby/ipvs sends no destination address family, so the kernel takes the service's.
		bad("address %s is not %s like the service", a, k.Family)
	}
	switch d.Forwarding {
	case Masq, Route, Tunnel:
	case 0:
		bad("no forwarding method (masq, route or tunnel)")
	default:
		bad("unknown forwarding method %d", d.Forwarding)
	}
	if d.Weight < 0 || d.Weight > MaxWeight {
		bad("weight %d out of range 0-%d", d.Weight, MaxWeight)
	}
	if d.LowerThreshold > d.UpperThreshold {
		bad("lower threshold %d above upper threshold %d", d.LowerThreshold, d.UpperThreshold)
	}
	if !k.IsMark() && d.Addr.Port() == 0 {
		d.Addr = netip.AddrPortFrom(a, k.Addr.Port())
	}
	if !k.IsMark() && (d.Forwarding == Route || d.Forwarding == Tunnel) && d.Addr.Port() != k.Addr.Port() {
		bad("%s forwarding cannot change the port: use %d (the service's) or 0", d.Forwarding, k.Addr.Port())
	}
	return probs
}
