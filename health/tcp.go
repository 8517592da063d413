package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"time"
)

// DefaultMaxReply bounds how much of a TCP or UDP reply is read and matched.
const DefaultMaxReply = 4 << 10

// TCP checks that a TCP connection can be made (keepalived TCP_CHECK, HAProxy's plain check),
// optionally sending Send and requiring that the reply match Expect (HAProxy tcp-check
// send/expect rstring).
type TCP struct {
	// Addr is the real server checked.
	Addr netip.AddrPort
	Dial DialOptions
	// Send, if set, is written once connected.
	Send string
	// Expect, if set, is a regular expression (RE2) the reply must match; the reply is read
	// until it matches, the peer closes, MaxReply bytes have come or the timeout.
	Expect string
	// MaxReply bounds the reply read; 0 means DefaultMaxReply.
	MaxReply int
}

// Kind returns "tcp".
func (TCP) Kind() string { return "tcp" }

// Build validates the probe.
func (t TCP) Build() (Checker, error) {
	target, err := t.Dial.target(t.Addr)
	if err != nil {
		return nil, fmt.Errorf("tcp: %w", err)
	}
	re, err := compile("tcp: expect", t.Expect)
	if err != nil {
		return nil, err
	}
	if t.MaxReply < 0 {
		return nil, errors.New("tcp: negative MaxReply")
	}
	limit := t.MaxReply
	if limit == 0 {
		limit = DefaultMaxReply
	}
	return &tcpChecker{target: target, dial: t.Dial, send: []byte(t.Send), expect: re, max: limit}, nil
}

type tcpChecker struct {
	target netip.AddrPort
	dial   DialOptions
	send   []byte
	expect *regexp.Regexp
	max    int
}

func (c *tcpChecker) Check(ctx context.Context) Result {
	start := time.Now()
	conn, err := c.dial.dial(ctx, "tcp", c.target)
	if err != nil {
		return failure(ctx, start, err)
	}
	defer conn.Close()
	if len(c.send) == 0 && c.expect == nil {
		// A connect-only check closes with a RST, as HAProxy does: no TIME_WAIT left on this
		// side for every check, and the server sees an aborted connection, not a request.
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		return healthy(start, "connected")
	}
	stop := deadlineFrom(ctx, conn)
	defer stop()
	if len(c.send) > 0 {
		if _, err := conn.Write(c.send); err != nil {
			return failure(ctx, start, fmt.Errorf("send: %w", err))
		}
	}
	if c.expect == nil {
		return healthy(start, "sent")
	}
	return matchStream(ctx, start, conn, c.expect, c.max)
}

// matchStream reads r until the data matches re, r ends, max bytes have come or the deadline.
func matchStream(ctx context.Context, start time.Time, r io.Reader, re *regexp.Regexp, limit int) Result {
	buf := make([]byte, limit)
	n := 0
	for {
		m, err := r.Read(buf[n:])
		n += m
		if re.Match(buf[:n]) {
			return healthy(start, fmt.Sprintf("reply matched %q", re))
		}
		switch {
		case n == len(buf):
			return unhealthy(start, ReasonReplyMismatch, fmt.Sprintf("no match for %q in the first %d bytes: %q", re, n, excerpt(buf[:n])))
		case errors.Is(err, io.EOF):
			return unhealthy(start, ReasonReplyMismatch, fmt.Sprintf("peer closed; no match for %q in %q", re, excerpt(buf[:n])))
		case err != nil:
			return failure(ctx, start, fmt.Errorf("read reply (%d bytes, no match for %q yet): %w", n, re, err))
		}
	}
}

// excerpt shortens data for a Detail.
func excerpt(b []byte) string {
	const n = 128
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
