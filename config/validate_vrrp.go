package config

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// VRRP defaults (keepalived's, where keepalived has one).
const (
	defaultPriority       = 100
	defaultAdvertInterval = time.Second
	defaultVRRPVersion    = VRRPv3
	defaultGARPDelay      = 5 * time.Second
	defaultGARPRepeat     = 5
	defaultNotifyTimeout  = 5 * time.Second
	// maxV2Password is the size of the VRRPv2 authentication data field
	// (RFC 3768 §5.3.10).
	maxV2Password = 8
	// trackWeightLimit bounds track weights so that a weight alone can move
	// any priority (1-254) to any other.
	trackWeightLimit = 254
)

func (d *decoder) decodeVRRPInstance(h header, b *vrrpInstanceBlock, services map[string]serviceRef) VRRPInstance {
	in := VRRPInstance{
		Name:           h.Name,
		Source:         h.DefRange,
		AdvertInterval: defaultAdvertInterval,
		Version:        defaultVRRPVersion,
		Preempt:        d.boolean(b.Preempt, true),
		GARP:           GARP{Delay: defaultGARPDelay, Repeat: defaultGARPRepeat},
		Notify:         Notify{Timeout: defaultNotifyTimeout},
	}

	if d.require(b.Interface, "interface", "vrrp_instance", h.DefRange) {
		if s, st := d.str(b.Interface); st == valid && d.interfaceRef(s, b.Interface.Expr.Range()) {
			in.Interface = s
		}
	}
	if d.require(b.VirtualRouterID, "virtual_router_id", "vrrp_instance", h.DefRange) {
		// The VRID is 8 bits and 0 is not a valid VRID (RFC 5798 §5.2.3).
		if v, st := d.integer(b.VirtualRouterID, 1, 255, "RFC 5798 §5.2.3"); st == valid {
			in.VirtualRouterID = uint8(v)
		}
	}
	// 255 is the address owner, 1-254 the backups; 0 is reserved for the
	// master giving up (RFC 5798 §5.2.4). A zero Priority below means
	// "invalid" and skips the owner check.
	if p, ok := d.intOr(b.Priority, 1, 255, defaultPriority, "RFC 5798 §5.2.4"); ok {
		in.Priority = uint8(p)
	}
	in.Version = d.vrrpVersion(b.Version)
	if v, ok := d.durationOr(b.AdvertInterval, 0, time.Hour, defaultAdvertInterval); ok {
		in.AdvertInterval = v
		d.checkAdvertInterval(b.AdvertInterval, in.Version, v)
	}
	in.PreemptDelay, _ = d.durationOr(b.PreemptDelay, 0, time.Hour, 0)
	if b.PreemptDelay != nil && !in.Preempt && in.PreemptDelay > 0 {
		d.warnf(b.PreemptDelay.Expr.Range(), "preempt_delay has no effect", "preempt_delay only delays preemption, and preempt is false for vrrp_instance %q.", h.Name)
	}

	d.decodeVIPs(&in, b)
	d.checkAddressOwner(&in, b)

	if b.Unicast != nil {
		in.Unicast = d.decodeUnicast(&in, b.Unicast)
	}
	if b.Authentication != nil {
		in.Authentication = d.decodeAuth(&in, b.Authentication)
	}
	in.AcceptV2Checksum = d.boolean(b.AcceptV2Checksum, false)
	if in.AcceptV2Checksum && in.Version == VRRPv2 {
		d.warnf(b.AcceptV2Checksum.Expr.Range(), "accept_v2_checksum has no effect", "accept_v2_checksum relaxes the VRRPv3 checksum; vrrp_instance %q uses version 2.", h.Name)
	}
	if g := b.GARP; g != nil {
		in.GARP.Delay, _ = d.durationOr(g.Delay, 0, time.Hour, defaultGARPDelay)
		r, _ := d.intOr(g.Repeat, 1, 100, defaultGARPRepeat, "")
		in.GARP.Repeat = int(r)
		in.GARP.RefreshInterval, _ = d.durationOr(g.RefreshInterval, 0, 24*time.Hour, 0)
	}

	d.decodeTracks(&in, b, services)

	if n := b.Notify; n != nil {
		in.Notify.Master = d.argv(n.Master)
		in.Notify.Backup = d.argv(n.Backup)
		in.Notify.Fault = d.argv(n.Fault)
		in.Notify.Stop = d.argv(n.Stop)
		in.Notify.Timeout, _ = d.durationOr(n.Timeout, time.Millisecond, time.Hour, defaultNotifyTimeout)
	}
	in.KeepVIPsOnShutdown = d.boolean(b.KeepVIPsOnShutdown, false)
	return in
}

