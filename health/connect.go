package health

import (
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A plain TCP connect check (TCP without Send or Expect, keepalived's TCP_CHECK) is the bulk of
// a load balancer's checks. Run through Checker.Check, each run costs a worker handoff, a
// context with its runtime timer, a net.Dialer with its own goroutines and netpoller
// registration, and a few allocations. The Scheduler runs these checks on a connector instead:
// one goroutine and one epoll instance for all of them, as keepalived's checker does with its
// single thread: a nonblocking socket and connect per run, an event when the handshake ends,
// a timer heap for the ones that never answer, and the results handed back in batches.

// connectReq is one run of a plain connect check for a connector. e and due are the
// Scheduler's, handed back as they are in the completion.
type connectReq struct {
	e       *entry
	due     time.Time
	target  netip.AddrPort
	dial    *DialOptions
	timeout time.Duration // from the connect call: a batch's later connects start later
}

// connector runs plain TCP connect checks without a goroutine per run. The Scheduler's epoll
// engine is the real one; tests use a fake.
//
// One goroutine, run's, owns both the plain connect checks' due times (through host) and their
// sockets, as keepalived's checker does timers and I/O in one thread: it takes the runs that are
// due and starts them, collects the finished ones, hands them back, and sleeps until the next
// due time or connect deadline. A batch of checks costs one wake-up of one goroutine, with no
// hand-off between a scheduling goroutine and an I/O goroutine.
type connector interface {
	// run serves until ctx ends: it starts the runs host.dueConnects returns, calls
	// host.connected with batches of finished runs (host does not keep the slice), and sleeps
	// until the next due time host.dueConnects gave, a connect's deadline or wake. Then it
	// closes every socket still open and returns; runs still in progress are dropped. host is
	// only called from run's goroutine, and with none of the connector's locks held.
	run(ctx context.Context, host connectHost)
	// wake makes run ask host.dueConnects again soon: a due time may have moved earlier than
	// it sleeps until. Safe for concurrent use, also before run and after it returned.
	wake()
}

// connectHost is the Scheduler's side of a connector.
type connectHost interface {
	// dueConnects appends the runs due now (within the slack), at most limit, to reqs, marks
	// them running and returns them, with the due time of the next plain connect check left
	// waiting (zero: none).
	dueConnects(reqs []connectReq, limit int) ([]connectReq, time.Time)
	// connected takes a batch of finished runs in.
	connected(batch []completion)
}

// connectOnly is implemented by checkers whose run is a plain TCP connect: the target and the
// dial options, and whether a connector can run it.
type connectOnly interface {
	connectOnly() (netip.AddrPort, *DialOptions, bool)
}

// connectOnly reports a TCP check without Send or Expect. Zoned (link-local IPv6) addresses
// stay with the dialer, which resolves the zone.
func (c *tcpChecker) connectOnly() (netip.AddrPort, *DialOptions, bool) {
	if len(c.send) > 0 || c.expect != nil || c.target.Addr().Zone() != "" || c.dial.Source.Zone() != "" {
		return netip.AddrPort{}, nil, false
	}
	return c.target, &c.dial, true
}

// errConnectTimeout is the Err of a connect that had no answer by its deadline; it is
// os.ErrDeadlineExceeded, as a net.Dialer reports it ("i/o timeout"), so it classifies as
// ReasonTimeout.
var errConnectTimeout error = os.ErrDeadlineExceeded

// epollConnector is the real connector: nonblocking sockets registered on one epoll instance,
// served by the goroutine in run, which also creates and connects the sockets of the runs that
// are due, waits for their events and their deadlines.
type epollConnector struct {
	epfd int // epoll instance of the sockets and evfd
	// run parks in Go's netpoller like any goroutine waiting for a socket, instead of blocking
	// a thread in epoll_wait: a thread blocked in a system call makes the runtime's sysmon
	// take its P away and poll every 20 µs for a while after; at hundreds of waits a second
	// that is a steady cost, heavy under emulation. The netpoller does not hold epfd itself
	// but gate, an epoll instance whose only entry is epfd, armed (EPOLLIN) only while run
	// parks. Held directly, every socket event on epfd would also wake the netpoller (which
	// holds it edge-triggered): a thread of the runtime blocked there woke for nearly every
	// connect of a batch while run was busy starting and reaping them, only to find nothing
	// to do. Disarmed, epfd's events stop at gate.
	gate int
	ep   *os.File        // gate, in the netpoller
	rc   syscall.RawConn // ep's; nil when the netpoller refused it: run blocks in epoll_wait on epfd
	evfd int             // eventfd that wakes run: ctx ended, or wake

	// mu guards what wake and shutdown share with run; the rest is run's alone.
	mu     sync.Mutex
	closed bool
	woken  bool // an eventfd write is pending; one is enough

	conns []*pendingConn // by file descriptor; nil when not a connect in progress
	byDue connHeap       // connects in progress by deadline
	free  []*pendingConn // recycled records
	gen   uint32         // tells a reused descriptor's events from its predecessor's
}

type pendingConn struct {
	fd        int
	gen       uint32
	e         *entry
	due       time.Time
	target    netip.AddrPort
	start     time.Time
	deadline  time.Time
	heapIndex int
}

func newEpollConnector() (*epollConnector, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("health: epoll_create1: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("health: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evfd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(evfd)
		unix.Close(epfd)
		return nil, fmt.Errorf("health: epoll_ctl eventfd: %w", err)
	}
	c := &epollConnector{epfd: epfd, gate: -1, evfd: evfd}
	if gate, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC); err == nil {
		ev := unix.EpollEvent{Fd: int32(epfd)} // disarmed
		if unix.EpollCtl(gate, unix.EPOLL_CTL_ADD, epfd, &ev) != nil || unix.SetNonblock(gate, true) != nil {
			unix.Close(gate)
		} else {
			c.gate = gate
			c.ep = os.NewFile(uintptr(gate), "health-epoll")
			if rc, err := c.ep.SyscallConn(); err == nil && c.ep.SetReadDeadline(time.Time{}) == nil {
				c.rc = rc // SetReadDeadline fails on a file the netpoller does not hold
			}
		}
	}
	return c, nil
}

// arm sets the events gate watches on epfd: EPOLLIN while run parks, none while it runs.
func (c *epollConnector) arm(events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(c.epfd)}
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(c.gate), unix.EPOLL_CTL_MOD, uintptr(c.epfd),
		uintptr(unsafe.Pointer(&ev)), 0, 0)
	if e != 0 {
		return os.NewSyscallError("epoll_ctl", e)
	}
	return nil
}

