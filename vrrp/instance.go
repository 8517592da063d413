package vrrp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// VIP is one virtual address of an instance, as installed on a device.
type VIP struct {
	// Prefix is the address with its prefix length (192.0.2.100/24).
	Prefix netip.Prefix
	// Device is the interface the address goes on; "" means the
	// instance's Interface.
	Device string
	// Label is the IPv4 address label ("eth0:vip"), or "".
	Label string
}

// Addr is the virtual address.
func (v VIP) Addr() netip.Addr { return v.Prefix.Addr() }

// String renders "192.0.2.100/24", with " dev eth1" and " label eth1:x"
// when set.
func (v VIP) String() string {
	s := v.Prefix.String()
	if v.Device != "" {
		s += " dev " + v.Device
	}
	if v.Label != "" {
		s += " label " + v.Label
	}
	return s
}

// Received is one packet read by a Transport.
type Received struct {
	// Payload is the VRRP message (the bytes after the IP header).
	Payload []byte
	// Src and Dst are the IP header's addresses.
	Src, Dst netip.Addr
	// TTL is the IPv4 TTL or IPv6 Hop Limit, -1 if unknown (which fails
	// CheckTTL unless the instance relaxes it).
	TTL int
}

// Transport carries one instance's advertisements (package netio's raw
// socket, adapted by the agent; vrrptest.FakeTransport in tests). The
// instance owns it: it calls Close when it stops.
type Transport interface {
	// Recv blocks for the next packet. It returns ctx.Err() when ctx ends
	// and an error matching net.ErrClosed after Close.
	Recv(ctx context.Context) (Received, error)
	// Send writes one VRRP message to dst (with TTL 255, RFC 5798 §5.1.1.3).
	// It must not block for long: it is called under the Machine's lock.
	Send(payload []byte, dst netip.Addr) error
	// Close releases the transport; a blocked Recv returns.
	Close() error
}

// AddressManager installs and removes virtual addresses (netlink in
// production). Both calls are idempotent: adding an address that is there,
// or removing one that is not, is not an error. They run on the instance's
// worker goroutine, never under the Machine's lock.
type AddressManager interface {
	Add(ctx context.Context, vips []VIP) error
	Remove(ctx context.Context, vips []VIP) error
}

// Announcer sends one round of gratuitous ARP (IPv4) / unsolicited Neighbor
// Advertisements (IPv6) for addrs (RFC 5798 §6.4.1, §6.4.2). It runs on the
// instance's worker goroutine.
type Announcer interface {
	Announce(ctx context.Context, addrs []netip.Addr) error
}

// AddressWatcher reports virtual addresses that disappear from the system
// without the instance removing them (`ip addr del`, a network manager), so
// that a Master can put them back.
type AddressWatcher interface {
	// WatchRemoved calls removed for each such address until ctx ends, then
	// returns ctx.Err(); any other return is a failure. It blocks.
	WatchRemoved(ctx context.Context, removed func(netip.Addr)) error
}

// LinkWatcher reports the state of links for interface trackers. A link
// is up when it is administratively up and running (carrier), as
// keepalived's track_interface reads it; a missing link is down.
type LinkWatcher interface {
	// LinkUp reports the state of name now.
	LinkUp(name string) (bool, error)
	// WatchLinks calls changed for every change of the named links until
	// ctx ends, then returns ctx.Err(). It blocks.
	WatchLinks(ctx context.Context, names []string, changed func(name string, up bool)) error
}

// ServiceHealth tells whether a named virtual server or proxy is healthy,
// for track_service. The health subsystem implements it; the instance
// polls it every TrackPollInterval.
type ServiceHealth interface {
	ServiceHealthy(name string) (bool, error)
}

