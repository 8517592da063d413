package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/fulcrum-lb/fulcrum/agent"
)

// printHealth prints the health subsystem's detail, if it has the checks
// list; it reports whether it did. One line per check: its state, the
// consecutive successes and failures, the last result and reason, and
// the last latency.
func printHealth(w io.Writer, detail map[string]any, now time.Time) bool {
	raw, ok := detail["checks"]
	if !ok {
		return false
	}
	var checks []agent.HealthCheckStatus
	if b, err := json.Marshal(raw); err != nil || json.Unmarshal(b, &checks) != nil {
		return false
	}
	for _, c := range checks {
		last := "not run yet"
		if c.LastOutcome != "" {
			last = c.LastOutcome
			if c.LastReason != "" && c.LastReason != "none" {
				last += " (" + c.LastReason + ")"
			}
			if c.LastDetail != "" {
				last += ": " + c.LastDetail
			}
			if c.LastChecked != nil {
				last += fmt.Sprintf(", %s ago", now.Sub(*c.LastChecked).Round(time.Millisecond))
			}
		}
		fmt.Fprintf(w, "  check %s (%s): %s, %d success(es) %d failure(s) in a row, last %s, latency %.1f ms\n",
			c.ID, c.Kind, c.State, c.Successes, c.Failures, last, c.LastLatencyMS)
	}
	return true
}
