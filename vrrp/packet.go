package vrrp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// ErrInvalidPacket is wrapped by Marshal when a Packet cannot be encoded.
var ErrInvalidPacket = errors.New("vrrp: invalid packet")

// Packet is one VRRP ADVERTISEMENT, the VRRP payload only (the IP header is
// the transport's). The layouts are:
//
//	v3 (RFC 5798 §5.1):                   v2 (RFC 3768 §5.1):
//	 0       4       8               16              24              32
//	+-------+-------+---------------+---------------+---------------+
//	|Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//	+-------+-------+---------------+---------------+---------------+
//	v3: | Rsvd  |    Max Adver Int (cs)  |          Checksum             |
//	v2: |   Auth Type   |   Adver Int (s)|          Checksum             |
//	+---------------------------------------------------------------+
//	|                  IPvX Address(es) (4 or 16 octets each)       |
//	+---------------------------------------------------------------+
//	v2 only: Authentication Data (8 octets)
//
// The Type is always ADVERTISEMENT: Parse refuses anything else and Marshal
// always writes it, so it is not a field.
type Packet struct {
	Version Version
	// VRID is the Virtual Rtr ID (RFC 5798 §5.2.3; RFC 3768 §5.3.3).
	VRID uint8
	// Priority is the sender's priority (RFC 5798 §5.2.4; RFC 3768 §5.3.4).
	Priority uint8
	// AdverInt is the advertisement interval field in the version's own
	// unit: v3 centiseconds in 12 bits (RFC 5798 §5.2.7 Max Adver Int), v2
	// whole seconds in 8 bits (RFC 3768 §5.3.7 Adver Int). See Interval.
	AdverInt uint16
	// Rsvd holds the 4 reserved bits of a v3 message as received. RFC 5798
	// §5.2.6: "MUST be set to zero on transmission and ignored on reception";
	// Parse keeps them only so that Marshal(Parse(b)) reproduces b.
	Rsvd uint8
	// AuthType and AuthData are the v2 authentication fields (RFC 3768
	// §5.3.6 and §5.3.10). They are zero in v3 messages.
	AuthType AuthType
	AuthData [authDataLen]byte
	// Addrs are the virtual addresses, all of the packet's family (RFC 5798
	// §5.2.9; RFC 3768 §5.3.9). In an IPv4 packet they are plain IPv4
	// addresses; in an IPv6 packet they are IPv6 addresses, which may
	// include IPv4-mapped ones (::ffff:a.b.c.d) exactly as received.
	Addrs []netip.Addr
	// Checksum is the checksum field as received. Parse fills it; Marshal
	// ignores it and always computes the checksum afresh.
	Checksum uint16
	// ChecksumMode is the form the checksum was verified in (Parse) or is to
	// be computed in (Marshal).
	ChecksumMode ChecksumMode
}

// Interval returns the advertised interval as a duration.
func (p *Packet) Interval() time.Duration {
	if p.Version == Version2 {
		return time.Duration(p.AdverInt) * time.Second
	}
	return time.Duration(p.AdverInt) * centisecond
}

// Advert returns what the state machine needs from a packet received from
// src (the IP source address of the packet, the sender's primary address).
// The address is unmapped and stripped of any zone.
func (p *Packet) Advert(src netip.Addr) Advert {
	return Advert{Src: src.Unmap().WithZone(""), Priority: p.Priority, Interval: p.Interval()}
}

// Len returns the encoded length of p.
func (p *Packet) Len() int {
	alen := 4
	if len(p.Addrs) > 0 && p.Addrs[0].Is6() {
		alen = 16
	}
	n := headerLen + alen*len(p.Addrs)
	if p.Version == Version2 {
		n += authDataLen
	}
	return n
}

// Marshal encodes p as sent from src to dst. src and dst are the addresses of
// the IP header the transport will write; they feed the v3 pseudo-header and
// pick the address family. For v2 they may be the zero Addr.
func (p *Packet) Marshal(src, dst netip.Addr) ([]byte, error) {
	return p.AppendMarshal(make([]byte, 0, p.Len()), src, dst)
}

