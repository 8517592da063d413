package vrrp

import (
	"fmt"
	"net/netip"
)

// ChecksumMode selects which bytes the VRRP checksum covers. It matters only
// for VRRPv3 over IPv4, where implementations disagree; see the package
// documentation ("Checksums") for the history.
type ChecksumMode uint8

const (
	// ChecksumStandard is the checksum of the version's RFC:
	//   - v2: the VRRP message only (RFC 3768 §5.3.8);
	//   - v3/IPv6: the message plus the RFC 8200 §8.1 (ex RFC 2460 §8.1)
	//     pseudo-header (RFC 5798 §5.2.8);
	//   - v3/IPv4: the message plus the IPv4 pseudo-header (src, dst, zero,
	//     protocol 112, VRRP length), which is how keepalived (by default),
	//     FRR (by default before 2023) and Linux-based appliances read
	//     RFC 5798 §5.2.8.
	ChecksumStandard ChecksumMode = iota
	// ChecksumMessageOnly is the v2-style checksum on a v3/IPv4 packet: no
	// pseudo-header. Cisco and other vendors read RFC 5798 §5.2.8 as
	// applying the pseudo-header to IPv6 only, RFC 9568 §5.2.8 (which
	// obsoletes RFC 5798) says so explicitly, and keepalived sends it when
	// configured with "v3_checksum_as_v2".
	ChecksumMessageOnly
	// ChecksumLegacyUnicast is the pseudo-header checksum computed with the
	// multicast group 224.0.0.18 as destination even though the packet was
	// unicast. keepalived before 1.3.6 did this for unicast VRRPv3/IPv4 peers
	// (its "old_unicast_checksum" option keeps doing it).
	ChecksumLegacyUnicast
)

// String names the mode.
func (m ChecksumMode) String() string {
	switch m {
	case ChecksumStandard:
		return "standard"
	case ChecksumMessageOnly:
		return "message-only"
	case ChecksumLegacyUnicast:
		return "legacy-unicast"
	default:
		return fmt.Sprintf("checksum_mode(%d)", uint8(m))
	}
}

// sum16 adds b as big-endian 16-bit words to acc (RFC 1071 §4.1), padding an
// odd trailing octet with zero. The accumulator is folded by fold.
func sum16(acc uint32, b []byte) uint32 {
	n := len(b) &^ 1
	for i := 0; i < n; i += 2 {
		acc += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b) != n {
		acc += uint32(b[n]) << 8
	}
	return acc
}

// fold reduces a one's-complement accumulator to 16 bits (RFC 1071 §4.1).
func fold(acc uint32) uint16 {
	for acc > 0xffff {
		acc = acc&0xffff + acc>>16
	}
	return uint16(acc)
}

// pseudoHeaderSum returns the partial sum of the pseudo-header that mode puts
// under a message of length n sent from src to dst, or 0 when the mode has
// none. The caller guarantees that src and dst are valid and of one family.
func pseudoHeaderSum(v Version, mode ChecksumMode, src, dst netip.Addr, n int) uint32 {
	if v != Version3 {
		return 0 // RFC 3768 §5.3.8: "the entire VRRP message", nothing else.
	}
	if src.Is6() {
		// RFC 5798 §5.2.8 -> RFC 2460 §8.1 (now RFC 8200 §8.1): source,
		// destination, 32-bit upper-layer length, 24 zero bits, next header.
		s, d := src.As16(), dst.As16()
		acc := sum16(0, s[:])
		acc = sum16(acc, d[:])
		acc += uint32(n>>16) + uint32(n&0xffff)
		return acc + IPProtocol
	}
	switch mode {
	case ChecksumMessageOnly:
		return 0
	case ChecksumLegacyUnicast:
		dst = MulticastGroup4()
	}
	// The IPv4 pseudo-header of RFC 768 / RFC 793: source, destination,
	// zero, protocol, length.
	s, d := src.As4(), dst.As4()
	acc := sum16(0, s[:])
	acc = sum16(acc, d[:])
	return acc + IPProtocol + uint32(n)
}

// checksum computes the checksum field value for msg, whose checksum field
// (octets 6..7) must be zero.
func checksum(v Version, mode ChecksumMode, src, dst netip.Addr, msg []byte) uint16 {
	return ^fold(sum16(pseudoHeaderSum(v, mode, src, dst, len(msg)), msg))
}

// checksumOK verifies msg including its checksum field: the one's-complement
// sum of everything covered must be all ones (RFC 1071 §2).
func checksumOK(v Version, mode ChecksumMode, src, dst netip.Addr, msg []byte) bool {
	return fold(sum16(pseudoHeaderSum(v, mode, src, dst, len(msg)), msg)) == 0xffff
}
