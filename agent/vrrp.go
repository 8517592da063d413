package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fulcrum-lb/fulcrum/config"
	"github.com/fulcrum-lb/fulcrum/vrrp"
)

// EventVRRPStateChanged is published for every VRRP transition, with attrs
// instance, from, to, reason and priority.
const EventVRRPStateChanged = "vrrp_state_changed"

// EventVRRPInstanceFailed is published when an instance stops by itself
// (its socket died), with attrs instance and error.
const EventVRRPInstanceFailed = "vrrp_instance_failed"

// vrrpSubsystem runs the node's vrrp_instance and sync_group blocks: it
// translates them into vrrp options (the agent owns the translation),
// opens their network I/O through a vrrpIOFactory, and on reload updates
// matched instances in place, starts new ones and stops removed ones.
//
// Instances run under the subsystem's own context from the Apply that
// creates them: Apply comes before Run, and Run's end stops them all.
type vrrpSubsystem struct {
	log    *slog.Logger
	events Publisher
	io     vrrpIOFactory
	clock  vrrp.Clock // nil: the system clock
	// services serves track_service (the health subsystem); nil (some
	// tests) refuses track_service.
	services vrrp.ServiceHealth

	life context.Context
	end  context.CancelFunc

	mu        sync.Mutex // guards the fields below
	instances map[string]*vrrpRunner
	groups    map[string]*vrrpGroup
}

// vrrpRunner is one running instance.
type vrrpRunner struct {
	name   string
	cfg    config.VRRPInstance
	opts   vrrp.InstanceOptions
	inst   *vrrp.Instance
	io     *vrrpIO
	cancel context.CancelFunc
	done   chan struct{}

	mu  sync.Mutex
	err error // why Run returned by itself
}

// vrrpGroup is one sync group and its members' names.
type vrrpGroup struct {
	g       *vrrp.Group
	members []string
}

func newVRRPSubsystem(deps subsystemDeps, io vrrpIOFactory) *vrrpSubsystem {
	life, end := context.WithCancel(context.Background())
	s := &vrrpSubsystem{
		log:       deps.Log,
		events:    deps.Events,
		io:        io,
		life:      life,
		end:       end,
		instances: map[string]*vrrpRunner{},
		groups:    map[string]*vrrpGroup{},
	}
	if deps.Metrics != nil {
		deps.Metrics.MustRegister(newVRRPCollector(s))
	}
	return s
}

func (s *vrrpSubsystem) Name() string { return "vrrp" }

// vrrpIdentity is what an instance cannot change without a restart: the
// socket it uses and what identifies it on the wire (vrrp.Instance.Update).
func vrrpIdentity(in config.VRRPInstance) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%d|%d|%s|%v", in.Interface, in.VirtualRouterID, in.Version, in.Family, in.Priority == vrrp.PriorityOwner)
	if u := in.Unicast; u != nil {
		fmt.Fprintf(&b, "|unicast %v %v", u.SourceAddress, u.Peers)
	}
	devices := vrrpIOSpecOf(in).devices // each has its VIP manager
	slices.Sort(devices)
	fmt.Fprintf(&b, "|devices %v", devices)
	return b.String()
}

