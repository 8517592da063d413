package ipvs

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"
)

// Counters count the Reconciler's kernel operations.
type Counters struct {
	// Ops counts operations by kind, failed ones included.
	Ops map[OpKind]uint64 `json:"ops"`
	// Total and Mutations sum Ops: all of them, and those that change the kernel.
	Total     uint64 `json:"total"`
	Mutations uint64 `json:"mutations"`
	// Errors counts failed operations and failed state-file writes.
	Errors             uint64        `json:"errors"`
	LastError          string        `json:"last_error,omitempty"`
	LastErrorAt        time.Time     `json:"last_error_at,omitzero"`
	Resyncs            uint64        `json:"resyncs"`
	LastResync         time.Time     `json:"last_resync,omitzero"`
	LastResyncDuration time.Duration `json:"last_resync_ns"`
}

// Status is a snapshot of the Reconciler, without kernel operations: the desired services with
// their computed and kernel state (the kernel side as the mirror knows it: from the last dump
// or operation), and the counters. Kernel statistics are as of the last read (Resync,
// ReadService).
type Status struct {
	Synced   bool            `json:"synced"`   // the kernel has been read
	Owned    int             `json:"owned"`    // services recorded as owned
	Unowned  int             `json:"unowned"`  // services in the kernel at the last dump that are not ours
	Timeouts *TimeoutStatus  `json:"timeouts"` // the kernel's, when known
	Services []ServiceStatus `json:"services"` // desired services, in the desired order
	// Orphans are owned services in the kernel that are not desired (a failed delete).
	Orphans  []ServiceKey `json:"orphans,omitempty"`
	Counters Counters     `json:"counters"`
}

// TimeoutStatus are the global timeouts in seconds.
type TimeoutStatus struct {
	TCP    int `json:"tcp"`
	TCPFin int `json:"tcpfin"`
	UDP    int `json:"udp"`
}

// ServiceStatus is one desired service.
type ServiceStatus struct {
	Key         ServiceKey `json:"key"`
	Scheduler   Scheduler  `json:"scheduler"`
	Flags       []string   `json:"flags,omitempty"`
	Persistence int        `json:"persistence_s,omitempty"`
	Prefix      int        `json:"persistence_prefix,omitempty"`
	OnFailure   string     `json:"on_failure"`
	// InKernel: the service exists in the kernel; InSync: the kernel holds exactly the target.
	InKernel bool         `json:"in_kernel"`
	InSync   bool         `json:"in_sync"`
	Quorum   *QuorumState `json:"quorum,omitempty"`
	Stats    Stats        `json:"stats"`
	// Destinations lists the desired destinations, then the sorry server.
	Destinations []DestinationStatus `json:"destinations"`
}

// QuorumState is a service's quorum.
type QuorumState struct {
	MinUp      int  `json:"min_up"`
	Hysteresis int  `json:"hysteresis"`
	Up         int  `json:"up"`
	Lost       bool `json:"lost"`
}

// DestinationStatus is one destination: configured against effective weight, and why.
type DestinationStatus struct {
	Addr       netip.AddrPort `json:"addr"`
	Forwarding string         `json:"forwarding"`
	// Weight is the configured weight, EffectiveWeight the one the Reconciler sets.
	Weight          int  `json:"weight"`
	EffectiveWeight int  `json:"effective_weight"`
	Healthy         bool `json:"healthy"`
	Drained         bool `json:"drained"`    // operator override
	SlowStart       bool `json:"slow_start"` // ramping up
	Removed         bool `json:"removed"`    // kept out of the kernel by the failure policy
	Sorry           bool `json:"sorry"`      // the sorry server
	// Kernel side: present, weight, connections, counters.
	InKernel      bool   `json:"in_kernel"`
	KernelWeight  int    `json:"kernel_weight"`
	ActiveConns   uint32 `json:"active_conns"`
	InactiveConns uint32 `json:"inactive_conns"`
	Stats         Stats  `json:"stats"`
}

// Counters returns the operation counters (cheap; no service listing).
func (r *Reconciler) Counters() Counters {
	r.mu.Lock()
	defer r.unlock()
	return r.counters()
}

func (r *Reconciler) counters() Counters {
	c := Counters{
		Ops:                maps.Clone(r.ops),
		Errors:             r.errCount,
		LastError:          r.lastErr,
		LastErrorAt:        r.lastErrAt,
		Resyncs:            r.resyncs,
		LastResync:         r.lastResync,
		LastResyncDuration: r.lastResyncD,
	}
	for k, v := range r.ops {
		c.Total += v
		if k.Mutating() {
			c.Mutations += v
		}
	}
	return c
}

