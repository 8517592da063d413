package l7proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/fulcrum-lb/fulcrum/lab/require"
)

func TestForwardedHeadersUntrusted(t *testing.T) {
	b := newBackend(t, "a")
	opts := simpleOptions(b.server(1))
	opts.Proxies[0].RequestHeaders = HeaderEdits{Set: map[string]string{"X-Added": "yes"}, Delete: []string{"X-Secret"}}
	opts.Proxies[0].ResponseHeaders = HeaderEdits{Set: map[string]string{"X-Via": "fulcrum"}, Delete: []string{"Server"}}
	p := startProxy(t, opts)
	url := "http://" + addrOf(t, p, "p", "http") + "/x"
	resp, e := get(t, client(""), url, "Host", "www.example.test", "X-Forwarded-For", "6.6.6.6",
		"X-Real-IP", "6.6.6.6", "X-Forwarded-Proto", "https", "X-Secret", "s")
	if resp.StatusCode != 200 || e.Server != "a" {
		t.Fatalf("status %d server %q", resp.StatusCode, e.Server)
	}
	checks := map[string]string{
		"X-Forwarded-For":   "127.0.0.1",
		"X-Real-Ip":         "127.0.0.1",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  "www.example.test",
		"X-Added":           "yes",
		"X-Secret":          "",
	}
	for k, want := range checks {
		if got := strings.Join(e.Header[k], ","); got != want {
			t.Errorf("backend saw %s = %q, want %q", k, got, want)
		}
	}
	if e.Host != "www.example.test" {
		t.Errorf("Host = %q, want preserved", e.Host)
	}
	if resp.Header.Get("X-Via") != "fulcrum" || resp.Header.Get("Server") != "" {
		t.Errorf("response headers not edited: %v", resp.Header)
	}
}

func TestForwardedHeadersTrusted(t *testing.T) {
	b := newBackend(t, "a")
	opts := simpleOptions(b.server(1))
	opts.Proxies[0].TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")}
	p := startProxy(t, opts)
	url := "http://" + addrOf(t, p, "p", "http") + "/"
	// 203.0.113.7 is the client, 10.1.1.1 a trusted proxy in between.
	_, e := get(t, client(""), url, "X-Forwarded-For", "198.51.100.9, 203.0.113.7", "X-Forwarded-For", "10.1.1.1",
		"X-Forwarded-Proto", "https")
	if got := e.Header.Get("X-Forwarded-For"); got != "198.51.100.9, 203.0.113.7, 10.1.1.1, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", got)
	}
	if got := e.Header.Get("X-Real-Ip"); got != "203.0.113.7" {
		t.Errorf("X-Real-IP = %q, want the right-most untrusted address", got)
	}
	if got := e.Header.Get("X-Forwarded-Proto"); got != "https" {
		t.Errorf("X-Forwarded-Proto = %q, want the trusted proxy's", got)
	}
}

func TestRoutes(t *testing.T) {
	a, s := newBackend(t, "a"), newBackend(t, "static")
	opts := simpleOptions(a.server(1))
	po := &opts.Proxies[0]
	po.Backends = append(po.Backends, BackendOptions{Name: "static", Servers: []ServerOptions{s.server(1)}})
	po.DefaultBackend = "app"
	po.Routes = []RouteOptions{{Host: "*.cdn.test", Backend: "static"}, {PathPrefix: "/assets/", Backend: "static"}}
	p := startProxy(t, opts)
	base := "http://" + addrOf(t, p, "p", "http")
	for _, tc := range []struct{ host, path, want string }{
		{"www.test", "/", "a"},
		{"img.cdn.test", "/", "static"},
		{"x.y.CDN.test:80", "/", "static"},
		{"cdn.test", "/", "a"},
		{"www.test", "/assets/x.css", "static"},
	} {
		if _, e := get(t, client(""), base+tc.path, "Host", tc.host); e.Server != tc.want {
			t.Errorf("%s%s went to %q, want %q", tc.host, tc.path, e.Server, tc.want)
		}
	}
}

