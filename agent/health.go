package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fulcrum-lb/fulcrum/config"
	"github.com/fulcrum-lb/fulcrum/health"
)

// EventHealthChanged is published for every change of a health check's
// state, with attrs check, kind, from, to, reason, detail, latency_ms and
// either virtual_server and real_server, or proxy, backend and server.
const EventHealthChanged = "health_changed"

// healthMaxSeriesChecks caps the per-check gauge series
// (fulcrum_health_check_up{id}); past it only the totals are exported.
const healthMaxSeriesChecks = 1000

// healthTarget is what a check judges: a real server of a virtual_server
// (Kind "vs": A, B = virtual_server, real_server), a server of a proxy
// backend (Kind "proxy": A, B, C = proxy, backend, server) or a vrrp_script
// (Kind "script": A = its name; no consumer acts on it, VRRP reads it as a
// service).
type healthTarget struct {
	Kind    string
	A, B, C string
}

func (t healthTarget) String() string {
	switch t.Kind {
	case "vs":
		return "vs/" + t.A + "/" + t.B
	case "script":
		return scriptServiceName(t.A)
	}
	return "proxy/" + t.A + "/" + t.B + "/" + t.C
}

// healthConsumer is a subsystem that acts on the health of targets (ipvs
// weights, the proxy's pools). healthReset replaces everything it knows
// (on every health Apply: targets not in all are healthy); healthUpdate
// changes one target. Both must return promptly and keep what they are
// told, so that a consumer applied later still acts on the current state.
type healthConsumer interface {
	healthReset(all map[healthTarget]bool)
	healthUpdate(t healthTarget, healthy bool)
}

// healthCheck is the agent's record of one check of the scheduler.
type healthCheck struct {
	id      string
	target  healthTarget
	kind    string // tcp, http, https, udp, dns, exec, passive
	passive bool
}

// healthSubsystem runs the node's health_check blocks (of virtual_server
// and proxy backends) and the passive checks of proxy backends in one
// health.Scheduler, and fans each change out, in order, to the consumers
// (ipvs, l7proxy), the event bus, the log and the metrics. VRRP's
// track_service reads services (health.ServiceHealth) when it polls.
type healthSubsystem struct {
	log    *slog.Logger
	events Publisher

	sched    *health.Scheduler
	services *health.ServiceHealth
	metrics  *healthMetrics

	consumers []healthConsumer
	probe     func(id string, p health.Probe) health.Probe

	// deliverMu orders the fan-out of Apply's reset against the
	// scheduler's changes.
	deliverMu sync.Mutex

	mu         sync.Mutex // guards the fields below
	checks     map[string]healthCheck
	targets    map[healthTarget][]string // active check IDs of each target
	configured int
}

// healthOptions are the seams of the health subsystem (tests).
type healthOptions struct {
	clock         health.Clock
	maxConcurrent int
	// probe, if set, replaces each translated active probe (tests).
	probe func(id string, p health.Probe) health.Probe
}

func newHealthSubsystem(opts healthOptions) *healthSubsystem {
	s := &healthSubsystem{
		log:     slog.New(slog.DiscardHandler),
		checks:  map[string]healthCheck{},
		targets: map[healthTarget][]string{},
		metrics: newHealthMetrics(),
		probe:   opts.probe,
	}
	// Results are counted through OnResult, not by wrapping each probe: a wrapped plain TCP
	// check would hide from the scheduler's connect engine.
	s.sched = health.New(health.Options{Clock: opts.clock, Sink: health.SinkFunc(s.onChange),
		MaxConcurrent: opts.maxConcurrent, OnResult: s.metrics.observeResult})
	s.services = health.NewServiceHealth(healthSource{s.sched})
	return s
}

// bind gives the subsystem the agent's logger, bus and registry.
func (s *healthSubsystem) bind(deps subsystemDeps) {
	if deps.Log != nil {
		s.log = deps.Log
	}
	s.events = deps.Events
	if deps.Metrics != nil {
		deps.Metrics.MustRegister(newHealthCollector(s))
	}
}

