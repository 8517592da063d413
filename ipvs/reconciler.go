package ipvs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Clock is the Reconciler's source of time (slow start, timestamps). Tests use a fake one and
// call Tick after moving it.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Defaults of Options.
const (
	DefaultResyncInterval = 60 * time.Second
	DefaultTickInterval   = time.Second
)

// Options configure a Reconciler.
type Options struct {
	// Kernel is the IPVS handle (Open's, or ipvstest.Fake). Required. The Reconciler does not
	// close it.
	Kernel Kernel
	// StateFile records the services this agent owns and the operator's drain overrides
	// (DefaultStateFile in production). Empty keeps them in memory only: a restart then
	// knows no ownership, and adopts only services the desired state names. A corrupt file
	// makes New fail (ErrStateFile) rather than forget what is owned; a failed write is
	// counted and returned, but does not hold back the kernel operations.
	StateFile string
	// Clock defaults to the system clock.
	Clock Clock
	// ResyncInterval is how often Run dumps the kernel and corrects drift (default 60 s).
	ResyncInterval time.Duration
	// TickInterval is how often Run steps slow-start ramps (default 1 s).
	TickInterval time.Duration
	// RemoveOnShutdown makes Shutdown delete the owned services. By default they stay, so
	// traffic keeps flowing across an agent restart (like keepalived -I).
	RemoveOnShutdown bool
	// OnEvent, if set, receives events (quorum changes, adoptions, failed operations). It is
	// called without the Reconciler's lock held, in the goroutine of the call that caused it,
	// and must not block for long.
	OnEvent func(Event)
}

// Event types.
const (
	EventQuorumLost     = "quorum_lost"     // too few destinations up; the sorry server is in
	EventQuorumRestored = "quorum_restored" // enough destinations up again
	EventAdopted        = "service_adopted" // a desired service found in the kernel, not recorded as owned, now owned
	EventOpFailed       = "op_failed"       // a kernel operation failed (Detail has the error)
	EventResync         = "resync"          // a full dump finished (Detail has the counts)
)

// Event is something the agent may log or stream.
type Event struct {
	Type        string
	Service     ServiceKey
	Destination netip.AddrPort
	Detail      string
}

// Reconciler keeps kernel IPVS equal to a desired state for the services this agent owns.
// All methods are safe for concurrent use; kernel operations are serialised.
type Reconciler struct {
	k     Kernel
	clock Clock
	opts  Options

	mu      sync.Mutex
	closed  bool
	applied bool // Apply succeeded at least once: desired is meaningful
	synced  bool // the mirror was built from a full dump

	desired map[ServiceKey]*svcState
	order   []ServiceKey // desired keys in the order given

	health    map[destRef]*healthState // absent: healthy, no ramp
	overrides map[destRef]struct{}     // operator drains
	owned     map[ServiceKey]struct{}
	mirror    map[ServiceKey]*mirrorSvc // kernel truth for owned services
	stale     map[ServiceKey]struct{}   // mirror entries to re-read before use
	ramping   map[ServiceKey]struct{}   // services with a slow start in progress

	wantTimeouts   Timeouts
	kTimeouts      Timeouts
	kTimeoutsKnown bool

	ops         map[OpKind]uint64
	errCount    uint64
	resyncs     uint64
	lastResync  time.Time
	lastResyncD time.Duration
	lastErr     string
	lastErrAt   time.Time
	unowned     int

	events []Event
}

type svcState struct {
	spec       Service
	quorumLost bool
}

type healthState struct {
	healthy bool
	upSince time.Time // start of a slow-start ramp; zero when none
}

type mirrorSvc struct {
	svc   KernelService
	dests map[netip.AddrPort]KernelDestination
}

