package health

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
)

// Checker runs one probe. Check must honour ctx: return when it is done (the Scheduler gives
// each run a deadline of Spec.Timeout) and make no socket or process outlive the call. It is
// called by one goroutine at a time per check, but a Checker may be shared by several checks,
// so it must be safe for concurrent use.
type Checker interface {
	Check(ctx context.Context) Result
}

// CheckerFunc adapts a function to Checker.
type CheckerFunc func(ctx context.Context) Result

// Check calls f(ctx).
func (f CheckerFunc) Check(ctx context.Context) Result { return f(ctx) }

// Probe is the definition of a check: a plain value (TCP, HTTP, UDP, DNS, Exec, Passive, or a
// test's own) that names its kind and builds its Checker. Its JSON encoding, with the concrete
// type, is the check's definition hash: on Update a check whose ID and hash are unchanged keeps
// its state. Fields that are not part of the definition (hooks such as DialOptions.Do) must be
// tagged `json:"-"`.
type Probe interface {
	// Kind names the probe type: "tcp", "http", "udp", "dns", "exec", "passive".
	Kind() string
	// Build validates the probe and returns its Checker.
	Build() (Checker, error)
}

// definitionHash is the identity of a probe's definition.
func definitionHash(p Probe) (string, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("hash %s probe: %w", p.Kind(), err)
	}
	t := reflect.TypeOf(p)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s.%s\x00", p.Kind(), t.PkgPath(), t.Name())
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil)[:16]), nil
}

// compile compiles an optional pattern ("" means none).
func compile(what, pattern string) (*regexp.Regexp, error) {
	if pattern == "" {
		return nil, nil
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return re, nil
}
