package keepalived

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/fulcrum-lb/fulcrum/lab/netns"
)

// Config is one keepalived node: its global_defs and its vrrp_instances (and, rarely, LVS
// virtual servers). The zero value of every field means "keepalived's default", except where a
// field says otherwise. Render turns it into keepalived.conf text; Start runs it.
type Config struct {
	// RouterID is global_defs router_id. Start fills in the host's name when it is empty.
	RouterID string
	// Version is global_defs vrrp_version: 2 or 3; 0 leaves keepalived's default (2, and 3 for
	// IPv6 instances). An Instance's own Version overrides it.
	Version int
	// GARP holds the global gratuitous ARP settings; nil keeps keepalived's defaults
	// (DefaultGARP).
	GARP *GARP
	// Strict turns vrrp_strict on. It is off by default, as the lab wants: strict mode forbids
	// unicast peers, authentication, preempt_delay and GARP repeats, and installs nftables
	// rules.
	Strict bool
	// SkipCheckAdvAddr sets vrrp_skip_check_adv_addr: keepalived does not compare the address
	// list of adverts that come from the same master as the previous one.
	SkipCheckAdvAddr bool
	// NoScriptSecurity leaves out "enable_script_security" and "script_user root", which are
	// rendered by default so that a script added through Extra runs as root without keepalived
	// complaining about a missing keepalived_script user.
	NoScriptSecurity bool
	// Extra lines go verbatim into global_defs, after everything else.
	Extra []string

	// Instances are the vrrp_instance blocks, in order.
	Instances []Instance
	// VirtualServers are LVS virtual_server blocks (see RenderVirtualServers). A node started
	// with any runs keepalived's checker subsystem too, which needs kernel IPVS: the host
	// kernel of this project's machines has none (see lab/kernel).
	VirtualServers []VS
}

// Instance is one vrrp_instance.
type Instance struct {
	// Name of the instance ("VI_1"): letters, digits, '_', '-', '.'.
	Name string
	// Interface the instance runs on ("eth0").
	Interface string
	// State is the initial state hint, "MASTER" or "BACKUP"; "" renders BACKUP. keepalived
	// 2.2.7 starts an instance in MASTER at once only if its priority is 255 (address owner);
	// otherwise it starts in BACKUP whatever the hint and becomes MASTER when its master down
	// timer expires.
	State string
	// VRID is virtual_router_id, 1 to 255.
	VRID int
	// Priority, 1 to 255 (255: address owner); 0 leaves keepalived's default (100).
	Priority int
	// AdvertInt is advert_int; 0 leaves keepalived's default (1s). VRRPv2 needs whole seconds
	// (1s to 255s); VRRPv3 takes centiseconds (10ms to 40.95s), e.g. 100*time.Millisecond.
	AdvertInt time.Duration
	// Version is the instance's own "version" (2 or 3); 0 uses Config.Version.
	Version int
	// NoPreempt sets nopreempt (the initial State must not be MASTER, and PreemptDelay must
	// be 0).
	NoPreempt bool
	// PreemptDelay sets preempt_delay (0 to 1000s, microsecond resolution; the initial State
	// must not be MASTER).
	PreemptDelay time.Duration
	// UnicastSrc is unicast_src_ip (optional, the interface's primary address by default).
	UnicastSrc netip.Addr
	// UnicastPeers, when not empty, switch the instance from multicast to unicast adverts.
	UnicastPeers []netip.Addr
	// AuthPass, when not empty, adds "authentication { auth_type PASS; auth_pass ... }"
	// (VRRPv2 only; keepalived uses the first 8 characters).
	AuthPass string
	// VIPs are the virtual_ipaddress entries; at least one.
	VIPs []VIP
	// TrackInterfaces are track_interface entries: the instance goes to FAULT when one is down.
	TrackInterfaces []string
	// GARP overrides the global gratuitous ARP settings for this instance (garp_* keywords);
	// nil inherits them.
	GARP *GARP
	// Extra lines go verbatim into the vrrp_instance block, after everything else.
	Extra []string
}