// New makes a Reconciler and reads the state file. It does not touch the kernel: the first
// Apply dumps it, adopts the owned services found there and corrects only differences.
func New(opts Options) (*Reconciler, error) {
	if opts.Kernel == nil {
		return nil, errors.New("ipvs: Options.Kernel is nil")
	}
	if opts.Clock == nil {
		opts.Clock = systemClock{}
	}
	if opts.ResyncInterval <= 0 {
		opts.ResyncInterval = DefaultResyncInterval
	}
	if opts.TickInterval <= 0 {
		opts.TickInterval = DefaultTickInterval
	}
	r := &Reconciler{
		k:         opts.Kernel,
		clock:     opts.Clock,
		opts:      opts,
		desired:   map[ServiceKey]*svcState{},
		health:    map[destRef]*healthState{},
		overrides: map[destRef]struct{}{},
		owned:     map[ServiceKey]struct{}{},
		mirror:    map[ServiceKey]*mirrorSvc{},
		stale:     map[ServiceKey]struct{}{},
		ramping:   map[ServiceKey]struct{}{},
		ops:       map[OpKind]uint64{},
	}
	if opts.StateFile != "" {
		st, err := loadState(opts.StateFile)
		if err != nil {
			return nil, err
		}
		for _, k := range st.Owned {
			r.owned[k] = struct{}{}
		}
		for _, d := range st.Drained {
			r.overrides[d] = struct{}{}
		}
	}
	return r, nil
}

// unlock releases the lock and then delivers the events queued while it was held.
func (r *Reconciler) unlock() {
	ev := r.events
	r.events = nil
	r.mu.Unlock()
	if r.opts.OnEvent != nil {
		for _, e := range ev {
			r.opts.OnEvent(e)
		}
	}
}

func (r *Reconciler) emit(e Event) { r.events = append(r.events, e) }

// Apply validates the whole desired state, then makes the kernel match it. Invalid input is
// rejected with a *ValidationError before any kernel operation. The first Apply dumps the
// kernel (adopting owned services, never flushing); later ones only diff against the
// in-memory mirror and send the operations that differ. A kernel failure does not stop the
// pass: the other services are still reconciled, the failed service is re-read so the mirror
// matches the kernel, and the error (a *ReconcileError of *OpError) is returned; the desired
// state stays in force and the next Apply, Tick or Resync retries.
func (r *Reconciler) Apply(ctx context.Context, d Desired) error {
	nd, err := normalize(d)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.unlock()
	if r.closed {
		return ErrClosed
	}
	now := r.clock.Now()

	desired := make(map[ServiceKey]*svcState, len(nd.Services))
	order := make([]ServiceKey, 0, len(nd.Services))
	for i := range nd.Services {
		s := &svcState{spec: nd.Services[i]}
		if old := r.desired[s.spec.Key]; old != nil {
			s.quorumLost = old.quorumLost
		}
		desired[s.spec.Key] = s
		order = append(order, s.spec.Key)
	}
	// Health of destinations that are gone is forgotten (the checker reports afresh if they
	// come back); operator drains are kept until cleared.
	for ref := range r.health {
		if s := desired[ref.Service]; s == nil || s.dest(ref.Destination) == nil {
			delete(r.health, ref)
		}
	}
	r.desired, r.order, r.wantTimeouts, r.applied = desired, order, nd.Timeouts, true
	clear(r.ramping)
	for ref, h := range r.health {
		if !h.upSince.IsZero() {
			r.ramping[ref.Service] = struct{}{}
		}
	}
	for _, key := range order {
		r.evalQuorum(desired[key])
	}
	if !r.synced {
		return r.resync(ctx, now)
	}
	var el errList
	r.reconcileAll(ctx, now, &el)
	return el.err()
}

// Resync dumps the kernel, rebuilds the mirror of the owned services from it and corrects
// every difference (Run calls it every ResyncInterval). Before the first Apply it does
// nothing: without a desired state it cannot tell what to correct.
func (r *Reconciler) Resync(ctx context.Context) error {
	r.mu.Lock()
	defer r.unlock()
	if r.closed {
		return ErrClosed
	}
	if !r.applied {
		return nil
	}
	return r.resync(ctx, r.clock.Now())
}

