package agent

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fulcrum-lb/fulcrum/ipvs"
)

// IPVSServiceStatus is one virtual_server in the ipvs status detail
// ("services").
type IPVSServiceStatus struct {
	Name string `json:"name"`
	// Service is the kernel's key: "tcp/203.0.113.10:80" or "fwmark/ipv4/5".
	Service     string   `json:"service"`
	Scheduler   string   `json:"scheduler"`
	Flags       []string `json:"flags,omitempty"`
	Persistence int      `json:"persistence_s,omitempty"`
	OnFailure   string   `json:"on_failure"`
	// InKernel: the service exists in the kernel; InSync: the kernel holds
	// exactly what the agent wants (as of the last read or operation).
	InKernel         bool                    `json:"in_kernel"`
	InSync           bool                    `json:"in_sync"`
	RemoveOnShutdown bool                    `json:"remove_on_shutdown,omitempty"`
	Quorum           *IPVSQuorumStatus       `json:"quorum,omitempty"`
	Conns            uint64                  `json:"conns"`
	BytesIn          uint64                  `json:"bytes_in"`
	BytesOut         uint64                  `json:"bytes_out"`
	Destinations     []IPVSDestinationStatus `json:"destinations"`
}

// IPVSQuorumStatus is a service's quorum.
type IPVSQuorumStatus struct {
	MinUp      int  `json:"min_up"`
	Hysteresis int  `json:"hysteresis"`
	Up         int  `json:"up"`
	Lost       bool `json:"lost"`
}

// IPVSDestinationStatus is one real server (or the sorry server): the
// configured weight against the effective one the agent sets, why they
// differ, and what the kernel holds. Kernel counters are as of the last
// read (resync).
type IPVSDestinationStatus struct {
	// Name is the real_server's name, or "sorry_server".
	Name            string `json:"name"`
	Address         string `json:"address"`
	Forwarding      string `json:"forwarding"`
	Weight          int    `json:"weight"`
	EffectiveWeight int    `json:"effective_weight"`
	// Healthy is what the health subsystem says (true without checks).
	Healthy   bool `json:"healthy"`
	Drained   bool `json:"drained"` // operator override (fulcrum drain)
	SlowStart bool `json:"slow_start,omitempty"`
	Removed   bool `json:"removed,omitempty"` // kept out of the kernel (failure policy; an idle sorry server)
	Sorry     bool `json:"sorry,omitempty"`
	// Kernel side.
	InKernel      bool   `json:"in_kernel"`
	KernelWeight  int    `json:"kernel_weight"`
	ActiveConns   uint32 `json:"active_conns"`
	InactiveConns uint32 `json:"inactive_conns"`
	Conns         uint64 `json:"conns"`
	BytesIn       uint64 `json:"bytes_in"`
	BytesOut      uint64 `json:"bytes_out"`
}

// IPVSCounters are the reconciler's kernel operation counters since the
// agent started.
type IPVSCounters struct {
	// Ops counts kernel operations by kind (new_service, update_destination,
	// get_services, ...), failed ones included.
	Ops                  map[string]uint64 `json:"ops"`
	Total                uint64            `json:"total"`
	Mutations            uint64            `json:"mutations"`
	Errors               uint64            `json:"errors"`
	LastError            string            `json:"last_error,omitempty"`
	LastErrorAt          *time.Time        `json:"last_error_at,omitempty"`
	Resyncs              uint64            `json:"resyncs"`
	LastResync           *time.Time        `json:"last_resync,omitempty"`
	LastResyncDuration   string            `json:"last_resync_duration"`
	LastResyncDurationMS float64           `json:"last_resync_duration_ms"`
}

func ipvsCounters(c ipvs.Counters) IPVSCounters {
	out := IPVSCounters{
		Ops:                  map[string]uint64{},
		Total:                c.Total,
		Mutations:            c.Mutations,
		Errors:               c.Errors,
		LastError:            c.LastError,
		LastErrorAt:          timePtr(c.LastErrorAt),
		Resyncs:              c.Resyncs,
		LastResync:           timePtr(c.LastResync),
		LastResyncDuration:   c.LastResyncDuration.String(),
		LastResyncDurationMS: float64(c.LastResyncDuration) / float64(time.Millisecond),
	}
	for k, v := range c.Ops {
		out.Ops[string(k)] = v
	}
	return out
}

