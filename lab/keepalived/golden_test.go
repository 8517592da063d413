package keepalived_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lab/keepalived"
	"github.com/fulcrum-lb/fulcrum/lab/netns"
)

// The golden adverts in testdata are real keepalived output, for the vrrp codec's tests:
// NAME.bin is the VRRP payload, NAME.json its IP envelope and the configuration that made it.
// Refresh them with
//
//	FULCRUM_UPDATE_GOLDEN=1 go test ./lab/keepalived -run TestUpdateGolden

// goldenMeta is the JSON sidecar of a golden advert.
type goldenMeta struct {
	Src        string `json:"src"`
	Dst        string `json:"dst"`
	TTL        int    `json:"ttl"`
	TOS        int    `json:"tos"`
	Keepalived string `json:"keepalived"`
	Config     string `json:"config"`
}

type goldenCase struct {
	name    string
	version int
	cfg     keepalived.Config
}

func goldenCases() []goldenCase {
	vips := []keepalived.VIP{
		{Addr: netip.MustParsePrefix("192.0.2.100/24"), Dev: "eth0"},
		{Addr: netip.MustParsePrefix("192.0.2.101/24"), Dev: "eth0"},
	}
	return []goldenCase{{
		name:    "keepalived-v3-adv",
		version: 3,
		cfg: keepalived.Config{RouterID: "lb1", Version: 3, Instances: []keepalived.Instance{{
			Name: vi, Interface: "eth0", State: "MASTER", VRID: 51, Priority: 150,
			AdvertInt: 100 * time.Millisecond, VIPs: vips,
		}}},
	}, {
		name:    "keepalived-v2-pass-adv",
		version: 2,
		cfg: keepalived.Config{RouterID: "lb1", Version: 2, Instances: []keepalived.Instance{{
			Name: vi, Interface: "eth0", State: "MASTER", VRID: 52, Priority: 150,
			AdvertInt: time.Second, AuthPass: "fulcrum1", VIPs: vips,
		}}},
	}}
}

// captureGolden runs the case's keepalived on lb1 (192.0.2.11) and captures one advert from a
// third host on the LAN, checking what every advert must be.
func captureGolden(t *testing.T, c goldenCase) (keepalived.Advert, goldenMeta) {
	t.Helper()
	needKeepalived(t)
	lan := netns.NewLAN(t, netns.Options{})
	lb1 := lan.AddHost("lb1", "192.0.2.11/24")
	sniffer := lan.AddHost("sniffer", "192.0.2.250/24")
	k := keepalived.Start(t, lb1, c.cfg)
	m := k.WaitState(t, vi, keepalived.Master, settle)
	t.Logf("%s: MASTER %v after Start (initial state MASTER)", c.name, m.Time.Sub(k.Started).Round(time.Millisecond))
	a := keepalived.Capture(t, sniffer, false, 5*time.Second)
	t.Logf("%s: %s -> %s ttl %d tos %#x df %v, %d octets: % x", c.name, a.Src, a.Dst, a.TTL, a.TOS, a.DontFragment, len(a.Payload), a.Payload)

	if a.Src != lb1.Addr4() || a.Dst != netip.MustParseAddr("224.0.0.18") || a.TTL != 255 {
		t.Errorf("advert %s -> %s ttl %d, want %s -> 224.0.0.18 ttl 255", a.Src, a.Dst, a.TTL, lb1.Addr4())
	}
	p := a.Payload
	if len(p) < 8 || int(p[0]>>4) != c.version || p[0]&0x0f != 1 || p[1] != byte(c.cfg.Instances[0].VRID) || p[2] != 150 || p[3] != 2 {
		t.Fatalf("not a VRRPv%d advert of VRID %d, priority 150, 2 addresses: % x", c.version, c.cfg.Instances[0].VRID, p)
	}
	// The checksum: v2 over the message alone (RFC 3768 §5.3.8); v3 over IPv4 with the IPv4
	// pseudo-header, keepalived's default since 1.3.6.
	msgOnly := checksum(p, nil) == 0
	pseudo := checksum(p, pseudo4(a.Src, a.Dst, len(p))) == 0
	t.Logf("%s: checksum over the message alone: %v; with the IPv4 pseudo-header: %v", c.name, msgOnly, pseudo)
	if c.version == 2 && !msgOnly || c.version == 3 && !pseudo {
		t.Errorf("VRRPv%d checksum %#04x: message-only %v, pseudo-header %v", c.version, binary.BigEndian.Uint16(p[6:]), msgOnly, pseudo)
	}

	text, err := c.cfg.Render()
	if err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command(lookKeepalived(t), "--version").CombinedOutput()
	version, _, _ := strings.Cut(string(out), "\n")
	return a, goldenMeta{Src: a.Src.String(), Dst: a.Dst.String(), TTL: a.TTL, TOS: a.TOS, Keepalived: version, Config: text}
}

