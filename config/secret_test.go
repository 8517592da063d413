package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestSecretNeverPrints(t *testing.T) {
	s := NewSecret("hunter2")
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s", "%T"} {
		if out := fmt.Sprintf(verb, s); strings.Contains(out, "hunter2") || strings.Contains(out, "68756e74657232") {
			t.Errorf("%s printed %q", verb, out)
		}
	}
	if out := fmt.Sprint(s) + fmt.Sprintln(s); strings.Contains(out, "hunter2") {
		t.Errorf("Sprint printed %q", out)
	}
	b, _ := json.Marshal(struct{ P Secret }{s})
	var back struct{ P string }
	if err := json.Unmarshal(b, &back); err != nil || back.P != Redacted {
		t.Errorf("JSON %s", b)
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "password", s)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "password", s)
	if strings.Contains(buf.String(), "hunter2") {
		t.Errorf("slog printed %s", buf.String())
	}
	if s.Reveal() != "hunter2" || !s.IsSet() || NewSecret("").IsSet() || (Secret{}).IsSet() || (Secret{}).Reveal() != "" {
		t.Error("Reveal/IsSet")
	}
}

// TestConfigFormattingRedactsPasswords formats the whole decoded full.hcl
// in every way a log line or debug dump might, and looks for the passwords.
func TestConfigFormattingRedactsPasswords(t *testing.T) {
	cfg, diags, _ := loadFull(t, nil)
	if diags.HasErrors() {
		t.Fatalf("%s", dump(diags.All()))
	}
	secrets := []string{"s3cret", "hunter2-stats", "sticky-0123456789-abcdef"}
	if cfg.VRRPInstances[2].Authentication.Password.Reveal() != secrets[0] || cfg.Proxies[0].Stats.Password.Reveal() != secrets[1] ||
		cfg.Proxies[0].StickyKey.Reveal() != secrets[2] {
		t.Fatal("the fixture's passwords changed; update this test")
	}
	var outs []string
	// "%s" and "%d" make fmt fall back to printing fields by reflection,
	// without calling their methods.
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%d", "%x"} {
		outs = append(outs, fmt.Sprintf(verb, cfg), fmt.Sprintf(verb, *cfg))
	}
	j, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	outs = append(outs, string(j))
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("loaded", "config", cfg)
	outs = append(outs, buf.String())
	for _, out := range outs {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Fatalf("formatted Config contains the password %q", s)
			}
		}
	}
}

// TestDiagnosticsMaskPasswords checks that source snippets never show a
// password literal, on the password's own line or any other diagnostic.
func TestDiagnosticsMaskPasswords(t *testing.T) {
	src := `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  version           = 2
  virtual_ips       = ["192.0.2.10/24"]
  authentication { password = "topsecret-too-long" }
}
proxy "p" {
  listener "l" { address = "127.0.0.1:8080" }
  backend "b" {
    server "s" { address = "127.0.0.1:9000" }
  }
  stats {
    password = <<EOT
multi-line-secret
EOT
  }
}
`
	_, diags := Parse([]byte(src), "s.hcl", all())
	if len(diags.Errors()) != 2 {
		t.Fatalf("want 2 errors:%s", dump(diags.All()))
	}
	var text, js bytes.Buffer
	_ = diags.WriteText(&text, 0, false)
	_ = diags.WriteJSON(&js)
	for _, out := range []string{text.String(), js.String(), diags.Summary()} {
		for _, s := range []string{"topsecret", "multi-line-secret"} {
			if strings.Contains(out, s) {
				t.Errorf("diagnostics show %q:\n%s", s, out)
			}
		}
	}
	if !strings.Contains(text.String(), `authentication { password = ********************" }`[:43]) {
		t.Errorf("masked snippet missing:\n%s", text.String())
	}
	// The caller's source is not modified.
	if !strings.Contains(src, "topsecret-too-long") {
		t.Error("source modified")
	}
}