// ipvsServiceStatus converts one reconciler service status, with names.
func ipvsServiceStatus(ss ipvs.ServiceStatus, v *ipvsVS) IPVSServiceStatus {
	out := IPVSServiceStatus{
		Service:     ss.Key.String(),
		Scheduler:   string(ss.Scheduler),
		Flags:       ss.Flags,
		Persistence: ss.Persistence,
		OnFailure:   ss.OnFailure,
		InKernel:    ss.InKernel,
		InSync:      ss.InSync,
		Conns:       ss.Stats.Conns,
		BytesIn:     ss.Stats.BytesIn,
		BytesOut:    ss.Stats.BytesOut,
	}
	if v != nil {
		out.Name, out.RemoveOnShutdown = v.name, v.removeOnShutdown
	}
	if q := ss.Quorum; q != nil {
		out.Quorum = &IPVSQuorumStatus{MinUp: q.MinUp, Hysteresis: q.Hysteresis, Up: q.Up, Lost: q.Lost}
	}
	for _, d := range ss.Destinations {
		ds := IPVSDestinationStatus{
			Address: d.Addr.String(), Forwarding: d.Forwarding, Weight: d.Weight, EffectiveWeight: d.EffectiveWeight,
			Healthy: d.Healthy, Drained: d.Drained, SlowStart: d.SlowStart, Removed: d.Removed, Sorry: d.Sorry,
			InKernel: d.InKernel, KernelWeight: d.KernelWeight, ActiveConns: d.ActiveConns, InactiveConns: d.InactiveConns,
			Conns: d.Stats.Conns, BytesIn: d.Stats.BytesIn, BytesOut: d.Stats.BytesOut,
		}
		if d.Sorry {
			ds.Name = "sorry_server"
		} else if v != nil {
			ds.Name = v.rsName(d.Addr)
		}
		out.Destinations = append(out.Destinations, ds)
	}
	return out
}

// ipvsDownState is the status state when IPVS is not open.
func ipvsDownState(err error) string {
	return (&ipvsDownError{err}).Error()
}

// Status reports the virtual servers: without IPVS, that they are not
// programmed and why; otherwise each service and destination with its
// configured and effective weight, drain, health and kernel state, and the
// kernel operation counters. It reads no kernel state: kernel figures are
// as of the last resync or operation.
func (s *ipvsSubsystem) Status() SubsystemStatus {
	rec, configured, openErr := s.current()
	st := SubsystemStatus{Name: "ipvs", Configured: configured, State: StateNoneConfigured}
	if rec == nil {
		if openErr != nil && configured > 0 {
			st.State = ipvsDownState(openErr)
			st.Detail = map[string]any{"available": false, "error": openErr.Error()}
		}
		return st
	}
	rs := rec.Status()
	names := s.names.Load()
	services := make([]IPVSServiceStatus, 0, len(rs.Services))
	dests, drained, outOfSync, quorumLost := 0, 0, 0, 0
	for _, ss := range rs.Services {
		svc := ipvsServiceStatus(ss, names.byKey[ss.Key])
		if !svc.InSync {
			outOfSync++
		}
		if svc.Quorum != nil && svc.Quorum.Lost {
			quorumLost++
		}
		for _, d := range svc.Destinations {
			if d.Sorry {
				continue
			}
			dests++
			if d.Drained {
				drained++
			}
		}
		services = append(services, svc)
	}
	st.Detail = map[string]any{
		"available": true,
		"services":  services,
		"counters":  ipvsCounters(rs.Counters),
		"owned":     rs.Owned,
		"unowned":   rs.Unowned,
	}
	if len(rs.Orphans) > 0 {
		orphans := make([]string, len(rs.Orphans))
		for i, k := range rs.Orphans {
			orphans[i] = k.String()
		}
		st.Detail["orphans"] = orphans
	}
	if configured == 0 && len(rs.Orphans) == 0 {
		st.State = StateNoneConfigured
		return st
	}
	var state strings.Builder
	switch {
	case !rs.Synced:
		state.WriteString("starting: the kernel has not been read yet")
		if rs.Counters.LastError != "" {
			state.WriteString(" (last error: " + rs.Counters.LastError + ")")
		}
		st.State = state.String()
		return st
	case outOfSync > 0 || len(rs.Orphans) > 0:
		fmt.Fprintf(&state, "degraded: %d of %s differ from the kernel", outOfSync+len(rs.Orphans), plural(len(services)+len(rs.Orphans), "service"))
		if rs.Counters.LastError != "" {
			state.WriteString(" (last error: " + rs.Counters.LastError + ")")
		}
		state.WriteString("; the next resync retries")
	default:
		fmt.Fprintf(&state, "running: %s, %s in the kernel", plural(len(services), "service"), plural(dests, "real server"))
	}
	if drained > 0 {
		fmt.Fprintf(&state, "; %d drained", drained)
	}
	if quorumLost > 0 {
		fmt.Fprintf(&state, "; quorum lost on %d", quorumLost)
	}
	st.State = state.String()
	return st
}

