package l7proxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
)

// PROXY protocol (HAProxy's proxy-protocol.txt), versions 1 and 2: parsing on listeners,
// encoding toward servers.

// proxyV2Sig is the 12-byte signature of a version 2 header.
const proxyV2Sig = "\r\n\r\n\x00\r\nQUIT\n"

const (
	proxyV1MaxLen = 107  // the whole v1 line, CRLF included (spec §2.1)
	proxyV2MaxLen = 2048 // our limit on the v2 address+TLV block (the spec allows 65535)
)

// errProxyHeader is wrapped by every parse failure.
var errProxyHeader = errors.New("invalid PROXY protocol header")

// proxyHeader is a parsed PROXY header. Local is true for v1 UNKNOWN and v2 LOCAL (or an
// unsupported family): the connection's own addresses are to be used.
type proxyHeader struct {
	Version int
	Local   bool
	Src     netip.AddrPort
	Dst     netip.AddrPort
}

// readProxyHeader reads exactly one PROXY header from r, v1 or v2, leaving what follows it in r.
// The reader's buffer must hold at least 16 bytes (bufio's minimum does).
func readProxyHeader(r *bufio.Reader) (proxyHeader, error) {
	first, err := r.Peek(1)
	if err != nil {
		return proxyHeader{}, fmt.Errorf("%w: %w", errProxyHeader, err)
	}
	switch first[0] {
	case 'P':
		return readProxyV1(r)
	case '\r':
		return readProxyV2(r)
	}
	return proxyHeader{}, fmt.Errorf("%w: no signature", errProxyHeader)
}

func readProxyV1(r *bufio.Reader) (proxyHeader, error) {
	line := make([]byte, 0, proxyV1MaxLen)
	for {
		c, err := r.ReadByte()
		if err != nil {
			return proxyHeader{}, fmt.Errorf("%w: v1: %w", errProxyHeader, err)
		}
		line = append(line, c)
		if c == '\n' {
			break
		}
		if len(line) >= proxyV1MaxLen {
			return proxyHeader{}, fmt.Errorf("%w: v1: line longer than %d bytes", errProxyHeader, proxyV1MaxLen)
		}
	}
	return parseProxyV1(line)
}

// parseProxyV1 parses one complete v1 line, CRLF included.
func parseProxyV1(line []byte) (proxyHeader, error) {
	bad := func(why string) (proxyHeader, error) {
		return proxyHeader{}, fmt.Errorf("%w: v1: %s", errProxyHeader, why)
	}
	body, ok := bytes.CutSuffix(line, []byte("\r\n"))
	if !ok {
		return bad("not terminated by CRLF")
	}
	rest, ok := bytes.CutPrefix(body, []byte("PROXY "))
	if !ok {
		return bad("no PROXY signature")
	}
	f := bytes.Split(rest, []byte(" "))
	if string(f[0]) == "UNKNOWN" {
		// "PROXY UNKNOWN" may be followed by anything up to CRLF (spec §2.1).
		return proxyHeader{Version: 1, Local: true}, nil
	}
	if len(f) != 5 {
		return bad("want 5 fields")
	}
	var want4 bool
	switch string(f[0]) {
	case "TCP4":
		want4 = true
	case "TCP6":
	default:
		return bad("unknown protocol")
	}
	src, err1 := parseV1Addr(f[1], f[3], want4)
	dst, err2 := parseV1Addr(f[2], f[4], want4)
	if err1 != nil || err2 != nil {
		return bad("bad address or port")
	}
	return proxyHeader{Version: 1, Src: src, Dst: dst}, nil
}

func parseV1Addr(a, p []byte, want4 bool) (netip.AddrPort, error) {
	addr, err := netip.ParseAddr(string(a))
	if err != nil || addr.Zone() != "" || addr.Is4() != want4 {
		return netip.AddrPort{}, errProxyHeader
	}
	// Ports are decimal 0-65535 without sign or leading zeros.
	if len(p) == 0 || len(p) > 5 || (len(p) > 1 && p[0] == '0') {
		return netip.AddrPort{}, errProxyHeader
	}
	for _, c := range p {
		if c < '0' || c > '9' {
			return netip.AddrPort{}, errProxyHeader
		}
	}
	port, err := strconv.ParseUint(string(p), 10, 16)
	if err != nil {
		return netip.AddrPort{}, errProxyHeader
	}
	return netip.AddrPortFrom(addr, uint16(port)), nil
}

