package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeJournal is a datagram socket standing in for journald.
type fakeJournal struct {
	path string
	conn *net.UnixConn
}

func newFakeJournal(t *testing.T) *fakeJournal {
	t.Helper()
	path := filepath.Join(socketDir(t), "journal.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &fakeJournal{path: path, conn: conn}
}

// next reads one message (a datagram, or the memfd passed with one) and
// decodes its fields.
func (f *fakeJournal) next(t *testing.T) map[string][]string {
	t.Helper()
	buf := make([]byte, 1<<20)
	oob := make([]byte, 1024)
	_ = f.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, oobn, flags, _, err := f.conn.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatalf("fake journal: %v", err)
	}
	if flags&unix.MSG_TRUNC != 0 {
		t.Fatalf("fake journal: datagram larger than %d bytes", len(buf))
	}
	data := buf[:n]
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			t.Fatalf("control message: %v", err)
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil || len(fds) != 1 {
			t.Fatalf("unix rights: %v", err)
		}
		file := os.NewFile(uintptr(fds[0]), "memfd")
		defer file.Close()
		seals, err := unix.FcntlInt(file.Fd(), unix.F_GET_SEALS, 0)
		if err != nil || seals&unix.F_SEAL_WRITE == 0 {
			t.Fatalf("memfd not sealed: %v %x", err, seals)
		}
		// The descriptor shares the sender's offset (at the end); journald
		// maps the file from the start.
		if _, err := file.Seek(0, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		if data, err = io.ReadAll(file); err != nil {
			t.Fatal(err)
		}
	}
	return parseJournalMessage(t, data)
}

// parseJournalMessage decodes journald's native protocol.
func parseJournalMessage(t *testing.T, b []byte) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for len(b) > 0 {
		nl := bytes.IndexByte(b, '\n')
		if nl < 0 {
			t.Fatalf("unterminated field %q", b)
		}
		line := b[:nl]
		if k, v, ok := bytes.Cut(line, []byte("=")); ok {
			out[string(k)] = append(out[string(k)], string(v))
			b = b[nl+1:]
			continue
		}
		key := string(line)
		b = b[nl+1:]
		size := binary.LittleEndian.Uint64(b[:8])
		val := b[8 : 8+size]
		if b[8+size] != '\n' {
			t.Fatalf("binary field %s not terminated", key)
		}
		out[key] = append(out[key], string(val))
		b = b[8+size+1:]
	}
	return out
}

func one(t *testing.T, fields map[string][]string, key string) string {
	t.Helper()
	v := fields[key]
	if len(v) != 1 {
		t.Fatalf("field %s has %d values, want exactly one; fields: %s", key, len(v), fieldNames(fields))
	}
	return v[0]
}

// fieldNames lists the field names (values can be huge).
func fieldNames(fields map[string][]string) string {
	var names []string
	for k := range fields {
		names = append(names, k)
	}
	return strings.Join(names, " ")
}

func newTestJournalHandler(t *testing.T, path string, level slog.Leveler, fallback io.Writer) *journalHandler {
	t.Helper()
	conn, err := openJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return newJournalHandler(conn, level, slog.NewTextHandler(fallback, &slog.HandlerOptions{Level: level}))
}

