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
//   - dynamic_weight in an exec health_check of a virtual_server: the
//     check runs, but nothing moves IPVS weights by its output yet.
func buildChecks(cfg *config.Config) hcl.Diagnostics {
	var out hcl.Diagnostics
	for _, vs := range cfg.VirtualServers {
		for _, hc := range vs.HealthChecks {
			if hc.Exec != nil && hc.Exec.DynamicWeight {
				out = append(out, dynamicWeightRefusal("virtual_server \""+vs.Name+"\"", hc))
			}
		}
	}
	return out
}

// dynamicWeightRefusal is the diagnostic of an exec check with
// dynamic_weight.
func dynamicWeightRefusal(where string, hc config.HealthCheck) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "dynamic_weight is not supported yet",
		Detail: "This build runs the exec health_check of " + where + " as an up/down check only: " +
			"the weight its program prints would not move anything. Remove dynamic_weight, or use a build that supports it.",
		Subject: hc.Source.Ptr(),
	}
}
