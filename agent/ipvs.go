package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fulcrum-lb/fulcrum/config"
	"github.com/fulcrum-lb/fulcrum/ipvs"
)

// Event types of the ipvs subsystem.
const (
	// EventIPVSUnavailable: the kernel has no IPVS (or it could not be opened);
	// attrs error, configured. Virtual servers are not programmed.
	EventIPVSUnavailable = "ipvs_unavailable"
	// EventIPVSDestinationChanged: a real server's effective state changed
	// (weight, operator drain, removal by the failure policy, health); attrs
	// virtual_server, real_server, service, destination, configured_weight,
	// from_weight, weight, drained, removed, healthy, reason (apply, drain,
	// enable, resync).
	EventIPVSDestinationChanged = "ipvs_destination_changed"
	// EventIPVSQuorumLost and EventIPVSQuorumRestored: attrs virtual_server,
	// service, detail.
	EventIPVSQuorumLost     = "ipvs_quorum_lost"
	EventIPVSQuorumRestored = "ipvs_quorum_restored"
	// EventIPVSServiceAdopted: a configured service was found in the kernel
	// without being recorded as ours; it is now owned. Attrs virtual_server,
	// service.
	EventIPVSServiceAdopted = "ipvs_service_adopted"
	// EventIPVSOpFailed: a kernel operation failed (it is retried at the next
	// resync); attrs virtual_server, service, destination, error.
	EventIPVSOpFailed = "ipvs_op_failed"
	// EventIPVSDriftCorrected: a resync found the kernel different from the
	// desired state (an ipvsadm edit behind the agent's back, say) and
	// corrected it; attrs corrections (kernel operations), reason.
	EventIPVSDriftCorrected = "ipvs_drift_corrected"
)

// ipvsShutdownTimeout bounds the kernel work of a shutdown (removing the
// services marked remove_on_shutdown).
const ipvsShutdownTimeout = 30 * time.Second

// ipvsStateFileName is the IPVS ownership record's name in the state folder.
const ipvsStateFileName = "ipvs-owned.json"

// ipvsOptions configure the ipvs subsystem; the zero value is production.
type ipvsOptions struct {
	// open returns the kernel handle (default ipvs.Open in the agent's
	// network namespace). An error wrapping ipvs.ErrUnavailable means the
	// kernel has no IPVS.
	open func() (ipvs.Kernel, error)
	// stateFile records owned services and operator drains (default
	// ipvs.DefaultStateFile).
	stateFile string
	clock     ipvs.Clock
	// resyncInterval and tickInterval default to the ipvs package's.
	resyncInterval time.Duration
	tickInterval   time.Duration
}