// VIP is one virtual_ipaddress entry: "192.0.2.100/24 dev eth0".
type VIP struct {
	// Addr with its prefix length; a bare address (/32, /128) is what keepalived assumes when
	// no mask is given.
	Addr netip.Prefix
	// Dev is the interface; "" means the instance's interface.
	Dev string
}

// GARP is keepalived's gratuitous ARP (and unsolicited neighbour advertisement) schedule after a
// transition to MASTER. Start from DefaultGARP and change what the test needs.
type GARP struct {
	// MasterDelay is vrrp_garp_master_delay: seconds until the second burst after becoming
	// MASTER; 0 for no second burst.
	MasterDelay int
	// MasterRepeat is vrrp_garp_master_repeat: messages per burst, at least 1.
	MasterRepeat int
	// LowerPrioDelay is vrrp_garp_lower_prio_delay: seconds until the second burst after a
	// MASTER hears a lower-priority advert.
	LowerPrioDelay int
	// LowerPrioRepeat is vrrp_garp_lower_prio_repeat: messages per burst after a MASTER hears
	// a lower-priority advert, at least 1.
	LowerPrioRepeat int
	// MasterRefresh is vrrp_garp_master_refresh: seconds between refresh bursts while MASTER;
	// 0 for none.
	MasterRefresh int
}

// DefaultGARP returns keepalived 2.2.7's defaults.
func DefaultGARP() GARP {
	return GARP{MasterDelay: 5, MasterRepeat: 5, LowerPrioDelay: 5, LowerPrioRepeat: 5}
}

// Render returns the keepalived.conf text of the configuration, or an error if the
// configuration is invalid or breaks the lab's network rules (every address must lie in a
// documentation range). It renders no notify FIFO: Start adds its own.
func (c Config) Render() (string, error) { return c.render("") }

