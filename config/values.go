package config

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// This file holds the parsers of the string forms the schema accepts. They
// are pure functions; their errors are written for the operator and become
// the detail of a diagnostic.

// parseDuration parses a non-negative Go duration string ("100ms", "1m30s").
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; write a number followed by a unit (ns, us, ms, s, m or h), for example \"100ms\", \"1s\" or \"1m30s\" (%w)", s, err)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative; durations must be zero or more", s)
	}
	return d, nil
}

// parseSize parses a byte size: a plain number of bytes ("512"), or a
// number and a unit: B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB
// (powers of 1024). Units are case-insensitive; fractions are allowed
// ("1.5MiB") and rounded down to whole bytes.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	bad := func() (int64, error) {
		return 0, fmt.Errorf("%q is not a size; write a number of bytes, optionally followed by a unit (B, KB, MB, GB, KiB, MiB, GiB), for example \"512\", \"64KiB\" or \"10MiB\"", s)
	}
	if num == "" || strings.Count(num, ".") > 1 || num == "." {
		return bad()
	}
	var mult float64
	switch strings.ToLower(unit) {
	case "", "b":
		mult = 1
	case "kb":
		mult = 1e3
	case "mb":
		mult = 1e6
	case "gb":
		mult = 1e9
	case "tb":
		mult = 1e12
	case "kib":
		mult = 1 << 10
	case "mib":
		mult = 1 << 20
	case "gib":
		mult = 1 << 30
	case "tib":
		mult = 1 << 40
	default:
		return bad()
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return bad()
	}
	v := math.Floor(f * mult)
	if v > 1<<53 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(v), nil
}

// parseIP parses one IP address without a zone. IPv4-mapped IPv6 addresses
// are refused: the family of an address decides protocol versions and
// checks, so it must be written in its own form.
func parseIP(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address (%w)", s, err)
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q has a zone; zones are not supported here", s)
	}
	if a.Is4In6() {
		return netip.Addr{}, fmt.Errorf("%q is an IPv4-mapped IPv6 address; write it as %s", s, a.Unmap())
	}
	return a, nil
}

// parseVIP parses "ADDR/LEN" or "ADDR" (meaning /32 or /128). The address
// keeps its host bits: 203.0.113.10/24 is the address 203.0.113.10 with a
// /24 prefix, as in `ip address add`.
func parseVIP(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := parseIP(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address with a prefix length such as 203.0.113.10/24 (%w)", s, err)
	}
	if _, err := parseIP(p.Addr().String()); err != nil {
		return netip.Prefix{}, err
	}
	return p, nil
}

// parseAddrPort parses "IP:PORT" ("[IPv6]:PORT" for IPv6). When the port is
// optional a bare IP is accepted and gets port 0.
func parseAddrPort(s string, portOptional bool) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err == nil {
		if _, err := parseIP(ap.Addr().String()); err != nil {
			return netip.AddrPort{}, err
		}
		return ap, nil
	}
	if a, ipErr := parseIP(s); ipErr == nil {
		if portOptional {
			return netip.AddrPortFrom(a, 0), nil
		}
		if a.Is6() {
			return netip.AddrPort{}, fmt.Errorf("%q has no port; an IPv6 address with a port is written in brackets, for example [%s]:80", s, a)
		}
		return netip.AddrPort{}, fmt.Errorf("%q has no port; write ip:port, for example %s:80", s, a)
	}
	return netip.AddrPort{}, fmt.Errorf("%q is not an address and port such as 203.0.113.10:80 or [2001:db8::10]:80 (%w)", s, err)
}

// parseMask parses a persistence netmask: a prefix length ("24", "/24") or,
// for IPv4, a dotted netmask ("255.255.255.0"). It returns the prefix
// length.
func parseMask(s string, family AddressFamily) (int, error) {
	bits := 32
	if family == IPv6 {
		bits = 128
	}
	t := strings.TrimPrefix(s, "/")
	if n, err := strconv.Atoi(t); err == nil {
		if n < 1 || n > bits {
			return 0, fmt.Errorf("prefix length %d is out of range; it must be between 1 and %d for %s", n, bits, family)
		}
		return n, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return 0, fmt.Errorf("%q is neither a prefix length nor an IPv4 netmask such as 255.255.255.0", s)
	}
	if family == IPv6 {
		return 0, fmt.Errorf("%q is an IPv4 netmask; an IPv6 virtual server takes a prefix length (1-128)", s)
	}
	b := a.As4()
	m := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	ones := 0
	for ones < 32 && m&(1<<(31-ones)) != 0 {
		ones++
	}
	if ones == 0 || (ones < 32 && m<<ones != 0) {
		return 0, fmt.Errorf("%q is not a contiguous netmask", s)
	}
	return ones, nil
}

// parseStatusRange parses "200" or "200-299"; codes are 100-599 (RFC 9110
// §15).
func parseStatusRange(s string) (StatusRange, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		hi = lo
	}
	a, errA := strconv.Atoi(strings.TrimSpace(lo))
	b, errB := strconv.Atoi(strings.TrimSpace(hi))
	if errA != nil || errB != nil {
		return StatusRange{}, fmt.Errorf("%q is not a status code or range such as \"200\" or \"200-299\"", s)
	}
	if a < 100 || a > 599 || b < 100 || b > 599 {
		return StatusRange{}, fmt.Errorf("%q is out of range; HTTP status codes are 100-599 (RFC 9110 §15)", s)
	}
	if a > b {
		return StatusRange{}, fmt.Errorf("%q is an empty range; write the lower code first", s)
	}
	return StatusRange{Min: a, Max: b}, nil
}

// checkName validates a block name used in references and logs.
func checkName(s string) error {
	if s == "" {
		return fmt.Errorf("the name is empty")
	}
	if len(s) > 64 {
		return fmt.Errorf("%q is longer than 64 bytes", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '-' && c != '.') {
			return fmt.Errorf("%q is not a valid name; use letters, digits, '_', '-' and '.', starting with a letter or digit", s)
		}
	}
	return nil
}

// checkInterfaceName applies the kernel's rules (dev_valid_name): 1-15
// bytes (IFNAMSIZ-1), not "." or "..", no '/', ':' or white space.
func checkInterfaceName(s string) error {
	if s == "" || len(s) > 15 {
		return fmt.Errorf("%q is not an interface name; Linux interface names are 1 to 15 bytes", s)
	}
	if s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n\r\v\f") {
		return fmt.Errorf("%q is not an interface name; names cannot be \".\" or \"..\" or contain '/', ':' or white space", s)
	}
	return nil
}

// isToken reports whether s is an HTTP token (RFC 9110 §5.6.2), the syntax
// of header field names, methods and cookie names.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