// addConsumer registers a consumer; it is told the current state at once.
func (s *healthSubsystem) addConsumer(c healthConsumer) {
	s.deliverMu.Lock()
	defer s.deliverMu.Unlock()
	s.consumers = append(s.consumers, c)
	c.healthReset(s.snapshot())
}

func (s *healthSubsystem) Name() string { return "health" }

// healthPlan is cfg translated.
type healthPlan struct {
	specs    []health.Spec
	checks   map[string]healthCheck
	targets  map[healthTarget][]string
	services map[string]health.ServicePolicy
}

// healthCheckID is a check's stable ID: the target's, with "#n" for the
// second and later checks of the same target.
func healthCheckID(t healthTarget, i int) string {
	if i == 0 {
		return t.String()
	}
	return fmt.Sprintf("%s#%d", t, i+1)
}

// healthProbe translates one health_check block for a target address.
func healthProbe(hc config.HealthCheck, addr netip.AddrPort) (health.Probe, error) {
	dial := health.DialOptions{Addr: hc.CheckAddress, Port: hc.CheckPort, Source: hc.SourceAddress, Mark: hc.SOMark}
	switch hc.Type {
	case config.CheckTCP:
		p := health.TCP{Addr: addr, Dial: dial}
		if pl := hc.Payload; pl != nil {
			p.Send, p.Expect = pl.Send, regexpQuote(pl.Expect)
		}
		return p, nil
	case config.CheckUDP:
		p := health.UDP{Addr: addr, Dial: dial}
		if pl := hc.Payload; pl != nil {
			p.Send, p.Expect = pl.Send, regexpQuote(pl.Expect)
		}
		return p, nil
	case config.CheckHTTP, config.CheckHTTPS:
		p := health.HTTP{Addr: addr, Dial: dial, TLS: hc.Type == config.CheckHTTPS}
		if h := hc.HTTP; h != nil {
			p.Path, p.Method, p.Host, p.ServerName = h.Path, h.Method, h.Host, h.SNI
			p.SkipVerify = !h.VerifyTLS
			for _, r := range h.ExpectStatus {
				p.Status = append(p.Status, health.StatusRange{Min: r.Min, Max: r.Max})
			}
			if h.ExpectBody != nil {
				p.Expect = h.ExpectBody.String()
			}
		}
		return p, nil
	case config.CheckDNS:
		p := health.DNS{Addr: addr, Dial: dial}
		if d := hc.DNS; d != nil {
			p.Name, p.Type, p.Expect = d.QueryName, d.QueryType, d.ExpectAnswer
		}
		return p, nil
	case config.CheckExec:
		p := health.Exec{Addr: addr}
		if e := hc.Exec; e != nil {
			p.Argv, p.User, p.Dynamic = e.Command, e.User, e.DynamicWeight
		}
		return p, nil
	}
	return nil, fmt.Errorf("unknown health_check type %q", hc.Type)
}

// regexpQuote turns config's substring expectation into the probe's
// regular expression.
func regexpQuote(s string) string {
	if s == "" {
		return ""
	}
	return regexp.QuoteMeta(s)
}

func healthSpec(id string, hc config.HealthCheck, p health.Probe) health.Spec {
	sp := health.Spec{ID: id, Probe: p, Interval: hc.Interval, Timeout: hc.Timeout, Rise: hc.Rise, Fall: hc.Fall}
	if hc.InitialState == config.StateUp {
		sp.Initial = health.StateUp
	}
	return sp
}

