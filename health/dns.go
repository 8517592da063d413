package health

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// DNS checks a DNS server: it asks for Name and Type over UDP and requires a NOERROR answer with
// at least one record of that type and, if Expect is set, one whose value is in Expect. A
// truncated answer is asked again over TCP when TCPFallback is set.
type DNS struct {
	// Addr is the server checked; port 0 means 53.
	Addr netip.AddrPort
	Dial DialOptions
	// Name is the name asked for ("www.example.org"; a trailing dot is optional).
	Name string
	// Type is the record type: A (the default), AAAA, CNAME, NS, PTR, MX, TXT, SRV or SOA.
	Type string
	// Expect, if set, lists acceptable values: addresses for A and AAAA, names for CNAME, NS,
	// PTR, MX (the exchange) and SRV (the target), the joined strings for TXT. SOA takes none.
	Expect []string
	// Recursion sets the RD bit (ask a resolver rather than an authoritative server).
	Recursion bool
	// TCPFallback asks again over TCP when the UDP answer is truncated (TC bit).
	TCPFallback bool
}

// Kind returns "dns".
func (DNS) Kind() string { return "dns" }

// dnsType maps a record type's name to its code.
func dnsType(name string) (dnsmessage.Type, bool) {
	switch strings.ToUpper(name) {
	case "", "A":
		return dnsmessage.TypeA, true
	case "AAAA":
		return dnsmessage.TypeAAAA, true
	case "CNAME":
		return dnsmessage.TypeCNAME, true
	case "NS":
		return dnsmessage.TypeNS, true
	case "PTR":
		return dnsmessage.TypePTR, true
	case "MX":
		return dnsmessage.TypeMX, true
	case "TXT":
		return dnsmessage.TypeTXT, true
	case "SRV":
		return dnsmessage.TypeSRV, true
	case "SOA":
		return dnsmessage.TypeSOA, true
	}
	return 0, false
}

// Build validates the probe.
func (d DNS) Build() (Checker, error) {
	addr := d.Addr
	if addr.Port() == 0 {
		addr = netip.AddrPortFrom(addr.Addr(), 53)
	}
	target, err := d.Dial.target(addr)
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	qtype, ok := dnsType(d.Type)
	if !ok {
		return nil, fmt.Errorf("dns: unsupported record type %q", d.Type)
	}
	fqdn := d.Name
	if !strings.HasSuffix(fqdn, ".") {
		fqdn += "."
	}
	name, err := dnsmessage.NewName(fqdn)
	if d.Name == "" {
		return nil, errors.New("dns: empty Name")
	}
	if err != nil {
		return nil, fmt.Errorf("dns: bad name %q: %w", d.Name, err)
	}
	c := &dnsChecker{target: target, dial: d.Dial, qtype: qtype, recursion: d.Recursion, tcpFallback: d.TCPFallback,
		question: dnsmessage.Question{Name: name, Type: qtype, Class: dnsmessage.ClassINET}}
	if _, err := (&dnsmessage.Message{Questions: []dnsmessage.Question{c.question}}).Pack(); err != nil {
		return nil, fmt.Errorf("dns: bad name %q: %w", d.Name, err)
	}
	for _, v := range d.Expect {
		cv, err := canonicalValue(qtype, v)
		if err != nil {
			return nil, fmt.Errorf("dns: expect %q: %w", v, err)
		}
		c.expect = append(c.expect, cv)
	}
	return c, nil
}

// canonicalValue puts an expected value in the form rdataValue produces.
func canonicalValue(t dnsmessage.Type, v string) (string, error) {
	switch t {
	case dnsmessage.TypeA, dnsmessage.TypeAAAA:
		a, err := netip.ParseAddr(v)
		if err != nil {
			return "", err
		}
		if a.Is4() != (t == dnsmessage.TypeA) {
			return "", fmt.Errorf("not an address for %s", t)
		}
		return a.String(), nil
	case dnsmessage.TypeCNAME, dnsmessage.TypeNS, dnsmessage.TypePTR, dnsmessage.TypeMX, dnsmessage.TypeSRV:
		return canonicalName(v), nil
	case dnsmessage.TypeTXT:
		return v, nil
	default:
		return "", fmt.Errorf("values of %s cannot be matched", t)
	}
}

func canonicalName(s string) string {
	s = strings.ToLower(s)
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

// rdataValue is the value of an answer record that Expect is matched against.
func rdataValue(b dnsmessage.ResourceBody) string {
	switch r := b.(type) {
	case *dnsmessage.AResource:
		return netip.AddrFrom4(r.A).String()
	case *dnsmessage.AAAAResource:
		return netip.AddrFrom16(r.AAAA).String()
	case *dnsmessage.CNAMEResource:
		return canonicalName(r.CNAME.String())
	case *dnsmessage.NSResource:
		return canonicalName(r.NS.String())
	case *dnsmessage.PTRResource:
		return canonicalName(r.PTR.String())
	case *dnsmessage.MXResource:
		return canonicalName(r.MX.String())
	case *dnsmessage.SRVResource:
		return canonicalName(r.Target.String())
	case *dnsmessage.TXTResource:
		return strings.Join(r.TXT, "")
	case *dnsmessage.SOAResource:
		return canonicalName(r.NS.String())
	default:
		return fmt.Sprint(b)
	}
}

type dnsChecker struct {
	target      netip.AddrPort
	dial        DialOptions
	qtype       dnsmessage.Type
	question    dnsmessage.Question
	recursion   bool
	tcpFallback bool
	expect      []string
}

// errMalformed marks an answer that cannot be parsed.
var errMalformed = errors.New("malformed DNS message")

func (c *dnsChecker) Check(ctx context.Context) Result {
	start := time.Now()
	id := uint16(rand.Uint32())
	query, err := (&dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: c.recursion},
		Questions: []dnsmessage.Question{c.question},
	}).Pack()
	if err != nil {
		return Result{Outcome: OutcomeError, Reason: ReasonLocal, Detail: err.Error(), Err: err}
	}
	resp, err := c.exchangeUDP(ctx, id, query)
	if err == nil && resp.Truncated && c.tcpFallback {
		resp, err = c.exchangeTCP(ctx, id, query)
	}
	if err != nil {
		r := failure(ctx, start, err)
		switch {
		case errors.Is(err, errMalformed):
			r.Reason = ReasonProtocol
		case r.Reason == ReasonRefused: // on UDP, ECONNREFUSED is an ICMP port unreachable
			r.Reason = ReasonICMPUnreachable
		}
		return r
	}
	return c.judge(start, resp)
}