// plural is "1 service", "2 services".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// ipvsMaxDestinationSeries caps the per-destination metric series: beyond
// it they are left out (the totals remain), so a scrape stays cheap on a
// director with thousands of services.
const ipvsMaxDestinationSeries = 1024

// ipvsCollector exports the reconciler's state and counters at scrape time
// (no kernel reads: figures as of the last resync).
type ipvsCollector struct {
	s                                       *ipvsSubsystem
	available, services, outOfSync, dests   *prometheus.Desc
	ops, errs, resyncs, resyncDur, quorum   *prometheus.Desc
	weight, cfgWeight, active, inactive     *prometheus.Desc
	conns, bytes, destDrained, destInKernel *prometheus.Desc
}

func newIPVSCollector(s *ipvsSubsystem) *ipvsCollector {
	dest := []string{"virtual_server", "real_server"}
	return &ipvsCollector{
		s: s,
		available: prometheus.NewDesc("fulcrum_ipvs_available",
			"1 when kernel IPVS is open, 0 when virtual servers are configured but the kernel has no IPVS (or it could not be opened).", nil, nil),
		services: prometheus.NewDesc("fulcrum_ipvs_services",
			"Configured IPVS services (virtual_server blocks).", nil, nil),
		outOfSync: prometheus.NewDesc("fulcrum_ipvs_services_out_of_sync",
			"Configured IPVS services whose kernel state differs from the desired state.", nil, nil),
		dests: prometheus.NewDesc("fulcrum_ipvs_destinations",
			"Configured real servers, sorry servers excluded.", nil, nil),
		ops: prometheus.NewDesc("fulcrum_ipvs_ops_total",
			"IPVS kernel operations by kind, failed ones included.", []string{"kind"}, nil),
		errs: prometheus.NewDesc("fulcrum_ipvs_errors_total",
			"Failed IPVS kernel operations and state-file writes.", nil, nil),
		resyncs: prometheus.NewDesc("fulcrum_ipvs_resyncs_total",
			"Full IPVS resyncs (kernel dump and correction).", nil, nil),
		resyncDur: prometheus.NewDesc("fulcrum_ipvs_resync_duration_seconds",
			"Duration of the last full IPVS resync.", nil, nil),
		quorum: prometheus.NewDesc("fulcrum_ipvs_quorum_up",
			"1 while a virtual server with a quorum (or sorry server) has it, 0 while it is lost.", []string{"virtual_server"}, nil),
		weight: prometheus.NewDesc("fulcrum_ipvs_destination_weight",
			"Effective weight the agent sets for a real server (0 when drained).", dest, nil),
		cfgWeight: prometheus.NewDesc("fulcrum_ipvs_destination_configured_weight",
			"Configured weight of a real server.", dest, nil),
		destDrained: prometheus.NewDesc("fulcrum_ipvs_destination_drained",
			"1 while an operator drain (fulcrum drain) holds a real server at weight 0.", dest, nil),
		destInKernel: prometheus.NewDesc("fulcrum_ipvs_destination_in_kernel",
			"1 when the kernel holds the real server.", dest, nil),
		active: prometheus.NewDesc("fulcrum_ipvs_destination_active_connections",
			"Active connections of a real server, as of the last resync.", dest, nil),
		inactive: prometheus.NewDesc("fulcrum_ipvs_destination_inactive_connections",
			"Inactive connections of a real server, as of the last resync.", dest, nil),
		conns: prometheus.NewDesc("fulcrum_ipvs_destination_connections_total",
			"Connections scheduled to a real server (kernel counter, 32 bits), as of the last resync.", dest, nil),
		bytes: prometheus.NewDesc("fulcrum_ipvs_destination_bytes_total",
			"Bytes to and from a real server by direction (in: from clients, out: to clients), as of the last resync.", append(dest, "direction"), nil),
	}
}

