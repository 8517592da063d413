package health

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Defaults for a Spec's zero fields (HAProxy's inter, rise and fall) and for Options.
const (
	DefaultInterval      = 2 * time.Second
	DefaultRise          = 2
	DefaultFall          = 3
	DefaultMaxConcurrent = 256
	// DefaultSlack is Options.Slack on the system clock: runs due within 20 ms of each other
	// start together. At 10,000 checks a second that is about 50 wake-ups of the goroutine
	// that starts them (the connect engine's, for plain connect checks) a second instead of 10,000, and at 200 checks a
	// second batches of about 4 instead of 1: each wake-up costs a few goroutine switches,
	// dear on a loaded or emulated machine. 20 ms early is a fifth of the 100 ms a check may
	// drift; a check's own slack is further capped at a twentieth of its interval (a 20 ms
	// interval gets 1 ms), so a short interval is not shortened by more than 5%.
	DefaultSlack = 20 * time.Millisecond
)

// Spec is one check as the Scheduler runs it.
type Spec struct {
	// ID names the check; unique within a Scheduler.
	ID string
	// Probe defines what is checked. Together with ID it is the check's identity on Update.
	Probe Probe
	// Interval between the starts of two runs; 0 means DefaultInterval.
	Interval time.Duration
	// Timeout of one run; 0 means Interval.
	Timeout time.Duration
	// Rise consecutive successes bring a down check up; 0 means DefaultRise.
	Rise int
	// Fall consecutive failures bring an up check down; 0 means DefaultFall.
	Fall int
	// Initial is the state of a new check: StateDown (the zero value: down until proven up) or
	// StateUp (up until proven down). Passive checks always start up.
	Initial State
	// MinSpacing is the least time between the end of a run and the start of the next, for a
	// check that runs longer than its interval; 0 means none.
	MinSpacing time.Duration
}

// Rand draws the random start offsets; *math/rand/v2.Rand satisfies it. It is only called with
// the Scheduler's lock held.
type Rand interface {
	// Int64N returns a number in [0, n).
	Int64N(n int64) int64
}

// Options configure a Scheduler. The zero value is usable.
type Options struct {
	// Clock defaults to SystemClock().
	Clock Clock
	// Sink receives state changes; nil drops them.
	Sink Sink
	// MaxConcurrent bounds the runs in progress at once, which is also the number of worker
	// goroutines; 0 means DefaultMaxConcurrent.
	MaxConcurrent int
	// Rand draws each new check's first run uniformly in [0, Interval), spreading the checks over
	// the interval; nil means a randomly seeded generator.
	Rand Rand
	// Slack lets a run start up to Slack (and at most a twentieth of its Interval) before its
	// due time, so that runs due close together start in one batch. 0 means DefaultSlack on the system clock (Clock nil) and none on
	// another clock, whose tests expect exact times; a negative Slack means none.
	Slack time.Duration
	// NoConnectEngine runs plain TCP connect checks (TCP without Send or Expect) on the workers
	// through a net.Dialer, as the other checkers. Without it, on the system clock, they run on
	// the Scheduler's connect engine: one goroutine and one epoll instance for all of them,
	// nonblocking connects, not limited by MaxConcurrent (a check never overlaps itself, so
	// there is at most one socket per check).
	NoConnectEngine bool
	// OnResult, if set, is called with every result of an active check, from a goroutine of the
	// Scheduler with no lock held (metrics). It must be quick and must not call the Scheduler.
	OnResult func(Result)

	// connector replaces the connect engine (tests).
	connector connector
}

// Scheduler runs checks and keeps their state. Create it with New, give it checks with Update
// (before or while Run runs) and drive it with Run. Its methods are safe for concurrent use.
type Scheduler struct {
	clock    Clock
	sink     Sink
	limit    int
	slack    time.Duration
	onResult func(Result)
	conn     connector // nil: every run goes to the workers; set before Run's loop starts
	engine   bool      // Run makes an epoll connector
	results  chan completion
	wake     chan struct{} // pokes the owner goroutine
	notify   chan struct{} // pokes the delivering goroutine

	mu       sync.Mutex
	rand     Rand
	checks   map[string]*entry
	byTarget map[string][]*entry // passive checks by target
	due      entryHeap           // active checks waiting for their next run on a worker
	cdue     entryHeap           // plain connect checks waiting for their next run on conn
	recover  entryHeap           // passive checks waiting for fail_timeout
	inflight int
	pending  []Change
	started  bool
	seq      uint64
}

