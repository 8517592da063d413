package l7proxy

import "time"

// Status is a snapshot of every proxy's counters, for metrics, the control API and the
// statistics page. Counters are cumulative over the life of the Proxy (they survive Apply for
// proxies and servers that keep their names).
type Status struct {
	Proxies []ProxyStatus `json:"proxies"`
}

// ProxyStatus is one proxy.
type ProxyStatus struct {
	Name              string           `json:"name"`
	Listeners         []ListenerStatus `json:"listeners"`
	ActiveConnections int64            `json:"active_connections"`
	TotalConnections  uint64           `json:"total_connections"`
	ActiveRequests    int64            `json:"active_requests"`
	TotalRequests     uint64           `json:"total_requests"`
	RequestRate       float64          `json:"request_rate"` // per second, sliding
	Responses         ClassCounts      `json:"responses"`
	BytesIn           uint64           `json:"bytes_in"`  // request bodies
	BytesOut          uint64           `json:"bytes_out"` // response bodies
	Errors            uint64           `json:"errors"`    // proxy errors (502/503/504, refused PROXY headers)
	RateLimited       uint64           `json:"rate_limited"`
	Retries           uint64           `json:"retries"`
	Redirects         uint64           `json:"redirects"`
	NoServer          uint64           `json:"no_server"` // 503 for want of a usable server
	Backends          []BackendStatus  `json:"backends"`
}

// ListenerStatus is one listener.
type ListenerStatus struct {
	Name          string `json:"name"`
	Address       string `json:"address"`
	TLS           bool   `json:"tls"`
	ProxyProtocol bool   `json:"proxy_protocol"`
}

// BackendStatus is one backend.
type BackendStatus struct {
	Name      string         `json:"name"`
	Balance   string         `json:"balance"`
	Sticky    string         `json:"sticky,omitempty"` // "cookie NAME" or "ip_hash"
	ServersUp int            `json:"servers_up"`
	Servers   []ServerStatus `json:"servers"`
}

// Server states.
const (
	StateUp          = "up"
	StateDown        = "down"         // the health source said so
	StatePassiveDown = "passive_down" // max_fails reached, out for fail_timeout
	StateMaint       = "maint"        // weight 0
)

// ServerStatus is one server.
type ServerStatus struct {
	Name           string      `json:"name"`
	Address        string      `json:"address"`
	State          string      `json:"state"`
	Weight         int         `json:"weight"`
	Healthy        bool        `json:"healthy"` // the health source's view
	ActiveSessions int64       `json:"active_sessions"`
	TotalSessions  uint64      `json:"total_sessions"`
	RequestRate    float64     `json:"request_rate"`
	Errors         uint64      `json:"errors"` // connection errors and 5xx
	PassiveFails   int         `json:"passive_fails"`
	Responses      ClassCounts `json:"responses"`
}

// Status returns a snapshot of the running configuration's counters.
func (p *Proxy) Status() Status {
	g := p.gen.Load()
	now := time.Now()
	var st Status
	for _, pr := range g.proxies {
		s := pr.state
		ps := ProxyStatus{
			Name:              pr.name,
			ActiveConnections: s.activeConns.Load(),
			TotalConnections:  s.totalConns.Load(),
			ActiveRequests:    s.activeReqs.Load(),
			TotalRequests:     s.totalReqs.Load(),
			RequestRate:       s.rate.rate(now),
			Responses:         s.statuses.snapshot(),
			BytesIn:           s.bytesIn.Load(),
			BytesOut:          s.bytesOut.Load(),
			Errors:            s.errors.Load(),
			RateLimited:       s.rateLimited.Load(),
			Retries:           s.retries.Load(),
			Redirects:         s.redirects.Load(),
			NoServer:          s.noSrv.Load(),
		}
		for _, l := range g.listeners {
			if l.proxy == pr {
				ps.Listeners = append(ps.Listeners, ListenerStatus{Name: l.opts.Name,
					Address: l.opts.Address.String(), TLS: l.tls != nil, ProxyProtocol: l.opts.ProxyProtocol})
			}
		}
		for _, b := range pr.backends {
			bs := BackendStatus{Name: b.name, Balance: string(b.balance)}
			switch {
			case b.sticky.Cookie != "":
				bs.Sticky = "cookie " + b.sticky.Cookie
			case b.sticky.IPHash:
				bs.Sticky = "ip_hash"
			}
			for _, sv := range b.servers {
				ss := sv.status(now)
				if ss.State == StateUp {
					bs.ServersUp++
				}
				bs.Servers = append(bs.Servers, ss)
			}
			ps.Backends = append(ps.Backends, bs)
		}
		st.Proxies = append(st.Proxies, ps)
	}
	return st
}

func (s *server) status(now time.Time) ServerStatus {
	s.mu.Lock()
	fails, passiveDown := s.fails, now.Before(s.downUntil)
	s.mu.Unlock()
	ss := ServerStatus{
		Name: s.name, Address: s.target, Weight: int(s.weight.Load()), Healthy: s.healthy.Load(),
		ActiveSessions: s.active.Load(), TotalSessions: s.total.Load(), RequestRate: s.rate.rate(now),
		Errors: s.errors.Load(), PassiveFails: fails, Responses: s.statuses.snapshot(),
	}
	switch {
	case !ss.Healthy:
		ss.State = StateDown
	case passiveDown:
		ss.State = StatePassiveDown
	case ss.Weight == 0:
		ss.State = StateMaint
	default:
		ss.State = StateUp
	}
	return ss
}
