package config

import (
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Health check defaults.
const (
	defaultCheckInterval = 2 * time.Second
	defaultCheckTimeout  = time.Second
	defaultRise          = 2
	defaultFall          = 3
	defaultInitialState  = StateUp
	defaultHTTPPath      = "/"
	defaultHTTPMethod    = "GET"
	defaultDNSQueryType  = "A"
)

// defaultExpectStatus is the status range accepted when expect_status is
// not set: any success or redirect.
func defaultExpectStatus() []StatusRange { return []StatusRange{{Min: 200, Max: 399}} }

// checkTypes returns the health check types valid in a virtual server or,
// with forProxy, in a proxy backend.
func checkTypes(forProxy bool) []CheckType {
	if forProxy {
		return []CheckType{CheckTCP, CheckHTTP, CheckHTTPS, CheckExec}
	}
	return []CheckType{CheckTCP, CheckHTTP, CheckHTTPS, CheckUDP, CheckDNS, CheckExec}
}

func allCheckTypes() []CheckType { return checkTypes(false) }

func dnsQueryTypes() []string {
	return []string{"A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT"}
}

// checkAttrAllowed reports whether the attribute name is valid in a health
// check of type t.
func checkAttrAllowed(t CheckType, name string) bool {
	switch name {
	case "interval", "timeout", "rise", "fall", "initial_state", "check_address", "check_port":
		return true
	case "source_address", "so_mark":
		return t != CheckExec
	case "path", "method", "host", "expect_status", "expect_body":
		return t == CheckHTTP || t == CheckHTTPS
	case "sni", "verify_tls":
		return t == CheckHTTPS
	case "payload", "expect":
		return t == CheckTCP || t == CheckUDP
	case "query_name", "query_type", "expect_answer":
		return t == CheckDNS
	case "command", "user", "dynamic_weight":
		return t == CheckExec
	}
	return false
}

// checkAttrTypes returns the types an attribute is valid for.
func checkAttrTypes(name string) []string {
	var out []string
	for _, t := range allCheckTypes() {
		if checkAttrAllowed(t, name) {
			out = append(out, string(t))
		}
	}
	return out
}

// decodeHealthCheck decodes one health_check block. family is the address
// family of the checked targets ("" when unknown or mixed); where names
// the enclosing block for messages.
func (d *decoder) decodeHealthCheck(b *healthCheckBlock, where string, forProxy bool, family AddressFamily) (HealthCheck, bool) {
	hc := HealthCheck{
		Type:         CheckType(b.Type),
		Source:       b.DefRange,
		Interval:     defaultCheckInterval,
		Timeout:      defaultCheckTimeout,
		Rise:         defaultRise,
		Fall:         defaultFall,
		InitialState: defaultInitialState,
	}
	types := checkTypes(forProxy)
	known := false
	names := make([]string, len(types))
	for i, t := range types {
		names[i] = string(t)
		known = known || t == hc.Type
	}
	if !known {
		d.errorf(b.TypeRange, "Invalid health check type", "%q is not a health check type in %s; use %s.%s", b.Type, where, quoteList(names), didYouMean(b.Type, names))
		return hc, false
	}

	ok := true
	for _, a := range presentAttributes(b) {
		if !checkAttrAllowed(hc.Type, a.Name) {
			d.errorf(a.NameRange, "Argument not valid for this check type",
				"%q applies to %s health checks, not %s.", a.Name, strings.Join(checkAttrTypes(a.Name), ", "), hc.Type)
			ok = false
		}
	}
	if !ok {
		return hc, false
	}

	interval, iok := d.durationOr(b.Interval, 10*time.Millisecond, 24*time.Hour, defaultCheckInterval)
	timeout, tok := d.durationOr(b.Timeout, time.Millisecond, time.Hour, defaultCheckTimeout)
	hc.Interval, hc.Timeout = interval, timeout
	if iok && tok && timeout > interval {
		// A check must finish before the next one starts.
		rng, name := b.DefRange, "timeout"
		if b.Timeout != nil {
			rng = b.Timeout.Expr.Range()
		} else if b.Interval != nil {
			rng, name = b.Interval.Expr.Range(), "interval"
		}
		d.errorf(rng, "Health check timeout exceeds interval",
			"The timeout (%s) must not be longer than the interval (%s), so that checks never overlap; fix the %s.", timeout, interval, name)
	}
	rise, _ := d.intOr(b.Rise, 1, 100, defaultRise, "")
	fall, _ := d.intOr(b.Fall, 1, 100, defaultFall, "")
	hc.Rise, hc.Fall = int(rise), int(fall)
	if v, st := d.enum(b.InitialState, "state", []string{string(StateUp), string(StateDown)}); st == valid {
		hc.InitialState = CheckState(v)
	}

	if a, st := d.ip(b.CheckAddress); st == valid {
		hc.CheckAddress = a
	}
	if p, st := d.integer(b.CheckPort, 1, 65535, ""); st == valid {
		hc.CheckPort = uint16(p)
	}
	if a, st := d.ip(b.SourceAddress); st == valid {
		target := family
		if hc.CheckAddress.IsValid() {
			target = FamilyOf(hc.CheckAddress)
		}
		if target != "" && FamilyOf(a) != target {
			d.errorf(b.SourceAddress.Expr.Range(), "Mixed address families", "source_address %s is %s but the checked address is %s.", a, FamilyOf(a), target)
		} else {
			hc.SourceAddress = a
		}
	}
	if m, st := d.integer(b.SOMark, 0, math.MaxUint32, ""); st == valid {
		hc.SOMark = uint32(m)
	}

	switch hc.Type {
	case CheckHTTP, CheckHTTPS:
		hc.HTTP = d.decodeHTTPCheck(b)
	case CheckTCP, CheckUDP:
		hc.Payload = &PayloadCheck{Send: d.strOr(b.Payload, ""), Expect: d.strOr(b.Expect, "")}
	case CheckDNS:
		hc.DNS = d.decodeDNSCheck(b)
	case CheckExec:
		hc.Exec = &ExecCheck{DynamicWeight: d.boolean(b.DynamicWeight, false)}
		if d.require(b.Command, "command", "exec health_check", b.DefRange) {
			hc.Exec.Command = d.argv(b.Command)
		}
		if u, st := d.nonEmptyStr(b.User); st == valid {
			hc.Exec.User = u
		}
	}
	return hc, true
}

func (d *decoder) decodeHTTPCheck(b *healthCheckBlock) *HTTPCheck {
	h := &HTTPCheck{
		Path:         defaultHTTPPath,
		Method:       defaultHTTPMethod,
		ExpectStatus: defaultExpectStatus(),
		VerifyTLS:    d.boolean(b.VerifyTLS, false),
	}
	if p, st := d.str(b.Path); st == valid {
		if !strings.HasPrefix(p, "/") || strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			d.errorf(b.Path.Expr.Range(), "Invalid path", "The path %q must start with '/' and contain no white space or control characters.", p)
		} else {
			h.Path = p
		}
	}
	if m, st := d.str(b.Method); st == valid {
		if !isToken(m) {
			d.errorf(b.Method.Expr.Range(), "Invalid method", "%q is not an HTTP method (RFC 9110 §9.1).", m)
		} else {
			h.Method = m
		}
	}
	if s, st := d.nonEmptyStr(b.Host); st == valid {
		h.Host = s
	}
	if s, st := d.nonEmptyStr(b.SNI); st == valid {
		h.SNI = s
	}
	if list, rngs, st := d.strList(b.ExpectStatus); st == valid {
		if len(list) == 0 {
			d.errorf(b.ExpectStatus.Expr.Range(), "Empty expect_status", "expect_status must list at least one status code or range.")
		}
		var out []StatusRange
		for i, s := range list {
			r, err := parseStatusRange(s)
			if err != nil {
				d.errorf(rngs[i], "Invalid status code", "%s.", err)
				continue
			}
			out = append(out, r)
		}
		if len(out) > 0 {
			h.ExpectStatus = out
		}
	}
	if s, st := d.str(b.ExpectBody); st == valid {
		re, err := regexp.Compile(s)
		if err != nil {
			d.errorf(b.ExpectBody.Expr.Range(), "Invalid regular expression", "expect_body is not a valid regular expression (RE2 syntax): %s.", fmt.Errorf("compiling %q: %w", s, err))
		} else {
			h.ExpectBody = re
		}
	}
	return h
}

