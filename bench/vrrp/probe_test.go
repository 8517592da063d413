package vrrpbench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fulcrum-lb/fulcrum/lab/netns"
)

// servicePort is the UDP port of the echo service on the VIP.
const servicePort = 9000

// probeLen is a probe's size: an 8-byte sequence number. An answer adds one byte naming the lb.
const probeLen = 8

// rtPriority is the SCHED_FIFO priority of the benchmark's timing threads (probe sender, echo
// servers, capture): modest, and each thread sleeps in the kernel between packets.
const rtPriority = 10

// realtime makes the calling OS thread SCHED_FIFO. The caller has locked its goroutine to the
// thread and ends the goroutine without unlocking, so the runtime discards the thread and no
// other goroutine ever runs with the policy.
func realtime() error {
	return unix.SchedSetAttr(0, &unix.SchedAttr{Policy: unix.SCHED_FIFO, Priority: rtPriority}, 0)
}

// echo is the service on one lb.
type echo struct {
	fd    int
	stop  atomic.Bool
	done  chan struct{}
	rtErr error // from realtime, set before ready is closed
	ready chan struct{}
}

// startEcho serves UDP echo on vip:servicePort inside h, bound with IP_FREEBIND before h holds
// the VIP: the kernel delivers to it only while h holds the VIP. Each answer is the probe plus
// id. It runs on a SCHED_FIFO thread with blocking system calls, so that the benchmark's own
// scheduling under load does not move the answers. tb's cleanup stops it.
func startEcho(tb testing.TB, h *netns.Host, vip netip.Addr, id byte) *echo {
	tb.Helper()
	e := &echo{fd: -1, done: make(chan struct{}), ready: make(chan struct{})}
	err := h.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		if err := errors.Join(
			unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_FREEBIND, 1),
			unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv),
			unix.Bind(fd, &unix.SockaddrInet4{Port: servicePort, Addr: vip.As4()}),
		); err != nil {
			unix.Close(fd)
			return err
		}
		e.fd = fd
		return nil
	})
	if err != nil {
		tb.Fatalf("echo on %s: %v", h.Name, err)
	}
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		defer close(e.done)
		e.rtErr = realtime()
		close(e.ready)
		buf := make([]byte, 64)
		for !e.stop.Load() {
			n, from, err := unix.Recvfrom(e.fd, buf, 0)
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return
			}
			if n != probeLen || from == nil {
				continue
			}
			buf[n] = id
			_ = unix.Sendto(e.fd, buf[:n+1], 0, from)
		}
	}()
	<-e.ready
	tb.Cleanup(func() {
		e.stop.Store(true)
		<-e.done
		unix.Close(e.fd)
	})
	return e
}

// answer is one answer the client received.
type answer struct {
	seq  uint64
	from byte      // the lb that answered (1 or 2)
	at   time.Time // kernel receive timestamp
}

// prober is the client: while active it sends a probe to the VIP every interval and records
// every answer with its kernel timestamp.
type prober struct {
	conn     *net.UDPConn
	dst      netip.AddrPort
	interval time.Duration

	active atomic.Bool
	stop   chan struct{}
	wg     sync.WaitGroup
	ready  chan struct{} // closed once the sender has its scheduling policy
	rtErr  error         // the sender's realtime error, valid after ready

	mu      sync.Mutex
	answers []answer
	sent    []time.Time // send times, in order
	changed chan struct{}
}

// startProber starts the client inside h, paused; it stops by itself after maxRun at the
// latest, and tb's cleanup stops it.
func startProber(tb testing.TB, h *netns.Host, vip netip.Addr, interval, maxRun time.Duration) *prober {
	tb.Helper()
	p := &prober{dst: netip.AddrPortFrom(vip, servicePort), interval: interval, stop: make(chan struct{}), changed: make(chan struct{}), ready: make(chan struct{})}
	err := h.Do(func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: h.Addr4().AsSlice()})
		if err != nil {
			return err
		}
		rc, err := c.SyscallConn()
		if err != nil {
			c.Close()
			return err
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
		}); err != nil || serr != nil {
			c.Close()
			return errors.Join(err, serr)
		}
		p.conn = c
		return nil
	})
	if err != nil {
		tb.Fatalf("prober on %s: %v", h.Name, err)
	}
	p.wg.Add(2)
	go p.send(maxRun)
	go p.receive()
	<-p.ready
	tb.Cleanup(func() {
		close(p.stop)
		p.wg.Wait()
		p.conn.Close()
	})
	return p
}

