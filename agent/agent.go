// Package agent runs one Fulcrum node: it loads and validates the config,
// starts the subsystems under one owner, handles signals and reloads, serves
// the control API on a unix socket, publishes the event stream, logs to
// journald or stderr, talks to systemd (sd_notify, watchdog) and serves
// Prometheus metrics. See docs/architecture.md.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fulcrum-lb/fulcrum/config"
)

// Options configure an Agent. Only ConfigPath is required.
type Options struct {
	// ConfigPath is the node's HCL config file.
	ConfigPath string
	// LogLevel (debug|info|warn|error) overrides the config's log.level,
	// also across reloads. Empty: use the config.
	LogLevel string
	// LogTarget (auto|journald|stderr) overrides the config's log.target,
	// also across reloads. Empty: use the config.
	LogTarget string
	// Stderr receives text logs (default os.Stderr).
	Stderr io.Writer
	// Notifier talks to the service manager (default SystemdNotifier).
	Notifier Notifier
	// Clock stamps events and status times (default the system clock).
	Clock Clock
	// Version identifies the build in status, /v1/version and metrics.
	Version VersionInfo
	// Watchdog is the service watchdog timeout; the agent pings every half
	// of it. Zero: read WATCHDOG_USEC/WATCHDOG_PID from the environment.
	Watchdog time.Duration
	// JournalSocket is journald's native socket (default
	// DefaultJournalSocket). Tests point it at a socket of their own.
	JournalSocket string
	// StateDir holds what the agent keeps across restarts: the IPVS
	// ownership record with operator drains (ipvs-owned.json) and the proxy
	// servers the operator disabled (proxy-disabled.json). Default: the
	// first folder of $STATE_DIRECTORY (systemd's StateDirectory=), else
	// DefaultStateDir.
	StateDir string

	// Test seams, settable only inside the package.
	signals    <-chan os.Signal        // replaces signal.Notify when set
	subsystems []subsystemFactory      // replaces defaultSubsystems when set
	allowPeer  func(uid uint32) bool   // replaces allowedPeer when set
	getenv     func(key string) string // replaces os.Getenv when set
	onReady    func()                  // called after READY=1 is sent
}

// DefaultStateDir is where the agent keeps state across restarts when
// neither Options.StateDir nor $STATE_DIRECTORY names a folder.
const DefaultStateDir = "/var/lib/fulcrum"

// defaultStateDir is the first folder of $STATE_DIRECTORY (systemd sets it,
// colon-separated, for StateDirectory=), else DefaultStateDir.
func defaultStateDir(getenv func(string) string) string {
	if first, _, _ := strings.Cut(getenv("STATE_DIRECTORY"), ":"); first != "" {
		return first
	}
	return DefaultStateDir
}

// ErrStopping is the reload error once the agent is shutting down (or not
// running yet).
var ErrStopping = errors.New("agent is not running or is stopping")

// Agent is one running node. Create it with New, then call Run once.
type Agent struct {
	opts      Options
	clock     Clock
	notifier  Notifier
	logs      *logSink
	log       *slog.Logger
	bus       *Bus
	metrics   *agentMetrics
	pid       int
	startedAt time.Time

	// subsystems in start order; fixed after New.
	subsystems []subsystem

	mu         sync.RWMutex // guards the fields below
	cfg        *config.Config
	generation uint64
	loadedAt   time.Time
	lastReload *LastReload

	reloadMu   sync.Mutex // serialises reloads, start and stop; guards the fields below
	running    bool
	stopping   bool
	runCtx     context.Context
	control    *controlServer
	metricsSrv *metricsServer

	ran atomic.Bool
	bg  sync.WaitGroup // closers of replaced servers
}