// resync is Resync with the lock held.
func (r *Reconciler) resync(ctx context.Context, now time.Time) error {
	start := time.Now()
	var el errList
	var svcs []KernelService
	if err := r.op(OpGetServices, ServiceKey{}, netip.AddrPort{}, func() (err error) {
		svcs, err = r.k.GetServices()
		return err
	}); err != nil {
		return err
	}
	mirror := make(map[ServiceKey]*mirrorSvc, len(r.owned))
	clear(r.stale)
	adopted := false
	r.unowned = 0
	for _, ks := range svcs {
		if err := ctx.Err(); err != nil {
			return err
		}
		_, owned := r.owned[ks.Key]
		_, want := r.desired[ks.Key]
		if !owned && !want {
			r.unowned++
			continue
		}
		if !owned {
			r.owned[ks.Key] = struct{}{}
			adopted = true
			r.emit(Event{Type: EventAdopted, Service: ks.Key, Detail: "the desired state names a service already in the kernel; it is now owned"})
		}
		var ds []KernelDestination
		if err := r.op(OpGetDestinations, ks.Key, netip.AddrPort{}, func() (err error) {
			ds, err = r.k.GetDestinations(ks.Key)
			return err
		}); err != nil {
			el.add(err)
			r.stale[ks.Key] = struct{}{}
			continue
		}
		m := &mirrorSvc{svc: ks, dests: make(map[netip.AddrPort]KernelDestination, len(ds))}
		for _, d := range ds {
			m.dests[d.Addr] = d
		}
		mirror[ks.Key] = m
	}
	r.mirror = mirror
	if adopted {
		el.add(r.persist())
	}
	if !r.wantTimeouts.IsZero() {
		var t Timeouts
		if err := r.op(OpGetConfig, ServiceKey{}, netip.AddrPort{}, func() (err error) {
			t, err = r.k.GetConfig()
			return err
		}); err != nil {
			el.add(err)
		} else {
			r.kTimeouts, r.kTimeoutsKnown = t, true
		}
	}
	r.synced = true
	before := r.mutations()
	r.reconcileAll(ctx, now, &el)
	r.resyncs++
	r.lastResync = now
	r.lastResyncD = time.Since(start)
	r.emit(Event{Type: EventResync, Detail: fmt.Sprintf("%d services in the kernel, %d owned, %d not owned; %d corrections",
		len(svcs), len(r.mirror), r.unowned, r.mutations()-before)})
	return el.err()
}

// reconcileAll brings every owned service in line with the desired state, from the mirror.
func (r *Reconciler) reconcileAll(ctx context.Context, now time.Time, el *errList) {
	// Record ownership before creating, so that a crash in between leaves a record of a
	// service that may not exist (harmless) rather than a service nobody owns.
	grew := false
	for _, key := range r.order {
		if _, ok := r.owned[key]; !ok {
			r.owned[key] = struct{}{}
			grew = true
		}
	}
	if grew {
		el.add(r.persist())
	}
	for _, key := range r.order {
		if err := ctx.Err(); err != nil {
			el.add(err)
			return
		}
		r.syncService(key, now, el)
	}
	var gone []ServiceKey
	for key := range r.mirror {
		if r.desired[key] == nil {
			gone = append(gone, key)
		}
	}
	slices.SortFunc(gone, compareKeys)
	for _, key := range gone {
		r.deleteService(key, el)
	}
	shrank := false
	for key := range r.owned {
		if r.desired[key] == nil && r.mirror[key] == nil {
			if _, stale := r.stale[key]; !stale {
				delete(r.owned, key)
				shrank = true
			}
		}
	}
	if shrank {
		el.add(r.persist())
	}
	r.syncTimeouts(el)
}

// syncTimeouts sets the global timeouts that differ from the kernel's.
func (r *Reconciler) syncTimeouts(el *errList) {
	if r.wantTimeouts.IsZero() {
		return
	}
	if !r.kTimeoutsKnown {
		var t Timeouts
		if err := r.op(OpGetConfig, ServiceKey{}, netip.AddrPort{}, func() (err error) {
			t, err = r.k.GetConfig()
			return err
		}); err != nil {
			el.add(err)
			return
		}
		r.kTimeouts, r.kTimeoutsKnown = t, true
	}
	merged := r.kTimeouts
	if r.wantTimeouts.TCP != 0 {
		merged.TCP = r.wantTimeouts.TCP
	}
	if r.wantTimeouts.TCPFin != 0 {
		merged.TCPFin = r.wantTimeouts.TCPFin
	}
	if r.wantTimeouts.UDP != 0 {
		merged.UDP = r.wantTimeouts.UDP
	}
	if merged == r.kTimeouts {
		return
	}
	if err := r.op(OpSetConfig, ServiceKey{}, netip.AddrPort{}, func() error { return r.k.SetConfig(r.wantTimeouts) }); err != nil {
		el.add(err)
		r.kTimeoutsKnown = false
		return
	}
	r.kTimeouts = merged
}