// entry is the Scheduler's record of one check. Guarded by Scheduler.mu.
type entry struct {
	spec    Spec
	kind    string
	hash    string
	checker Checker       // nil for passive checks
	passive *passiveState // nil for active checks
	connect *connectSpec  // a plain connect check the connector may run; nil otherwise

	counters
	last        Result
	lastChecked time.Time
	checks      uint64
	weight      *int
	running     bool
	ran         bool      // a run was started
	lastDue     time.Time // due time of the last run started
	offset      time.Duration

	due   time.Time
	seq   uint64 // ties between equal due times go first come, first served
	index int    // position in its heap, -1 when not queued
}

// connectSpec is what a connector needs of a plain connect check.
type connectSpec struct {
	target netip.AddrPort
	dial   *DialOptions
}

type job struct {
	e       *entry
	checker Checker
	timeout time.Duration
	due     time.Time
}

type completion struct {
	e        *entry
	res      Result
	due, end time.Time
}

// New returns a Scheduler with no checks.
func New(opts Options) *Scheduler {
	s := &Scheduler{
		clock:    opts.Clock,
		sink:     opts.Sink,
		limit:    opts.MaxConcurrent,
		slack:    opts.Slack,
		onResult: opts.OnResult,
		conn:     opts.connector,
		rand:     opts.Rand,
		wake:     make(chan struct{}, 1),
		notify:   make(chan struct{}, 1),
		checks:   make(map[string]*entry),
		byTarget: make(map[string][]*entry),
	}
	if s.slack == 0 && opts.Clock == nil {
		s.slack = DefaultSlack
	}
	s.slack = max(s.slack, 0)
	if s.clock == nil {
		s.clock = SystemClock()
	}
	if s.sink == nil {
		s.sink = SinkFunc(func(Change) {})
	}
	if s.limit <= 0 {
		s.limit = DefaultMaxConcurrent
	}
	if s.rand == nil {
		s.rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	// The epoll engine keeps real time: only on the system clock.
	s.engine = s.conn == nil && !opts.NoConnectEngine && opts.Clock == nil
	s.results = make(chan completion, s.limit)
	return s
}

// ErrRunning is returned by a second call of Run.
var ErrRunning = errors.New("health: Scheduler.Run was already called")

// Run runs the checks until ctx ends, then stops its goroutines (the owner, MaxConcurrent
// workers and the one that calls the Sink), waits for them and returns nil. Runs in progress
// see their context canceled; their results, and changes not yet delivered, are dropped. Run
// may be called once.
func (s *Scheduler) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return ErrRunning
	}
	s.started = true
	// Checks added before Run are spread from now, not from when Update was called.
	now := s.clock.Now()
	for _, h := range []entryHeap{s.due, s.cdue} {
		for _, e := range h {
			if !e.ran {
				e.due = now.Add(e.offset)
			}
		}
	}
	if s.engine {
		// Without an engine (no epoll here) the connect checks run on the workers, as before.
		if c, err := newEpollConnector(); err == nil {
			s.conn = c
		}
	}
	if s.conn != nil {
		// From now on the plain connect checks wait in cdue, for the connector's goroutine.
		all := s.due
		s.due = nil
		for _, e := range all {
			h := s.heapOf(e)
			e.index = len(*h)
			*h = append(*h, e)
		}
	}
	heap.Init(&s.cdue)
	heap.Init(&s.due)
	s.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan job, s.limit)
	var wg sync.WaitGroup
	for range s.limit {
		wg.Go(func() {
			for j := range jobs {
				s.results <- s.run(ctx, j)
			}
		})
	}
	wg.Go(func() { s.deliver(ctx) })
	if s.conn != nil {
		wg.Go(func() { s.conn.run(ctx, s) })
	}
	s.loop(ctx, jobs)
	close(jobs)
	cancel()
	wg.Wait()
	return nil
}