// New loads and validates the config at opts.ConfigPath and sets up logging,
// metrics, the event bus and the subsystems. Nothing is started or bound yet.
// An invalid config is logged (every diagnostic) and returned as a
// *ConfigError.
func New(opts Options) (*Agent, error) {
	if opts.ConfigPath == "" {
		return nil, errors.New("agent: no config path")
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.Notifier == nil {
		opts.Notifier = SystemdNotifier{}
	}
	if opts.Clock == nil {
		opts.Clock = systemClock{}
	}
	if opts.JournalSocket == "" {
		opts.JournalSocket = DefaultJournalSocket
	}
	if opts.getenv == nil {
		opts.getenv = os.Getenv
	}
	if opts.StateDir == "" {
		opts.StateDir = defaultStateDir(opts.getenv)
	}
	if opts.Version.Go == "" {
		opts.Version.Go = runtime.Version()
	}
	if opts.subsystems == nil {
		opts.subsystems = defaultSubsystems()
	}
	startLevel := slog.LevelInfo
	if opts.LogLevel != "" {
		l, err := ParseLogLevel(opts.LogLevel)
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		startLevel = l
	}
	startTarget := LogTargetAuto
	if opts.LogTarget != "" {
		t, err := ParseLogTarget(opts.LogTarget)
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		startTarget = t
	}

	a := &Agent{
		opts:      opts,
		clock:     opts.Clock,
		notifier:  opts.Notifier,
		pid:       os.Getpid(),
		startedAt: opts.Clock.Now(),
	}
	// Until the config is read, log where the flags (or auto) say, so load
	// problems are reported where the operator looks.
	a.logs = newLogSink(opts.Stderr, opts.JournalSocket, opts.getenv)
	if err := a.logs.configure(startTarget, startLevel); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.log = slog.New(a.logs.handler())
	a.metrics = newAgentMetrics(opts.Version)
	a.bus = NewBus(a.clock, a.metrics.eventsPublished.Inc)

	ctx := context.Background()
	cfg, diags := loadConfig(opts.ConfigPath)
	if diags.HasErrors() {
		a.logDiagnostics(ctx, "configuration invalid", diags)
		a.logs.close()
		return nil, newConfigError(opts.ConfigPath, diags)
	}
	a.logDiagnostics(ctx, "configuration has warnings", diags)
	level, target, err := a.logSettings(cfg)
	if err != nil {
		a.logs.close()
		return nil, fmt.Errorf("agent: %w", err)
	}
	if err := a.logs.configure(target, level); err != nil {
		a.logs.close()
		return nil, fmt.Errorf("agent: %w", err)
	}

	now := a.clock.Now()
	a.cfg, a.generation, a.loadedAt = cfg, 1, now
	a.metrics.generation.Set(1)
	a.metrics.lastReloadSuccess.Set(float64(now.UnixNano()) / 1e9)

	for _, f := range opts.subsystems {
		a.subsystems = append(a.subsystems, f.new(subsystemDeps{
			Log:      a.log.With(slog.String("subsystem", f.name)),
			Events:   a.bus,
			Metrics:  a.metrics.registry,
			StateDir: opts.StateDir,
		}))
	}
	return a, nil
}

// Registry is the agent's Prometheus registry (served when metrics are
// configured). Subsystems register their series here.
func (a *Agent) Registry() *prometheus.Registry { return a.metrics.registry }

// Events is the agent's event bus.
func (a *Agent) Events() *Bus { return a.bus }

// Logger is the agent's logger; it follows log level and target changes.
func (a *Agent) Logger() *slog.Logger { return a.log }

// current returns the running config and its generation.
func (a *Agent) current() (*config.Config, uint64) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.cfg, a.generation
}

// socketPath is the control socket the config asks for.
func socketPath(cfg *config.Config) string {
	if cfg.Control.Socket == "" {
		return DefaultSocket
	}
	return cfg.Control.Socket
}