// Default timings of the runner.
const (
	// DefaultAnnounceCount is the rounds of a burst on becoming Master
	// (keepalived garp_master_repeat).
	DefaultAnnounceCount = 5
	// DefaultAnnounceInterval paces the rounds of a burst. keepalived sends
	// them back to back by default (garp_interval 0); a short pause lets a
	// neighbour that lost the first frames to a busy queue catch a later one.
	DefaultAnnounceInterval = 50 * time.Millisecond
	// DefaultLowerPriorityHoldoff is the least time between two
	// split-brain re-announcements (keepalived garp_lower_prio_delay
	// defaults to garp_master_delay, 5 s).
	DefaultLowerPriorityHoldoff = 5 * time.Second
	// DefaultTrackPollInterval is how often process, file and service
	// trackers are read.
	DefaultTrackPollInterval = time.Second
	// DefaultNotifyTimeout bounds a notify command.
	DefaultNotifyTimeout = 5 * time.Second
	// DefaultShutdownTimeout bounds the work done when an instance stops
	// (removing VIPs, the stop command).
	DefaultShutdownTimeout = 5 * time.Second
	// vipRetryInterval paces retries of a failed VIP installation.
	vipRetryInterval = time.Second
)

// AnnounceOptions pace the announcements of a Master.
type AnnounceOptions struct {
	// Count is the rounds of the burst sent on becoming Master, the first
	// at once; 0 means DefaultAnnounceCount.
	Count int
	// Interval is the pause between rounds; 0 means
	// DefaultAnnounceInterval, negative sends them back to back.
	Interval time.Duration
	// Delay, if positive, sends a second burst this long after becoming
	// Master (keepalived garp_master_delay).
	Delay time.Duration
	// Refresh, if positive, sends one round this often while Master
	// (keepalived garp_master_refresh).
	Refresh time.Duration
	// LowerPriorityHoldoff is the least time between two bursts a Master
	// sends because it heard a lower-priority advertisement, the sign of a
	// second Master (split brain) that may have pulled traffic away; 0 means
	// DefaultLowerPriorityHoldoff, negative disables them.
	LowerPriorityHoldoff time.Duration
}

// TrackKind is the kind of a tracked object.
type TrackKind uint8

// Tracked object kinds.
const (
	// TrackInterface: a link, up while administratively up and running.
	TrackInterface TrackKind = iota + 1
	// TrackProcess: up while a process of that name runs (its comm, or the
	// base name of its argv[0]), read from the proc file system.
	TrackProcess
	// TrackFile: a file holding an integer, keepalived's track_file (see
	// TrackSpec).
	TrackFile
	// TrackService: a virtual server or proxy, through ServiceHealth.
	TrackService
)

// String returns "interface", "process", "file" or "service".
func (k TrackKind) String() string {
	switch k {
	case TrackInterface:
		return "interface"
	case TrackProcess:
		return "process"
	case TrackFile:
		return "file"
	case TrackService:
		return "service"
	default:
		return fmt.Sprintf("track_kind(%d)", uint8(k))
	}
}

// TrackSpec is one tracked object of an instance.
//
// For interfaces, processes and services Weight follows Tracker: 0 puts the
// instance in Fault while the object is down; a positive weight is added
// while it is up, a negative one while it is down.
//
// A file follows keepalived's track_file: its content is read as an integer
// as strtol(3) with base 0 would (a missing, empty or unreadable file, or
// text, is 0), clamped to -254..254. With Weight 0, a non-zero value means
// Fault. Otherwise value*Weight, clamped to -254..253, is added to the
// priority, and -254 (any result below -253) means Fault.
//
// Weights are -254..254, as keepalived accepts for track_process and
// track_file; a weight of ±254 acts as ±253 (MaxTrackerWeight), which moves
// any priority across the whole 1..254 range just the same.
type TrackSpec struct {
	Kind   TrackKind
	Name   string // interface, process or service name; absolute file path
	Weight int
}

// Key is the tracker's name in Status: "interface:eth1", "file:/run/x".
func (t TrackSpec) Key() string { return t.Kind.String() + ":" + t.Name }

// maxSpecWeight is the keepalived bound of track_process and track_file.
const maxSpecWeight = 254

// syncTracker is the weight-0 tracker through which a Group holds every
// member in Fault while one of them is.
const syncTracker = "sync_group"

