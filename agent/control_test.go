package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rawClient speaks HTTP on a unix socket without the agent's Client.
func rawClient(socket string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
}

func doRaw(t *testing.T, socket, method, path string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://fulcrum"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rawClient(socket).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}

func TestControlAPI(t *testing.T) {
	ta := startAgent(t, testConfig{})
	sock := ta.cfg.socket

	// The directory was created 0700, the socket is 0600.
	if fi, err := os.Stat(filepath.Dir(sock)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("socket dir mode = %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	fi, err := os.Lstat(sock)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode = %v (%v), want socket 0600", fi.Mode(), err)
	}

	code, hdr, body := doRaw(t, sock, http.MethodGet, "/v1/status")
	if code != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Fatalf("status: %d %s", code, body)
	}
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"node", "version", "pid", "started_at", "config", "subsystems"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("status lacks %q: %s", k, body)
		}
	}
	cfg := raw["config"].(map[string]any)
	if cfg["path"] != ta.cfgPath || cfg["generation"] != float64(1) || cfg["loaded_at"] == nil {
		t.Errorf("config = %v", cfg)
	}
	if _, ok := cfg["last_reload"]; ok {
		t.Errorf("last_reload present before any reload: %v", cfg)
	}
	subs := raw["subsystems"].([]any)
	if len(subs) != 4 || subs[0].(map[string]any)["state"] != "none configured" {
		t.Errorf("subsystems = %v", subs)
	}
	if _, err := time.Parse(time.RFC3339, raw["started_at"].(string)); err != nil {
		t.Errorf("started_at: %v", err)
	}

	code, _, body = doRaw(t, sock, http.MethodGet, "/v1/version")
	var v VersionInfo
	if code != http.StatusOK || json.Unmarshal(body, &v) != nil || v != (VersionInfo{"v0.0.0-test", "abc123", "go-test"}) {
		t.Errorf("version: %d %s", code, body)
	}

	code, _, body = doRaw(t, sock, http.MethodGet, "/v1/nope")
	if code != http.StatusNotFound || !isJSONError(body) {
		t.Errorf("unknown path: %d %s", code, body)
	}
	code, hdr, body = doRaw(t, sock, http.MethodGet, "/v1/reload")
	if code != http.StatusMethodNotAllowed || hdr.Get("Allow") != "POST" || !isJSONError(body) {
		t.Errorf("GET /v1/reload: %d allow=%q %s", code, hdr.Get("Allow"), body)
	}
	code, _, body = doRaw(t, sock, http.MethodPost, "/v1/status")
	if code != http.StatusMethodNotAllowed || !isJSONError(body) {
		t.Errorf("POST /v1/status: %d %s", code, body)
	}
}

func isJSONError(body []byte) bool {
	var e struct {
		Error string `json:"error"`
	}
	return json.Unmarshal(body, &e) == nil && e.Error != ""
}

