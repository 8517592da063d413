package agent

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fulcrum-lb/fulcrum/config"
)

// SubsystemStatus is one subsystem's entry in Status.
type SubsystemStatus struct {
	Name       string `json:"name"`
	Configured int    `json:"configured"`
	State      string `json:"state"`
	// Detail holds subsystem-specific facts (instance states, for example),
	// printed one per line by `fulcrum status`. Absent when empty.
	Detail map[string]any `json:"detail,omitempty"`
}

// StateNoneConfigured is the state of a subsystem with nothing configured.
const StateNoneConfigured = "none configured"

// subsystem is one part of the node the agent runs (vrrp, ipvs, health,
// l7proxy). The agent calls Apply with the initial config before Run, and
// again on every successful reload; Apply must take its own part of cfg and
// either apply it entirely or return an error leaving the old state. Run
// blocks until ctx is cancelled (return nil) or the subsystem fails (return
// the error; the agent then shuts down). Status is called concurrently with
// everything else.
type subsystem interface {
	Name() string
	Apply(ctx context.Context, cfg *config.Config) error
	Status() SubsystemStatus
	Run(ctx context.Context) error
}

// subsystemDeps is what the agent hands a subsystem when building it.
type subsystemDeps struct {
	Log     *slog.Logger          // already carries subsystem=<name>
	Events  Publisher             // the agent's event bus
	Metrics prometheus.Registerer // the agent's registry
	// StateDir is the folder for state kept across restarts (Options.StateDir);
	// empty in unit tests that build a subsystem alone: nothing is kept.
	StateDir string
}

// subsystemFactory builds one subsystem.
type subsystemFactory struct {
	name string
	new  func(subsystemDeps) subsystem
}

// defaultSubsystems lists the subsystems in start order; they stop in
// reverse. The order is the load balancer's: health checks start first so
// results exist before anything uses them; IPVS and the proxy are serving
// before VRRP may claim the virtual IPs; and at shutdown VRRP resigns first
// (priority 0, VIPs handed to the peer) before the proxy drains and the
// rest stop, so no client is refused while this node still holds a VIP.
// On a reload, health applies first too, so a real server a reload adds
// reaches IPVS and the proxy with its health already known. vrrp reads the
// health subsystem for track_service; ipvs and l7proxy consume its
// results (each is told the current state when registered and on every
// health Apply, and keeps it for its own later Applies).
func defaultSubsystems() []subsystemFactory {
	hs := newHealthSubsystem(healthOptions{})
	return []subsystemFactory{
		{"health", func(d subsystemDeps) subsystem {
			hs.bind(d)
			return hs
		}},
		{"ipvs", func(d subsystemDeps) subsystem {
			s := newIPVSSubsystem(d, ipvsOptions{})
			hs.addConsumer(s)
			return s
		}},
		{"l7proxy", func(d subsystemDeps) subsystem {
			p := newProxySubsystem(d)
			p.passive = hs
			hs.addConsumer(p)
			return p
		}},
		{"vrrp", func(d subsystemDeps) subsystem {
			v := newVRRPSubsystem(d, newNetioFactory(d.Log))
			v.services = hs
			return v
		}},
	}
}