// vrrpInstanceOptions translates one vrrp_instance block. primary is the
// address the instance's socket sends from.
func vrrpInstanceOptions(in config.VRRPInstance, primary netip.Addr) vrrp.InstanceOptions {
	o := vrrp.InstanceOptions{
		Name:           in.Name,
		Interface:      in.Interface,
		Version:        vrrp.Version(in.Version),
		VRID:           in.VirtualRouterID,
		Priority:       in.Priority,
		AdvertInterval: in.AdvertInterval,
		NoPreempt:      !in.Preempt,
		PreemptDelay:   in.PreemptDelay,
		PrimaryAddr:    primary,
		// keepalived answers a lower-priority advert at once unless
		// lower_prio_no_advert; a peer that wrongly became Master then steps
		// down within one round trip.
		AdvertOnLowerPriority: true,
		// keepalived's higher_prio_send_advert: a Master that yields says so
		// once more, so that after a partition heals the surviving Master
		// hears there was a second one and re-announces the VIPs.
		AdvertOnHigherPriority: true,
		Announce: vrrp.AnnounceOptions{
			Count:   in.GARP.Repeat,
			Delay:   in.GARP.Delay,
			Refresh: in.GARP.RefreshInterval,
		},
		Notify: vrrp.NotifyOptions{
			Master:  in.Notify.Master,
			Backup:  in.Notify.Backup,
			Fault:   in.Notify.Fault,
			Stop:    in.Notify.Stop,
			Timeout: in.Notify.Timeout,
		},
		KeepVIPsOnShutdown: in.KeepVIPsOnShutdown,
	}
	if u := in.Unicast; u != nil {
		o.Peers = slices.Clone(u.Peers)
		o.RelaxTTL = u.RelaxTTL
	}
	if a := in.Authentication; a != nil {
		o.AuthType, o.AuthPass = vrrp.AuthSimple, a.Password.Reveal()
	}
	if in.AcceptV2Checksum {
		o.Accept.AcceptMessageOnly = true
	}
	for _, v := range in.VirtualIPs {
		o.VIPs = append(o.VIPs, vrrp.VIP{Prefix: v.Prefix, Device: v.Device, Label: v.Label})
	}
	for _, t := range in.TrackInterfaces {
		o.Trackers = append(o.Trackers, vrrp.TrackSpec{Kind: vrrp.TrackInterface, Name: t.Name, Weight: t.Weight})
	}
	for _, t := range in.TrackProcesses {
		o.Trackers = append(o.Trackers, vrrp.TrackSpec{Kind: vrrp.TrackProcess, Name: t.Name, Weight: t.Weight})
	}
	for _, t := range in.TrackFiles {
		o.Trackers = append(o.Trackers, vrrp.TrackSpec{Kind: vrrp.TrackFile, Name: t.Name, Weight: t.Weight})
	}
	for _, t := range in.TrackServices {
		o.Trackers = append(o.Trackers, vrrp.TrackSpec{Kind: vrrp.TrackService, Name: t.Name, Weight: t.Weight})
	}
	for _, t := range in.TrackScripts {
		// A vrrp_script is a service of the health subsystem (healthPlanOf).
		o.Trackers = append(o.Trackers, vrrp.TrackSpec{Kind: vrrp.TrackService, Name: scriptServiceName(t.Name), Weight: t.Weight})
	}
	// Service health is a map lookup: read it more often than the
	// default second, so a failed virtual server moves the priority
	// within a fraction of a second, unless processes (a /proc scan per
	// poll) are tracked too.
	if len(in.TrackServices)+len(in.TrackScripts) > 0 && len(in.TrackProcesses) == 0 {
		o.TrackPollInterval = vrrpServicePollInterval
	}
	return o
}

// vrrpServicePollInterval is how often an instance with track_service
// (and no track_process) reads its trackers.
const vrrpServicePollInterval = 200 * time.Millisecond

func vrrpIOSpecOf(in config.VRRPInstance) vrrpIOSpec {
	spec := vrrpIOSpec{instance: in.Name, vrid: in.VirtualRouterID, iface: in.Interface, family: 4}
	if in.Family == config.IPv6 {
		spec.family = 6
	}
	if u := in.Unicast; u != nil {
		spec.unicast, spec.source, spec.peers = true, u.SourceAddress, slices.Clone(u.Peers)
	}
	for _, v := range in.VirtualIPs {
		if v.Device != "" && !slices.Contains(spec.devices, v.Device) {
			spec.devices = append(spec.devices, v.Device)
		}
	}
	return spec
}

