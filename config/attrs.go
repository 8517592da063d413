package config

import (
	"fmt"
	"math/big"
	"net/netip"
	"reflect"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// This file converts attributes to Go values. Each helper returns a state:
// absent (the attribute is not set, or set to null: the caller applies its
// default), valid, or invalid (a diagnostic has been recorded and the value
// is zero).

type evalState int

const (
	absent evalState = iota
	valid
	invalid
)

// eval evaluates a and converts the result to ty.
func (d *decoder) eval(a *hcl.Attribute, ty cty.Type) (cty.Value, evalState) {
	if a == nil {
		return cty.NilVal, absent
	}
	v, diags := a.Expr.Value(d.ctx)
	d.diags = append(d.diags, diags...)
	if diags.HasErrors() {
		return cty.NilVal, invalid
	}
	if v.IsNull() {
		return cty.NilVal, absent
	}
	if !v.IsWhollyKnown() {
		d.errorf(a.Expr.Range(), "Unknown value", "The value of %q cannot be determined.", a.Name)
		return cty.NilVal, invalid
	}
	if hasHugeNumber(v) {
		// Printing such a number, or converting it to a string, takes
		// minutes: cty writes out every decimal digit.
		d.errorf(a.Expr.Range(), fmt.Sprintf("%s out of range", a.Name), "The value of %s is a number far outside any valid range.", a.Name)
		return cty.NilVal, invalid
	}
	cv, err := convert.Convert(v, ty)
	if err != nil {
		d.errorf(a.Expr.Range(), "Incorrect attribute value type", "Inappropriate value for attribute %q: %s.", a.Name, err)
		return cty.NilVal, invalid
	}
	return cv, valid
}

func (d *decoder) str(a *hcl.Attribute) (string, evalState) {
	v, st := d.eval(a, cty.String)
	if st != valid {
		return "", st
	}
	return v.AsString(), valid
}

// strOr returns the attribute's string, or def when absent or invalid.
func (d *decoder) strOr(a *hcl.Attribute, def string) string {
	if s, st := d.str(a); st == valid {
		return s
	}
	return def
}

// nonEmptyStr is str, with an empty string an error.
func (d *decoder) nonEmptyStr(a *hcl.Attribute) (string, evalState) {
	s, st := d.str(a)
	if st == valid && s == "" {
		d.errorf(a.Expr.Range(), fmt.Sprintf("Invalid %s", a.Name), "%s cannot be empty.", a.Name)
		return "", invalid
	}
	return s, st
}

func (d *decoder) boolean(a *hcl.Attribute, def bool) bool {
	v, st := d.eval(a, cty.Bool)
	if st != valid {
		return def
	}
	return v.True()
}

// integer decodes a whole number between lo and hi. cite, when not empty,
// names the rule behind the range ("RFC 5798 §5.2.3").
func (d *decoder) integer(a *hcl.Attribute, lo, hi int64, cite string) (int64, evalState) {
	v, st := d.eval(a, cty.Number)
	if st != valid {
		return 0, st
	}
	bf := v.AsBigFloat()
	if !bf.IsInt() {
		d.errorf(a.Expr.Range(), fmt.Sprintf("Invalid %s", a.Name), "%s must be a whole number, not %s.", a.Name, bf.Text('g', 10))
		return 0, invalid
	}
	i, acc := bf.Int64()
	if acc != big.Exact || i < lo || i > hi {
		if cite != "" {
			cite = " (" + cite + ")"
		}
		d.errorf(a.Expr.Range(), fmt.Sprintf("%s out of range", a.Name), "%s must be between %d and %d%s, not %s.", a.Name, lo, hi, cite, bf.Text('g', 20))
		return 0, invalid
	}
	return i, valid
}

// intOr decodes an integer in [lo, hi], def when absent; ok is false when
// the value is invalid (then the result is def).
func (d *decoder) intOr(a *hcl.Attribute, lo, hi, def int64, cite string) (int64, bool) {
	i, st := d.integer(a, lo, hi, cite)
	switch st {
	case valid:
		return i, true
	case absent:
		return def, true
	default:
		return def, false
	}
}

func (d *decoder) duration(a *hcl.Attribute) (time.Duration, evalState) {
	s, st := d.str(a)
	if st != valid {
		return 0, st
	}
	v, err := parseDuration(s)
	if err != nil {
		d.errorf(a.Expr.Range(), "Invalid duration", "Invalid value for %s: %s.", a.Name, err)
		return 0, invalid
	}
	return v, valid
}

// durationOr decodes a duration between lo and hi, def when absent.
func (d *decoder) durationOr(a *hcl.Attribute, lo, hi, def time.Duration) (time.Duration, bool) {
	v, st := d.duration(a)
	switch st {
	case absent:
		return def, true
	case invalid:
		return def, false
	}
	if v < lo || v > hi {
		d.errorf(a.Expr.Range(), fmt.Sprintf("%s out of range", a.Name), "%s must be between %s and %s, not %s.", a.Name, lo, hi, v)
		return def, false
	}
	return v, true
}

// sizeOr decodes a byte size (string or number), def when absent.
func (d *decoder) sizeOr(a *hcl.Attribute, def int64) int64 {
	s, st := d.str(a)
	if st != valid {
		return def
	}
	v, err := parseSize(s)
	if err != nil {
		d.errorf(a.Expr.Range(), "Invalid size", "Invalid value for %s: %s.", a.Name, err)
		return def
	}
	return v
}

// enum decodes one of the given values; what names the kind of value in
// messages ("scheduler").
func (d *decoder) enum(a *hcl.Attribute, what string, values []string) (string, evalState) {
	s, st := d.str(a)
	if st != valid {
		return "", st
	}
	for _, v := range values {
		if s == v {
			return s, valid
		}
	}
	d.errorf(a.Expr.Range(), fmt.Sprintf("Invalid %s", a.Name), "%q is not a valid %s; use %s.%s", s, what, quoteList(values), didYouMean(s, values))
	return "", invalid
}

// hasHugeNumber reports whether v holds a number whose binary exponent is
// beyond ±1024 (about 1e±308), or an infinity.
func hasHugeNumber(v cty.Value) bool {
	huge := false
	_ = cty.Walk(v, func(_ cty.Path, ev cty.Value) (bool, error) {
		if ev.Type() == cty.Number && ev.IsKnown() && !ev.IsNull() {
			bf := ev.AsBigFloat()
			if bf.IsInf() || (bf.Sign() != 0 && (bf.MantExp(nil) > 1024 || bf.MantExp(nil) < -1024)) {
				huge = true
			}
		}
		return !huge, nil
	})
	return huge
}

// elemRanges returns the range of each element of a list expression, or the
// whole expression's range for each when it is not a literal list.
func elemRanges(expr hcl.Expression, n int) []hcl.Range {
	out := make([]hcl.Range, n)
	exprs, diags := hcl.ExprList(expr)
	for i := range out {
		if !diags.HasErrors() && len(exprs) == n {
			out[i] = exprs[i].Range()
		} else {
			out[i] = expr.Range()
		}
	}
	return out
}

// strList decodes a list of strings, with each element's range.
func (d *decoder) strList(a *hcl.Attribute) ([]string, []hcl.Range, evalState) {
	v, st := d.eval(a, cty.List(cty.String))
	if st != valid {
		return nil, nil, st
	}
	n := v.LengthInt()
	rngs := elemRanges(a.Expr, n)
	out := make([]string, 0, n)
	for i, ev := range v.AsValueSlice() {
		if ev.IsNull() {
			d.errorf(rngs[i], "Invalid list element", "Element %d of %s is null.", i+1, a.Name)
			return nil, nil, invalid
		}
		out = append(out, ev.AsString())
	}
	return out, rngs, valid
}

// argv decodes a command: a non-empty list whose first element is an
// absolute path. Commands are executed directly, without a shell and
// without a PATH search.
func (d *decoder) argv(a *hcl.Attribute) []string {
	args, rngs, st := d.strList(a)
	if st != valid {
		return nil
	}
	if len(args) == 0 {
		d.errorf(a.Expr.Range(), "Empty command", "%s must list the program and its arguments, such as [\"/usr/local/bin/notify\", \"master\"].", a.Name)
		return nil
	}
	if !strings.HasPrefix(args[0], "/") {
		d.errorf(rngs[0], "Command is not an absolute path", "The program of %s must be an absolute path, not %q: commands run without a shell and without a PATH search.", a.Name, args[0])
		return nil
	}
	return args
}

func (d *decoder) ip(a *hcl.Attribute) (netip.Addr, evalState) {
	s, st := d.str(a)
	if st != valid {
		return netip.Addr{}, st
	}
	ip, err := parseIP(s)
	if err != nil {
		d.errorf(a.Expr.Range(), "Invalid IP address", "Invalid value for %s: %s.", a.Name, err)
		return netip.Addr{}, invalid
	}
	return ip, valid
}

// ipList decodes a list of IP addresses; invalid elements are reported and
// left out.
func (d *decoder) ipList(a *hcl.Attribute) ([]netip.Addr, []hcl.Range, evalState) {
	ss, rngs, st := d.strList(a)
	if st != valid {
		return nil, nil, st
	}
	var out []netip.Addr
	var outR []hcl.Range
	for i, s := range ss {
		ip, err := parseIP(s)
		if err != nil {
			d.errorf(rngs[i], "Invalid IP address", "Invalid element of %s: %s.", a.Name, err)
			st = invalid
			continue
		}
		out = append(out, ip)
		outR = append(outR, rngs[i])
	}
	return out, outR, st
}

func (d *decoder) addrPort(a *hcl.Attribute, portOptional bool) (netip.AddrPort, evalState) {
	s, st := d.str(a)
	if st != valid {
		return netip.AddrPort{}, st
	}
	ap, err := parseAddrPort(s, portOptional)
	if err != nil {
		d.errorf(a.Expr.Range(), "Invalid address", "Invalid value for %s: %s.", a.Name, err)
		return netip.AddrPort{}, invalid
	}
	return ap, valid
}

// strMap decodes a map of strings, with the range of each key.
func (d *decoder) strMap(a *hcl.Attribute) (map[string]string, map[string]hcl.Range, evalState) {
	v, st := d.eval(a, cty.Map(cty.String))
	if st != valid {
		return nil, nil, st
	}
	keyRanges := map[string]hcl.Range{}
	if pairs, diags := hcl.ExprMap(a.Expr); !diags.HasErrors() {
		for _, p := range pairs {
			if k, kd := p.Key.Value(d.ctx); !kd.HasErrors() && k.Type() == cty.String && k.IsKnown() && !k.IsNull() {
				keyRanges[k.AsString()] = p.Key.Range()
			}
		}
	}
	out := map[string]string{}
	for k, ev := range v.AsValueMap() {
		if _, ok := keyRanges[k]; !ok {
			keyRanges[k] = a.Expr.Range()
		}
		if ev.IsNull() {
			d.errorf(keyRanges[k], "Invalid map element", "The value of %q in %s is null.", k, a.Name)
			return nil, nil, invalid
		}
		out[k] = ev.AsString()
	}
	return out, keyRanges, valid
}

// require reports a missing required attribute; it returns whether the
// attribute is present.
func (d *decoder) require(a *hcl.Attribute, name, block string, blockRange hcl.Range) bool {
	if a != nil {
		return true
	}
	d.errorf(blockRange, "Missing required argument", "The argument %q is required in a %s block, but no definition was found.", name, block)
	return false
}

// presentAttributes returns the attributes set in a decoded schema struct,
// with their names, in field order.
func presentAttributes(block any) []*hcl.Attribute {
	v := reflect.ValueOf(block)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	var out []*hcl.Attribute
	for i := 0; i < v.NumField(); i++ {
		if a, ok := v.Field(i).Interface().(*hcl.Attribute); ok && a != nil {
			out = append(out, a)
		}
	}
	return out
}

// checkURLPath validates an absolute URL path such as "/metrics".
func checkURLPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%q must start with '/'", p)
	}
	for _, c := range p {
		if c <= ' ' || c == 0x7f || c == '?' || c == '#' {
			return fmt.Errorf("%q must not contain white space, control characters, '?' or '#'", p)
		}
	}
	return nil
}