// loop is the owner goroutine: it starts due runs, takes results in and keeps one timer armed
// for the next due time.
func (s *Scheduler) loop(ctx context.Context, jobs chan<- job) {
	var (
		timer Timer
		armed time.Time // when timer fires
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		next, now, ok := s.dispatch(jobs)
		// Keep the armed timer if it is for the same instant and cannot have fired yet (timers
		// never fire early); otherwise re-arm. A stale poke only costs a spurious iteration.
		if !ok || !next.Equal(armed) || !now.Before(armed) {
			if timer != nil {
				timer.Stop()
				timer, armed = nil, time.Time{}
			}
			if ok {
				timer, armed = s.clock.AfterFunc(next.Sub(now), s.poke), next
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case c := <-s.results:
			s.complete(c)
		}
	}
}

// dispatch starts every due run the concurrency limit allows on the workers and expires passive
// checks whose fail_timeout has passed (plain connect checks are the connector's, dueConnects).
// It returns the next due time, if there is one to wait for, and the time it went by.
func (s *Scheduler) dispatch(jobs chan<- job) (next, now time.Time, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now = s.clock.Now()
	for len(s.recover) > 0 && !s.recover[0].due.After(now) {
		s.passiveExpired(heap.Pop(&s.recover).(*entry), now)
	}
	// Runs due within the slack start now, in one batch: early by at most the slack. The next
	// run's due time is this one's plus Interval (complete), so starting early does not move a
	// check's phase.
	for s.isDue(s.due, now) && s.inflight < s.limit {
		e := heap.Pop(&s.due).(*entry)
		e.running, e.ran, e.lastDue = true, true, e.due
		s.inflight++
		// jobs has room for limit jobs and at most limit are in flight: this never blocks.
		jobs <- job{e: e, checker: e.checker, timeout: e.spec.Timeout, due: e.due}
	}
	if len(s.due) > 0 && s.inflight < s.limit {
		next = s.due[0].due
	}
	if len(s.recover) > 0 && (next.IsZero() || s.recover[0].due.Before(next)) {
		next = s.recover[0].due
	}
	return next, now, !next.IsZero()
}

// isDue reports whether the head of h is due at now, within the slack: runs due within the
// slack start in one batch, early by at most the slack. s.mu must be held.
func (s *Scheduler) isDue(h entryHeap, now time.Time) bool {
	return len(h) > 0 && !h[0].due.After(now.Add(min(s.slack, h[0].spec.Interval/20)))
}

// dueConnects takes the plain connect checks that are due off cdue, for the connector's
// goroutine.
func (s *Scheduler) dueConnects(reqs []connectReq, limit int) ([]connectReq, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	for n := 0; n < limit && s.isDue(s.cdue, now); n++ {
		e := heap.Pop(&s.cdue).(*entry)
		e.running, e.ran, e.lastDue = true, true, e.due
		reqs = append(reqs, connectReq{e: e, due: e.due, target: e.connect.target,
			dial: e.connect.dial, timeout: e.spec.Timeout})
	}
	var next time.Time
	if len(s.cdue) > 0 {
		next = s.cdue[0].due
	}
	return reqs, next
}

// run is one run of a check, on a worker.
func (s *Scheduler) run(ctx context.Context, j job) completion {
	start := s.clock.Now()
	cctx, cancel := context.WithTimeout(ctx, j.timeout)
	res := safeCheck(cctx, j.checker)
	cancel()
	end := s.clock.Now()
	if res.Latency == 0 {
		res.Latency = end.Sub(start)
	}
	if s.onResult != nil {
		s.onResult(res)
	}
	return completion{e: j.e, res: res, due: j.due, end: end}
}

// connected takes a batch of the connector's results in, from the connector's goroutine, which
// asks dueConnects for the next runs after it: no other goroutine is woken.
func (s *Scheduler) connected(batch []completion) {
	s.mu.Lock()
	for _, c := range batch {
		s.completeLocked(c)
	}
	s.mu.Unlock()
	if s.onResult != nil {
		for _, c := range batch {
			s.onResult(c.res)
		}
	}
}

func safeCheck(ctx context.Context, c Checker) (r Result) {
	defer func() {
		if p := recover(); p != nil {
			r = Result{Outcome: OutcomeError, Reason: ReasonPanic, Detail: fmt.Sprintf("checker panicked: %v", p)}
		}
	}()
	return c.Check(ctx)
}

// complete takes a result in and schedules the check's next run.
func (s *Scheduler) complete(c completion) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight--
	s.completeLocked(c)
}

// completeLocked is complete without the worker accounting. s.mu must be held.
func (s *Scheduler) completeLocked(c completion) {
	e := c.e
	e.running = false
	if s.checks[e.spec.ID] != e {
		return // removed or replaced while it ran
	}
	s.record(e, c.res, c.end)
	// Keep the phase (due + Interval) so the checks stay spread, but leave MinSpacing after
	// a run that took long; a run that overran its interval is followed at once.
	next := c.due.Add(e.spec.Interval)
	if earliest := c.end.Add(e.spec.MinSpacing); next.Before(earliest) {
		next = earliest
	}
	s.schedule(s.heapOf(e), e, next)
}

