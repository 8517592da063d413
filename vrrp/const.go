package vrrp

import (
	"fmt"
	"net/netip"
	"time"
)

// Version is the VRRP protocol version carried in the high nibble of the
// first octet of every VRRP message.
type Version uint8

const (
	// Version2 is VRRP for IPv4 as specified by RFC 3768 (RFC 3768 §5.3.1:
	// "This document specifies version 2 of the VRRP protocol").
	Version2 Version = 2
	// Version3 is VRRP for IPv4 and IPv6 as specified by RFC 5798 (RFC 5798
	// §5.2.1: "This document specifies version 3 of the VRRP protocol").
	Version3 Version = 3
)

// String returns "v2", "v3" or "v<N>" for an unknown version.
func (v Version) String() string {
	switch v {
	case Version2:
		return "v2"
	case Version3:
		return "v3"
	default:
		return fmt.Sprintf("v%d", uint8(v))
	}
}

// Wire constants. Each names the section of the RFC that fixes its value.
const (
	// IPProtocol is the IPv4 protocol / IPv6 next-header number of VRRP
	// (RFC 5798 §5.1.1.4 and §5.1.2.4; RFC 3768 §5.2.4): 112.
	IPProtocol = 112

	// TTL is the IPv4 TTL / IPv6 Hop Limit every advertisement is sent with
	// and must be received with (RFC 5798 §5.1.1.3, §5.1.2.3 and §7.1;
	// RFC 3768 §5.2.3 and §7.1): 255.
	TTL = 255

	// TypeAdvertisement is the only defined VRRP message type (RFC 5798
	// §5.2.2; RFC 3768 §5.3.2). "A packet with unknown type MUST be
	// discarded."
	TypeAdvertisement = 1

	// PriorityOwner is the priority of the router that owns the virtual
	// addresses (RFC 5798 §5.2.4; RFC 3768 §5.3.4): 255.
	PriorityOwner = 255
	// PriorityDefault is the default priority of a backup router (RFC 5798
	// §5.2.4 and §6.1; RFC 3768 §5.3.4 and §6.1): 100.
	PriorityDefault = 100
	// PriorityMaxBackup is the highest priority a non-owner may use (RFC 5798
	// §5.2.4: "VRRP Routers backing up a virtual router MUST use priority
	// values between 1-254"; RFC 3768 §5.3.4).
	PriorityMaxBackup = 254
	// PriorityStop is the priority a Master sends when it stops participating,
	// so Backups take over after Skew_Time instead of Master_Down_Interval
	// (RFC 5798 §5.2.4 and §6.4.3; RFC 3768 §5.3.4 and §6.4.3): 0.
	PriorityStop = 0

	// headerLen is the fixed part of both v2 and v3 messages: version/type,
	// VRID, priority, count, the 16 bits of (auth type, adver int) or
	// (rsvd, max adver int), and the checksum (RFC 5798 §5.1; RFC 3768 §5.1).
	headerLen = 8
	// authDataLen is the length of the v2 Authentication Data field that
	// follows the addresses (RFC 3768 §5.1 and §5.3.10): two 32-bit words.
	authDataLen = 8

	// MaxAddrs is the largest value of the 8-bit "Count IPvX Addrs" field
	// (RFC 5798 §5.2.5; RFC 3768 §5.3.5).
	MaxAddrs = 255

	// maxAdverIntV3 is the largest 12-bit Max Adver Int, in centiseconds
	// (RFC 5798 §5.2.7: "a 12-bit field ... in centiseconds").
	maxAdverIntV3 = 0x0fff
	// maxAdverIntV2 is the largest 8-bit Adver Int, in seconds (RFC 3768
	// §5.3.7).
	maxAdverIntV2 = 0xff
	// rsvdMaskV3 selects the 4 reserved bits above the 12-bit Max Adver Int
	// (RFC 5798 §5.2.6: "MUST be set to zero on transmission and ignored on
	// reception").
	rsvdMaskV3 = 0xf000

	// centisecond is the unit of the v3 Max Adver Int (RFC 5798 §5.2.7).
	centisecond = 10 * time.Millisecond
)

// Default advertisement intervals.
const (
	// DefaultAdvertIntervalV3 is 100 centiseconds (RFC 5798 §5.2.7 and §6.1).
	DefaultAdvertIntervalV3 = 100 * centisecond
	// DefaultAdvertIntervalV2 is 1 second (RFC 3768 §5.3.7 and §6.1).
	DefaultAdvertIntervalV2 = time.Second
)

// MulticastGroup4 returns the IPv4 destination of multicast advertisements,
// 224.0.0.18 (RFC 5798 §5.1.1.2; RFC 3768 §5.2.2).
func MulticastGroup4() netip.Addr { return netip.AddrFrom4([4]byte{224, 0, 0, 18}) }

// MulticastGroup6 returns the IPv6 destination of multicast advertisements,
// ff02::12 (RFC 5798 §5.1.2.2).
func MulticastGroup6() netip.Addr {
	return netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 15: 0x12})
}

// AuthType is the VRRPv2 Auth Type field (RFC 3768 §5.3.6). RFC 3768 removed
// authentication ("operational experience showed that they did not provide
// any real security") but keepalived still sends and checks the RFC 2338
// simple text password, so it is supported for interop.
type AuthType uint8

const (
	// AuthNone is "No Authentication" (RFC 3768 §5.3.6; RFC 2338 §5.3.6.1).
	AuthNone AuthType = 0
	// AuthSimple is the RFC 2338 §5.3.6.2 "Simple Text Password", which
	// keepalived calls "auth_type PASS": up to 8 octets of password in the
	// Authentication Data field, zero padded.
	AuthSimple AuthType = 1
	// AuthAH is the RFC 2338 §5.3.6.3 IP Authentication Header type. It is
	// not supported: packets carrying it are dropped with AuthMismatch.
	AuthAH AuthType = 2
)

// String returns the keepalived name of the auth type.
func (a AuthType) String() string {
	switch a {
	case AuthNone:
		return "none"
	case AuthSimple:
		return "pass"
	case AuthAH:
		return "ah"
	default:
		return fmt.Sprintf("auth(%d)", uint8(a))
	}
}