// syncService makes the kernel's copy of one service match its target, from the mirror: the
// operations sent are exactly the differences. On a failure it re-reads that service.
func (r *Reconciler) syncService(key ServiceKey, now time.Time, el *errList) {
	if _, ok := r.stale[key]; ok {
		if err := r.refresh(key); err != nil {
			el.add(err)
			return
		}
	}
	s := r.desired[key]
	have := r.mirror[key]
	if s == nil {
		if have != nil {
			r.deleteService(key, el)
		}
		return
	}
	want, wantDests := r.target(s, now)
	if have == nil {
		if err := r.op(OpNewService, key, netip.AddrPort{}, func() error { return r.k.NewService(want) }); err != nil {
			r.failed(key, err, el)
			return
		}
		have = &mirrorSvc{svc: want, dests: make(map[netip.AddrPort]KernelDestination, len(wantDests))}
		r.mirror[key] = have
	} else if !sameService(have.svc, want) {
		if err := r.op(OpUpdateService, key, netip.AddrPort{}, func() error { return r.k.UpdateService(want) }); err != nil {
			r.failed(key, err, el)
			return
		}
		want.Stats = have.svc.Stats
		have.svc = want
	}
	// Add first, then update, delete last: a quorum loss brings the sorry server in before
	// the others are drained or go, so the service never has nothing to send to.
	for _, d := range wantDests {
		if _, ok := have.dests[d.Addr]; ok {
			continue
		}
		if err := r.op(OpNewDestination, key, d.Addr, func() error { return r.k.NewDestination(key, d) }); err != nil {
			r.failed(key, err, el)
			return
		}
		have.dests[d.Addr] = d
	}
	for _, d := range wantDests {
		cur := have.dests[d.Addr]
		if sameDestination(cur, d) {
			continue
		}
		if err := r.op(OpUpdateDestination, key, d.Addr, func() error { return r.k.UpdateDestination(key, d) }); err != nil {
			r.failed(key, err, el)
			return
		}
		d.ActiveConns, d.InactiveConns, d.Stats = cur.ActiveConns, cur.InactiveConns, cur.Stats
		have.dests[d.Addr] = d
	}
	if len(have.dests) == len(wantDests) {
		return
	}
	keep := make(map[netip.AddrPort]struct{}, len(wantDests))
	for _, d := range wantDests {
		keep[d.Addr] = struct{}{}
	}
	var extra []netip.AddrPort
	for a := range have.dests {
		if _, ok := keep[a]; !ok {
			extra = append(extra, a)
		}
	}
	slices.SortFunc(extra, netip.AddrPort.Compare)
	for _, a := range extra {
		err := r.op(OpDelDestination, key, a, func() error { return r.k.DelDestination(key, a) })
		if err != nil && !errors.Is(err, ErrNoDestination) {
			r.failed(key, err, el)
			return
		}
		delete(have.dests, a)
	}
}

// deleteService deletes an owned service and forgets it.
func (r *Reconciler) deleteService(key ServiceKey, el *errList) {
	err := r.op(OpDelService, key, netip.AddrPort{}, func() error { return r.k.DelService(key) })
	if err != nil && !errors.Is(err, ErrNoService) {
		r.failed(key, err, el)
		return
	}
	delete(r.mirror, key)
	delete(r.stale, key)
}

// failed records a failed operation on a service and re-reads the service, so the mirror
// holds what the kernel really has.
func (r *Reconciler) failed(key ServiceKey, err error, el *errList) {
	el.add(err)
	if rerr := r.refresh(key); rerr != nil {
		el.add(rerr)
	}
}

