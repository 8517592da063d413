package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/fulcrum-lb/fulcrum/vrrp"
	"github.com/fulcrum-lb/fulcrum/vrrp/netio"
)

// vrrpIOSpec says what network I/O one VRRP instance needs.
type vrrpIOSpec struct {
	instance string
	vrid     uint8
	iface    string
	family   int // 4 or 6
	unicast  bool
	source   netip.Addr // the configured unicast source; invalid: the interface's
	peers    []netip.Addr
	devices  []string // every device a VIP of the instance goes on
}

// vrrpIO is one instance's network I/O: the instance's Deps, less what the
// agent adds, plus its primary address.
type vrrpIO struct {
	transport vrrp.Transport
	// source is the address advertisements are sent from: the instance's
	// primary address (RFC 5798 §6.4.3 tie-break).
	source    netip.Addr
	addrs     vrrp.AddressManager
	watcher   vrrp.AddressWatcher
	announcer vrrp.Announcer
	links     vrrp.LinkWatcher
	// release frees what the instance does not own (announcer sockets),
	// after the instance stopped.
	release func()
}

// vipSetter is implemented by announcers that must know on which device
// each VIP lives.
type vipSetter interface{ setVIPs([]vrrp.VIP) }

// vrrpIOFactory opens the I/O of instances: netio (raw sockets, netlink,
// AF_PACKET) in production, in-memory fakes in tests.
type vrrpIOFactory interface {
	open(spec vrrpIOSpec) (*vrrpIO, error)
	// unknownVRIDs counts packets per interface that no instance claimed
	// (RFC 5798 §7.1 "MUST verify that the VRID is configured").
	unknownVRIDs() map[string]uint64
	close()
}

// netioFactory is the production vrrpIOFactory. Instances that share an
// interface, family and mode share one raw socket (a connMux): the kernel
// hands every raw socket a copy of every VRRP packet on the link, so one
// socket per instance would make each read and drop the others' adverts.
type netioFactory struct {
	log *slog.Logger

	mu    sync.Mutex
	nl    *netlink.Handle
	muxes map[muxKey]*connMux
	// unknown accumulates the counts of muxes that closed.
	unknown map[string]uint64
}

func newNetioFactory(log *slog.Logger) *netioFactory {
	return &netioFactory{log: log, muxes: map[muxKey]*connMux{}, unknown: map[string]uint64{}}
}

func (f *netioFactory) handle() (*netlink.Handle, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.nl == nil {
		nl, err := netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("netlink: %w", err)
		}
		f.nl = nl
	}
	return f.nl, nil
}

func (f *netioFactory) open(spec vrrpIOSpec) (*vrrpIO, error) {
	nl, err := f.handle()
	if err != nil {
		return nil, err
	}
	addrs := &netlinkAddrs{log: f.log, mgrs: map[string]*netio.VIPManager{}}
	for _, dev := range append([]string{spec.iface}, spec.devices...) {
		if _, ok := addrs.mgrs[dev]; ok {
			continue
		}
		m, err := netio.NewVIPManager(nl, dev)
		if err != nil {
			return nil, err
		}
		addrs.mgrs[dev] = m
	}
	tr, src, err := f.subscribe(spec)
	if err != nil {
		return nil, err
	}
	ann := &deviceAnnouncer{log: f.log, iface: spec.iface, family: spec.family, anns: map[string]*netio.RawAnnouncer{}}
	return &vrrpIO{
		transport: tr,
		source:    src,
		addrs:     addrs,
		watcher:   addrs,
		announcer: ann,
		links:     netioLinks{log: f.log},
		release:   ann.close,
	}, nil
}

func (f *netioFactory) unknownVRIDs() map[string]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]uint64, len(f.unknown)+len(f.muxes))
	for k, n := range f.unknown {
		out[k] = n
	}
	for k, m := range f.muxes {
		out[k.iface] += m.unknown.Load()
	}
	return out
}

func (f *netioFactory) close() {
	f.mu.Lock()
	muxes := make([]*connMux, 0, len(f.muxes))
	for _, m := range f.muxes {
		muxes = append(muxes, m)
	}
	nl := f.nl
	f.nl = nil
	f.mu.Unlock()
	for _, m := range muxes {
		m.shut()
	}
	if nl != nil {
		nl.Close()
	}
}

// muxKey identifies a shareable socket.
type muxKey struct {
	iface   string
	family  int
	unicast bool
	source  netip.Addr
	peers   string
}

// subscribe joins (or opens) the socket of spec.
func (f *netioFactory) subscribe(spec vrrpIOSpec) (*muxSub, netip.Addr, error) {
	var peers []string
	for _, p := range spec.peers {
		peers = append(peers, p.String())
	}
	key := muxKey{iface: spec.iface, family: spec.family, unicast: spec.unicast, source: spec.source, peers: strings.Join(peers, ",")}
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.muxes[key]
	if m == nil {
		// The socket outlives Apply: it lives until its last subscriber
		// leaves.
		ctx, cancel := context.WithCancel(context.Background())
		conn, err := netio.Listen(ctx, netio.ConnOptions{
			Family: spec.family, Interface: spec.iface, Unicast: spec.unicast, Source: spec.source, Peers: spec.peers,
		})
		if err != nil {
			cancel()
			return nil, netip.Addr{}, fmt.Errorf("vrrp_instance %q: %w", spec.instance, err)
		}
		m = &connMux{key: key, f: f, conn: conn, cancel: cancel, done: make(chan struct{}), subs: map[uint8][]*muxSub{}, log: f.log}
		f.muxes[key] = m
		go m.read(ctx)
	}
	return m.subscribe(spec.vrid), m.conn.Source(), nil
}

