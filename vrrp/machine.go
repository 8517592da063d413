package vrrp

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// Errors returned by the Machine's commands.
var (
	// ErrNotRunning: the command needs a started Machine.
	ErrNotRunning = errors.New("vrrp: machine not running")
	// ErrAlreadyRunning: Start on a started Machine.
	ErrAlreadyRunning = errors.New("vrrp: machine already running")
	// ErrInFault: the drill cannot run while the instance is in Fault.
	ErrInFault = errors.New("vrrp: instance is in fault")
	// ErrAlreadyMaster: TakeOver on a Master.
	ErrAlreadyMaster = errors.New("vrrp: already master")
	// ErrUnknownTracker: SetTracker with a name not in Config.Trackers.
	ErrUnknownTracker = errors.New("vrrp: unknown tracker")
	// ErrBadDuration: a drill duration that is not positive.
	ErrBadDuration = errors.New("vrrp: drill duration must be positive")
)

// takeoverPriority is the priority a TakeOver drill advertises: the highest a
// non-owner may use (RFC 5798 §5.2.4), so every non-owner Master yields to it
// (RFC 5798 §6.4.3) while an address owner (255) does not.
const takeoverPriority = PriorityMaxBackup

// Config is the protocol configuration of one virtual router. The agent
// translates the decoded node configuration into it.
type Config struct {
	Version Version
	// Priority is the configured (base) priority, 1..255; 255 makes this
	// router the address owner. 0 means PriorityDefault (100).
	Priority uint8
	// AdvertInterval is Advertisement_Interval; 0 means the version's default
	// (1 s). v3: whole centiseconds 10 ms..40.95 s; v2: whole seconds 1..255.
	AdvertInterval time.Duration
	// NoPreempt sets Preempt_Mode to False (RFC 5798 §6.1; keepalived
	// "nopreempt"): as Backup, never take over from a lower-priority Master.
	NoPreempt bool
	// PreemptDelay is keepalived's "preempt_delay": a Backup preempts a
	// lower-priority Master only once it has been watching lower-priority
	// advertisements for this long. The countdown starts at Start, or on the
	// first lower-priority advertisement after entering Backup from Master or
	// Fault; a higher- or equal-priority advertisement cancels it. Until it
	// runs out, lower-priority advertisements are accepted as if NoPreempt
	// were set. It does not delay taking over from a silent Master.
	PreemptDelay time.Duration
	// PrimaryAddr is this router's primary address on the interface, the
	// source of its advertisements; it breaks ties between equal priorities
	// (RFC 5798 §6.4.3) and identifies our own advertisements if the
	// transport loops them back.
	PrimaryAddr netip.Addr
	// Trackers are keepalived-style tracked objects (interfaces, scripts),
	// all initially up; SetTracker changes their state.
	Trackers []Tracker
	// AdvertOnLowerPriority makes a Master answer a lower-priority
	// advertisement with an immediate one of its own, as keepalived does by
	// default ("lower_prio_no_advert" unset), so that a lower-priority router
	// that wrongly became Master steps down within one round trip. RFC 5798
	// §6.4.3 says to discard the advertisement; that is the default here.
	AdvertOnLowerPriority bool
	// AdvertOnHigherPriority makes a Master that yields to a higher-priority
	// advertisement (or loses the equal-priority tie-break) send one last
	// advertisement of its own before it becomes Backup, as keepalived does
	// with "higher_prio_send_advert". After a partition heals, the winner's
	// advertisement often reaches the loser before the loser's reaches the
	// winner; without this parting advertisement the winner would never hear
	// that there was a second Master, and so never re-announce the addresses
	// whose neighbours followed the loser (split-brain repair). RFC 5798
	// §6.4.3 sends nothing here; the parting advertisement is the one the
	// loser would have sent had its Adver_Timer fired a moment earlier.
	AdvertOnHigherPriority bool
	// ReannounceDelay, if positive, repeats Announce this long after becoming
	// Master (keepalived "garp_master_delay", 5 s there by default).
	ReannounceDelay time.Duration
}

func (c *Config) advertInterval() time.Duration {
	if c.AdvertInterval != 0 {
		return c.AdvertInterval
	}
	if c.Version == Version2 {
		return DefaultAdvertIntervalV2
	}
	return DefaultAdvertIntervalV3
}