// Status returns a snapshot.
func (r *Reconciler) Status() Status {
	r.mu.Lock()
	defer r.unlock()
	now := r.clock.Now()
	st := Status{
		Synced:   r.synced,
		Owned:    len(r.owned),
		Unowned:  r.unowned,
		Counters: r.counters(),
		Services: make([]ServiceStatus, 0, len(r.order)),
	}
	if r.kTimeoutsKnown {
		st.Timeouts = &TimeoutStatus{TCP: int(r.kTimeouts.TCP.Seconds()), TCPFin: int(r.kTimeouts.TCPFin.Seconds()), UDP: int(r.kTimeouts.UDP.Seconds())}
	}
	for _, key := range r.order {
		st.Services = append(st.Services, r.serviceStatus(r.desired[key], now))
	}
	for key := range r.mirror {
		if r.desired[key] == nil {
			st.Orphans = append(st.Orphans, key)
		}
	}
	slices.SortFunc(st.Orphans, compareKeys)
	return st
}

func (r *Reconciler) serviceStatus(s *svcState, now time.Time) ServiceStatus {
	ss := ServiceStatus{
		Key:         s.spec.Key,
		Scheduler:   s.spec.Scheduler,
		Flags:       s.spec.Flags.Names(),
		Persistence: int(s.spec.Persistence.Timeout.Seconds()),
		Prefix:      s.spec.Persistence.Prefix,
		OnFailure:   s.spec.OnFailure.String(),
	}
	if q := s.spec.Quorum; q.MinUp > 0 {
		ss.Quorum = &QuorumState{MinUp: q.MinUp, Hysteresis: q.Hysteresis, Up: r.upCount(s), Lost: s.quorumLost}
	}
	m := r.mirror[s.spec.Key]
	want, wantDests := r.target(s, now)
	if m != nil {
		ss.InKernel = true
		ss.Stats = m.svc.Stats
		ss.InSync = sameService(m.svc, want) && len(m.dests) == len(wantDests)
		for _, d := range wantDests {
			if kd, ok := m.dests[d.Addr]; !ok || !sameDestination(kd, d) {
				ss.InSync = false
			}
		}
	}
	fill := func(ds *DestinationStatus) {
		if m == nil {
			return
		}
		if kd, ok := m.dests[ds.Addr]; ok {
			ds.InKernel = true
			ds.KernelWeight = kd.Weight
			ds.ActiveConns, ds.InactiveConns, ds.Stats = kd.ActiveConns, kd.InactiveConns, kd.Stats
		}
	}
	for i := range s.spec.Destinations {
		d := &s.spec.Destinations[i]
		e := r.effective(s, d, now)
		ds := DestinationStatus{
			Addr: d.Addr, Forwarding: d.Forwarding.String(), Weight: d.Weight,
			EffectiveWeight: e.weight, Healthy: e.healthy, Drained: e.drained,
			SlowStart: e.ramping, Removed: !e.present,
		}
		fill(&ds)
		ss.Destinations = append(ss.Destinations, ds)
	}
	if sorry := s.spec.Quorum.Sorry; sorry != nil {
		ds := DestinationStatus{Addr: sorry.Addr, Forwarding: sorry.Forwarding.String(), Weight: sorry.Weight, Healthy: true, Sorry: true}
		if s.sorryActive() {
			ds.EffectiveWeight = sorry.Weight
		} else {
			ds.Removed = true
		}
		fill(&ds)
		ss.Destinations = append(ss.Destinations, ds)
	}
	return ss
}

// ServiceStatus returns the status of one desired service as the Reconciler knows it, without
// reading the kernel: the cost of one service, where Status costs every service.
func (r *Reconciler) ServiceStatus(key ServiceKey) (ServiceStatus, error) {
	r.mu.Lock()
	defer r.unlock()
	s := r.desired[key]
	if s == nil {
		return ServiceStatus{}, fmt.Errorf("%w: %s", ErrUnknownService, key)
	}
	return r.serviceStatus(s, r.clock.Now()), nil
}

// ReadService reads one service and its destinations from the kernel (two operations),
// updates the mirror with what it finds (so a drift found there is corrected by the next
// reconciliation) and returns its status with fresh kernel statistics.
func (r *Reconciler) ReadService(key ServiceKey) (ServiceStatus, error) {
	r.mu.Lock()
	defer r.unlock()
	if r.closed {
		return ServiceStatus{}, ErrClosed
	}
	s := r.desired[key]
	if s == nil {
		return ServiceStatus{}, fmt.Errorf("%w: %s", ErrUnknownService, key)
	}
	if err := r.refresh(key); err != nil {
		return ServiceStatus{}, err
	}
	return r.serviceStatus(s, r.clock.Now()), nil
}
