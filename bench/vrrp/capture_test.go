package vrrpbench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/fulcrum-lb/fulcrum/lab/netns"
)

// frameKind is what the capture recorded.
type frameKind int

const (
	frameAdvert frameKind = iota + 1 // a VRRP advertisement (IPv4, protocol 112)
	frameARP                         // an ARP request or reply
)

// frame is one packet seen on the client's link.
type frame struct {
	at     time.Time // kernel receive timestamp
	kind   frameKind
	srcMAC [6]byte
	// src is the IP source of an advert, the sender address of an ARP frame.
	src netip.Addr
	// prio is an advert's priority.
	prio int
	// garp: an ARP frame whose sender and target addresses are equal (gratuitous).
	garp bool
	// arpOp is an ARP frame's operation (1 request, 2 reply), target its target address.
	arpOp  int
	target netip.Addr
	// out: sent by the capturing host itself (its ARP requests and answers).
	out bool
}

func (f frame) String() string {
	mac := net.HardwareAddr(f.srcMAC[:])
	switch f.kind {
	case frameAdvert:
		return fmt.Sprintf("advert from %s (%s) priority %d", f.src, mac, f.prio)
	case frameARP:
		kind := map[int]string{1: "ARP request", 2: "ARP reply"}[f.arpOp]
		if kind == "" {
			kind = fmt.Sprintf("ARP op %d", f.arpOp)
		}
		if f.garp {
			kind = "gratuitous " + kind
		}
		dir := "from"
		if f.out {
			dir = "sent by the client, from"
		}
		return fmt.Sprintf("%s %s %s, sender %s, target %s", kind, dir, mac, f.src, f.target)
	}
	return "?"
}

// capture records VRRP adverts and ARP frames on a host's first interface through an AF_PACKET
// socket with a classic BPF filter and kernel timestamps.
type capture struct {
	fd    int
	stop  atomic.Bool
	done  chan struct{}
	ready chan struct{} // closed once the reader has its scheduling policy
	rtErr error         // the reader's realtime error, valid after ready

	// trigger, when set, runs once on the reader's thread right after the next advert from
	// its source has been recorded.
	trigger atomic.Pointer[trigger]

	mu      sync.Mutex
	frames  []frame
	changed chan struct{} // closed and replaced on every frame
	readErr error
}

// captureFilter accepts ARP and IPv4 protocol 112, and nothing else (the probes and answers
// never reach user space).
func captureFilter() ([]unix.SockFilter, error) {
	raw, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2},                                // 0: EtherType
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_ARP, SkipTrue: 3}, // 1: ARP -> 5
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_IP, SkipFalse: 3}, // 2: not IPv4 -> 6
		bpf.LoadAbsolute{Off: 14 + 9, Size: 1},                            // 3: IPv4 protocol
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: protoVRRP, SkipFalse: 1},     // 4: not VRRP -> 6
		bpf.RetConstant{Val: 1 << 16},                                     // 5: accept
		bpf.RetConstant{Val: 0},                                           // 6: drop
	})
	if err != nil {
		return nil, err
	}
	out := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		out[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return out, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// startCapture opens the capture inside h on h.Iface; tb's cleanup stops it.
func startCapture(tb testing.TB, h *netns.Host) *capture {
	tb.Helper()
	var index int
	err := h.Netlink(func(nl *netlink.Handle) error {
		l, err := nl.LinkByName(h.Iface)
		if err == nil {
			index = l.Attrs().Index
		}
		return err
	})
	if err != nil {
		tb.Fatalf("capture: %s: %v", h.Name, err)
	}
	filter, err := captureFilter()
	if err != nil {
		tb.Fatalf("capture: BPF: %v", err)
	}
	c := &capture{fd: -1, done: make(chan struct{}), ready: make(chan struct{}), changed: make(chan struct{})}
	err = h.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("socket(AF_PACKET): %w", err)
		}
		fail := func(what string, err error) error {
			unix.Close(fd)
			return fmt.Errorf("%s: %w", what, err)
		}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
			&unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}); err != nil {
			return fail("SO_ATTACH_FILTER", err)
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
			return fail("SO_TIMESTAMPNS", err)
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20); err != nil {
			return fail("SO_RCVBUF", err)
		}
		// A bounded blocking read, so that the reader notices stop.
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return fail("SO_RCVTIMEO", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: index}); err != nil {
			return fail("bind", err)
		}
		c.fd = fd
		return nil
	})
	if err != nil {
		tb.Fatalf("capture: %s: %v", h.Name, err)
	}
	go c.read()
	<-c.ready
	tb.Cleanup(c.close)
	return c
}

