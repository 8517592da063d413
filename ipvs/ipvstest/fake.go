// Package ipvstest holds fakes for package ipvs: an in-memory kernel IPVS table that answers
// like Linux's (errno values included) and counts every call, and a settable clock.
package ipvstest

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/fulcrum-lb/fulcrum/ipvs"
)

// Fake is an in-memory ipvs.Kernel. It behaves like Linux's IPVS where the Reconciler can tell:
//
//   - NewService on an existing service: EEXIST; any other call on a missing service: ESRCH
//     (wrapped with ipvs.ErrExists / ipvs.ErrNoService), except GetDestinations, which the
//     kernel answers with an empty list;
//   - an unknown scheduler (see Schedulers): ENOENT, ipvs.ErrSchedulerUnavailable;
//   - an IPv6 service's netmask must be 1-128 (EINVAL);
//   - every service it reports carries ipvs.KernelFlagHashed;
//   - NewDestination on an existing one: EEXIST; Update/DelDestination on a missing one:
//     ENOENT (ipvs.ErrNoDestination); a lower threshold above the upper one: ERANGE;
//   - SetConfig leaves a zero timeout unchanged; the defaults are 900/120/300 s.
//
// Calls are counted per operation (Calls, Count). Fail injects errors. Seed adds state as
// another tool would, without counting. Safe for concurrent use.
type Fake struct {
	mu         sync.Mutex
	svcs       map[ipvs.ServiceKey]*fakeSvc
	timeouts   ipvs.Timeouts
	calls      map[ipvs.OpKind]int
	log        []Call
	fail       func(Call) error
	schedulers map[string]bool
	closed     bool
}

type fakeSvc struct {
	svc   ipvs.KernelService
	dests map[netip.AddrPort]ipvs.KernelDestination
	order []netip.AddrPort // insertion order, as the kernel lists them
}

// Call is one recorded call.
type Call struct {
	Op          ipvs.OpKind
	Service     ipvs.ServiceKey
	Destination netip.AddrPort
}

// NewFake returns an empty fake kernel that knows every scheduler of ipvs.Schedulers.
func NewFake() *Fake {
	f := &Fake{
		svcs:       map[ipvs.ServiceKey]*fakeSvc{},
		timeouts:   ipvs.Timeouts{TCP: 900 * time.Second, TCPFin: 120 * time.Second, UDP: 300 * time.Second},
		calls:      map[ipvs.OpKind]int{},
		schedulers: map[string]bool{},
	}
	for _, s := range ipvs.Schedulers() {
		f.schedulers[string(s)] = true
	}
	return f
}

var _ ipvs.Kernel = (*Fake)(nil)

// SetSchedulers replaces the schedulers the fake kernel has (e.g. without "twos", like 6.1).
func (f *Fake) SetSchedulers(names ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.schedulers = map[string]bool{}
	for _, n := range names {
		f.schedulers[n] = true
	}
}

// Fail sets a hook called before every operation; a non-nil error fails that call, with no
// effect on the table. nil removes the hook.
func (f *Fake) Fail(hook func(Call) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = hook
}

// Count returns how many calls of the given kinds were made (all kinds when none given).
func (f *Fake) Count(kinds ...ipvs.OpKind) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(kinds) == 0 {
		n := 0
		for _, v := range f.calls {
			n += v
		}
		return n
	}
	n := 0
	for _, k := range kinds {
		n += f.calls[k]
	}
	return n
}

// Mutations returns how many state-changing calls were made.
func (f *Fake) Mutations() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for k, v := range f.calls {
		if k.Mutating() {
			n += v
		}
	}
	return n
}

// Calls returns the recorded calls, oldest first.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log)
}

// ResetCalls forgets the recorded calls and counts.
func (f *Fake) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = nil
	clear(f.calls)
}

// Seed adds a service with destinations directly, as ipvsadm would, without counting a call.
// It replaces a service with the same key.
func (f *Fake) Seed(s ipvs.KernelService, dests ...ipvs.KernelDestination) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s.Flags |= ipvs.KernelFlagHashed
	fs := &fakeSvc{svc: s, dests: map[netip.AddrPort]ipvs.KernelDestination{}}
	for _, d := range dests {
		fs.dests[d.Addr] = d
		fs.order = append(fs.order, d.Addr)
	}
	f.svcs[s.Key] = fs
}