func (c *Config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	if c.Version != Version2 && c.Version != Version3 {
		return bad("version %d, want 2 or 3", uint8(c.Version))
	}
	if _, err := EncodeInterval(c.Version, c.advertInterval()); err != nil {
		return bad("%v", err)
	}
	if c.PreemptDelay < 0 {
		return bad("negative preempt delay %v", c.PreemptDelay)
	}
	if c.ReannounceDelay < 0 {
		return bad("negative reannounce delay %v", c.ReannounceDelay)
	}
	if !c.PrimaryAddr.IsValid() {
		return bad("primary address is required (RFC 5798 §6.4.3 tie-break)")
	}
	if c.Version == Version2 && !c.PrimaryAddr.Unmap().Is4() {
		return bad("primary address %v: VRRPv2 is IPv4 only", c.PrimaryAddr)
	}
	seen := make(map[string]bool, len(c.Trackers))
	for _, t := range c.Trackers {
		if t.Name == "" {
			return bad("tracker with an empty name")
		}
		if seen[t.Name] {
			return bad("tracker %q listed twice", t.Name)
		}
		seen[t.Name] = true
		if t.Weight < -MaxTrackerWeight || t.Weight > MaxTrackerWeight {
			return bad("tracker %q weight %d outside -%d..%d", t.Name, t.Weight, MaxTrackerWeight, MaxTrackerWeight)
		}
	}
	return nil
}

// Status is a snapshot of a Machine.
type Status struct {
	State State
	// BasePriority is the configured priority; Priority is the effective
	// one (trackers, takeover boost) that the Machine advertises and
	// compares.
	BasePriority uint8
	Priority     uint8
	// AdvertInterval is our own Advertisement_Interval.
	AdvertInterval time.Duration
	// MasterAdverInterval is the Master's interval as learnt from its v3
	// advertisements (our own when we are Master, and always for v2), and
	// MasterDownInterval the value derived from it and Priority.
	MasterAdverInterval time.Duration
	MasterDownInterval  time.Duration
	// MasterAddr and MasterPriority describe the last advertisement a
	// Backup accepted; MasterAddr is invalid if there was none.
	MasterAddr     netip.Addr
	MasterPriority uint8
	// MasterDownAt is when Master_Down_Timer fires (Backup), AdverAt when
	// Adver_Timer fires (Master); zero when not running.
	MasterDownAt time.Time
	AdverAt      time.Time
	// PreemptAt is when preempt_delay runs out; zero when not counting.
	PreemptAt time.Time
	// HoldUntil and BoostUntil are the ends of the ForceBackup and TakeOver
	// drills; zero when none is active.
	HoldUntil  time.Time
	BoostUntil time.Time
	// Trackers maps each tracker to whether it is up.
	Trackers map[string]bool
}

// Machine is the VRRP state machine of one virtual router (RFC 5798 §6;
// RFC 3768 §6), driven by Start/Stop, received advertisements, tracker
// changes, drill commands and its own timers, and acting through Actions.
//
// A Machine is safe for concurrent use. It starts no goroutines: timers are
// Clock.AfterFunc callbacks that take the Machine's lock, and every effect is
// an Actions call made under that lock, so with vrrptest.FakeClock a run is
// fully deterministic.
type Machine struct {
	cfg   Config
	clock Clock
	act   Actions
	// own is Advertisement_Interval.
	own time.Duration

	mu       sync.Mutex
	started  bool
	state    State
	trackers map[string]*trackerState

	// masterAdverInterval is Master_Adver_Interval (RFC 5798 §6.1).
	masterAdverInterval time.Duration
	masterAddr          netip.Addr
	masterPriority      uint8
	// downReason is the Reason the next Master_Down_Timer expiry reports.
	downReason Reason
	// downDeferred is set when Master_Down_Timer fired during a
	// ForceBackup hold and was pushed to the end of the hold.
	downDeferred bool
	preemptAt    time.Time
	holdUntil    time.Time
	boostUntil   time.Time

	adverTimer, downTimer, announceTimer timerSlot
	gen                                  uint64
}

// timerSlot is one logical timer of the Machine. gen identifies the arming
// so that a callback that lost the race with Stop or a re-arm does nothing.
type timerSlot struct {
	t   Timer
	gen uint64
	at  time.Time
}

