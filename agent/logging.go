package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Log targets (config log.target, flag -log-target).
const (
	LogTargetAuto     = "auto"
	LogTargetJournald = "journald"
	LogTargetStderr   = "stderr"
)

// ParseLogLevel parses debug|info|warn|error ("" means info).
func ParseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
}

// ParseLogTarget checks auto|journald|stderr ("" means auto).
func ParseLogTarget(s string) (string, error) {
	switch t := strings.ToLower(strings.TrimSpace(s)); t {
	case "", LogTargetAuto:
		return LogTargetAuto, nil
	case LogTargetJournald, LogTargetStderr:
		return t, nil
	}
	return "", fmt.Errorf("unknown log target %q (want auto, journald or stderr)", s)
}

// lockedWriter serialises writes so log records and raw text blocks written
// to stderr do not interleave.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// logSink owns the agent's log output: the level, the chosen target and the
// handler behind every logger the agent handed out. configure switches
// target and level at run time (reload) without replacing loggers.
type logSink struct {
	level         slog.LevelVar
	stderr        *lockedWriter
	stderrFile    *os.File // the real file behind stderr, for auto detection; may be nil
	journalSocket string
	getenv        func(string) string

	mu       sync.Mutex // serialises configure/close
	target   string     // resolved: journald or stderr
	journal  *journalConn
	current  atomic.Pointer[slog.Handler]
	rootHand *switchHandler
}

func newLogSink(stderr io.Writer, journalSocket string, getenv func(string) string) *logSink {
	s := &logSink{
		stderr:        &lockedWriter{w: stderr},
		journalSocket: journalSocket,
		getenv:        getenv,
	}
	if f, ok := stderr.(*os.File); ok {
		s.stderrFile = f
	}
	var h slog.Handler = s.textHandler()
	s.current.Store(&h)
	s.target = LogTargetStderr
	s.rootHand = &switchHandler{cur: &s.current}
	return s
}

func (s *logSink) textHandler() slog.Handler {
	return slog.NewTextHandler(s.stderr, &slog.HandlerOptions{Level: &s.level})
}

// handler is the slog.Handler for every logger of the agent.
func (s *logSink) handler() slog.Handler { return s.rootHand }

// resolvedTarget reports where records go now: journald or stderr.
func (s *logSink) resolvedTarget() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.target
}

// configure sets the level and switches to target (auto|journald|stderr).
func (s *logSink) configure(target string, level slog.Level) error {
	t, err := ParseLogTarget(target)
	if err != nil {
		return err
	}
	if t == LogTargetAuto {
		t = LogTargetStderr
		if journalWanted(s.getenv, s.stderrFile, s.journalSocket) {
			t = LogTargetJournald
		}
	}
	s.level.Set(level)
	s.mu.Lock()
	defer s.mu.Unlock()
	if t == s.target {
		return nil
	}
	var h slog.Handler
	var conn *journalConn
	switch t {
	case LogTargetJournald:
		conn, err = openJournal(s.journalSocket)
		if err != nil {
			return fmt.Errorf("log target journald: %w", err)
		}
		h = newJournalHandler(conn, &s.level, s.textHandler())
	default:
		h = s.textHandler()
	}
	old := s.journal
	s.current.Store(&h)
	s.target, s.journal = t, conn
	if old != nil {
		// A record in flight on the old connection fails over to stderr.
		old.Close()
	}
	return nil
}

// close releases the journal socket; later records go to stderr.
func (s *logSink) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.textHandler()
	s.current.Store(&h)
	if s.journal != nil {
		s.journal.Close()
		s.journal = nil
	}
	s.target = LogTargetStderr
}

// journalWanted decides the auto target: journald when stderr is a journal
// stream (JOURNAL_STREAM's device:inode equals fstat of stderr, as systemd
// sets for StandardError=journal), or when the journal socket exists and
// stderr is not a terminal.
func journalWanted(getenv func(string) string, stderr *os.File, socket string) bool {
	if stderr != nil && journalStreamMatches(getenv("JOURNAL_STREAM"), stderr) {
		return true
	}
	if _, err := os.Stat(socket); err != nil {
		return false
	}
	return stderr == nil || !isTerminal(stderr)
}

// journalStreamMatches reports whether v ("DEV:INODE", decimal) names f.
func journalStreamMatches(v string, f *os.File) bool {
	devS, inoS, ok := strings.Cut(v, ":")
	if !ok {
		return false
	}
	dev, err1 := strconv.ParseUint(devS, 10, 64)
	ino, err2 := strconv.ParseUint(inoS, 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return uint64(st.Dev) == dev && uint64(st.Ino) == ino
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// switchHandler forwards to the handler currently stored in cur, replaying
// the WithAttrs/WithGroup calls made on it, so loggers derived before a
// target switch follow the switch.
type switchHandler struct {
	cur   *atomic.Pointer[slog.Handler]
	ops   []func(slog.Handler) slog.Handler
	cache atomic.Pointer[derivedHandler]
}

type derivedHandler struct {
	base    *slog.Handler
	handler slog.Handler
}

func (s *switchHandler) target() slog.Handler {
	base := s.cur.Load()
	if len(s.ops) == 0 {
		return *base
	}
	if d := s.cache.Load(); d != nil && d.base == base {
		return d.handler
	}
	h := *base
	for _, op := range s.ops {
		h = op(h)
	}
	s.cache.Store(&derivedHandler{base: base, handler: h})
	return h
}

// Enabled implements slog.Handler.
func (s *switchHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return s.target().Enabled(ctx, l)
}

// Handle implements slog.Handler.
func (s *switchHandler) Handle(ctx context.Context, r slog.Record) error {
	return s.target().Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (s *switchHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return s
	}
	return s.with(func(h slog.Handler) slog.Handler { return h.WithAttrs(attrs) })
}

// WithGroup implements slog.Handler.
func (s *switchHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return s
	}
	return s.with(func(h slog.Handler) slog.Handler { return h.WithGroup(name) })
}

func (s *switchHandler) with(op func(slog.Handler) slog.Handler) *switchHandler {
	ops := make([]func(slog.Handler) slog.Handler, len(s.ops), len(s.ops)+1)
	copy(ops, s.ops)
	return &switchHandler{cur: s.cur, ops: append(ops, op)}
}
