package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fulcrum-lb/fulcrum/config"
	"github.com/fulcrum-lb/fulcrum/l7proxy"
)

// EventProxyServerStateChanged is published when a proxy server's state
// changes, with attrs proxy, backend, server, address, from, to and
// reason. States are those of ProxyServerStatus.State; reason is
// "operator" (fulcrum proxy disable/enable), "max_fails" (passive checking
// took the server out), "fail_timeout" (it is back after fail_timeout),
// "health" (the health source) or "config" (a reload changed its weight).
const EventProxyServerStateChanged = "proxy_server_state_changed"

// Proxy server states, as l7proxy reports them, plus the operator's.
const (
	ProxyServerUp          = l7proxy.StateUp
	ProxyServerDown        = l7proxy.StateDown
	ProxyServerPassiveDown = l7proxy.StatePassiveDown
	ProxyServerMaint       = l7proxy.StateMaint
	ProxyServerDisabled    = "disabled" // fulcrum proxy disable
)

// defaultProxyPollInterval is how often the subsystem looks for server
// state changes that nothing announces (passive checking putting a server
// out and, after fail_timeout, back).
const defaultProxyPollInterval = time.Second

// proxySubsystem runs the node's proxy blocks in one l7proxy.Proxy: one
// Proxy for all of them, so that a reload is one atomic swap and a
// listener address may move from one proxy to another. Its first Apply
// binds the listeners (an address in use fails the agent's start, with
// the listener named); every later Apply that changes the proxy options is
// l7proxy's Apply, which validates and binds everything first, so a reload
// it refuses leaves the running configuration serving, and listeners whose
// address stays keep their sockets. A reload that leaves the options as
// they are only reloads the certificate files.
//
// The proxy runs under the subsystem's own context from that first Apply;
// Run's end shuts it down gracefully (bounded by proxyDrainTimeout).
type proxySubsystem struct {
	log    *slog.Logger
	events Publisher
	poll   time.Duration

	life context.Context
	end  context.CancelFunc

	mu         sync.Mutex // guards the fields below
	p          *l7proxy.Proxy
	running    l7proxy.Options // as last applied, in proxyOptionsKey's form
	runningLog string          // proxies with access_log, as last applied
	configured int
	servers    map[string]bool   // serverKey of every configured server
	disabled   map[string]bool   // serverKey → disabled by the operator
	states     map[string]string // serverKey → last state observed (events)
	unhealthy  map[string]bool   // serverKey → down by the health subsystem (health_proxy.go)
	stateFile  string            // records disabled across restarts; "" keeps nothing

	passive l7proxy.PassiveReporter // the health subsystem; set before the first Apply
}

func newProxySubsystem(deps subsystemDeps) *proxySubsystem {
	life, end := context.WithCancel(context.Background())
	s := &proxySubsystem{
		log:      deps.Log,
		events:   deps.Events,
		poll:     defaultProxyPollInterval,
		life:     life,
		end:      end,
		servers:  map[string]bool{},
		disabled: map[string]bool{},
		states:   map[string]string{},
	}
	if deps.StateDir != "" {
		s.stateFile = filepath.Join(deps.StateDir, proxyStateFileName)
		disabled, err := loadProxyDisabled(s.stateFile)
		if err != nil {
			// Not fatal: the proxy serves; the operator's disables are lost
			// and the log says so.
			s.log.Warn("proxy servers disabled before the restart are not known", slog.Any("error", err))
		}
		s.disabled = disabled
	}
	if deps.Metrics != nil {
		deps.Metrics.MustRegister(newProxyCollector(s))
	}
	return s
}

func (s *proxySubsystem) Name() string { return "l7proxy" }

func proxyServerKey(proxy, backend, server string) string {
	return proxy + "/" + backend + "/" + server
}

