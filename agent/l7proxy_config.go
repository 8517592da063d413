package agent

import (
	"log/slog"
	"math"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/fulcrum-lb/fulcrum/config"
	"github.com/fulcrum-lb/fulcrum/l7proxy"
)

// proxyDrainTimeout bounds how long requests in flight may take to finish
// when the agent stops, and when a reload retires the old configuration.
// It stays below the 15s TimeoutStopSec of examples/fulcrum.service, which
// must also cover VRRP handing over.
const proxyDrainTimeout = 10 * time.Second

// proxyOptions translates the config's proxy blocks into l7proxy options.
// The config has filled in every default already; the only translations
// are of meaning:
//
//   - retries 0 (none) is l7proxy's -1 (its 0 means its default);
//   - a rate_limit without requests (only max_connections_per_client) is an
//     unreachable request limit, since l7proxy's request limit is mandatory
//     within a RateLimitOptions;
//   - sticky_key is one key for the node (config checks that every proxy
//     setting it agrees);
//   - access_log selects the proxies whose records reach the agent's log,
//     through accessLog (nil when none wants one).
func proxyOptions(cfg *config.Config, log *slog.Logger) l7proxy.Options {
	opts := l7proxy.Options{Logger: log, DrainTimeout: proxyDrainTimeout}
	logged := map[string]bool{}
	for _, p := range cfg.Proxies {
		opts.Proxies = append(opts.Proxies, proxyOptionsOf(p))
		if p.AccessLog {
			logged[p.Name] = true
		}
		if p.StickyKey.IsSet() && opts.StickyKey == nil {
			opts.StickyKey = []byte(p.StickyKey.Reveal())
		}
	}
	if len(logged) > 0 {
		opts.AccessLog = slog.New(&accessLogHandler{next: log.Handler(), proxies: logged})
	}
	return opts
}

// proxyOptionsOf translates one proxy block.
func proxyOptionsOf(p config.Proxy) l7proxy.ProxyOptions {
	po := l7proxy.ProxyOptions{
		Name:           p.Name,
		DefaultBackend: p.DefaultBackend,
		MaxConnections: p.MaxConnections,
		MaxBodySize:    p.MaxBodySize,
		MaxHeaderSize:  int(min(p.MaxHeaderSize, math.MaxInt32)),
		Timeouts: l7proxy.Timeouts{
			Connect: p.Timeouts.Connect,
			Client:  p.Timeouts.Client,
			Server:  p.Timeouts.Server,
			Idle:    p.Timeouts.Idle,
			Header:  p.Timeouts.Header,
		},
		RequestHeaders:  headerEdits(p.Headers),
		ResponseHeaders: headerEdits(p.ResponseHeaders),
		TrustedProxies:  p.TrustedProxies,
		Retries:         p.Retries,
	}
	if po.Retries == 0 {
		po.Retries = -1
	}
	for _, l := range p.Listeners {
		lo := l7proxy.ListenerOptions{
			Name:          l.Name,
			Address:       l.Address,
			RedirectHTTPS: l.RedirectHTTPS,
			ProxyProtocol: l.ProxyProtocol,
			H2C:           l.H2C,
		}
		if t := l.TLS; t != nil {
			lo.TLS = &l7proxy.TLSOptions{MinVersion: t.MinVersion}
			for _, c := range t.Certificates {
				lo.TLS.Certificates = append(lo.TLS.Certificates, l7proxy.CertificateOptions{
					Name: c.Name, CertFile: c.CertFile, KeyFile: c.KeyFile, OCSPFile: c.OCSPFile,
				})
			}
		}
		po.Listeners = append(po.Listeners, lo)
	}
	for _, b := range p.Backends {
		bo := l7proxy.BackendOptions{
			Name:              b.Name,
			Balance:           l7proxy.Balance(b.Balance),
			MaxFails:          b.MaxFails,
			FailTimeout:       b.FailTimeout,
			SendProxyProtocol: b.SendProxyProtocol,
		}
		if s := b.Sticky; s != nil {
			bo.Sticky = l7proxy.StickyOptions{Cookie: s.Cookie, IPHash: s.IPHash}
		}
		for _, s := range b.Servers {
			bo.Servers = append(bo.Servers, l7proxy.ServerOptions{Name: s.Name, Address: s.Address, Weight: s.Weight})
		}
		po.Backends = append(po.Backends, bo)
	}
	for _, r := range p.Routes {
		po.Routes = append(po.Routes, l7proxy.RouteOptions{Host: r.Host, PathPrefix: r.PathPrefix, Backend: r.Backend})
	}
	if rl := p.RateLimit; rl != nil {
		ro := &l7proxy.RateLimitOptions{
			Requests:          rl.Requests,
			Per:               rl.Per,
			MaxClients:        rl.MaxClients,
			MaxConnsPerClient: rl.MaxConnectionsPerClient,
		}
		if ro.Requests == 0 {
			ro.Requests = math.MaxInt32 // connections only
		}
		po.RateLimit = ro
	}
	if s := p.Stats; s != nil {
		po.Stats = &l7proxy.StatsOptions{Path: s.Path, Username: s.Username, Password: s.Password.Reveal(), Refresh: s.Refresh}
	}
	return po
}

func headerEdits(h config.Headers) l7proxy.HeaderEdits {
	return l7proxy.HeaderEdits{Set: h.Set, Delete: h.Delete}
}

// proxyBuildChecks refuses what the proxy blocks may say but this build
// does not do yet, in the form of buildChecks (which loadConfig runs too):
// dynamic_weight in an exec health_check of a proxy backend.
func proxyBuildChecks(cfg *config.Config) hcl.Diagnostics {
	var out hcl.Diagnostics
	for _, p := range cfg.Proxies {
		for _, b := range p.Backends {
			for _, hc := range b.HealthChecks {
				if hc.Exec != nil && hc.Exec.DynamicWeight {
					out = append(out, dynamicWeightRefusal("backend \""+b.Name+"\" of proxy \""+p.Name+"\"", hc))
				}
			}
		}
	}
	return out
}
