package agent

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/fulcrum-lb/fulcrum/lab/journal"
)

// TestJournaldReal sends records to a real systemd-journald (lab/journal)
// and reads them back: field names, priority, identifier, a multi-line
// value and a large record.
func TestJournaldReal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts systemd-journald")
	}
	j := journal.Start(t)
	var stderr syncBuffer
	var level slog.LevelVar
	level.Set(slog.LevelDebug)
	h := newTestJournalHandler(t, j.SocketPath(), &level, &stderr)
	log := slog.New(h).With(slog.String("node", "lb1"))
	log.WithGroup("vrrp").Warn("state changed", "vrrp_instance", "VI_1", "detail", "line one\nline two", "generation", 3)
	big := strings.Repeat("y", 2<<20) // journald stores entries up to a fraction of its 8 MiB runtime journal
	log.Info("big record", "payload", big)

	e := j.WaitEntry(t, "SYSLOG_IDENTIFIER=fulcrum", "MESSAGE=state changed")
	for k, want := range map[string]string{
		"PRIORITY":           "4",
		"NODE":               "lb1",
		"VRRP_VRRP_INSTANCE": "VI_1",
		"VRRP_DETAIL":        "line one\nline two",
		"VRRP_GENERATION":    "3",
	} {
		if e[k] != want {
			t.Errorf("%s = %q, want %q", k, e[k], want)
		}
	}
	e = j.WaitEntry(t, "SYSLOG_IDENTIFIER=fulcrum", "MESSAGE=big record")
	if len(e["PAYLOAD"]) != len(big) {
		t.Errorf("PAYLOAD has %d bytes, want %d", len(e["PAYLOAD"]), len(big))
	}
	if s := stderr.String(); s != "" {
		t.Errorf("fell back to stderr: %s", s)
	}
}
