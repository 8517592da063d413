package config

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fuzzSystem reads no files at all, so that generated file() calls and
// certificate paths cannot touch the machine (or block on a device).
func fuzzSystem() system {
	return system{
		lookupEnv: func(name string) (string, bool) {
			if name == "FULCRUM_SET" {
				return "value", true
			}
			return "", false
		},
		readFile: func(path string, _ int64) ([]byte, error) {
			return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
		},
	}
}

// FuzzParse checks that no input panics, and the invariants every caller
// relies on: a Config exactly when there is no error, and diagnostics that
// render.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*.hcl")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		src, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	for _, tc := range badConfigs() {
		f.Add([]byte(tc.src))
	}
	f.Add([]byte(threeErrors))
	f.Add([]byte(`node "n" { interfaces = env("FULCRUM_SET", "x") }`))
	f.Add([]byte("node \"n\" {}\nlog { level = file(\"x\") }\n"))
	f.Add([]byte("\xff\xfe"))

	f.Fuzz(func(t *testing.T, src []byte) {
		start := time.Now()
		cfg, diags := parse(src, "fuzz.hcl", Options{Supported: AllFeatures()}, fuzzSystem())
		if el := time.Since(start); el > 5*time.Second {
			// Inputs are small; a slow decode is a denial of service
			// (TestHugeNumbers has the one found so far).
			t.Fatalf("decoding took %v", el)
		}
		if diags == nil {
			t.Fatal("nil diagnostics")
		}
		if (cfg == nil) != diags.HasErrors() {
			t.Fatalf("cfg nil = %v but HasErrors = %v", cfg == nil, diags.HasErrors())
		}
		if (diags.Summary() == "") == diags.HasErrors() {
			t.Fatalf("Summary %q with HasErrors = %v", diags.Summary(), diags.HasErrors())
		}
		var b bytes.Buffer
		if err := diags.WriteText(&b, 80, true); err != nil {
			t.Fatal(err)
		}
		if err := diags.WriteJSON(&b); err != nil {
			t.Fatal(err)
		}
		for _, d := range diags.All() {
			if d.Summary == "" {
				t.Fatalf("diagnostic without summary: %+v", d)
			}
		}
	})
}

// TestHugeNumbers is a regression test for an input the fuzzer found:
// printing 1e99999999, or converting it to a string, took minutes.
func TestHugeNumbers(t *testing.T) {
	for _, expr := range []string{"1e99999999", "-1e-99999999", "[1e99999999]", "1e-99999999 * 1e-9999999"} {
		src := "node \"n\" {}\nproxy \"a\" {\n  max_body_size = " + expr + "\n}\n"
		done := make(chan string, 1)
		go func() {
			_, d := parse([]byte(src), "x.hcl", all(), fuzzSystem())
			for _, e := range d.Errors() {
				if at(e) == "3:19" {
					done <- e.Summary
				}
			}
			done <- "no error at 3:19"
		}()
		select {
		case got := <-done:
			if got != "max_body_size out of range" {
				t.Errorf("%s: %q", expr, got)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: still decoding after 10s", expr)
		}
	}
}