// logSettings returns the level and target for cfg, flags taking precedence.
func (a *Agent) logSettings(cfg *config.Config) (slog.Level, string, error) {
	levelS, targetS := string(cfg.Log.Level), string(cfg.Log.Target)
	if a.opts.LogLevel != "" {
		levelS = a.opts.LogLevel
	}
	if a.opts.LogTarget != "" {
		targetS = a.opts.LogTarget
	}
	level, err := ParseLogLevel(levelS)
	if err != nil {
		return 0, "", err
	}
	target, err := ParseLogTarget(targetS)
	if err != nil {
		return 0, "", err
	}
	return level, target, nil
}

// runningSubsystem is a started subsystem and how to stop it.
type runningSubsystem struct {
	s      subsystem
	cancel context.CancelFunc
	done   chan struct{}
}

// Run starts everything (control socket, metrics, subsystems), tells the
// service manager READY=1 and serves until ctx is cancelled, SIGTERM/SIGINT
// arrives (nil is returned) or a subsystem fails (its error is returned).
// SIGHUP reloads (the config, then TLS certificates). Shutdown is ordered:
// STOPPING=1, subsystems in reverse start order, then the control socket
// (its file removed) and metrics. Run may be called once.
func (a *Agent) Run(ctx context.Context) error {
	if !a.ran.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice")
	}
	defer a.logs.close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	sigs := a.opts.signals
	if sigs == nil {
		ch := make(chan os.Signal, 4)
		signal.Notify(ch, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
		defer signal.Stop(ch)
		sigs = ch
	}

	fatal := make(chan error, len(a.subsystems))
	// Starting can take long (programming thousands of IPVS destinations on a loaded
	// machine): SIGTERM or SIGINT meanwhile cancels it, so that a stop is prompt at any time.
	// SIGHUP is kept and handled once started.
	startCtx, startCancel := context.WithCancel(ctx)
	defer startCancel()
	var (
		stopSig    os.Signal
		hupPending bool
		watchStop  = make(chan struct{})
		watchDone  = make(chan struct{})
	)
	go func() {
		defer close(watchDone)
		for {
			select {
			case <-watchStop:
				return
			case sig := <-sigs:
				if sig == syscall.SIGHUP {
					hupPending = true
					continue
				}
				stopSig = sig
				startCancel()
				return
			}
		}
	}()
	running, err := a.start(startCtx, fatal)
	close(watchStop)
	<-watchDone
	if stopSig != nil {
		a.log.Info("shutting down on signal while starting", slog.String("signal", stopSig.String()))
		if err == nil {
			a.shutdown(running)
		}
		return nil
	}
	if err != nil {
		a.log.Error("agent failed to start", slog.Any("error", err))
		return err
	}

	// Subsystems and servers are up; the watchdog has an owner from here.
	wdCtx, wdStop := context.WithCancel(ctx)
	var wdDone sync.WaitGroup
	if timeout := a.watchdogTimeout(); timeout > 0 {
		wdDone.Go(func() { a.runWatchdog(wdCtx, timeout) })
		a.log.Debug("watchdog enabled", slog.Duration("timeout", timeout))
	}

	cfg, gen := a.current()
	a.notify(notifyReady)
	a.notifyStatus("running: node %s, config generation %d", cfg.Node.Name, gen)
	a.bus.Publish("agent", EventAgentStarted, map[string]any{
		"node": cfg.Node.Name, "generation": gen, "pid": a.pid, "version": a.opts.Version.Version,
	})
	a.log.Info("agent started",
		slog.String("node", cfg.Node.Name),
		slog.Uint64("generation", gen),
		slog.String("file", a.opts.ConfigPath),
		slog.String("version", a.opts.Version.Version))
	if a.opts.onReady != nil {
		a.opts.onReady()
	}

	var runErr error
	if hupPending {
		a.log.Info("reload requested by signal while starting")
		a.Reload(ctx)
		a.reloadCertificates(ctx)
	}
loop:
	for {
		select {
		case <-ctx.Done():
			a.log.Info("shutting down: context cancelled")
			break loop
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				a.log.Info("reload requested by signal", slog.String("signal", sig.String()))
				a.Reload(ctx)
				a.reloadCertificates(ctx)
				continue
			}
			a.log.Info("shutting down on signal", slog.String("signal", sig.String()))
			break loop
		case err := <-fatal:
			runErr = err
			a.log.Error("shutting down: subsystem failed", slog.Any("error", err))
			break loop
		}
	}

	wdStop()
	wdDone.Wait()
	a.shutdown(running)
	return runErr
}

