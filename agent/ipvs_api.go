package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"

	"github.com/fulcrum-lb/fulcrum/ipvs"
)

// IPVSOverrideRequest is the body of POST /v1/ipvs/drain and
// /v1/ipvs/enable. VirtualServer is a virtual_server's name (or its
// service, "tcp/203.0.113.10:80"); RealServer a real_server's name (or its
// address, "192.0.2.11:8080").
type IPVSOverrideRequest struct {
	VirtualServer string `json:"virtual_server"`
	RealServer    string `json:"real_server"`
}

// IPVSOverrideResponse is the answer of a drain or enable: the real server
// as it is now. Changed is false when it already was in the state asked
// for.
type IPVSOverrideResponse struct {
	OK              bool   `json:"ok"`
	VirtualServer   string `json:"virtual_server"`
	RealServer      string `json:"real_server"`
	Service         string `json:"service"`
	Destination     string `json:"destination"`
	Drained         bool   `json:"drained"`
	Changed         bool   `json:"changed"`
	Weight          int    `json:"weight"`
	EffectiveWeight int    `json:"effective_weight"`
	InKernel        bool   `json:"in_kernel"`
	KernelWeight    int    `json:"kernel_weight"`
	ActiveConns     uint32 `json:"active_conns"`
	InactiveConns   uint32 `json:"inactive_conns"`
	// Error is set when the override is recorded but the kernel (or the
	// state file) refused; the next resync retries.
	Error string `json:"error,omitempty"`
}

// IPVSResyncResponse is the answer of POST /v1/ipvs/resync.
type IPVSResyncResponse struct {
	OK bool `json:"ok"`
	// Services owned after the resync, and services in the kernel that are
	// not ours (left alone).
	Services int `json:"services"`
	Unowned  int `json:"unowned"`
	// Operations is every kernel operation of the resync (the dump
	// included); Corrections those that changed the kernel (drift).
	Operations  uint64  `json:"operations"`
	Corrections uint64  `json:"corrections"`
	Duration    string  `json:"duration"`
	DurationMS  float64 `json:"duration_ms"`
	Error       string  `json:"error,omitempty"`
}

// lookup resolves the names of a request against the configuration.
func (n *ipvsNames) lookup(req IPVSOverrideRequest) (*ipvsVS, netip.AddrPort, string, error) {
	if req.VirtualServer == "" || req.RealServer == "" {
		return nil, netip.AddrPort{}, "", fmt.Errorf("%w: name a virtual_server and a real_server", ErrBadIPVSRequest)
	}
	v := n.byName[req.VirtualServer]
	if v == nil {
		if k, err := ipvs.ParseServiceKey(req.VirtualServer); err == nil {
			v = n.byKey[k]
		}
	}
	if v == nil {
		names := make([]string, 0, len(n.order))
		for _, o := range n.order {
			names = append(names, o.name)
		}
		return nil, netip.AddrPort{}, "", fmt.Errorf("%w %q (configured: %s)", ErrUnknownVirtualServer, req.VirtualServer, strings.Join(names, ", "))
	}
	for _, r := range v.reals {
		if r.name == req.RealServer {
			return v, r.addr, r.name, nil
		}
	}
	if ap, err := netip.ParseAddrPort(req.RealServer); err == nil {
		for _, r := range v.reals {
			if r.addr == ap {
				return v, r.addr, r.name, nil
			}
		}
	}
	names := make([]string, 0, len(v.reals))
	for _, r := range v.reals {
		names = append(names, r.name)
	}
	return nil, netip.AddrPort{}, "", fmt.Errorf("%w %q in virtual_server %q (configured: %s)", ErrUnknownRealServer, req.RealServer, v.name, strings.Join(names, ", "))
}

