package config

import (
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// IPVS defaults (ipvsadm's, where ipvsadm has one).
const (
	defaultProtocol           = TCP
	defaultScheduler          = SchedWeightedLeastConn
	defaultForwarding         = ForwardNAT
	defaultOnFailure          = FailureDrain
	defaultPersistenceTimeout = 300 * time.Second
	defaultRealServerWeight   = 1
	// maxRealServerWeight is ipvsadm's limit on -w.
	maxRealServerWeight = 65535
)

func schedulers() []string {
	return []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}
}

func schedulerFlags() []string {
	return []string{string(FlagSHFallback), string(FlagSHPort), string(FlagMHFallback), string(FlagMHPort)}
}

func forwardingMethods() []string {
	return []string{string(ForwardNAT), string(ForwardDirect), string(ForwardTunnel)}
}

func (d *decoder) decodeVirtualServer(h header, b *virtualServerBlock) VirtualServer {
	vs := VirtualServer{
		Name:       h.Name,
		Source:     h.DefRange,
		Scheduler:  defaultScheduler,
		Forwarding: defaultForwarding,
		OnFailure:  defaultOnFailure,
	}
	where := fmt.Sprintf("virtual_server %q", h.Name)
	d.decodeServiceKey(&vs, h, b)

	if v, st := d.enum(b.Scheduler, "IPVS scheduler", schedulers()); st == valid {
		vs.Scheduler = Scheduler(v)
	}
	vs.SchedulerFlags = d.decodeSchedulerFlags(b.SchedulerFlags, vs.Scheduler)
	if v, st := d.enum(b.Forwarding, "forwarding method", forwardingMethods()); st == valid {
		vs.Forwarding = ForwardingMethod(v)
	}
	if p := b.Persistence; p != nil {
		vs.Persistence = d.decodePersistence(p, vs.Family)
	}
	if vs.Address.IsValid() && vs.Address.Port() == 0 && vs.Persistence == nil {
		// IPVS accepts port 0 ("all ports") only for persistent services
		// (ipvsadm: "Zero port specified for non-persistent service").
		d.errorf(b.Address.Expr.Range(), "Port 0 requires persistence",
			"Port 0 makes %s accept every port, which IPVS allows only for persistent services; add a persistence block or give a port.", where)
	}
	if v, st := d.enum(b.OnFailure, "failure action", []string{string(FailureDrain), string(FailureRemove)}); st == valid {
		vs.OnFailure = FailureAction(v)
	}
	vs.SlowStart, _ = d.durationOr(b.SlowStart, 0, time.Hour, 0)
	vs.RemoveOnShutdown = d.boolean(b.RemoveOnShutdown, false)

	vs.RealServers = d.decodeRealServers(&vs, b.RealServers)
	if len(b.RealServers) == 0 {
		d.warnf(h.DefRange, "Virtual server without real servers", "%s has no real_server blocks; it will only ever use its sorry server, if any.", where)
	}
	if ap, st := d.addrPort(b.SorryServer, true); st == valid {
		if ap.Port() == 0 && vs.Address.IsValid() {
			ap = netip.AddrPortFrom(ap.Addr(), vs.Address.Port())
		}
		if d.familyAllowed(vs.Family, ap.Addr(), vs.Forwarding, b.SorryServer.Expr.Range(), "sorry server") {
			vs.SorryServer = ap
		}
	}
	if q := b.Quorum; q != nil {
		vs.Quorum = d.decodeQuorum(q, len(vs.RealServers), len(b.RealServers))
	}

	vs.HealthChecks = d.decodeHealthChecks(b.HealthChecks, where, false, vs.Family)
	d.checkCheckPorts(&vs)
	return vs
}

