package proxye2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/net/websocket"

	"github.com/fulcrum-lb/fulcrum/lab/netns"
	"github.com/fulcrum-lb/fulcrum/lab/require"
)

// chromiumArgs are the flags of every headless Chromium run here: no sandbox (tests run as
// root), no network of its own (no QUIC, updates, sync or background fetches), a throwaway
// profile.
func chromiumArgs(t *testing.T) []string {
	return []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir()}
}

// lockedBuffer is a bytes.Buffer safe for the process's writer and the test's reader.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// dumpDOM loads url in a fresh headless Chromium and returns the DOM after the page's load,
// as --dump-dom prints it.
func dumpDOM(t *testing.T, chromium, url string) string {
	t.Helper()
	var out lockedBuffer
	cmd := exec.Command(chromium, append(chromiumArgs(t), "--dump-dom", url)...)
	cmd.Stdout = &out
	p := netns.StartCmd(t, "chromium-dump-dom", cmd)
	select {
	case <-p.Done():
	case <-time.After(hangGuard):
		t.Fatalf("chromium --dump-dom %s did not finish\n%s", url, p.Output())
	}
	if err := p.Err(); err != nil {
		t.Fatalf("chromium --dump-dom %s: %v\n%s", url, err, p.Output())
	}
	return out.String()
}

// page is one tab of a headless Chromium, driven over the DevTools protocol.
type page struct {
	proc *netns.Proc
	ws   *websocket.Conn
	id   int
}

var devtoolsRE = regexp.MustCompile(`DevTools listening on ws://(127\.0\.0\.1:\d+)/`)