// Apply makes the running instances match cfg. Everything that can fail
// (translation, validation, opening sockets) happens before anything
// changes; then removed and replaced instances stop, matched ones are
// updated in place (a Master stays Master) and new ones start.
func (s *vrrpSubsystem) Apply(_ context.Context, cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()

	want := make(map[string]config.VRRPInstance, len(cfg.VRRPInstances))
	for _, in := range cfg.VRRPInstances {
		want[in.Name] = in
	}
	type update struct {
		r    *vrrpRunner
		cfg  config.VRRPInstance
		opts vrrp.InstanceOptions
	}
	var updates []update
	var starts []*vrrpRunner
	var stops []*vrrpRunner
	release := func() {
		for _, r := range starts {
			r.io.transport.Close()
			r.io.release()
		}
	}
	for _, in := range cfg.VRRPInstances {
		if r := s.instances[in.Name]; r != nil && r.alive() && vrrpIdentity(r.cfg) == vrrpIdentity(in) {
			opts := vrrpInstanceOptions(in, r.opts.PrimaryAddr)
			if err := vrrp.ValidateOptions(opts, s.depsShape(r.io)); err != nil {
				release()
				return err
			}
			updates = append(updates, update{r, in, opts})
			continue
		}
		if len(in.TrackServices) > 0 && s.services == nil {
			release()
			return fmt.Errorf("vrrp_instance %q: track_service %q: service health is not available in this build (no virtual_server or proxy support)", in.Name, in.TrackServices[0].Name)
		}
		if len(in.TrackScripts) > 0 && s.services == nil {
			release()
			return fmt.Errorf("vrrp_instance %q: track_script %q: script health is not available in this build (no health checks)", in.Name, in.TrackScripts[0].Name)
		}
		r, err := s.prepare(in)
		if err != nil {
			release()
			return err
		}
		starts = append(starts, r)
	}
	for name, r := range s.instances {
		in, ok := want[name]
		if !ok || !r.alive() || vrrpIdentity(r.cfg) != vrrpIdentity(in) {
			stops = append(stops, r)
		}
	}

	// Commit. Stops first, in parallel: a replaced instance gives up its
	// VIPs before its successor may take them.
	var wg sync.WaitGroup
	for _, r := range stops {
		delete(s.instances, r.name)
		wg.Go(r.stop)
	}
	wg.Wait()
	for _, u := range updates {
		if vs := s.vipSetter(u.r.io); vs != nil {
			vs.setVIPs(u.opts.VIPs)
		}
		if err := u.r.inst.Update(u.opts); err != nil {
			// Validated above: not expected. Keep the old settings.
			s.log.Error("vrrp instance update failed; it keeps its previous settings", slog.String("vrrp_instance", u.r.name), slog.Any("error", err))
			continue
		}
		u.r.cfg, u.r.opts = u.cfg, u.opts
	}
	for _, r := range starts {
		s.instances[r.name] = r
		s.start(r)
	}
	s.applyGroups(cfg.SyncGroups)
	s.log.Debug("vrrp configuration applied",
		slog.Int("started", len(starts)), slog.Int("updated", len(updates)), slog.Int("stopped", len(stops)))
	return nil
}

// depsShape is the Deps that ValidateOptions needs: which optional
// collaborators exist.
func (s *vrrpSubsystem) depsShape(io *vrrpIO) vrrp.Deps {
	return vrrp.Deps{Links: io.links, Services: s.services}
}

func (s *vrrpSubsystem) vipSetter(io *vrrpIO) vipSetter {
	vs, _ := io.announcer.(vipSetter)
	return vs
}

// prepare opens the I/O of a new instance and builds it, not started.
func (s *vrrpSubsystem) prepare(in config.VRRPInstance) (*vrrpRunner, error) {
	io, err := s.io.open(vrrpIOSpecOf(in))
	if err != nil {
		return nil, fmt.Errorf("vrrp_instance %q: %w", in.Name, err)
	}
	opts := vrrpInstanceOptions(in, io.source)
	if vs := s.vipSetter(io); vs != nil {
		vs.setVIPs(opts.VIPs)
	}
	name := in.Name
	inst, err := vrrp.NewInstance(opts, vrrp.Deps{
		Transport: io.transport,
		Addresses: io.addrs,
		Announcer: io.announcer,
		Watcher:   io.watcher,
		Links:     io.links,
		Services:  s.services,
		Clock:     s.clock,
		Log:       s.log,
		OnStateChange: func(ev vrrp.StateChange) {
			s.events.Publish("vrrp", EventVRRPStateChanged, map[string]any{
				"instance": name, "from": ev.From.String(), "to": ev.To.String(),
				"reason": ev.Reason.String(), "priority": int(ev.Priority),
			})
		},
	})
	if err != nil {
		io.transport.Close()
		io.release()
		return nil, err
	}
	return &vrrpRunner{name: in.Name, cfg: in, opts: opts, inst: inst, io: io, done: make(chan struct{})}, nil
}

// start runs r under the subsystem's context.
func (s *vrrpSubsystem) start(r *vrrpRunner) {
	ctx, cancel := context.WithCancel(s.life)
	r.cancel = cancel
	go func() {
		defer close(r.done)
		err := r.inst.Run(ctx)
		r.io.release()
		if err != nil && ctx.Err() == nil {
			r.mu.Lock()
			r.err = err
			r.mu.Unlock()
			s.log.Error("vrrp instance stopped by itself; a reload restarts it", slog.String("vrrp_instance", r.name), slog.Any("error", err))
			s.events.Publish("vrrp", EventVRRPInstanceFailed, map[string]any{"instance": r.name, "error": err.Error()})
		}
	}()
}