func TestControlReload(t *testing.T) {
	ta := startAgent(t, testConfig{})
	sock := ta.cfg.socket

	ta.rewrite(t, testConfig{node: "lb9"})
	code, _, body := doRaw(t, sock, http.MethodPost, "/v1/reload")
	var ok struct {
		OK         bool   `json:"ok"`
		Generation uint64 `json:"generation"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &ok) != nil || !ok.OK || ok.Generation != 2 {
		t.Fatalf("reload: %d %s", code, body)
	}

	writeFile(t, ta.cfgPath, badConfig)
	code, _, body = doRaw(t, sock, http.MethodPost, "/v1/reload")
	var bad struct {
		OK          *bool        `json:"ok"`
		Diagnostics []Diagnostic `json:"diagnostics"`
	}
	if code != http.StatusUnprocessableEntity || json.Unmarshal(body, &bad) != nil || bad.OK == nil || *bad.OK || len(bad.Diagnostics) == 0 {
		t.Fatalf("bad reload: %d %s", code, body)
	}
	if d := bad.Diagnostics[0]; d.File != ta.cfgPath || d.Line != 3 || d.Column == 0 {
		t.Errorf("diagnostic %+v", d)
	}

	// Through the client too.
	res, err := ta.client().Reload(context.Background())
	if err != nil || res.OK || len(res.Diagnostics) == 0 {
		t.Fatalf("client reload = %+v, %v", res, err)
	}
	st, err := ta.client().Status(context.Background())
	if err != nil || st.Node != "lb9" || st.Config.Generation != 2 || st.Config.LastReload == nil || st.Config.LastReload.OK {
		t.Fatalf("status = %+v, %v", st, err)
	}
}

func TestControlEventsStream(t *testing.T) {
	ta := startAgent(t, testConfig{})
	req, _ := http.NewRequest(http.MethodGet, "http://fulcrum/v1/events", nil)
	resp, err := rawClient(ta.cfg.socket).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("events: %d", resp.StatusCode)
	}
	// Headers arrive after the subscription exists: nothing is missed.
	ta.rewrite(t, testConfig{node: "lb2"})
	ta.Reload(context.Background())
	writeFile(t, ta.cfgPath, badConfig)
	ta.Reload(context.Background())

	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var got []Event
	for len(got) < 2 {
		select {
		case l := <-lines:
			var ev Event
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			got = append(got, ev)
		case <-time.After(5 * time.Second):
			t.Fatalf("events so far %+v", got)
		}
	}
	if got[0].Type != EventConfigReloaded || got[1].Type != EventConfigReloadFailed || got[1].Seq != got[0].Seq+1 {
		t.Fatalf("events = %+v", got)
	}
	if got[0].Attrs["node"] != "lb2" || got[0].Subsystem != "agent" || got[0].Time.IsZero() {
		t.Errorf("reloaded event = %+v", got[0])
	}

	// Stopping the agent ends the stream (after agent_stopping).
	ta.cancel() // the cleanup waits for Run
	var last string
	for l := range lines {
		last = l
	}
	if !strings.Contains(last, EventAgentStopping) {
		t.Errorf("last line before the stream ended: %q", last)
	}
}

func TestClientEventsEndsWhenAgentStops(t *testing.T) {
	ta := startAgent(t, testConfig{})
	errc := make(chan error, 1)
	got := make(chan string, 16)
	go func() {
		errc <- ta.client().Events(context.Background(), func(l []byte) error {
			got <- string(l)
			return nil
		})
	}()
	eventually(t, "subscriber", func() bool {
		ta.bus.mu.Lock()
		defer ta.bus.mu.Unlock()
		return len(ta.bus.subs) == 1
	})
	ta.Reload(context.Background())
	if l := <-got; !strings.Contains(l, EventConfigReloaded) {
		t.Fatalf("first line %q", l)
	}
	if err := ta.stop(t); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Events = %v, want nil when the agent ends the stream", err)
	}
}

func TestControlRefusesSecondAgent(t *testing.T) {
	first := startAgent(t, testConfig{})
	second, err := newTestAgent(t, testConfig{socket: first.cfg.socket})
	if err != nil {
		t.Fatal(err)
	}
	err = second.Run(context.Background())
	if !errors.Is(err, ErrAgentRunning) {
		t.Fatalf("second Run = %v, want ErrAgentRunning", err)
	}
	// The first one still answers.
	if _, err := first.client().Status(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestControlReplacesStaleSocket(t *testing.T) {
	dir := socketDir(t)
	sock := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // a dead agent's leftover
	ta := startAgent(t, testConfig{socket: sock})
	if _, err := ta.client().Status(context.Background()); err != nil {
		t.Fatalf("status on replaced socket: %v", err)
	}
}

func TestControlRefusesNonSocketFile(t *testing.T) {
	dir := socketDir(t)
	path := filepath.Join(dir, "file.sock")
	writeFile(t, path, "precious")
	ta, err := newTestAgent(t, testConfig{socket: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := ta.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Run = %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Fatal("file was touched")
	}
}

func TestControlPeerCredentials(t *testing.T) {
	var seen []uint32
	ta := startAgent(t, testConfig{}, func(o *Options) {
		o.allowPeer = func(uid uint32) bool { seen = append(seen, uid); return false }
	})
	code, _, body := doRaw(t, ta.cfg.socket, http.MethodGet, "/v1/status")
	if code != http.StatusForbidden || !isJSONError(body) || !strings.Contains(string(body), "permission denied") {
		t.Fatalf("status as a refused peer: %d %s", code, body)
	}
	if len(seen) != 1 || seen[0] != uint32(os.Getuid()) {
		t.Fatalf("peer uids checked: %v, want [%d]", seen, os.Getuid())
	}
	if !allowedPeer(0) || !allowedPeer(uint32(os.Getuid())) {
		t.Error("root or own uid refused")
	}
	if os.Getuid() == 0 && allowedPeer(65534) {
		t.Error("nobody allowed")
	}
}

func TestControlSocketMovesOnReload(t *testing.T) {
	ta := startAgent(t, testConfig{})
	oldSock := ta.cfg.socket
	newSock := filepath.Join(ta.dir, "moved", "n.sock")
	ta.rewrite(t, testConfig{socket: newSock})
	res, err := NewClient(oldSock).Reload(context.Background()) // answered on the old socket
	if err != nil || !res.OK {
		t.Fatalf("reload = %+v, %v", res, err)
	}
	st, err := NewClient(newSock).Status(context.Background())
	if err != nil || st.Config.Generation != 2 {
		t.Fatalf("status on new socket = %+v, %v", st, err)
	}
	eventually(t, "old socket removed", func() bool {
		_, err := os.Lstat(oldSock)
		return errors.Is(err, os.ErrNotExist)
	})
	if fi, err := os.Lstat(newSock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new socket mode %v %v", fi.Mode(), err)
	}
	if ta.controlPath() != newSock {
		t.Fatalf("control path %q", ta.controlPath())
	}

	// A socket path that cannot be bound fails the reload and keeps the
	// current socket.
	blocker := filepath.Join(ta.dir, "blocker")
	writeFile(t, blocker, "")
	ta.rewrite(t, testConfig{socket: blocker})
	failed := ta.Reload(context.Background())
	if failed.OK || !strings.Contains(failed.Error, "not a socket") {
		t.Fatalf("reload onto a file = %+v", failed)
	}
	if _, err := NewClient(newSock).Status(context.Background()); err != nil {
		t.Fatalf("current socket gone after failed move: %v", err)
	}
}

func TestClientUnreachable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	_, err := NewClient(sock).Status(context.Background())
	var ue *UnreachableError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "cannot reach fulcrum agent at "+sock+": is it running?") {
		t.Fatalf("Status = %v", err)
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cause not kept: %v", err)
	}
}
