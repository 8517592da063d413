package health

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"syscall"
	"time"
)

// UDP checks a UDP service (keepalived UDP_CHECK) through a connected socket: Send is sent and a
// reply is required (matching Expect, if set). With NoReplyOK, silence is healthy and only an
// ICMP port unreachable (seen as ECONNREFUSED on the connected socket) fails the check: the
// mode for services that do not answer arbitrary datagrams.
type UDP struct {
	// Addr is the real server checked.
	Addr netip.AddrPort
	Dial DialOptions
	// Send is the datagram sent (may be empty).
	Send string
	// Expect, if set, is a regular expression (RE2) the reply must match.
	Expect string
	// NoReplyOK makes a check that got no reply healthy unless an ICMP unreachable came back.
	NoReplyOK bool
	// Wait, with NoReplyOK, is how long to wait for an ICMP error; 0 means until the timeout.
	Wait time.Duration
}

// Kind returns "udp".
func (UDP) Kind() string { return "udp" }

// Build validates the probe.
func (u UDP) Build() (Checker, error) {
	target, err := u.Dial.target(u.Addr)
	if err != nil {
		return nil, fmt.Errorf("udp: %w", err)
	}
	re, err := compile("udp: expect", u.Expect)
	if err != nil {
		return nil, err
	}
	if u.Wait < 0 {
		return nil, errors.New("udp: negative Wait")
	}
	return &udpChecker{target: target, dial: u.Dial, send: []byte(u.Send), expect: re, noReplyOK: u.NoReplyOK, wait: u.Wait}, nil
}

type udpChecker struct {
	target    netip.AddrPort
	dial      DialOptions
	send      []byte
	expect    *regexp.Regexp
	noReplyOK bool
	wait      time.Duration
}

func (c *udpChecker) Check(ctx context.Context) Result {
	start := time.Now()
	conn, err := c.dial.dial(ctx, "udp", c.target)
	if err != nil {
		return failure(ctx, start, err)
	}
	defer conn.Close()
	stop := deadlineFrom(ctx, conn)
	defer stop()
	if c.noReplyOK && c.wait > 0 {
		quiet := start.Add(c.wait)
		if dl, ok := ctx.Deadline(); !ok || quiet.Before(dl) {
			_ = conn.SetReadDeadline(quiet)
		}
	}
	if _, err := conn.Write(c.send); err != nil {
		return c.readError(ctx, start, fmt.Errorf("send: %w", err))
	}
	buf := make([]byte, DefaultMaxReply)
	n, err := conn.Read(buf)
	if err != nil {
		return c.readError(ctx, start, err)
	}
	reply := buf[:n]
	if c.expect != nil && !c.expect.Match(reply) {
		return unhealthy(start, ReasonReplyMismatch, fmt.Sprintf("reply %q does not match %q", excerpt(reply), c.expect))
	}
	return healthy(start, fmt.Sprintf("reply of %d bytes", n))
}

func (c *udpChecker) readError(ctx context.Context, start time.Time, err error) Result {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		r := failure(ctx, start, err)
		r.Outcome, r.Reason = OutcomeUnhealthy, ReasonICMPUnreachable
		return r
	case c.noReplyOK && errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(ctx.Err(), context.Canceled):
		return healthy(start, "no reply and no ICMP unreachable")
	default:
		return failure(ctx, start, fmt.Errorf("no reply: %w", err))
	}
}
