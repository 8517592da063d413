package vrrp

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"reflect"
	"testing"
)

// fuzzAddrs picks the source and destination the fuzzed payload is parsed
// with: IPv4 multicast, IPv4 unicast, or IPv6 multicast.
func fuzzAddrs(sel uint8) (src, dst netip.Addr) {
	switch sel % 3 {
	case 0:
		return kaSrc, mcast4
	case 1:
		return kaSrc, kaPeer
	default:
		return v6Src, mcast6
	}
}

// FuzzParse checks that Parse never panics, that whatever it accepts
// marshals back to the same octets, and that parsing that again gives the
// same Packet. Each input is also tried with its checksum patched to the
// standard value, so that the fuzzer reaches past the checksum check.
// Seeds: the goldens below plus testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	for _, s := range []struct {
		hex string
		sel uint8
	}{
		{goldenV2Capture, 0}, {goldenV2Pass, 0}, {goldenV3Capture, 0},
		{goldenV3MessageOnly, 0}, {goldenV3Unicast, 1}, {goldenV3Capture, 1}, {goldenV3IPv6, 2},
	} {
		f.Add(unhex(f, s.hex), s.sel, true)
	}
	f.Add([]byte{}, uint8(0), false)
	f.Add([]byte{0x31, 1, 100, 0, 0, 100, 0, 0}, uint8(2), false)

	f.Fuzz(func(t *testing.T, b []byte, sel uint8, relax bool) {
		src, dst := fuzzAddrs(sel)
		opts := ParseOptions{AcceptMessageOnly: relax, AcceptLegacyUnicast: relax}
		fuzzRoundTrip(t, b, src, dst, opts)
		if len(b) >= headerLen {
			fixed := append([]byte(nil), b...)
			fixed[6], fixed[7] = 0, 0
			binary.BigEndian.PutUint16(fixed[6:], checksum(Version(fixed[0]>>4), ChecksumStandard, src, dst, fixed))
			fuzzRoundTrip(t, fixed, src, dst, opts)
		}
	})
}

func fuzzRoundTrip(t *testing.T, b []byte, src, dst netip.Addr, opts ParseOptions) {
	in := append([]byte(nil), b...)
	p, err := Parse(b, src, dst, opts)
	if !bytes.Equal(in, b) {
		t.Fatalf("Parse modified its input")
	}
	if err != nil {
		if _, ok := ReasonOf(err); !ok {
			t.Fatalf("Parse error %v is not a DropError", err)
		}
		if p != nil {
			t.Fatalf("Parse returned both a packet and %v", err)
		}
		return
	}
	out, err := p.Marshal(src, dst)
	if err != nil {
		t.Fatalf("Marshal(Parse(%x)) = %v", b, err)
	}
	if !bytes.Equal(out, b) {
		// One's complement has two zeros: a received 0xffff verifies where
		// RFC 1071 computes 0x0000. Everything else must be identical.
		c1, c2 := binary.BigEndian.Uint16(b[6:]), binary.BigEndian.Uint16(out[6:])
		if !(c1^c2 == 0xffff && (c1 == 0 || c2 == 0) &&
			bytes.Equal(out[:6], b[:6]) && bytes.Equal(out[8:], b[8:])) {
			t.Fatalf("Marshal(Parse(b)) != b\n b:   %x\n out: %x", b, out)
		}
	}
	q, err := Parse(out, src, dst, opts)
	if err != nil {
		t.Fatalf("Parse(Marshal(Parse(b))) = %v", err)
	}
	p.Checksum = q.Checksum
	if !reflect.DeepEqual(p, q) {
		t.Fatalf("Parse(Marshal(p)) =\n%+v, want\n%+v", q, p)
	}
}