// refresh re-reads one service and its destinations into the mirror (two operations). When
// the read fails the entry is marked stale and re-read before its next use.
func (r *Reconciler) refresh(key ServiceKey) error {
	var ks KernelService
	err := r.op(OpGetService, key, netip.AddrPort{}, func() (err error) {
		ks, err = r.k.GetService(key)
		return err
	})
	if errors.Is(err, ErrNoService) {
		delete(r.mirror, key)
		delete(r.stale, key)
		return nil
	}
	if err != nil {
		r.stale[key] = struct{}{}
		return err
	}
	var ds []KernelDestination
	if err := r.op(OpGetDestinations, key, netip.AddrPort{}, func() (err error) {
		ds, err = r.k.GetDestinations(key)
		return err
	}); err != nil {
		r.stale[key] = struct{}{}
		return err
	}
	m := &mirrorSvc{svc: ks, dests: make(map[netip.AddrPort]KernelDestination, len(ds))}
	for _, d := range ds {
		m.dests[d.Addr] = d
	}
	r.mirror[key] = m
	delete(r.stale, key)
	return nil
}

// op runs and counts one kernel operation, wrapping its error in an *OpError.
func (r *Reconciler) op(kind OpKind, key ServiceKey, dest netip.AddrPort, f func() error) error {
	r.ops[kind]++
	err := f()
	if err == nil {
		return nil
	}
	oe := &OpError{Op: kind, Service: key, Destination: dest, Err: err}
	if kind == OpGetService && errors.Is(err, ErrNoService) {
		return oe // an answer, not a failure: refresh found the service gone
	}
	r.errCount++
	r.lastErr = oe.Error()
	r.lastErrAt = r.clock.Now()
	r.emit(Event{Type: EventOpFailed, Service: key, Destination: dest, Detail: oe.Error()})
	return oe
}

// persist writes the state file (a no-op without one).
func (r *Reconciler) persist() error {
	if r.opts.StateFile == "" {
		return nil
	}
	if err := saveState(r.opts.StateFile, r.owned, r.overrides); err != nil {
		r.errCount++
		r.lastErr = err.Error()
		r.lastErrAt = r.clock.Now()
		return err
	}
	return nil
}

func (r *Reconciler) mutations() uint64 {
	var n uint64
	for k, v := range r.ops {
		if k.Mutating() {
			n += v
		}
	}
	return n
}

// dest returns the desired destination with address a, or nil.
func (s *svcState) dest(a netip.AddrPort) *Destination {
	for i := range s.spec.Destinations {
		if s.spec.Destinations[i].Addr == a {
			return &s.spec.Destinations[i]
		}
	}
	return nil
}

// target is what the kernel should hold for a service now: its settings and its
// destinations, in the desired order, the sorry server last.
func (r *Reconciler) target(s *svcState, now time.Time) (KernelService, []KernelDestination) {
	dests := make([]KernelDestination, 0, len(s.spec.Destinations)+1)
	for i := range s.spec.Destinations {
		d := &s.spec.Destinations[i]
		e := r.effective(s, d, now)
		if e.present {
			dests = append(dests, kernelDestination(d, e.weight))
		}
	}
	if s.sorryActive() {
		dests = append(dests, kernelDestination(s.spec.Quorum.Sorry, s.spec.Quorum.Sorry.Weight))
	}
	return kernelService(&s.spec), dests
}

func (s *svcState) sorryActive() bool { return s.quorumLost && s.spec.Quorum.Sorry != nil }

// eff is a destination's computed state.
type eff struct {
	weight  int  // the weight to set
	present bool // false: removed by the failure policy
	healthy bool
	drained bool // operator override
	ramping bool // slow start in progress
}