// AppendMarshal is Marshal appending to b.
func (p *Packet) AppendMarshal(b []byte, src, dst netip.Addr) ([]byte, error) {
	src, dst = src.Unmap(), dst.Unmap()
	var alen int
	switch p.Version {
	case Version2:
		// RFC 3768 is IPv4 only.
		if (src.IsValid() && !src.Is4()) || (dst.IsValid() && !dst.Is4()) {
			return b, fmt.Errorf("%w: VRRPv2 over IPv6 (RFC 3768 is IPv4 only)", ErrInvalidPacket)
		}
		if p.AdverInt > maxAdverIntV2 {
			return b, fmt.Errorf("%w: v2 Adver Int %d s exceeds 8 bits", ErrInvalidPacket, p.AdverInt)
		}
		if p.Rsvd != 0 {
			return b, fmt.Errorf("%w: v2 has no reserved bits", ErrInvalidPacket)
		}
		if p.ChecksumMode != ChecksumStandard {
			return b, fmt.Errorf("%w: checksum mode %v applies to VRRPv3 over IPv4 only", ErrInvalidPacket, p.ChecksumMode)
		}
		alen = 4
	case Version3:
		if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
			return b, fmt.Errorf("%w: v3 needs valid source and destination of one family, got %v -> %v", ErrInvalidPacket, src, dst)
		}
		if p.AdverInt > maxAdverIntV3 {
			return b, fmt.Errorf("%w: v3 Max Adver Int %d cs exceeds 12 bits", ErrInvalidPacket, p.AdverInt)
		}
		if p.Rsvd > 0x0f {
			return b, fmt.Errorf("%w: v3 reserved field %#x exceeds 4 bits", ErrInvalidPacket, p.Rsvd)
		}
		if p.AuthType != AuthNone || p.AuthData != [authDataLen]byte{} {
			return b, fmt.Errorf("%w: v3 has no authentication", ErrInvalidPacket)
		}
		if src.Is6() && p.ChecksumMode != ChecksumStandard {
			return b, fmt.Errorf("%w: checksum mode %v applies to VRRPv3 over IPv4 only", ErrInvalidPacket, p.ChecksumMode)
		}
		if p.ChecksumMode > ChecksumLegacyUnicast {
			return b, fmt.Errorf("%w: unknown checksum mode %v", ErrInvalidPacket, p.ChecksumMode)
		}
		alen = 4
		if src.Is6() {
			alen = 16
		}
	default:
		return b, fmt.Errorf("%w: version %d", ErrInvalidPacket, uint8(p.Version))
	}
	if len(p.Addrs) > MaxAddrs {
		return b, fmt.Errorf("%w: %d addresses, at most %d fit Count IPvX Addrs", ErrInvalidPacket, len(p.Addrs), MaxAddrs)
	}

	start := len(b)
	b = append(b, byte(p.Version)<<4|TypeAdvertisement, p.VRID, p.Priority, byte(len(p.Addrs)))
	if p.Version == Version2 {
		b = append(b, byte(p.AuthType), byte(p.AdverInt))
	} else {
		b = binary.BigEndian.AppendUint16(b, uint16(p.Rsvd)<<12|p.AdverInt)
	}
	b = append(b, 0, 0) // checksum, filled below
	for _, a := range p.Addrs {
		switch {
		case alen == 4 && a.Is4():
			a4 := a.As4()
			b = append(b, a4[:]...)
		case alen == 16 && a.Is6() && a.Zone() == "":
			a16 := a.As16()
			b = append(b, a16[:]...)
		default:
			fam := "IPv4"
			if alen == 16 {
				fam = "IPv6"
			}
			return b[:start], fmt.Errorf("%w: address %v is not of the packet's family (%s)", ErrInvalidPacket, a, fam)
		}
	}
	if p.Version == Version2 {
		b = append(b, p.AuthData[:]...)
	}
	msg := b[start:]
	binary.BigEndian.PutUint16(msg[6:], checksum(p.Version, p.ChecksumMode, src, dst, msg))
	return b, nil
}

// ParseOptions relaxes Parse for peers that compute the VRRPv3/IPv4 checksum
// differently. ChecksumStandard is always accepted; the zero value accepts
// nothing else.
type ParseOptions struct {
	// AcceptMessageOnly also accepts v3/IPv4 packets whose checksum leaves
	// out the pseudo-header (ChecksumMessageOnly: Cisco, RFC 9568 readers,
	// keepalived "v3_checksum_as_v2").
	AcceptMessageOnly bool
	// AcceptLegacyUnicast also accepts unicast v3/IPv4 packets whose
	// pseudo-header names 224.0.0.18 instead of the real destination
	// (ChecksumLegacyUnicast: keepalived before 1.3.6).
	AcceptLegacyUnicast bool
}