// vrrpVersion decodes version; 0 when invalid.
func (d *decoder) vrrpVersion(a *hcl.Attribute) VRRPVersion {
	v, st := d.integer(a, 0, 255, "")
	switch {
	case st == absent:
		return defaultVRRPVersion
	case st == invalid:
		return 0
	case v != 2 && v != 3:
		d.errorf(a.Expr.Range(), "Invalid version", "The VRRP version must be 2 (RFC 3768) or 3 (RFC 5798), not %d.", v)
		return 0
	}
	return VRRPVersion(v)
}

// checkAdvertInterval applies the version's advertisement interval field.
func (d *decoder) checkAdvertInterval(a *hcl.Attribute, version VRRPVersion, v time.Duration) {
	if a == nil {
		return
	}
	switch version {
	case VRRPv2:
		// Adver Int is 8 bits of whole seconds (RFC 3768 §5.3.7).
		if v < time.Second || v > 255*time.Second || v%time.Second != 0 {
			d.errorf(a.Expr.Range(), "Invalid advert_interval for VRRP version 2",
				"VRRPv2 advertises the interval in whole seconds, 1 to 255 (RFC 3768 §5.3.7); %s is not. Use version = 3 for sub-second intervals.", v)
		}
	case VRRPv3:
		// Max Adver Int is 12 bits of centiseconds: 10ms to 40.95s in
		// steps of 10ms (RFC 5798 §5.2.7).
		if v < 10*time.Millisecond || v > 4095*10*time.Millisecond || v%(10*time.Millisecond) != 0 {
			d.errorf(a.Expr.Range(), "Invalid advert_interval for VRRP version 3",
				"VRRPv3 advertises the interval in centiseconds, 10ms to 40.95s in steps of 10ms (RFC 5798 §5.2.7); %s is not.", v)
		}
	}
}

