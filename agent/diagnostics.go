package agent

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/fulcrum-lb/fulcrum/config"
)

// SupportedFeatures is the set of top-level config features this build
// implements: vrrp_instance, sync_group, virtual_server and proxy. Inside
// the supported blocks, buildChecks and proxyBuildChecks refuse what this
// build still lacks (dynamic_weight of exec health checks).
func SupportedFeatures() map[config.Feature]bool {
	return map[config.Feature]bool{
		config.FeatureVRRP:          true,
		config.FeatureSyncGroup:     true,
		config.FeatureVirtualServer: true,
		config.FeatureProxy:         true,
	}
}

// Validate loads and validates the config file at path exactly as the agent
// would, without starting anything. Check the result with HasErrors; print
// it with WriteText or WriteJSON.
func Validate(path string) *config.Diagnostics {
	_, diags := loadConfig(path)
	return diags
}

// loadConfig is the one place the agent reads a config file. The config is
// nil whenever the diagnostics hold an error.
func loadConfig(path string) (*config.Config, *config.Diagnostics) {
	cfg, diags := config.Load(path, config.Options{Supported: SupportedFeatures()})
	if cfg != nil {
		if extra := append(buildChecks(cfg), proxyBuildChecks(cfg)...); len(extra) > 0 {
			diags.Append(extra...)
			if diags.HasErrors() {
				cfg = nil
			}
		}
	}
	return cfg, diags
}

// Diagnostic is one problem found in a config file, in the JSON shape of
// config.JSONDiagnostic (the control API's reload answer carries these).
type Diagnostic struct {
	Severity  string `json:"severity"`
	Summary   string `json:"summary"`
	Detail    string `json:"detail,omitempty"`
	File      string `json:"file,omitempty"`
	Line      int    `json:"line,omitempty"`
	Column    int    `json:"column,omitempty"`
	EndLine   int    `json:"end_line,omitempty"`
	EndColumn int    `json:"end_column,omitempty"`
	// Snippet is the source line(s) of the subject, secrets masked.
	Snippet string `json:"snippet,omitempty"`
}

// Position is "file:line:col: ", or "" for a diagnostic without a position.
func (d Diagnostic) Position() string {
	if d.File == "" {
		return ""
	}
	return fmt.Sprintf("%s:%d:%d: ", d.File, d.Line, d.Column)
}

// String formats d as "file:line:col: severity: summary; detail".
func (d Diagnostic) String() string {
	var b strings.Builder
	b.WriteString(d.Position())
	if d.Severity != "" {
		b.WriteString(d.Severity)
		b.WriteString(": ")
	}
	b.WriteString(d.Summary)
	if d.Detail != "" {
		b.WriteString("; ")
		b.WriteString(d.Detail)
	}
	return b.String()
}

// DiagnosticList converts config diagnostics (errors and warnings, in file
// order) into Diagnostic values.
func DiagnosticList(diags *config.Diagnostics) []Diagnostic {
	var out []Diagnostic
	for _, d := range diags.JSON() {
		out = append(out, Diagnostic{
			Severity:  d.Severity,
			Summary:   d.Summary,
			Detail:    d.Detail,
			File:      d.File,
			Line:      d.Line,
			Column:    d.Column,
			EndLine:   d.EndLine,
			EndColumn: d.EndColumn,
			Snippet:   d.Snippet,
		})
	}
	return out
}

// diagnosticsText renders diags with config's text writer (file:line:col,
// the source line, a caret), without colour or wrapping.
func diagnosticsText(diags *config.Diagnostics) string {
	var buf bytes.Buffer
	if err := diags.WriteText(&buf, 0, false); err != nil {
		return diags.Summary()
	}
	return buf.String()
}

// ConfigError is returned when a config file is invalid. Diagnostics holds
// every problem.
type ConfigError struct {
	Path        string
	Summary     string
	Diagnostics []Diagnostic
}

func (e *ConfigError) Error() string {
	n := 0
	for _, d := range e.Diagnostics {
		if d.Severity != "warning" {
			n++
		}
	}
	return fmt.Sprintf("invalid configuration %s: %d problem(s), first: %s", e.Path, n, e.Summary)
}

func newConfigError(path string, diags *config.Diagnostics) *ConfigError {
	return &ConfigError{Path: path, Summary: diags.Summary(), Diagnostics: DiagnosticList(diags)}
}

// logDiagnostics logs every diagnostic as its own record (with file, line,
// column), then, when there are errors, one record with the summary and the
// full text rendering. On stderr the text block is written as is so it stays
// readable; on journald it is the TEXT field of that record.
func (a *Agent) logDiagnostics(ctx context.Context, msg string, diags *config.Diagnostics) {
	list := DiagnosticList(diags)
	if len(list) == 0 {
		return
	}
	for _, d := range list {
		level := slog.LevelError
		if d.Severity == "warning" {
			level = slog.LevelWarn
		}
		a.log.LogAttrs(ctx, level, d.String(),
			slog.String("severity", d.Severity),
			slog.String("summary", d.Summary),
			slog.String("detail", d.Detail),
			slog.String("file", d.File),
			slog.Int("line", d.Line),
			slog.Int("column", d.Column),
		)
	}
	if !diags.HasErrors() {
		return
	}
	text := diagnosticsText(diags)
	attrs := []slog.Attr{
		slog.String("file", a.opts.ConfigPath),
		slog.String("error", diags.Summary()),
		slog.Int("problems", len(list)),
	}
	if a.logs.resolvedTarget() == LogTargetJournald {
		a.log.LogAttrs(ctx, slog.LevelError, msg, append(attrs, slog.String("text", text))...)
		return
	}
	a.log.LogAttrs(ctx, slog.LevelError, msg, attrs...)
	if a.log.Enabled(ctx, slog.LevelError) && text != "" {
		_, _ = a.logs.stderr.Write([]byte(text))
	}
}
