package e2e

// Crash/restart drills on a VRRP pair: two `fulcrum agent` processes (lb1
// 200, lb2 100, preemption on) on a bridge with a client, VRRPv3 at 100 ms,
// and a light UDP echo prober on the VIP. Cycles alternate the victim's
// role: an even cycle crashes the Master (lb1), an odd one the Backup (lb2).
// A crash is SIGKILL of the agent plus its cable pulled (a killed agent
// alone leaves the VIP answering); the victim comes back as a rebooted node
// (stale VIP gone, neighbour table empty, cable in, agent started). After
// every cycle exactly one node is Master and holds the VIP, steady for 3
// adverts, and every probe the client lost lies inside an outage window.
//
// Identifiers here start with dr (drill) so as not to collide with the
// other files of the package.

import (
	"context"
	encbin "encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/fulcrum-lb/fulcrum/lab/netns"
)

const (
	drPort     = 9000
	drInterval = 5 * time.Millisecond // the prober's pace: light
	// drGrace: a probe sent this shortly before the cable is pulled may
	// still be in flight (or queued at the echo server) when it goes.
	drGrace = 50 * time.Millisecond
	// drSettle: answers to probes sent this long ago have arrived.
	drSettle = 100 * time.Millisecond
)

// drEcho serves UDP echo on VIP:drPort inside h, bound with IP_FREEBIND
// before h holds the VIP: the kernel delivers to it only while h holds the
// VIP. Each answer is the probe plus id. tb's cleanup stops it.
func drEcho(t *testing.T, h *netns.Host, id byte) {
	t.Helper()
	var pc net.PacketConn
	err := h.Do(func() (err error) {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_FREEBIND, 1)
			}); err != nil {
				return err
			}
			return serr
		}}
		pc, err = lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("%s:%d", scVIP4.Addr(), drPort))
		return err
	})
	if err != nil {
		t.Fatalf("echo on %s: %v", h.Name, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return // closed by the cleanup
			}
			if n != 8 {
				continue
			}
			buf[n] = id
			_, _ = pc.WriteTo(buf[:n+1], from)
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
}

// drProbe is one probe: when it left and who answered it (0: nobody yet).
type drProbe struct {
	sent, answered time.Time
	from           byte
}

// drProber sends a probe (a sequence number) to VIP:drPort every
// drInterval from the client and records the answers. It stops by itself
// after maxRun, and at tb's cleanup.
type drProber struct {
	conn   *net.UDPConn
	stop   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	probes []drProbe // index = sequence number
}

func drStartProber(t *testing.T, client *netns.Host, maxRun time.Duration) *drProber {
	t.Helper()
	p := &drProber{stop: make(chan struct{})}
	err := client.Do(func() error {
		c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: scVIP4.Addr().AsSlice(), Port: drPort})
		p.conn = c
		return err
	})
	if err != nil {
		t.Fatalf("prober: %v", err)
	}
	p.wg.Add(2)
	go func() { // sender
		defer p.wg.Done()
		tick := time.NewTicker(drInterval)
		defer tick.Stop()
		end := time.After(maxRun)
		buf := make([]byte, 8)
		for {
			select {
			case <-p.stop:
				return
			case <-end:
				return
			case <-tick.C:
			}
			p.mu.Lock()
			seq := uint64(len(p.probes))
			p.probes = append(p.probes, drProbe{sent: time.Now()})
			p.mu.Unlock()
			encbin.BigEndian.PutUint64(buf, seq)
			// A refused or unreachable send is a lost probe like any other.
			_, _ = p.conn.Write(buf)
		}
	}()
	go func() { // receiver
		defer p.wg.Done()
		buf := make([]byte, 64)
		for {
			n, err := p.conn.Read(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue // ECONNREFUSED from an ICMP error, say
			}
			if n != 9 {
				continue
			}
			now := time.Now()
			seq := encbin.BigEndian.Uint64(buf[:8])
			p.mu.Lock()
			if seq < uint64(len(p.probes)) && p.probes[seq].from == 0 {
				p.probes[seq].answered, p.probes[seq].from = now, buf[8]
			}
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		close(p.stop)
		p.conn.Close()
		p.wg.Wait()
	})
	return p
}

// window returns the probes sent in [from, to).
func (p *drProber) window(from, to time.Time) []drProbe {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []drProbe
	for _, pr := range p.probes {
		if !pr.sent.Before(from) && pr.sent.Before(to) {
			out = append(out, pr)
		}
	}
	return out
}

// waitAnswer waits for an answer from lb `from` to a probe sent after
// after, and returns that probe.
func (p *drProber) waitAnswer(t *testing.T, from byte, after time.Time) drProbe {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		p.mu.Lock()
		var found *drProbe
		for i := range p.probes {
			pr := p.probes[i]
			if pr.from == from && pr.sent.After(after) {
				found = &pr
				break
			}
		}
		p.mu.Unlock()
		if found != nil {
			return *found
		}
		if time.Now().After(deadline) {
			t.Fatalf("the client had no answer from lb%d to a probe sent after %s", from, after.Format("15:04:05.000"))
		}
		time.Sleep(drInterval)
	}
}

