package vrrp

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// trackerRun is the goroutines watching the trackers of one configuration.
type trackerRun struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// initialTrackers is the state of specs before the first reading: what
// the Machine starts with (weight 0, up; see buildConfigs), readings up.
func initialTrackers(specs []TrackSpec) map[string]trackerValue {
	m := make(map[string]trackerValue, len(specs)+1)
	for _, s := range specs {
		m[s.Key()] = trackerValue{spec: s, ok: true, up: true}
	}
	m[syncTracker] = trackerValue{spec: TrackSpec{Name: syncTracker}, ok: true, up: true}
	return m
}

// effective is what a reading means to the Machine: its weight and state.
// In a sync group every weight counts as 0, as keepalived sets them (a
// grouped instance's priority must not drift from its group's).
func (t trackerValue) effective(grouped bool) (int, bool) {
	w := t.spec.Weight
	if grouped || t.spec.Kind == 0 {
		w = 0
	}
	if t.spec.Kind == TrackFile {
		return fileTracker(t.value, w)
	}
	return machineWeight(w), t.ok
}

// startTrackers reads every tracker once, so that the Machine starts (or
// goes on) in the state they call for, then follows them until
// stopTrackers or ctx ends: link changes as the LinkWatcher reports them,
// processes, files and services every TrackPollInterval.
func (i *Instance) startTrackers(ctx context.Context) {
	i.mu.Lock()
	specs, poll := i.specs, i.opts.TrackPollInterval
	i.mu.Unlock()
	i.pollTrackers(specs, true)

	var links []string
	var polled []TrackSpec
	for _, s := range specs {
		if s.Kind == TrackInterface {
			links = append(links, s.Name)
		} else {
			polled = append(polled, s)
		}
	}
	tctx, cancel := context.WithCancel(ctx)
	run := &trackerRun{cancel: cancel}
	if len(links) > 0 {
		run.wg.Go(func() {
			err := i.deps.Links.WatchLinks(tctx, links, func(name string, up bool) {
				i.applyTracker(TrackSpec{Kind: TrackInterface, Name: name}, up, 0, "")
			})
			if err != nil && tctx.Err() == nil {
				i.log.Error("watching links failed; interface trackers are frozen", slog.Any("error", err))
			}
		})
	}
	if len(polled) > 0 {
		run.wg.Go(func() {
			for sleepClock(tctx, i.clock, poll) {
				i.pollTrackers(polled, false)
			}
		})
	}
	i.mu.Lock()
	i.trackStop = func() { run.cancel(); run.wg.Wait() }
	i.mu.Unlock()
}

// stopTrackers stops the goroutines of startTrackers and waits for them.
func (i *Instance) stopTrackers() {
	i.mu.Lock()
	stop := i.trackStop
	i.trackStop = nil
	i.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// sleepClock waits d on c; false if ctx ended first.
func sleepClock(ctx context.Context, c Clock, d time.Duration) bool {
	ch := make(chan struct{})
	t := c.AfterFunc(d, func() { close(ch) })
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		t.Stop()
		return false
	}
}