// effective computes a destination's weight from its configured weight, health, the
// operator's override, the quorum and the slow-start ramp.
func (r *Reconciler) effective(s *svcState, d *Destination, now time.Time) eff {
	ref := destRef{Service: s.spec.Key, Destination: d.Addr}
	h := r.health[ref]
	_, drained := r.overrides[ref]
	e := eff{healthy: h == nil || h.healthy, drained: drained, present: true}
	if !e.healthy || s.sorryActive() {
		if s.spec.OnFailure == Remove {
			e.present = false
		}
		return e
	}
	e.weight = d.Weight
	if h != nil && !h.upSince.IsZero() && s.spec.SlowStart > 0 {
		if el := now.Sub(h.upSince); el < s.spec.SlowStart {
			e.ramping = true
			e.weight = max(1, int(float64(d.Weight)*float64(el)/float64(s.spec.SlowStart)))
			e.weight = min(e.weight, d.Weight)
		}
	}
	if drained {
		e.weight = 0
	}
	return e
}

// upCount counts the destinations that are up: healthy, not drained by the operator, with a
// configured weight above 0.
func (r *Reconciler) upCount(s *svcState) int {
	n := 0
	for i := range s.spec.Destinations {
		d := &s.spec.Destinations[i]
		ref := destRef{Service: s.spec.Key, Destination: d.Addr}
		if h := r.health[ref]; h != nil && !h.healthy {
			continue
		}
		if _, drained := r.overrides[ref]; drained || d.Weight == 0 {
			continue
		}
		n++
	}
	return n
}

// evalQuorum updates a service's quorum state with hysteresis: lost below MinUp, back at
// MinUp+Hysteresis.
func (r *Reconciler) evalQuorum(s *svcState) {
	q := s.spec.Quorum
	if q.MinUp == 0 {
		s.quorumLost = false
		return
	}
	up := r.upCount(s)
	switch {
	case !s.quorumLost && up < q.MinUp:
		s.quorumLost = true
		r.emit(Event{Type: EventQuorumLost, Service: s.spec.Key, Detail: fmt.Sprintf("%d up, min_up %d", up, q.MinUp)})
	case s.quorumLost && up >= q.MinUp+q.Hysteresis:
		s.quorumLost = false
		r.emit(Event{Type: EventQuorumRestored, Service: s.spec.Key, Detail: fmt.Sprintf("%d up, min_up %d + hysteresis %d", up, q.MinUp, q.Hysteresis)})
	}
}

// lookup finds a desired destination; a zero port in rs means the service's port.
func (r *Reconciler) lookup(vs ServiceKey, rs netip.AddrPort) (*svcState, netip.AddrPort, error) {
	s := r.desired[vs]
	if s == nil {
		return nil, rs, fmt.Errorf("%w: %s", ErrUnknownService, vs)
	}
	if rs.Port() == 0 && !vs.IsMark() {
		rs = netip.AddrPortFrom(rs.Addr(), vs.Addr.Port())
	}
	if s.dest(rs) == nil {
		return nil, rs, fmt.Errorf("%w: %s in %s", ErrUnknownDestination, rs, vs)
	}
	return s, rs, nil
}

// SetHealth reports a health-check result for a destination of a desired service. A failed
// destination is drained (weight 0) or removed, by the service's OnFailure; a recovered one
// comes back, ramping up over SlowStart if set. The quorum is re-evaluated. Only that service
// is touched: a change costs one or two kernel operations. Unchanged health costs none.
// Destinations are healthy until reported otherwise.
func (r *Reconciler) SetHealth(vs ServiceKey, rs netip.AddrPort, healthy bool) error {
	r.mu.Lock()
	defer r.unlock()
	if r.closed {
		return ErrClosed
	}
	s, rs, err := r.lookup(vs, rs)
	if err != nil {
		return err
	}
	ref := destRef{Service: vs, Destination: rs}
	h := r.health[ref]
	if (h == nil || h.healthy) == healthy {
		return nil
	}
	now := r.clock.Now()
	switch {
	case !healthy:
		r.health[ref] = &healthState{healthy: false}
	case s.spec.SlowStart > 0:
		r.health[ref] = &healthState{healthy: true, upSince: now}
		r.ramping[vs] = struct{}{}
	default:
		delete(r.health, ref)
	}
	r.evalQuorum(s)
	return r.syncOne(vs, now)
}

