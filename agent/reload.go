package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/fulcrum-lb/fulcrum/config"
)

// Reload re-reads the config file and applies it. Reloads are serialised.
//
// The new file is parsed and validated first; an invalid file is logged
// (every diagnostic with file/line/column, and the full text), published as
// config_reload_failed, recorded in last_reload, and the running config stays
// untouched. A valid file is applied as one transaction: new listeners
// (control socket or metrics, when their address changed) are bound first,
// then each subsystem gets the new config; if any step fails, the subsystems
// already changed get the old config back and the new listeners are closed.
// On success the generation increases and config_reloaded is published.
// systemd hears RELOADING=1 (with MONOTONIC_USEC) before and READY=1 after.
// The agent never exits because of a reload.
func (a *Agent) Reload(ctx context.Context) ReloadResponse {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	if !a.running || a.stopping {
		return ReloadResponse{Error: ErrStopping.Error(), err: ErrStopping}
	}
	runCtx := a.runCtx
	path := a.opts.ConfigPath

	a.notify(reloadingState())
	a.notifyStatus("reloading %s", path)
	defer func() {
		cfg, gen := a.current()
		a.notify(notifyReady)
		a.notifyStatus("running: node %s, config generation %d", cfg.Node.Name, gen)
	}()

	at := a.clock.Now()
	a.log.InfoContext(ctx, "reloading configuration", slog.String("file", path))
	cfg, diags := loadConfig(path)
	if diags.HasErrors() {
		a.logDiagnostics(ctx, "configuration reload rejected", diags)
		return a.reloadFailed(ctx, at, newConfigError(path, diags))
	}
	a.logDiagnostics(ctx, "configuration has warnings", diags)

	old, _ := a.current()
	level, target, err := a.logSettings(cfg)
	if err != nil {
		return a.reloadFailed(ctx, at, fmt.Errorf("log settings: %w", err))
	}

	// Bind what moves before touching anything else.
	var newCS *controlServer
	if p := socketPath(cfg); a.control == nil || p != a.control.path {
		ln, err := listenControl(p)
		if err != nil {
			return a.reloadFailed(ctx, at, err)
		}
		newCS = a.newControlServer(p, ln)
	}
	var newMS *metricsServer
	stopMetrics := cfg.Metrics == nil && a.metricsSrv != nil
	if cfg.Metrics != nil && (a.metricsSrv == nil || a.metricsSrv.listen != cfg.Metrics.Listen.String()) {
		newMS, err = listenMetrics(cfg.Metrics.Listen.String(), cfg.Metrics.Path, a.metrics.registry, a.log)
		if err != nil {
			if newCS != nil {
				newCS.close(false)
			}
			return a.reloadFailed(ctx, at, err)
		}
	}

	for i, s := range a.subsystems {
		if err := s.Apply(runCtx, cfg); err != nil {
			a.rollback(runCtx, old, i)
			if newCS != nil {
				newCS.close(false)
			}
			if newMS != nil {
				newMS.close(false)
			}
			return a.reloadFailed(ctx, at, fmt.Errorf("subsystem %s: %w", s.Name(), err))
		}
	}

	// Commit.
	if err := a.logs.configure(target, level); err != nil {
		a.log.WarnContext(ctx, "keeping the previous log target", slog.Any("error", err))
	}
	a.mu.Lock()
	a.cfg = cfg
	a.generation++
	gen := a.generation
	a.loadedAt = at
	a.lastReload = &LastReload{At: at, OK: true}
	a.mu.Unlock()

	if newCS != nil {
		newCS.serve(a.log)
		oldCS := a.control
		a.control = newCS
		a.log.InfoContext(ctx, "control socket moved", slog.String("socket", newCS.path))
		if oldCS != nil {
			// Asynchronously: this reload may be answering on the old socket.
			a.bg.Go(func() { oldCS.close(true) })
		}
	}
	if newMS == nil && !stopMetrics && a.metricsSrv != nil {
		a.metricsSrv.setPath(cfg.Metrics.Path) // same listener, maybe another path
	}
	if newMS != nil || stopMetrics {
		if a.metricsSrv != nil {
			a.closeMetricsAsync(a.metricsSrv)
		}
		a.metricsSrv = newMS
		if newMS != nil {
			newMS.serve(a.log)
			a.log.InfoContext(ctx, "metrics listening", slog.String("listen", newMS.addr()), slog.String("path", newMS.currentPath()))
		} else {
			a.log.InfoContext(ctx, "metrics disabled")
		}
	}

	a.metrics.generation.Set(float64(gen))
	a.metrics.reloads.WithLabelValues("success").Inc()
	a.metrics.lastReloadSuccess.Set(float64(at.UnixNano()) / 1e9)
	a.bus.Publish("agent", EventConfigReloaded, map[string]any{
		"generation": gen, "node": cfg.Node.Name, "file": path,
	})
	a.log.InfoContext(ctx, "configuration reloaded",
		slog.String("node", cfg.Node.Name),
		slog.Uint64("generation", gen),
		slog.String("file", path))
	return ReloadResponse{OK: true, Generation: gen}
}

// closeMetricsAsync stops a replaced metrics server without holding up the
// reload; the agent waits for it at shutdown.
func (a *Agent) closeMetricsAsync(ms *metricsServer) {
	a.bg.Go(func() { ms.close(true) })
}

// rollback gives subsystems[0..failed] the old config back.
func (a *Agent) rollback(ctx context.Context, old *config.Config, failed int) {
	for j := failed; j >= 0; j-- {
		s := a.subsystems[j]
		if err := s.Apply(ctx, old); err != nil {
			a.log.ErrorContext(ctx, "rollback failed", slog.String("subsystem", s.Name()), slog.Any("error", err))
		}
	}
}

// reloadFailed records and reports a rejected reload; the running config
// and generation stay as they were.
func (a *Agent) reloadFailed(ctx context.Context, at time.Time, err error) ReloadResponse {
	res := ReloadResponse{OK: false, Error: err.Error(), err: err}
	var ce *ConfigError
	if errors.As(err, &ce) {
		res.Error = ce.Summary
		res.Diagnostics = ce.Diagnostics
	}
	a.mu.Lock()
	a.lastReload = &LastReload{At: at, OK: false, Error: res.Error}
	gen := a.generation
	a.mu.Unlock()
	a.metrics.reloads.WithLabelValues("failure").Inc()
	a.bus.Publish("agent", EventConfigReloadFailed, map[string]any{
		"error": res.Error, "generation": gen, "file": a.opts.ConfigPath, "problems": len(res.Diagnostics),
	})
	a.log.ErrorContext(ctx, "configuration reload failed, keeping the running configuration",
		slog.String("file", a.opts.ConfigPath),
		slog.Uint64("generation", gen),
		slog.String("error", res.Error))
	return res
}