// alive reports whether r's Run has not returned.
func (r *vrrpRunner) alive() bool {
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

func (r *vrrpRunner) failure() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// stop ends r and waits (the instance bounds its own stop).
func (r *vrrpRunner) stop() {
	if r.cancel != nil {
		r.cancel()
	}
	<-r.done
}

// applyGroups makes the sync groups match groups. A group whose name and
// members are unchanged is kept as it is, so a reload does not release a
// group held in Fault even for a moment.
func (s *vrrpSubsystem) applyGroups(groups []config.SyncGroup) {
	want := map[string][]string{}
	for _, g := range groups {
		want[g.Name] = g.Instances
	}
	member := map[string]bool{}
	for name, g := range s.groups {
		if !slices.Equal(want[name], g.members) || !s.groupIntact(g) {
			for _, m := range g.members {
				if r := s.instances[m]; r != nil {
					g.g.Leave(r.inst)
				}
			}
			delete(s.groups, name)
		}
	}
	for _, g := range groups {
		for _, m := range g.Instances {
			member[m] = true
		}
		if _, kept := s.groups[g.Name]; kept {
			continue
		}
		vg := &vrrpGroup{g: vrrp.NewGroup(g.Name, s.log), members: slices.Clone(g.Instances)}
		for _, m := range g.Instances {
			if r := s.instances[m]; r != nil {
				vg.g.Join(r.inst)
			}
		}
		s.groups[g.Name] = vg
	}
}

// groupIntact reports whether every member of g is still the instance that
// joined (none was replaced).
func (s *vrrpSubsystem) groupIntact(g *vrrpGroup) bool {
	joined := g.g.Members()
	if len(joined) != len(g.members) {
		return false
	}
	for _, m := range g.members {
		r := s.instances[m]
		if r == nil || r.inst.Status().Group != g.g.Name() {
			return false
		}
	}
	return true
}

// Run waits for ctx, then stops every instance (in parallel: each Master
// sends priority 0 and removes its VIPs) and releases the sockets.
func (s *vrrpSubsystem) Run(ctx context.Context) error {
	<-ctx.Done()
	s.end()
	s.mu.Lock()
	runners := make([]*vrrpRunner, 0, len(s.instances))
	for _, r := range s.instances {
		runners = append(runners, r)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range runners {
		wg.Go(r.stop)
	}
	wg.Wait()
	s.io.close()
	return nil
}

// snapshot returns the runners sorted by name.
func (s *vrrpSubsystem) snapshot() []*vrrpRunner {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*vrrpRunner, 0, len(s.instances))
	for _, r := range s.instances {
		out = append(out, r)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].name < out[b].name })
	return out
}

func (s *vrrpSubsystem) Status() SubsystemStatus {
	runners := s.snapshot()
	s.mu.Lock()
	var groups []VRRPSyncGroupStatus
	for name, g := range s.groups {
		groups = append(groups, VRRPSyncGroupStatus{Name: name, Instances: slices.Clone(g.members)})
	}
	s.mu.Unlock()
	sort.Slice(groups, func(a, b int) bool { return groups[a].Name < groups[b].Name })

	st := SubsystemStatus{Name: "vrrp", Configured: len(runners) + len(groups), State: StateNoneConfigured}
	if len(runners) == 0 {
		return st
	}
	counts := map[string]int{}
	instances := make([]VRRPInstanceStatus, 0, len(runners))
	for _, r := range runners {
		is := vrrpInstanceStatus(r.inst.Status())
		if err := r.failure(); err != nil {
			is.State, is.Error = "failed", err.Error()
		}
		counts[is.State]++
		instances = append(instances, is)
	}
	var parts []string
	for _, state := range []string{"master", "backup", "fault", "initialize", "failed"} {
		if n := counts[state]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, state))
		}
	}
	st.State = "running: " + strings.Join(parts, ", ")
	st.Detail = map[string]any{"instances": instances}
	if len(groups) > 0 {
		st.Detail["sync_groups"] = groups
	}
	return st
}

// VRRPSyncGroupStatus is one sync group in the vrrp status detail.
type VRRPSyncGroupStatus struct {
	Name      string   `json:"name"`
	Instances []string `json:"instances"`
}

