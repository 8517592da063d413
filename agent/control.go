package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fulcrum-lb/fulcrum/config"
)

// DefaultSocket is the control socket when the config sets none; clients
// use it unless told otherwise.
const DefaultSocket = config.DefaultControlSocket

// ErrAgentRunning is returned when another process answers on the control
// socket path.
var ErrAgentRunning = errors.New("another fulcrum agent is listening on the control socket")

// controlServer is the HTTP/JSON control API on one unix socket.
type controlServer struct {
	path    string
	ln      *net.UnixListener
	srv     *http.Server
	streams context.Context // cancelled when the server closes: ends event streams
	stop    context.CancelFunc
	done    chan struct{}
}

type peerKey struct{}

// peer is the credentials of the process on the other end of a connection.
type peer struct {
	cred *unix.Ucred
	err  error
}

// listenControl prepares the socket at path: creates the parent directory
// (0700) when missing, removes a stale socket nobody answers on, refuses when
// an agent answers, binds and sets mode 0600.
func listenControl(path string) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("control socket directory: %w", err)
		}
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

// removeStaleSocket removes path when it is a socket no process accepts on.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("control socket %s: exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: %w", path, ErrAgentRunning)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("control socket %s: cannot tell whether it is in use: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("control socket: removing stale socket: %w", err)
	}
	return nil
}

// newControlServer wraps a bound listener; call serve to start answering.
func (a *Agent) newControlServer(path string, ln *net.UnixListener) *controlServer {
	streams, stop := context.WithCancel(context.Background())
	cs := &controlServer{path: path, ln: ln, streams: streams, stop: stop, done: make(chan struct{})}
	cs.srv = &http.Server{
		Handler:           a.controlHandler(cs),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, peerOf(c))
		},
	}
	return cs
}

func (cs *controlServer) serve(log *slog.Logger) {
	go func() {
		defer close(cs.done)
		if err := cs.srv.Serve(cs.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("control server failed", slog.String("socket", cs.path), slog.Any("error", err))
		}
	}()
}

// close stops accepting, ends event streams, waits (bounded) for requests in
// flight and removes the socket file. served says whether serve was called.
func (cs *controlServer) close(served bool) {
	cs.stop()
	if served {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := cs.srv.Shutdown(ctx); err != nil {
			cs.srv.Close()
		}
		cancel()
		<-cs.done
	} else {
		cs.ln.Close()
	}
	// Closing the listener normally unlinks the file already.
	_ = os.Remove(cs.path)
}

// peerOf reads SO_PEERCRED of a unix connection.
func peerOf(c net.Conn) peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return peer{err: fmt.Errorf("not a unix connection: %T", c)}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return peer{err: err}
	}
	var p peer
	if err := raw.Control(func(fd uintptr) {
		p.cred, p.err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return peer{err: err}
	}
	return p
}

// allowedPeer is the default peer check: root or the agent's own uid.
func allowedPeer(uid uint32) bool {
	return uid == 0 || int(uid) == os.Getuid()
}

type route struct {
	method  string
	handler http.HandlerFunc
}

