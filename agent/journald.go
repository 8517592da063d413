package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultJournalSocket is where systemd-journald receives native-protocol
// datagrams.
const DefaultJournalSocket = "/run/systemd/journal/socket"

// journalIdentifier is the SYSLOG_IDENTIFIER of every record the agent sends.
const journalIdentifier = "fulcrum"

const (
	journalSendBuffer   = 8 << 20 // what systemd itself asks for
	journalWriteTimeout = 2 * time.Second
	journalMaxKeyLen    = 64
)

// journalConn is an unconnected datagram socket that sends to journald's
// socket, so a journald restart needs no reconnect.
type journalConn struct {
	addr *net.UnixAddr

	mu   sync.Mutex // one datagram at a time; guards the write deadline
	conn *net.UnixConn
}

// openJournal opens a datagram socket for the journal at path. It does not
// check that anyone listens there; a failed send reports that.
func openJournal(path string) (*journalConn, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("journal socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "journal")
	c, err := net.FileConn(f)
	f.Close() // FileConn dups the descriptor
	if err != nil {
		return nil, fmt.Errorf("journal socket: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("journal socket: unexpected connection type %T", c)
	}
	_ = uc.SetWriteBuffer(journalSendBuffer) // best effort; large records go by memfd anyway
	return &journalConn{addr: &net.UnixAddr{Name: path, Net: "unixgram"}, conn: uc}, nil
}

// send writes one native-protocol message. A message too large for a
// datagram is written to a sealed memfd whose descriptor is passed instead,
// as journald's protocol describes.
func (j *journalConn) send(msg []byte) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	_ = j.conn.SetWriteDeadline(time.Now().Add(journalWriteTimeout))
	_, err := j.conn.WriteToUnix(msg, j.addr)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EMSGSIZE) && !errors.Is(err, unix.ENOBUFS) {
		return fmt.Errorf("journal send: %w", err)
	}
	fd, err := unix.MemfdCreate("fulcrum-journal", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return fmt.Errorf("journal memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "fulcrum-journal")
	defer f.Close()
	if _, err := f.Write(msg); err != nil {
		return fmt.Errorf("journal memfd: %w", err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		return fmt.Errorf("journal memfd seal: %w", err)
	}
	if _, _, err := j.conn.WriteMsgUnix(nil, unix.UnixRights(int(f.Fd())), j.addr); err != nil {
		return fmt.Errorf("journal send memfd: %w", err)
	}
	return nil
}

func (j *journalConn) Close() error { return j.conn.Close() }

// journalHandler is a slog.Handler speaking journald's native protocol.
// Every record carries MESSAGE, PRIORITY and SYSLOG_IDENTIFIER; every attr
// becomes a field named by journalKey (groups joined with "_"). When a send
// fails the record goes to fallback (text on stderr) instead of being lost.
type journalHandler struct {
	conn       *journalConn
	level      slog.Leveler
	identifier string
	prefix     string // sanitized group prefix, ending in "_" when set
	pre        []byte // fields from WithAttrs, already encoded
	fallback   slog.Handler
	failing    *atomic.Bool // shared: a send failure was reported and no send succeeded since
}

func newJournalHandler(conn *journalConn, level slog.Leveler, fallback slog.Handler) *journalHandler {
	return &journalHandler{
		conn:       conn,
		level:      level,
		identifier: journalIdentifier,
		fallback:   fallback,
		failing:    new(atomic.Bool),
	}
}

// Enabled implements slog.Handler.
func (h *journalHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

// Handle implements slog.Handler.
func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	buf := make([]byte, 0, 512)
	buf = appendJournalField(buf, "MESSAGE", r.Message)
	buf = appendJournalField(buf, "PRIORITY", strconv.Itoa(journalPriority(r.Level)))
	buf = appendJournalField(buf, "SYSLOG_IDENTIFIER", h.identifier)
	buf = append(buf, h.pre...)
	r.Attrs(func(a slog.Attr) bool {
		buf = appendJournalAttr(buf, h.prefix, a)
		return true
	})
	err := h.conn.send(buf)
	if err == nil {
		h.failing.Store(false)
		return nil
	}
	if h.failing.CompareAndSwap(false, true) {
		note := slog.NewRecord(time.Now(), slog.LevelWarn, "journald write failed, logging to stderr", 0)
		note.AddAttrs(slog.Any("error", err))
		_ = h.fallback.Handle(ctx, note)
	}
	return h.fallback.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h *journalHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h2 := *h
	h2.pre = append([]byte(nil), h.pre...)
	for _, a := range attrs {
		h2.pre = appendJournalAttr(h2.pre, h.prefix, a)
	}
	h2.fallback = h.fallback.WithAttrs(attrs)
	return &h2
}

// WithGroup implements slog.Handler.
func (h *journalHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	if k := journalKey(name); k != "" {
		h2.prefix = h.prefix + k + "_"
	}
	h2.fallback = h.fallback.WithGroup(name)
	return &h2
}

// journalPriority maps a slog level to a syslog priority (0 emerg .. 7 debug).
func journalPriority(l slog.Level) int {
	switch {
	case l < slog.LevelInfo:
		return 7 // debug
	case l == slog.LevelInfo:
		return 6 // info
	case l < slog.LevelWarn:
		return 5 // notice
	case l < slog.LevelError:
		return 4 // warning
	case l == slog.LevelError:
		return 3 // err
	default:
		return 2 // crit
	}
}

// reservedJournalKeys are fields the handler sets itself; attrs with these
// names are renamed so they cannot override them.
var reservedJournalKeys = map[string]bool{"MESSAGE": true, "PRIORITY": true, "SYSLOG_IDENTIFIER": true}

// journalKey turns a slog key into a journald field name: upper case,
// characters outside [A-Z0-9_] replaced by "_", leading underscores removed
// (those name trusted fields), an "X_" prefix when it would start with a
// digit, at most 64 bytes. It returns "" when nothing usable is left.
func journalKey(k string) string {
	b := make([]byte, 0, len(k))
	for _, c := range k {
		switch {
		case c >= 'a' && c <= 'z':
			b = append(b, byte(c-'a'+'A'))
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
			b = append(b, byte(c))
		default:
			b = append(b, '_')
		}
	}
	i := 0
	for i < len(b) && b[i] == '_' {
		i++
	}
	b = b[i:]
	if len(b) == 0 {
		return ""
	}
	if b[0] >= '0' && b[0] <= '9' {
		b = append([]byte("X_"), b...)
	}
	if len(b) > journalMaxKeyLen {
		b = b[:journalMaxKeyLen]
	}
	return string(b)
}

// appendJournalAttr encodes a (resolving LogValuers, flattening groups).
func appendJournalAttr(buf []byte, prefix string, a slog.Attr) []byte {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return buf
	}
	if a.Value.Kind() == slog.KindGroup {
		attrs := a.Value.Group()
		if len(attrs) == 0 {
			return buf
		}
		if k := journalKey(a.Key); k != "" {
			prefix += k + "_"
		}
		for _, ga := range attrs {
			buf = appendJournalAttr(buf, prefix, ga)
		}
		return buf
	}
	k := journalKey(a.Key)
	if k == "" {
		return buf
	}
	key := prefix + k
	if len(key) > journalMaxKeyLen {
		key = key[:journalMaxKeyLen]
	}
	if reservedJournalKeys[key] {
		key = "ATTR_" + key
	}
	var v string
	switch a.Value.Kind() {
	case slog.KindTime:
		v = a.Value.Time().Format(time.RFC3339Nano)
	default:
		v = a.Value.String()
	}
	return appendJournalField(buf, key, v)
}

// appendJournalField encodes one field: KEY=value\n, or for values holding a
// newline KEY\n<uint64 LE length><value>\n.
func appendJournalField(buf []byte, key, value string) []byte {
	buf = append(buf, key...)
	if !containsNewline(value) {
		buf = append(buf, '=')
		buf = append(buf, value...)
		return append(buf, '\n')
	}
	buf = append(buf, '\n')
	buf = binary.LittleEndian.AppendUint64(buf, uint64(len(value)))
	buf = append(buf, value...)
	return append(buf, '\n')
}

func containsNewline(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return true
		}
	}
	return false
}