func TestRoundRobinIntegrationAndHealth(t *testing.T) {
	a, b2 := newBackend(t, "a"), newBackend(t, "b")
	p := startProxy(t, simpleOptions(a.server(1), b2.server(1)))
	url := "http://" + addrOf(t, p, "p", "http") + "/"
	c := client("")
	var seq []string
	for range 4 {
		_, e := get(t, c, url)
		seq = append(seq, e.Server)
	}
	if seq[0] == seq[1] || seq[1] == seq[2] || seq[2] == seq[3] {
		t.Errorf("round robin sequence %v does not alternate", seq)
	}
	if err := p.SetServerHealth("p", "app", "a", false); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if _, e := get(t, c, url); e.Server != "b" {
			t.Fatalf("request went to %q while a is down", e.Server)
		}
	}
	if err := p.SetServerHealth("p", "app", "nope", false); err == nil {
		t.Error("SetServerHealth of an unknown server succeeded")
	}
	st := p.Status().Proxies[0].Backends[0].Servers
	if st[0].State != StateDown || st[1].State != StateUp {
		t.Errorf("states %q %q", st[0].State, st[1].State)
	}
	p.SetServerHealth("p", "app", "b", false)
	if resp, _ := get(t, c, url); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("all servers down: status %d, want 503", resp.StatusCode)
	}
}

func TestPassiveHealth(t *testing.T) {
	a, b2 := newBackend(t, "a"), newBackend(t, "b")
	a.setStatus(500)
	rec := &recorder{}
	opts := simpleOptions(a.server(1), b2.server(1))
	opts.Passive = rec
	opts.Proxies[0].Backends[0].MaxFails = 2
	opts.Proxies[0].Backends[0].FailTimeout = time.Minute
	p := startProxy(t, opts)
	url := "http://" + addrOf(t, p, "p", "http") + "/"
	c := client("")
	for range 10 {
		get(t, c, url)
	}
	if n := a.count(); n != 2 {
		t.Errorf("failing server got %d requests, want 2 (max_fails)", n)
	}
	if got := rec.get(a.addr.String()); len(got) != 2 || got[0] || got[1] {
		t.Errorf("passive reports for a: %v", got)
	}
	if got := rec.get(b2.addr.String()); len(got) != 8 || !got[0] {
		t.Errorf("passive reports for b: %v", got)
	}
	sv := p.Status().Proxies[0].Backends[0].Servers[0]
	if sv.State != StatePassiveDown || sv.Errors != 2 || sv.Responses.ServerError != 2 {
		t.Errorf("status of a: %+v", sv)
	}
}

func TestRetryOnRefused(t *testing.T) {
	live := newBackend(t, "live")
	dead := ServerOptions{Name: "dead", Address: deadAddr(t), Weight: 1}
	opts := simpleOptions(dead, live.server(1))
	opts.Proxies[0].Backends[0].MaxFails = 0 // keep trying the dead one: every request must retry
	p := startProxy(t, opts)
	url := "http://" + addrOf(t, p, "p", "http") + "/"
	c := client("")
	for range 4 {
		if resp, e := get(t, c, url); resp.StatusCode != 200 || e.Server != "live" {
			t.Fatalf("GET: %d from %q", resp.StatusCode, e.Server)
		}
	}
	// A POST whose body was not sent is retried as well.
	for range 2 {
		resp, err := c.Post(url, "text/plain", strings.NewReader("hello"))
		if err != nil {
			t.Fatal(err)
		}
		var e echo
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != 200 || e.BodyLen != 5 {
			t.Fatalf("POST: %d, body %d bytes", resp.StatusCode, e.BodyLen)
		}
	}
	if r := p.Status().Proxies[0].Retries; r < 3 {
		t.Errorf("retries = %d, want at least 3", r)
	}
	// Without another server the client gets 502.
	p2 := startProxy(t, simpleOptions(dead))
	if resp, _ := get(t, c, "http://"+addrOf(t, p2, "p", "http")+"/"); resp.StatusCode != http.StatusBadGateway {
		t.Errorf("only a dead server: %d, want 502", resp.StatusCode)
	}
}