// decodeVIPs decodes virtual_ip blocks and the virtual_ips shorthand and
// sets the instance's family.
func (d *decoder) decodeVIPs(in *VRRPInstance, b *vrrpInstanceBlock) {
	seen := map[netip.Addr]hcl.Range{}
	var familyRange hcl.Range
	add := func(vip VirtualIP) {
		a := vip.Prefix.Addr()
		if first, dup := seen[a]; dup {
			d.errorf(vip.Source, "Duplicate virtual IP", "%s is already a virtual IP of vrrp_instance %q, at %s.", a, in.Name, pos(first))
			return
		}
		seen[a] = vip.Source
		fam := FamilyOf(a)
		if in.Version == VRRPv2 && fam == IPv6 {
			d.errorf(vip.Source, "IPv6 virtual IP requires VRRP version 3",
				"VRRP version 2 is IPv4 only (RFC 3768 §5.3.9); set version = 3 in vrrp_instance %q to use %s.", in.Name, a)
			return
		}
		switch in.Family {
		case "":
			in.Family, familyRange = fam, vip.Source
		case fam:
		default:
			// An advertisement carries addresses of one family (RFC
			// 5798 §5.2.9), so a virtual router is IPv4 or IPv6.
			d.errorf(vip.Source, "Mixed address families",
				"vrrp_instance %q is %s (its first virtual IP is at %s), so %s cannot be one of its virtual IPs: a virtual router is either IPv4 or IPv6 (RFC 5798 §5.2.9). Use one instance per family.",
				in.Name, in.Family, pos(familyRange), a)
			return
		}
		in.VirtualIPs = append(in.VirtualIPs, vip)
	}

	for _, vb := range b.VirtualIPBlocks {
		p, err := parseVIP(vb.Address)
		if err != nil {
			d.errorf(vb.AddressRange, "Invalid virtual IP", "%s.", err)
			continue
		}
		vip := VirtualIP{Prefix: p, Device: in.Interface, Source: vb.AddressRange}
		if s, st := d.str(vb.Device); st == valid && d.interfaceRef(s, vb.Device.Expr.Range()) {
			vip.Device = s
		}
		if s, st := d.str(vb.Label); st == valid {
			if d.checkLabel(vb.Label, s, vip) {
				vip.Label = s
			}
		}
		add(vip)
	}
	if list, rngs, st := d.strList(b.VirtualIPs); st == valid {
		for i, s := range list {
			p, err := parseVIP(s)
			if err != nil {
				d.errorf(rngs[i], "Invalid virtual IP", "%s.", err)
				continue
			}
			add(VirtualIP{Prefix: p, Device: in.Interface, Source: rngs[i]})
		}
	}
	if len(b.VirtualIPBlocks) == 0 && b.VirtualIPs == nil {
		d.errorf(in.Source, "Missing virtual IPs",
			"vrrp_instance %q has no virtual IP: add virtual_ip \"ADDR/LEN\" { } blocks or virtual_ips = [...] (an advertisement carries at least one address, RFC 5798 §5.2.5).", in.Name)
	}
}

// checkLabel validates an IPv4 address label: the kernel's ifa_label is at
// most 15 bytes and, as ip-address(8) says, must be the device name or start
// with it followed by a colon.
func (d *decoder) checkLabel(a *hcl.Attribute, label string, vip VirtualIP) bool {
	rng := a.Expr.Range()
	switch {
	case vip.Prefix.Addr().Is6():
		d.errorf(rng, "Invalid label", "Address labels exist for IPv4 only; remove label from the IPv6 virtual IP %s.", vip.Prefix)
	case len(label) > 15:
		d.errorf(rng, "Invalid label", "Label %q is %d bytes; address labels are at most 15.", label, len(label))
	case vip.Device != "" && label != vip.Device && !strings.HasPrefix(label, vip.Device+":"):
		d.errorf(rng, "Invalid label", "Label %q must be the device name or start with %q.", label, vip.Device+":")
	default:
		return true
	}
	return false
}

// checkAddressOwner applies RFC 5798 §5.2.4: the router that owns the
// virtual addresses (has them as real interface addresses, here: lists them
// in node.addresses) uses priority 255, and only it does.
func (d *decoder) checkAddressOwner(in *VRRPInstance, b *vrrpInstanceBlock) {
	if in.Priority == 0 || len(in.VirtualIPs) == 0 {
		return
	}
	owned := 0
	var firstOwned *VirtualIP
	for i := range in.VirtualIPs {
		for _, a := range d.node.Addresses {
			if a == in.VirtualIPs[i].Prefix.Addr() {
				owned++
				if firstOwned == nil {
					firstOwned = &in.VirtualIPs[i]
				}
			}
		}
	}
	switch {
	case in.Priority == 255 && owned < len(in.VirtualIPs):
		rng := in.Source
		if b.Priority != nil {
			rng = b.Priority.Expr.Range()
		}
		d.errorf(rng, "Priority 255 is reserved for the address owner",
			"Priority 255 means this node owns the virtual IPs (RFC 5798 §5.2.4), but not every virtual IP of vrrp_instance %q is listed in the node's addresses. Use 1-254, or list the owned addresses in node { addresses = [...] }.", in.Name)
	case in.Priority != 255 && owned > 0:
		d.errorf(firstOwned.Source, "Address owner must use priority 255",
			"%s is one of the node's own addresses, so this node is the address owner of vrrp_instance %q and must use priority = 255 (RFC 5798 §5.2.4).", firstOwned.Prefix.Addr(), in.Name)
	case owned > 0:
		in.AddressOwner = true
	}
}