// wait fills events with what is ready, waiting until the deadline at the latest (not at all
// when it has passed), and returns how many it filled.
func (c *epollConnector) wait(events []unix.EpollEvent, deadline time.Time) (int, error) {
	// What is ready already (most of a batch on near targets) needs no park.
	if n, err := rawEpollPoll(c.epfd, events); n != 0 || err != nil && !errors.Is(err, unix.EINTR) {
		return n, err
	}
	d := time.Until(deadline)
	if d <= 0 {
		return 0, nil
	}
	if c.rc == nil {
		// epoll_wait counts whole milliseconds: round up, so that a deadline is never checked
		// before it has passed (a timeout is at most 1 ms late, plus scheduling).
		return unix.EpollWait(c.epfd, events, int((d+time.Millisecond-1)/time.Millisecond))
	}
	if err := c.ep.SetReadDeadline(deadline); err != nil {
		return 0, err
	}
	// Armed, an event on epfd makes gate readable (also one that came since the poll above:
	// arming checks epfd at once).
	if err := c.arm(unix.EPOLLIN); err != nil {
		return 0, err
	}
	defer c.arm(0)
	var (
		n    int
		werr error
	)
	err := c.rc.Read(func(uintptr) bool {
		n, werr = rawEpollPoll(c.epfd, events)
		// Nothing ready: park in the netpoller until the epoll instance is readable.
		return n != 0 || (werr != nil && !errors.Is(werr, unix.EINTR))
	})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return n, werr
}

// wake makes run's epoll_wait return. c.mu must be held.
func (c *epollConnector) wakeLocked() {
	if c.woken {
		return
	}
	c.woken = true
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(c.evfd, one[:])
}

// wake makes run's epoll_wait return.
func (c *epollConnector) wake() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed { // the eventfd is closed, its number maybe reused
		c.wakeLocked()
	}
}