// healthPlanOf translates cfg: every health_check of a virtual_server
// applies to each of its real servers; every health_check of a proxy
// backend to each of its servers; a backend with max_fails gets a
// passive check per server too (fed by the proxy). track_service
// policies: a virtual_server is up when quorum min_up (or 1) of its real
// servers are healthy; a proxy when a server of its default backend is.
func healthPlanOf(cfg *config.Config) (healthPlan, error) {
	pl := healthPlan{checks: map[string]healthCheck{}, targets: map[healthTarget][]string{}, services: map[string]health.ServicePolicy{}}
	// serverIDs are the IDs a server's health is made of (active and
	// passive), for service policies.
	serverIDs := map[healthTarget][]string{}
	add := func(t healthTarget, hc config.HealthCheck, addr netip.AddrPort, i int) error {
		p, err := healthProbe(hc, addr)
		if err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
		id := healthCheckID(t, i)
		pl.specs = append(pl.specs, healthSpec(id, hc, p))
		pl.checks[id] = healthCheck{id: id, target: t, kind: string(hc.Type)}
		pl.targets[t] = append(pl.targets[t], id)
		serverIDs[t] = append(serverIDs[t], id)
		return nil
	}
	for _, vs := range cfg.VirtualServers {
		for _, rs := range vs.RealServers {
			t := healthTarget{Kind: "vs", A: vs.Name, B: rs.Name}
			for i, hc := range vs.HealthChecks {
				if err := add(t, hc, rs.Address, i); err != nil {
					return pl, err
				}
			}
		}
	}
	for _, p := range cfg.Proxies {
		for _, b := range p.Backends {
			for _, sv := range b.Servers {
				t := healthTarget{Kind: "proxy", A: p.Name, B: b.Name, C: sv.Name}
				for i, hc := range b.HealthChecks {
					if err := add(t, hc, sv.Address, i); err != nil {
						return pl, err
					}
				}
				if b.MaxFails > 0 {
					id := t.String() + "#passive"
					pl.specs = append(pl.specs, health.Spec{ID: id, Probe: health.Passive{Target: sv.Address.String(), MaxFails: b.MaxFails, FailTimeout: b.FailTimeout}})
					pl.checks[id] = healthCheck{id: id, target: t, kind: "passive", passive: true}
					serverIDs[t] = append(serverIDs[t], id)
				}
			}
		}
	}
	// vrrp_script blocks: one exec check each, and a service of that one
	// check for VRRP's track_script.
	for _, sc := range cfg.VRRPScripts {
		t := healthTarget{Kind: "script", A: sc.Name}
		id := t.String()
		p := health.Exec{Argv: sc.Command, User: sc.User}
		pl.specs = append(pl.specs, health.Spec{ID: id, Probe: p, Interval: sc.Interval, Timeout: sc.Timeout, Rise: sc.Rise, Fall: sc.Fall, Initial: health.StateUp})
		pl.checks[id] = healthCheck{id: id, target: t, kind: "vrrp_script"}
		pl.services[id] = health.ServicePolicy{IDs: []string{id}, Mode: health.ModeAny}
	}
	// Services for track_service: a server is healthy when all its
	// checks are (healthServerRef, healthSource).
	for _, vs := range cfg.VirtualServers {
		var ids []string
		for _, rs := range vs.RealServers {
			t := healthTarget{Kind: "vs", A: vs.Name, B: rs.Name}
			ids = append(ids, healthServerRef(t, serverIDs[t]))
		}
		minUp := 1
		if vs.Quorum != nil && vs.Quorum.MinUp > 0 {
			minUp = vs.Quorum.MinUp
		}
		if minUp > len(ids) {
			minUp = len(ids)
		}
		if len(ids) > 0 {
			pl.services[vs.Name] = health.ServicePolicy{IDs: ids, Mode: health.ModeQuorum, Quorum: minUp}
		}
	}
	for _, p := range cfg.Proxies {
		var ids []string
		for _, b := range p.Backends {
			if b.Name != p.DefaultBackend {
				continue
			}
			for _, sv := range b.Servers {
				t := healthTarget{Kind: "proxy", A: p.Name, B: b.Name, C: sv.Name}
				ids = append(ids, healthServerRef(t, serverIDs[t]))
			}
		}
		if len(ids) > 0 {
			pl.services[p.Name] = health.ServicePolicy{IDs: ids, Mode: health.ModeAny}
		}
	}
	return pl, nil
}