func openKernelIPVS() (ipvs.Kernel, error) {
	k, err := ipvs.Open(ipvs.OpenOptions{})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// ipvsSubsystem runs the node's virtual_server blocks: it translates them
// into an ipvs.Desired (the agent owns the translation), opens kernel IPVS
// on first need, and keeps the kernel equal to the desired state with an
// ipvs.Reconciler (Apply on load and reload, a periodic resync, operator
// drains). Without IPVS in the kernel it reports so in status and events
// and programs nothing; the agent goes on.
type ipvsSubsystem struct {
	log    *slog.Logger
	events Publisher
	opts   ipvsOptions

	// opMu serialises the work that changes the kernel (apply, resync,
	// drain and enable, shutdown), so each one's before/after comparison
	// for events is its own.
	opMu sync.Mutex

	mu         sync.Mutex // guards the fields below; never held across kernel work
	kernel     ipvs.Kernel
	rec        *ipvs.Reconciler
	openErr    error // why IPVS is not open; nil when open or not needed yet
	desired    ipvs.Desired
	configured int
	closed     bool

	// names maps kernel keys to config names; read by the reconciler's
	// event callback, which may run while opMu is held.
	names atomic.Pointer[ipvsNames]

	// health is what the health subsystem said of each real server
	// (health_ipvs.go); absent means healthy. Guarded by healthMu.
	healthMu sync.Mutex
	health   map[ipvsHealthKey]bool
}

// ipvsNames relate the desired services to the config's names.
type ipvsNames struct {
	order  []*ipvsVS
	byName map[string]*ipvsVS
	byKey  map[ipvs.ServiceKey]*ipvsVS
}

// ipvsVS is one virtual_server as translated.
type ipvsVS struct {
	name             string
	key              ipvs.ServiceKey
	removeOnShutdown bool
	reals            []ipvsRS
	sorry            netip.AddrPort // invalid when none
}

// ipvsRS is one real_server as translated.
type ipvsRS struct {
	name string
	addr netip.AddrPort
}

func (n *ipvsNames) vs(key ipvs.ServiceKey) string {
	if n == nil {
		return ""
	}
	if v := n.byKey[key]; v != nil {
		return v.name
	}
	return ""
}

// rsName is the real_server name of a destination ("sorry_server" for the
// sorry server, "" when unknown).
func (v *ipvsVS) rsName(a netip.AddrPort) string {
	for _, r := range v.reals {
		if r.addr == a {
			return r.name
		}
	}
	if v.sorry.IsValid() && v.sorry == a {
		return "sorry_server"
	}
	return ""
}

func newIPVSSubsystem(deps subsystemDeps, opts ipvsOptions) *ipvsSubsystem {
	if opts.open == nil {
		opts.open = openKernelIPVS
	}
	if opts.stateFile == "" && deps.StateDir != "" {
		opts.stateFile = filepath.Join(deps.StateDir, ipvsStateFileName)
	}
	if opts.stateFile == "" {
		opts.stateFile = ipvs.DefaultStateFile
	}
	if opts.resyncInterval <= 0 {
		opts.resyncInterval = ipvs.DefaultResyncInterval
	}
	if opts.tickInterval <= 0 {
		opts.tickInterval = ipvs.DefaultTickInterval
	}
	s := &ipvsSubsystem{log: deps.Log, events: deps.Events, opts: opts}
	s.names.Store(&ipvsNames{byName: map[string]*ipvsVS{}, byKey: map[ipvs.ServiceKey]*ipvsVS{}})
	if deps.Metrics != nil {
		deps.Metrics.MustRegister(newIPVSCollector(s))
	}
	return s
}

func (s *ipvsSubsystem) Name() string { return "ipvs" }

// ipvsProtocol and ipvsForwarding convert config enums to the ipvs package's.
func ipvsProtocol(p config.Protocol) (ipvs.Protocol, error) { return ipvs.ParseProtocol(string(p)) }

func ipvsForwarding(f config.ForwardingMethod) (ipvs.Forwarding, error) {
	switch f {
	case config.ForwardNAT:
		return ipvs.Masq, nil
	case config.ForwardDirect:
		return ipvs.Route, nil
	case config.ForwardTunnel:
		return ipvs.Tunnel, nil
	}
	return 0, fmt.Errorf("unknown forwarding method %q", f)
}

// ipvsDesired translates the virtual_server blocks of cfg into the ipvs
// package's desired state, and the names that go with it. Health is not
// part of it: every destination counts as healthy until a health checker
// says otherwise (ipvs.Reconciler.SetHealth).
//
//   - address + protocol, or fwmark + family: the service key;
//   - scheduler and scheduler_flags; persistence (timeout, netmask as a
//     prefix length); on_failure; slow_start;
//   - real_server: address (port filled in by config), weight, forwarding
//     (the server's own or the service's), upper and lower thresholds;
//   - quorum { min_up, hysteresis } and sorry_server: a sorry server without
//     a quorum block is used when no real server is up (min_up 1), as the
//     configuration reference says; it forwards like the service.
func ipvsDesired(cfg *config.Config) (ipvs.Desired, *ipvsNames, error) {
	d := ipvs.Desired{Services: make([]ipvs.Service, 0, len(cfg.VirtualServers))}
	names := &ipvsNames{byName: map[string]*ipvsVS{}, byKey: map[ipvs.ServiceKey]*ipvsVS{}}
	var errs []error
	for _, vs := range cfg.VirtualServers {
		svc, v, err := ipvsService(vs)
		if err != nil {
			errs = append(errs, fmt.Errorf("virtual_server %q: %w", vs.Name, err))
			continue
		}
		d.Services = append(d.Services, svc)
		names.order = append(names.order, v)
		names.byName[v.name] = v
		names.byKey[v.key] = v
	}
	if err := errors.Join(errs...); err != nil {
		return ipvs.Desired{}, nil, err
	}
	return d, names, nil
}

func ipvsService(vs config.VirtualServer) (ipvs.Service, *ipvsVS, error) {
	var svc ipvs.Service
	switch {
	case vs.FWMark != 0:
		fam := ipvs.IPv4
		if vs.Family == config.IPv6 {
			fam = ipvs.IPv6
		}
		svc.Key = ipvs.MarkKey(vs.FWMark, fam)
	case vs.Address.IsValid():
		p, err := ipvsProtocol(vs.Protocol)
		if err != nil {
			return svc, nil, err
		}
		svc.Key = ipvs.AddrKey(p, vs.Address)
	default:
		return svc, nil, errors.New("neither address nor fwmark")
	}
	svc.Scheduler = ipvs.Scheduler(vs.Scheduler)
	for _, f := range vs.SchedulerFlags {
		bit, err := ipvs.ParseSchedFlag(string(f))
		if err != nil {
			return svc, nil, err
		}
		svc.Flags |= bit
	}
	if p := vs.Persistence; p != nil {
		svc.Persistence = ipvs.Persistence{Timeout: p.Timeout, Prefix: p.PrefixLength}
	}
	switch vs.OnFailure {
	case config.FailureRemove:
		svc.OnFailure = ipvs.Remove
	case config.FailureDrain, "":
		svc.OnFailure = ipvs.Drain
	default:
		return svc, nil, fmt.Errorf("unknown on_failure %q", vs.OnFailure)
	}
	svc.SlowStart = vs.SlowStart
	v := &ipvsVS{name: vs.Name, key: svc.Key, removeOnShutdown: vs.RemoveOnShutdown}
	for _, rs := range vs.RealServers {
		fwd, err := ipvsForwarding(rs.Forwarding)
		if err != nil {
			return svc, nil, fmt.Errorf("real_server %q: %w", rs.Name, err)
		}
		addr := rs.Address
		if addr.Port() == 0 && !svc.Key.IsMark() {
			addr = netip.AddrPortFrom(addr.Addr(), svc.Key.Addr.Port())
		}
		svc.Destinations = append(svc.Destinations, ipvs.Destination{
			Addr:           addr,
			Weight:         rs.Weight,
			Forwarding:     fwd,
			UpperThreshold: rs.UpperThreshold,
			LowerThreshold: rs.LowerThreshold,
		})
		v.reals = append(v.reals, ipvsRS{name: rs.Name, addr: addr})
	}
	if q := vs.Quorum; q != nil {
		svc.Quorum.MinUp, svc.Quorum.Hysteresis = q.MinUp, q.Hysteresis
	}
	if vs.SorryServer.IsValid() {
		fwd, err := ipvsForwarding(vs.Forwarding)
		if err != nil {
			return svc, nil, fmt.Errorf("sorry_server: %w", err)
		}
		addr := vs.SorryServer
		if addr.Port() == 0 && !svc.Key.IsMark() {
			addr = netip.AddrPortFrom(addr.Addr(), svc.Key.Addr.Port())
		}
		svc.Quorum.Sorry = &ipvs.Destination{Addr: addr, Weight: 1, Forwarding: fwd}
		if svc.Quorum.MinUp == 0 {
			svc.Quorum.MinUp = 1
		}
		v.sorry = addr
	}
	return svc, v, nil
}

// stateFileExists reports whether the ownership record exists (then a
// kernel may hold services of ours even when none is configured).
func (s *ipvsSubsystem) stateFileExists() bool {
	_, err := os.Stat(s.opts.stateFile)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}

// Apply translates and validates cfg's virtual servers, then makes the
// kernel match. A translation or validation problem is returned before
// anything changes (the reload is refused). Kernel IPVS is opened on first
// need; when the kernel has none, that is reported (log, event, status)
// and Apply succeeds without programming anything, so the rest of the
// agent keeps running. A kernel operation that fails is logged and
// reported, and retried by the next resync; it does not refuse the
// configuration, which is valid and stays in force.
func (s *ipvsSubsystem) Apply(ctx context.Context, cfg *config.Config) error {
	d, names, err := ipvsDesired(cfg)
	if err != nil {
		return err
	}
	if err := ipvs.Validate(d); err != nil {
		return ipvsNamedError(err, names)
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ipvs.ErrClosed
	}
	rec := s.rec
	s.mu.Unlock()
	if rec == nil && (len(d.Services) > 0 || s.stateFileExists()) {
		rec = s.openKernel(len(d.Services))
	}
	prevNames := s.names.Swap(names)
	s.mu.Lock()
	prevDesired, prevConfigured := s.desired, s.configured
	s.desired, s.configured = d, len(d.Services)
	s.mu.Unlock()
	if rec == nil {
		return nil
	}

	before := ipvsSnapshotOf(rec)
	start := time.Now()
	err = rec.Apply(ctx, d)
	s.publishChanges(before, ipvsSnapshotOf(rec), "apply")
	if err == nil || !(errors.Is(err, ipvs.ErrInvalid) || errors.Is(err, ipvs.ErrClosed)) {
		s.replayHealthLocked(ctx, rec)
	}
	switch {
	case errors.Is(err, ipvs.ErrInvalid), errors.Is(err, ipvs.ErrClosed):
		// Refused before any kernel operation: the previous state stays.
		s.names.Store(prevNames)
		s.mu.Lock()
		s.desired, s.configured = prevDesired, prevConfigured
		s.mu.Unlock()
		return ipvsNamedError(err, names)
	case err != nil:
		s.log.Error("IPVS: some kernel operations failed; the configuration stays in force and the next resync retries them",
			slog.Any("error", err))
	default:
		s.log.Debug("IPVS configuration applied", slog.Int("services", len(d.Services)), slog.Duration("took", time.Since(start)))
	}
	return nil
}

// ipvsNamedError prefixes a validation error with the config names of the
// services it numbers ("service 0 (tcp/...)").
func ipvsNamedError(err error, names *ipvsNames) error {
	var ve *ipvs.ValidationError
	if !errors.As(err, &ve) || names == nil {
		return err
	}
	msgs := make([]string, 0, len(ve.Problems))
	for _, p := range ve.Problems {
		for i, v := range names.order {
			prefix := fmt.Sprintf("service %d (%s)", i, v.key)
			if len(p) >= len(prefix) && p[:len(prefix)] == prefix {
				p = fmt.Sprintf("virtual_server %q (%s)", v.name, v.key) + p[len(prefix):]
				break
			}
		}
		msgs = append(msgs, p)
	}
	return &ipvs.ValidationError{Problems: msgs}
}

// openKernel opens kernel IPVS and a reconciler over it; on failure it
// records and reports why and returns nil.
func (s *ipvsSubsystem) openKernel(configured int) *ipvs.Reconciler {
	k, err := s.opts.open()
	var rec *ipvs.Reconciler
	if err == nil {
		rec, err = ipvs.New(ipvs.Options{
			Kernel:         k,
			StateFile:      s.opts.stateFile,
			Clock:          s.opts.clock,
			ResyncInterval: s.opts.resyncInterval,
			TickInterval:   s.opts.tickInterval,
			OnEvent:        s.onEvent,
		})
		if err != nil {
			k.Close()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.openErr = err
		if configured == 0 {
			// Opened only to clean up services a previous configuration
			// left; nothing configured now depends on it.
			s.log.Debug("IPVS not opened", slog.Any("error", err))
			return nil
		}
		if errors.Is(err, ipvs.ErrUnavailable) {
			s.log.Warn("IPVS not available: virtual servers are not programmed; everything else keeps running (load ip_vs, then reload)",
				slog.Any("error", err), slog.Int("virtual_servers", configured))
		} else {
			s.log.Error("IPVS cannot start: virtual servers are not programmed; everything else keeps running",
				slog.Any("error", err), slog.Int("virtual_servers", configured))
		}
		s.events.Publish("ipvs", EventIPVSUnavailable, map[string]any{"error": err.Error(), "configured": configured})
		return nil
	}
	s.openErr, s.kernel, s.rec = nil, k, rec
	s.log.Info("IPVS opened", slog.String("state_file", s.opts.stateFile), slog.Duration("resync_interval", s.opts.resyncInterval))
	return rec
}

// onEvent turns reconciler events into agent events and log records. It
// runs in the goroutine of the reconciler call, without its lock.
func (s *ipvsSubsystem) onEvent(e ipvs.Event) {
	names := s.names.Load()
	vs := names.vs(e.Service)
	attrs := map[string]any{"virtual_server": vs, "service": e.Service.String()}
	switch e.Type {
	case ipvs.EventQuorumLost:
		attrs["detail"] = e.Detail
		s.log.Warn("IPVS quorum lost", slog.String("virtual_server", vs), slog.String("service", e.Service.String()), slog.String("detail", e.Detail))
		s.events.Publish("ipvs", EventIPVSQuorumLost, attrs)
	case ipvs.EventQuorumRestored:
		attrs["detail"] = e.Detail
		s.log.Info("IPVS quorum restored", slog.String("virtual_server", vs), slog.String("service", e.Service.String()), slog.String("detail", e.Detail))
		s.events.Publish("ipvs", EventIPVSQuorumRestored, attrs)
	case ipvs.EventAdopted:
		s.log.Info("IPVS service adopted from the kernel", slog.String("virtual_server", vs), slog.String("service", e.Service.String()))
		s.events.Publish("ipvs", EventIPVSServiceAdopted, attrs)
	case ipvs.EventOpFailed:
		attrs["error"] = e.Detail
		if e.Destination.IsValid() {
			attrs["destination"] = e.Destination.String()
		}
		s.log.Error("IPVS kernel operation failed", slog.String("virtual_server", vs), slog.String("error", e.Detail))
		s.events.Publish("ipvs", EventIPVSOpFailed, attrs)
	case ipvs.EventResync:
		s.log.Debug("IPVS resync", slog.String("detail", e.Detail))
	}
}

// ipvsDestID names a destination across snapshots.
type ipvsDestID struct {
	key  ipvs.ServiceKey
	addr netip.AddrPort
}

// ipvsDestView is what destination events compare.
type ipvsDestView struct {
	configured int
	effective  int
	drained    bool
	removed    bool
	healthy    bool
}

type ipvsSnapshot map[ipvsDestID]ipvsDestView

func ipvsSnapshotOf(rec *ipvs.Reconciler) ipvsSnapshot {
	st := rec.Status()
	snap := make(ipvsSnapshot, len(st.Services)*4)
	for _, svc := range st.Services {
		snap.add(svc)
	}
	return snap
}

// ipvsServiceSnapshotOf is the snapshot of one service: what a health change
// can touch (SetHealth changes only that service). Empty if it is unknown.
func ipvsServiceSnapshotOf(rec *ipvs.Reconciler, key ipvs.ServiceKey) ipvsSnapshot {
	svc, err := rec.ServiceStatus(key)
	if err != nil {
		return nil
	}
	snap := make(ipvsSnapshot, len(svc.Destinations))
	snap.add(svc)
	return snap
}

func (snap ipvsSnapshot) add(svc ipvs.ServiceStatus) {
	for _, d := range svc.Destinations {
		snap[ipvsDestID{svc.Key, d.Addr}] = ipvsDestView{
			configured: d.Weight, effective: d.EffectiveWeight,
			drained: d.Drained, removed: d.Removed, healthy: d.Healthy,
		}
	}
}

// publishChanges publishes ipvs_destination_changed for every destination
// present in both snapshots whose effective state differs. Destinations
// added or removed by the configuration are not reported one by one (the
// reload is).
func (s *ipvsSubsystem) publishChanges(before, after ipvsSnapshot, reason string) {
	if len(before) == 0 {
		return
	}
	names := s.names.Load()
	for id, now := range after {
		was, ok := before[id]
		if !ok || was == now {
			continue
		}
		rs := ""
		vsName := ""
		if v := names.byKey[id.key]; v != nil {
			vsName, rs = v.name, v.rsName(id.addr)
		}
		s.events.Publish("ipvs", EventIPVSDestinationChanged, map[string]any{
			"virtual_server": vsName, "real_server": rs,
			"service": id.key.String(), "destination": id.addr.String(),
			"configured_weight": now.configured, "from_weight": was.effective, "weight": now.effective,
			"drained": now.drained, "removed": now.removed, "healthy": now.healthy, "reason": reason,
		})
		s.log.Info("IPVS destination changed", slog.String("virtual_server", vsName), slog.String("real_server", rs),
			slog.String("destination", id.addr.String()), slog.Int("from_weight", was.effective), slog.Int("weight", now.effective),
			slog.Bool("drained", now.drained), slog.Bool("removed", now.removed), slog.String("reason", reason))
	}
}

// current returns the reconciler (nil when IPVS is not open), the number of
// configured virtual servers, and why IPVS is not open.
func (s *ipvsSubsystem) current() (*ipvs.Reconciler, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rec, s.configured, s.openErr
}

// Run drives the periodic work while ctx lives: a full resync every
// resync interval (drift such as an ipvsadm edit is corrected then) and the
// slow-start tick. When ctx ends it shuts the reconciler down: services
// stay in the kernel for the next start, except those marked
// remove_on_shutdown, which are deleted.
func (s *ipvsSubsystem) Run(ctx context.Context) error {
	resync := time.NewTicker(s.opts.resyncInterval)
	defer resync.Stop()
	tick := time.NewTicker(s.opts.tickInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			s.shutdown()
			return nil
		case <-resync.C:
			if rec, _, _ := s.current(); rec != nil {
				_, _ = s.resync(ctx, "periodic")
			}
		case <-tick.C:
			if rec, _, _ := s.current(); rec != nil {
				_ = rec.Tick() // failures are counted and reported as events
			}
		}
	}
}

// shutdown deletes the services marked remove_on_shutdown, leaves the
// others, stops the reconciler and closes the kernel handle.
func (s *ipvsSubsystem) shutdown() {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.mu.Lock()
	s.closed = true
	rec, k, d := s.rec, s.kernel, s.desired
	s.mu.Unlock()
	if rec == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), ipvsShutdownTimeout)
	defer cancel()
	names := s.names.Load()
	keep := ipvs.Desired{Timeouts: d.Timeouts}
	var removed []string
	for _, svc := range d.Services {
		if v := names.byKey[svc.Key]; v != nil && v.removeOnShutdown {
			removed = append(removed, v.name)
			continue
		}
		keep.Services = append(keep.Services, svc)
	}
	if len(removed) > 0 {
		if err := rec.Apply(ctx, keep); err != nil {
			s.log.Error("IPVS: removing services on shutdown failed", slog.Any("error", err))
		} else {
			s.log.Info("IPVS services removed on shutdown (remove_on_shutdown)", slog.Any("virtual_servers", removed))
		}
	}
	if err := rec.Shutdown(ctx); err != nil {
		s.log.Error("IPVS shutdown", slog.Any("error", err))
	}
	if len(keep.Services) > 0 {
		s.log.Info("IPVS services left in the kernel; the next start adopts them", slog.Int("services", len(keep.Services)))
	}
	if k != nil {
		k.Close()
	}
}

