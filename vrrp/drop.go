package vrrp

import (
	"errors"
	"fmt"
)

// DropReason says why a received VRRP packet was (or, for AddrListMismatch
// under the RFC policy, might have been) discarded. Each reason maps to one
// receive check of RFC 5798 §7.1 / RFC 3768 §7.1; String returns a stable
// snake_case token suitable for a metrics label.
type DropReason uint8

const (
	// BadTTL: the IPv4 TTL or IPv6 Hop Limit is not 255 (RFC 5798 §7.1;
	// RFC 3768 §7.1, §5.2.3).
	BadTTL DropReason = iota + 1
	// BadVersion: the version nibble is neither 2 nor 3, is not the locally
	// configured version, or is 2 on IPv6 (RFC 5798 §7.1 "MUST verify that
	// the VRRP version is 3"; RFC 3768 §7.1).
	BadVersion
	// BadType: the type nibble is not ADVERTISEMENT (RFC 5798 §5.2.2; RFC 3768
	// §5.3.2).
	BadType
	// BadLength: the packet is shorter than its fixed fields plus the
	// addresses (and v2 auth data) it announces, or has trailing octets
	// (RFC 5798 §7.1 "MUST verify that the received packet contains the
	// complete VRRP packet"; keepalived also refuses packets that are too long).
	BadLength
	// BadChecksum: the checksum does not verify in any accepted form
	// (RFC 5798 §5.2.8 and §7.1; RFC 3768 §5.3.8 and §7.1).
	BadChecksum
	// BadAddrFamily: the source/destination addresses handed to Parse are
	// not a valid pair of one family.
	BadAddrFamily
	// VRIDMismatch: the VRID is not the one configured; callers demultiplex
	// on the VRID and count this when no instance claims it (RFC 5798 §7.1
	// "MUST verify that the VRID is configured on the receiving interface").
	VRIDMismatch
	// LocalOwner: the local router is the address owner (priority 255), so
	// an advertisement from anybody else is a misconfiguration (RFC 5798
	// §7.1 and RFC 3768 §7.1: "... and the local router is not the IPvX
	// address owner").
	LocalOwner
	// AddrListMismatch: Count IPvX Addrs or the address list differs from the
	// configured virtual addresses (RFC 5798 §7.1; RFC 3768 §7.1). Whether
	// this drops the packet depends on AddrListPolicy.
	AddrListMismatch
	// AuthMismatch: v2 Auth Type unknown, unsupported or different from the
	// configured one, or the simple password differs (RFC 3768 §5.3.6 and
	// §7.1; RFC 2338 §7.1).
	AuthMismatch
	// BadAdvertInterval: a v2 Adver Int differs from the configured one (RFC
	// 3768 §7.1 "MUST verify that the Adver Interval in the packet is the same
	// as the locally configured"), or a v3 Max Adver Int is zero (RFC 9568
	// erratum 8301; an interval of 0 would make Master_Down_Interval collapse
	// to Skew_Time).
	BadAdvertInterval

	numDropReasons = iota + 1 // one past the last reason, for arrays
)

// String returns a stable snake_case token.
func (r DropReason) String() string {
	switch r {
	case BadTTL:
		return "bad_ttl"
	case BadVersion:
		return "bad_version"
	case BadType:
		return "bad_type"
	case BadLength:
		return "bad_length"
	case BadChecksum:
		return "bad_checksum"
	case BadAddrFamily:
		return "bad_addr_family"
	case VRIDMismatch:
		return "vrid_mismatch"
	case LocalOwner:
		return "local_owner"
	case AddrListMismatch:
		return "addr_list_mismatch"
	case AuthMismatch:
		return "auth_mismatch"
	case BadAdvertInterval:
		return "bad_advert_interval"
	default:
		return fmt.Sprintf("drop_reason(%d)", uint8(r))
	}
}

// DropReasons returns every defined reason, in declaration order.
func DropReasons() []DropReason {
	rs := make([]DropReason, 0, numDropReasons-1)
	for r := DropReason(1); r < numDropReasons; r++ {
		rs = append(rs, r)
	}
	return rs
}

// DropError is the error every receive check returns. Callers recover the
// reason with errors.As, or compare with errors.Is against a bare
// &DropError{Reason: r} (Is matches on Reason alone).
type DropError struct {
	Reason DropReason
	// Detail is a human-readable explanation for the log line, e.g.
	// "ttl 64, want 255". It is never parsed.
	Detail string
}

// Error implements error.
func (e *DropError) Error() string {
	if e.Detail == "" {
		return "vrrp: drop: " + e.Reason.String()
	}
	return "vrrp: drop: " + e.Reason.String() + ": " + e.Detail
}

// Is reports whether target is a *DropError with the same Reason, so that
// errors.Is(err, &vrrp.DropError{Reason: vrrp.BadTTL}) works.
func (e *DropError) Is(target error) bool {
	t, ok := target.(*DropError)
	return ok && t.Reason == e.Reason
}

func dropf(r DropReason, format string, args ...any) error {
	return &DropError{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the DropReason carried by err (anywhere in its chain) and
// whether there was one.
func ReasonOf(err error) (DropReason, bool) {
	var de *DropError
	if errors.As(err, &de) {
		return de.Reason, true
	}
	return 0, false
}
