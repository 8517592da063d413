package agent

import (
	"slices"
	"time"
)

// Status is the answer of GET /v1/status.
type Status struct {
	Node       string            `json:"node"`
	Version    string            `json:"version"`
	PID        int               `json:"pid"`
	StartedAt  time.Time         `json:"started_at"`
	Config     ConfigStatus      `json:"config"`
	Subsystems []SubsystemStatus `json:"subsystems"`
}

// ConfigStatus describes the config the agent runs.
type ConfigStatus struct {
	Path       string      `json:"path"`
	Generation uint64      `json:"generation"`
	LoadedAt   time.Time   `json:"loaded_at"`
	LastReload *LastReload `json:"last_reload,omitempty"`
}

// LastReload is the outcome of the latest reload attempt.
type LastReload struct {
	At    time.Time `json:"at"`
	OK    bool      `json:"ok"`
	Error string    `json:"error,omitempty"`
}

// VersionInfo identifies the build (GET /v1/version).
type VersionInfo struct {
	Version string `json:"version"`
	Commit  string `json:"commit"`
	Go      string `json:"go"`
}

// ReloadResponse is the answer of POST /v1/reload. OK with Generation on
// success; otherwise Error and, when the new config was invalid,
// Diagnostics.
type ReloadResponse struct {
	OK          bool         `json:"ok"`
	Generation  uint64       `json:"generation,omitempty"`
	Error       string       `json:"error,omitempty"`
	Diagnostics []Diagnostic `json:"diagnostics,omitempty"`

	err error // the failure, for errors.Is in the agent
}

// Err returns the reload failure (nil on success). It is not part of the
// JSON answer.
func (r ReloadResponse) Err() error { return r.err }

// Status reports the agent's state now.
func (a *Agent) Status() Status {
	a.mu.RLock()
	st := Status{
		Node:      a.cfg.Node.Name,
		Version:   a.opts.Version.Version,
		PID:       a.pid,
		StartedAt: a.startedAt,
		Config: ConfigStatus{
			Path:       a.opts.ConfigPath,
			Generation: a.generation,
			LoadedAt:   a.loadedAt,
		},
	}
	if a.lastReload != nil {
		lr := *a.lastReload
		st.Config.LastReload = &lr
	}
	a.mu.RUnlock()
	st.Subsystems = make([]SubsystemStatus, 0, len(a.subsystems))
	for _, s := range a.subsystems {
		st.Subsystems = append(st.Subsystems, s.Status())
	}
	// Shown in the operator's reading order (the VIP first), not in start
	// order (which puts VRRP last so it claims VIPs only when ready).
	slices.SortStableFunc(st.Subsystems, func(x, y SubsystemStatus) int {
		return displayRank(x.Name) - displayRank(y.Name)
	})
	return st
}

// displayRank orders subsystems in status: vrrp, ipvs, health, l7proxy,
// then anything else.
func displayRank(name string) int {
	if i := slices.Index([]string{"vrrp", "ipvs", "health", "l7proxy"}, name); i >= 0 {
		return i
	}
	return 4
}