// connMux is one raw socket shared by the instances of one interface,
// family and mode. Its reader goroutine demultiplexes by VRID (octet 1 of
// the VRRP message, RFC 5798 §5.1) onto the subscribers' queues.
type connMux struct {
	key    muxKey
	f      *netioFactory
	conn   *netio.RawConn
	cancel context.CancelFunc
	done   chan struct{} // closed when the reader returns
	log    *slog.Logger

	mu      sync.Mutex
	subs    map[uint8][]*muxSub
	n       int
	unknown atomic.Uint64
}

// muxQueue is how many packets a subscriber may fall behind before the
// mux drops for it, like a full socket buffer.
const muxQueue = 256

// subscribe adds a subscriber for vrid. Two may share a VRID for a
// moment, while a reload replaces an instance.
func (m *connMux) subscribe(vrid uint8) *muxSub {
	s := &muxSub{m: m, vrid: vrid, ch: make(chan vrrp.Received, muxQueue), closed: make(chan struct{})}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.subs[vrid] = append(m.subs[vrid], s)
	m.n++
	return s
}

func (m *connMux) read(ctx context.Context) {
	defer close(m.done)
	var lastErr time.Time
	for {
		p, err := m.conn.Recv(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			if time.Since(lastErr) > 10*time.Second {
				m.log.Warn("vrrp socket receive failed", slog.String("interface", m.key.iface), slog.Any("error", err))
			}
			lastErr = time.Now()
			t := time.NewTimer(100 * time.Millisecond)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		r := vrrp.Received{Payload: p.Payload, Src: p.Src, Dst: p.Dst, TTL: p.TTL}
		m.mu.Lock()
		var subs []*muxSub
		if len(p.Payload) >= 2 {
			subs = m.subs[p.Payload[1]]
		}
		for _, s := range subs {
			select {
			case s.ch <- r:
			default:
				s.dropped.Add(1)
			}
		}
		m.mu.Unlock()
		if len(subs) == 0 {
			m.unknown.Add(1)
		}
	}
}

// leave removes s; the last subscriber closes the socket.
func (m *connMux) leave(s *muxSub) {
	m.mu.Lock()
	m.subs[s.vrid] = slices.DeleteFunc(m.subs[s.vrid], func(x *muxSub) bool { return x == s })
	if len(m.subs[s.vrid]) == 0 {
		delete(m.subs, s.vrid)
	}
	m.n--
	last := m.n == 0
	m.mu.Unlock()
	if !last {
		return
	}
	m.f.mu.Lock()
	if m.f.muxes[m.key] == m {
		delete(m.f.muxes, m.key)
		m.f.unknown[m.key.iface] += m.unknown.Load()
	}
	m.f.mu.Unlock()
	m.shut()
}

func (m *connMux) shut() {
	m.cancel()
	m.conn.Close()
	<-m.done
}

// muxSub is one instance's view of a connMux: its vrrp.Transport.
type muxSub struct {
	m       *connMux
	ch      chan vrrp.Received
	closed  chan struct{}
	once    sync.Once
	vrid    uint8
	dropped atomic.Uint64
}

var _ vrrp.Transport = (*muxSub)(nil)

func (s *muxSub) Recv(ctx context.Context) (vrrp.Received, error) {
	select {
	case r := <-s.ch:
		return r, nil
	case <-s.closed:
		return vrrp.Received{}, net.ErrClosed
	case <-s.m.done:
		return vrrp.Received{}, fmt.Errorf("vrrp socket on %s closed: %w", s.m.key.iface, net.ErrClosed)
	case <-ctx.Done():
		return vrrp.Received{}, ctx.Err()
	}
}

func (s *muxSub) Send(payload []byte, dst netip.Addr) error { return s.m.conn.Send(payload, dst) }

func (s *muxSub) Close() error {
	s.once.Do(func() {
		close(s.closed)
		s.m.leave(s)
	})
	return nil
}

// netlinkAddrs installs VIPs with one netio.VIPManager per device.
type netlinkAddrs struct {
	log  *slog.Logger
	mgrs map[string]*netio.VIPManager // fixed after open
}

var (
	_ vrrp.AddressManager = (*netlinkAddrs)(nil)
	_ vrrp.AddressWatcher = (*netlinkAddrs)(nil)
)

func (a *netlinkAddrs) mgr(v vrrp.VIP) (*netio.VIPManager, error) {
	m, ok := a.mgrs[v.Device]
	if !ok {
		return nil, fmt.Errorf("VIP %s: device %q not opened", v, v.Device)
	}
	return m, nil
}

func (a *netlinkAddrs) Add(_ context.Context, vips []vrrp.VIP) error {
	var errs []error
	for _, v := range vips {
		m, err := a.mgr(v)
		if err == nil {
			err = m.Add(netio.VIP{Prefix: v.Prefix, Label: v.Label})
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (a *netlinkAddrs) Remove(_ context.Context, vips []vrrp.VIP) error {
	var errs []error
	for _, v := range vips {
		m, err := a.mgr(v)
		if err == nil {
			err = m.Remove(netio.VIP{Prefix: v.Prefix, Label: v.Label})
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// WatchRemoved watches every device's manager until ctx ends.
func (a *netlinkAddrs) WatchRemoved(ctx context.Context, removed func(netip.Addr)) error {
	var wg sync.WaitGroup
	var errs []error
	for dev, m := range a.mgrs {
		ch, err := m.Watch(ctx, netio.WatchOptions{OnError: func(err error) {
			a.log.Log(ctx, watchErrorLevel(err), "watching virtual addresses", slog.String("interface", dev), slog.Any("error", err))
		}})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		wg.Go(func() {
			for ev := range ch {
				removed(ev.VIP.Addr())
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return ctx.Err()
}

// deviceAnnouncer announces each VIP on its own device, opening one
// netio.RawAnnouncer per device on first use.
type deviceAnnouncer struct {
	log    *slog.Logger
	iface  string
	family int

	mu     sync.Mutex
	device map[netip.Addr]string
	anns   map[string]*netio.RawAnnouncer
	closed bool
}

var _ vrrp.Announcer = (*deviceAnnouncer)(nil)

func (d *deviceAnnouncer) setVIPs(vips []vrrp.VIP) {
	m := make(map[netip.Addr]string, len(vips))
	for _, v := range vips {
		dev := v.Device
		if dev == "" {
			dev = d.iface
		}
		m[v.Addr()] = dev
	}
	d.mu.Lock()
	d.device = m
	d.mu.Unlock()
}

// announcer returns the device's announcer, opening it if needed. For IPv6
// the Router flag follows the device's forwarding setting, as keepalived
// does (RFC 4861 §7.2.6: an unsolicited NA carries the real IsRouter).
func (d *deviceAnnouncer) announcer(ctx context.Context, dev string) (*netio.RawAnnouncer, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, net.ErrClosed
	}
	if a := d.anns[dev]; a != nil {
		return a, nil
	}
	router := false
	if d.family == 6 {
		b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + dev + "/forwarding")
		router = err == nil && strings.TrimSpace(string(b)) == "1"
	}
	a, err := netio.NewAnnouncer(ctx, netio.AnnouncerOptions{Interface: dev, Router: router})
	if err != nil {
		return nil, err
	}
	d.anns[dev] = a
	return a, nil
}

func (d *deviceAnnouncer) Announce(ctx context.Context, addrs []netip.Addr) error {
	d.mu.Lock()
	byDev := map[string][]netip.Addr{}
	var order []string
	for _, a := range addrs {
		dev := d.device[a]
		if dev == "" {
			dev = d.iface
		}
		if _, ok := byDev[dev]; !ok {
			order = append(order, dev)
		}
		byDev[dev] = append(byDev[dev], a)
	}
	d.mu.Unlock()
	var errs []error
	for _, dev := range order {
		a, err := d.announcer(ctx, dev)
		if err == nil {
			err = a.Announce(ctx, byDev[dev])
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (d *deviceAnnouncer) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	for dev, a := range d.anns {
		if err := a.Close(); err != nil {
			d.log.Warn("closing announcer", slog.String("interface", dev), slog.Any("error", err))
		}
	}
	d.anns = nil
}

// netioLinks is the vrrp.LinkWatcher of netio: a link is up when it is
// administratively up and running (IFF_UP and IFF_RUNNING), as keepalived
// reads it.
type netioLinks struct{ log *slog.Logger }

var _ vrrp.LinkWatcher = netioLinks{}

// LinkUp reports a missing link as down with the lookup error.
func (netioLinks) LinkUp(name string) (bool, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return false, err
	}
	return ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagRunning != 0, nil
}

func (l netioLinks) WatchLinks(ctx context.Context, names []string, changed func(string, bool)) error {
	ch, err := netio.WatchLinks(ctx, netio.WatchOptions{OnError: func(err error) {
		l.log.Log(ctx, watchErrorLevel(err), "watching links", slog.Any("error", err))
	}}, names...)
	if err != nil {
		return err
	}
	for ev := range ch {
		changed(ev.Name, ev.Up && !ev.Deleted)
	}
	return ctx.Err()
}

// watchErrorLevel is the log level of a netlink watch's error report: what
// the netlink library reports while its subscription goes on (mostly a
// message it skipped, such as one from a sender that is not the kernel, seen
// at start-up on Debian's 6.1 kernel) is a debug line; anything else, a lost
// subscription above all, is a warning.
func watchErrorLevel(err error) slog.Level {
	if errors.Is(err, netio.ErrSubscriptionNotice) {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}