// override drains (weight 0, established connections continue) or
// enables a real server for the operator. The override is kept in the
// reconciler's state file, so it survives reloads and restarts, until
// cleared.
func (s *ipvsSubsystem) override(req IPVSOverrideRequest, drained bool) (IPVSOverrideResponse, error) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	rec, configured, openErr := s.current()
	if configured == 0 {
		return IPVSOverrideResponse{}, ErrNoIPVS
	}
	v, addr, rsName, err := s.names.Load().lookup(req)
	if err != nil {
		return IPVSOverrideResponse{}, err
	}
	if rec == nil {
		return IPVSOverrideResponse{}, s.unavailable(openErr, configured)
	}
	before := ipvsSnapshotOf(rec)
	id := ipvsDestID{v.key, addr}
	opErr := rec.SetOverride(v.key, addr, drained)
	if errors.Is(opErr, ipvs.ErrClosed) {
		return IPVSOverrideResponse{}, &ipvsDownError{opErr}
	}
	if errors.Is(opErr, ipvs.ErrUnknownService) || errors.Is(opErr, ipvs.ErrUnknownDestination) {
		return IPVSOverrideResponse{}, fmt.Errorf("%w: %w", ErrUnknownRealServer, opErr)
	}
	reason := "enable"
	if drained {
		reason = "drain"
	}
	after := ipvsSnapshotOf(rec)
	s.publishChanges(before, after, reason)

	res := IPVSOverrideResponse{
		OK: opErr == nil, VirtualServer: v.name, RealServer: rsName,
		Service: v.key.String(), Destination: addr.String(),
		Drained: after[id].drained, Changed: before[id].drained != after[id].drained,
	}
	// Read the service back (two kernel operations): the answer shows what
	// the kernel holds now, connection counts included.
	ss, rerr := rec.ReadService(v.key)
	if rerr != nil {
		opErr = errors.Join(opErr, rerr)
		for _, st := range rec.Status().Services {
			if st.Key == v.key {
				ss = st
			}
		}
	}
	for _, d := range ss.Destinations {
		if d.Addr == addr && !d.Sorry {
			res.Weight, res.EffectiveWeight = d.Weight, d.EffectiveWeight
			res.InKernel, res.KernelWeight = d.InKernel, d.KernelWeight
			res.ActiveConns, res.InactiveConns = d.ActiveConns, d.InactiveConns
		}
	}
	if opErr != nil {
		res.Error = opErr.Error()
		s.log.Error("IPVS: operator override recorded, but applying it failed; the next resync retries",
			slog.String("virtual_server", v.name), slog.String("real_server", rsName), slog.String("action", reason), slog.Any("error", opErr))
	} else if res.Changed {
		s.log.Info("IPVS real server "+map[bool]string{true: "drained", false: "enabled"}[drained]+" by the operator",
			slog.String("virtual_server", v.name), slog.String("real_server", rsName), slog.String("destination", addr.String()),
			slog.Int("effective_weight", res.EffectiveWeight))
	}
	return res, nil
}

// ipvsOperator is the subsystem that takes operator requests.
type ipvsOperator interface {
	override(req IPVSOverrideRequest, drained bool) (IPVSOverrideResponse, error)
	resync(ctx context.Context, reason string) (IPVSResyncResponse, error)
}

// IPVSDrain sets a real server's weight to 0 without removing it: new
// connections go elsewhere, established ones continue. It lasts, across
// reloads and restarts, until IPVSEnable.
func (a *Agent) IPVSDrain(req IPVSOverrideRequest) (IPVSOverrideResponse, error) {
	o, ok := findSubsystem[ipvsOperator](a)
	if !ok {
		return IPVSOverrideResponse{}, ErrNoIPVS
	}
	return o.override(req, true)
}

// IPVSEnable clears an operator drain: the real server gets its
// configured weight back.
func (a *Agent) IPVSEnable(req IPVSOverrideRequest) (IPVSOverrideResponse, error) {
	o, ok := findSubsystem[ipvsOperator](a)
	if !ok {
		return IPVSOverrideResponse{}, ErrNoIPVS
	}
	return o.override(req, false)
}