// start binds the control socket and metrics listener, applies the config to
// every subsystem and starts them. On error everything started is stopped.
func (a *Agent) start(ctx context.Context, fatal chan<- error) ([]runningSubsystem, error) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	cfg, _ := a.current()

	path := socketPath(cfg)
	ln, err := listenControl(path)
	if err != nil {
		return nil, err
	}
	cs := a.newControlServer(path, ln)

	var ms *metricsServer
	if cfg.Metrics != nil {
		ms, err = listenMetrics(cfg.Metrics.Listen.String(), cfg.Metrics.Path, a.metrics.registry, a.log)
		if err != nil {
			cs.close(false)
			return nil, err
		}
	}

	// Subsystem contexts do not inherit cancellation: shutdown cancels them
	// one by one, in reverse order.
	base := context.WithoutCancel(ctx)
	var running []runningSubsystem
	for _, s := range a.subsystems {
		if err := s.Apply(ctx, cfg); err != nil {
			stopSubsystems(running, a.log)
			cs.close(false)
			if ms != nil {
				ms.close(false)
			}
			return nil, fmt.Errorf("subsystem %s: %w", s.Name(), err)
		}
		running = append(running, a.runSubsystem(base, s, fatal))
	}

	cs.serve(a.log)
	a.control = cs
	a.log.Info("control socket listening", slog.String("socket", path))
	if ms != nil {
		ms.serve(a.log)
		a.metricsSrv = ms
		a.log.Info("metrics listening", slog.String("listen", ms.addr()), slog.String("path", ms.currentPath()))
	}
	a.runCtx = ctx
	a.running = true
	return running, nil
}

// runSubsystem starts s.Run in a goroutine owned by the returned handle.
func (a *Agent) runSubsystem(base context.Context, s subsystem, fatal chan<- error) runningSubsystem {
	ctx, cancel := context.WithCancel(base)
	rs := runningSubsystem{s: s, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(rs.done)
		err := s.Run(ctx)
		if ctx.Err() != nil {
			if err != nil && !errors.Is(err, context.Canceled) {
				a.log.Warn("subsystem stopped with an error", slog.String("subsystem", s.Name()), slog.Any("error", err))
			}
			return
		}
		if err == nil {
			err = errors.New("stopped unexpectedly")
		}
		fatal <- fmt.Errorf("subsystem %s: %w", s.Name(), err)
	}()
	return rs
}

// stopSubsystems stops running subsystems in reverse order, each before the
// next.
func stopSubsystems(running []runningSubsystem, log *slog.Logger) {
	for i := len(running) - 1; i >= 0; i-- {
		rs := running[i]
		rs.cancel()
		<-rs.done
		log.Debug("subsystem stopped", slog.String("subsystem", rs.s.Name()))
	}
}

// shutdown is the ordered stop: STOPPING=1, no more reloads, subsystems in
// reverse order, control socket (file removed), metrics, event bus.
func (a *Agent) shutdown(running []runningSubsystem) {
	a.notify(notifyStopping)
	a.notifyStatus("stopping")
	a.bus.Publish("agent", EventAgentStopping, nil)
	a.log.Info("agent stopping")

	a.reloadMu.Lock() // waits for a reload in progress
	a.stopping = true
	cs, ms := a.control, a.metricsSrv
	a.control, a.metricsSrv = nil, nil
	a.reloadMu.Unlock()

	stopSubsystems(running, a.log)
	if cs != nil {
		cs.close(true)
	}
	if ms != nil {
		ms.close(true)
	}
	a.bus.Close()
	a.bg.Wait()
	a.log.Info("agent stopped")
}