// openPage starts Chromium on url and connects to the tab's DevTools endpoint.
func openPage(t *testing.T, chromium, url string) *page {
	t.Helper()
	args := append(chromiumArgs(t), "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
		"--remote-allow-origins=http://127.0.0.1", url)
	p := &page{proc: netns.StartCmd(t, "chromium", exec.Command(chromium, args...))}
	p.proc.WaitOutput(t, "DevTools listening on", hangGuard)
	m := devtoolsRE.FindStringSubmatch(p.proc.Output())
	if m == nil {
		t.Fatalf("no DevTools address in Chromium's output:\n%s", p.proc.Output())
	}
	var wsURL string
	deadline := time.Now().Add(hangGuard)
	for wsURL == "" {
		resp, err := http.Get("http://" + m[1] + "/json/list")
		if err == nil {
			var targets []struct {
				Type, URL            string
				WebSocketDebuggerURL string `json:"webSocketDebuggerUrl"`
			}
			err = json.NewDecoder(resp.Body).Decode(&targets)
			resp.Body.Close()
			for _, tg := range targets {
				if tg.Type == "page" && tg.WebSocketDebuggerURL != "" {
					wsURL = tg.WebSocketDebuggerURL
				}
			}
		}
		if wsURL == "" && time.Now().After(deadline) {
			t.Fatalf("no page target in Chromium (%v)\n%s", err, p.proc.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	ws, err := websocket.Dial(wsURL, "", "http://127.0.0.1")
	if err != nil {
		t.Fatalf("DevTools websocket %s: %v", wsURL, err)
	}
	p.ws = ws
	t.Cleanup(func() { ws.Close() })
	return p
}

// eval evaluates a JavaScript expression of string value in the page.
func (p *page) eval(expr string) (string, error) {
	p.id++
	id := p.id
	req := map[string]any{"id": id, "method": "Runtime.evaluate",
		"params": map[string]any{"expression": expr, "returnByValue": true}}
	p.ws.SetDeadline(time.Now().Add(10 * time.Second))
	if err := websocket.JSON.Send(p.ws, req); err != nil {
		return "", err
	}
	for {
		var resp struct {
			ID     int `json:"id"`
			Result struct {
				Result struct {
					Value any `json:"value"`
				} `json:"result"`
				ExceptionDetails *struct {
					Text string `json:"text"`
				} `json:"exceptionDetails"`
			} `json:"result"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := websocket.JSON.Receive(p.ws, &resp); err != nil {
			return "", err
		}
		if resp.ID != id {
			continue // an event, or the answer to an abandoned request
		}
		switch {
		case resp.Error != nil:
			return "", fmt.Errorf("DevTools: %s", resp.Error.Message)
		case resp.Result.ExceptionDetails != nil:
			return "", fmt.Errorf("JavaScript: %s", resp.Result.ExceptionDetails.Text)
		}
		s, _ := resp.Result.Result.Value.(string)
		return s, nil
	}
}

// dom returns the page's DOM once it has loaded (document.readyState complete); "" while a
// navigation is under way.
func (p *page) dom() string {
	s, err := p.eval(`document.readyState === "complete" ? document.documentElement.outerHTML : ""`)
	if err != nil {
		return "" // the page is between documents (the refresh)
	}
	return s
}

// statsView is what the statistics page shows: headings and each server row's state.
type statsView struct {
	headings []string
	servers  map[string]string // server name → state column
	refresh  string            // the meta refresh interval
	text     string
}

// parseStats reads the statistics page's DOM.
func parseStats(t *testing.T, dom string) statsView {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(dom))
	if err != nil {
		t.Fatalf("parsing the DOM: %v", err)
	}
	v := statsView{servers: map[string]string{}}
	attr := func(n *html.Node, k string) string {
		for _, a := range n.Attr {
			if a.Key == k {
				return a.Val
			}
		}
		return ""
	}
	var text func(n *html.Node) string
	text = func(n *html.Node) string {
		if n.Type == html.TextNode {
			return n.Data
		}
		var b strings.Builder
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			b.WriteString(text(c))
		}
		return b.String()
	}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "h1", "h2", "h3":
				v.headings = append(v.headings, strings.Join(strings.Fields(text(n)), " "))
			case "meta":
				if attr(n, "http-equiv") == "refresh" {
					v.refresh = attr(n, "content")
				}
			case "tr":
				var cells []string
				for c := n.FirstChild; c != nil; c = c.NextSibling {
					if c.Type == html.ElementNode && c.Data == "td" {
						cells = append(cells, strings.TrimSpace(text(c)))
					}
				}
				// Server rows: name, address, state, ... with the state as the row's class.
				if class := attr(n, "class"); class != "" && len(cells) > 3 && cells[2] == class {
					v.servers[cells[0]] = cells[2]
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	v.text = text(doc)
	return v
}

func (v statsView) has(heading string) bool {
	for _, h := range v.headings {
		if strings.HasPrefix(h, heading) {
			return true
		}
	}
	return false
}

// TestStatsPageInChromium: the statistics page, behind basic authentication, renders the
// proxy, its backend and servers in a real browser; a server disabled by the operator and one
// whose process stopped (passive checking) show as down on the open page within one refresh
// interval, as they do in `fulcrum status` and the metrics; a wrong password gets 401 and no
// statistics.
func TestStatsPageInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode: a headless browser takes seconds")
	}
	chromium := require.Binary(t, "chromium")
	bs := []*backend{newBackend(t, "app1"), newBackend(t, "app2"), newBackend(t, "app3")}
	addr, metrics := freePort(t), freePort(t)
	const refresh = 2 * time.Second
	ag := newAgent(t, fmt.Sprintf(`metrics {
  listen = %q
}
proxy "www" {
  listener "l" { address = %q }
  backend "app" {
    max_fails    = 1
    fail_timeout = "5m"
%s  }
  stats {
    path     = "/stats"
    username = "admin"
    password = "s3cret-stats"
    refresh  = "%s"
  }
}
`, metrics, addr, serverBlocks(bs...), refresh))
	ag.start(t)
	c := client(addr, nil, nil)
	for range 6 {
		if resp, body := fetch(t, c, "http://"+addr+"/"); resp.StatusCode != 200 {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	}

	// The page as the browser renders it.
	pg := openPage(t, chromium, "http://admin:s3cret-stats@"+addr+"/stats")
	var v statsView
	deadline := time.Now().Add(hangGuard)
	for {
		if dom := pg.dom(); strings.Contains(dom, "Backend app") {
			v = parseStats(t, dom)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stats page never rendered; DOM:\n%s\nChromium:\n%s", pg.dom(), pg.proc.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !v.has("Fulcrum proxy statistics") || !v.has("Proxy www") || !v.has("Backend app (roundrobin; 3/3 up)") {
		t.Errorf("headings %q", v.headings)
	}
	for _, b := range bs {
		if v.servers[b.name] != "up" {
			t.Errorf("server %s shows %q; all rows: %v", b.name, v.servers[b.name], v.servers)
		}
	}
	if v.refresh != "2" {
		t.Errorf("meta refresh %q, want 2", v.refresh)
	}

	// Take app2 out by the operator, and stop app3's process: a request to it fails, is
	// retried on another server, and passive checking takes app3 out.
	if out, code := ag.cli(t, "proxy", "disable", "www", "app", "app2"); code != 0 {
		t.Fatalf("fulcrum proxy disable: %d %s", code, out)
	}
	bs[2].srv.Close()
	for range 3 {
		if resp, body := fetch(t, c, "http://"+addr+"/"); resp.StatusCode != 200 || !strings.HasPrefix(body, "app1") {
			t.Fatalf("with app2 disabled and app3 stopped: %d %q", resp.StatusCode, body)
		}
	}
	// Within one refresh interval (and the time a load takes) of both changes, the open page
	// shows both servers down, by refreshing itself.
	start := time.Now()
	limit := refresh + 1500*time.Millisecond
	for {
		if dom := pg.dom(); dom != "" {
			v = parseStats(t, dom)
			if v.servers["app2"] == "down" && v.servers["app3"] == "passive_down" {
				break
			}
		}
		if time.Since(start) > limit {
			t.Fatalf("after %v the open page still shows %v (want app2 down, app3 passive_down)", time.Since(start), v.servers)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the open page showed the servers down %v after the change (refresh %v)", time.Since(start).Round(time.Millisecond), refresh)
	if v.servers["app1"] != "up" || !v.has("Backend app (roundrobin; 1/3 up)") {
		t.Errorf("servers %v, headings %q", v.servers, v.headings)
	}

	// A fresh load shows the same (the --dump-dom way), and so do status and metrics.
	if v := parseStats(t, dumpDOM(t, chromium, "http://admin:s3cret-stats@"+addr+"/stats")); v.servers["app2"] != "down" || v.servers["app3"] != "passive_down" {
		t.Errorf("a fresh load shows %v", v.servers)
	}
	out, _ := ag.cli(t, "status")
	for _, want := range []string{"\nl7proxy:\n  configured: 1\n  state: running: 1 proxy, 1 listener, 1/3 servers up, 1 passive_down, 1 disabled\n",
		"  proxy www:", "    backend app (roundrobin): 1/3 up\n", "      app2 " + bs[1].addr() + ": DISABLED,", "      app3 " + bs[2].addr() + ": PASSIVE_DOWN,"} {
		if !strings.Contains(out, want) {
			t.Errorf("fulcrum status lacks %q:\n%s", want, out)
		}
	}
	resp, body := fetch(t, client(metrics, nil, nil), "http://"+metrics+"/metrics")
	for _, want := range []string{
		`fulcrum_proxy_server_up{backend="app",proxy="www",server="app1"} 1`,
		`fulcrum_proxy_server_up{backend="app",proxy="www",server="app2"} 0`,
		`fulcrum_proxy_server_disabled{backend="app",proxy="www",server="app2"} 1`,
		`fulcrum_proxy_retries_total{proxy="www"} 1`,
		`fulcrum_proxy_requests_total{class="2xx",proxy="www"}`,
	} {
		if resp.StatusCode != 200 || !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// A wrong password: 401, and Chromium shows no statistics.
	dom := dumpDOM(t, chromium, "http://admin:wrong@"+addr+"/stats")
	if strings.Contains(dom, "Proxy www") || strings.Contains(dom, "app1") {
		t.Errorf("with a wrong password Chromium shows:\n%s", dom)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/stats", nil)
	req.SetBasicAuth("admin", "wrong")
	wrong, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(wrong.Body)
	wrong.Body.Close()
	if wrong.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(wrong.Header.Get("WWW-Authenticate"), "Basic ") || strings.Contains(string(page), "app1") {
		t.Errorf("wrong password: %d %q %q", wrong.StatusCode, wrong.Header.Get("WWW-Authenticate"), page)
	}
}
