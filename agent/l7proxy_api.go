package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
)

// Errors of the proxy operator requests.
var (
	// ErrNoProxy: no proxy block is configured.
	ErrNoProxy = errors.New("no proxy is configured")
	// ErrUnknownProxyServer: the proxy, backend or server is not in the
	// running configuration.
	ErrUnknownProxyServer = errors.New("unknown proxy server")
	// ErrBadProxyRequest: the request is malformed.
	ErrBadProxyRequest = errors.New("bad proxy request")
)

// ProxyServerRequest is the body of POST /v1/proxy/disable and
// /v1/proxy/enable: a server by its proxy, backend and server names.
type ProxyServerRequest struct {
	Proxy   string `json:"proxy"`
	Backend string `json:"backend"`
	Server  string `json:"server"`
}

// ProxyServerResponse is the answer of a disable or enable: the server as
// it is now. Changed is false when it already was in the state asked for.
type ProxyServerResponse struct {
	OK             bool   `json:"ok"`
	Proxy          string `json:"proxy"`
	Backend        string `json:"backend"`
	Server         string `json:"server"`
	Address        string `json:"address"`
	State          string `json:"state"`
	Disabled       bool   `json:"disabled"`
	Changed        bool   `json:"changed"`
	ActiveSessions int64  `json:"active_sessions"`
}

// setDisabled takes a server out of its backend's rotation (disabled) or
// back in. Requests in flight finish; a disabled server's sticky clients
// move to another server. It lasts across reloads and restarts while the
// server stays configured (recorded in the state folder's
// proxy-disabled.json). When the record cannot be written, nothing changes.
func (s *proxySubsystem) setDisabled(req ProxyServerRequest, disabled bool) (ProxyServerResponse, error) {
	if req.Proxy == "" || req.Backend == "" || req.Server == "" {
		return ProxyServerResponse{}, fmt.Errorf("%w: name a proxy, a backend and a server", ErrBadProxyRequest)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.configured == 0 || s.p == nil {
		return ProxyServerResponse{}, ErrNoProxy
	}
	key := proxyServerKey(req.Proxy, req.Backend, req.Server)
	if !s.servers[key] {
		return ProxyServerResponse{}, fmt.Errorf("%w %q in backend %q of proxy %q (configured: %s)",
			ErrUnknownProxyServer, req.Server, req.Backend, req.Proxy, s.serverNamesLocked(req.Proxy, req.Backend))
	}
	changed := s.disabled[key] != disabled
	if changed {
		next := make(map[string]bool, len(s.disabled)+1)
		for k := range s.disabled {
			next[k] = true
		}
		if disabled {
			next[key] = true
		} else {
			delete(next, key)
		}
		if err := saveProxyDisabled(s.stateFile, next); err != nil {
			return ProxyServerResponse{}, err
		}
		s.disabled = next
	}
	if err := s.pushHealthLocked(key); err != nil {
		return ProxyServerResponse{}, err
	}
	s.observeLocked()
	res := ProxyServerResponse{OK: true, Proxy: req.Proxy, Backend: req.Backend, Server: req.Server, Disabled: disabled, Changed: changed}
	for _, p := range s.statusLocked() {
		for _, b := range p.Backends {
			for _, sv := range b.Servers {
				if p.Name == req.Proxy && b.Name == req.Backend && sv.Name == req.Server {
					res.Address, res.State, res.ActiveSessions = sv.Address, sv.State, sv.ActiveSessions
				}
			}
		}
	}
	if changed {
		s.log.Info("proxy server "+map[bool]string{true: "disabled", false: "enabled"}[disabled]+" by the operator",
			slog.String("proxy", req.Proxy), slog.String("backend", req.Backend), slog.String("server", req.Server),
			slog.String("address", res.Address))
	}
	return res, nil
}

// serverNamesLocked lists "backend/server" names of a proxy (or of one of
// its backends) for error messages. s.mu is held.
func (s *proxySubsystem) serverNamesLocked(proxy, backend string) string {
	var names []string
	for _, p := range s.statusLocked() {
		if p.Name != proxy {
			continue
		}
		for _, b := range p.Backends {
			for _, sv := range b.Servers {
				if b.Name == backend {
					names = append(names, sv.Name)
				} else {
					names = append(names, b.Name+"/"+sv.Name)
				}
			}
		}
	}
	if len(names) == 0 {
		var proxies []string
		for _, p := range s.statusLocked() {
			proxies = append(proxies, "proxy "+p.Name)
		}
		return strings.Join(proxies, ", ")
	}
	return strings.Join(names, ", ")
}

// ProxyDisable takes a proxy server out of rotation until ProxyEnable
// (HAProxy's `disable server`, state MAINT): no new requests, sticky
// clients move, requests in flight finish. It lasts across reloads and
// restarts (the state folder's proxy-disabled.json) while the server stays
// configured.
func (a *Agent) ProxyDisable(req ProxyServerRequest) (ProxyServerResponse, error) {
	p, ok := findSubsystem[*proxySubsystem](a)
	if !ok {
		return ProxyServerResponse{}, ErrNoProxy
	}
	return p.setDisabled(req, true)
}

// ProxyEnable puts a disabled proxy server back in rotation.
func (a *Agent) ProxyEnable(req ProxyServerRequest) (ProxyServerResponse, error) {
	p, ok := findSubsystem[*proxySubsystem](a)
	if !ok {
		return ProxyServerResponse{}, ErrNoProxy
	}
	return p.setDisabled(req, false)
}

func proxyErrorCode(err error) int {
	switch {
	case errors.Is(err, ErrBadProxyRequest):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnknownProxyServer):
		return http.StatusNotFound
	case errors.Is(err, ErrNoProxy):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

func (a *Agent) handleProxyServer(disabled bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req, ok := decodeRequest[ProxyServerRequest](w, r, "proxy")
		if !ok {
			return
		}
		do := a.ProxyEnable
		if disabled {
			do = a.ProxyDisable
		}
		res, err := do(req)
		if err != nil {
			writeError(w, proxyErrorCode(err), err.Error())
			return
		}
		writeJSON(w, http.StatusOK, res)
	}
}

// proxyRoutes are the control API's proxy routes.
func (a *Agent) proxyRoutes() map[string]route {
	return map[string]route{
		"/v1/proxy/disable": {http.MethodPost, a.handleProxyServer(true)},
		"/v1/proxy/enable":  {http.MethodPost, a.handleProxyServer(false)},
	}
}

// ProxyDisable asks the agent to take a proxy server out of rotation.
func (c *Client) ProxyDisable(ctx context.Context, req ProxyServerRequest) (*ProxyServerResponse, error) {
	return c.proxyServer(ctx, "/v1/proxy/disable", req)
}

// ProxyEnable asks the agent to put a disabled proxy server back.
func (c *Client) ProxyEnable(ctx context.Context, req ProxyServerRequest) (*ProxyServerResponse, error) {
	return c.proxyServer(ctx, "/v1/proxy/enable", req)
}

func (c *Client) proxyServer(ctx context.Context, path string, req ProxyServerRequest) (*ProxyServerResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	resp, err := c.doBody(ctx, http.MethodPost, path, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("control API POST %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, apiError(resp.StatusCode, data)
	}
	var res ProxyServerResponse
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, fmt.Errorf("decoding the answer of POST %s: %w", path, err)
	}
	return &res, nil
}