// drGap is the client-visible outage of a handover to lb `to` at or after
// t0: from the last answer received before the new holder's first answer
// to that answer. ok is false when there is no such pair.
func drGap(probes []drProbe, t0 time.Time, to byte) (gap time.Duration, first drProbe, ok bool) {
	for _, pr := range probes {
		if pr.from == to && !pr.sent.Before(t0) && (first.from == 0 || pr.answered.Before(first.answered)) {
			first = pr
		}
	}
	if first.from == 0 {
		return 0, first, false
	}
	var last time.Time
	for _, pr := range probes {
		if pr.from != 0 && pr.answered.Before(first.answered) && pr.answered.After(last) {
			last = pr.answered
		}
	}
	if last.IsZero() {
		return 0, first, false
	}
	return first.answered.Sub(last), first, true
}

// drWindow is a span of send times in which lost probes are expected.
type drWindow struct{ from, to time.Time }

// drLost checks that every unanswered probe in probes was sent inside one
// of allowed, and returns how many were lost in all.
func drLost(t *testing.T, cycle int, probes []drProbe, allowed ...drWindow) int {
	t.Helper()
	lost := 0
	var stray []string
	for _, pr := range probes {
		if pr.from != 0 {
			continue
		}
		lost++
		if !slices.ContainsFunc(allowed, func(w drWindow) bool { return !pr.sent.Before(w.from) && !pr.sent.After(w.to) }) {
			stray = append(stray, pr.sent.Format("15:04:05.000000"))
		}
	}
	if len(stray) > 0 {
		var ws []string
		for _, w := range allowed {
			ws = append(ws, w.from.Format("15:04:05.000000")+"-"+w.to.Format("15:04:05.000000"))
		}
		t.Errorf("cycle %d: %d probe(s) lost outside the outage windows %v: sent at %v", cycle, len(stray), ws, stray)
	}
	return lost
}

