package config

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// threeErrors has three independent mistakes in three blocks.
const threeErrors = `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 300
  virtual_ips       = ["192.0.2.10/24"]
}
virtual_server "v" {
  address   = "192.0.2.1:80"
  scheduler = "roundrobin"
  real_server "r" {
    address = "192.0.2.20"
  }
}
proxy "p" {
  listener "l" { address = "127.0.0.1:8080" }
  backend "b" {
    server "s" { address = "127.0.0.1:9000" }
  }
  max_body_size = "ten"
}
`

func TestThreeIndependentErrors(t *testing.T) {
	cfg, diags := parseIn(t.TempDir(), threeErrors, all(), nil)
	if cfg != nil {
		t.Error("got a Config despite errors")
	}
	var got []string
	for _, e := range diags.Errors() {
		got = append(got, at(e)+" "+e.Summary)
	}
	want := []string{
		"4:23 virtual_router_id out of range",
		"9:15 Invalid scheduler",
		"19:19 Invalid size",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n got %q\nwant %q", got, want)
	}
}

// TestDiagnosticsOrder checks that diagnostics come in file order whatever
// order hcl found them in (it reports unknown arguments in map order).
func TestDiagnosticsOrder(t *testing.T) {
	src := "node \"n\" {}\nlog {\n  a = 1\n  b = 2\n  c = 3\n  d = 4\n  e = 5\n}\n"
	for i := 0; i < 20; i++ {
		_, diags := Parse([]byte(src), "o.hcl", Options{})
		var lines []int
		for _, e := range diags.Errors() {
			lines = append(lines, e.Subject.Start.Line)
		}
		if !reflect.DeepEqual(lines, []int{3, 4, 5, 6, 7}) {
			t.Fatalf("run %d: lines %v, want 3..7", i, lines)
		}
	}
}

func TestWriteText(t *testing.T) {
	src := "node \"n\" {}\nvrrp_instance \"a\" {\n  interface         = \"eth0\"\n  virtual_router_id = 256\n  virtual_ips       = [\"192.0.2.10/24\"]\n}\n"
	_, diags := Parse([]byte(src), "node.hcl", all())
	var b bytes.Buffer
	if err := diags.WriteText(&b, 0, false); err != nil {
		t.Fatal(err)
	}
	want := `Error: virtual_router_id out of range

  on node.hcl:4:23, in vrrp_instance "a":
    4 |   virtual_router_id = 256
      |                       ^^^

virtual_router_id must be between 1 and 255 (RFC 5798 §5.2.3), not 256.

`
	if b.String() != want {
		t.Errorf("WriteText:\n%s\nwant:\n%s", b.String(), want)
	}

	b.Reset()
	if err := diags.WriteText(&b, 40, true); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.Contains(out, "\x1b[31mError\x1b[0m") || !strings.Contains(out, "\x1b[1;4m256\x1b[0m") {
		t.Errorf("colour output lacks colour codes:\n%q", out)
	}
	if !strings.Contains(out, "between 1 and\n255 (RFC 5798") {
		t.Errorf("detail not wrapped at 40 columns:\n%s", out)
	}
}

func TestWriteTextTabsAndNoSubject(t *testing.T) {
	src := "node \"n\" {}\nlog {\n\tlevel = \"loud\"\n}\n"
	_, diags := Parse([]byte(src), "t.hcl", Options{})
	var b bytes.Buffer
	_ = diags.WriteText(&b, 0, false)
	if !strings.Contains(b.String(), "    3 | \tlevel = \"loud\"\n      | \t        ^^^^^^\n") {
		t.Errorf("caret not aligned under a tab:\n%s", b.String())
	}

	_, diags = Load(filepath.Join(t.TempDir(), "missing.hcl"), Options{})
	b.Reset()
	_ = diags.WriteText(&b, 0, false)
	if !strings.HasPrefix(b.String(), "Error: Cannot read configuration file\n\nopen ") {
		t.Errorf("no-subject diagnostic:\n%s", b.String())
	}
}

