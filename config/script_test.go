package config

import (
	"slices"
	"testing"
	"time"
)

// TestVRRPScript: a vrrp_script's defaults (keepalived's), and track_script taking the
// script's weight unless it sets its own.
func TestVRRPScript(t *testing.T) {
	src := `node "n" {}
vrrp_script "chk_db" {
  command = ["/usr/local/bin/check-db", "--quick"]
  weight  = -20
}
vrrp_script "chk_app" {
  command  = ["/usr/local/bin/check-app"]
  user     = "nobody"
  interval = "2s"
  timeout  = "500ms"
  rise     = 3
  fall     = 2
}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  virtual_ips       = ["192.0.2.10/24"]
  track_script "chk_db" {}
  track_script "chk_app" {
    weight = -50
  }
}
`
	cfg, diags := parseIn(t.TempDir(), src, all(), nil)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if len(cfg.VRRPScripts) != 2 {
		t.Fatalf("scripts: %+v", cfg.VRRPScripts)
	}
	db, app := cfg.VRRPScripts[0], cfg.VRRPScripts[1]
	if db.Name != "chk_db" || !slices.Equal(db.Command, []string{"/usr/local/bin/check-db", "--quick"}) ||
		db.Interval != time.Second || db.Timeout != time.Second || db.Rise != 1 || db.Fall != 1 || db.Weight != -20 || db.User != "" {
		t.Errorf("chk_db = %+v, want keepalived's defaults (1s, timeout = interval, rise 1, fall 1)", db)
	}
	if app.Interval != 2*time.Second || app.Timeout != 500*time.Millisecond || app.Rise != 3 || app.Fall != 2 || app.User != "nobody" || app.Weight != 0 {
		t.Errorf("chk_app = %+v", app)
	}
	got := cfg.VRRPInstances[0].TrackScripts
	if len(got) != 2 || got[0].Name != "chk_db" || got[0].Weight != -20 || got[1].Name != "chk_app" || got[1].Weight != -50 {
		t.Errorf("track_script = %+v, want chk_db with the script's -20 and chk_app with its own -50", got)
	}
}
