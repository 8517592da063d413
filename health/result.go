package health

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"
)

// Outcome is what one run of a check concluded.
type Outcome uint8

const (
	// OutcomeNone marks a Change that no check result caused (a reconfiguration). A Checker
	// never returns it; the Scheduler treats a Result without an Outcome as OutcomeError.
	OutcomeNone Outcome = iota
	// OutcomeHealthy: the target answered as expected.
	OutcomeHealthy
	// OutcomeUnhealthy: the target failed the check (refused, timed out, answered wrongly).
	OutcomeUnhealthy
	// OutcomeError: the check could not be carried out here (a source address that does not
	// exist, a program that cannot be started, an unknown user). It counts as a failure.
	OutcomeError
)

// String returns "healthy", "unhealthy", "error" or "none".
func (o Outcome) String() string {
	switch o {
	case OutcomeNone:
		return "none"
	case OutcomeHealthy:
		return "healthy"
	case OutcomeUnhealthy:
		return "unhealthy"
	case OutcomeError:
		return "error"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// MarshalText encodes the outcome as its String, for JSON.
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// Reason says why a check concluded what it did: the typed code to assert on and to count in
// metrics. ReasonNone goes with a healthy result.
type Reason uint8

const (
	ReasonNone            Reason = iota // healthy, nothing to report
	ReasonRefused                       // connection refused (TCP RST)
	ReasonTimeout                       // no answer within the timeout
	ReasonReset                         // connection reset or closed early
	ReasonUnreachable                   // host or network unreachable (ICMP, no route, no neighbour)
	ReasonNetwork                       // another network error
	ReasonReplyMismatch                 // TCP or UDP reply did not match the expected pattern
	ReasonBadStatus                     // HTTP status outside the expected ranges
	ReasonBodyMismatch                  // HTTP body did not match the expected pattern
	ReasonProtocol                      // malformed answer (HTTP, DNS)
	ReasonTLSError                      // TLS handshake or certificate verification failed
	ReasonICMPUnreachable               // UDP: ICMP port unreachable came back
	ReasonNoAnswer                      // DNS: no record of the asked type
	ReasonWrongAnswer                   // DNS: records, but none with an expected value
	ReasonBadRcode                      // DNS: response code other than NOERROR (NXDOMAIN, SERVFAIL, ...)
	ReasonExitNonZero                   // Exec: the program exited with a failing status
	ReasonSignal                        // Exec: the program was killed by a signal it was not sent by us
	ReasonPassiveFailures               // Passive: max_fails failures within fail_timeout
	ReasonFailTimeout                   // Passive: fail_timeout has passed, the target is tried again
	ReasonReconfigured                  // the definition changed on Update: state reset
	ReasonCanceled                      // the check was canceled (the Scheduler is stopping)
	ReasonLocal                         // OutcomeError: a local problem (bind, program, user)
	ReasonPanic                         // OutcomeError: the Checker panicked
)

// String returns the reason's snake_case name ("refused", "tls_error", ...), stable for logs
// and metric labels.
func (r Reason) String() string {
	switch r {
	case ReasonNone:
		return "ok"
	case ReasonRefused:
		return "refused"
	case ReasonTimeout:
		return "timeout"
	case ReasonReset:
		return "reset"
	case ReasonUnreachable:
		return "unreachable"
	case ReasonNetwork:
		return "network_error"
	case ReasonReplyMismatch:
		return "reply_mismatch"
	case ReasonBadStatus:
		return "bad_status"
	case ReasonBodyMismatch:
		return "body_mismatch"
	case ReasonProtocol:
		return "protocol_error"
	case ReasonTLSError:
		return "tls_error"
	case ReasonICMPUnreachable:
		return "icmp_unreachable"
	case ReasonNoAnswer:
		return "no_answer"
	case ReasonWrongAnswer:
		return "wrong_answer"
	case ReasonBadRcode:
		return "bad_rcode"
	case ReasonExitNonZero:
		return "exit_nonzero"
	case ReasonSignal:
		return "signal"
	case ReasonPassiveFailures:
		return "passive_failures"
	case ReasonFailTimeout:
		return "fail_timeout_expired"
	case ReasonReconfigured:
		return "reconfigured"
	case ReasonCanceled:
		return "canceled"
	case ReasonLocal:
		return "local_error"
	case ReasonPanic:
		return "panic"
	}
	return "Reason(" + strconv.Itoa(int(r)) + ")"
}

// MarshalText encodes the reason as its String, for JSON.
func (r Reason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Result is what one run of a check found.
type Result struct {
	Outcome Outcome
	Reason  Reason
	// Detail explains the result to a human: the error, the status seen, the program's output.
	Detail string
	// Latency is how long the probe took (real time for network probes).
	Latency time.Duration
	// Weight is set by dynamic Exec checks (keepalived misc_dynamic): the weight the real server
	// should get. nil leaves the weight as it was.
	Weight *int
	// Err is the underlying error, if any, for errors.Is and errors.As.
	Err error `json:"-"`
}

// Healthy reports whether the outcome is OutcomeHealthy.
func (r Result) Healthy() bool { return r.Outcome == OutcomeHealthy }

// String returns "healthy" or "unhealthy (timeout): detail".
func (r Result) String() string {
	s := r.Outcome.String()
	if r.Reason != ReasonNone {
		s += " (" + r.Reason.String() + ")"
	}
	if r.Detail != "" {
		s += ": " + r.Detail
	}
	return s
}

func healthy(start time.Time, detail string) Result {
	return Result{Outcome: OutcomeHealthy, Detail: detail, Latency: time.Since(start)}
}

func unhealthy(start time.Time, reason Reason, detail string) Result {
	return Result{Outcome: OutcomeUnhealthy, Reason: reason, Detail: detail, Latency: time.Since(start)}
}

// failure turns an error into a Result. A canceled ctx wins over whatever err says: I/O that was
// cut short by cancellation reports a deadline error.
func failure(ctx context.Context, start time.Time, err error) Result {
	if ctxErr := ctx.Err(); errors.Is(ctxErr, context.Canceled) && !errors.Is(err, context.Canceled) {
		err = fmt.Errorf("%w (%v)", ctxErr, err)
	}
	o, r := classify(err)
	return Result{Outcome: o, Reason: r, Detail: err.Error(), Latency: time.Since(start), Err: err}
}

// errTLS marks errors of the TLS handshake.
var errTLS = errors.New("tls handshake")

type tlsError struct{ err error }

func (e *tlsError) Error() string        { return "tls: " + e.err.Error() }
func (e *tlsError) Unwrap() []error      { return []error{errTLS, e.err} }
func (e *tlsError) Is(target error) bool { return target == errTLS }

// classify maps an error of a probe to an outcome and a reason.
func classify(err error) (Outcome, Reason) {
	if err == nil {
		return OutcomeHealthy, ReasonNone
	}
	var (
		nerr  net.Error
		operr *net.OpError
		verr  *tls.CertificateVerificationError
		rherr tls.RecordHeaderError
		uaerr x509.UnknownAuthorityError
		hnerr x509.HostnameError
		cierr x509.CertificateInvalidError
		alerr tls.AlertError
	)
	switch {
	case errors.Is(err, context.Canceled):
		return OutcomeError, ReasonCanceled
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &nerr) && nerr.Timeout():
		return OutcomeUnhealthy, ReasonTimeout
	case errors.Is(err, errTLS), errors.As(err, &verr), errors.As(err, &rherr), errors.As(err, &uaerr),
		errors.As(err, &hnerr), errors.As(err, &cierr), errors.As(err, &alerr),
		// crypto/tls reports an alert from the peer as a *net.OpError with Op "remote error".
		errors.As(err, &operr) && operr.Op == "remote error":
		return OutcomeUnhealthy, ReasonTLSError
	case errors.Is(err, syscall.ECONNREFUSED):
		return OutcomeUnhealthy, ReasonRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, io.EOF):
		return OutcomeUnhealthy, ReasonReset
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTDOWN),
		errors.Is(err, syscall.ENETDOWN):
		return OutcomeUnhealthy, ReasonUnreachable
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.ENODEV), errors.Is(err, syscall.EPERM),
		errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EINVAL), errors.Is(err, syscall.EMFILE),
		errors.Is(err, syscall.ENFILE), errors.Is(err, syscall.ENOBUFS), errors.Is(err, syscall.EAFNOSUPPORT),
		errors.Is(err, syscall.EADDRINUSE):
		return OutcomeError, ReasonLocal
	default:
		return OutcomeUnhealthy, ReasonNetwork
	}
}
