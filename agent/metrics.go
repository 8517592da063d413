package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultMetricsPath is served when the metrics block sets no path.
const DefaultMetricsPath = "/metrics"

// agentMetrics are the agent's own series, on a registry private to the
// agent (never the global default registry).
type agentMetrics struct {
	registry          *prometheus.Registry
	generation        prometheus.Gauge
	reloads           *prometheus.CounterVec
	lastReloadSuccess prometheus.Gauge
	eventsPublished   prometheus.Counter
}

func newAgentMetrics(v VersionInfo) *agentMetrics {
	reg := prometheus.NewRegistry()
	m := &agentMetrics{
		registry: reg,
		generation: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fulcrum_config_generation",
			Help: "Generation of the running configuration; counts successful loads, starting at 1.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fulcrum_config_reloads_total",
			Help: "Configuration reload attempts by result.",
		}, []string{"result"}),
		lastReloadSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fulcrum_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful configuration load.",
		}),
		eventsPublished: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fulcrum_events_published_total",
			Help: "Events published on the agent's event bus.",
		}),
	}
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fulcrum_build_info",
		Help: "Build information; always 1.",
	}, []string{"version", "go"})
	buildInfo.WithLabelValues(v.Version, v.Go).Set(1)
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	reg.MustRegister(
		buildInfo, m.generation, m.reloads, m.lastReloadSuccess, m.eventsPublished,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// metricsServer serves one registry over HTTP on one listen address; the
// path can change without rebinding.
type metricsServer struct {
	listen string // as configured
	path   atomic.Pointer[string]
	ln     net.Listener
	srv    *http.Server
	done   chan struct{}
}

// listenMetrics binds listen; serving starts with serve.
func listenMetrics(listen, path string, reg *prometheus.Registry, log *slog.Logger) (*metricsServer, error) {
	if path == "" {
		path = DefaultMetricsPath
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("metrics listen %s: %w", listen, err)
	}
	prom := promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry:      reg,
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	})
	m := &metricsServer{listen: listen, ln: ln, done: make(chan struct{})}
	m.setPath(path)
	m.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != m.currentPath() {
				http.NotFound(w, r)
				return
			}
			prom.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return m, nil
}

// setPath changes the path metrics are served at ("" means the default).
func (m *metricsServer) setPath(p string) {
	if p == "" {
		p = DefaultMetricsPath
	}
	m.path.Store(&p)
}

func (m *metricsServer) currentPath() string { return *m.path.Load() }

func (m *metricsServer) addr() string { return m.ln.Addr().String() }

func (m *metricsServer) serve(log *slog.Logger) {
	go func() {
		defer close(m.done)
		if err := m.srv.Serve(m.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server failed", slog.String("listen", m.listen), slog.Any("error", err))
		}
	}()
}

// close stops the server (waiting up to 5s for scrapes in flight). A server
// that never served just releases its listener.
func (m *metricsServer) close(served bool) {
	if !served {
		m.ln.Close()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.srv.Shutdown(ctx); err != nil {
		m.srv.Close()
	}
	<-m.done
}