// start begins the runs of reqs, from run's goroutine, and appends the runs that failed at once
// to failed.
func (c *epollConnector) start(reqs []connectReq, failed []completion) []completion {
	for i := range reqs {
		r := &reqs[i]
		start := time.Now()
		fd, err := c.connect(r)
		if err != nil {
			failed = append(failed, c.failure(r.e, r.due, start, r.target, err))
			continue
		}
		p := c.record()
		c.gen++
		// The deadline counts from this connect, not from the batch's dispatch: on a saturated
		// machine the last connects of a large batch start long after the first, and a
		// deadline from the dispatch timed them out a millisecond after they were sent.
		*p = pendingConn{fd: fd, gen: c.gen, e: r.e, due: r.due, target: r.target, start: start, deadline: start.Add(r.timeout)}
		// One event per connect (EPOLLONESHOT): run closes the socket after it has read every
		// ready event, and level-triggered, a socket not yet closed would come back in every
		// read, so that with maxEvents of them waiting the reads never ran dry. A socket whose
		// file a forked child still holds for an instant after its close also reports once.
		ev := unix.EpollEvent{Events: unix.EPOLLOUT | unix.EPOLLONESHOT, Fd: int32(fd), Pad: int32(p.gen)}
		if err := rawEpollAdd(c.epfd, fd, &ev); err != nil {
			rawClose(fd)
			*p = pendingConn{}
			c.free = append(c.free, p)
			failed = append(failed, c.failure(r.e, r.due, start, r.target, os.NewSyscallError("epoll_ctl", err)))
			continue
		}
		for fd >= len(c.conns) {
			c.conns = append(c.conns, nil)
		}
		c.conns[fd] = p
		heap.Push(&c.byDue, p)
	}
	return failed
}

// record returns a free record.
func (c *epollConnector) record() *pendingConn {
	if n := len(c.free); n > 0 {
		p := c.free[n-1]
		c.free = c.free[:n-1]
		return p
	}
	return new(pendingConn)
}

// forget removes the connect of fd (generation gen) and returns it, or nil if it was not
// pending.
func (c *epollConnector) forget(fd int, gen uint32) *pendingConn {
	if fd < 0 || fd >= len(c.conns) || c.conns[fd] == nil || c.conns[fd].gen != gen {
		return nil
	}
	p := c.conns[fd]
	c.conns[fd] = nil
	heap.Remove(&c.byDue, p.heapIndex)
	return p
}

// connect makes a nonblocking socket with the check's options and starts its connect.
func (c *epollConnector) connect(r *connectReq) (fd int, err error) {
	mk := func() error {
		fd, err = openConnect(r.target, r.dial)
		return err
	}
	if r.dial.Do != nil {
		err = r.dial.Do(mk)
	} else {
		err = mk()
	}
	return fd, err
}

// openConnect is socket, options, bind and connect; on error the socket is closed.
func openConnect(target netip.AddrPort, o *DialOptions) (int, error) {
	family := unix.AF_INET6
	if target.Addr().Unmap().Is4() {
		family = unix.AF_INET
	}
	fd, err := rawSocket(family)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	fail := func(err error) (int, error) {
		rawClose(fd)
		return -1, err
	}
	// Close with a RST, as the dialer path does with SetLinger(0) and keepalived does: no
	// TIME_WAIT left on this side for every check.
	if err := rawLingerZero(fd); err != nil {
		return fail(os.NewSyscallError("setsockopt SO_LINGER", err))
	}
	if o.Mark != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(o.Mark)); err != nil {
			return fail(fmt.Errorf("set SO_MARK %#x: %w", o.Mark, err))
		}
	}
	if o.Interface != "" {
		if err := unix.BindToDevice(fd, o.Interface); err != nil {
			return fail(fmt.Errorf("bind to device %q: %w", o.Interface, err))
		}
	}
	if o.Source.IsValid() {
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(o.Source, 0), family)); err != nil {
			return fail(os.NewSyscallError("bind", err))
		}
	}
	switch err := rawConnect(fd, target, family); {
	case err == nil, errors.Is(err, unix.EINPROGRESS):
		// Connected at once or in progress: the socket becomes writable either way.
		return fd, nil
	default:
		return fail(os.NewSyscallError("connect", err))
	}
}