// send is the probe loop, bounded in count and time: at most maxRun/interval probes, never
// after maxRun. It runs on a SCHED_FIFO thread and sleeps with clock_nanosleep to absolute
// times, so that probes leave on time even when the machine is busy (a `fulcrum failover`
// process starting, say): a stalled prober would blur the start of an outage.
func (p *prober) send(maxRun time.Duration) {
	runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
	defer p.wg.Done()
	p.rtErr = realtime()
	close(p.ready)
	rc, err := p.conn.SyscallConn()
	if err != nil {
		return
	}
	to := &unix.SockaddrInet4{Port: int(p.dst.Port()), Addr: p.dst.Addr().As4()}
	start := time.Now()
	limit := int(maxRun / p.interval)
	var seq uint64
	buf := make([]byte, probeLen)
	var next unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &next) != nil {
		return
	}
	for i := 0; i < limit && time.Since(start) < maxRun; i++ {
		select {
		case <-p.stop:
			return
		default:
		}
		if p.active.Load() {
			seq++
			binary.BigEndian.PutUint64(buf, seq)
			now := time.Now()
			var serr error
			_ = rc.Write(func(fd uintptr) bool {
				serr = unix.Sendto(int(fd), buf, 0, to)
				return true // a probe that cannot go now is lost, not retried
			})
			if serr == nil {
				p.mu.Lock()
				p.sent = append(p.sent, now)
				p.mu.Unlock()
			}
		}
		next = unix.NsecToTimespec(next.Nano() + p.interval.Nanoseconds())
		var now unix.Timespec
		if unix.ClockGettime(unix.CLOCK_MONOTONIC, &now) == nil && now.Nano()-next.Nano() > p.interval.Nanoseconds() {
			next = now // late by more than a period: do not burst to catch up
		}
		for unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &next, nil) == unix.EINTR {
		}
	}
}

func (p *prober) receive() {
	defer p.wg.Done()
	buf := make([]byte, 64)
	oob := make([]byte, 128)
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		_ = p.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, oobn, _, from, err := p.conn.ReadMsgUDPAddrPort(buf, oob)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			return
		}
		if n != probeLen+1 || from != p.dst {
			continue
		}
		a := answer{seq: binary.BigEndian.Uint64(buf[:probeLen]), from: buf[probeLen], at: kernelTime(oob[:oobn])}
		p.mu.Lock()
		p.answers = append(p.answers, a)
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
}

// setActive starts or pauses the probes.
func (p *prober) setActive(on bool) { p.active.Store(on) }

// waitAnswer waits for the first answer from lb `from` received after after.
func (p *prober) waitAnswer(ctx context.Context, from byte, after time.Time) (answer, error) {
	next := 0
	for {
		p.mu.Lock()
		for ; next < len(p.answers); next++ {
			if a := p.answers[next]; a.from == from && a.at.After(after) {
				p.mu.Unlock()
				return a, nil
			}
		}
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return answer{}, fmt.Errorf("no answer from lb%d after %s: %w", from, after.Format("15:04:05.000"), ctx.Err())
		}
	}
}

// waitSteady waits until the last n answers all came from lb `from`, the newest less than
// two intervals old.
func (p *prober) waitSteady(ctx context.Context, from byte, n int) error {
	for {
		p.mu.Lock()
		ok := len(p.answers) >= n
		for i := len(p.answers) - n; ok && i < len(p.answers); i++ {
			ok = p.answers[i].from == from
		}
		fresh := ok && time.Since(p.answers[len(p.answers)-1].at) < 2*p.interval+5*time.Millisecond
		changed := p.changed
		p.mu.Unlock()
		if ok && fresh {
			return nil
		}
		select {
		case <-changed:
		case <-time.After(p.interval):
		case <-ctx.Done():
			return fmt.Errorf("the client is not answered steadily by lb%d: %w", from, ctx.Err())
		}
	}
}

// since returns the answers received after t.
func (p *prober) since(t time.Time) []answer {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []answer
	for _, a := range p.answers {
		if a.at.After(t) {
			out = append(out, a)
		}
	}
	return out
}

// trim drops answers and send times older than before, to bound memory.
func (p *prober) trim(before time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := 0
	for i < len(p.answers) && p.answers[i].at.Before(before) {
		i++
	}
	p.answers = append([]answer(nil), p.answers[i:]...)
	i = 0
	for i < len(p.sent) && p.sent[i].Before(before) {
		i++
	}
	p.sent = append([]time.Time(nil), p.sent[i:]...)
}

// maxSendGap is the longest time between two consecutive probes sent in [from, to]: the
// prober's own stalls (under load), which blur the edges of an outage.
func (p *prober) maxSendGap(from, to time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var gap time.Duration
	var prev time.Time
	for _, t := range p.sent {
		if t.Before(from) || t.After(to) {
			continue
		}
		if !prev.IsZero() {
			gap = max(gap, t.Sub(prev))
		}
		prev = t
	}
	return gap
}

// handoverGap is the client-visible outage of a handover to lb `to` after t0: the time from
// the last answer received before the first answer from `to` after t0, to that first answer.
// answers are in receive order. ok is false if there is no such pair.
func handoverGap(answers []answer, t0 time.Time, to byte) (gap time.Duration, last, first answer, ok bool) {
	fi := -1
	for i, a := range answers {
		if a.from == to && a.at.After(t0) {
			fi = i
			break
		}
	}
	if fi <= 0 {
		return 0, answer{}, answer{}, false
	}
	first = answers[fi]
	found := false
	for _, a := range answers[:fi] {
		if a.at.Before(first.at) && (!found || a.at.After(last.at)) {
			last, found = a, true
		}
	}
	if !found {
		return 0, answer{}, answer{}, false
	}
	return first.at.Sub(last.at), last, first, true
}
