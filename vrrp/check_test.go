package vrrp

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"
)

func v3Config() WireConfig {
	return WireConfig{Version: Version3, VRID: 2, Addrs: append([]netip.Addr(nil), captureIPs...)}
}

func v2Config() WireConfig {
	return WireConfig{Version: Version2, VRID: 51, Addrs: []netip.Addr{netip.MustParseAddr("192.168.124.100")},
		AuthType: AuthSimple, AuthPass: "1111"}
}

func mustAdvert(t *testing.T, c WireConfig, prio uint8) *Packet {
	t.Helper()
	p, err := c.Advert(prio)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func wantDrop(t *testing.T, warn, err error, r DropReason) {
	t.Helper()
	if warn != nil {
		t.Fatalf("unexpected warning %v", warn)
	}
	if !errors.Is(err, &DropError{Reason: r}) {
		t.Fatalf("error = %v, want drop %v", err, r)
	}
}

func TestCheckAcceptsOwnAdvert(t *testing.T) {
	for _, c := range []WireConfig{v3Config(), v2Config()} {
		warn, err := c.Check(mustAdvert(t, c, 100))
		if warn != nil || err != nil {
			t.Errorf("%v: %v, %v", c.Version, warn, err)
		}
	}
}

func TestCheckDrops(t *testing.T) {
	c := v3Config()
	p := mustAdvert(t, c, 100)
	p.Version = Version2
	warn, err := c.Check(p)
	wantDrop(t, warn, err, BadVersion)

	p = mustAdvert(t, c, 100)
	p.VRID = 3
	warn, err = c.Check(p)
	wantDrop(t, warn, err, VRIDMismatch)

	owner := v3Config()
	owner.Owner = true
	warn, err = owner.Check(mustAdvert(t, c, 100))
	wantDrop(t, warn, err, LocalOwner)

	p = mustAdvert(t, c, 100)
	p.AdverInt = 0 // RFC 9568 erratum 8301
	warn, err = c.Check(p)
	wantDrop(t, warn, err, BadAdvertInterval)
}

func TestCheckV2AuthAndInterval(t *testing.T) {
	c := v2Config()
	for _, tc := range []struct {
		name   string
		mutate func(p *Packet)
		want   DropReason
	}{
		{"AH is not supported", func(p *Packet) { p.AuthType = AuthAH }, AuthMismatch},
		{"unknown auth type", func(p *Packet) { p.AuthType = 7 }, AuthMismatch},
		{"no auth against PASS", func(p *Packet) { p.AuthType, p.AuthData = AuthNone, [8]byte{} }, AuthMismatch},
		{"wrong password", func(p *Packet) { p.AuthData[0] = '2' }, AuthMismatch},
		{"password not zero padded", func(p *Packet) { p.AuthData[7] = 'x' }, AuthMismatch},
		{"interval mismatch", func(p *Packet) { p.AdverInt = 2 }, BadAdvertInterval},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustAdvert(t, c, 100)
			tc.mutate(p)
			warn, err := c.Check(p)
			wantDrop(t, warn, err, tc.want)
		})
	}

	// AuthNone ignores the Authentication Data (RFC 3768 §5.3.10).
	none := v2Config()
	none.AuthType, none.AuthPass = AuthNone, ""
	p := mustAdvert(t, none, 100)
	p.AuthData = [8]byte{1, 2, 3}
	if warn, err := none.Check(p); warn != nil || err != nil {
		t.Fatalf("AuthNone with junk data: %v, %v", warn, err)
	}
}

func TestCheckAddrListPolicies(t *testing.T) {
	other := netip.MustParseAddr("192.0.2.99")
	for _, tc := range []struct {
		name     string
		version  Version
		policy   AddrListPolicy
		priority uint8
		addrs    func(configured []netip.Addr) []netip.Addr
		want     string // "ok", "warn", "drop"
	}{
		{"v3 reordered", Version3, AddrListRFC, 100, func(c []netip.Addr) []netip.Addr { return []netip.Addr{c[2], c[0], c[1]} }, "ok"},
		{"v3 rfc count", Version3, AddrListRFC, 100, func(c []netip.Addr) []netip.Addr { return c[:2] }, "warn"},
		{"v3 rfc list", Version3, AddrListRFC, 100, func(c []netip.Addr) []netip.Addr { return []netip.Addr{c[0], c[1], other} }, "warn"},
		{"v3 strict", Version3, AddrListStrict, 100, func(c []netip.Addr) []netip.Addr { return c[:2] }, "drop"},
		{"v3 strict owner sender", Version3, AddrListStrict, 255, func(c []netip.Addr) []netip.Addr { return c[:2] }, "drop"},
		{"v3 ignore", Version3, AddrListIgnore, 100, func(c []netip.Addr) []netip.Addr { return nil }, "ok"},
		{"v2 rfc non-owner sender", Version2, AddrListRFC, 100, func(c []netip.Addr) []netip.Addr { return []netip.Addr{other} }, "drop"},
		{"v2 rfc owner sender", Version2, AddrListRFC, 255, func(c []netip.Addr) []netip.Addr { return []netip.Addr{other} }, "warn"},
		{"v2 rfc resigning sender", Version2, AddrListRFC, 0, func(c []netip.Addr) []netip.Addr { return nil }, "drop"},
		{"v2 ignore", Version2, AddrListIgnore, 100, func(c []netip.Addr) []netip.Addr { return []netip.Addr{other} }, "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := v3Config()
			if tc.version == Version2 {
				c = v2Config()
			}
			c.AddrPolicy = tc.policy
			p := mustAdvert(t, c, tc.priority)
			p.Addrs = tc.addrs(c.Addrs)
			warn, err := c.Check(p)
			switch tc.want {
			case "ok":
				if warn != nil || err != nil {
					t.Fatalf("want ok, got %v, %v", warn, err)
				}
			case "warn":
				if err != nil || !errors.Is(warn, &DropError{Reason: AddrListMismatch}) {
					t.Fatalf("want warning, got %v, %v", warn, err)
				}
			case "drop":
				wantDrop(t, warn, err, AddrListMismatch)
			}
		})
	}
}