// Apply makes the proxy serve cfg's proxy blocks. On error nothing
// changed.
func (s *proxySubsystem) Apply(_ context.Context, cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.life.Err() != nil {
		return errors.New("l7proxy: stopped")
	}
	opts := proxyOptions(cfg, s.log)
	opts.Passive = s.passive
	if s.p == nil {
		p, err := l7proxy.New(opts)
		if err != nil {
			return err
		}
		if err := p.Start(s.life); err != nil {
			p.Close()
			return err
		}
		s.p = p
	} else if key, logged := proxyOptionsKey(opts); logged == s.runningLog && reflect.DeepEqual(key, s.running) {
		// A reload that leaves the proxies as they are (a VRRP or IPVS
		// change) has nothing to swap; only the certificate files are
		// read again, as Apply would.
		if err := s.p.ReloadCertificates(); err != nil {
			return err
		}
	} else if err := s.p.Apply(opts); err != nil {
		return err
	}
	s.running, s.runningLog = proxyOptionsKey(opts)

	s.configured = len(cfg.Proxies)
	servers := map[string]bool{}
	for _, p := range cfg.Proxies {
		for _, b := range p.Backends {
			for _, sv := range b.Servers {
				servers[proxyServerKey(p.Name, b.Name, sv.Name)] = true
			}
		}
	}
	s.servers = servers
	// Operator overrides last while their server exists: a server whose
	// address changed is a new server to l7proxy and must hear it again.
	forgotten := false
	for key := range s.disabled {
		if !servers[key] {
			delete(s.disabled, key)
			forgotten = true
			continue
		}
		s.pushHealthLocked(key)
	}
	if forgotten {
		if err := saveProxyDisabled(s.stateFile, s.disabled); err != nil {
			s.log.Warn("recording the disabled proxy servers", slog.Any("error", err))
		}
	}
	for key := range s.unhealthy {
		if servers[key] {
			s.pushHealthLocked(key)
		}
	}
	s.observeLocked()
	s.log.Debug("proxy configuration applied", slog.Int("proxies", s.configured))
	return nil
}

// proxyOptionsKey is o in a comparable form: without its loggers (new
// ones at each translation), and the names of the proxies whose requests
// are access-logged.
func proxyOptionsKey(o l7proxy.Options) (l7proxy.Options, string) {
	o.Logger = nil
	var names []string
	if o.AccessLog != nil {
		if h, ok := o.AccessLog.Handler().(*accessLogHandler); ok {
			for n := range h.proxies {
				names = append(names, n)
			}
		}
		o.AccessLog = nil
	}
	sort.Strings(names)
	return o, strings.Join(names, ",")
}

// pushHealthLocked tells l7proxy whether the server may take requests.
// The operator and the health subsystem decide (healthy && !disabled).
// s.mu is held.
func (s *proxySubsystem) pushHealthLocked(key string) error {
	proxy, rest, _ := strings.Cut(key, "/")
	backend, server, _ := strings.Cut(rest, "/")
	return s.p.SetServerHealth(proxy, backend, server, !s.disabled[key] && !s.unhealthy[key])
}

// Run watches for state changes until ctx ends, then shuts the proxy down
// gracefully: listeners close, requests in flight get proxyDrainTimeout.
func (s *proxySubsystem) Run(ctx context.Context) error {
	t := time.NewTicker(s.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			s.end()
			p := s.p
			s.mu.Unlock()
			if p != nil {
				return p.Close()
			}
			return nil
		case <-t.C:
			s.mu.Lock()
			s.observeLocked()
			s.mu.Unlock()
		}
	}
}

// reloadCertificates loads every TLS listener's certificate files again
// (the agent calls it on SIGHUP). A listener whose files fail to load
// keeps its certificates.
func (s *proxySubsystem) reloadCertificates() error {
	s.mu.Lock()
	p := s.p
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.ReloadCertificates()
}

// certReloader is a subsystem with certificates to reload on SIGHUP.
type certReloader interface {
	reloadCertificates() error
}

// reloadCertificates asks every subsystem holding certificates to load
// them again. SIGHUP does this after the configuration reload, whatever
// its outcome, so a renewed certificate is picked up also while the
// configuration file has an error.
func (a *Agent) reloadCertificates(ctx context.Context) {
	for _, s := range a.subsystems {
		r, ok := s.(certReloader)
		if !ok {
			continue
		}
		if err := r.reloadCertificates(); err != nil {
			a.log.ErrorContext(ctx, "certificate reload failed; the listeners concerned keep their certificates",
				slog.String("subsystem", s.Name()), slog.Any("error", err))
		}
	}
}