// NotifyOptions are the commands run on state changes (keepalived
// notify_master, notify_backup, notify_fault, notify_stop). Each is an argv
// (no shell) run with the environment of the agent plus
// FULCRUM_VRRP_INSTANCE, FULCRUM_VRRP_STATE, FULCRUM_VRRP_FROM,
// FULCRUM_VRRP_REASON and FULCRUM_VRRP_PRIORITY. Commands run one at a
// time, in the order of the transitions, on a goroutine of the instance,
// never blocking the state machine; one still running after Timeout is
// killed with its process group.
type NotifyOptions struct {
	Master, Backup, Fault, Stop []string
	// Timeout bounds each command; 0 means DefaultNotifyTimeout.
	Timeout time.Duration
}

// InstanceOptions configure one VRRP instance. The agent translates the
// node configuration into them.
type InstanceOptions struct {
	// Name identifies the instance in logs, events and status.
	Name string
	// Interface is where advertisements go; VIPs without a Device are added
	// to it, and it is tracked (weight 0) unless DontTrackInterface.
	Interface string

	Version Version
	// VRID is the Virtual Router Identifier, 1..255 (RFC 5798 §5.2.3).
	VRID uint8
	// Priority 1..255 (255: address owner); 0 means 100.
	Priority uint8
	// AdvertInterval is Advertisement_Interval; 0 means the version's
	// default (1 s).
	AdvertInterval time.Duration
	// NoPreempt sets Preempt_Mode False (RFC 5798 §6.1).
	NoPreempt bool
	// PreemptDelay is keepalived's preempt_delay (see Config).
	PreemptDelay time.Duration

	// PrimaryAddr is the source of our advertisements (the link-local
	// address for IPv6, RFC 5798 §5.1.2.1) and our identity in the
	// tie-break of RFC 5798 §6.4.3. Required.
	PrimaryAddr netip.Addr
	// Peers are the unicast destinations; empty means the multicast group
	// (224.0.0.18 or ff02::12, RFC 5798 §5.1.1.2, §5.1.2.2).
	Peers []netip.Addr
	// RelaxTTL skips the TTL check (RFC 5798 §7.1), for unicast peers
	// behind routers.
	RelaxTTL bool

	// VIPs are the virtual addresses, all of one family (RFC 5798 §5.2.9);
	// they are advertised in this order.
	VIPs []VIP
	// AuthType and AuthPass are VRRPv2 simple password authentication.
	AuthType AuthType
	AuthPass string
	// AddrPolicy is what to do with an advertisement whose address list
	// differs from ours.
	AddrPolicy AddrListPolicy
	// Checksum is the v3/IPv4 checksum form we send; Accept what we accept
	// besides the standard one.
	Checksum ChecksumMode
	Accept   ParseOptions
	// AdvertOnLowerPriority: a Master answers a lower-priority
	// advertisement at once with its own (keepalived's default; see Config).
	AdvertOnLowerPriority bool
	// AdvertOnHigherPriority: a Master that yields sends one last
	// advertisement first (keepalived's higher_prio_send_advert), so that
	// the winner learns of a split brain and re-announces (see Config).
	AdvertOnHigherPriority bool

	Announce AnnounceOptions
	// Trackers are the tracked objects.
	Trackers []TrackSpec
	// DontTrackInterface stops the implicit weight-0 tracking of Interface
	// (keepalived dont_track_primary). Interface tracking needs
	// Deps.Links; without it Interface is not tracked.
	DontTrackInterface bool
	// TrackPollInterval is how often process, file and service trackers are
	// read; 0 means DefaultTrackPollInterval.
	TrackPollInterval time.Duration

	Notify NotifyOptions
	// KeepVIPsOnShutdown leaves the VIPs in place when a Master stops (it
	// still sends priority 0), and also keeps VIPs found at start-up.
	KeepVIPsOnShutdown bool
}

// Deps are the instance's collaborators. Transport and Addresses are
// required; the rest is optional.
type Deps struct {
	Transport Transport
	Addresses AddressManager
	// Announcer, if set, announces the VIPs when we become Master.
	Announcer Announcer
	// Watcher, if set, reports VIPs removed behind our back; a Master puts
	// them back.
	Watcher AddressWatcher
	// Links is needed by interface trackers (and for tracking Interface).
	Links LinkWatcher
	// Services is needed by service trackers.
	Services ServiceHealth
	// ProcRoot is where process trackers read processes; "" means /proc.
	ProcRoot string
	// Clock defaults to SystemClock.
	Clock Clock
	// Log defaults to a logger that discards.
	Log *slog.Logger
	// OnStateChange, if set, is called with every transition, in order, on
	// a goroutine of the instance (never under its locks: it may call
	// Status).
	OnStateChange func(StateChange)
	// ShutdownTimeout bounds the work of a stop; 0 means
	// DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
}

