package health_test

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/fulcrum-lb/fulcrum/health"
)

// answer is the test's DNS zone: www has two A records, big has one that this zone only gives
// over TCP (over UDP it answers with TC set), txt has a TXT record, nodata has no A record,
// anything else is NXDOMAIN.
func answer(query []byte, overTCP bool) []byte {
	var q dnsmessage.Message
	if err := q.Unpack(query); err != nil || len(q.Questions) != 1 {
		return nil
	}
	qq := q.Questions[0]
	resp := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: q.ID, Response: true, Authoritative: true, RecursionDesired: q.RecursionDesired},
		Questions: q.Questions,
	}
	hdr := dnsmessage.ResourceHeader{Name: qq.Name, Class: dnsmessage.ClassINET, TTL: 60}
	a := func(ip string) dnsmessage.Resource {
		h := hdr
		h.Type = dnsmessage.TypeA
		return dnsmessage.Resource{Header: h, Body: &dnsmessage.AResource{A: netip.MustParseAddr(ip).As4()}}
	}
	switch name := strings.ToLower(qq.Name.String()); {
	case name == "www.example.org." && qq.Type == dnsmessage.TypeA:
		resp.Answers = []dnsmessage.Resource{a("192.0.2.80"), a("192.0.2.81")}
	case name == "big.example.org." && qq.Type == dnsmessage.TypeA:
		if !overTCP {
			resp.Truncated = true
		} else {
			resp.Answers = []dnsmessage.Resource{a("192.0.2.90")}
		}
	case name == "txt.example.org." && qq.Type == dnsmessage.TypeTXT:
		h := hdr
		h.Type = dnsmessage.TypeTXT
		resp.Answers = []dnsmessage.Resource{{Header: h, Body: &dnsmessage.TXTResource{TXT: []string{"v=", "ok"}}}}
	case name == "nodata.example.org." || name == "www.example.org.":
		// NOERROR, no record of that type
	default:
		resp.RCode = dnsmessage.RCodeNameError
	}
	b, err := resp.Pack()
	if err != nil {
		return nil
	}
	return b
}

func TestDNSChecker(t *testing.T) {
	l := newLab(t)
	// Over UDP a stray answer (another ID) comes first: the checker must wait for its own.
	serveUDP(t, listenPacket(t, l.backend, "udp", backendIP+":53"), func(q []byte) [][]byte {
		a := answer(q, false)
		if a == nil {
			return nil
		}
		stray := append([]byte(nil), a...)
		binary.BigEndian.PutUint16(stray, binary.BigEndian.Uint16(a)+1)
		return [][]byte{stray, a}
	})
	serveTCP(t, listen(t, l.backend, "tcp", backendIP+":53"), func(c net.Conn) {
		var n [2]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return
		}
		q := make([]byte, binary.BigEndian.Uint16(n[:]))
		if _, err := io.ReadFull(c, q); err != nil {
			return
		}
		a := answer(q, true)
		_, _ = c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(a))), a...))
	})
	serveUDP(t, listenPacket(t, l.backend, "udp", backendIP+":5300"), func([]byte) [][]byte { return nil }) // silent
	server := netip.AddrPortFrom(netip.MustParseAddr(backendIP), 0)                                         // port 53 by default

	cases := []struct {
		name   string
		probe  health.DNS
		out    health.Outcome
		reason health.Reason
	}{
		{"any-answer", health.DNS{Name: "www.example.org"}, health.OutcomeHealthy, health.ReasonNone},
		{"right-answer", health.DNS{Name: "www.example.org.", Type: "A", Expect: []string{"192.0.2.81"}}, health.OutcomeHealthy, health.ReasonNone},
		{"wrong-answer", health.DNS{Name: "www.example.org", Expect: []string{"192.0.2.99"}}, health.OutcomeUnhealthy, health.ReasonWrongAnswer},
		{"nxdomain", health.DNS{Name: "gone.example.org"}, health.OutcomeUnhealthy, health.ReasonBadRcode},
		{"nodata", health.DNS{Name: "nodata.example.org"}, health.OutcomeUnhealthy, health.ReasonNoAnswer},
		{"wrong-type", health.DNS{Name: "www.example.org", Type: "aaaa"}, health.OutcomeUnhealthy, health.ReasonNoAnswer},
		{"txt", health.DNS{Name: "txt.example.org", Type: "TXT", Expect: []string{"v=ok"}}, health.OutcomeHealthy, health.ReasonNone},
		{"truncated-no-fallback", health.DNS{Name: "big.example.org"}, health.OutcomeUnhealthy, health.ReasonNoAnswer},
		{"truncated-tcp-fallback", health.DNS{Name: "big.example.org", TCPFallback: true, Expect: []string{"192.0.2.90"}}, health.OutcomeHealthy, health.ReasonNone},
		{"closed-port", health.DNS{Addr: netip.MustParseAddrPort(backendIP + ":5301"), Name: "www.example.org"}, health.OutcomeUnhealthy, health.ReasonICMPUnreachable},
		{"silent-server", health.DNS{Addr: netip.MustParseAddrPort(backendIP + ":5300"), Name: "www.example.org"}, health.OutcomeUnhealthy, health.ReasonTimeout},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.probe
			if !p.Addr.IsValid() {
				p.Addr = server
			}
			p.Dial = l.dial()
			expect(t, run(t, p, 500*time.Millisecond), c.out, c.reason)
		})
	}
	t.Run("nxdomain-detail", func(t *testing.T) {
		r := run(t, health.DNS{Addr: server, Dial: l.dial(), Name: "gone.example.org"}, time.Second)
		if !strings.Contains(r.Detail, "NXDOMAIN") {
			t.Errorf("detail %q does not say NXDOMAIN", r.Detail)
		}
	})
	t.Run("build-errors", func(t *testing.T) {
		for name, p := range map[string]health.DNS{
			"no name":      {Addr: server},
			"bad type":     {Addr: server, Name: "x.example", Type: "HINFO"},
			"bad expect":   {Addr: server, Name: "x.example", Expect: []string{"not-an-ip"}},
			"v6 for A":     {Addr: server, Name: "x.example", Expect: []string{"2001:db8::1"}},
			"soa expect":   {Addr: server, Name: "x.example", Type: "SOA", Expect: []string{"ns.example"}},
			"long label":   {Addr: server, Name: strings.Repeat("a", 64) + ".example"},
			"no server ip": {Name: "x.example"},
		} {
			if _, err := p.Build(); err == nil {
				t.Errorf("%s: Build accepted %+v", name, p)
			}
		}
	})
}