// VRRPInstanceStatus is one instance in the vrrp status detail
// ("instances" in the detail of the vrrp subsystem).
type VRRPInstanceStatus struct {
	Name      string `json:"name"`
	Interface string `json:"interface"`
	VRID      int    `json:"vrid"`
	Version   int    `json:"version"`
	// State is initialize, backup, master, fault, or failed (Error says
	// why: its socket died; a reload restarts it).
	State                string              `json:"state"`
	Priority             int                 `json:"priority"`
	BasePriority         int                 `json:"base_priority"`
	PrimaryAddress       string              `json:"primary_address,omitempty"`
	MasterAddress        string              `json:"master_address,omitempty"`
	MasterPriority       int                 `json:"master_priority,omitempty"`
	AdvertInterval       string              `json:"advert_interval"`
	MasterAdvertInterval string              `json:"master_advert_interval"`
	LastTransition       *VRRPTransition     `json:"last_transition,omitempty"`
	VIPs                 []string            `json:"vips"`
	VIPsInstalled        int                 `json:"vips_installed"`
	SyncGroup            string              `json:"sync_group,omitempty"`
	HoldUntil            *time.Time          `json:"hold_until,omitempty"`
	BoostUntil           *time.Time          `json:"boost_until,omitempty"`
	LastAdvertSent       *time.Time          `json:"last_advert_sent,omitempty"`
	LastAdvertReceived   *time.Time          `json:"last_advert_received,omitempty"`
	Master               *VRRPMasterStint    `json:"master,omitempty"`
	Trackers             []VRRPTrackerStatus `json:"trackers,omitempty"`
	Counters             VRRPCounters        `json:"counters"`
	LastFailover         *VRRPHandover       `json:"last_failover,omitempty"`
	Error                string              `json:"error,omitempty"`
}

// VRRPTransition is a state change.
type VRRPTransition struct {
	From   string    `json:"from"`
	To     string    `json:"to"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// VRRPMasterStint is the current or last time as Master.
type VRRPMasterStint struct {
	Since          time.Time  `json:"since"`
	VIPsAdded      *time.Time `json:"vips_added,omitempty"`
	FirstAnnounce  *time.Time `json:"first_announce,omitempty"`
	AnnounceRounds int        `json:"announce_rounds"`
}

// VRRPTrackerStatus is one tracker.
type VRRPTrackerStatus struct {
	Name   string `json:"name"`
	Up     bool   `json:"up"`
	Weight int    `json:"weight"`
	Value  int64  `json:"value,omitempty"`
	Error  string `json:"error,omitempty"`
}

// VRRPCounters are an instance's counters since it started.
type VRRPCounters struct {
	Received       uint64            `json:"received"`
	AdvertsIn      uint64            `json:"adverts_in"`
	AdvertsOut     uint64            `json:"adverts_out"`
	Priority0In    uint64            `json:"priority0_in"`
	Priority0Out   uint64            `json:"priority0_out"`
	Transitions    uint64            `json:"transitions"`
	Drops          map[string]uint64 `json:"drops,omitempty"`
	SendErrors     uint64            `json:"send_errors"`
	RecvErrors     uint64            `json:"recv_errors"`
	VIPErrors      uint64            `json:"vip_errors"`
	VIPReadds      uint64            `json:"vip_readds"`
	AnnounceRounds uint64            `json:"announce_rounds"`
	AnnounceErrors uint64            `json:"announce_errors"`
	NotifyRuns     uint64            `json:"notify_runs"`
	NotifyFailures uint64            `json:"notify_failures"`
}

// VRRPHandover is what a failover drill observed on this node (see
// vrrp.Handover). Gaps are given as Go durations and in milliseconds.
type VRRPHandover struct {
	Action               string     `json:"action"`
	StartedAt            time.Time  `json:"started_at"`
	Hold                 string     `json:"hold"`
	OldMaster            string     `json:"old_master,omitempty"`
	NewMaster            string     `json:"new_master,omitempty"`
	NewMasterPriority    int        `json:"new_master_priority,omitempty"`
	LastOldMasterAdvert  *time.Time `json:"last_old_master_advert,omitempty"`
	FirstNewMasterAdvert *time.Time `json:"first_new_master_advert,omitempty"`
	AdvertGap            string     `json:"advert_gap,omitempty"`
	AdvertGapMS          *float64   `json:"advert_gap_ms,omitempty"`
	VIPsAdded            *time.Time `json:"vips_added,omitempty"`
	FirstAnnounce        *time.Time `json:"first_announce,omitempty"`
	AnnounceGap          string     `json:"announce_gap,omitempty"`
	AnnounceGapMS        *float64   `json:"announce_gap_ms,omitempty"`
	Done                 bool       `json:"done"`
	Failed               bool       `json:"failed,omitempty"`
	Error                string     `json:"error,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func msPtr(d time.Duration) *float64 {
	ms := float64(d) / float64(time.Millisecond)
	return &ms
}