func TestJournalFieldMapping(t *testing.T) {
	fj := newFakeJournal(t)
	h := newTestJournalHandler(t, fj.path, slog.LevelDebug, io.Discard)
	log := slog.New(h).With("vrrp_instance", "VI_1", "subsystem", "vrrp")
	log.WithGroup("peer").Warn("state changed",
		"addr", "10.0.0.2",
		"multi", "line one\nline two",
		slog.Group("timers", "advert", 3*time.Second),
		"bad-key.x", "v",
		"_trusted", "t",
		"message", "inside a group is fine",
	)
	f := fj.next(t)
	checks := map[string]string{
		"MESSAGE":            "state changed",
		"PRIORITY":           "4",
		"SYSLOG_IDENTIFIER":  "fulcrum",
		"VRRP_INSTANCE":      "VI_1",
		"SUBSYSTEM":          "vrrp",
		"PEER_ADDR":          "10.0.0.2",
		"PEER_MULTI":         "line one\nline two",
		"PEER_TIMERS_ADVERT": "3s",
		"PEER_BAD_KEY_X":     "v",
		"PEER_TRUSTED":       "t",
		"PEER_MESSAGE":       "inside a group is fine",
	}
	for k, want := range checks {
		if got := one(t, f, k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	for k := range f {
		if strings.HasPrefix(k, "_") || strings.ToUpper(k) != k {
			t.Errorf("invalid journal field name %q", k)
		}
	}

	// Attrs cannot override the handler's own fields.
	log.Error("real message", "message", "spoof", "priority", "0", "syslog_identifier", "other")
	f = fj.next(t)
	if one(t, f, "MESSAGE") != "real message" || one(t, f, "PRIORITY") != "3" || one(t, f, "SYSLOG_IDENTIFIER") != "fulcrum" {
		t.Errorf("own fields overridden: %q", f)
	}
	if one(t, f, "ATTR_MESSAGE") != "spoof" || one(t, f, "ATTR_PRIORITY") != "0" {
		t.Errorf("renamed attrs missing: %q", f)
	}
}

func TestJournalKey(t *testing.T) {
	for in, want := range map[string]string{
		"vrrp_instance":         "VRRP_INSTANCE",
		"node":                  "NODE",
		"real-server.ip":        "REAL_SERVER_IP",
		"_pid":                  "PID",
		"__x":                   "X",
		"1st":                   "X_1ST",
		"naïve":                 "NA_VE",
		"":                      "",
		"___":                   "",
		strings.Repeat("a", 80): strings.Repeat("A", 64),
	} {
		if got := journalKey(in); got != want {
			t.Errorf("journalKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestJournalPriority(t *testing.T) {
	for l, want := range map[slog.Level]int{
		slog.LevelDebug - 4: 7,
		slog.LevelDebug:     7,
		slog.LevelInfo:      6,
		slog.LevelInfo + 1:  5,
		slog.LevelWarn:      4,
		slog.LevelError:     3,
		slog.LevelError + 4: 2,
	} {
		if got := journalPriority(l); got != want {
			t.Errorf("journalPriority(%v) = %d, want %d", l, got, want)
		}
	}
}

func TestJournalLevelFilter(t *testing.T) {
	fj := newFakeJournal(t)
	var lv slog.LevelVar
	lv.Set(slog.LevelWarn)
	log := slog.New(newTestJournalHandler(t, fj.path, &lv, io.Discard))
	log.Info("dropped")
	log.Warn("kept")
	if got := one(t, fj.next(t), "MESSAGE"); got != "kept" {
		t.Fatalf("first record %q", got)
	}
	lv.Set(slog.LevelDebug)
	log.Debug("now kept")
	if got := one(t, fj.next(t), "MESSAGE"); got != "now kept" {
		t.Fatalf("record %q", got)
	}
}

func TestJournalLargeRecordGoesByMemfd(t *testing.T) {
	fj := newFakeJournal(t)
	log := slog.New(newTestJournalHandler(t, fj.path, slog.LevelInfo, io.Discard))
	// Larger than any datagram the kernel accepts (the send buffer is at
	// most 2*wmem_max, and we ask for 8 MiB).
	big := strings.Repeat("x", 17<<20)
	log.Info("big", "payload", big)
	f := fj.next(t)
	if one(t, f, "MESSAGE") != "big" || one(t, f, "PAYLOAD") != big {
		t.Fatalf("big record lost (payload %d bytes)", len(one(t, f, "PAYLOAD")))
	}
}

func TestJournalFallsBackToStderr(t *testing.T) {
	var stderr syncBuffer
	h := newTestJournalHandler(t, filepath.Join(t.TempDir(), "absent.sock"), slog.LevelInfo, &stderr)
	log := slog.New(h)
	log.Info("first", "node", "lb1")
	log.Info("second")
	out := stderr.String()
	if !strings.Contains(out, "journald write failed") || !strings.Contains(out, "msg=first node=lb1") || !strings.Contains(out, "msg=second") {
		t.Fatalf("fallback output:\n%s", out)
	}
	if strings.Count(out, "journald write failed") != 1 {
		t.Fatalf("failure reported more than once:\n%s", out)
	}
	if err := h.Handle(context.Background(), slog.NewRecord(time.Now(), slog.LevelInfo, "x", 0)); err != nil {
		t.Fatalf("Handle after fallback = %v", err)
	}
}

func TestJournalWanted(t *testing.T) {
	dir := t.TempDir()
	stderr, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(stderr.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	stream := func(v string) func(string) string {
		return func(k string) string {
			if k == "JOURNAL_STREAM" {
				return v
			}
			return ""
		}
	}
	match := strconv.FormatUint(uint64(st.Dev), 10) + ":" + strconv.FormatUint(st.Ino, 10)
	absent := filepath.Join(dir, "absent.sock")
	present := filepath.Join(dir, "journal.sock")
	writeFile(t, present, "")

	cases := []struct {
		name   string
		env    string
		socket string
		want   bool
	}{
		{"journal stream matches stderr", match, absent, true},
		{"journal stream names another file", "1:2", absent, false},
		{"garbage JOURNAL_STREAM", "x", absent, false},
		{"socket exists, stderr not a terminal", "", present, true},
		{"no socket, no stream", "", absent, false},
	}
	for _, c := range cases {
		if got := journalWanted(stream(c.env), stderr, c.socket); got != c.want {
			t.Errorf("%s: journalWanted = %v, want %v", c.name, got, c.want)
		}
	}
}