// trigger is an action to run right after an advert from src is seen.
type trigger struct {
	src netip.Addr
	fn  func() error
	// Set before done is closed:
	advert     frame     // the advert that fired it
	start, end time.Time // fn's run
	err        error     // fn's error
	done       chan struct{}
}

// onAdvert arms fn to run on the capture's (SCHED_FIFO) thread as soon as the next advert
// from src arrives, and waits for it to have run. This is how a crash is timed right after an
// advert without the benchmark's own scheduling in between. If ctx ends first, fn does not
// run (or has already run, and that is reported).
func (c *capture) onAdvert(ctx context.Context, src netip.Addr, fn func() error) (*trigger, error) {
	tr := &trigger{src: src, fn: fn, done: make(chan struct{})}
	if !c.trigger.CompareAndSwap(nil, tr) {
		return nil, errors.New("capture: a trigger is already armed")
	}
	select {
	case <-tr.done:
		return tr, tr.err
	case <-ctx.Done():
		if c.trigger.CompareAndSwap(tr, nil) {
			return nil, fmt.Errorf("no advert from %s on the wire: %w", src, ctx.Err())
		}
		<-tr.done // it is running now
		return tr, tr.err
	}
}

func (c *capture) close() {
	c.stop.Store(true)
	<-c.done
	unix.Close(c.fd)
}

// read records frames until stop. It runs on a SCHED_FIFO thread of its own (see realtime).
func (c *capture) read() {
	runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
	defer close(c.done)
	c.rtErr = realtime()
	close(c.ready)
	buf := make([]byte, 2048)
	oob := make([]byte, 128)
	for !c.stop.Load() {
		n, oobn, _, from, err := unix.Recvmsg(c.fd, buf, oob, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			c.mu.Lock()
			c.readErr = err
			c.mu.Unlock()
			return
		}
		f, ok := parseFrame(buf[:n])
		if !ok {
			continue
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			f.out = true
		}
		f.at = kernelTime(oob[:oobn])
		c.mu.Lock()
		c.frames = append(c.frames, f)
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
		if tr := c.trigger.Load(); tr != nil && f.kind == frameAdvert && f.src == tr.src && c.trigger.CompareAndSwap(tr, nil) {
			tr.advert, tr.start = f, time.Now()
			tr.err = tr.fn()
			tr.end = time.Now()
			close(tr.done)
		}
	}
}

// kernelTime returns the SCM_TIMESTAMPNS of a message, or now if there is none.
func kernelTime(oob []byte) time.Time {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err == nil {
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
				sec := int64(binary.NativeEndian.Uint64(m.Data[0:8]))
				nsec := int64(binary.NativeEndian.Uint64(m.Data[8:16]))
				return time.Unix(sec, nsec)
			}
		}
	}
	return time.Now()
}