// pollTrackers reads specs (interfaces only when links is set) and applies
// the results.
func (i *Instance) pollTrackers(specs []TrackSpec, links bool) {
	var procs map[string]bool
	for _, s := range specs {
		if s.Kind == TrackProcess && procs == nil {
			var names []string
			for _, p := range specs {
				if p.Kind == TrackProcess {
					names = append(names, p.Name)
				}
			}
			var err error
			if procs, err = runningProcesses(i.deps.ProcRoot, names); err != nil {
				i.log.Warn("reading processes failed", slog.String("proc_root", i.deps.ProcRoot), slog.Any("error", err))
			}
		}
	}
	for _, s := range specs {
		switch s.Kind {
		case TrackInterface:
			if !links {
				continue
			}
			up, err := i.deps.Links.LinkUp(s.Name)
			i.applyTracker(s, up && err == nil, 0, errString(err))
		case TrackProcess:
			i.applyTracker(s, procs[s.Name], 0, "")
		case TrackFile:
			i.applyTracker(s, true, readTrackFile(s.Name), "")
		case TrackService:
			up, err := i.deps.Services.ServiceHealthy(s.Name)
			i.applyTracker(s, up && err == nil, 0, errString(err))
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// applyTracker records a reading (ok for interfaces, processes and
// services, value for files) and passes what changed to the Machine, and a
// change of the instance's own fault to its sync group.
func (i *Instance) applyTracker(s TrackSpec, ok bool, value int64, errText string) {
	key := s.Key()
	i.mu.Lock()
	cur, found := i.trk[key]
	if !found {
		i.mu.Unlock()
		return // gone with an Update
	}
	cur.ok, cur.value, cur.err = ok, value, errText
	i.trk[key] = cur
	i.mu.Unlock()
	i.pushTrackers(false)
}

// pushTrackers gives the Machine every tracker whose effective weight or
// state differs from what it has (all of them when force), then tells the
// sync group if the instance's own fault changed.
func (i *Instance) pushTrackers(force bool) {
	type push struct {
		key    string
		t      trackerValue
		weight int
		up     bool
	}
	i.mu.Lock()
	grouped := i.group != nil
	var pushes []push
	for k, t := range i.trk {
		w, up := t.effective(grouped)
		if force || w != t.weight || up != t.up {
			pushes = append(pushes, push{k, t, w, up})
			t.weight, t.up = w, up
			i.trk[k] = t
		}
	}
	own := i.ownFaultLocked()
	ownChanged := own != i.ownFault
	i.ownFault = own
	g := i.group
	i.mu.Unlock()
	for _, p := range pushes {
		err := i.m.SetTrackerWeight(p.key, p.weight, p.up)
		if p.key == syncTracker && err == nil {
			continue
		}
		attrs := []any{slog.String("tracker", p.key), slog.Bool("up", p.up), slog.Int("weight", p.weight)}
		if p.t.spec.Kind == TrackFile {
			attrs = append(attrs, slog.Int64("value", p.t.value))
		}
		if p.t.err != "" {
			attrs = append(attrs, slog.String("detail", p.t.err))
		}
		if err != nil {
			i.log.Error("tracker update failed", append(attrs, slog.Any("error", err))...)
		} else if !force {
			i.log.Info("tracker changed", attrs...)
		}
	}
	if ownChanged && g != nil {
		g.memberFault(i, own)
	}
}

// ownFaultLocked reports whether one of the instance's own weight-0
// trackers is down (the sync group's is not counted). i.mu is held.
func (i *Instance) ownFaultLocked() bool {
	for k, t := range i.trk {
		if k != syncTracker && t.weight == 0 && !t.up {
			return true
		}
	}
	return false
}

// setSyncFault holds the instance in Fault (or releases it) on behalf of
// its sync group.
func (i *Instance) setSyncFault(fault bool) {
	i.mu.Lock()
	cur := i.trk[syncTracker]
	cur.ok = !fault
	i.trk[syncTracker] = cur
	i.mu.Unlock()
	i.pushTrackers(false)
}

// fileTracker turns a track_file value into the Machine's weight and state,
// as keepalived's vrrp_track.c does: with weight 0 a non-zero value is a
// fault; otherwise value*weight clamped to -254..253, where -254 is a fault.
func fileTracker(value int64, weight int) (int, bool) {
	if weight == 0 {
		return 0, value == 0
	}
	r := min(max(value*int64(weight), -254), 253)
	switch {
	case r <= -254:
		return 0, false
	case r < 0:
		return int(r), false // a negative weight counts while down
	default:
		return int(r), true
	}
}

// readTrackFile reads a track_file's number as keepalived does: the first
// 127 bytes through strtol(3) with base 0, 0 when the file is missing,
// empty, unreadable or not a number, clamped to -254..254.
func readTrackFile(path string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	buf := make([]byte, 127)
	n, _ := io.ReadFull(f, buf)
	return min(max(strtol(buf[:n]), -254), 254)
}

// strtol parses the leading integer of b like C's strtol(b, NULL, 0):
// optional white space and sign, then "0x" hex, "0" octal or decimal
// digits; it stops at the first other byte and returns 0 without digits.
// The magnitude saturates well above the range that matters.
func strtol(b []byte) int64 {
	k := 0
	for k < len(b) && (b[k] == ' ' || (b[k] >= '\t' && b[k] <= '\r')) {
		k++
	}
	neg := false
	if k < len(b) && (b[k] == '+' || b[k] == '-') {
		neg = b[k] == '-'
		k++
	}
	base := int64(10)
	switch {
	case k+2 < len(b) && b[k] == '0' && (b[k+1] == 'x' || b[k+1] == 'X') && digitVal(b[k+2]) < 16:
		base, k = 16, k+2
	case k < len(b) && b[k] == '0':
		base = 8
	}
	var v int64
	for ; k < len(b); k++ {
		d := digitVal(b[k])
		if d >= base {
			break
		}
		if v < 1<<40 {
			v = v*base + d
		}
	}
	if neg {
		return -v
	}
	return v
}

func digitVal(c byte) int64 {
	switch {
	case c >= '0' && c <= '9':
		return int64(c - '0')
	case c >= 'a' && c <= 'z':
		return int64(c-'a') + 10
	case c >= 'A' && c <= 'Z':
		return int64(c-'A') + 10
	default:
		return 99
	}
}

// runningProcesses reports which of names run, by /proc/PID/comm (the
// kernel's name, at most 15 bytes) or the base name of argv[0] in
// /proc/PID/cmdline. Processes that vanish while being read are skipped.
func runningProcesses(root string, names []string) (map[string]bool, error) {
	found := make(map[string]bool, len(names))
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return found, err
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if comm, err := os.ReadFile(filepath.Join(dir, "comm")); err == nil {
			c := string(bytes.TrimRight(comm, "\n"))
			for n := range want {
				if c == n || (len(n) > 15 && c == n[:15]) {
					found[n] = true
				}
			}
		}
		if cmd, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil && len(cmd) > 0 {
			argv0, _, _ := bytes.Cut(cmd, []byte{0})
			if base := filepath.Base(string(argv0)); want[base] {
				found[base] = true
			}
		}
		if len(found) == len(want) {
			break
		}
	}
	return found, nil
}
