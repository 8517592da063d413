package agent

import (
	"github.com/hashicorp/hcl/v2"

	"github.com/fulcrum-lb/fulcrum/config"
)

// buildChecks are the agent's own checks of a decoded config: what the
// config schema accepts but this build does not implement yet. Each is an
// error at the block's position, in config's diagnostic form, so `fulcrum
// validate`, the agent's start and a reload all report it with a source
// snippet; nothing is ignored silently.
//
//   - health_check in a virtual_server: the health subsystem is not wired
//     yet, and running the service with every real server counted healthy
//     regardless of its checks would pretend.
//   - track_service: VRRP cannot follow a virtual server's health yet.
func buildChecks(cfg *config.Config) hcl.Diagnostics {
	var out hcl.Diagnostics
	for _, vs := range cfg.VirtualServers {
		for _, hc := range vs.HealthChecks {
			out = append(out, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "health_check is not supported yet",
				Detail: "This build programs virtual_server \"" + vs.Name + "\" into IPVS but does not run health checks yet, " +
					"so its real servers would count as healthy whatever this " + string(hc.Type) + " check says. " +
					"Remove the health_check block (every real server is then used), or use a build with health checks.",
				Subject: hc.Source.Ptr(),
			})
		}
	}
	for _, in := range cfg.VRRPInstances {
		for _, t := range in.TrackServices {
			out = append(out, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "track_service is not supported yet",
				Detail: "This build cannot feed the health of " + string(t.Kind) + " \"" + t.Name + "\" to vrrp_instance \"" + in.Name + "\" yet. " +
					"Remove the track_service block, or track the service another way (track_process, track_file).",
				Subject: t.Source.Ptr(),
			})
		}
	}
	return out
}