// observeLocked compares the servers' states with those last seen and
// publishes a proxy_server_state_changed event (and logs) for each change.
// Servers seen for the first time set the baseline silently. s.mu is held.
func (s *proxySubsystem) observeLocked() {
	if s.p == nil {
		return
	}
	seen := map[string]bool{}
	for _, p := range s.statusLocked() {
		for _, b := range p.Backends {
			for _, sv := range b.Servers {
				key := proxyServerKey(p.Name, b.Name, sv.Name)
				seen[key] = true
				from, known := s.states[key]
				s.states[key] = sv.State
				if !known || from == sv.State {
					continue
				}
				reason := proxyChangeReason(from, sv.State)
				s.events.Publish("l7proxy", EventProxyServerStateChanged, map[string]any{
					"proxy": p.Name, "backend": b.Name, "server": sv.Name, "address": sv.Address,
					"from": from, "to": sv.State, "reason": reason,
				})
				level := slog.LevelWarn
				if sv.State == ProxyServerUp {
					level = slog.LevelInfo
				}
				s.log.Log(context.Background(), level, "proxy server "+sv.State,
					slog.String("proxy", p.Name), slog.String("backend", b.Name), slog.String("server", sv.Name),
					slog.String("address", sv.Address), slog.String("from", from), slog.String("to", sv.State),
					slog.String("reason", reason), slog.Int("passive_fails", sv.PassiveFails))
			}
		}
	}
	for key := range s.states {
		if !seen[key] {
			delete(s.states, key)
		}
	}
}

// proxyChangeReason names the cause of a state change from its states.
func proxyChangeReason(from, to string) string {
	switch {
	case from == ProxyServerDisabled || to == ProxyServerDisabled:
		return "operator"
	case to == ProxyServerPassiveDown:
		return "max_fails"
	case from == ProxyServerPassiveDown:
		return "fail_timeout"
	case from == ProxyServerMaint || to == ProxyServerMaint:
		return "config"
	default:
		return "health"
	}
}

// ProxyStatus is one proxy in the l7proxy status detail ("proxies").
// Counters are cumulative since the agent started; they survive reloads
// for proxies, backends and servers that keep their names (and address).
type ProxyStatus struct {
	Name              string                `json:"name"`
	Listeners         []ProxyListenerStatus `json:"listeners"`
	ActiveConnections int64                 `json:"active_connections"`
	TotalConnections  uint64                `json:"total_connections"`
	ActiveRequests    int64                 `json:"active_requests"`
	TotalRequests     uint64                `json:"total_requests"`
	RequestRate       float64               `json:"request_rate"`
	Responses         ProxyResponseCounts   `json:"responses"`
	BytesIn           uint64                `json:"bytes_in"`
	BytesOut          uint64                `json:"bytes_out"`
	Errors            uint64                `json:"errors"`
	RateLimited       uint64                `json:"rate_limited"`
	Retries           uint64                `json:"retries"`
	Redirects         uint64                `json:"redirects"`
	NoServer          uint64                `json:"no_server"`
	Backends          []ProxyBackendStatus  `json:"backends"`
}

// ProxyResponseCounts are responses by status class ("1xx" ... "5xx",
// "other").
type ProxyResponseCounts l7proxy.ClassCounts

// ProxyListenerStatus is one listener of a proxy.
type ProxyListenerStatus struct {
	Name          string `json:"name"`
	Address       string `json:"address"`
	TLS           bool   `json:"tls"`
	ProxyProtocol bool   `json:"proxy_protocol"`
}

// ProxyBackendStatus is one backend of a proxy.
type ProxyBackendStatus struct {
	Name      string              `json:"name"`
	Balance   string              `json:"balance"`
	Sticky    string              `json:"sticky,omitempty"`
	ServersUp int                 `json:"servers_up"`
	Servers   []ProxyServerStatus `json:"servers"`
}

// ProxyServerStatus is one server of a backend. State is "up", "down" (the
// health source says so), "passive_down" (max_fails reached; out for
// fail_timeout), "maint" (weight 0) or "disabled" (by the operator).
type ProxyServerStatus struct {
	Name           string              `json:"name"`
	Address        string              `json:"address"`
	State          string              `json:"state"`
	Weight         int                 `json:"weight"`
	Disabled       bool                `json:"disabled,omitempty"`
	ActiveSessions int64               `json:"active_sessions"`
	TotalSessions  uint64              `json:"total_sessions"`
	RequestRate    float64             `json:"request_rate"`
	Errors         uint64              `json:"errors"`
	PassiveFails   int                 `json:"passive_fails"`
	Responses      ProxyResponseCounts `json:"responses"`
}