// IPVSResync dumps the kernel now and corrects any drift, as the periodic
// resync does.
func (a *Agent) IPVSResync(ctx context.Context) (IPVSResyncResponse, error) {
	o, ok := findSubsystem[ipvsOperator](a)
	if !ok {
		return IPVSResyncResponse{}, ErrNoIPVS
	}
	return o.resync(ctx, "requested")
}

// ipvsErrorCode maps ipvs operation errors to HTTP statuses.
func ipvsErrorCode(err error) int {
	switch {
	case errors.Is(err, ErrBadIPVSRequest):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnknownVirtualServer), errors.Is(err, ErrUnknownRealServer):
		return http.StatusNotFound
	case errors.Is(err, ErrNoIPVS):
		return http.StatusConflict
	case errors.Is(err, ErrIPVSUnavailable):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func (a *Agent) handleIPVSOverride(drained bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req, ok := decodeRequest[IPVSOverrideRequest](w, r, "IPVS")
		if !ok {
			return
		}
		do := a.IPVSEnable
		if drained {
			do = a.IPVSDrain
		}
		res, err := do(req)
		switch {
		case err != nil:
			writeError(w, ipvsErrorCode(err), err.Error())
		case !res.OK:
			writeJSON(w, http.StatusInternalServerError, res)
		default:
			writeJSON(w, http.StatusOK, res)
		}
	}
}

func (a *Agent) handleIPVSResync(w http.ResponseWriter, r *http.Request) {
	res, err := a.IPVSResync(r.Context())
	switch {
	case err != nil:
		writeError(w, ipvsErrorCode(err), err.Error())
	case !res.OK:
		writeJSON(w, http.StatusInternalServerError, res)
	default:
		writeJSON(w, http.StatusOK, res)
	}
}

// ipvsRoutes are the control API's IPVS routes.
func (a *Agent) ipvsRoutes() map[string]route {
	return map[string]route{
		"/v1/ipvs/drain":  {http.MethodPost, a.handleIPVSOverride(true)},
		"/v1/ipvs/enable": {http.MethodPost, a.handleIPVSOverride(false)},
		"/v1/ipvs/resync": {http.MethodPost, a.handleIPVSResync},
	}
}

// IPVSDrain asks the agent to drain a real server. An override recorded
// but not yet applied to the kernel is an answer with OK false and Error,
// not an error.
func (c *Client) IPVSDrain(ctx context.Context, req IPVSOverrideRequest) (*IPVSOverrideResponse, error) {
	return c.ipvsOverride(ctx, "/v1/ipvs/drain", req)
}

// IPVSEnable asks the agent to clear a drain.
func (c *Client) IPVSEnable(ctx context.Context, req IPVSOverrideRequest) (*IPVSOverrideResponse, error) {
	return c.ipvsOverride(ctx, "/v1/ipvs/enable", req)
}

func (c *Client) ipvsOverride(ctx context.Context, path string, req IPVSOverrideRequest) (*IPVSOverrideResponse, error) {
	var res IPVSOverrideResponse
	if err := c.postJSON(ctx, path, req, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// IPVSResync asks the agent for a full resync now.
func (c *Client) IPVSResync(ctx context.Context) (*IPVSResyncResponse, error) {
	var res IPVSResyncResponse
	if err := c.postJSON(ctx, "/v1/ipvs/resync", struct{}{}, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// postJSON posts body as JSON and decodes a 200 answer, or a 500 answer
// that carries the response shape (ok false); other answers are *APIError.
func (c *Client) postJSON(ctx context.Context, path string, body, out any) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	resp, err := c.doBody(ctx, http.MethodPost, path, raw)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("control API POST %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var probe map[string]json.RawMessage
		_ = json.Unmarshal(data, &probe)
		if _, shaped := probe["ok"]; resp.StatusCode != http.StatusInternalServerError || !shaped {
			return apiError(resp.StatusCode, data)
		}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding the answer of POST %s: %w", path, err)
	}
	return nil
}