// StateChange is one transition, as delivered to Deps.OnStateChange.
type StateChange struct {
	Instance string
	From, To State
	Reason   Reason
	// Priority is the effective priority at the transition.
	Priority uint8
	At       time.Time
}

// Errors of the runner.
var (
	// ErrInstanceRunning: Run called twice.
	ErrInstanceRunning = errors.New("vrrp: instance already running")
	// ErrNoDrill: AwaitHandover without a Failover.
	ErrNoDrill = errors.New("vrrp: no failover drill")
	// ErrHandoverFailed: the drill ended without the handover it asked for.
	ErrHandoverFailed = errors.New("vrrp: handover did not happen")
)

// Instance runs one VRRP instance: it owns a Machine, reads the Transport,
// applies the receive checks (CheckTTL, Parse, WireConfig.Check) counting
// every drop by reason, and implements the Machine's Actions: adverts are
// sent on the Transport directly; VIP changes and announcements go to the
// instance's worker goroutine, in order, so the state machine never waits
// on netlink; transitions go to Deps.OnStateChange and the notify commands
// on goroutines of their own.
//
// Create it with NewInstance, then call Run once; Status, Update, Failover
// and AwaitHandover are safe for concurrent use with Run.
type Instance struct {
	name  string
	deps  Deps
	clock Clock
	log   *slog.Logger
	tr    Transport
	addrs AddressManager
	m     *Machine
	stats Stats

	wire atomic.Pointer[WireConfig]

	// Queues, each served by one goroutine of Run.
	vipq, evq, cmdq *fifo

	ran          atomic.Bool
	shuttingDown atomic.Bool

	advertsIn, advertsOut, prio0In, prio0Out atomic.Uint64
	transitions, sendErrors, recvErrors      atomic.Uint64
	vipErrors, vipReadds, announceRounds     atomic.Uint64
	announceErrors, notifyRuns, notifyFails  atomic.Uint64

	mu          sync.Mutex // guards the fields below
	opts        InstanceOptions
	dsts        []netip.Addr
	specs       []TrackSpec
	trk         map[string]trackerValue // by TrackSpec.Key, plus syncTracker
	ownFault    bool
	group       *Group
	lastChange  StateChange
	lastSent    time.Time
	lastRecv    map[netip.Addr]peerSeen
	lastLowerAt time.Time
	drill       *drill
	trackStop   context.CancelFunc
	trackDone   chan struct{}
	runCtx      context.Context

	vmu       sync.Mutex // guards the VIP worker's state below
	vips      []VIP
	holding   bool // Master: the VIPs should be installed
	epoch     uint64
	installed map[netip.Addr]VIP
	removing  bool // RemoveVIPs asked for a removal not done yet
	epochInfo masterEpoch
}

// masterEpoch is what one stint as Master did.
type masterEpoch struct {
	BecameMaster    time.Time
	VIPsAdded       time.Time
	FirstAnnounce   time.Time
	AnnounceRounds  int
	VIPsInstalledOK bool
}

// peerSeen is the last advertisement from one sender.
type peerSeen struct {
	at       time.Time
	priority uint8
}

// trackerValue is a tracker's latest reading and what the Machine has.
type trackerValue struct {
	spec  TrackSpec
	ok    bool  // interface, process, service: up
	value int64 // file: the number read
	err   string
	// weight and up are the effective values last given to the Machine.
	weight int
	up     bool
}