// Parse decodes and verifies one VRRP message b received in an IP packet
// from src to dst. It performs the checks of RFC 5798 §7.1 / RFC 3768 §7.1
// that need nothing but the packet: version is 2 or 3 (and 2 only on IPv4),
// type is ADVERTISEMENT, the packet is complete and has no trailing octets,
// and the checksum verifies. Every error is a *DropError. The checks that
// need the local configuration are WireConfig.Check; the TTL check is
// CheckTTL. A Count of 0 is accepted although RFC 5798 §5.2.5 says the
// minimum is 1: keepalived sends it for an instance without virtual
// addresses, and WireConfig.Check compares the list anyway.
//
// The returned Packet does not alias b.
func Parse(b []byte, src, dst netip.Addr, opts ParseOptions) (*Packet, error) {
	src, dst = src.Unmap(), dst.Unmap()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return nil, dropf(BadAddrFamily, "source %v and destination %v are not a valid pair of one family", src, dst)
	}
	if len(b) < headerLen {
		return nil, dropf(BadLength, "%d octets, shorter than the %d-octet fixed header", len(b), headerLen)
	}
	v := Version(b[0] >> 4)
	switch v {
	case Version3:
	case Version2:
		if src.Is6() {
			return nil, dropf(BadVersion, "VRRPv2 over IPv6 (RFC 3768 is IPv4 only)")
		}
	default:
		return nil, dropf(BadVersion, "version %d", uint8(v))
	}
	if t := b[0] & 0x0f; t != TypeAdvertisement {
		return nil, dropf(BadType, "type %d", t)
	}
	count := int(b[3])
	alen := 4
	if src.Is6() {
		alen = 16
	}
	want := headerLen + count*alen
	if v == Version2 {
		want += authDataLen
	}
	if len(b) != want {
		word := "short"
		if len(b) > want {
			word = "long"
		}
		return nil, dropf(BadLength, "too %s: %d octets, %d addresses need %d", word, len(b), count, want)
	}

	mode := ChecksumStandard
	if !checksumOK(v, mode, src, dst, b) {
		ok := false
		if v == Version3 && src.Is4() {
			if opts.AcceptMessageOnly && checksumOK(v, ChecksumMessageOnly, src, dst, b) {
				mode, ok = ChecksumMessageOnly, true
			} else if opts.AcceptLegacyUnicast && dst != MulticastGroup4() &&
				checksumOK(v, ChecksumLegacyUnicast, src, dst, b) {
				mode, ok = ChecksumLegacyUnicast, true
			}
		}
		if !ok {
			got := binary.BigEndian.Uint16(b[6:])
			zeroed := append([]byte(nil), b...)
			zeroed[6], zeroed[7] = 0, 0
			return nil, dropf(BadChecksum, "checksum %#04x, want %#04x (%v)", got,
				checksum(v, ChecksumStandard, src, dst, zeroed), ChecksumStandard)
		}
	}

	p := &Packet{
		Version:      v,
		VRID:         b[1],
		Priority:     b[2],
		Checksum:     binary.BigEndian.Uint16(b[6:]),
		ChecksumMode: mode,
	}
	if v == Version2 {
		p.AuthType = AuthType(b[4])
		p.AdverInt = uint16(b[5])
		copy(p.AuthData[:], b[want-authDataLen:])
	} else {
		w := binary.BigEndian.Uint16(b[4:])
		p.Rsvd = uint8((w & rsvdMaskV3) >> 12)
		p.AdverInt = w & maxAdverIntV3
	}
	if count > 0 {
		p.Addrs = make([]netip.Addr, count)
		for i := range p.Addrs {
			off := headerLen + i*alen
			if alen == 4 {
				p.Addrs[i] = netip.AddrFrom4([4]byte(b[off : off+4]))
			} else {
				p.Addrs[i] = netip.AddrFrom16([16]byte(b[off : off+16]))
			}
		}
	}
	return p, nil
}

// CheckTTL is the first receive check of RFC 5798 §7.1 / RFC 3768 §7.1: the
// IPv4 TTL or IPv6 Hop Limit of a received advertisement MUST be 255, which
// proves it was not forwarded by a router (RFC 5082's GTSM argument). relax
// skips the check; set it for unicast peers, which may be routed (keepalived
// does not check the TTL of unicast adverts either).
func CheckTTL(ttl uint8, relax bool) error {
	if relax || ttl == TTL {
		return nil
	}
	return dropf(BadTTL, "ttl %d, want %d", ttl, TTL)
}