// parseFrame decodes an Ethernet frame that passed the filter.
func parseFrame(b []byte) (frame, bool) {
	if len(b) < 14 {
		return frame{}, false
	}
	var f frame
	copy(f.srcMAC[:], b[6:12])
	switch binary.BigEndian.Uint16(b[12:14]) {
	case unix.ETH_P_ARP:
		a := b[14:]
		// htype 1, ptype IPv4, hlen 6, plen 4.
		if len(a) < 28 || binary.BigEndian.Uint16(a[0:2]) != 1 || binary.BigEndian.Uint16(a[2:4]) != unix.ETH_P_IP || a[4] != 6 || a[5] != 4 {
			return frame{}, false
		}
		spa := netip.AddrFrom4([4]byte(a[14:18]))
		tpa := netip.AddrFrom4([4]byte(a[24:28]))
		f.kind, f.src, f.garp = frameARP, spa, spa == tpa
		f.arpOp, f.target = int(binary.BigEndian.Uint16(a[6:8])), tpa
		return f, true
	case unix.ETH_P_IP:
		ip := b[14:]
		if len(ip) < 20 || ip[0]>>4 != 4 || ip[9] != protoVRRP {
			return frame{}, false
		}
		ihl := int(ip[0]&0x0f) * 4
		if ihl < 20 || len(ip) < ihl+8 {
			return frame{}, false
		}
		v := ip[ihl:]
		if v[0]&0x0f != 1 { // type 1: advertisement
			return frame{}, false
		}
		f.kind, f.src, f.prio = frameAdvert, netip.AddrFrom4([4]byte(ip[12:16])), int(v[2])
		return f, true
	}
	return frame{}, false
}

// err is the reader's error, if it stopped on one.
func (c *capture) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readErr
}

// waitAdvert waits for an advert from src received after after, and returns it.
func (c *capture) waitAdvert(ctx context.Context, src netip.Addr, after time.Time) (frame, error) {
	next := 0
	for {
		c.mu.Lock()
		for ; next < len(c.frames); next++ {
			f := c.frames[next]
			if f.kind == frameAdvert && f.src == src && f.at.After(after) {
				c.mu.Unlock()
				return f, nil
			}
		}
		changed, rerr := c.changed, c.readErr
		c.mu.Unlock()
		if rerr != nil {
			return frame{}, fmt.Errorf("capture stopped: %w", rerr)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return frame{}, fmt.Errorf("no advert from %s on the wire: %w", src, ctx.Err())
		}
	}
}

// between returns the frames received in [from, to].
func (c *capture) between(from, to time.Time) []frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []frame
	for _, f := range c.frames {
		if !f.at.Before(from) && !f.at.After(to) {
			out = append(out, f)
		}
	}
	return out
}

// trim drops frames older than before, to bound memory over a long benchmark.
func (c *capture) trim(before time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := 0
	for i < len(c.frames) && c.frames[i].at.Before(before) {
		i++
	}
	c.frames = append([]frame(nil), c.frames[i:]...)
}

// wireHandover is what the wire showed of one handover.
type wireHandover struct {
	lastOld, firstNew, firstGARP time.Time
	lastOldPrio                  int
}

// advertGap is the time from the old master's last advert to the new master's first.
func (w wireHandover) advertGap() (time.Duration, bool) {
	if w.lastOld.IsZero() || w.firstNew.IsZero() {
		return 0, false
	}
	return w.firstNew.Sub(w.lastOld), true
}

// advertToGARP is the time from the new master's first advert to its first GARP (negative if
// the GARP came first).
func (w wireHandover) advertToGARP() (time.Duration, bool) {
	if w.firstNew.IsZero() || w.firstGARP.IsZero() {
		return 0, false
	}
	return w.firstGARP.Sub(w.firstNew), true
}

// findHandover reads a handover from old to new out of frames (in receive order) that start
// before the event at t0: the new master's first advert with a non-zero priority after t0,
// the old master's last advert before that, and the new master's first gratuitous ARP for
// vip after t0.
func findHandover(frames []frame, t0 time.Time, oldIP, newIP, vip netip.Addr, newMAC net.HardwareAddr) wireHandover {
	var w wireHandover
	for _, f := range frames {
		if !f.at.After(t0) {
			continue
		}
		if w.firstNew.IsZero() && f.kind == frameAdvert && f.src == newIP && f.prio > 0 {
			w.firstNew = f.at
		}
		if w.firstGARP.IsZero() && f.kind == frameARP && f.garp && f.src == vip && net.HardwareAddr(f.srcMAC[:]).String() == newMAC.String() {
			w.firstGARP = f.at
		}
	}
	if w.firstNew.IsZero() {
		return w
	}
	for _, f := range frames {
		if f.kind == frameAdvert && f.src == oldIP && f.at.Before(w.firstNew) {
			w.lastOld, w.lastOldPrio = f.at, f.prio
		}
	}
	return w
}