func (c Config) render(fifo string) (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	var b strings.Builder
	w := func(indent int, format string, args ...any) {
		b.WriteString(strings.Repeat("    ", indent))
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	w(0, "# keepalived.conf rendered by github.com/fulcrum-lb/fulcrum/lab/keepalived")
	w(0, "global_defs {")
	if c.RouterID != "" {
		w(1, "router_id %s", c.RouterID)
	}
	if c.Version != 0 {
		w(1, "vrrp_version %d", c.Version)
	}
	if !c.NoScriptSecurity {
		w(1, "enable_script_security")
		w(1, "script_user root")
	}
	if c.GARP != nil {
		g := c.GARP
		w(1, "vrrp_garp_master_delay %d", g.MasterDelay)
		w(1, "vrrp_garp_master_repeat %d", g.MasterRepeat)
		w(1, "vrrp_garp_lower_prio_delay %d", g.LowerPrioDelay)
		w(1, "vrrp_garp_lower_prio_repeat %d", g.LowerPrioRepeat)
		w(1, "vrrp_garp_master_refresh %d", g.MasterRefresh)
	}
	if c.Strict {
		w(1, "vrrp_strict")
	}
	if c.SkipCheckAdvAddr {
		w(1, "vrrp_skip_check_adv_addr")
	}
	if fifo != "" {
		w(1, "vrrp_notify_fifo %s", fifo)
	}
	for _, l := range c.Extra {
		w(1, "%s", l)
	}
	w(0, "}")
	for _, in := range c.Instances {
		b.WriteByte('\n')
		w(0, "vrrp_instance %s {", in.Name)
		state := in.State
		if state == "" {
			state = "BACKUP"
		}
		w(1, "state %s", state)
		w(1, "interface %s", in.Interface)
		w(1, "virtual_router_id %d", in.VRID)
		if in.Priority != 0 {
			w(1, "priority %d", in.Priority)
		}
		if in.AdvertInt != 0 {
			w(1, "advert_int %s", seconds(in.AdvertInt))
		}
		if in.Version != 0 {
			w(1, "version %d", in.Version)
		}
		if in.NoPreempt {
			w(1, "nopreempt")
		}
		if in.PreemptDelay != 0 {
			w(1, "preempt_delay %s", seconds(in.PreemptDelay))
		}
		if in.UnicastSrc.IsValid() {
			w(1, "unicast_src_ip %s", in.UnicastSrc)
		}
		if len(in.UnicastPeers) > 0 {
			w(1, "unicast_peer {")
			for _, p := range in.UnicastPeers {
				w(2, "%s", p)
			}
			w(1, "}")
		}
		if in.AuthPass != "" {
			w(1, "authentication {")
			w(2, "auth_type PASS")
			w(2, "auth_pass %s", in.AuthPass)
			w(1, "}")
		}
		if in.GARP != nil {
			g := in.GARP
			w(1, "garp_master_delay %d", g.MasterDelay)
			w(1, "garp_master_repeat %d", g.MasterRepeat)
			w(1, "garp_lower_prio_delay %d", g.LowerPrioDelay)
			w(1, "garp_lower_prio_repeat %d", g.LowerPrioRepeat)
			w(1, "garp_master_refresh %d", g.MasterRefresh)
		}
		if len(in.VIPs) > 0 {
			w(1, "virtual_ipaddress {")
			for _, v := range in.VIPs {
				if v.Dev != "" {
					w(2, "%s dev %s", v.Addr, v.Dev)
				} else {
					w(2, "%s", v.Addr)
				}
			}
			w(1, "}")
		}
		if len(in.TrackInterfaces) > 0 {
			w(1, "track_interface {")
			for _, t := range in.TrackInterfaces {
				w(2, "%s", t)
			}
			w(1, "}")
		}
		for _, l := range in.Extra {
			w(1, "%s", l)
		}
		w(0, "}")
	}
	if len(c.VirtualServers) > 0 {
		vs, err := RenderVirtualServers(c.VirtualServers)
		if err != nil {
			return "", err
		}
		b.WriteByte('\n')
		b.WriteString(vs)
	}
	return b.String(), nil
}

// seconds formats d as keepalived's decimal seconds ("0.1", "1", "2.5").
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

// Validate checks the configuration: names, ranges, what keepalived would refuse or silently
// change, and the lab's network rules (addresses only in documentation ranges).
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("keepalived: "+format, args...)) }
	if c.RouterID != "" && !isToken(c.RouterID) {
		bad("router_id %q: want letters, digits, '_', '-', '.'", c.RouterID)
	}
	if c.Version != 0 && c.Version != 2 && c.Version != 3 {
		bad("vrrp_version %d: want 2 or 3", c.Version)
	}
	if c.GARP != nil {
		errs = append(errs, c.GARP.validate("global")...)
	}
	for _, l := range c.Extra {
		if strings.ContainsAny(l, "\n{}") {
			bad("global_defs extra line %q: one line, no braces", l)
		}
	}
	names := map[string]bool{}
	for i, in := range c.Instances {
		if names[in.Name] {
			bad("vrrp_instance %q defined twice", in.Name)
		}
		names[in.Name] = true
		for _, err := range in.validate(c.Version) {
			errs = append(errs, fmt.Errorf("keepalived: vrrp_instance #%d %q: %w", i+1, in.Name, err))
		}
	}
	for i, vs := range c.VirtualServers {
		if err := vs.validate(); err != nil {
			errs = append(errs, fmt.Errorf("keepalived: virtual_server #%d: %w", i+1, err))
		}
	}
	return errors.Join(errs...)
}