func readProxyV2(r *bufio.Reader) (proxyHeader, error) {
	var hdr [16]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return proxyHeader{}, fmt.Errorf("%w: v2: %w", errProxyHeader, err)
	}
	n := int(binary.BigEndian.Uint16(hdr[14:16]))
	if n > proxyV2MaxLen {
		return proxyHeader{}, fmt.Errorf("%w: v2: length %d above %d", errProxyHeader, n, proxyV2MaxLen)
	}
	// Check the fixed part before reading a body an attacker sized.
	if _, err := parseProxyV2(hdr[:], n, true); err != nil {
		return proxyHeader{}, err
	}
	buf := make([]byte, 16+n)
	copy(buf, hdr[:])
	if _, err := io.ReadFull(r, buf[16:]); err != nil {
		return proxyHeader{}, fmt.Errorf("%w: v2: %w", errProxyHeader, err)
	}
	return parseProxyV2(buf, n, false)
}

// parseProxyV2 parses a v2 header whose declared payload length is n. With headOnly, b holds
// only the 16 fixed bytes and only they are checked.
func parseProxyV2(b []byte, n int, headOnly bool) (proxyHeader, error) {
	bad := func(why string) (proxyHeader, error) {
		return proxyHeader{}, fmt.Errorf("%w: v2: %s", errProxyHeader, why)
	}
	if len(b) < 16 || string(b[:12]) != proxyV2Sig {
		return bad("no signature")
	}
	if b[12]>>4 != 2 {
		return bad("version is not 2")
	}
	cmd := b[12] & 0x0f
	if cmd > 1 {
		return bad("unknown command")
	}
	fam, proto := b[13]>>4, b[13]&0x0f
	if fam > 3 || proto > 2 {
		return bad("unknown family or protocol")
	}
	need := 0
	switch fam {
	case 1:
		need = 12
	case 2:
		need = 36
	case 3:
		need = 216
	}
	if n < need {
		return bad("length shorter than the addresses")
	}
	if headOnly {
		return proxyHeader{}, nil
	}
	if len(b) != 16+n {
		return bad("truncated")
	}
	h := proxyHeader{Version: 2}
	// LOCAL, UNSPEC, UNIX and UDP: keep the connection's own addresses (spec §2.2).
	if cmd == 0 || proto != 1 || (fam != 1 && fam != 2) {
		h.Local = true
		return h, nil
	}
	p := b[16:]
	if fam == 1 {
		h.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[0:4])), binary.BigEndian.Uint16(p[8:10]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[4:8])), binary.BigEndian.Uint16(p[10:12]))
	} else {
		h.Src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(p[0:16])).Unmap(), binary.BigEndian.Uint16(p[32:34]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(p[16:32])).Unmap(), binary.BigEndian.Uint16(p[34:36]))
	}
	// TLVs (after the addresses) are skipped, but must be well formed.
	tlv := p[need:]
	for len(tlv) > 0 {
		if len(tlv) < 3 {
			return bad("truncated TLV")
		}
		l := int(binary.BigEndian.Uint16(tlv[1:3]))
		if len(tlv) < 3+l {
			return bad("TLV longer than the header")
		}
		tlv = tlv[3+l:]
	}
	return h, nil
}

// appendProxyHeader appends a PROXY header of version 1 or 2 for a TCP connection from src to
// dst. Mixed families are sent as IPv6 with IPv4-mapped addresses; an invalid address sends
// UNKNOWN (v1) or LOCAL (v2).
func appendProxyHeader(b []byte, version int, src, dst netip.AddrPort) []byte {
	sa, da := src.Addr().Unmap(), dst.Addr().Unmap()
	valid := src.IsValid() && dst.IsValid()
	four := sa.Is4() && da.Is4()
	if !four {
		sa, da = as16(sa), as16(da)
	}
	if version == 1 {
		if !valid {
			return append(b, "PROXY UNKNOWN\r\n"...)
		}
		proto := "TCP6"
		if four {
			proto = "TCP4"
		}
		return fmt.Appendf(b, "PROXY %s %s %s %d %d\r\n", proto, sa, da, src.Port(), dst.Port())
	}
	b = append(b, proxyV2Sig...)
	if !valid {
		return append(b, 0x20, 0x00, 0, 0) // LOCAL, UNSPEC, no payload
	}
	if four {
		b = append(b, 0x21, 0x11, 0, 12)
		s4, d4 := sa.As4(), da.As4()
		b = append(b, s4[:]...)
		b = append(b, d4[:]...)
	} else {
		b = append(b, 0x21, 0x21, 0, 36)
		s16, d16 := sa.As16(), da.As16()
		b = append(b, s16[:]...)
		b = append(b, d16[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}

func as16(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.AddrFrom16(a.As16())
	}
	return a
}
