package journal

import (
	"os"
	"strings"
	"testing"
)

// TestMachineIDFallback forces the path taken when the host's /etc/machine-id is missing or
// malformed: an overlay on /etc inside journald's namespace supplies a fresh id, and the host's
// file is left alone.
func TestMachineIDFallback(t *testing.T) {
	t.Parallel()
	before, _ := os.ReadFile("/etc/machine-id")
	j := start(t, true)
	ents, err := os.ReadDir(j.Dir())
	if err != nil || len(ents) != 1 {
		t.Fatalf("journal dir: %v %v", ents, err)
	}
	id := ents[0].Name()
	if len(id) != 32 {
		t.Fatalf("journal subdirectory %q is not a machine id", id)
	}
	if id == strings.TrimSpace(string(before)) {
		t.Fatalf("journald used the host's machine id %s", id)
	}
	e := j.WaitEntry(t, "_MACHINE_ID="+id)
	if e["MESSAGE"] == "" {
		t.Fatalf("entry %v", e)
	}
	if after, _ := os.ReadFile("/etc/machine-id"); string(after) != string(before) {
		t.Fatalf("host /etc/machine-id changed: %q -> %q", before, after)
	}
}

func TestDecodeValue(t *testing.T) {
	es, err := parseJSONLines([]byte(`{"A":"x","B":[104,105],"C":["one",[116,119,111]],"D":null}` + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := es[0]
	if e["A"] != "x" || e["B"] != "hi" || e["C"] != "one\ntwo" || e["D"] != "" {
		t.Fatalf("%q", e)
	}
}