// NewInstance validates opts and deps and returns an instance that does
// nothing until Run. Errors wrap ErrInvalidConfig.
func NewInstance(opts InstanceOptions, deps Deps) (*Instance, error) {
	if deps.Transport == nil || deps.Addresses == nil {
		return nil, fmt.Errorf("%w: instance %q: a transport and an address manager are required", ErrInvalidConfig, opts.Name)
	}
	if deps.Clock == nil {
		deps.Clock = SystemClock()
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if deps.ProcRoot == "" {
		deps.ProcRoot = "/proc"
	}
	if deps.ShutdownTimeout <= 0 {
		deps.ShutdownTimeout = DefaultShutdownTimeout
	}
	opts = normalizeOptions(opts)
	wire, cfg, err := buildConfigs(opts, deps)
	if err != nil {
		return nil, err
	}
	i := &Instance{
		name:      opts.Name,
		deps:      deps,
		clock:     deps.Clock,
		log:       deps.Log.With(slog.String("vrrp_instance", opts.Name)),
		tr:        deps.Transport,
		addrs:     deps.Addresses,
		vipq:      newFIFO(),
		evq:       newFIFO(),
		cmdq:      newFIFO(),
		opts:      opts,
		dsts:      destinations(opts),
		specs:     trackSpecs(opts, deps),
		lastRecv:  map[netip.Addr]peerSeen{},
		vips:      slices.Clone(opts.VIPs),
		installed: map[netip.Addr]VIP{},
	}
	i.trk = initialTrackers(i.specs)
	i.wire.Store(wire)
	m, err := NewMachine(cfg, deps.Clock, (*actions)(i))
	if err != nil {
		return nil, fmt.Errorf("instance %q: %w", opts.Name, err)
	}
	i.m = m
	return i, nil
}

// ValidateOptions reports what NewInstance would refuse in opts, given
// deps (only which optional collaborators are set matters: interface
// trackers need Links, service trackers Services). Transport and
// Addresses are not checked. The agent calls it before committing a
// reload.
func ValidateOptions(opts InstanceOptions, deps Deps) error {
	_, _, err := buildConfigs(normalizeOptions(opts), deps)
	return err
}

// Name is the instance's name.
func (i *Instance) Name() string { return i.name }

// normalizeOptions fills defaults and copies the slices.
func normalizeOptions(o InstanceOptions) InstanceOptions {
	if o.Priority == 0 {
		o.Priority = PriorityDefault
	}
	if o.AdvertInterval == 0 {
		o.AdvertInterval = DefaultAdvertIntervalV3 // equal to the v2 default
	}
	if o.Announce.Count <= 0 {
		o.Announce.Count = DefaultAnnounceCount
	}
	if o.Announce.Interval == 0 {
		o.Announce.Interval = DefaultAnnounceInterval
	}
	if o.Announce.LowerPriorityHoldoff == 0 {
		o.Announce.LowerPriorityHoldoff = DefaultLowerPriorityHoldoff
	}
	if o.TrackPollInterval <= 0 {
		o.TrackPollInterval = DefaultTrackPollInterval
	}
	if o.Notify.Timeout <= 0 {
		o.Notify.Timeout = DefaultNotifyTimeout
	}
	o.PrimaryAddr = o.PrimaryAddr.Unmap().WithZone("")
	o.Peers = slices.Clone(o.Peers)
	o.VIPs = slices.Clone(o.VIPs)
	o.Trackers = slices.Clone(o.Trackers)
	o.Notify.Master = slices.Clone(o.Notify.Master)
	o.Notify.Backup = slices.Clone(o.Notify.Backup)
	o.Notify.Fault = slices.Clone(o.Notify.Fault)
	o.Notify.Stop = slices.Clone(o.Notify.Stop)
	return o
}

// buildConfigs validates o and derives the wire and protocol configs.
func buildConfigs(o InstanceOptions, deps Deps) (*WireConfig, Config, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: instance %q: "+format, append([]any{ErrInvalidConfig, o.Name}, args...)...)
	}
	if o.Name == "" {
		return nil, Config{}, fmt.Errorf("%w: instance without a name", ErrInvalidConfig)
	}
	if !o.PrimaryAddr.IsValid() {
		return nil, Config{}, bad("no primary address")
	}
	v4 := o.PrimaryAddr.Is4()
	wire := &WireConfig{
		Version:        o.Version,
		VRID:           o.VRID,
		Owner:          o.Priority == PriorityOwner,
		AdvertInterval: o.AdvertInterval,
		AuthType:       o.AuthType,
		AuthPass:       o.AuthPass,
		AddrPolicy:     o.AddrPolicy,
		Checksum:       o.Checksum,
	}
	for _, v := range o.VIPs {
		a := v.Prefix.Addr()
		if !v.Prefix.IsValid() || a.Zone() != "" {
			return nil, Config{}, bad("virtual address %v is not a valid prefix", v.Prefix)
		}
		if a.Unmap().Is4() != v4 {
			return nil, Config{}, bad("virtual address %v and primary address %v are of different families", a, o.PrimaryAddr)
		}
		wire.Addrs = append(wire.Addrs, a.Unmap())
	}
	if err := wire.Validate(); err != nil {
		return nil, Config{}, fmt.Errorf("instance %q: %w", o.Name, err)
	}
	for _, p := range o.Peers {
		if !p.IsValid() || p.Unmap().Is4() != v4 || p.IsMulticast() {
			return nil, Config{}, bad("unicast peer %v is not a unicast address of the primary address's family", p)
		}
	}
	seen := map[string]bool{}
	for _, t := range o.Trackers {
		switch {
		case t.Kind < TrackInterface || t.Kind > TrackService:
			return nil, Config{}, bad("tracker %q of unknown kind %v", t.Name, t.Kind)
		case t.Name == "":
			return nil, Config{}, bad("%v tracker without a name", t.Kind)
		case t.Weight < -maxSpecWeight || t.Weight > maxSpecWeight:
			return nil, Config{}, bad("tracker %s weight %d outside -%d..%d", t.Key(), t.Weight, maxSpecWeight, maxSpecWeight)
		case seen[t.Key()]:
			return nil, Config{}, bad("tracker %s listed twice", t.Key())
		case t.Kind == TrackInterface && deps.Links == nil:
			return nil, Config{}, bad("tracker %s needs a link watcher", t.Key())
		case t.Kind == TrackService && deps.Services == nil:
			return nil, Config{}, bad("tracker %s: service health is not available in this build", t.Key())
		}
		seen[t.Key()] = true
	}
	for _, argv := range [][]string{o.Notify.Master, o.Notify.Backup, o.Notify.Fault, o.Notify.Stop} {
		if len(argv) > 0 && argv[0] == "" {
			return nil, Config{}, bad("notify command with an empty program")
		}
	}
	cfg := Config{
		Version:                o.Version,
		Priority:               o.Priority,
		AdvertInterval:         o.AdvertInterval,
		NoPreempt:              o.NoPreempt,
		PreemptDelay:           o.PreemptDelay,
		PrimaryAddr:            o.PrimaryAddr,
		AdvertOnLowerPriority:  o.AdvertOnLowerPriority,
		AdvertOnHigherPriority: o.AdvertOnHigherPriority,
		ReannounceDelay:        max(o.Announce.Delay, 0),
	}
	// Weights start at 0: the first reading sets the effective ones
	// (SetTrackerWeight), which depend on file contents and on membership
	// of a sync group.
	for _, t := range trackSpecs(o, deps) {
		cfg.Trackers = append(cfg.Trackers, Tracker{Name: t.Key()})
	}
	cfg.Trackers = append(cfg.Trackers, Tracker{Name: syncTracker})
	if err := cfg.validate(); err != nil {
		return nil, Config{}, fmt.Errorf("instance %q: %w", o.Name, err)
	}
	return wire, cfg, nil
}