func sockaddr(ap netip.AddrPort, family int) unix.Sockaddr {
	if family == unix.AF_INET {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// failure is the completion of a run that failed with err.
func (c *epollConnector) failure(e *entry, due, start time.Time, target netip.AddrPort, err error) completion {
	end := time.Now()
	err = &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(target), Err: err}
	o, r := classify(err)
	return completion{e: e, due: due, end: end,
		res: Result{Outcome: o, Reason: r, Detail: err.Error(), Latency: end.Sub(start), Err: err}}
}

// maxEvents is how many events one epoll_wait returns at most; more wait for the next call.
const maxEvents = 256

// maxStarts is how many runs one turn of run starts at most. On a machine too slow for the
// schedule every check is overdue; without a bound one turn would start them all, for seconds,
// before it reaps any, and results would come late and in bursts.
const maxStarts = 2 * maxEvents

// idleWait bounds run's sleep: a missed wake costs at most this much delay, never a stall.
const idleWait = 100 * time.Millisecond

func (c *epollConnector) run(ctx context.Context, host connectHost) {
	stop := context.AfterFunc(ctx, c.wake)
	defer stop()
	defer c.shutdown()
	var (
		events [maxEvents]unix.EpollEvent
		reqs   []connectReq
		batch  []completion
		ready  []*pendingConn // finished, to close and report
		errs   []bool         // ready[i] reported EPOLLERR or EPOLLHUP
		next   time.Time
	)
	for ctx.Err() == nil {
		// Start what is due. On loopback and near targets most handshakes are done by the
		// time the wait below looks, so their events come without parking.
		reqs, next = host.dueConnects(reqs[:0], maxStarts)
		if len(reqs) > 0 {
			batch = c.start(reqs, batch)
			clear(reqs)
		}
		now := time.Now()
		until := now.Add(idleWait)
		if !next.IsZero() && next.Before(until) {
			until = next
		}
		if len(c.byDue) > 0 && c.byDue[0].deadline.Before(until) {
			until = c.byDue[0].deadline
		}
		if len(batch) > 0 {
			until = now // deliver the failures at once
		}

		n, err := c.wait(events[:], until)
		if err != nil && !errors.Is(err, unix.EINTR) {
			// Not expected (EBADF, EFAULT, EINVAL would be bugs): back off rather than spin.
			time.Sleep(10 * time.Millisecond)
		}
		now = time.Now()
		// Take every event that is ready before looking at deadlines: a connect that has
		// answered is not timed out because its event was past the first maxEvents.
		for {
			for i := range max(n, 0) {
				ev := &events[i]
				fd := int(ev.Fd)
				if fd == c.evfd {
					var buf [8]byte
					c.mu.Lock()
					_, _ = unix.Read(c.evfd, buf[:])
					c.woken = false
					c.mu.Unlock()
					continue
				}
				p := c.forget(fd, uint32(ev.Pad))
				if p == nil {
					continue
				}
				ready = append(ready, p)
				errs = append(errs, ev.Events&(unix.EPOLLERR|unix.EPOLLHUP) != 0)
			}
			if n < len(events) {
				break
			}
			if n, err = rawEpollPoll(c.epfd, events[:]); err != nil {
				break
			}
		}
		// Deadlines: a connect with no answer by then has timed out.
		for len(c.byDue) > 0 && !c.byDue[0].deadline.After(now) {
			p := heap.Pop(&c.byDue).(*pendingConn)
			c.conns[p.fd] = nil
			ready = append(ready, p)
			errs = append(errs, false)
			p.heapIndex = -2 // timed out
		}

		for i, p := range ready {
			var res Result
			switch {
			case p.heapIndex == -2:
				res = c.failure(p.e, p.due, p.start, p.target, errConnectTimeout).res
			case errs[i]:
				soerr, err := unix.GetsockoptInt(p.fd, unix.SOL_SOCKET, unix.SO_ERROR)
				switch {
				case err != nil:
					res = c.failure(p.e, p.due, p.start, p.target, os.NewSyscallError("getsockopt SO_ERROR", err)).res
				case soerr != 0:
					res = c.failure(p.e, p.due, p.start, p.target, os.NewSyscallError("connect", unix.Errno(soerr))).res
				default:
					// Hung up after connecting: the handshake completed, which is all a
					// connect check asks.
					res = Result{Outcome: OutcomeHealthy, Detail: "connected", Latency: now.Sub(p.start)}
				}
			default:
				res = Result{Outcome: OutcomeHealthy, Detail: "connected", Latency: now.Sub(p.start)}
			}
			rawClose(p.fd)
			batch = append(batch, completion{e: p.e, due: p.due, end: p.start.Add(res.Latency), res: res})
			*p = pendingConn{}
			c.free = append(c.free, p)
		}
		clear(ready)
		ready, errs = ready[:0], errs[:0]
		if len(batch) > 0 && ctx.Err() == nil {
			host.connected(batch)
		}
		clear(batch)
		batch = batch[:0]
	}
}

// shutdown closes every socket still connecting and the engine's own descriptors.
func (c *epollConnector) shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for _, p := range c.byDue {
		unix.Close(p.fd)
	}
	c.byDue, c.conns, c.free = nil, nil, nil
	unix.Close(c.evfd)
	unix.Close(c.epfd)
	if c.ep != nil {
		c.ep.Close() // closes gate
	} else if c.gate >= 0 {
		unix.Close(c.gate)
	}
}

// connHeap orders connects in progress by deadline.
type connHeap []*pendingConn

func (h connHeap) Len() int           { return len(h) }
func (h connHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h connHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIndex, h[j].heapIndex = i, j
}
func (h *connHeap) Push(x any) {
	p := x.(*pendingConn)
	p.heapIndex = len(*h)
	*h = append(*h, p)
}
func (h *connHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	p.heapIndex = -1
	return p
}