func lookKeepalived(t *testing.T) string {
	for _, p := range []string{"/usr/sbin/keepalived", "/sbin/keepalived"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath("keepalived")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestGoldenAdverts: the keepalived here sends exactly the adverts in testdata.
func TestGoldenAdverts(t *testing.T) {
	for _, c := range goldenCases() {
		t.Run(c.name, func(t *testing.T) {
			wantBin, err := os.ReadFile(filepath.Join("testdata", c.name+".bin"))
			if err != nil {
				t.Fatalf("%v (make it with FULCRUM_UPDATE_GOLDEN=1 go test ./lab/keepalived -run TestUpdateGolden)", err)
			}
			var want goldenMeta
			if err := readJSON(filepath.Join("testdata", c.name+".json"), &want); err != nil {
				t.Fatal(err)
			}
			a, got := captureGolden(t, c)
			if !bytes.Equal(a.Payload, wantBin) {
				t.Errorf("keepalived sent\n% x\nthe golden file has\n% x", a.Payload, wantBin)
			}
			if got != want {
				t.Errorf("advert envelope %+v, golden %+v", got, want)
			}
		})
	}
}

// TestUpdateGolden rewrites testdata from a real keepalived; it runs only with
// FULCRUM_UPDATE_GOLDEN=1.
func TestUpdateGolden(t *testing.T) {
	if os.Getenv("FULCRUM_UPDATE_GOLDEN") != "1" {
		t.Skip("set FULCRUM_UPDATE_GOLDEN=1 to rewrite testdata/keepalived-*.bin and .json")
	}
	for _, c := range goldenCases() {
		t.Run(c.name, func(t *testing.T) {
			a, meta := captureGolden(t, c)
			if err := os.WriteFile(filepath.Join("testdata", c.name+".bin"), a.Payload, 0o644); err != nil {
				t.Fatal(err)
			}
			j, err := json.MarshalIndent(meta, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join("testdata", c.name+".json"), append(j, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote testdata/%s.bin and .json", c.name)
		})
	}
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// TestCaptureIPv6: a VRRPv3 advert over IPv6 goes from the link-local address to ff02::12 with
// hop limit 255 and a checksum over the IPv6 pseudo-header.
func TestCaptureIPv6(t *testing.T) {
	needKeepalived(t)
	lan := netns.NewLAN(t, netns.Options{})
	lb1 := lan.AddHost("lb1", "2001:db8::11/64")
	sniffer := lan.AddHost("sniffer", "2001:db8::250/64")
	k := keepalived.Start(t, lb1, keepalived.Config{Instances: []keepalived.Instance{{
		Name: vi, Interface: "eth0", State: "MASTER", VRID: 61, Priority: 150, AdvertInt: fast,
		VIPs: []keepalived.VIP{{Addr: vipV6, Dev: "eth0"}},
	}}})
	k.WaitState(t, vi, keepalived.Master, settle)
	keepalived.WaitVIP(t, lb1, vipV6.Addr(), true, 2*time.Second)
	a := keepalived.Capture(t, sniffer, true, 5*time.Second)
	t.Logf("IPv6 advert: %s -> %s hop limit %d traffic class %#x: % x", a.Src, a.Dst, a.TTL, a.TOS, a.Payload)
	if !a.Src.IsLinkLocalUnicast() || a.Dst != netip.MustParseAddr("ff02::12") || a.TTL != 255 {
		t.Errorf("advert %s -> %s hop limit %d, want link-local -> ff02::12 hop limit 255", a.Src, a.Dst, a.TTL)
	}
	p := a.Payload
	if len(p) != 8+16 || p[0] != 0x31 || p[1] != 61 || p[2] != 150 || p[3] != 1 || !bytes.Equal(p[8:], vipV6.Addr().AsSlice()) {
		t.Errorf("not a VRRPv3 advert of VRID 61, priority 150, for %s: % x", vipV6.Addr(), p)
	}
	if checksum(p, pseudo6(a.Src, a.Dst, len(p))) != 0 {
		t.Errorf("checksum %#04x does not cover the IPv6 pseudo-header", binary.BigEndian.Uint16(p[6:]))
	}
}

// checksum is the Internet checksum of pseudo then b; 0 means a packet with a correct one.
func checksum(b, pseudo []byte) uint16 {
	var sum uint32
	for _, part := range [][]byte{pseudo, b} {
		for i := 0; i+1 < len(part); i += 2 {
			sum += uint32(part[i])<<8 | uint32(part[i+1])
		}
		if len(part)%2 == 1 {
			sum += uint32(part[len(part)-1]) << 8
		}
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

func pseudo4(src, dst netip.Addr, n int) []byte {
	s, d := src.As4(), dst.As4()
	b := append(s[:], d[:]...)
	return append(b, 0, 112, byte(n>>8), byte(n))
}

func pseudo6(src, dst netip.Addr, n int) []byte {
	s, d := src.As16(), dst.As16()
	b := append(s[:], d[:]...)
	return append(b, byte(n>>24), byte(n>>16), byte(n>>8), byte(n), 0, 0, 0, 112)
}