// NewMachine validates cfg and returns a Machine in Initialize. Nothing
// happens until Start.
func NewMachine(cfg Config, clock Clock, act Actions) (*Machine, error) {
	if cfg.Priority == 0 {
		cfg.Priority = PriorityDefault
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if clock == nil || act == nil {
		return nil, fmt.Errorf("%w: clock and actions are required", ErrInvalidConfig)
	}
	cfg.PrimaryAddr = cfg.PrimaryAddr.Unmap().WithZone("")
	cfg.Trackers = append([]Tracker(nil), cfg.Trackers...)
	m := &Machine{
		cfg:      cfg,
		clock:    clock,
		act:      act,
		own:      cfg.advertInterval(),
		trackers: make(map[string]*trackerState, len(cfg.Trackers)),
	}
	for _, t := range cfg.Trackers {
		m.trackers[t.Name] = &trackerState{weight: t.Weight, up: true}
	}
	m.masterAdverInterval = m.own
	return m, nil
}

// Start delivers the Startup event (RFC 5798 §6.4.1): the address owner
// becomes Master at once, any other router becomes Backup and waits
// Master_Down_Interval. With a weight-0 tracker down it enters Fault instead.
func (m *Machine) Start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started {
		return ErrAlreadyRunning
	}
	m.started = true
	m.preemptAt = time.Time{}
	if m.cfg.PreemptDelay > 0 {
		// keepalived starts the preempt_delay countdown at startup.
		m.preemptAt = m.clock.Now().Add(m.cfg.PreemptDelay)
	}
	m.initialize(ReasonStartup)
	return nil
}

// initialize is RFC 5798 §6.4.1 (also used to leave Fault).
func (m *Machine) initialize(reason Reason) {
	switch {
	case m.faulted():
		m.enterFault()
	case m.cfg.Priority == PriorityOwner:
		if reason == ReasonStartup {
			reason = ReasonOwner
		}
		m.enterMaster(reason)
	default:
		// "Set Master_Adver_Interval to Advertisement_Interval; Set the
		// Master_Down_Timer to Master_Down_Interval; Transition to Backup."
		m.masterAdverInterval = m.own
		m.enterBackup(reason)
	}
}

// Stop delivers the Shutdown event (RFC 5798 §6.4.2, §6.4.3): a Master
// cancels Adver_Timer, sends an advertisement with priority 0 so that the
// Backups take over after Skew_Time, and removes the virtual addresses; a
// Backup cancels Master_Down_Timer. The Machine returns to Initialize and may
// be started again.
func (m *Machine) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.started {
		return
	}
	from := m.state
	m.stopTimers()
	if from == Master {
		m.act.SendAdvert(PriorityStop)
		m.act.RemoveVIPs()
	}
	m.started = false
	m.state = Initialize
	m.downDeferred = false
	m.preemptAt, m.holdUntil, m.boostUntil = time.Time{}, time.Time{}, time.Time{}
	if from != Initialize {
		m.act.StateChanged(from, Initialize, ReasonShutdown)
	}
}

// HandleAdvert delivers one advertisement that passed Parse, CheckTTL and
// WireConfig.Check. It is ignored in Initialize and Fault, and when it comes
// from our own PrimaryAddr (a looped-back copy of our own advertisement).
func (m *Machine) HandleAdvert(a Advert) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if a.Src.Unmap().WithZone("") == m.cfg.PrimaryAddr {
		return
	}
	switch m.state {
	case Backup:
		m.backupReceive(a)
	case Master:
		m.masterReceive(a)
	}
}