// Remove deletes a service directly (as ipvsadm -D would), without counting a call.
func (f *Fake) Remove(k ipvs.ServiceKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.svcs, k)
}

// SetWeight changes a destination's weight directly (as ipvsadm -e would), without counting.
func (f *Fake) SetWeight(k ipvs.ServiceKey, a netip.AddrPort, w int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.svcs[k]; s != nil {
		if d, ok := s.dests[a]; ok {
			d.Weight = w
			s.dests[a] = d
		}
	}
}

// Service returns a copy of a service and its destinations (in insertion order).
func (f *Fake) Service(k ipvs.ServiceKey) (ipvs.KernelService, []ipvs.KernelDestination, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.svcs[k]
	if s == nil {
		return ipvs.KernelService{}, nil, false
	}
	return s.svc, s.list(), true
}

// Keys returns the keys of every service.
func (f *Fake) Keys() []ipvs.ServiceKey {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Collect(maps.Keys(f.svcs))
}

// Len returns the number of services.
func (f *Fake) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.svcs)
}

// Timeouts returns the global timeouts.
func (f *Fake) Timeouts() ipvs.Timeouts {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.timeouts
}

func (s *fakeSvc) list() []ipvs.KernelDestination {
	out := make([]ipvs.KernelDestination, 0, len(s.order))
	for _, a := range s.order {
		out = append(out, s.dests[a])
	}
	return out
}

// begin records a call and runs the failure hook; the lock is held.
func (f *Fake) begin(op ipvs.OpKind, k ipvs.ServiceKey, a netip.AddrPort) error {
	if f.closed {
		return fmt.Errorf("ipvstest: fake kernel closed")
	}
	c := Call{Op: op, Service: k, Destination: a}
	f.calls[op]++
	f.log = append(f.log, c)
	if f.fail != nil {
		return f.fail(c)
	}
	return nil
}

func noService(err syscall.Errno) error { return fmt.Errorf("%w: %w", ipvs.ErrNoService, err) }

// GetServices implements ipvs.Kernel.
func (f *Fake) GetServices() ([]ipvs.KernelService, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ipvs.OpGetServices, ipvs.ServiceKey{}, netip.AddrPort{}); err != nil {
		return nil, err
	}
	out := make([]ipvs.KernelService, 0, len(f.svcs))
	for _, s := range f.svcs {
		out = append(out, s.svc)
	}
	return out, nil
}

// GetService implements ipvs.Kernel.
func (f *Fake) GetService(k ipvs.ServiceKey) (ipvs.KernelService, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ipvs.OpGetService, k, netip.AddrPort{}); err != nil {
		return ipvs.KernelService{}, err
	}
	s := f.svcs[k]
	if s == nil {
		return ipvs.KernelService{}, noService(syscall.ESRCH)
	}
	return s.svc, nil
}

// GetDestinations implements ipvs.Kernel.
func (f *Fake) GetDestinations(k ipvs.ServiceKey) ([]ipvs.KernelDestination, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ipvs.OpGetDestinations, k, netip.AddrPort{}); err != nil {
		return nil, err
	}
	s := f.svcs[k]
	if s == nil {
		return nil, nil // the kernel's dump answers nothing for a missing service
	}
	return s.list(), nil
}

func (f *Fake) checkService(s ipvs.KernelService) error {
	if !f.schedulers[s.Scheduler] {
		return fmt.Errorf("%w: %w", ipvs.ErrSchedulerUnavailable, syscall.ENOENT)
	}
	if s.Key.Family == ipvs.IPv6 && (s.Netmask < 1 || s.Netmask > 128) {
		return syscall.EINVAL
	}
	return nil
}

// NewService implements ipvs.Kernel.
func (f *Fake) NewService(s ipvs.KernelService) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ipvs.OpNewService, s.Key, netip.AddrPort{}); err != nil {
		return err
	}
	if f.svcs[s.Key] != nil {
		return fmt.Errorf("%w: %w", ipvs.ErrExists, syscall.EEXIST)
	}
	if err := f.checkService(s); err != nil {
		return err
	}
	s.Flags |= ipvs.KernelFlagHashed
	s.Stats = ipvs.Stats{}
	f.svcs[s.Key] = &fakeSvc{svc: s, dests: map[netip.AddrPort]ipvs.KernelDestination{}}
	return nil
}