// decodeServiceKey decodes what identifies the IPVS service: address and
// protocol, or fwmark and family.
func (d *decoder) decodeServiceKey(vs *VirtualServer, h header, b *virtualServerBlock) {
	switch {
	case b.Address != nil && b.FWMark != nil:
		d.errorf(b.FWMark.NameRange, "Conflicting arguments", "A virtual_server is either an address service or a fwmark service; remove address or fwmark.")
		return
	case b.Address == nil && b.FWMark == nil:
		d.errorf(h.DefRange, "Missing address or fwmark", "virtual_server %q needs address = \"IP:PORT\" or fwmark = N.", h.Name)
		return
	case b.Address != nil:
		if b.Family != nil {
			d.errorf(b.Family.NameRange, "Conflicting arguments", "family applies to fwmark services only; an address service has the address's family.")
		}
		if ap, st := d.addrPort(b.Address, false); st == valid {
			vs.Address, vs.Family = ap, FamilyOf(ap.Addr())
		}
		vs.Protocol = defaultProtocol
		if v, st := d.enum(b.Protocol, "protocol", []string{string(TCP), string(UDP), string(SCTP)}); st == valid {
			vs.Protocol = Protocol(v)
		}
	default:
		if b.Protocol != nil {
			d.errorf(b.Protocol.NameRange, "Conflicting arguments", "A fwmark service matches packets by firewall mark whatever their protocol; remove protocol.")
		}
		if m, st := d.integer(b.FWMark, 1, math.MaxUint32, ""); st == valid {
			vs.FWMark = uint32(m)
		}
		vs.Family = IPv4
		if v, st := d.enum(b.Family, "address family", []string{string(IPv4), string(IPv6)}); st == valid {
			vs.Family = AddressFamily(v)
		}
	}
}

func (d *decoder) decodeSchedulerFlags(a *hcl.Attribute, sched Scheduler) []SchedulerFlag {
	list, rngs, st := d.strList(a)
	if st != valid {
		return nil
	}
	var out []SchedulerFlag
	seen := map[string]bool{}
	for i, s := range list {
		var want Scheduler
		switch SchedulerFlag(s) {
		case FlagSHFallback, FlagSHPort:
			want = SchedSourceHash
		case FlagMHFallback, FlagMHPort:
			want = SchedMaglevHash
		default:
			d.errorf(rngs[i], "Invalid scheduler flag", "%q is not a scheduler flag; use %s.%s", s, quoteList(schedulerFlags()), didYouMean(s, schedulerFlags()))
			continue
		}
		switch {
		case seen[s]:
			d.errorf(rngs[i], "Duplicate scheduler flag", "%q is listed twice.", s)
		case sched != want:
			d.errorf(rngs[i], "Scheduler flag does not apply", "%q is a flag of the %s scheduler; this virtual server uses %s.", s, want, sched)
		default:
			seen[s] = true
			out = append(out, SchedulerFlag(s))
		}
	}
	return out
}

func (d *decoder) decodePersistence(b *persistenceBlock, family AddressFamily) *Persistence {
	p := &Persistence{Timeout: defaultPersistenceTimeout, PrefixLength: 32}
	if family == IPv6 {
		p.PrefixLength = 128
	}
	// IPVS keeps the persistence timeout in whole seconds.
	if t, ok := d.durationOr(b.Timeout, time.Second, 365*24*time.Hour, defaultPersistenceTimeout); ok {
		if t%time.Second != 0 {
			d.errorf(b.Timeout.Expr.Range(), "Invalid persistence timeout", "IPVS counts the persistence timeout in whole seconds; %s is not.", t)
		} else {
			p.Timeout = t
		}
	}
	if s, st := d.str(b.Netmask); st == valid && family != "" {
		n, err := parseMask(s, family)
		if err != nil {
			d.errorf(b.Netmask.Expr.Range(), "Invalid netmask", "%s.", err)
		} else {
			p.PrefixLength = n
		}
	}
	return p
}

func (d *decoder) decodeQuorum(b *quorumBlock, valid, declared int) *Quorum {
	minUp, mok := d.intOr(b.MinUp, 1, math.MaxUint16, 1, "")
	hyst, hok := d.intOr(b.Hysteresis, 0, math.MaxUint16, 0, "")
	q := &Quorum{MinUp: int(minUp), Hysteresis: int(hyst)}
	if !mok || !hok || valid != declared {
		return q
	}
	switch {
	case q.Hysteresis >= q.MinUp:
		d.errorf(rangeOf(b.Hysteresis, b.DefRange), "Invalid quorum", "hysteresis (%d) must be less than min_up (%d): the service goes down below min_up - hysteresis up servers.", q.Hysteresis, q.MinUp)
	case q.MinUp+q.Hysteresis > declared:
		d.errorf(rangeOf(b.MinUp, b.DefRange), "Quorum can never be reached",
			"The service comes up with min_up + hysteresis = %d healthy real servers, but it has %d.", q.MinUp+q.Hysteresis, declared)
	}
	return q
}

// familyAllowed checks a destination's family against the service's. IPVS
// forwards between families only by tunnelling (Linux 3.18 and later).
func (d *decoder) familyAllowed(family AddressFamily, a netip.Addr, fwd ForwardingMethod, rng hcl.Range, what string) bool {
	if family == "" || FamilyOf(a) == family || fwd == ForwardTunnel {
		return true
	}
	d.errorf(rng, "Mixed address families",
		"The %s %s is %s but the virtual server is %s; IPVS forwards between address families only with forwarding = \"tunnel\".", what, a, FamilyOf(a), family)
	return false
}