func (c *dnsChecker) judge(start time.Time, resp *dnsmessage.Message) Result {
	if resp.RCode != dnsmessage.RCodeSuccess {
		return unhealthy(start, ReasonBadRcode, fmt.Sprintf("%s %s: %s", c.question.Name, c.qtype, rcodeName(resp.RCode)))
	}
	var values []string
	for _, a := range resp.Answers {
		if a.Header.Type == c.qtype && a.Header.Class == dnsmessage.ClassINET {
			values = append(values, rdataValue(a.Body))
		}
	}
	if len(values) == 0 {
		detail := fmt.Sprintf("%s %s: no %s record in the answer", c.question.Name, c.qtype, c.qtype)
		if resp.Truncated {
			detail += " (truncated; TCP fallback is off)"
		}
		return unhealthy(start, ReasonNoAnswer, detail)
	}
	if len(c.expect) == 0 {
		return healthy(start, fmt.Sprintf("%s %s: %s", c.question.Name, c.qtype, strings.Join(values, " ")))
	}
	for _, v := range values {
		if slices.Contains(c.expect, v) {
			return healthy(start, fmt.Sprintf("%s %s: %s", c.question.Name, c.qtype, v))
		}
	}
	return unhealthy(start, ReasonWrongAnswer, fmt.Sprintf("%s %s: got %s, want one of %s",
		c.question.Name, c.qtype, strings.Join(values, " "), strings.Join(c.expect, " ")))
}

func rcodeName(r dnsmessage.RCode) string {
	switch r {
	case dnsmessage.RCodeFormatError:
		return "FORMERR"
	case dnsmessage.RCodeServerFailure:
		return "SERVFAIL"
	case dnsmessage.RCodeNameError:
		return "NXDOMAIN"
	case dnsmessage.RCodeNotImplemented:
		return "NOTIMP"
	case dnsmessage.RCodeRefused:
		return "REFUSED"
	}
	return fmt.Sprintf("RCODE%d", r)
}

// answers reports whether m answers our query.
func (c *dnsChecker) answers(m *dnsmessage.Message, id uint16) bool {
	if !m.Response || m.ID != id || len(m.Questions) != 1 {
		return false
	}
	q := m.Questions[0]
	return q.Type == c.question.Type && q.Class == c.question.Class &&
		strings.EqualFold(q.Name.String(), c.question.Name.String())
}

func (c *dnsChecker) exchangeUDP(ctx context.Context, id uint16, query []byte) (*dnsmessage.Message, error) {
	conn, err := c.dial.dial(ctx, "udp", c.target)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := deadlineFrom(ctx, conn)
	defer stop()
	if _, err := conn.Write(query); err != nil {
		return nil, fmt.Errorf("send query: %w", err)
	}
	buf := make([]byte, 65535)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return nil, fmt.Errorf("read answer: %w", err)
		}
		var m dnsmessage.Message
		if err := m.Unpack(buf[:n]); err != nil {
			// A stray or spoofed datagram: keep waiting for ours until the deadline.
			continue
		}
		if c.answers(&m, id) {
			return &m, nil
		}
	}
}

func (c *dnsChecker) exchangeTCP(ctx context.Context, id uint16, query []byte) (*dnsmessage.Message, error) {
	conn, err := c.dial.dial(ctx, "tcp", c.target)
	if err != nil {
		return nil, fmt.Errorf("tcp fallback: %w", err)
	}
	defer conn.Close()
	stop := deadlineFrom(ctx, conn)
	defer stop()
	msg := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(query)), uint16(len(query)))
	if _, err := conn.Write(append(msg, query...)); err != nil {
		return nil, fmt.Errorf("tcp fallback: send query: %w", err)
	}
	var l [2]byte
	if _, err := io.ReadFull(conn, l[:]); err != nil {
		return nil, fmt.Errorf("tcp fallback: read answer: %w", err)
	}
	buf := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(conn, buf); err != nil {
		return nil, fmt.Errorf("tcp fallback: read answer: %w", err)
	}
	var m dnsmessage.Message
	if err := m.Unpack(buf); err != nil {
		return nil, fmt.Errorf("tcp fallback: %w: %v", errMalformed, err)
	}
	if !c.answers(&m, id) {
		return nil, fmt.Errorf("tcp fallback: %w: answer does not match the query", errMalformed)
	}
	return &m, nil
}