// UpdateService implements ipvs.Kernel.
func (f *Fake) UpdateService(s ipvs.KernelService) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ipvs.OpUpdateService, s.Key, netip.AddrPort{}); err != nil {
		return err
	}
	cur := f.svcs[s.Key]
	if cur == nil {
		return noService(syscall.ESRCH)
	}
	if err := f.checkService(s); err != nil {
		return err
	}
	s.Flags |= ipvs.KernelFlagHashed
	s.Stats = cur.svc.Stats
	cur.svc = s
	return nil
}

// DelService implements ipvs.Kernel.
func (f *Fake) DelService(k ipvs.ServiceKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ipvs.OpDelService, k, netip.AddrPort{}); err != nil {
		return err
	}
	if f.svcs[k] == nil {
		return noService(syscall.ESRCH)
	}
	delete(f.svcs, k)
	return nil
}

// NewDestination implements ipvs.Kernel.
func (f *Fake) NewDestination(k ipvs.ServiceKey, d ipvs.KernelDestination) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ipvs.OpNewDestination, k, d.Addr); err != nil {
		return err
	}
	s := f.svcs[k]
	if s == nil {
		return noService(syscall.ESRCH)
	}
	if _, ok := s.dests[d.Addr]; ok {
		return fmt.Errorf("%w: %w", ipvs.ErrExists, syscall.EEXIST)
	}
	if d.Weight < 0 || d.LowerThreshold > d.UpperThreshold {
		return syscall.ERANGE
	}
	d.ActiveConns, d.InactiveConns, d.Stats = 0, 0, ipvs.Stats{}
	s.dests[d.Addr] = d
	s.order = append(s.order, d.Addr)
	return nil
}

// UpdateDestination implements ipvs.Kernel.
func (f *Fake) UpdateDestination(k ipvs.ServiceKey, d ipvs.KernelDestination) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ipvs.OpUpdateDestination, k, d.Addr); err != nil {
		return err
	}
	s := f.svcs[k]
	if s == nil {
		return noService(syscall.ESRCH)
	}
	cur, ok := s.dests[d.Addr]
	if !ok {
		return fmt.Errorf("%w: %w", ipvs.ErrNoDestination, syscall.ENOENT)
	}
	if d.Weight < 0 || d.LowerThreshold > d.UpperThreshold {
		return syscall.ERANGE
	}
	d.ActiveConns, d.InactiveConns, d.Stats = cur.ActiveConns, cur.InactiveConns, cur.Stats
	s.dests[d.Addr] = d
	return nil
}

// DelDestination implements ipvs.Kernel.
func (f *Fake) DelDestination(k ipvs.ServiceKey, a netip.AddrPort) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ipvs.OpDelDestination, k, a); err != nil {
		return err
	}
	s := f.svcs[k]
	if s == nil {
		return noService(syscall.ESRCH)
	}
	if _, ok := s.dests[a]; !ok {
		return fmt.Errorf("%w: %w", ipvs.ErrNoDestination, syscall.ENOENT)
	}
	delete(s.dests, a)
	s.order = slices.DeleteFunc(s.order, func(x netip.AddrPort) bool { return x == a })
	return nil
}

// GetConfig implements ipvs.Kernel.
func (f *Fake) GetConfig() (ipvs.Timeouts, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ipvs.OpGetConfig, ipvs.ServiceKey{}, netip.AddrPort{}); err != nil {
		return ipvs.Timeouts{}, err
	}
	return f.timeouts, nil
}

// SetConfig implements ipvs.Kernel.
func (f *Fake) SetConfig(t ipvs.Timeouts) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ipvs.OpSetConfig, ipvs.ServiceKey{}, netip.AddrPort{}); err != nil {
		return err
	}
	if t.TCP != 0 {
		f.timeouts.TCP = t.TCP
	}
	if t.TCPFin != 0 {
		f.timeouts.TCPFin = t.TCPFin
	}
	if t.UDP != 0 {
		f.timeouts.UDP = t.UDP
	}
	return nil
}

// Close implements ipvs.Kernel; later calls fail.
func (f *Fake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// Clock is a settable ipvs.Clock.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now implements ipvs.Clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