// controlHandler routes the API. Unknown paths get 404, wrong methods 405,
// peers other than root (or our uid) 403; every error is {"error": "..."}.
func (a *Agent) controlHandler(cs *controlServer) http.Handler {
	routes := map[string]route{
		"/v1/status":        {http.MethodGet, a.handleStatus},
		"/v1/reload":        {http.MethodPost, a.handleReload},
		"/v1/events":        {http.MethodGet, func(w http.ResponseWriter, r *http.Request) { a.handleEvents(w, r, cs.streams) }},
		"/v1/version":       {http.MethodGet, a.handleVersion},
		"/v1/vrrp/failover": {http.MethodPost, a.handleFailover},
	}
	for path, rt := range a.ipvsRoutes() {
		routes[path] = rt
	}
	for path, rt := range a.proxyRoutes() {
		routes[path] = rt
	}
	allow := a.opts.allowPeer
	if allow == nil {
		allow = allowedPeer
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := r.Context().Value(peerKey{}).(peer)
		if p.err != nil || p.cred == nil {
			a.log.Warn("control request refused: peer credentials unavailable", slog.Any("error", p.err))
			writeError(w, http.StatusForbidden, "permission denied: peer credentials unavailable")
			return
		}
		if !allow(p.cred.Uid) {
			a.log.Warn("control request refused", slog.Int("uid", int(p.cred.Uid)), slog.Int("peer_pid", int(p.cred.Pid)), slog.String("path", r.URL.Path))
			writeError(w, http.StatusForbidden, fmt.Sprintf("permission denied: uid %d may not use the control socket", p.cred.Uid))
			return
		}
		rt, ok := routes[r.URL.Path]
		if !ok {
			writeError(w, http.StatusNotFound, "not found: "+r.URL.Path)
			return
		}
		if r.Method != rt.method {
			w.Header().Set("Allow", rt.method)
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s (use %s)", r.Method, r.URL.Path, rt.method))
			return
		}
		rt.handler(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func (a *Agent) handleStatus(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.Status())
}

func (a *Agent) handleVersion(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.opts.Version)
}

func (a *Agent) handleReload(w http.ResponseWriter, r *http.Request) {
	res := a.Reload(r.Context())
	switch {
	case res.OK:
		writeJSON(w, http.StatusOK, res)
	case len(res.Diagnostics) > 0:
		writeJSON(w, http.StatusUnprocessableEntity, res)
	case errors.Is(res.err, ErrStopping):
		writeJSON(w, http.StatusServiceUnavailable, res)
	default:
		writeJSON(w, http.StatusInternalServerError, res)
	}
}

// handleEvents streams events as JSON lines, flushing each, until the client
// leaves, the control server closes or the bus closes (agent stopping).
func (a *Agent) handleEvents(w http.ResponseWriter, r *http.Request, streams context.Context) {
	sub := a.bus.Subscribe(DefaultSubscriberBuffer)
	defer sub.Close()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stopAfter := context.AfterFunc(streams, cancel)
	defer stopAfter()

	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	enc := json.NewEncoder(w) // one compact line per event
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			return
		}
		if err := enc.Encode(ev); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// maxRequestBody bounds the JSON bodies the control API reads.
const maxRequestBody = 64 << 10

// decodeRequest reads a request body of type T (at most maxRequestBody,
// no unknown fields; an empty body is the zero T). On a bad body it answers
// 400, naming what (e.g. "failover"), and returns false.
func decodeRequest[T any](w http.ResponseWriter, r *http.Request, what string) (T, bool) {
	var req T
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "bad "+what+" request: "+err.Error())
		return req, false
	}
	return req, true
}

// handleFailover runs a VRRP failover drill (FailoverRequest). Request
// problems are 400, an unknown instance 404, no VRRP configured 409; a
// drill that ran answers 200 with per-instance results, ok false if any
// failed.
func (a *Agent) handleFailover(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeRequest[FailoverRequest](w, r, "failover")
	if !ok {
		return
	}
	res, err := a.Failover(r.Context(), req)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, res)
	case errors.Is(err, ErrBadFailoverRequest):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, ErrUnknownInstance):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, ErrNoVRRP):
		writeError(w, http.StatusConflict, err.Error())
	default:
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

// vrrpDriller is the subsystem that runs failover drills.
type vrrpDriller interface {
	failover(ctx context.Context, req FailoverRequest) (FailoverResponse, error)
}

// Failover runs a VRRP failover drill (see FailoverRequest).
func (a *Agent) Failover(ctx context.Context, req FailoverRequest) (FailoverResponse, error) {
	if d, ok := findSubsystem[vrrpDriller](a); ok {
		return d.failover(ctx, req)
	}
	return FailoverResponse{}, ErrNoVRRP
}

// findSubsystem returns the first subsystem that is a T (an operator
// interface, or a concrete subsystem type).
func findSubsystem[T any](a *Agent) (T, bool) {
	for _, s := range a.subsystems {
		if t, ok := s.(T); ok {
			return t, true
		}
	}
	var zero T
	return zero, false
}
