package l7proxy

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"
)

//go:embed stats.html
var statsHTML string

// statsTemplate parses the embedded page; it is parsed per proxy generation (cheap, and no
// package-level state).
func statsTemplate() *template.Template {
	return template.Must(template.New("stats").Funcs(template.FuncMap{
		"rate": func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
	}).Parse(statsHTML))
}

func (pr *proxyRT) statsPath() string {
	if pr.opts.Stats == nil {
		return ""
	}
	if pr.opts.Stats.Path == "" {
		return "/stats"
	}
	return pr.opts.Stats.Path
}

func (pr *proxyRT) isStatsPath(path string) bool {
	sp := pr.statsPath()
	return sp != "" && (path == sp || path == sp+";json")
}

type statsPage struct {
	Now     string
	Refresh int
	Status  Status
}

// serveStats serves the statistics page (HTML, or JSON for `;json` or ?format=json).
func (pr *proxyRT) serveStats(w http.ResponseWriter, r *http.Request) {
	so := pr.opts.Stats
	if so.Username != "" && !pr.statsAuthorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="fulcrum stats", charset="UTF-8"`)
		http.Error(w, "401 Unauthorized", http.StatusUnauthorized)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "405 Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	st := pr.owner.Status()
	w.Header().Set("Cache-Control", "no-store")
	if strings.HasSuffix(r.URL.Path, ";json") || r.URL.Query().Get("format") == "json" {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(st)
		return
	}
	page := statsPage{Now: time.Now().UTC().Format(time.RFC3339), Status: st}
	if so.Refresh > 0 {
		page.Refresh = max(1, int(so.Refresh/time.Second))
	}
	var buf bytes.Buffer
	if err := statsTemplate().Execute(&buf, page); err != nil {
		pr.log.Error("stats page", "proxy", pr.name, "error", err)
		http.Error(w, "500 Internal Server Error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.Write(buf.Bytes())
}

// statsAuthorized compares the credentials in constant time (over hashes, so that the
// lengths do not leak either).
func (pr *proxyRT) statsAuthorized(r *http.Request) bool {
	u, p, ok := r.BasicAuth()
	if !ok {
		return false
	}
	so := pr.opts.Stats
	hu, wu := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(so.Username))
	hp, wp := sha256.Sum256([]byte(p)), sha256.Sum256([]byte(so.Password))
	return subtle.ConstantTimeCompare(hu[:], wu[:])&subtle.ConstantTimeCompare(hp[:], wp[:]) == 1
}