// backupReceive is the advertisement handling of RFC 5798 §6.4.2 / RFC 3768
// §6.4.2, with keepalived's preempt_delay and the ForceBackup hold.
func (m *Machine) backupReceive(a Advert) {
	now := m.clock.Now()
	prio := m.effectivePriority(now)
	if a.Priority == PriorityStop {
		// "If the Priority in the ADVERTISEMENT is zero, then: Set the
		// Master_Down_Timer to Skew_Time."
		m.armDown(SkewTime(m.cfg.Version, prio, m.masterAdverInterval), ReasonMasterResigned)
		return
	}
	delaying := m.cfg.PreemptDelay > 0 && (m.preemptAt.IsZero() || now.Before(m.preemptAt))
	if !(m.cfg.NoPreempt || a.Priority >= prio || delaying || m.holding(now)) {
		// "Else: Discard the ADVERTISEMENT." Master_Down_Timer keeps
		// running and, when it fires, we preempt.
		m.downReason = ReasonPreempt
		return
	}
	// "If Preempt_Mode is False, or if the Priority in the ADVERTISEMENT is
	// greater than or equal to the local Priority, then: Set
	// Master_Adver_Interval to Adver Interval contained in the
	// ADVERTISEMENT, Recompute the Skew_Time, Recompute the
	// Master_Down_Interval, Reset the Master_Down_Timer."
	if m.cfg.Version == Version3 && a.Interval > 0 {
		m.masterAdverInterval = a.Interval
	}
	m.masterAddr, m.masterPriority = a.Src.Unmap().WithZone(""), a.Priority
	if m.cfg.PreemptDelay > 0 {
		if a.Priority >= prio {
			m.preemptAt = time.Time{} // keepalived: "stop preempt delay"
		} else if m.preemptAt.IsZero() {
			m.preemptAt = now.Add(m.cfg.PreemptDelay) // "start preempt delay"
		}
	}
	m.downDeferred = false
	m.armDown(MasterDownInterval(m.cfg.Version, prio, m.masterAdverInterval), ReasonMasterDown)
}

// masterReceive is the advertisement handling of RFC 5798 §6.4.3 / RFC 3768
// §6.4.3.
func (m *Machine) masterReceive(a Advert) {
	now := m.clock.Now()
	prio := m.effectivePriority(now)
	if a.Priority == PriorityStop {
		// "If the Priority in the ADVERTISEMENT is zero, then: Send an
		// ADVERTISEMENT; Reset the Adver_Timer to Advertisement_Interval."
		m.act.SendAdvert(prio)
		m.armAdver()
		return
	}
	higher := a.Priority > prio
	if !higher && !(a.Priority == prio && addrGreater(a.Src, m.cfg.PrimaryAddr)) {
		// "Else ... Discard the ADVERTISEMENT."
		if m.cfg.AdvertOnLowerPriority {
			m.act.SendAdvert(prio)
		}
		return
	}
	// "Cancel Adver_Timer; Set Master_Adver_Interval to Adver Interval
	// contained in the ADVERTISEMENT; Recompute the Skew_Time; Recompute the
	// Master_Down_Interval; Set Master_Down_Timer to Master_Down_Interval;
	// Transition to the {Backup} state."
	reason := ReasonTieBreak
	if higher {
		reason = ReasonHigherPriority
	}
	if m.cfg.AdvertOnHigherPriority {
		m.act.SendAdvert(prio)
	}
	m.masterAdverInterval = m.own
	if m.cfg.Version == Version3 && a.Interval > 0 {
		m.masterAdverInterval = a.Interval
	}
	m.masterAddr, m.masterPriority = a.Src.Unmap().WithZone(""), a.Priority
	m.boostUntil = time.Time{} // a TakeOver drill that lost is over
	m.preemptAt = time.Time{}  // keepalived clears preempt_time on leaving Master
	m.enterBackup(reason)
}

// addrGreater compares primary addresses as unsigned integers in network byte
// order (RFC 5798 §6.4.3). Addresses of different families never compare
// greater.
func addrGreater(sender, local netip.Addr) bool {
	sender, local = sender.Unmap(), local.Unmap()
	if sender.Is4() != local.Is4() {
		return false
	}
	s, l := sender.As16(), local.As16()
	for i := range s {
		if s[i] != l[i] {
			return s[i] > l[i]
		}
	}
	return false
}

