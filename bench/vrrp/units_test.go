package vrrpbench

// Unit tests of the benchmark's arithmetic and parsing: no root, no network, milliseconds. They
// run in every `go test ./...`, unlike TestVRRPFailover.

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/bpf"
)

func TestBounds(t *testing.T) {
	if skewTime != 60937500*time.Nanosecond || masterDownInterval != 360937500*time.Nanosecond {
		t.Fatalf("Skew_Time %v, Master_Down_Interval %v; want 60.9375ms and 360.9375ms (RFC 5798 §6.1, priority 100, 100ms)", skewTime, masterDownInterval)
	}
}

func TestSummarise(t *testing.T) {
	var ds []time.Duration
	for i := 20; i >= 1; i-- { // 1ms..20ms, unsorted
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	s := summarise(ds)
	want := stats{n: 20, min: time.Millisecond, median: 10500 * time.Microsecond, p95: 19 * time.Millisecond, max: 20 * time.Millisecond}
	if s != want {
		t.Fatalf("summarise = %+v, want %+v", s, want)
	}
	if ds[0] != 20*time.Millisecond {
		t.Fatal("summarise sorted its argument")
	}
	if s := summarise([]time.Duration{3, 1, 2}); s.median != 2 || s.p95 != 3 {
		t.Fatalf("odd n: %+v", s)
	}
	if s := summarise(nil); s.n != 0 {
		t.Fatalf("empty: %+v", s)
	}
}

func TestHandoverGap(t *testing.T) {
	base := time.Unix(1000, 0)
	at := func(ms float64) time.Time { return base.Add(time.Duration(ms * float64(time.Millisecond))) }
	answers := []answer{
		{seq: 1, from: 1, at: at(0)},
		{seq: 2, from: 1, at: at(2)},
		{seq: 3, from: 1, at: at(4)}, // the event happens at 3: an in-flight answer still counts
		{seq: 40, from: 2, at: at(78)},
		{seq: 41, from: 2, at: at(80)},
		{seq: 90, from: 1, at: at(180)},
	}
	gap, last, first, ok := handoverGap(answers, at(3), 2)
	if !ok || gap != 74*time.Millisecond || last.seq != 3 || first.seq != 40 {
		t.Fatalf("handover to lb2: %v %v %+v %+v", gap, ok, last, first)
	}
	gap, _, first, ok = handoverGap(answers, first.at, 1)
	if !ok || gap != 100*time.Millisecond || first.seq != 90 {
		t.Fatalf("back to lb1: %v %v %+v", gap, ok, first)
	}
	if _, _, _, ok := handoverGap(answers, at(200), 2); ok {
		t.Fatal("found a handover after the last answer")
	}
	if _, _, _, ok := handoverGap(answers[3:], at(3), 2); ok {
		t.Fatal("found a handover without an answer before it")
	}
}

func TestFindHandover(t *testing.T) {
	base := time.Unix(1000, 0)
	at := func(ms float64) time.Time { return base.Add(time.Duration(ms * float64(time.Millisecond))) }
	mac1 := [6]byte{2, 0, 0, 0, 0, 1}
	mac2 := [6]byte{2, 0, 0, 0, 0, 2}
	frames := []frame{
		{at: at(0), kind: frameAdvert, srcMAC: mac1, src: lbIPs[0], prio: 200},
		{at: at(10), kind: frameAdvert, srcMAC: mac1, src: lbIPs[0], prio: 0}, // the drill's priority 0
		{at: at(70), kind: frameARP, srcMAC: mac2, src: vip, garp: true},      // GARP before the advert
		{at: at(71), kind: frameAdvert, srcMAC: mac2, src: lbIPs[1], prio: 100},
		{at: at(72), kind: frameARP, srcMAC: mac2, src: vip, garp: true},
	}
	w := findHandover(frames, at(5), lbIPs[0], lbIPs[1], vip, net.HardwareAddr(mac2[:]))
	gap, ok := w.advertGap()
	if !ok || gap != 61*time.Millisecond || w.lastOldPrio != 0 {
		t.Fatalf("advert gap %v %v (last old priority %d)", gap, ok, w.lastOldPrio)
	}
	if g, ok := w.advertToGARP(); !ok || g != -time.Millisecond {
		t.Fatalf("advert -> GARP %v %v", g, ok)
	}
	if w := findHandover(frames[:2], at(5), lbIPs[0], lbIPs[1], vip, net.HardwareAddr(mac2[:])); !w.firstNew.IsZero() {
		t.Fatal("a new master without its advert")
	}
}

// ethernet builds a frame: broadcast destination, src, ethertype, payload.
func ethernet(src [6]byte, etherType uint16, payload []byte) []byte {
	b := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	b = append(b, src[:]...)
	b = binary.BigEndian.AppendUint16(b, etherType)
	return append(b, payload...)
}

func arpPayload(op uint16, sha [6]byte, spa, tpa netip.Addr) []byte {
	b := []byte{0, 1, 8, 0, 6, 4}
	b = binary.BigEndian.AppendUint16(b, op)
	b = append(b, sha[:]...)
	b = append(b, spa.AsSlice()...)
	b = append(b, make([]byte, 6)...)
	return append(b, tpa.AsSlice()...)
}

func ipv4Payload(proto byte, src netip.Addr, body []byte) []byte {
	h := make([]byte, 20)
	h[0], h[8], h[9] = 0x45, 255, proto
	copy(h[12:16], src.AsSlice())
	copy(h[16:20], []byte{224, 0, 0, 18})
	return append(h, body...)
}

func TestParseFrameAndFilter(t *testing.T) {
	mac := [6]byte{2, 0, 0, 0, 0, 2}
	advert := ethernet(mac, 0x0800, ipv4Payload(protoVRRP, lbIPs[1], []byte{0x31, vrid, 100, 1, 0, 10, 0, 0, 192, 0, 2, 50}))
	garp := ethernet(mac, 0x0806, arpPayload(1, mac, vip, vip))
	reply := ethernet(mac, 0x0806, arpPayload(2, mac, vip, netip.MustParseAddr("192.0.2.100")))
	udp := ethernet(mac, 0x0800, ipv4Payload(17, lbIPs[1], make([]byte, 16)))
	ipv6 := ethernet(mac, 0x86dd, make([]byte, 60))

	f, ok := parseFrame(advert)
	if !ok || f.kind != frameAdvert || f.src != lbIPs[1] || f.prio != 100 || f.srcMAC != mac {
		t.Fatalf("advert: %+v %v", f, ok)
	}
	f, ok = parseFrame(garp)
	if !ok || f.kind != frameARP || !f.garp || f.src != vip || f.arpOp != 1 {
		t.Fatalf("GARP: %+v %v", f, ok)
	}
	f, ok = parseFrame(reply)
	if !ok || f.garp || f.arpOp != 2 {
		t.Fatalf("ARP reply: %+v %v", f, ok)
	}
	if _, ok := parseFrame(udp); ok {
		t.Fatal("parsed UDP as a frame of interest")
	}

	// The socket filter keeps the adverts and ARP and nothing else.
	filter, err := captureFilter()
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]bpf.RawInstruction, len(filter))
	for i, f := range filter {
		raw[i] = bpf.RawInstruction{Op: f.Code, Jt: f.Jt, Jf: f.Jf, K: f.K}
	}
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("filter does not disassemble")
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		frame []byte
		keep  bool
	}{"advert": {advert, true}, "GARP": {garp, true}, "ARP reply": {reply, true}, "UDP": {udp, false}, "IPv6": {ipv6, false}} {
		n, err := vm.Run(c.frame)
		if err != nil || (n > 0) != c.keep {
			t.Errorf("filter on %s: %d %v, want keep=%v", name, n, err, c.keep)
		}
	}
}
