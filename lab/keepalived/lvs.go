package keepalived

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// VS is an LVS virtual_server with real servers checked by TCP_CHECK: the reference for a
// health-checker benchmark. It covers what such a benchmark needs and nothing more.
type VS struct {
	// Addr is the virtual address and port.
	Addr netip.AddrPort
	// Protocol is "TCP" (the default when empty) or "UDP".
	Protocol string
	// Sched is lvs_sched ("rr" when empty; "wrr", "lc", "wlc", "sh", "mh", ...).
	Sched string
	// Method is lvs_method: "NAT" (the default when empty), "DR" or "TUN".
	Method string
	// DelayLoop is delay_loop, the time between checks of a real server; 0 leaves keepalived's
	// default (60s). Microsecond resolution.
	DelayLoop time.Duration
	// Reals are the real servers.
	Reals []Real
}

// Real is a real_server of a VS.
type Real struct {
	// Addr is the real server's address and port.
	Addr netip.AddrPort
	// Weight; 0 leaves keepalived's default (1).
	Weight int
	// Check is the real server's TCP_CHECK; nil means no checker (the server counts as up).
	Check *TCPCheck
}

// TCPCheck is a TCP_CHECK block: a connect to the real server (or ConnectPort).
type TCPCheck struct {
	// ConnectTimeout is connect_timeout; 0 leaves keepalived's default (5s).
	ConnectTimeout time.Duration
	// ConnectPort is connect_port; 0 checks the real server's own port.
	ConnectPort uint16
	// Retry is retry: additional attempts before a server is marked down; 0 leaves
	// keepalived's default (1).
	Retry int
	// DelayBeforeRetry is delay_before_retry; 0 leaves keepalived's default (1s).
	DelayBeforeRetry time.Duration
	// Warmup is warmup, the random delay before the first check; 0 leaves keepalived's
	// default (up to delay_loop). Use NoWarmup to start checking at once.
	Warmup time.Duration
}

// NoWarmup as TCPCheck.Warmup renders "warmup 0": every check starts at once.
const NoWarmup time.Duration = -1

// RenderVirtualServers returns the virtual_server blocks for vss as keepalived.conf text, to be
// appended to a configuration (Config.VirtualServers does that) or used on its own with a
// global_defs of the caller's. Every address must lie in a documentation range.
func RenderVirtualServers(vss []VS) (string, error) {
	var errs []error
	for i, vs := range vss {
		if err := vs.validate(); err != nil {
			errs = append(errs, fmt.Errorf("keepalived: virtual_server #%d: %w", i+1, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	var b strings.Builder
	w := func(indent int, format string, args ...any) {
		b.WriteString(strings.Repeat("    ", indent))
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	for i, vs := range vss {
		if i > 0 {
			b.WriteByte('\n')
		}
		w(0, "virtual_server %s %d {", vs.Addr.Addr(), vs.Addr.Port())
		if vs.DelayLoop != 0 {
			w(1, "delay_loop %s", seconds(vs.DelayLoop))
		}
		w(1, "lvs_sched %s", or(vs.Sched, "rr"))
		w(1, "lvs_method %s", or(vs.Method, "NAT"))
		w(1, "protocol %s", or(vs.Protocol, "TCP"))
		for _, r := range vs.Reals {
			w(1, "real_server %s %d {", r.Addr.Addr(), r.Addr.Port())
			if r.Weight != 0 {
				w(2, "weight %d", r.Weight)
			}
			if c := r.Check; c != nil {
				w(2, "TCP_CHECK {")
				if c.ConnectTimeout != 0 {
					w(3, "connect_timeout %s", seconds(c.ConnectTimeout))
				}
				if c.ConnectPort != 0 {
					w(3, "connect_port %d", c.ConnectPort)
				}
				if c.Retry != 0 {
					w(3, "retry %d", c.Retry)
				}
				if c.DelayBeforeRetry != 0 {
					w(3, "delay_before_retry %s", seconds(c.DelayBeforeRetry))
				}
				switch {
				case c.Warmup == NoWarmup:
					w(3, "warmup 0")
				case c.Warmup != 0:
					w(3, "warmup %s", seconds(c.Warmup))
				}
				w(2, "}")
			}
			w(1, "}")
		}
		w(0, "}")
	}
	return b.String(), nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (vs VS) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !vs.Addr.IsValid() {
		bad("no address")
	} else if err := docAddr(vs.Addr.Addr()); err != nil {
		errs = append(errs, err)
	}
	switch vs.Protocol {
	case "", "TCP", "UDP":
	default:
		bad("protocol %q: want TCP or UDP", vs.Protocol)
	}
	switch vs.Method {
	case "", "NAT", "DR", "TUN":
	default:
		bad("lvs_method %q: want NAT, DR or TUN", vs.Method)
	}
	if vs.Sched != "" && !isToken(vs.Sched) {
		bad("lvs_sched %q", vs.Sched)
	}
	if vs.DelayLoop < 0 {
		bad("delay_loop %v is negative", vs.DelayLoop)
	}
	for _, r := range vs.Reals {
		if !r.Addr.IsValid() {
			bad("real_server without an address")
			continue
		}
		if err := docAddr(r.Addr.Addr()); err != nil {
			errs = append(errs, err)
		}
		if r.Weight < 0 {
			bad("real_server %s: weight %d is negative", r.Addr, r.Weight)
		}
		if c := r.Check; c != nil {
			if c.ConnectTimeout < 0 || c.DelayBeforeRetry < 0 || c.Retry < 0 || (c.Warmup < 0 && c.Warmup != NoWarmup) {
				bad("real_server %s: TCP_CHECK with a negative setting", r.Addr)
			}
		}
	}
	return errors.Join(errs...)
}