// healthServerRef names a server in a service policy: its check IDs
// joined by "&" (healthSource reads it as "all of them"); a server
// without checks is "+" and its target, always healthy.
func healthServerRef(t healthTarget, ids []string) string {
	if len(ids) == 0 {
		return "+" + t.String()
	}
	return strings.Join(ids, "&")
}

// healthSource is the scheduler as services read it: a server reference
// of healthServerRef is healthy when all its checks are.
type healthSource struct{ sched *health.Scheduler }

func (h healthSource) Healthy(ref string) bool {
	if strings.HasPrefix(ref, "+") {
		return true
	}
	for id := range strings.SplitSeq(ref, "&") {
		if !h.sched.Healthy(id) {
			return false
		}
	}
	return true
}

// Apply replaces the checks. Unchanged checks keep their state (no flap
// on reload); consumers are told the state of every target.
func (s *healthSubsystem) Apply(_ context.Context, cfg *config.Config) error {
	pl, err := healthPlanOf(cfg)
	if err != nil {
		return err
	}
	for name, p := range pl.services {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("track_service %q: %w", name, err)
		}
	}
	if s.probe != nil {
		for i, sp := range pl.specs {
			if !pl.checks[sp.ID].passive {
				pl.specs[i].Probe = s.probe(sp.ID, sp.Probe)
			}
		}
	}
	s.deliverMu.Lock()
	defer s.deliverMu.Unlock()
	if err := s.sched.Update(pl.specs); err != nil {
		return err
	}
	if err := s.services.Set(pl.services); err != nil {
		// Validated above; not expected.
		return err
	}
	s.mu.Lock()
	s.checks, s.targets, s.configured = pl.checks, pl.targets, len(pl.specs)
	s.mu.Unlock()
	snap := s.snapshot()
	for _, c := range s.consumers {
		c.healthReset(snap)
	}
	s.log.Debug("health checks applied", slog.Int("checks", len(pl.specs)))
	return nil
}

// snapshot is the health of every target with active checks.
func (s *healthSubsystem) snapshot() map[healthTarget]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[healthTarget]bool, len(s.targets))
	for t, ids := range s.targets {
		out[t] = s.allHealthy(ids)
	}
	return out
}

func (s *healthSubsystem) allHealthy(ids []string) bool {
	for _, id := range ids {
		if !s.sched.Healthy(id) {
			return false
		}
	}
	return true
}

// ServiceHealthy serves VRRP's track_service (vrrp.ServiceHealth).
func (s *healthSubsystem) ServiceHealthy(name string) (bool, error) {
	return s.services.ServiceHealthy(name)
}

// ReportPassive feeds the proxy's request outcomes to passive checks
// (l7proxy.PassiveReporter).
func (s *healthSubsystem) ReportPassive(target string, ok bool) { s.sched.ReportPassive(target, ok) }