func (c *ipvsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.available, c.services, c.outOfSync, c.dests, c.ops, c.errs, c.resyncs,
		c.resyncDur, c.quorum, c.weight, c.cfgWeight, c.destDrained, c.destInKernel, c.active, c.inactive, c.conns, c.bytes} {
		ch <- d
	}
}

func (c *ipvsCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	rec, configured, openErr := c.s.current()
	if rec == nil {
		if openErr != nil && configured > 0 {
			gauge(c.available, 0)
			gauge(c.services, float64(configured))
		}
		return
	}
	gauge(c.available, 1)
	st := rec.Status()
	names := c.s.names.Load()
	total := 0
	for _, ss := range st.Services {
		total += len(ss.Destinations)
	}
	perDest := total <= ipvsMaxDestinationSeries
	dests, outOfSync := 0, 0
	for _, ss := range st.Services {
		if !ss.InSync {
			outOfSync++
		}
		v := names.byKey[ss.Key]
		vsName := ss.Key.String()
		if v != nil {
			vsName = v.name
		}
		if ss.Quorum != nil {
			gauge(c.quorum, b(!ss.Quorum.Lost), vsName)
		}
		for _, d := range ss.Destinations {
			if !d.Sorry {
				dests++
			}
			if !perDest {
				continue
			}
			rs := d.Addr.String()
			if d.Sorry {
				rs = "sorry_server"
			} else if v != nil {
				if n := v.rsName(d.Addr); n != "" {
					rs = n
				}
			}
			gauge(c.weight, float64(d.EffectiveWeight), vsName, rs)
			gauge(c.cfgWeight, float64(d.Weight), vsName, rs)
			gauge(c.destDrained, b(d.Drained), vsName, rs)
			gauge(c.destInKernel, b(d.InKernel), vsName, rs)
			gauge(c.active, float64(d.ActiveConns), vsName, rs)
			gauge(c.inactive, float64(d.InactiveConns), vsName, rs)
			counter(c.conns, d.Stats.Conns, vsName, rs)
			counter(c.bytes, d.Stats.BytesIn, vsName, rs, "in")
			counter(c.bytes, d.Stats.BytesOut, vsName, rs, "out")
		}
	}
	gauge(c.services, float64(len(st.Services)))
	gauge(c.outOfSync, float64(outOfSync))
	gauge(c.dests, float64(dests))
	for _, k := range ipvs.OpKinds() {
		counter(c.ops, st.Counters.Ops[k], string(k))
	}
	counter(c.errs, st.Counters.Errors)
	counter(c.resyncs, st.Counters.Resyncs)
	gauge(c.resyncDur, st.Counters.LastResyncDuration.Seconds())
}

// Errors of the ipvs operations of the control API.
var (
	// ErrNoIPVS: no virtual_server is configured.
	ErrNoIPVS = errors.New("no virtual_server is configured")
	// ErrIPVSUnavailable: IPVS is not running (the kernel has none, or the
	// agent is stopping); the error says which.
	ErrIPVSUnavailable = errors.New("IPVS is not available")
	// ErrUnknownVirtualServer and ErrUnknownRealServer: the request names
	// something the configuration lacks.
	ErrUnknownVirtualServer = errors.New("unknown virtual_server")
	ErrUnknownRealServer    = errors.New("unknown real_server")
	// ErrBadIPVSRequest: the request is malformed.
	ErrBadIPVSRequest = errors.New("bad IPVS request")
)