func vrrpHandover(h vrrp.Handover) *VRRPHandover {
	out := &VRRPHandover{
		Action:               h.Action,
		StartedAt:            h.StartedAt,
		Hold:                 h.Hold.String(),
		OldMaster:            addrString(h.OldMaster),
		NewMaster:            addrString(h.NewMaster),
		NewMasterPriority:    int(h.NewMasterPriority),
		LastOldMasterAdvert:  timePtr(h.LastOldMasterAdvert),
		FirstNewMasterAdvert: timePtr(h.FirstNewMasterAdvert),
		VIPsAdded:            timePtr(h.VIPsAdded),
		FirstAnnounce:        timePtr(h.FirstAnnounce),
		Done:                 h.Done,
		Failed:               h.Failed,
		Error:                h.Error,
	}
	if d, ok := h.AdvertGap(); ok {
		out.AdvertGap, out.AdvertGapMS = d.String(), msPtr(d)
	}
	if d, ok := h.AnnounceGap(); ok {
		out.AnnounceGap, out.AnnounceGapMS = d.String(), msPtr(d)
	}
	return out
}

func vrrpInstanceStatus(s vrrp.InstanceStatus) VRRPInstanceStatus {
	out := VRRPInstanceStatus{
		Name:                 s.Name,
		Interface:            s.Interface,
		VRID:                 int(s.VRID),
		Version:              int(s.Version),
		State:                s.State.String(),
		Priority:             int(s.Priority),
		BasePriority:         int(s.BasePriority),
		PrimaryAddress:       addrString(s.PrimaryAddr),
		MasterAddress:        addrString(s.MasterAddr),
		MasterPriority:       int(s.MasterPriority),
		AdvertInterval:       s.AdvertInterval.String(),
		MasterAdvertInterval: s.MasterAdverInterval.String(),
		VIPsInstalled:        s.VIPsInstalled,
		SyncGroup:            s.Group,
		HoldUntil:            timePtr(s.HoldUntil),
		BoostUntil:           timePtr(s.BoostUntil),
		LastAdvertSent:       timePtr(s.LastAdvertSent),
		LastAdvertReceived:   timePtr(s.LastAdvertReceived),
		Counters: VRRPCounters{
			Received:       s.Counters.Received,
			AdvertsIn:      s.Counters.AdvertsIn,
			AdvertsOut:     s.Counters.AdvertsOut,
			Priority0In:    s.Counters.Prio0In,
			Priority0Out:   s.Counters.Prio0Out,
			Transitions:    s.Counters.Transitions,
			SendErrors:     s.Counters.SendErrors,
			RecvErrors:     s.Counters.RecvErrors,
			VIPErrors:      s.Counters.VIPErrors,
			VIPReadds:      s.Counters.VIPReadds,
			AnnounceRounds: s.Counters.AnnounceRounds,
			AnnounceErrors: s.Counters.AnnounceErrors,
			NotifyRuns:     s.Counters.NotifyRuns,
			NotifyFailures: s.Counters.NotifyFailures,
		},
	}
	if !s.LastChange.At.IsZero() {
		out.LastTransition = &VRRPTransition{From: s.LastChange.From.String(), To: s.LastChange.To.String(), Reason: s.LastChange.Reason.String(), At: s.LastChange.At}
	}
	for _, v := range s.VIPs {
		out.VIPs = append(out.VIPs, v.String())
	}
	if !s.Master.Since.IsZero() {
		out.Master = &VRRPMasterStint{Since: s.Master.Since, VIPsAdded: timePtr(s.Master.VIPsAdded), FirstAnnounce: timePtr(s.Master.FirstAnnounce), AnnounceRounds: s.Master.AnnounceRounds}
	}
	for _, t := range s.Trackers {
		out.Trackers = append(out.Trackers, VRRPTrackerStatus{Name: t.Name, Up: t.Up, Weight: t.Weight, Value: t.Value, Error: t.Error})
	}
	if len(s.Counters.Drops) > 0 {
		out.Counters.Drops = map[string]uint64{}
		for r, n := range s.Counters.Drops {
			out.Counters.Drops[r.String()] = n
		}
	}
	if s.Handover != nil {
		out.LastFailover = vrrpHandover(*s.Handover)
	}
	return out
}