// onChange is the scheduler's sink: consumers first (in order), then the
// event, the log and the metrics.
func (s *healthSubsystem) onChange(c health.Change) {
	s.deliverMu.Lock()
	defer s.deliverMu.Unlock()
	s.mu.Lock()
	chk, known := s.checks[c.ID]
	var ids []string
	if known {
		ids = s.targets[chk.target]
	}
	s.mu.Unlock()
	s.metrics.observeChange(c)
	if !known {
		return // removed by an Update since
	}
	if !chk.passive && c.From != c.To && chk.target.Kind != "script" {
		healthy := s.allHealthy(ids)
		for _, cons := range s.consumers {
			cons.healthUpdate(chk.target, healthy)
		}
	}
	if c.From == c.To {
		return // a dynamic weight change only
	}
	reason := c.Result.Reason.String()
	latency := float64(c.Result.Latency.Microseconds()) / 1000
	attrs := map[string]any{
		"check": c.ID, "kind": chk.kind, "from": c.From.String(), "to": c.To.String(),
		"reason": reason, "detail": c.Result.Detail, "latency_ms": latency,
		"successes": c.Successes, "failures": c.Failures,
	}
	logAttrs := []any{}
	switch chk.target.Kind {
	case "vs":
		attrs["virtual_server"], attrs["real_server"] = chk.target.A, chk.target.B
		logAttrs = append(logAttrs, slog.String("virtual_server", chk.target.A), slog.String("real_server", chk.target.B))
	case "script":
		attrs["vrrp_script"] = chk.target.A
		logAttrs = append(logAttrs, slog.String("vrrp_script", chk.target.A))
	default:
		attrs["proxy"], attrs["backend"], attrs["server"] = chk.target.A, chk.target.B, chk.target.C
		logAttrs = append(logAttrs, slog.String("proxy", chk.target.A), slog.String("backend", chk.target.B), slog.String("server", chk.target.C))
	}
	if s.events != nil {
		s.events.Publish("health", EventHealthChanged, attrs)
	}
	logAttrs = append(logAttrs, slog.String("check", c.ID), slog.String("state", c.To.String()),
		slog.String("reason", reason), slog.Float64("latency_ms", latency))
	if c.Result.Detail != "" {
		logAttrs = append(logAttrs, slog.String("detail", c.Result.Detail))
	}
	level := slog.LevelInfo
	if c.To == health.StateDown {
		level = slog.LevelWarn
	}
	s.log.Log(context.Background(), level, "health check "+c.To.String(), logAttrs...)
}