func TestWriteJSON(t *testing.T) {
	_, diags := Parse([]byte(threeErrors), "node.hcl", all())
	var b bytes.Buffer
	if err := diags.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b.String())
	}
	if len(got) != 3 {
		t.Fatalf("%d diagnostics, want 3", len(got))
	}
	want := map[string]any{
		"severity":   "error",
		"summary":    "virtual_router_id out of range",
		"detail":     "virtual_router_id must be between 1 and 255 (RFC 5798 §5.2.3), not 300.",
		"file":       "node.hcl",
		"line":       float64(4),
		"column":     float64(23),
		"end_line":   float64(4),
		"end_column": float64(26),
		"snippet":    "  virtual_router_id = 300",
	}
	if !reflect.DeepEqual(got[0], want) {
		t.Errorf("first diagnostic\n got %v\nwant %v", got[0], want)
	}

	// No diagnostics is an empty array, not null.
	_, diags = Parse([]byte(`node "n" {}`), "ok.hcl", Options{})
	b.Reset()
	_ = diags.WriteJSON(&b)
	if strings.TrimSpace(b.String()) != "[]" {
		t.Errorf("empty diagnostics = %q, want []", b.String())
	}
}

func TestSummaryAndErr(t *testing.T) {
	_, diags := Parse([]byte(threeErrors), "node.hcl", all())
	if got, want := diags.Summary(), "node.hcl:4:23: virtual_router_id out of range"; got != want {
		t.Errorf("Summary() = %q, want %q", got, want)
	}
	if err := diags.Err(); err == nil || err.Error() != "node.hcl:4:23: virtual_router_id out of range (and 2 more errors)" {
		t.Errorf("Err() = %v", err)
	}

	cfg, diags := Parse([]byte(`node "n" {}`), "ok.hcl", Options{})
	if cfg == nil || diags == nil || diags.HasErrors() || diags.Summary() != "" || diags.Err() != nil {
		t.Errorf("valid file: cfg=%v summary=%q err=%v", cfg, diags.Summary(), diags.Err())
	}

	var nilDiags *Diagnostics
	if nilDiags.HasErrors() || nilDiags.Summary() != "" || nilDiags.Err() != nil || len(nilDiags.All()) != 0 || nilDiags.WriteText(&bytes.Buffer{}, 0, false) != nil {
		t.Error("nil *Diagnostics must behave as empty")
	}
}

func TestLoadUnreadable(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.hcl")
	cfg, diags := Load(missing, Options{})
	if cfg != nil || !diags.HasErrors() {
		t.Fatal("want an error")
	}
	if s := diags.Summary(); !strings.HasPrefix(s, "Cannot read configuration file: open "+missing) {
		t.Errorf("Summary() = %q", s)
	}
	// A device is refused rather than read forever.
	_, diags = Load("/dev/zero", Options{})
	if s := diags.Summary(); !strings.Contains(s, "not a regular file") {
		t.Errorf("Load(/dev/zero) Summary() = %q", s)
	}
}

// TestWarningsKeepConfig checks that warnings alone do not withhold the
// Config.
func TestWarningsKeepConfig(t *testing.T) {
	src := `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  virtual_ips       = ["192.0.2.10/24"]
}
sync_group "g" {
  instances = ["a"]
}
`
	cfg, diags := Parse([]byte(src), "w.hcl", all())
	if cfg == nil || diags.HasErrors() {
		t.Fatalf("warnings must not fail the load:%s", dump(diags.All()))
	}
	w := diags.Warnings()
	if len(w) != 1 || w[0].Summary != "Sync group with one instance" || at(w[0]) != "8:15" {
		t.Errorf("warnings:%s", dump(w))
	}
	if diags.Summary() != "" {
		t.Errorf("Summary() with warnings only = %q, want empty", diags.Summary())
	}
}

// TestAppend: diagnostics of the caller's own checks join the decoder's in
// file order and print with snippets.
func TestAppend(t *testing.T) {
	src := "node \"lb1\" {}\nvirtual_server \"web\" {\n  address = \"203.0.113.10:80\"\n  slow_start = \"1s\"\n}\n"
	cfg, diags := Parse([]byte(src), "a.hcl", Options{Supported: AllFeatures()})
	if cfg == nil || diags.HasErrors() {
		t.Fatalf("%v", diags.Err())
	}
	diags.Append(&hcl.Diagnostic{Severity: hcl.DiagError, Summary: "later", Subject: cfg.VirtualServers[0].Source.Ptr()},
		&hcl.Diagnostic{Severity: hcl.DiagError, Summary: "first", Subject: cfg.Node.Source.Ptr()})
	if !diags.HasErrors() || diags.Summary() != "a.hcl:1:1: first" {
		t.Fatalf("summary %q", diags.Summary())
	}
	var b bytes.Buffer
	if err := diags.WriteText(&b, 0, false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "Error: later\n\n  on a.hcl:2:1, in virtual_server \"web\":\n    2 | virtual_server \"web\" {") {
		t.Fatalf("text:\n%s", b.String())
	}
}