// record applies a result to an active check.
func (s *Scheduler) record(e *entry, res Result, at time.Time) {
	if res.Outcome == OutcomeNone || res.Outcome > OutcomeError {
		res.Detail = strings.TrimPrefix(res.Detail+"; checker returned outcome "+res.Outcome.String(), "; ")
		res.Outcome = OutcomeError
	}
	res.Weight = cloneInt(res.Weight)
	e.last, e.lastChecked = res, at
	e.checks++
	ok := res.Outcome == OutcomeHealthy
	from, to := e.counters.record(ok, e.spec.Rise, e.spec.Fall)
	weightChanged := false
	if ok && res.Weight != nil && !equalInt(res.Weight, e.weight) {
		e.weight = cloneInt(res.Weight)
		weightChanged = true
	}
	if from != to || weightChanged {
		s.emit(e, from, to, res, at)
	}
}

// emit queues a change for the Sink. s.mu must be held.
func (s *Scheduler) emit(e *entry, from, to State, res Result, at time.Time) {
	s.pending = append(s.pending, Change{
		ID: e.spec.ID, From: from, To: to, Result: res,
		Successes: e.successes, Failures: e.failures, Weight: cloneInt(e.weight), At: at,
	})
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// deliver calls the Sink, in order, from its own goroutine.
func (s *Scheduler) deliver(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.notify:
		}
		s.mu.Lock()
		batch := s.pending
		s.pending = nil
		s.mu.Unlock()
		for _, c := range batch {
			if ctx.Err() != nil {
				return
			}
			s.sink.OnChange(c)
		}
	}
}