func (d *decoder) decodeRealServers(vs *VirtualServer, blocks []realServerBlock) []RealServer {
	names := d.newUnique("real_server")
	addrs := map[netip.AddrPort]hcl.Range{}
	var out []RealServer
	for i := range blocks {
		b := &blocks[i]
		ok := names.add(b.Name, b.NameRange)
		rs := RealServer{Name: b.Name, Source: b.DefRange, Forwarding: vs.Forwarding}
		if v, st := d.enum(b.Forwarding, "forwarding method", forwardingMethods()); st == valid {
			rs.Forwarding = ForwardingMethod(v)
		}
		w, wok := d.intOr(b.Weight, 0, maxRealServerWeight, defaultRealServerWeight, "")
		rs.Weight = int(w)
		upper, uok := d.intOr(b.UpperThreshold, 0, math.MaxUint32, 0, "")
		lower, lok := d.intOr(b.LowerThreshold, 0, math.MaxUint32, 0, "")
		rs.UpperThreshold, rs.LowerThreshold = uint32(upper), uint32(lower)
		if uok && lok && upper > 0 && lower > upper {
			d.errorf(b.LowerThreshold.Expr.Range(), "Invalid lower_threshold",
				"lower_threshold (%d) must not exceed upper_threshold (%d): IPVS stops sending connections at the upper threshold and resumes below the lower one.", lower, upper)
			ok = false
		}
		ok = ok && wok && uok && lok
		if !d.require(b.Address, "address", "real_server", b.DefRange) {
			continue
		}
		ap, st := d.addrPort(b.Address, true)
		if st != valid {
			continue
		}
		rng := b.Address.Expr.Range()
		if ap.Port() == 0 && vs.Address.IsValid() {
			ap = netip.AddrPortFrom(ap.Addr(), vs.Address.Port())
		}
		rs.Address = ap
		if !d.familyAllowed(vs.Family, ap.Addr(), rs.Forwarding, rng, "real server") {
			continue
		}
		if first, dup := addrs[ap]; dup {
			d.errorf(rng, "Duplicate real server", "%s is already a real server of virtual_server %q, at %s.", ap, vs.Name, pos(first))
			continue
		}
		addrs[ap] = rng
		if vs.Address.IsValid() && vs.Address.Port() != 0 && rs.Forwarding != ForwardNAT && ap.Port() != vs.Address.Port() {
			d.warnf(rng, "Real server port is ignored",
				"With forwarding = %q IPVS does not rewrite the destination port, so the real server receives port %d, not %d.", rs.Forwarding, vs.Address.Port(), ap.Port())
		}
		if ok {
			out = append(out, rs)
		}
	}
	return out
}

// checkCheckPorts makes sure every network health check of a service has a
// port to check: a fwmark service's real servers may have none.
func (d *decoder) checkCheckPorts(vs *VirtualServer) {
	for _, hc := range vs.HealthChecks {
		if hc.Type == CheckExec || hc.CheckPort != 0 {
			continue
		}
		for _, rs := range vs.RealServers {
			if rs.Address.Port() == 0 {
				d.errorf(hc.Source, "Health check needs a port",
					"real_server %q has no port (fwmark services forward every port), so this %s check needs check_port.", rs.Name, hc.Type)
				break
			}
		}
	}
}

// validateVirtualServers checks what spans virtual servers: each IPVS
// service is defined once.
func (d *decoder) validateVirtualServers(vss []VirtualServer, raws []*virtualServerBlock) {
	type key struct {
		proto  Protocol
		addr   netip.AddrPort
		family AddressFamily
		mark   uint32
	}
	seen := map[key]int{}
	for i, vs := range vss {
		var k key
		var rng hcl.Range
		switch {
		case vs.Address.IsValid():
			k, rng = key{proto: vs.Protocol, addr: vs.Address}, raws[i].Address.Expr.Range()
		case vs.FWMark != 0:
			k, rng = key{family: vs.Family, mark: vs.FWMark}, raws[i].FWMark.Expr.Range()
		default:
			continue
		}
		if j, dup := seen[k]; dup {
			d.errorf(rng, "Duplicate IPVS service", "virtual_server %q already defines this service (at %s); IPVS has one service per protocol and address, or per family and fwmark.", vss[j].Name, pos(vss[j].Source))
			continue
		}
		seen[k] = i
	}
}