// machineWeight clamps a keepalived weight (-254..254) to the Machine's.
func machineWeight(w int) int { return min(max(w, -MaxTrackerWeight), MaxTrackerWeight) }

// trackSpecs is o.Trackers plus the implicit tracking of o.Interface.
func trackSpecs(o InstanceOptions, deps Deps) []TrackSpec {
	specs := slices.Clone(o.Trackers)
	if o.Interface != "" && !o.DontTrackInterface && deps.Links != nil {
		own := TrackSpec{Kind: TrackInterface, Name: o.Interface}
		if !slices.ContainsFunc(specs, func(t TrackSpec) bool { return t.Key() == own.Key() }) {
			specs = append(specs, own)
		}
	}
	return specs
}

// destinations are where adverts go: the peers, or the group.
func destinations(o InstanceOptions) []netip.Addr {
	if len(o.Peers) > 0 {
		out := make([]netip.Addr, len(o.Peers))
		for k, p := range o.Peers {
			out[k] = p.Unmap().WithZone("")
		}
		return out
	}
	if o.PrimaryAddr.Is4() {
		return []netip.Addr{MulticastGroup4()}
	}
	return []netip.Addr{MulticastGroup6()}
}

// Run starts the instance and serves until ctx ends, then stops it: a
// Master sends priority 0 and (unless KeepVIPsOnShutdown) removes its VIPs
// (RFC 5798 §6.4.3), the stop command runs, and the Transport is closed.
// The stop work is bounded by Deps.ShutdownTimeout. Run returns nil after
// a stop caused by ctx, or the error that made the transport unusable
// (after the same stop).
func (i *Instance) Run(ctx context.Context) error {
	if !i.ran.CompareAndSwap(false, true) {
		return ErrInstanceRunning
	}
	defer i.tr.Close()

	// The queues outlive ctx: the stop itself goes through them.
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	var workers sync.WaitGroup
	for _, q := range []*fifo{i.vipq, i.evq, i.cmdq} {
		workers.Go(func() { q.run(workCtx) })
	}

	i.mu.Lock()
	i.runCtx = ctx
	o := i.opts
	i.mu.Unlock()
	keep := o.KeepVIPsOnShutdown
	if !keep && !i.wire.Load().Owner {
		// VIPs left by a previous run that died as Master (SIGKILL) would
		// answer for a Master elsewhere: a Backup holds none.
		i.vmu.Lock()
		i.removing = true
		i.vmu.Unlock()
		i.vipq.push(i.syncVIPs)
	}
	i.startTrackers(ctx)
	if err := i.m.Start(); err != nil {
		i.stopTrackers()
		return fmt.Errorf("instance %q: %w", i.name, err)
	}
	i.log.Info("vrrp instance started",
		slog.String("interface", o.Interface),
		slog.Int("vrid", int(o.VRID)),
		slog.Int("priority", int(o.Priority)),
		slog.String("version", o.Version.String()),
		slog.String("state", i.m.State().String()))

	var side sync.WaitGroup
	recvErr := make(chan error, 1)
	recvCtx, stopRecv := context.WithCancel(ctx)
	side.Go(func() { recvErr <- i.recvLoop(recvCtx) })
	if w := i.deps.Watcher; w != nil {
		side.Go(func() { i.watchVIPs(ctx, w) })
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-recvErr:
		if runErr != nil {
			runErr = fmt.Errorf("instance %q: %w", i.name, runErr)
			i.log.Error("vrrp transport failed, stopping the instance", slog.Any("error", runErr))
		}
	}
	stopRecv()

	// Stop: priority 0 and VIP removal through the Actions, then the stop
	// command, all bounded.
	i.shuttingDown.Store(true)
	i.stopTrackers()
	i.m.Stop()
	i.tr.Close()
	side.Wait()
	i.mu.Lock()
	stopCmd, last := i.opts.Notify.Stop, i.lastChange
	i.mu.Unlock()
	if len(stopCmd) > 0 {
		ev := last
		ev.Instance, ev.At = i.name, i.clock.Now()
		i.cmdq.push(func(ctx context.Context) { i.runNotify(ctx, "stop", stopCmd, ev) })
	}
	i.vipq.close()
	i.evq.close()
	i.cmdq.close()
	drained := make(chan struct{})
	go func() { workers.Wait(); close(drained) }()
	t := time.NewTimer(i.deps.ShutdownTimeout)
	defer t.Stop()
	select {
	case <-drained:
	case <-t.C:
		i.log.Warn("vrrp instance stop timed out; abandoning its remaining work", slog.Duration("timeout", i.deps.ShutdownTimeout))
		stopWork()
		<-drained
	}
	i.log.Info("vrrp instance stopped")
	return runErr
}

// flush waits until the work queued so far (VIP changes, announcements,
// callbacks) is done. Commands are not waited for.
func (i *Instance) flush(ctx context.Context) error {
	if err := i.vipq.flush(ctx); err != nil {
		return err
	}
	return i.evq.flush(ctx)
}