// statusLocked converts l7proxy's status, applying operator overrides.
// s.mu is held.
func (s *proxySubsystem) statusLocked() []ProxyStatus {
	if s.p == nil {
		return nil
	}
	st := s.p.Status()
	out := make([]ProxyStatus, 0, len(st.Proxies))
	for _, p := range st.Proxies {
		ps := ProxyStatus{
			Name: p.Name, ActiveConnections: p.ActiveConnections, TotalConnections: p.TotalConnections,
			ActiveRequests: p.ActiveRequests, TotalRequests: p.TotalRequests, RequestRate: round3(p.RequestRate),
			Responses: ProxyResponseCounts(p.Responses), BytesIn: p.BytesIn, BytesOut: p.BytesOut,
			Errors: p.Errors, RateLimited: p.RateLimited, Retries: p.Retries, Redirects: p.Redirects, NoServer: p.NoServer,
		}
		for _, l := range p.Listeners {
			ps.Listeners = append(ps.Listeners, ProxyListenerStatus(l))
		}
		for _, b := range p.Backends {
			bs := ProxyBackendStatus{Name: b.Name, Balance: b.Balance, Sticky: b.Sticky, ServersUp: b.ServersUp}
			for _, sv := range b.Servers {
				ss := ProxyServerStatus{
					Name: sv.Name, Address: sv.Address, State: sv.State, Weight: sv.Weight,
					ActiveSessions: sv.ActiveSessions, TotalSessions: sv.TotalSessions, RequestRate: round3(sv.RequestRate),
					Errors: sv.Errors, PassiveFails: sv.PassiveFails, Responses: ProxyResponseCounts(sv.Responses),
				}
				if s.disabled[proxyServerKey(p.Name, b.Name, sv.Name)] {
					ss.Disabled, ss.State = true, ProxyServerDisabled
				}
				bs.Servers = append(bs.Servers, ss)
			}
			ps.Backends = append(ps.Backends, bs)
		}
		out = append(out, ps)
	}
	return out
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// Status reports the proxies with their listeners, backends and servers.
func (s *proxySubsystem) Status() SubsystemStatus {
	s.mu.Lock()
	proxies := s.statusLocked()
	configured := s.configured
	s.mu.Unlock()
	st := SubsystemStatus{Name: "l7proxy", Configured: configured, State: StateNoneConfigured}
	if configured == 0 {
		return st
	}
	listeners, servers := 0, 0
	states := map[string]int{}
	for _, p := range proxies {
		listeners += len(p.Listeners)
		for _, b := range p.Backends {
			for _, sv := range b.Servers {
				servers++
				states[sv.State]++
			}
		}
	}
	parts := []string{
		proxyCount(configured, "proxy", "proxies"), proxyCount(listeners, "listener", "listeners"),
		fmt.Sprintf("%d/%d servers up", states[ProxyServerUp], servers),
	}
	for _, state := range []string{ProxyServerDown, ProxyServerPassiveDown, ProxyServerMaint, ProxyServerDisabled} {
		if n := states[state]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, state))
		}
	}
	st.State = "running: " + strings.Join(parts, ", ")
	st.Detail = map[string]any{"proxies": proxies}
	return st
}

func proxyCount(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// accessLogHandler passes the access-log records of the proxies that have
// access_log on to the agent's log, with the duration in milliseconds
// (duration_ms; journald: DURATION_MS) instead of l7proxy's duration.
type accessLogHandler struct {
	next    slog.Handler
	proxies map[string]bool
}

func (h *accessLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *accessLogHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	wanted := false
	r.Attrs(func(a slog.Attr) bool {
		switch {
		case a.Key == "proxy":
			wanted = h.proxies[a.Value.String()]
		case a.Key == "duration" && a.Value.Kind() == slog.KindDuration:
			a = slog.Float64("duration_ms", float64(a.Value.Duration().Microseconds())/1000)
		}
		out.AddAttrs(a)
		return true
	})
	if !wanted {
		return nil
	}
	return h.next.Handle(ctx, out)
}

func (h *accessLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &accessLogHandler{next: h.next.WithAttrs(attrs), proxies: h.proxies}
}

func (h *accessLogHandler) WithGroup(name string) slog.Handler {
	return &accessLogHandler{next: h.next.WithGroup(name), proxies: h.proxies}
}