// Failover errors, mapped to HTTP statuses by the control API.
var (
	// ErrNoVRRP: no vrrp_instance is configured.
	ErrNoVRRP = errors.New("no vrrp_instance is configured")
	// ErrUnknownInstance: the named instance does not exist.
	ErrUnknownInstance = errors.New("unknown vrrp_instance")
	// ErrBadFailoverRequest: the request is malformed.
	ErrBadFailoverRequest = errors.New("bad failover request")
)

// Failover defaults.
const (
	DefaultFailoverHold    = 30 * time.Second
	DefaultFailoverTimeout = 10 * time.Second
)

// FailoverRequest is the body of POST /v1/vrrp/failover.
type FailoverRequest struct {
	// Instance names the instance; "" means the only one, or every one
	// with All.
	Instance string `json:"instance"`
	All      bool   `json:"all"`
	// Hold is how long the drill lasts (Go duration); default 30s.
	Hold string `json:"hold,omitempty"`
	// Wait for the handover to be observed, up to Timeout (default 10s).
	Wait    bool   `json:"wait"`
	Timeout string `json:"timeout,omitempty"`
}

// FailoverResponse is the answer of POST /v1/vrrp/failover. OK is true
// when every drill started and, with wait, every handover was observed.
type FailoverResponse struct {
	OK      bool             `json:"ok"`
	Results []FailoverResult `json:"results"`
}

// FailoverResult is the outcome of one instance's drill.
type FailoverResult struct {
	Instance  string        `json:"instance"`
	OK        bool          `json:"ok"`
	Error     string        `json:"error,omitempty"`
	Action    string        `json:"action,omitempty"`
	FromState string        `json:"from_state"`
	State     string        `json:"state"`
	Waited    bool          `json:"waited"`
	Handover  *VRRPHandover `json:"handover,omitempty"`
}

func parseDurationDefault(s string, def time.Duration, what string) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%w: %s %q is not a positive duration", ErrBadFailoverRequest, what, s)
	}
	return d, nil
}

// failover runs the drill of req on the chosen instances, concurrently.
func (s *vrrpSubsystem) failover(ctx context.Context, req FailoverRequest) (FailoverResponse, error) {
	hold, err := parseDurationDefault(req.Hold, DefaultFailoverHold, "hold")
	if err != nil {
		return FailoverResponse{}, err
	}
	timeout, err := parseDurationDefault(req.Timeout, DefaultFailoverTimeout, "timeout")
	if err != nil {
		return FailoverResponse{}, err
	}
	runners := s.snapshot()
	if len(runners) == 0 {
		return FailoverResponse{}, ErrNoVRRP
	}
	var chosen []*vrrpRunner
	switch {
	case req.All && req.Instance != "":
		return FailoverResponse{}, fmt.Errorf("%w: name an instance or ask for all, not both", ErrBadFailoverRequest)
	case req.All:
		chosen = runners
	case req.Instance != "":
		for _, r := range runners {
			if r.name == req.Instance {
				chosen = append(chosen, r)
			}
		}
		if len(chosen) == 0 {
			var names []string
			for _, r := range runners {
				names = append(names, r.name)
			}
			return FailoverResponse{}, fmt.Errorf("%w %q (configured: %s)", ErrUnknownInstance, req.Instance, strings.Join(names, ", "))
		}
	case len(runners) == 1:
		chosen = runners
	default:
		return FailoverResponse{}, fmt.Errorf("%w: %d instances are configured: name one or ask for all", ErrBadFailoverRequest, len(runners))
	}

	res := FailoverResponse{OK: true, Results: make([]FailoverResult, len(chosen))}
	var wg sync.WaitGroup
	for k, r := range chosen {
		wg.Go(func() { res.Results[k] = s.failoverOne(ctx, r, hold, req.Wait, timeout) })
	}
	wg.Wait()
	for _, r := range res.Results {
		res.OK = res.OK && r.OK
	}
	return res, nil
}

