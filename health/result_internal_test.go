package health

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
)

func TestClassify(t *testing.T) {
	op := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", err)}
	}
	for _, c := range []struct {
		err     error
		outcome Outcome
		reason  Reason
	}{
		{op(syscall.ECONNREFUSED), OutcomeUnhealthy, ReasonRefused},
		{fmt.Errorf("wrapped: %w", op(syscall.ECONNRESET)), OutcomeUnhealthy, ReasonReset},
		{op(syscall.EHOSTUNREACH), OutcomeUnhealthy, ReasonUnreachable},
		{op(syscall.ENETUNREACH), OutcomeUnhealthy, ReasonUnreachable},
		{op(syscall.EADDRNOTAVAIL), OutcomeError, ReasonLocal},
		{op(syscall.ENODEV), OutcomeError, ReasonLocal},
		{context.DeadlineExceeded, OutcomeUnhealthy, ReasonTimeout},
		{fmt.Errorf("read: %w", os.ErrDeadlineExceeded), OutcomeUnhealthy, ReasonTimeout},
		{context.Canceled, OutcomeError, ReasonCanceled},
		{&tlsError{errors.New("handshake failure")}, OutcomeUnhealthy, ReasonTLSError},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: certificate required")}, OutcomeUnhealthy, ReasonTLSError},
		{fmt.Errorf("get: %w", x509.UnknownAuthorityError{}), OutcomeUnhealthy, ReasonTLSError},
		{io.ErrUnexpectedEOF, OutcomeUnhealthy, ReasonReset},
		{errors.New("something else"), OutcomeUnhealthy, ReasonNetwork},
	} {
		o, r := classify(c.err)
		if o != c.outcome || r != c.reason {
			t.Errorf("classify(%v) = %v/%v, want %v/%v", c.err, o, r, c.outcome, c.reason)
		}
	}
}

func TestNamesAndJSON(t *testing.T) {
	for r := ReasonNone; r <= ReasonPanic; r++ {
		if s := r.String(); s == "" || s[0] == 'R' {
			t.Errorf("reason %d has no name: %q", r, s)
		}
	}
	w := 7
	b, err := json.Marshal(Change{ID: "x", From: StateDown, To: StateUp,
		Result: Result{Outcome: OutcomeUnhealthy, Reason: ReasonTLSError, Weight: &w, Err: errors.New("hidden")}})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	res := m["Result"].(map[string]any)
	if m["From"] != "down" || m["To"] != "up" || res["Outcome"] != "unhealthy" || res["Reason"] != "tls_error" || res["Weight"] != 7.0 {
		t.Errorf("JSON %s", b)
	}
	if _, ok := res["Err"]; ok {
		t.Errorf("JSON carries Err: %s", b)
	}
	if got := (Result{Outcome: OutcomeUnhealthy, Reason: ReasonTimeout, Detail: "x"}).String(); got != "unhealthy (timeout): x" {
		t.Errorf("Result.String() = %q", got)
	}
}

func TestDefinitionHash(t *testing.T) {
	base := TCP{Addr: netip.MustParseAddrPort("192.0.2.20:80"), Expect: "ok"}
	h := func(p Probe) string {
		t.Helper()
		s, err := definitionHash(p)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	withHook := base
	withHook.Dial.Do = func(fn func() error) error { return fn() }
	changed := base
	changed.Expect = "OK"
	switch {
	case h(base) != h(base):
		t.Error("hash not stable")
	case h(base) != h(&base):
		t.Error("pointer and value hash differently")
	case h(base) != h(withHook):
		t.Error("the Do hook is part of the definition")
	case h(base) == h(changed):
		t.Error("a changed Expect keeps the hash")
	case h(base) == h(UDP{Addr: base.Addr, Expect: "ok"}):
		t.Error("TCP and UDP probes with the same fields hash alike")
	}
}
