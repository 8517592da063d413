package agent

import (
	"github.com/prometheus/client_golang/prometheus"
)

// proxyCollector exports the proxies' counters at scrape time, from the
// same snapshot as the status detail.
type proxyCollector struct {
	s *proxySubsystem

	requests, bytes, activeConns, conns, activeReqs   *prometheus.Desc
	errors, rateLimited, retries, redirects, noServer *prometheus.Desc
	serversUp                                         *prometheus.Desc
	serverUp, serverWeight, serverActive, serverTotal *prometheus.Desc
	serverErrors, serverResponses, serverDisabled     *prometheus.Desc
}

func newProxyCollector(s *proxySubsystem) *proxyCollector {
	px := []string{"proxy"}
	be := []string{"proxy", "backend"}
	sv := []string{"proxy", "backend", "server"}
	return &proxyCollector{
		s: s,
		requests: prometheus.NewDesc("fulcrum_proxy_requests_total",
			"Requests answered, by status class (1xx, 2xx, 3xx, 4xx, 5xx, other).", []string{"proxy", "class"}, nil),
		bytes: prometheus.NewDesc("fulcrum_proxy_bytes_total",
			"Body bytes: in (request bodies received) and out (response bodies sent).", []string{"proxy", "direction"}, nil),
		activeConns: prometheus.NewDesc("fulcrum_proxy_active_connections",
			"Client connections open now.", px, nil),
		conns: prometheus.NewDesc("fulcrum_proxy_connections_total",
			"Client connections accepted.", px, nil),
		activeReqs: prometheus.NewDesc("fulcrum_proxy_active_sessions",
			"Requests in progress now (WebSocket connections included).", px, nil),
		errors: prometheus.NewDesc("fulcrum_proxy_errors_total",
			"Proxy errors: 502, 503 and 504 answers, refused PROXY protocol headers.", px, nil),
		rateLimited: prometheus.NewDesc("fulcrum_proxy_rate_limited_total",
			"Requests answered 429 and connections refused by rate_limit.", px, nil),
		retries: prometheus.NewDesc("fulcrum_proxy_retries_total",
			"Requests retried on another server after a connection failure.", px, nil),
		redirects: prometheus.NewDesc("fulcrum_proxy_redirects_total",
			"Requests redirected to https (redirect_https).", px, nil),
		noServer: prometheus.NewDesc("fulcrum_proxy_no_server_total",
			"Requests answered 503 because no server of the backend was usable.", px, nil),
		serversUp: prometheus.NewDesc("fulcrum_proxy_backend_servers_up",
			"Servers of the backend taking requests.", be, nil),
		serverUp: prometheus.NewDesc("fulcrum_proxy_server_up",
			"1 when the server takes requests, 0 when it is down, passively down, disabled or at weight 0.", sv, nil),
		serverWeight: prometheus.NewDesc("fulcrum_proxy_server_weight",
			"Configured weight of the server.", sv, nil),
		serverActive: prometheus.NewDesc("fulcrum_proxy_server_active_sessions",
			"Requests in progress on the server now.", sv, nil),
		serverTotal: prometheus.NewDesc("fulcrum_proxy_server_sessions_total",
			"Requests sent to the server (retries included).", sv, nil),
		serverErrors: prometheus.NewDesc("fulcrum_proxy_server_errors_total",
			"Connection errors and 5xx answers of the server.", sv, nil),
		serverResponses: prometheus.NewDesc("fulcrum_proxy_server_responses_total",
			"Responses of the server, by status class.", []string{"proxy", "backend", "server", "class"}, nil),
		serverDisabled: prometheus.NewDesc("fulcrum_proxy_server_disabled",
			"1 when the operator disabled the server (fulcrum proxy disable).", sv, nil),
	}
}

func (c *proxyCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.requests, c.bytes, c.activeConns, c.conns, c.activeReqs,
		c.errors, c.rateLimited, c.retries, c.redirects, c.noServer, c.serversUp,
		c.serverUp, c.serverWeight, c.serverActive, c.serverTotal, c.serverErrors, c.serverResponses, c.serverDisabled} {
		ch <- d
	}
}

func (c *proxyCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	bool01 := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	c.s.mu.Lock()
	proxies := c.s.statusLocked()
	c.s.mu.Unlock()
	for _, p := range proxies {
		n := p.Name
		for class, v := range classes(p.Responses) {
			counter(c.requests, v, n, class)
		}
		counter(c.bytes, p.BytesIn, n, "in")
		counter(c.bytes, p.BytesOut, n, "out")
		gauge(c.activeConns, float64(p.ActiveConnections), n)
		counter(c.conns, p.TotalConnections, n)
		gauge(c.activeReqs, float64(p.ActiveRequests), n)
		counter(c.errors, p.Errors, n)
		counter(c.rateLimited, p.RateLimited, n)
		counter(c.retries, p.Retries, n)
		counter(c.redirects, p.Redirects, n)
		counter(c.noServer, p.NoServer, n)
		for _, b := range p.Backends {
			gauge(c.serversUp, float64(b.ServersUp), n, b.Name)
			for _, s := range b.Servers {
				l := []string{n, b.Name, s.Name}
				gauge(c.serverUp, bool01(s.State == ProxyServerUp), l...)
				gauge(c.serverWeight, float64(s.Weight), l...)
				gauge(c.serverActive, float64(s.ActiveSessions), l...)
				counter(c.serverTotal, s.TotalSessions, l...)
				counter(c.serverErrors, s.Errors, l...)
				gauge(c.serverDisabled, bool01(s.Disabled), l...)
				for class, v := range classes(s.Responses) {
					counter(c.serverResponses, v, append(l, class)...)
				}
			}
		}
	}
}

// classes names the response counts by class label.
func classes(r ProxyResponseCounts) map[string]uint64 {
	return map[string]uint64{"1xx": r.Informational, "2xx": r.Success, "3xx": r.Redirect,
		"4xx": r.ClientError, "5xx": r.ServerError, "other": r.Other}
}
