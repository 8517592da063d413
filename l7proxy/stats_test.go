package l7proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestStatsPage(t *testing.T) {
	a, b := newBackend(t, "app1"), newBackend(t, "app2")
	opts := simpleOptions(a.server(3), b.server(1))
	opts.Proxies[0].Stats = &StatsOptions{Path: "/stats", Username: "admin", Password: "s3cret<>", Refresh: 5 * time.Second}
	p := startProxy(t, opts)
	p.SetServerHealth("p", "app", "app2", false)
	base := "http://" + addrOf(t, p, "p", "http")
	c := client("")
	get(t, c, base+"/")

	fetch := func(path, user, pass string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	for _, cred := range [][2]string{{"", ""}, {"admin", "wrong"}, {"root", "s3cret<>"}, {"admin", "s3cret<"}} {
		resp, _ := fetch("/stats", cred[0], cred[1])
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("credentials %q: %d, WWW-Authenticate %q", cred, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	resp, html := fetch("/stats", "admin", "s3cret<>")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("HTML: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{`<meta http-equiv="refresh" content="5">`, "Proxy p", "Backend app", "app1", "app2",
		`<tr class="down">`, `<tr class="up">`, "roundrobin", "<td>3</td>"} {
		if !strings.Contains(html, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	if strings.Contains(html, "s3cret") {
		t.Error("the password appears on the page")
	}
	for _, path := range []string{"/stats;json", "/stats?format=json"} {
		resp, body := fetch(path, "admin", "s3cret<>")
		var st Status
		if err := json.Unmarshal([]byte(body), &st); err != nil || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %v %q", path, err, body)
		}
		sv := st.Proxies[0].Backends[0].Servers
		if len(sv) != 2 || sv[0].State != StateUp || sv[1].State != StateDown || sv[0].Weight != 3 || sv[0].TotalSessions != 1 {
			t.Errorf("%s: servers %+v", path, sv)
		}
		if st.Proxies[0].Responses.Success < 1 {
			t.Errorf("%s: responses %+v", path, st.Proxies[0].Responses)
		}
	}
	// Stats requests are not forwarded.
	if a.count()+b.count() != 1 {
		t.Errorf("backends got %d requests, want 1", a.count()+b.count())
	}
}
