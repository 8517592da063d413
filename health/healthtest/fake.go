package healthtest

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/fulcrum-lb/fulcrum/health"
)

// Probe is a health.Probe for tests: its checker asks Backend for the result of the check
// named Name. Name is the probe's definition (change it to change the definition); Backend is
// not.
type Probe struct {
	Name    string
	Backend *Backend `json:"-"`
}

// Kind returns "fake".
func (Probe) Kind() string { return "fake" }

// Build returns the checker.
func (p Probe) Build() (health.Checker, error) {
	if p.Backend == nil {
		return nil, errors.New("healthtest: Probe without a Backend")
	}
	return checker(p), nil
}

type checker Probe

func (c checker) Check(ctx context.Context) health.Result { return c.Backend.check(ctx, c.Name) }

// Backend plays the targets of fake probes. Each name has a result (healthy unless set),
// optionally preceded by a script of results consumed one per call. With a delay, a call
// takes that long on the fake clock and returns a timeout if its context ends first. It counts
// calls and the calls in progress at once. It is safe for concurrent use.
type Backend struct {
	clock *FakeClock

	mu          sync.Mutex
	delay       time.Duration
	results     map[string]health.Result
	scripts     map[string][]health.Result
	panics      map[string]bool
	calls       map[string][]time.Time
	total       int
	inFlight    int
	maxInFlight int
}

// NewBackend returns a backend whose names are all healthy, timed by clock.
func NewBackend(clock *FakeClock) *Backend {
	return &Backend{
		clock:   clock,
		results: map[string]health.Result{},
		scripts: map[string][]health.Result{},
		panics:  map[string]bool{},
		calls:   map[string][]time.Time{},
	}
}

// Healthy returns the result SetHealthy(name, true) sets.
func Healthy() health.Result { return health.Result{Outcome: health.OutcomeHealthy} }

// Unhealthy returns the result SetHealthy(name, false) sets: refused.
func Unhealthy() health.Result {
	return health.Result{Outcome: health.OutcomeUnhealthy, Reason: health.ReasonRefused, Detail: "fake: refused"}
}

// Set sets the result of name's calls.
func (b *Backend) Set(name string, r health.Result) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.results[name] = r
}

// SetHealthy sets name's result to Healthy or Unhealthy.
func (b *Backend) SetHealthy(name string, ok bool) {
	if ok {
		b.Set(name, Healthy())
	} else {
		b.Set(name, Unhealthy())
	}
}

// Script queues results for name's next calls, before its set result applies again.
func (b *Backend) Script(name string, rs ...health.Result) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.scripts[name] = append(b.scripts[name], rs...)
}

// ScriptHealthy queues healthy (true) and unhealthy (false) results for name.
func (b *Backend) ScriptHealthy(name string, oks ...bool) {
	rs := make([]health.Result, len(oks))
	for i, ok := range oks {
		rs[i] = Unhealthy()
		if ok {
			rs[i] = Healthy()
		}
	}
	b.Script(name, rs...)
}

// Panic makes name's calls panic.
func (b *Backend) Panic(name string, on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.panics[name] = on
}

// SetDelay makes every call take d on the fake clock.
func (b *Backend) SetDelay(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.delay = d
}

// Calls returns the start times of name's calls.
func (b *Backend) Calls(name string) []time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]time.Time(nil), b.calls[name]...)
}

// Total returns the number of calls of all names.
func (b *Backend) Total() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.total
}

// InFlight returns the calls in progress now; MaxInFlight the most ever in progress at once.
func (b *Backend) InFlight() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.inFlight
}

// MaxInFlight returns the most calls ever in progress at once.
func (b *Backend) MaxInFlight() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.maxInFlight
}

func (b *Backend) check(ctx context.Context, name string) health.Result {
	b.mu.Lock()
	b.calls[name] = append(b.calls[name], b.clock.Now())
	b.total++
	b.inFlight++
	b.maxInFlight = max(b.maxInFlight, b.inFlight)
	r, ok := b.results[name]
	if !ok {
		r = Healthy()
	}
	if s := b.scripts[name]; len(s) > 0 {
		r, b.scripts[name] = s[0], s[1:]
	}
	delay, panics := b.delay, b.panics[name]
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.inFlight--
		b.mu.Unlock()
	}()
	if panics {
		panic("healthtest: " + name + " panics")
	}
	if delay > 0 {
		done := make(chan struct{})
		t := b.clock.AfterFunc(delay, func() { close(done) })
		select {
		case <-done:
		case <-ctx.Done():
			t.Stop()
			return health.Result{Outcome: health.OutcomeUnhealthy, Reason: health.ReasonTimeout, Detail: ctx.Err().Error(), Err: ctx.Err()}
		}
	}
	return r
}

// Recorder is a health.Sink that records the changes it gets. It is safe for concurrent use.
type Recorder struct {
	mu      sync.Mutex
	changes []health.Change
}

// OnChange implements health.Sink.
func (r *Recorder) OnChange(c health.Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, c)
}

// Changes returns the changes recorded so far.
func (r *Recorder) Changes() []health.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]health.Change(nil), r.changes...)
}

// Reset forgets the changes recorded so far.
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = nil
}