// enterMaster is the transition to Master of RFC 5798 §6.4.1 and §6.4.2:
// "Send an ADVERTISEMENT; broadcast a gratuitous ARP request / send an
// unsolicited ND Neighbor Advertisement for each address; Set the Adver_Timer
// to Advertisement_Interval". The addresses are installed between the
// advertisement and the announcement, as keepalived does, so the old Master
// hears of us before hosts are redirected.
func (m *Machine) enterMaster(reason Reason) {
	from := m.state
	m.stopSlot(&m.downTimer)
	m.downDeferred = false
	m.state = Master
	m.masterAdverInterval = m.own
	m.masterAddr, m.masterPriority = netip.Addr{}, 0
	m.act.SendAdvert(m.effectivePriority(m.clock.Now()))
	m.act.AddVIPs()
	m.act.Announce()
	m.armAdver()
	if m.cfg.ReannounceDelay > 0 {
		m.arm(&m.announceTimer, m.cfg.ReannounceDelay, func() {
			if m.state == Master {
				m.act.Announce()
			}
		})
	}
	m.act.StateChanged(from, Master, reason)
}

// enterBackup moves to Backup with Master_Down_Timer set from the current
// Master_Adver_Interval, removing the addresses if we were Master.
func (m *Machine) enterBackup(reason Reason) {
	from := m.state
	m.stopSlot(&m.adverTimer)
	m.stopSlot(&m.announceTimer)
	if from == Master {
		m.act.RemoveVIPs()
	}
	m.state = Backup
	m.downDeferred = false
	m.armDown(MasterDownInterval(m.cfg.Version, m.effectivePriority(m.clock.Now()), m.masterAdverInterval), ReasonMasterDown)
	m.act.StateChanged(from, Backup, reason)
}

// enterFault follows keepalived: a Master sends priority 0 and removes the
// addresses; no timer runs and no advertisement is heeded.
func (m *Machine) enterFault() {
	from := m.state
	m.stopTimers()
	if from == Master {
		m.act.SendAdvert(PriorityStop)
		m.act.RemoveVIPs()
	}
	m.state = Fault
	m.downDeferred = false
	m.boostUntil = time.Time{}
	m.act.StateChanged(from, Fault, ReasonFault)
}

func (m *Machine) armAdver() {
	m.arm(&m.adverTimer, m.own, m.adverExpired)
}

// adverExpired is "If the Adver_Timer fires, then: Send an ADVERTISEMENT;
// Reset the Adver_Timer to Advertisement_Interval" (RFC 5798 §6.4.3).
func (m *Machine) adverExpired() {
	if m.state != Master {
		return
	}
	m.act.SendAdvert(m.effectivePriority(m.clock.Now()))
	m.armAdver()
}

func (m *Machine) armDown(d time.Duration, reason Reason) {
	m.downReason = reason
	m.arm(&m.downTimer, d, m.downExpired)
}

// downExpired is "If the Master_Down_Timer fires, then: ... Transition to the
// {Master} state" (RFC 5798 §6.4.2), unless a ForceBackup hold is on, in
// which case the expiry is deferred to the end of the hold.
func (m *Machine) downExpired() {
	if m.state != Backup {
		return
	}
	now := m.clock.Now()
	if m.holding(now) {
		reason := m.downReason
		m.arm(&m.downTimer, m.holdUntil.Sub(now), m.downExpired)
		m.downReason, m.downDeferred = reason, true
		return
	}
	m.enterMaster(m.downReason)
}

func (m *Machine) holding(now time.Time) bool {
	return !m.holdUntil.IsZero() && now.Before(m.holdUntil)
}

// arm (re)starts slot to call fn, under the Machine's lock, after d.
func (m *Machine) arm(slot *timerSlot, d time.Duration, fn func()) {
	m.stopSlot(slot)
	m.gen++
	gen := m.gen
	slot.gen = gen
	slot.at = m.clock.Now().Add(d)
	slot.t = m.clock.AfterFunc(d, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if slot.gen != gen {
			return // stopped or re-armed since
		}
		slot.t, slot.gen, slot.at = nil, 0, time.Time{}
		fn()
	})
}

func (m *Machine) stopSlot(slot *timerSlot) {
	if slot.t != nil {
		slot.t.Stop()
	}
	slot.t, slot.gen, slot.at = nil, 0, time.Time{}
}

func (m *Machine) stopTimers() {
	m.stopSlot(&m.adverTimer)
	m.stopSlot(&m.downTimer)
	m.stopSlot(&m.announceTimer)
}

