package config

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestProxyAttrDefaults checks the defaults of the proxy attributes that
// HAProxy and nginx users expect (retries, access_log, trusted_proxies,
// sticky_key, h2c, send_proxy_protocol, response_headers, the per-client
// limits of rate_limit).
func TestProxyAttrDefaults(t *testing.T) {
	src := `node "n" {}
proxy "p" {
  listener "l" { address = "127.0.0.1:8080" }
  backend "b" {
    server "s" { address = "127.0.0.1:9000" }
  }
  rate_limit {
    max_connections_per_client = 4
  }
}
`
	cfg, diags := Parse([]byte(src), "p.hcl", all())
	if diags.HasErrors() {
		t.Fatalf("%s", dump(diags.All()))
	}
	p := cfg.Proxies[0]
	if p.Retries != 2 || p.AccessLog || p.TrustedProxies != nil || p.StickyKey.IsSet() {
		t.Errorf("proxy defaults: retries %d access_log %v trusted %v sticky_key set %v", p.Retries, p.AccessLog, p.TrustedProxies, p.StickyKey.IsSet())
	}
	if p.Listeners[0].H2C || p.Backends[0].SendProxyProtocol != 0 {
		t.Errorf("h2c %v send_proxy_protocol %d", p.Listeners[0].H2C, p.Backends[0].SendProxyProtocol)
	}
	if p.ResponseHeaders.Set != nil || p.ResponseHeaders.Delete != nil {
		t.Errorf("response_headers = %+v", p.ResponseHeaders)
	}
	want := RateLimit{Requests: 0, Per: time.Second, MaxConnectionsPerClient: 4, MaxClients: 100000}
	if *p.RateLimit != want {
		t.Errorf("rate_limit = %+v, want %+v", *p.RateLimit, want)
	}
}

// TestProxyAttrSameStickyKey: the same sticky_key in two proxies is fine.
func TestProxyAttrSameStickyKey(t *testing.T) {
	src := `node "n" {}
proxy "p" {
  listener "l" { address = "127.0.0.1:8080" }
  backend "b" {
    server "s" { address = "127.0.0.1:9000" }
  }
  sticky_key = "0123456789abcdef"
  retries    = 0
}
proxy "q" {
  listener "l" { address = "127.0.0.1:8081" }
  backend "b" {
    server "s" { address = "127.0.0.1:9000" }
  }
  sticky_key = "0123456789abcdef"
}
`
	cfg, diags := Parse([]byte(src), "p.hcl", all())
	if diags.HasErrors() {
		t.Fatalf("%s", dump(diags.All()))
	}
	if cfg.Proxies[0].Retries != 0 || cfg.Proxies[1].StickyKey.Reveal() != "0123456789abcdef" {
		t.Errorf("retries %d, sticky key %q", cfg.Proxies[0].Retries, cfg.Proxies[1].StickyKey.Reveal())
	}
}

// TestDiagnosticsMaskStickyKey: a sticky_key literal never shows in a
// snippet, also when the diagnostic is about it.
func TestDiagnosticsMaskStickyKey(t *testing.T) {
	src := `node "n" {}
proxy "p" {
  listener "l" { address = "127.0.0.1:8080" }
  backend "b" {
    server "s" { address = "127.0.0.1:9000" }
  }
  sticky_key = "tooshort"
}
`
	_, diags := Parse([]byte(src), "s.hcl", all())
	if len(diags.Errors()) != 1 {
		t.Fatalf("want 1 error:%s", dump(diags.All()))
	}
	var text, js bytes.Buffer
	_ = diags.WriteText(&text, 0, false)
	_ = diags.WriteJSON(&js)
	for _, out := range []string{text.String(), js.String(), diags.Summary()} {
		if strings.Contains(out, "tooshort") {
			t.Errorf("diagnostics show the sticky_key:\n%s", out)
		}
	}
	if !strings.Contains(text.String(), "sticky_key = ****") {
		t.Errorf("masked snippet missing:\n%s", text.String())
	}
}