func (d *decoder) decodeUnicast(in *VRRPInstance, b *unicastBlock) *Unicast {
	u := &Unicast{RelaxTTL: d.boolean(b.RelaxTTL, false)}
	wrongFamily := func(a netip.Addr, rng hcl.Range) bool {
		if in.Family != "" && FamilyOf(a) != in.Family {
			d.errorf(rng, "Mixed address families", "%s is %s, but vrrp_instance %q is %s.", a, FamilyOf(a), in.Name, in.Family)
			return true
		}
		return false
	}
	if a, st := d.ip(b.SourceAddress); st == valid && !wrongFamily(a, b.SourceAddress.Expr.Range()) {
		u.SourceAddress = a
	}
	if !d.require(b.Peers, "peers", "unicast", b.DefRange) {
		return u
	}
	peers, rngs, st := d.ipList(b.Peers)
	if st == valid && len(peers) == 0 {
		d.errorf(b.Peers.Expr.Range(), "No unicast peers", "peers must list at least one address.")
	}
	seen := map[netip.Addr]hcl.Range{}
	for i, p := range peers {
		switch {
		case wrongFamily(p, rngs[i]):
		case p == u.SourceAddress:
			d.errorf(rngs[i], "Invalid peer", "%s is the unicast source address; peers are the other routers.", p)
		default:
			if first, dup := seen[p]; dup {
				d.errorf(rngs[i], "Duplicate peer", "%s is already listed at %s.", p, pos(first))
				continue
			}
			seen[p] = rngs[i]
			u.Peers = append(u.Peers, p)
		}
	}
	return u
}

func (d *decoder) decodeAuth(in *VRRPInstance, b *authBlock) *Authentication {
	if in.Version == VRRPv3 {
		// RFC 5798 §9 removed authentication from VRRPv3.
		d.errorf(b.DefRange, "Authentication requires VRRP version 2",
			"VRRPv3 has no authentication (RFC 5798 §9 removed it); remove the authentication block or set version = 2 in vrrp_instance %q.", in.Name)
		return nil
	}
	auth := &Authentication{Type: AuthPass}
	if v, st := d.enum(b.Type, "authentication type", []string{string(AuthPass)}); st == valid {
		auth.Type = AuthType(v)
	}
	if !d.require(b.Password, "password", "authentication", b.DefRange) {
		return auth
	}
	pw, st := d.str(b.Password)
	switch {
	case st != valid:
	case pw == "":
		d.errorf(b.Password.Expr.Range(), "Invalid password", "The password cannot be empty.")
	case len(pw) > maxV2Password:
		// The value itself is never echoed.
		d.errorf(b.Password.Expr.Range(), "Password too long",
			"The password is %d bytes; VRRPv2 simple text authentication carries at most %d (RFC 3768 §5.3.10).", len(pw), maxV2Password)
	default:
		auth.Password = NewSecret(pw)
	}
	return auth
}

func (d *decoder) trackWeight(a *hcl.Attribute) int {
	w, _ := d.intOr(a, -trackWeightLimit, trackWeightLimit, 0, "")
	return int(w)
}