func (in Instance) validate(globalVersion int) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !isToken(in.Name) {
		bad("name: want letters, digits, '_', '-', '.'")
	}
	if !isToken(in.Interface) {
		bad("interface %q: want an interface name", in.Interface)
	}
	switch in.State {
	case "", "BACKUP", "MASTER":
	default:
		bad("state %q: want MASTER or BACKUP", in.State)
	}
	if in.VRID < 1 || in.VRID > 255 {
		bad("virtual_router_id %d: want 1 to 255", in.VRID)
	}
	if in.Priority < 0 || in.Priority > 255 {
		bad("priority %d: want 1 to 255 (0 for keepalived's default)", in.Priority)
	}
	if in.Version != 0 && in.Version != 2 && in.Version != 3 {
		bad("version %d: want 2 or 3", in.Version)
	}
	version := in.effectiveVersion(globalVersion)
	switch {
	case in.AdvertInt < 0:
		bad("advert_int %v is negative", in.AdvertInt)
	case in.AdvertInt == 0:
	case version == 2 && (in.AdvertInt%time.Second != 0 || in.AdvertInt > 255*time.Second):
		bad("advert_int %v: VRRPv2 wants whole seconds from 1s to 255s", in.AdvertInt)
	case version == 3 && (in.AdvertInt%(10*time.Millisecond) != 0 || in.AdvertInt > 4095*10*time.Millisecond):
		bad("advert_int %v: VRRPv3 wants centiseconds from 10ms to 40.95s", in.AdvertInt)
	}
	if in.PreemptDelay < 0 || in.PreemptDelay > 1000*time.Second {
		bad("preempt_delay %v: want 0 to 1000s", in.PreemptDelay)
	}
	if in.NoPreempt && in.PreemptDelay != 0 {
		bad("preempt_delay with nopreempt (keepalived resets it)")
	}
	if in.State == "MASTER" && (in.NoPreempt || in.PreemptDelay != 0) {
		bad("nopreempt and preempt_delay need the initial state BACKUP (keepalived ignores them otherwise)")
	}
	if in.AuthPass != "" {
		if version == 3 {
			bad("authentication is VRRPv2 only")
		}
		if len(in.AuthPass) > 8 || !isPassword(in.AuthPass) {
			bad("auth_pass %q: want 1 to 8 printable characters, no space, quote, brace, '#' or '!'", in.AuthPass)
		}
	}
	if in.UnicastSrc.IsValid() {
		if err := docAddr(in.UnicastSrc); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range in.UnicastPeers {
		if err := docAddr(p); err != nil {
			errs = append(errs, err)
		}
	}
	if len(in.VIPs) == 0 {
		bad("no virtual_ipaddress (keepalived --config-test refuses that)")
	}
	for _, v := range in.VIPs {
		if !v.Addr.IsValid() {
			bad("virtual_ipaddress: an invalid prefix")
			continue
		}
		if _, err := netns.ParseAddrs(v.Addr.String()); err != nil {
			errs = append(errs, err)
		}
		if v.Dev != "" && !isToken(v.Dev) {
			bad("virtual_ipaddress %s: dev %q: want an interface name", v.Addr, v.Dev)
		}
	}
	for _, t := range in.TrackInterfaces {
		if !isToken(t) {
			bad("track_interface %q: want an interface name", t)
		}
	}
	if in.GARP != nil {
		errs = append(errs, in.GARP.validate("instance")...)
	}
	for _, l := range in.Extra {
		if strings.ContainsAny(l, "\n") || strings.Count(l, "{") != strings.Count(l, "}") {
			bad("extra line %q: one line, balanced braces", l)
		}
	}
	return errs
}

// effectiveVersion is the VRRP version keepalived runs the instance with.
func (in Instance) effectiveVersion(global int) int {
	switch {
	case in.Version != 0:
		return in.Version
	case global != 0:
		return global
	}
	for _, v := range in.VIPs {
		if v.Addr.Addr().Is6() {
			return 3
		}
	}
	return 2
}

func (g *GARP) validate(where string) []error {
	var errs []error
	if g.MasterRepeat < 1 || g.LowerPrioRepeat < 1 {
		errs = append(errs, fmt.Errorf("keepalived: %s GARP repeats must be at least 1 (start from DefaultGARP)", where))
	}
	for _, v := range []int{g.MasterDelay, g.LowerPrioDelay, g.MasterRefresh} {
		if v < 0 || v > math.MaxInt32 {
			errs = append(errs, fmt.Errorf("keepalived: %s GARP delay %d out of range", where, v))
		}
	}
	return errs
}

func docAddr(a netip.Addr) error {
	_, err := netns.ParseAddrs(a.WithZone("").String())
	return err
}

// isToken: a keepalived word we are willing to render unquoted.
func isToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("_-.:@", c)) {
			return false
		}
	}
	return true
}

func isPassword(s string) bool {
	for _, c := range s {
		if c <= ' ' || c > '~' || strings.ContainsRune(`"'{}#!\`, c) {
			return false
		}
	}
	return true
}