func (s *vrrpSubsystem) failoverOne(ctx context.Context, r *vrrpRunner, hold time.Duration, wait bool, timeout time.Duration) FailoverResult {
	out := FailoverResult{Instance: r.name, FromState: r.inst.Status().State.String(), Waited: wait}
	h, err := r.inst.Failover(ctx, hold)
	if err == nil && wait {
		wctx, cancel := context.WithTimeout(ctx, timeout)
		h, err = r.inst.AwaitHandover(wctx)
		cancel()
	}
	out.State = r.inst.Status().State.String()
	if h.Action != "" {
		out.Action, out.Handover = h.Action, vrrpHandover(h)
	}
	if err != nil {
		out.Error = err.Error()
		s.log.Warn("vrrp failover drill failed", slog.String("vrrp_instance", r.name), slog.Any("error", err))
		return out
	}
	out.OK = true
	attrs := []any{slog.String("vrrp_instance", r.name), slog.String("action", h.Action), slog.Duration("hold", hold)}
	if d, ok := h.AdvertGap(); ok {
		attrs = append(attrs, slog.Duration("advert_gap", d))
	}
	s.log.Info("vrrp failover drill", attrs...)
	return out
}

// vrrpCollector exports the instances' state and counters at scrape time.
type vrrpCollector struct {
	s                                        *vrrpSubsystem
	state, priority, basePriority            *prometheus.Desc
	advertsIn, advertsOut, prio0In, prio0Out *prometheus.Desc
	drops, transitions, errors, unknownVRID  *prometheus.Desc
}

func newVRRPCollector(s *vrrpSubsystem) *vrrpCollector {
	inst := []string{"instance"}
	return &vrrpCollector{
		s: s,
		state: prometheus.NewDesc("fulcrum_vrrp_state",
			"VRRP instance state: 0 initialize, 1 backup, 2 master, 3 fault, -1 failed.", inst, nil),
		priority: prometheus.NewDesc("fulcrum_vrrp_priority",
			"Effective VRRP priority (trackers and drills applied).", inst, nil),
		basePriority: prometheus.NewDesc("fulcrum_vrrp_base_priority",
			"Configured VRRP priority.", inst, nil),
		advertsIn: prometheus.NewDesc("fulcrum_vrrp_adverts_received_total",
			"VRRP advertisements accepted.", inst, nil),
		advertsOut: prometheus.NewDesc("fulcrum_vrrp_adverts_sent_total",
			"VRRP advertisements sent.", inst, nil),
		prio0In: prometheus.NewDesc("fulcrum_vrrp_priority_zero_received_total",
			"VRRP advertisements with priority 0 (a Master resigning) accepted.", inst, nil),
		prio0Out: prometheus.NewDesc("fulcrum_vrrp_priority_zero_sent_total",
			"VRRP advertisements with priority 0 sent.", inst, nil),
		drops: prometheus.NewDesc("fulcrum_vrrp_drops_total",
			"Received VRRP packets dropped, by reason (addr_list_mismatch also counts accepted ones).", []string{"instance", "reason"}, nil),
		transitions: prometheus.NewDesc("fulcrum_vrrp_transitions_total",
			"VRRP state transitions.", inst, nil),
		errors: prometheus.NewDesc("fulcrum_vrrp_errors_total",
			"VRRP side-effect failures, by kind (send, recv, vip, announce, notify).", []string{"instance", "kind"}, nil),
		unknownVRID: prometheus.NewDesc("fulcrum_vrrp_unknown_vrid_total",
			"VRRP packets for a VRID no local instance has, by interface.", []string{"interface"}, nil),
	}
}

func (c *vrrpCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.state, c.priority, c.basePriority, c.advertsIn, c.advertsOut,
		c.prio0In, c.prio0Out, c.drops, c.transitions, c.errors, c.unknownVRID} {
		ch <- d
	}
}

func (c *vrrpCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, r := range c.s.snapshot() {
		st := r.inst.Status()
		state := float64(st.State)
		if r.failure() != nil {
			state = -1
		}
		n := r.name
		gauge(c.state, state, n)
		gauge(c.priority, float64(st.Priority), n)
		gauge(c.basePriority, float64(st.BasePriority), n)
		cs := st.Counters
		counter(c.advertsIn, cs.AdvertsIn, n)
		counter(c.advertsOut, cs.AdvertsOut, n)
		counter(c.prio0In, cs.Prio0In, n)
		counter(c.prio0Out, cs.Prio0Out, n)
		counter(c.transitions, cs.Transitions, n)
		for _, reason := range vrrp.DropReasons() {
			counter(c.drops, cs.Drops[reason], n, reason.String())
		}
		for kind, v := range map[string]uint64{"send": cs.SendErrors, "recv": cs.RecvErrors, "vip": cs.VIPErrors, "announce": cs.AnnounceErrors, "notify": cs.NotifyFailures} {
			counter(c.errors, v, n, kind)
		}
	}
	for iface, v := range c.s.io.unknownVRIDs() {
		counter(c.unknownVRID, v, iface)
	}
}