// Run drives the checks until ctx ends.
func (s *healthSubsystem) Run(ctx context.Context) error {
	err := s.sched.Run(ctx)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// HealthCheckStatus is one check in the health subsystem's status detail.
type HealthCheckStatus struct {
	ID            string     `json:"id"`
	Kind          string     `json:"kind"`
	VirtualServer string     `json:"virtual_server,omitempty"`
	RealServer    string     `json:"real_server,omitempty"`
	Proxy         string     `json:"proxy,omitempty"`
	Backend       string     `json:"backend,omitempty"`
	Server        string     `json:"server,omitempty"`
	VRRPScript    string     `json:"vrrp_script,omitempty"`
	State         string     `json:"state"`
	Successes     int        `json:"successes"`
	Failures      int        `json:"failures"`
	Checks        uint64     `json:"checks"`
	LastOutcome   string     `json:"last_outcome,omitempty"`
	LastReason    string     `json:"last_reason,omitempty"`
	LastDetail    string     `json:"last_detail,omitempty"`
	LastLatencyMS float64    `json:"last_latency_ms"`
	LastChecked   *time.Time `json:"last_checked,omitempty"`
	Weight        *int       `json:"weight,omitempty"`
}

func (s *healthSubsystem) checkStatuses() []HealthCheckStatus {
	s.mu.Lock()
	checks := s.checks
	s.mu.Unlock()
	var out []HealthCheckStatus
	for _, st := range s.sched.Statuses() {
		chk, ok := checks[st.ID]
		if !ok {
			continue
		}
		hs := HealthCheckStatus{
			ID: st.ID, Kind: chk.kind, State: st.State.String(),
			Successes: st.Successes, Failures: st.Failures, Checks: st.Checks,
			LastLatencyMS: float64(st.Last.Latency.Microseconds()) / 1000, Weight: st.Weight,
		}
		switch chk.target.Kind {
		case "vs":
			hs.VirtualServer, hs.RealServer = chk.target.A, chk.target.B
		case "script":
			hs.VRRPScript = chk.target.A
		default:
			hs.Proxy, hs.Backend, hs.Server = chk.target.A, chk.target.B, chk.target.C
		}
		if st.Last.Outcome != health.OutcomeNone {
			hs.LastOutcome, hs.LastReason, hs.LastDetail = st.Last.Outcome.String(), st.Last.Reason.String(), st.Last.Detail
		}
		if !st.LastChecked.IsZero() {
			t := st.LastChecked
			hs.LastChecked = &t
		}
		out = append(out, hs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (s *healthSubsystem) Status() SubsystemStatus {
	s.mu.Lock()
	n := s.configured
	s.mu.Unlock()
	st := SubsystemStatus{Name: "health", Configured: n, State: StateNoneConfigured}
	if n == 0 {
		return st
	}
	checks := s.checkStatuses()
	up := 0
	for _, c := range checks {
		if c.State == health.StateUp.String() {
			up++
		}
	}
	st.State = fmt.Sprintf("%d of %d check(s) up", up, len(checks))
	st.Detail = map[string]any{"checks": checks}
	return st
}

// healthMetrics counts check results (fulcrum_health_checks_total
// {outcome}), their latency and state changes; the per-check state is
// read from the scheduler at scrape time (healthCollector).
type healthMetrics struct {
	changes *prometheus.CounterVec
	results *prometheus.CounterVec
	latency prometheus.Histogram
}

func newHealthMetrics() *healthMetrics {
	return &healthMetrics{
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fulcrum_health_changes_total", Help: "Health check state changes, by the state entered.",
		}, []string{"to"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fulcrum_health_checks_total", Help: "Health check runs, by outcome (healthy, unhealthy, error).",
		}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fulcrum_health_check_latency_seconds", Help: "Latency of health check runs.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
	}
}

func (m *healthMetrics) observeResult(r health.Result) {
	m.results.WithLabelValues(r.Outcome.String()).Inc()
	m.latency.Observe(r.Latency.Seconds())
}

func (m *healthMetrics) observeChange(c health.Change) {
	if c.From != c.To {
		m.changes.WithLabelValues(c.To.String()).Inc()
	}
}

// healthCollector exports the metrics and, from the scheduler at scrape
// time, fulcrum_health_check_up{id} (the first healthMaxSeriesChecks
// checks by ID) and fulcrum_health_check_states{state}.
type healthCollector struct {
	s      *healthSubsystem
	up     *prometheus.Desc
	states *prometheus.Desc
}

func newHealthCollector(s *healthSubsystem) *healthCollector {
	return &healthCollector{
		s:      s,
		up:     prometheus.NewDesc("fulcrum_health_check_up", "1 when the health check is up, 0 when down (the first checks by ID, up to a cap).", []string{"id"}, nil),
		states: prometheus.NewDesc("fulcrum_health_check_states", "Health checks by state.", []string{"state"}, nil),
	}
}

func (c *healthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.up
	ch <- c.states
	c.s.metrics.changes.Describe(ch)
	c.s.metrics.results.Describe(ch)
	c.s.metrics.latency.Describe(ch)
}

func (c *healthCollector) Collect(ch chan<- prometheus.Metric) {
	c.s.metrics.changes.Collect(ch)
	c.s.metrics.results.Collect(ch)
	c.s.metrics.latency.Collect(ch)
	statuses := c.s.sched.Statuses()
	sort.Slice(statuses, func(i, j int) bool { return statuses[i].ID < statuses[j].ID })
	byState := map[string]float64{health.StateUp.String(): 0, health.StateDown.String(): 0}
	for i, st := range statuses {
		byState[st.State.String()]++
		if i < healthMaxSeriesChecks {
			v := 0.0
			if st.State == health.StateUp {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, v, st.ID)
		}
	}
	for state, n := range byState {
		ch <- prometheus.MustNewConstMetric(c.states, prometheus.GaugeValue, n, state)
	}
}

// scriptServiceName is the health service (and check ID) of a vrrp_script: config names cannot
// hold '/', so it never meets a virtual_server's or proxy's.
func scriptServiceName(name string) string { return "vrrp_script/" + name }