func (d *decoder) decodeTracks(in *VRRPInstance, b *vrrpInstanceBlock, services map[string]serviceRef) {
	ifaces := d.newTrackSet("track_interface")
	for _, t := range b.TrackInterfaces {
		if ifaces.add(t.Name, t.NameRange) && d.interfaceRef(t.Name, t.NameRange) {
			in.TrackInterfaces = append(in.TrackInterfaces, Track{Name: t.Name, Weight: d.trackWeight(t.Weight), Source: t.DefRange})
		}
	}
	procs := d.newTrackSet("track_process")
	for _, t := range b.TrackProcesses {
		if t.Name == "" {
			d.errorf(t.NameRange, "Invalid process name", "The process name cannot be empty.")
			continue
		}
		if procs.add(t.Name, t.NameRange) {
			in.TrackProcesses = append(in.TrackProcesses, Track{Name: t.Name, Weight: d.trackWeight(t.Weight), Source: t.DefRange})
		}
	}
	files := d.newTrackSet("track_file")
	for _, t := range b.TrackFiles {
		if t.Path == "" {
			d.errorf(t.PathRange, "Invalid path", "The tracked file's path cannot be empty.")
			continue
		}
		p := resolvePath(d.baseDir, t.Path)
		if files.add(p, t.PathRange) {
			in.TrackFiles = append(in.TrackFiles, Track{Name: p, Weight: d.trackWeight(t.Weight), Source: t.DefRange})
		}
	}
	scripts := d.newTrackSet("track_script")
	scriptNames := make([]string, 0, len(d.scripts))
	for n := range d.scripts {
		scriptNames = append(scriptNames, n)
	}
	sort.Strings(scriptNames)
	for _, t := range b.TrackScripts {
		if !scripts.add(t.Name, t.NameRange) {
			continue
		}
		sc, ok := d.scripts[t.Name]
		if !ok {
			d.errorf(t.NameRange, "Unknown vrrp_script", "track_script names a vrrp_script block, and none is named %q.%s", t.Name, didYouMean(t.Name, scriptNames))
			continue
		}
		w := sc.Weight
		if t.Weight != nil {
			w = d.trackWeight(t.Weight)
		}
		in.TrackScripts = append(in.TrackScripts, Track{Name: t.Name, Weight: w, Source: t.DefRange})
	}
	svcs := d.newTrackSet("track_service")
	names := make([]string, 0, len(services))
	for n := range services {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, t := range b.TrackServices {
		if !svcs.add(t.Name, t.NameRange) {
			continue
		}
		ref, ok := services[t.Name]
		if !ok {
			d.errorf(t.NameRange, "Unknown service", "track_service names a virtual_server or proxy, and none is named %q.%s", t.Name, didYouMean(t.Name, names))
			continue
		}
		in.TrackServices = append(in.TrackServices, TrackedService{Name: t.Name, Kind: ref.kind, Weight: d.trackWeight(t.Weight), Source: t.DefRange})
	}
}

// trackSet finds duplicated track blocks of one type within an instance.
type trackSet struct {
	d    *decoder
	kind string
	seen map[string]hcl.Range
}

func (d *decoder) newTrackSet(kind string) *trackSet {
	return &trackSet{d: d, kind: kind, seen: map[string]hcl.Range{}}
}

func (s *trackSet) add(name string, rng hcl.Range) bool {
	if first, dup := s.seen[name]; dup {
		s.d.errorf(rng, fmt.Sprintf("Duplicate %s", s.kind), "%s %q is already defined at %s (line %d).", s.kind, name, pos(first), first.Start.Line)
		return false
	}
	s.seen[name] = rng
	return true
}

// validateVRRPInstances checks what spans instances.
func (d *decoder) validateVRRPInstances(ins []VRRPInstance, raws []*vrrpInstanceBlock) {
	// The virtual MAC is 00-00-5E-00-01-{VRID} for IPv4 and
	// 00-00-5E-00-02-{VRID} for IPv6 (RFC 5798 §7.3), so a VRID can be used
	// once per interface and family.
	type vridKey struct {
		iface  string
		family AddressFamily
		vrid   uint8
	}
	vrids := map[vridKey]int{}
	vips := map[netip.Addr]int{}
	for i := range ins {
		in := &ins[i]
		if in.Interface != "" && in.Family != "" && in.VirtualRouterID != 0 {
			k := vridKey{in.Interface, in.Family, in.VirtualRouterID}
			if j, dup := vrids[k]; dup {
				d.errorf(raws[i].VirtualRouterID.Expr.Range(), "Duplicate virtual_router_id",
					"vrrp_instance %q already uses virtual_router_id %d for %s on %s (at %s); a VRID selects the virtual MAC address, so it must be unique per interface and address family (RFC 5798 §7.3).",
					ins[j].Name, in.VirtualRouterID, in.Family, in.Interface, pos(raws[j].VirtualRouterID.Expr.Range()))
			} else {
				vrids[k] = i
			}
		}
		for _, vip := range in.VirtualIPs {
			a := vip.Prefix.Addr()
			if j, dup := vips[a]; dup && j != i {
				d.errorf(vip.Source, "Duplicate virtual IP", "%s is already a virtual IP of vrrp_instance %q; two virtual routers cannot hold the same address.", a, ins[j].Name)
				continue
			}
			vips[a] = i
		}
	}
}

// decodeSyncGroup decodes a sync group; member maps each instance name to
// the group that claimed it first.
func (d *decoder) decodeSyncGroup(h header, b *syncGroupBlock, instances []string, member map[string]nameRef) SyncGroup {
	g := SyncGroup{Name: h.Name, Source: h.DefRange}
	if !d.require(b.Instances, "instances", "sync_group", h.DefRange) {
		return g
	}
	names, rngs, st := d.strList(b.Instances)
	if st != valid {
		return g
	}
	if len(names) == 0 {
		d.errorf(b.Instances.Expr.Range(), "Empty sync group", "instances must list at least one vrrp_instance.")
		return g
	}
	known := map[string]bool{}
	for _, n := range instances {
		known[n] = true
	}
	seen := map[string]bool{}
	for i, n := range names {
		switch {
		case !known[n]:
			d.unknownRef(rngs[i], "vrrp_instance", n, "", instances)
		case seen[n]:
			d.errorf(rngs[i], "Duplicate instance", "vrrp_instance %q is listed twice in sync_group %q.", n, h.Name)
		default:
			seen[n] = true
			if other, dup := member[n]; dup {
				d.errorf(rngs[i], "Instance in two sync groups", "vrrp_instance %q is already in sync_group %q (at %s); an instance can be in one sync group only.", n, other.name, pos(other.rng))
				continue
			}
			member[n] = nameRef{name: h.Name, rng: rngs[i]}
			g.Instances = append(g.Instances, n)
		}
	}
	if len(names) == 1 {
		d.warnf(b.Instances.Expr.Range(), "Sync group with one instance", "sync_group %q has one instance; a sync group only has an effect with two or more.", h.Name)
	}
	return g
}

// Defaults of vrrp_script, as keepalived's: run every second, one result changes the state.
const defaultScriptInterval = time.Second

func (d *decoder) decodeVRRPScript(h header, b *vrrpScriptBlock) VRRPScript {
	sc := VRRPScript{Name: h.Name, Source: h.DefRange, Interval: defaultScriptInterval, Rise: 1, Fall: 1}
	if d.require(b.Command, "command", "vrrp_script", h.DefRange) {
		sc.Command = d.argv(b.Command)
	}
	if u, st := d.nonEmptyStr(b.User); st == valid {
		sc.User = u
	}
	interval, iok := d.durationOr(b.Interval, 100*time.Millisecond, time.Hour, defaultScriptInterval)
	sc.Interval = interval
	timeout, tok := d.durationOr(b.Timeout, 10*time.Millisecond, time.Hour, interval)
	sc.Timeout = timeout
	if iok && tok && b.Timeout != nil && timeout > interval {
		d.errorf(b.Timeout.Expr.Range(), "Script timeout exceeds interval",
			"The timeout (%s) must not be longer than the interval (%s), so that runs never overlap.", timeout, interval)
	}
	rise, _ := d.intOr(b.Rise, 1, 100, 1, "")
	fall, _ := d.intOr(b.Fall, 1, 100, 1, "")
	sc.Rise, sc.Fall = int(rise), int(fall)
	sc.Weight = d.trackWeight(b.Weight)
	return sc
}