// ForceBackup is a drill: a Master resigns at once (priority-0 advertisement,
// addresses removed, Backup) and the router then stays Backup for d. During
// the hold it behaves as a Backup with Preempt_Mode False that never lets
// Master_Down_Timer make it Master: an expiry is deferred to the end of the
// hold. A Backup simply starts holding. A later ForceBackup replaces the
// hold; TakeOver and CancelDrill end it.
func (m *Machine) ForceBackup(d time.Duration) error {
	if d <= 0 {
		return ErrBadDuration
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case !m.started:
		return ErrNotRunning
	case m.state == Fault:
		return ErrInFault
	}
	now := m.clock.Now()
	m.boostUntil = time.Time{}
	m.holdUntil = now.Add(d)
	if m.state == Master {
		// The Shutdown actions of RFC 5798 §6.4.3, minus the shutdown.
		m.stopSlot(&m.adverTimer)
		m.act.SendAdvert(PriorityStop)
		m.masterAdverInterval = m.own
		m.preemptAt = time.Time{}
		m.enterBackup(ReasonForceBackup)
	} else if m.downDeferred {
		m.arm(&m.downTimer, d, m.downExpired)
	}
	return nil
}

// TakeOver is a drill: a Backup becomes Master at once, as if
// Master_Down_Timer had fired, and for d advertises priority 254 instead of
// its effective priority. VRRP has no message that asks a Master to step
// down, so this is the honest way to make it do so: the current Master
// yields to a higher priority (RFC 5798 §6.4.3) only if its own is below 254
// (or equal with a smaller primary address). An address owner (255) does not
// yield; its next advertisement sends us back to Backup and ends the drill.
// When d runs out we advertise our effective priority again, and a
// higher-priority Master with Preempt_Mode True takes the role back after its
// Master_Down_Interval.
func (m *Machine) TakeOver(d time.Duration) error {
	if d <= 0 {
		return ErrBadDuration
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case !m.started:
		return ErrNotRunning
	case m.state == Fault:
		return ErrInFault
	case m.state == Master:
		return ErrAlreadyMaster
	}
	m.holdUntil = time.Time{}
	m.boostUntil = m.clock.Now().Add(d)
	m.enterMaster(ReasonTakeover)
	return nil
}

// CancelDrill ends a ForceBackup hold or a TakeOver boost early. A Backup
// whose Master_Down_Timer expired during the hold becomes Master now.
func (m *Machine) CancelDrill() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.holdUntil, m.boostUntil = time.Time{}, time.Time{}
	if m.state == Backup && m.downDeferred {
		m.enterMaster(m.downReason)
	}
}

// SetTracker records the state of a tracker. A weight-0 tracker going down
// puts the instance in Fault; the last one coming back up leaves Fault
// through Initialize (RFC 5798 §6.4.1). Other trackers only change the
// effective priority, which takes effect with the next advertisement sent or
// received. Before Start it only records the state.
func (m *Machine) SetTracker(name string, up bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.trackers[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownTracker, name)
	}
	if t.up == up {
		return nil
	}
	t.up = up
	if !m.started {
		return nil
	}
	switch faulted := m.faulted(); {
	case faulted && m.state != Fault:
		m.enterFault()
	case !faulted && m.state == Fault:
		m.preemptAt = time.Time{} // keepalived clears preempt_time on leaving Fault
		m.initialize(ReasonRecovered)
	}
	return nil
}

// State returns the current state.
func (m *Machine) State() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state
}

// Status returns a snapshot.
func (m *Machine) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	prio := m.effectivePriority(now)
	s := Status{
		State:               m.state,
		BasePriority:        m.cfg.Priority,
		Priority:            prio,
		AdvertInterval:      m.own,
		MasterAdverInterval: m.masterAdverInterval,
		MasterDownInterval:  MasterDownInterval(m.cfg.Version, prio, m.masterAdverInterval),
		MasterAddr:          m.masterAddr,
		MasterPriority:      m.masterPriority,
		MasterDownAt:        m.downTimer.at,
		AdverAt:             m.adverTimer.at,
		Trackers:            make(map[string]bool, len(m.trackers)),
	}
	if m.cfg.PreemptDelay > 0 && now.Before(m.preemptAt) {
		s.PreemptAt = m.preemptAt
	}
	if m.holding(now) {
		s.HoldUntil = m.holdUntil
	}
	if m.boosted(now) {
		s.BoostUntil = m.boostUntil
	}
	for name, t := range m.trackers {
		s.Trackers[name] = t.up
	}
	return s
}