func TestLimits413And431(t *testing.T) {
	b := newBackend(t, "a")
	opts := simpleOptions(b.server(1))
	opts.Proxies[0].MaxBodySize = 1000
	opts.Proxies[0].MaxHeaderSize = 4096
	p := startProxy(t, opts)
	url := "http://" + addrOf(t, p, "p", "http") + "/"
	c := client("")
	resp, err := c.Post(url, "text/plain", strings.NewReader(strings.Repeat("x", 2000)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("Content-Length over the limit: %d, want 413", resp.StatusCode)
	}
	// Chunked: the limit is found while streaming.
	resp, err = c.Post(url, "text/plain", io.MultiReader(strings.NewReader(strings.Repeat("y", 1500))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked body over the limit: %d, want 413", resp.StatusCode)
	}
	resp, err = c.Post(url, "text/plain", strings.NewReader(strings.Repeat("z", 900)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("body under the limit: %d", resp.StatusCode)
	}
	// net/http allows 4096 bytes of slack over MaxHeaderBytes.
	resp, _ = get(t, c, url, "X-Big", strings.Repeat("h", 10000))
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("huge header: %d, want 431", resp.StatusCode)
	}
}

func TestSlowlorisCut(t *testing.T) {
	b := newBackend(t, "a")
	opts := simpleOptions(b.server(1))
	opts.Proxies[0].Timeouts.Header = 300 * time.Millisecond
	p := startProxy(t, opts)
	c, err := net.Dial("tcp", addrOf(t, p, "p", "http"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	done := make(chan time.Duration, 1)
	go func() {
		buf := make([]byte, 1024)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			if _, err := c.Read(buf); err != nil {
				done <- time.Since(start)
				return
			}
		}
	}()
	// One header byte every 50ms: never completes within the header timeout.
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n"))
	for i := 0; i < 60; i++ {
		if _, err := c.Write([]byte("X")); err != nil {
			break
		}
		select {
		case d := <-done:
			if d > 2*time.Second {
				t.Errorf("connection cut after %v, want about 300ms", d)
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatal("slow client was not cut off")
}

func TestRedirectHTTPS(t *testing.T) {
	b := newBackend(t, "a")
	opts := simpleOptions(b.server(1))
	opts.Proxies[0].Listeners = []ListenerOptions{
		{Name: "r301", Address: loopback, RedirectHTTPS: 301},
		{Name: "r308", Address: netip.MustParseAddrPort("127.0.0.2:0"), RedirectHTTPS: 308},
	}
	p := startProxy(t, opts)
	for name, code := range map[string]int{"r301": 301, "r308": 308} {
		resp, _ := get(t, client(""), "http://"+addrOf(t, p, "p", name)+"/a/b?c=d", "Host", "www.example.test:8080")
		if resp.StatusCode != code || resp.Header.Get("Location") != "https://www.example.test/a/b?c=d" {
			t.Errorf("%s: %d Location %q", name, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	if b.count() != 0 {
		t.Error("a redirected request reached the backend")
	}
}

func TestWebSocketEcho(t *testing.T) {
	ws := httptestServer(t, websocket.Handler(func(c *websocket.Conn) {
		for {
			var m string
			if websocket.Message.Receive(c, &m) != nil || websocket.Message.Send(c, m) != nil {
				return
			}
		}
	}))
	opts := simpleOptions(ServerOptions{Name: "ws", Address: ws, Weight: 1})
	p := startProxy(t, opts)
	addr := addrOf(t, p, "p", "http")
	cfg, _ := websocket.NewConfig("ws://"+addr+"/echo", "http://"+addr)
	conn, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatalf("websocket dial through the proxy: %v", err)
	}
	defer conn.Close()
	for _, msg := range []string{"hello", "fulcrum", strings.Repeat("w", 5000)} {
		if err := websocket.Message.Send(conn, msg); err != nil {
			t.Fatal(err)
		}
		var got string
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if err := websocket.Message.Receive(conn, &got); err != nil || got != msg {
			t.Fatalf("echo of %d bytes: got %d bytes, %v", len(msg), len(got), err)
		}
	}
}

func httptestServer(t *testing.T, h http.Handler) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ln) })
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	return netip.MustParseAddrPort(ln.Addr().String())
}

func TestAccessLogAndIPv6(t *testing.T) {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		require.Missing(t, "IPv6 loopback ("+err.Error()+")", "enable IPv6 on lo")
	}
	ln.Close()
	var buf bytes.Buffer
	var mu sync.Mutex
	b := newBackend(t, "a")
	opts := simpleOptions(b.server(1))
	opts.Proxies[0].Listeners[0].Address = netip.MustParseAddrPort("[::1]:0")
	opts.AccessLog = slog.New(slog.NewJSONHandler(&lockedWriter{w: &buf, mu: &mu}, nil))
	p := startProxy(t, opts)
	resp, e := get(t, client(""), "http://"+addrOf(t, p, "p", "http")+"/v6")
	if resp.StatusCode != 200 || e.Header.Get("X-Real-Ip") != "::1" {
		t.Fatalf("status %d, X-Real-IP %q", resp.StatusCode, e.Header.Get("X-Real-Ip"))
	}
	mu.Lock()
	line := buf.String()
	mu.Unlock()
	for _, want := range []string{`"msg":"request"`, `"client":"::1"`, `"status":200`, `"server":"a"`, `"uri":"/v6"`} {
		if !strings.Contains(line, want) {
			t.Errorf("access log %q lacks %s", line, want)
		}
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func TestGracefulClose(t *testing.T) {
	release := make(chan struct{})
	slow := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "done")
	}))
	p, err := New(simpleOptions(ServerOptions{Name: "slow", Address: slow, Weight: 1}))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := addrOf(t, p, "p", "http")
	got := make(chan string, 1)
	go func() {
		resp, err := client("").Get("http://" + addr + "/")
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	for p.Status().Proxies[0].ActiveRequests == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	time.Sleep(100 * time.Millisecond)
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("listener still accepts during shutdown")
	}
	select {
	case <-closed:
		t.Fatal("Close returned with a request in flight")
	default:
	}
	close(release)
	if s := <-got; s != "done" {
		t.Errorf("in-flight request: %q", s)
	}
	<-closed
}

func TestStartFailsCleanly(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := netip.MustParseAddrPort(ln.Addr().String())
	opts := simpleOptions(ServerOptions{Name: "a", Address: deadAddr(t), Weight: 1})
	opts.Proxies[0].Listeners = append(opts.Proxies[0].Listeners, ListenerOptions{Name: "taken", Address: taken})
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err == nil || !errors.Is(err, syscallEADDRINUSE()) {
		t.Errorf("Start on a taken address: %v", err)
	}
	p.Close()
}

func TestClientInactivityTimeout(t *testing.T) {
	b := newBackend(t, "a")
	opts := simpleOptions(b.server(1))
	opts.Proxies[0].Timeouts.Client = 300 * time.Millisecond
	p := startProxy(t, opts)
	c, err := net.Dial("tcp", addrOf(t, p, "p", "http"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	// The body stalls after 10 of 100 bytes.
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, _ := io.ReadAll(c)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("stalled upload held for %v", d)
	}
	if len(resp) > 0 && !strings.HasPrefix(string(resp), "HTTP/1.1 5") && !strings.HasPrefix(string(resp), "HTTP/1.1 4") {
		t.Errorf("stalled upload answered %q", resp)
	}
}
