package agent

import (
	"context"
	"log/slog"
	"strings"
	"testing"
)

func TestLogLevelChangesOnReload(t *testing.T) {
	ta := startAgent(t, testConfig{level: "info"})
	derived := ta.Logger().With("subsystem", "vrrp") // made before the reload
	derived.Debug("probe-before")
	ta.rewrite(t, testConfig{level: "debug"})
	if res := ta.Reload(context.Background()); !res.OK {
		t.Fatal(res)
	}
	derived.Debug("probe-after")
	out := ta.stderr.String()
	if strings.Contains(out, "probe-before") {
		t.Error("debug record logged at level info")
	}
	if !strings.Contains(out, "level=DEBUG msg=probe-after subsystem=vrrp") {
		t.Errorf("debug record missing after switching to debug:\n%s", out)
	}

	ta.rewrite(t, testConfig{level: "error"})
	ta.Reload(context.Background())
	derived.Warn("probe-warn")
	if strings.Contains(ta.stderr.String(), "probe-warn") {
		t.Error("warn logged at level error")
	}
}

func TestLogLevelFlagWins(t *testing.T) {
	ta := startAgent(t, testConfig{level: "error"}, func(o *Options) { o.LogLevel = "debug" })
	ta.Logger().Debug("probe-1")
	ta.rewrite(t, testConfig{level: "warn"})
	ta.Reload(context.Background())
	ta.Logger().Debug("probe-2")
	out := ta.stderr.String()
	if !strings.Contains(out, "probe-1") || !strings.Contains(out, "probe-2") {
		t.Fatalf("-log-level debug not kept across reloads:\n%s", out)
	}
}

func TestLogTargetSwitchesOnReload(t *testing.T) {
	fj := newFakeJournal(t)
	ta := startAgent(t, testConfig{target: "stderr"}, func(o *Options) { o.JournalSocket = fj.path })
	log := ta.Logger().With("subsystem", "ipvs")
	ta.rewrite(t, testConfig{target: "journald"})
	if res := ta.Reload(context.Background()); !res.OK {
		t.Fatal(res)
	}
	log.Info("to the journal", "generation", 2)
	for {
		f := fj.next(t)
		if one(t, f, "MESSAGE") != "to the journal" {
			continue
		}
		if one(t, f, "SUBSYSTEM") != "ipvs" || one(t, f, "GENERATION") != "2" || one(t, f, "SYSLOG_IDENTIFIER") != "fulcrum" {
			t.Fatalf("fields %q", f)
		}
		break
	}
	if strings.Contains(ta.stderr.String(), "to the journal") {
		t.Error("record also went to stderr")
	}
}

func TestAutoTargetWithoutJournalIsStderr(t *testing.T) {
	ta := startAgent(t, testConfig{target: "auto"})
	if got := ta.logs.resolvedTarget(); got != LogTargetStderr {
		t.Fatalf("auto resolved to %s with no journal socket", got)
	}
}

func TestAutoTargetFollowsJournalStream(t *testing.T) {
	fj := newFakeJournal(t)
	ta := startAgent(t, testConfig{target: "auto"}, func(o *Options) { o.JournalSocket = fj.path })
	// Stderr is not a terminal (a buffer) and the socket exists.
	if got := ta.logs.resolvedTarget(); got != LogTargetJournald {
		t.Fatalf("auto resolved to %s", got)
	}
	ta.Logger().Info("hello")
	for one(t, fj.next(t), "MESSAGE") != "hello" {
	}
}

func TestParseLog(t *testing.T) {
	for in, want := range map[string]slog.Level{"": slog.LevelInfo, "debug": slog.LevelDebug, "INFO": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError} {
		if got, err := ParseLogLevel(in); err != nil || got != want {
			t.Errorf("ParseLogLevel(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseLogLevel("loud"); err == nil {
		t.Error("loud accepted")
	}
	if _, err := ParseLogTarget("syslog"); err == nil {
		t.Error("syslog accepted")
	}
}