func TestWireConfigValidate(t *testing.T) {
	v6 := netip.MustParseAddr("2001:db8::1")
	for _, tc := range []struct {
		name   string
		mutate func(c *WireConfig)
	}{
		{"version", func(c *WireConfig) { c.Version = 4 }},
		{"vrid 0", func(c *WireConfig) { c.VRID = 0 }},
		{"invalid addr", func(c *WireConfig) { c.Addrs = []netip.Addr{{}} }},
		{"mixed families", func(c *WireConfig) { c.Addrs = append(c.Addrs, v6) }},
		{"zone", func(c *WireConfig) { c.Addrs = []netip.Addr{netip.MustParseAddr("fe80::1%eth0")} }},
		{"v3 interval 5ms", func(c *WireConfig) { c.AdvertInterval = 5 * time.Millisecond }},
		{"v3 interval 41s", func(c *WireConfig) { c.AdvertInterval = 41 * time.Second }},
		{"v3 auth", func(c *WireConfig) { c.AuthType, c.AuthPass = AuthSimple, "x" }},
		{"password without auth", func(c *WireConfig) { c.AuthPass = "x" }},
		{"AH", func(c *WireConfig) { c.AuthType = AuthAH }},
		{"policy", func(c *WireConfig) { c.AddrPolicy = 9 }},
		{"checksum mode", func(c *WireConfig) { c.Checksum = 9 }},
		{"message-only on v6", func(c *WireConfig) { c.Addrs = []netip.Addr{v6}; c.Checksum = ChecksumMessageOnly }},
		{"too many", func(c *WireConfig) { c.Addrs = make([]netip.Addr, 256) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := v3Config()
			tc.mutate(&c)
			if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate = %v", err)
			}
			if _, err := c.Advert(100); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Advert = %v", err)
			}
		})
	}
	for _, tc := range []struct {
		name   string
		mutate func(c *WireConfig)
	}{
		{"v2 interval 1.5s", func(c *WireConfig) { c.AdvertInterval = 1500 * time.Millisecond }},
		{"v2 ipv6", func(c *WireConfig) { c.Addrs = []netip.Addr{v6} }},
		{"v2 long password", func(c *WireConfig) { c.AuthPass = "123456789" }},
		{"v2 empty password", func(c *WireConfig) { c.AuthPass = "" }},
		{"v2 message-only", func(c *WireConfig) { c.Checksum = ChecksumMessageOnly }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := v2Config()
			tc.mutate(&c)
			if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate = %v", err)
			}
		})
	}
	ok := v3Config()
	ok.AdvertInterval, ok.Checksum = 40950*time.Millisecond, ChecksumMessageOnly
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestWireConfigAdvertRoundTrip(t *testing.T) {
	c := v3Config()
	c.AdvertInterval = 250 * time.Millisecond
	c.Checksum = ChecksumMessageOnly
	p := mustAdvert(t, c, 200)
	if p.AdverInt != 25 || p.Interval() != c.AdvertInterval {
		t.Fatalf("AdverInt = %d", p.AdverInt)
	}
	b, err := p.Marshal(kaSrc, mcast4)
	if err != nil {
		t.Fatal(err)
	}
	q, err := Parse(b, kaSrc, mcast4, ParseOptions{AcceptMessageOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if warn, err := c.Check(q); warn != nil || err != nil {
		t.Fatalf("Check = %v, %v", warn, err)
	}
	if a := q.Advert(kaSrc); a.Priority != 200 || a.Interval != 250*time.Millisecond {
		t.Fatalf("Advert = %+v", a)
	}
}

func TestStats(t *testing.T) {
	var s Stats
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 1000; j++ {
				s.Received()
				if !s.Count(CheckTTL(64, false)) {
					t.Error("Count did not recognise a DropError")
				}
				s.Count(nil)
				s.Accepted()
				s.Sent()
			}
		}()
	}
	wg.Wait()
	s.Drop(0)
	s.Drop(200)
	snap := s.Snapshot()
	if snap.Received != 8000 || snap.Accepted != 8000 || snap.Sent != 8000 {
		t.Fatalf("snapshot %+v", snap)
	}
	if len(snap.Drops) != 1 || snap.Drops[BadTTL] != 8000 || s.Drops(BadTTL) != 8000 || s.Drops(200) != 0 {
		t.Fatalf("drops %+v", snap.Drops)
	}
	// A warning from Check is counted too, like keepalived's addr_list_err.
	c := v3Config()
	p := mustAdvert(t, c, 100)
	p.Addrs = p.Addrs[:1]
	warn, _ := c.Check(p)
	s.Count(warn)
	if s.Drops(AddrListMismatch) != 1 {
		t.Fatal("warning not counted")
	}
}
