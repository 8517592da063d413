package main

import (
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/agent"
)

func TestPrintHealth(t *testing.T) {
	last := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	detail := map[string]any{"checks": []agent.HealthCheckStatus{
		{ID: "vs/web/app1", Kind: "http", VirtualServer: "web", RealServer: "app1", State: "up", Successes: 5, Checks: 5,
			LastOutcome: "healthy", LastReason: "ok", LastLatencyMS: 1.25, LastChecked: &last},
		{ID: "proxy/www/app/s1", Kind: "tcp", State: "down", Failures: 3, LastOutcome: "unhealthy", LastReason: "refused",
			LastDetail: "connection refused", LastLatencyMS: 0.5, LastChecked: &last},
		{ID: "vs/web/app2", Kind: "tcp", State: "down"},
	}}
	var b strings.Builder
	if !printHealth(&b, detail, last.Add(2*time.Second)) {
		t.Fatal("not printed")
	}
	want := "  check vs/web/app1 (http): up, 5 success(es) 0 failure(s) in a row, last healthy (ok), 2s ago, latency 1.2 ms\n" +
		"  check proxy/www/app/s1 (tcp): down, 0 success(es) 3 failure(s) in a row, last unhealthy (refused): connection refused, 2s ago, latency 0.5 ms\n" +
		"  check vs/web/app2 (tcp): down, 0 success(es) 0 failure(s) in a row, last not run yet, latency 0.0 ms\n"
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	if printHealth(&b, map[string]any{}, last) {
		t.Fatal("printed without checks")
	}
}