func (d *decoder) decodeDNSCheck(b *healthCheckBlock) *DNSCheck {
	c := &DNSCheck{QueryType: defaultDNSQueryType}
	if d.require(b.QueryName, "query_name", "dns health_check", b.DefRange) {
		if s, st := d.nonEmptyStr(b.QueryName); st == valid {
			if len(s) > 253 || strings.ContainsAny(s, " \t\r\n") {
				d.errorf(b.QueryName.Expr.Range(), "Invalid query_name", "%q is not a domain name.", s)
			} else {
				c.QueryName = s
			}
		}
	}
	if v, st := d.enum(b.QueryType, "DNS query type", dnsQueryTypes()); st == valid {
		c.QueryType = v
	}
	answers, rngs, st := d.strList(b.ExpectAnswer)
	if st != valid {
		return c
	}
	for i, s := range answers {
		if c.QueryType == "A" || c.QueryType == "AAAA" {
			want := IPv4
			if c.QueryType == "AAAA" {
				want = IPv6
			}
			if a, err := parseIP(s); err != nil || FamilyOf(a) != want {
				d.errorf(rngs[i], "Invalid expected answer", "The answer to an %s query is an %s address; %q is not.", c.QueryType, want, s)
				continue
			}
		}
		c.ExpectAnswer = append(c.ExpectAnswer, s)
	}
	return c
}

// decodeHealthChecks decodes a list of health_check blocks.
func (d *decoder) decodeHealthChecks(blocks []healthCheckBlock, where string, forProxy bool, family AddressFamily) []HealthCheck {
	var out []HealthCheck
	for i := range blocks {
		if hc, ok := d.decodeHealthCheck(&blocks[i], where, forProxy, family); ok {
			out = append(out, hc)
		}
	}
	return out
}

// rangeOf returns the value range of a, or fallback when a is nil.
func rangeOf(a *hcl.Attribute, fallback hcl.Range) hcl.Range {
	if a == nil {
		return fallback
	}
	return a.Expr.Range()
}