// poke wakes the owner goroutine and the connector: the checks changed.
func (s *Scheduler) poke() {
	if s.conn != nil {
		s.conn.wake()
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// schedule queues e in h at the given time, or moves it there. s.mu must be held.
func (s *Scheduler) schedule(h *entryHeap, e *entry, at time.Time) {
	e.due = at
	s.seq++
	e.seq = s.seq
	if e.index >= 0 {
		heap.Fix(h, e.index)
		return
	}
	heap.Push(h, e)
}

// heapOf is the heap e waits in: passive checks for their fail_timeout in recover, plain
// connect checks in cdue once a connector runs them, the others in due. s.mu must be held.
func (s *Scheduler) heapOf(e *entry) *entryHeap {
	switch {
	case e.passive != nil:
		return &s.recover
	case e.connect != nil && s.conn != nil:
		return &s.cdue
	}
	return &s.due
}

// unqueue takes e out of its heap, if it is in one. s.mu must be held.
func (s *Scheduler) unqueue(e *entry) {
	if e.index >= 0 {
		heap.Remove(s.heapOf(e), e.index)
	}
}

// prepared is a validated Spec with its checker built.
type prepared struct {
	spec    Spec
	hash    string
	checker Checker
	passive *Passive
	connect *connectSpec
}

func prepare(sp Spec) (prepared, error) {
	if sp.ID == "" {
		return prepared{}, errors.New("empty ID")
	}
	if sp.Probe == nil {
		return prepared{}, errors.New("no probe")
	}
	hash, err := definitionHash(sp.Probe)
	if err != nil {
		return prepared{}, err
	}
	if p, ok := passiveProbe(sp.Probe); ok {
		p, err := p.withDefaults()
		if err != nil {
			return prepared{}, err
		}
		return prepared{spec: sp, hash: hash, passive: &p}, nil
	}
	switch {
	case sp.Interval < 0, sp.Timeout < 0, sp.MinSpacing < 0:
		return prepared{}, errors.New("negative Interval, Timeout or MinSpacing")
	case sp.Rise < 0, sp.Fall < 0:
		return prepared{}, errors.New("negative Rise or Fall")
	case sp.Initial != StateDown && sp.Initial != StateUp:
		return prepared{}, fmt.Errorf("bad Initial state %v", sp.Initial)
	}
	if sp.Interval == 0 {
		sp.Interval = DefaultInterval
	}
	if sp.Timeout == 0 {
		sp.Timeout = sp.Interval
	}
	if sp.Rise == 0 {
		sp.Rise = DefaultRise
	}
	if sp.Fall == 0 {
		sp.Fall = DefaultFall
	}
	checker, err := sp.Probe.Build()
	if err != nil {
		return prepared{}, err
	}
	if checker == nil {
		return prepared{}, fmt.Errorf("%s probe built no checker", sp.Probe.Kind())
	}
	it := prepared{spec: sp, hash: hash, checker: checker}
	if co, ok := checker.(connectOnly); ok {
		if target, dial, ok := co.connectOnly(); ok {
			it.connect = &connectSpec{target: target, dial: dial}
		}
	}
	return it, nil
}

// Update makes specs the Scheduler's checks. It validates and builds them all first and, if any
// is invalid, returns every problem (joined) and changes nothing.
//
// A check whose ID and probe (its definition hash) are unchanged keeps its state, counters, last
// result and schedule: a reload does not flap it. Its new Interval, Timeout, Rise, Fall and
// MinSpacing apply from its next run (rise and fall from its next result). A check whose probe
// changed starts afresh in its Initial state; if that differs from its old state, a Change with
// ReasonReconfigured is delivered. New checks start in their Initial state without a Change.
// Removed checks go silently; a run in progress for a removed or changed check is dropped.
func (s *Scheduler) Update(specs []Spec) error {
	items := make([]prepared, 0, len(specs))
	seen := make(map[string]bool, len(specs))
	var errs []error
	for _, sp := range specs {
		it, err := prepare(sp)
		if err == nil && seen[sp.ID] {
			err = errors.New("duplicate ID")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("health: check %q: %w", sp.ID, err))
			continue
		}
		seen[sp.ID] = true
		items = append(items, it)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	next := make(map[string]*entry, len(items))
	for _, it := range items {
		id := it.spec.ID
		old := s.checks[id]
		if old != nil && old.hash == it.hash {
			s.keep(old, it, now)
			next[id] = old
			continue
		}
		e := s.add(it, now)
		if old != nil {
			s.unqueue(old)
			if old.state != e.state {
				s.emit(e, old.state, e.state, Result{Reason: ReasonReconfigured, Detail: "definition changed: state reset"}, now)
			}
		}
		next[id] = e
	}
	for id, old := range s.checks {
		if next[id] == nil {
			s.unqueue(old)
		}
	}
	s.checks = next
	clear(s.byTarget)
	for _, e := range next {
		if e.passive != nil {
			s.byTarget[e.passive.target] = append(s.byTarget[e.passive.target], e)
		}
	}
	s.poke()
	return nil
}

// add creates the entry of a new or changed check. s.mu must be held.
func (s *Scheduler) add(it prepared, now time.Time) *entry {
	e := &entry{spec: it.spec, kind: it.spec.Probe.Kind(), hash: it.hash, checker: it.checker, connect: it.connect, index: -1}
	if it.passive != nil {
		e.passive = newPassiveState(*it.passive)
		e.state = StateUp
		return e
	}
	e.state = it.spec.Initial
	e.offset = time.Duration(s.rand.Int64N(int64(it.spec.Interval)))
	s.schedule(s.heapOf(e), e, now.Add(e.offset))
	return e
}

// keep applies an unchanged check's new timing. s.mu must be held.
func (s *Scheduler) keep(e *entry, it prepared, now time.Time) {
	oldInterval := e.spec.Interval
	e.spec, e.checker, e.connect = it.spec, it.checker, it.connect
	if e.passive != nil || e.index < 0 || !e.ran || oldInterval == e.spec.Interval {
		return
	}
	due := e.lastDue.Add(e.spec.Interval)
	if due.Before(now) {
		due = now
	}
	s.schedule(s.heapOf(e), e, due)
}

// Status returns a snapshot of one check.
func (s *Scheduler) Status(id string) (Status, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.checks[id]
	if !ok {
		return Status{}, false
	}
	return e.status(), true
}

// Statuses returns a snapshot of every check, ordered by ID.
func (s *Scheduler) Statuses() []Status {
	s.mu.Lock()
	out := make([]Status, 0, len(s.checks))
	for _, e := range s.checks {
		out = append(out, e.status())
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Healthy reports whether a check exists and is up.
func (s *Scheduler) Healthy(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.checks[id]
	return ok && e.state == StateUp
}

func (e *entry) status() Status {
	st := Status{
		ID: e.spec.ID, Kind: e.kind, State: e.state,
		Successes: e.successes, Failures: e.failures,
		Last: e.last, LastChecked: e.lastChecked, Running: e.running,
		Checks: e.checks, Weight: cloneInt(e.weight),
	}
	st.Last.Weight = cloneInt(e.last.Weight)
	if e.index >= 0 {
		st.NextCheck = e.due
	}
	return st
}

// entryHeap orders entries by due time, then by when they were queued.
type entryHeap []*entry

func (h entryHeap) Len() int { return len(h) }
func (h entryHeap) Less(i, j int) bool {
	if !h[i].due.Equal(h[j].due) {
		return h[i].due.Before(h[j].due)
	}
	return h[i].seq < h[j].seq
}
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}