// drFlushNeigh empties h's IPv4 neighbour table on its LAN interface, as a
// reboot would (an INCOMPLETE entry for the client, made while the cable
// was out, would otherwise hold back the first answers after it).
func drFlushNeigh(t *testing.T, h *netns.Host) {
	t.Helper()
	err := h.Netlink(func(nl *netlink.Handle) error {
		l, err := nl.LinkByName(h.Iface)
		if err != nil {
			return err
		}
		neighs, err := nl.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for i := range neighs {
			if err := nl.NeighDel(&neighs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: flush neighbours: %v", h.Name, err)
	}
}

// drCrash is the node's crash: SIGKILL of the agent and the cable pulled.
func drCrash(t *testing.T, lan *netns.LAN, n *vrrpNode) {
	t.Helper()
	if err := n.proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := lan.Unplug(n.host); err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.proc.Done():
	case <-time.After(hangGuard):
		t.Fatalf("%s: agent survived SIGKILL", n.host.Name)
	}
}

// drReboot brings a crashed node back: stale VIP removed, neighbour table
// flushed, cable in, agent started on the same config and socket.
func drReboot(t *testing.T, lan *netns.LAN, n *vrrpNode) {
	t.Helper()
	if holdsVIP(t, n.host) {
		if err := n.host.DelAddr(n.host.Iface, scVIP4.String()); err != nil {
			t.Fatalf("%s: remove the stale VIP: %v", n.host.Name, err)
		}
	}
	drFlushNeigh(t, n.host)
	if err := lan.Plug(n.host); err != nil {
		t.Fatal(err)
	}
	n.start(t, n.host.Command(context.Background(), binary, "agent", "-config", n.config, "-log-target", "stderr"))
}

// drStats is "median / p95 / max" of ds.
func drStats(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	p95 := s[max((95*len(s)+99)/100-1, 0)]
	r := func(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }
	return fmt.Sprintf("median %s, p95 %s, max %s (n=%d)", r(med), r(p95), r(s[len(s)-1]), len(s))
}

// TestVRRPCrashRestartDrills repeats crash/restart drills on the pair:
// FULCRUM_DRILL_CYCLES cycles (default 50), alternating a crash of the
// Master and of the Backup; see the top of this file.
func TestVRRPCrashRestartDrills(t *testing.T) {
	cycles := 50
	if v := os.Getenv("FULCRUM_DRILL_CYCLES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			t.Fatalf("FULCRUM_DRILL_CYCLES=%q: want 1 to 10000", v)
		}
		cycles = n
	}
	lan, h1, h2, client := scLAN4(t)
	vip := scVIP4.Addr()
	drEcho(t, h1, 1)
	drEcho(t, h2, 2)
	lb1 := scStart(t, h1, scBlock(200, scVIP4))
	lb2 := scStart(t, h2, scBlock(100, scVIP4))
	scElected(t, client, vip, lb1, lb2)
	// The prober stops by itself well after any plausible run.
	probe := drStartProber(t, client, time.Duration(cycles)*10*time.Second+time.Minute)
	probe.waitAnswer(t, 1, time.Now())
	scSteady(t, 3*scAdvert, vip, lb1, lb2)

	mdi := scMasterDown(100)
	var outages, takeovers, preempts, masterCycles, backupCycles []time.Duration
	lostTotal := 0
	started := time.Now()
	cycleStart := time.Now()
	for c := 0; c < cycles; c++ {
		if c%2 == 0 {
			// The Master crashes: lb2 takes over after Master_Down_Interval;
			// lb1 comes back and preempts.
			cut := time.Now()
			drCrash(t, lan, lb1)
			in2 := scWaitState(t, lb2, "master", cut)
			scExpectReason(t, lb2, in2, "master_down")
			if !holdsVIP(t, h2) {
				t.Fatalf("cycle %d: lb2 is master without the VIP", c)
			}
			first2 := probe.waitAnswer(t, 2, cut)
			back := time.Now()
			drReboot(t, lan, lb1)
			scWaitState(t, lb1, "master", back)
			scWaitState(t, lb2, "backup", back)
			scOnly(t, vip, h1, h1, h2)
			first1 := probe.waitAnswer(t, 1, back)
			scSteady(t, 3*scAdvert, vip, lb1, lb2)
			end := time.Now().Add(-drSettle)
			probes := probe.window(cycleStart, end)
			lost := drLost(t, c, probes, drWindow{cut.Add(-drGrace), first2.sent}, drWindow{back, first1.sent})
			lostTotal += lost
			// The gaps look back before the cycle: its first probes follow the cut at once.
			around := probe.window(cycleStart.Add(-time.Second), end)
			outage, _, ok := drGap(around, cut, 2)
			if !ok {
				t.Fatalf("cycle %d: no client-visible handover to lb2", c)
			}
			preempt, _, pok := drGap(around, back, 1)
			takeover := in2.changedAt().Sub(cut)
			outages, takeovers = append(outages, outage), append(takeovers, takeover)
			if pok {
				preempts = append(preempts, preempt)
			}
			if outage > mdi+time.Second {
				t.Errorf("cycle %d: outage %s, far beyond Master_Down_Interval %s", c, outage, mdi)
			}
			d := time.Since(cycleStart)
			masterCycles = append(masterCycles, d)
			t.Logf("cycle %2d master crash: lb2 master after %s, client outage %s (%d probes lost), preempt-back %s; cycle %s",
				c, takeover.Round(time.Millisecond), outage.Round(100*time.Microsecond), lost, preempt.Round(100*time.Microsecond), d.Round(time.Millisecond))
			cycleStart = end
		} else {
			// The Backup crashes: lb1 stays Master, the client sees nothing.
			before := scRead(t, lb1)
			drCrash(t, lan, lb2)
			// lb1 alone for 2 adverts: still Master, no transition.
			scSteady(t, 2*scAdvert, vip, lb1)
			back := time.Now()
			drReboot(t, lan, lb2)
			scWait(t, lb2, "backup", func(in scInst) bool { return in.State == "backup" })
			scSteady(t, 3*scAdvert, vip, lb1, lb2)
			if in1 := scRead(t, lb1); in1.Counters.Transitions != before.Counters.Transitions {
				t.Errorf("cycle %d: lb1 changed state %d times while lb2 crashed and came back", c, in1.Counters.Transitions-before.Counters.Transitions)
			}
			end := time.Now().Add(-drSettle)
			lost := drLost(t, c, probe.window(cycleStart, end))
			lostTotal += lost
			d := time.Since(cycleStart)
			backupCycles = append(backupCycles, d)
			t.Logf("cycle %2d backup crash: lb1 stayed master, lb2 back as backup %s after the reboot, %d probes lost; cycle %s",
				c, time.Since(back).Round(time.Millisecond), lost, d.Round(time.Millisecond))
			cycleStart = end
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	t.Logf("%d cycles in %s (load %s): %d probes lost in all, all inside the outage windows", cycles, time.Since(started).Round(time.Millisecond), drLoad(), lostTotal)
	t.Logf("master crash: lb2 master after crash: %s", drStats(takeovers))
	t.Logf("master crash: client outage:          %s; protocol bound Master_Down_Interval %s", drStats(outages), mdi)
	t.Logf("preempt-back: client outage:          %s", drStats(preempts))
	t.Logf("cycle time: master crash %s; backup crash %s", drStats(masterCycles), drStats(backupCycles))
}

// drLoad is the 1-minute load average, "?" if unknown.
func drLoad() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil || len(b) < 4 {
		return "?"
	}
	f := string(b)
	for i, r := range f {
		if r == ' ' {
			return f[:i]
		}
	}
	return f
}