// SetOverride drains (weight 0, not removed) or undrains a destination for the operator. The
// override survives Apply and, with a state file, restarts; it lasts until cleared.
func (r *Reconciler) SetOverride(vs ServiceKey, rs netip.AddrPort, drained bool) error {
	r.mu.Lock()
	defer r.unlock()
	if r.closed {
		return ErrClosed
	}
	s, rs, err := r.lookup(vs, rs)
	if err != nil {
		return err
	}
	ref := destRef{Service: vs, Destination: rs}
	if _, cur := r.overrides[ref]; cur == drained {
		return nil
	}
	if drained {
		r.overrides[ref] = struct{}{}
	} else {
		delete(r.overrides, ref)
	}
	perr := r.persist()
	r.evalQuorum(s)
	return errors.Join(r.syncOne(vs, r.clock.Now()), perr)
}

// syncOne reconciles one service if the kernel has been read already.
func (r *Reconciler) syncOne(key ServiceKey, now time.Time) error {
	if !r.synced {
		return nil // the first Apply's dump will apply it
	}
	var el errList
	r.syncService(key, now, &el)
	return el.err()
}

// Tick steps the slow-start ramps to the clock's current time, sending a weight update only
// when a destination's weight changes. Run calls it every TickInterval; tests call it after
// moving a fake clock.
func (r *Reconciler) Tick() error {
	r.mu.Lock()
	defer r.unlock()
	if r.closed {
		return ErrClosed
	}
	if len(r.ramping) == 0 {
		return nil
	}
	now := r.clock.Now()
	keys := slices.SortedFunc(maps.Keys(r.ramping), compareKeys)
	var el errList
	for _, key := range keys {
		s := r.desired[key]
		if s == nil {
			delete(r.ramping, key)
			continue
		}
		still := false
		for i := range s.spec.Destinations {
			ref := destRef{Service: key, Destination: s.spec.Destinations[i].Addr}
			h := r.health[ref]
			if h == nil || h.upSince.IsZero() {
				continue
			}
			if now.Sub(h.upSince) >= s.spec.SlowStart {
				delete(r.health, ref) // healthy, ramp done: the default state
			} else {
				still = true
			}
		}
		if r.synced {
			r.syncService(key, now, &el)
		}
		if !still {
			delete(r.ramping, key)
		}
	}
	return el.err()
}

// Run drives the periodic work until ctx ends: a full Resync every ResyncInterval and Tick
// every TickInterval. Errors are counted, kept in Status and sent as events; Run goes on.
// It returns nil when ctx ends. Apply first: Resync does nothing until then.
func (r *Reconciler) Run(ctx context.Context) error {
	resync := time.NewTicker(r.opts.ResyncInterval)
	defer resync.Stop()
	tick := time.NewTicker(r.opts.TickInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-resync.C:
			_ = r.Resync(ctx) // counted and reported as events
		case <-tick.C:
			_ = r.Tick()
		}
	}
}

// Shutdown stops the Reconciler. By default the services stay in the kernel as they are; with
// Options.RemoveOnShutdown the owned ones are deleted (services this agent does not own are
// never touched). Later calls return ErrClosed; Shutdown itself may be called again.
func (r *Reconciler) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	defer r.unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	if !r.opts.RemoveOnShutdown {
		return nil
	}
	var el errList
	if !r.synced {
		// Never read the kernel: read it now, to delete only what is there and owned.
		var svcs []KernelService
		if err := r.op(OpGetServices, ServiceKey{}, netip.AddrPort{}, func() (err error) {
			svcs, err = r.k.GetServices()
			return err
		}); err != nil {
			return err
		}
		for _, ks := range svcs {
			if _, ok := r.owned[ks.Key]; ok {
				r.mirror[ks.Key] = &mirrorSvc{svc: ks}
			}
		}
	}
	keys := slices.SortedFunc(maps.Keys(r.mirror), compareKeys)
	for _, key := range keys {
		if err := ctx.Err(); err != nil {
			el.add(err)
			break
		}
		r.deleteService(key, &el)
	}
	for key := range r.owned {
		if r.mirror[key] == nil {
			delete(r.owned, key)
		}
	}
	el.add(r.persist())
	return el.err()
}