// resync dumps the kernel and corrects every difference, reporting the
// corrections (drift) and changed destinations.
func (s *ipvsSubsystem) resync(ctx context.Context, reason string) (IPVSResyncResponse, error) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	rec, configured, openErr := s.current()
	if rec == nil {
		return IPVSResyncResponse{}, s.unavailable(openErr, configured)
	}
	before := rec.Counters()
	snap := ipvsSnapshotOf(rec)
	err := rec.Resync(ctx)
	after := rec.Counters()
	s.publishChanges(snap, ipvsSnapshotOf(rec), "resync")
	res := IPVSResyncResponse{
		OK:          err == nil,
		Corrections: after.Mutations - before.Mutations,
		Operations:  after.Total - before.Total,
		Duration:    after.LastResyncDuration.String(),
		DurationMS:  float64(after.LastResyncDuration) / float64(time.Millisecond),
	}
	st := rec.Status()
	res.Services, res.Unowned = st.Owned, st.Unowned
	if err != nil {
		res.Error = err.Error()
	}
	if res.Corrections > 0 {
		s.log.Warn("IPVS drift corrected: the kernel differed from the desired state",
			slog.Uint64("corrections", res.Corrections), slog.String("reason", reason))
		s.events.Publish("ipvs", EventIPVSDriftCorrected, map[string]any{"corrections": res.Corrections, "reason": reason})
	}
	if errors.Is(err, ipvs.ErrClosed) {
		return res, err
	}
	return res, nil
}

// unavailable is the error of an operation that needs IPVS open.
func (s *ipvsSubsystem) unavailable(openErr error, configured int) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	switch {
	case closed:
		return &ipvsDownError{ipvs.ErrClosed}
	case configured == 0:
		return ErrNoIPVS
	case openErr != nil:
		return &ipvsDownError{openErr}
	}
	return &ipvsDownError{errors.New("IPVS is not open yet")}
}

// ipvsDownError says why IPVS is not running; errors.Is(err,
// ErrIPVSUnavailable) holds.
type ipvsDownError struct{ err error }

func (e *ipvsDownError) Error() string {
	if errors.Is(e.err, ipvs.ErrUnavailable) || errors.Is(e.err, ipvs.ErrClosed) {
		return e.err.Error()
	}
	return "IPVS cannot start: " + e.err.Error()
}

func (e *ipvsDownError) Is(target error) bool { return target == ErrIPVSUnavailable }
func (e *ipvsDownError) Unwrap() error        { return e.err }
