package kernel

import (
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
)

// TestCpio reads back the archive cpioWriter writes.
func TestCpio(t *testing.T) {
	var w cpioWriter
	w.dir("bin", 0o755)
	w.file("bin/x", 0o755, []byte("hello"))
	w.symlink("bin/sh", "x")
	w.charDev("console", 0o600, 5, 1)
	data := w.bytes()
	type entry struct {
		name      string
		mode      uint64
		body      string
		maj, mnor uint64
	}
	var got []entry
	for off := 0; ; {
		if len(data)-off < 110 || string(data[off:off+6]) != "070701" {
			t.Fatalf("no header at %d", off)
		}
		field := func(i int) uint64 {
			v, err := strconv.ParseUint(string(data[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		mode, size, maj, mnor, namesize := field(1), int(field(6)), field(9), field(10), int(field(11))
		name := string(data[off+110 : off+110+namesize-1])
		off = (off + 110 + namesize + 3) &^ 3
		body := string(data[off : off+size])
		off = (off + size + 3) &^ 3
		if name == "TRAILER!!!" {
			if off != len(data) {
				t.Errorf("%d bytes after the trailer", len(data)-off)
			}
			break
		}
		got = append(got, entry{name, mode, body, maj, mnor})
	}
	want := []entry{
		{"bin", 0o040755, "", 0, 0},
		{"bin/x", 0o100755, "hello", 0, 0},
		{"bin/sh", 0o120777, "x", 0, 0},
		{"console", 0o020600, "", 5, 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestModuleLoadOrder(t *testing.T) {
	dir := t.TempDir()
	dep := `kernel/a.ko: kernel/b.ko kernel/c.ko
kernel/b.ko: kernel/c.ko
kernel/c.ko:
kernel/d-x.ko: kernel/c.ko
`
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/e.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := moduleLoadOrder(dir, []string{"a", "e", "d_x", "b"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"kernel/c.ko", "kernel/b.ko", "kernel/a.ko", "kernel/d-x.ko"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if _, err := moduleLoadOrder(dir, []string{"nope"}); err == nil {
		t.Error("unknown module: no error")
	}
}

// TestJobScript runs a job script on the host: it must reproduce the arguments and the
// environment exactly, whatever they contain.
func TestJobScript(t *testing.T) {
	env := "/usr/bin/env"
	if _, err := os.Stat(env); err != nil {
		t.Skip("no /usr/bin/env")
	}
	dir := t.TempDir()
	script := jobScript(dir, []string{"A=it's $HOME `x` \"q\"", "B=\n"},
		[]string{"sh", "-c", `printf '%s|' "$PWD" "$A" "$B" "$FULCRUM_IN_GUEST" "$@"`, "zero", "a b", "'", ""})
	out, err := exec.Command("/bin/sh", "-c", string(script)).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, script, out)
	}
	want := dir + "|it's $HOME `x` \"q\"|\n|1|a b|'||"
	if string(out) != want {
		t.Errorf("got  %q\nwant %q\nscript:\n%s", out, want, script)
	}
}

func TestRunPattern(t *testing.T) {
	if got, want := runPattern("TestA/sub_1.x"), `^TestA$/^sub_1\.x$`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestBzImagePayload(t *testing.T) {
	img := make([]byte, 0x1000)
	copy(img[0x202:], "HdrS")
	img[0x1f1] = 2 // setup_sects: the protected-mode code starts at 3*512
	payload := []byte("\xfd7zXZ\x00rest")
	copy(img[3*512+0x100:], payload)
	img[0x248], img[0x249] = 0x00, 0x01 // payload_offset 0x100
	img[0x24c] = byte(len(payload))
	got, err := bzImagePayload(img)
	if err != nil || !bytes.Equal(got, payload) {
		t.Errorf("got %s, %v", hex.EncodeToString(got), err)
	}
	if _, err := bzImagePayload(make([]byte, 0x300)); err == nil {
		t.Error("no HdrS: no error")
	}
}
