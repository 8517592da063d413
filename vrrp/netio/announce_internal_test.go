package netio

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

var testMAC = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}

func TestGARPFrames(t *testing.T) {
	vip := netip.MustParseAddr("192.0.2.50")
	frames, err := announceFrames(testMAC, vip, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != 2 {
		t.Fatalf("%d frames, want a request and a reply", len(frames))
	}
	for i, want := range []struct {
		op  arp.Operation
		tha net.HardwareAddr
	}{
		{arp.OperationRequest, net.HardwareAddr{0, 0, 0, 0, 0, 0}},
		{arp.OperationReply, testMAC},
	} {
		fr := frames[i]
		var f ethernet.Frame
		if err := f.UnmarshalBinary(fr.data); err != nil {
			t.Fatal(err)
		}
		if len(fr.data) != 60 {
			t.Errorf("frame %d is %d bytes, want 60 (padded to the Ethernet minimum)", i, len(fr.data))
		}
		if !bytes.Equal(fr.dst, ethernet.Broadcast) || !bytes.Equal(f.Destination, ethernet.Broadcast) || !bytes.Equal(f.Source, testMAC) || f.EtherType != ethernet.EtherTypeARP {
			t.Errorf("frame %d: %s -> %s type %v (socket dst %s)", i, f.Source, f.Destination, f.EtherType, fr.dst)
		}
		var p arp.Packet
		if err := p.UnmarshalBinary(f.Payload); err != nil {
			t.Fatal(err)
		}
		if p.Operation != want.op || !bytes.Equal(p.SenderHardwareAddr, testMAC) || p.SenderIP != vip || p.TargetIP != vip || !bytes.Equal(p.TargetHardwareAddr, want.tha) {
			t.Errorf("frame %d: %+v, want op %v sender %s/%s target %s/%s", i, p, want.op, testMAC, vip, want.tha, vip)
		}
	}
}

func TestNAFrame(t *testing.T) {
	vip := netip.MustParseAddr("2001:db8::50")
	for _, router := range []bool{false, true} {
		frames, err := announceFrames(testMAC, vip, router)
		if err != nil {
			t.Fatal(err)
		}
		if len(frames) != 1 {
			t.Fatalf("%d frames, want one NA", len(frames))
		}
		var f ethernet.Frame
		if err := f.UnmarshalBinary(frames[0].data); err != nil {
			t.Fatal(err)
		}
		allNodesEth := net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
		if !bytes.Equal(f.Destination, allNodesEth) || !bytes.Equal(frames[0].dst, allNodesEth) || !bytes.Equal(f.Source, testMAC) || f.EtherType != ethernet.EtherTypeIPv6 {
			t.Errorf("Ethernet %s -> %s type %v", f.Source, f.Destination, f.EtherType)
		}
		ip := f.Payload
		plen := int(ip[4])<<8 | int(ip[5])
		if ip[0]>>4 != 6 || ip[6] != 58 || ip[7] != 255 || 40+plen != len(ip) {
			t.Fatalf("IPv6 header % x (payload %d of %d)", ip[:8], plen, len(ip)-40)
		}
		src, _ := netip.AddrFromSlice(ip[8:24])
		dst, _ := netip.AddrFromSlice(ip[24:40])
		if src != vip || dst != allNodes() {
			t.Errorf("%s -> %s, want %s -> ff02::1", src, dst, vip)
		}
		icmp := ip[40:]
		// RFC 8200 §8.1 pseudo-header sum, by hand.
		var acc uint32
		add := func(b []byte) {
			for i := 0; i+1 < len(b); i += 2 {
				acc += uint32(b[i])<<8 | uint32(b[i+1])
			}
			if len(b)%2 == 1 {
				acc += uint32(b[len(b)-1]) << 8
			}
		}
		add(ip[8:40])
		add([]byte{0, 0, byte(len(icmp) >> 8), byte(len(icmp)), 0, 0, 0, 58})
		add(icmp)
		for acc > 0xffff {
			acc = acc&0xffff + acc>>16
		}
		if acc != 0xffff {
			t.Errorf("ICMPv6 checksum does not verify: sum %#x", acc)
		}
		m, err := ndp.ParseMessage(icmp)
		if err != nil {
			t.Fatal(err)
		}
		na, ok := m.(*ndp.NeighborAdvertisement)
		if !ok {
			t.Fatalf("parsed %T, want a NeighborAdvertisement", m)
		}
		if na.Router != router || na.Solicited || !na.Override || na.TargetAddress != vip {
			t.Errorf("NA %+v, want R=%v S=false O=true target %s", na, router, vip)
		}
		if len(na.Options) != 1 {
			t.Fatalf("options %v, want one Target Link-Layer Address", na.Options)
		}
		if o, ok := na.Options[0].(*ndp.LinkLayerAddress); !ok || o.Direction != ndp.Target || !bytes.Equal(o.Addr, testMAC) {
			t.Errorf("option %+v, want Target Link-Layer Address %s", na.Options[0], testMAC)
		}
	}
}

func TestAnnounceFramesInvalid(t *testing.T) {
	if _, err := announceFrames(testMAC, netip.Addr{}, false); err == nil {
		t.Error("no error for the zero address")
	}
}
