package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/agent"
)

func TestFailoverUsage(t *testing.T) {
	sock := filepath.Join(shortDir(t), "none.sock")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"failover", "VI_1", "VI_2", "-socket", sock}, exitUsage, "one instance at most"},
		{[]string{"failover", "-all", "VI_1", "-socket", sock}, exitUsage, "not both"},
		{[]string{"failover", "VI_1", "-hold", "0s", "-socket", sock}, exitUsage, "positive"},
		{[]string{"failover", "-bogus"}, exitUsage, "flag provided but not defined"},
		// Flags after the name are parsed; the agent is not there.
		{[]string{"failover", "VI_1", "-wait", "-hold", "5s", "-socket", sock}, exitFailed, "cannot reach fulcrum agent"},
	} {
		code, _, stderr := runCLI(c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, stderr, c.code, c.want)
		}
	}
}

func TestPrintFailover(t *testing.T) {
	at := time.Date(2026, 11, 25, 1, 2, 3, 400e6, time.Local)
	later := at.Add(312 * time.Millisecond)
	gap := 312.0
	var b bytes.Buffer
	printFailover(&b, agent.FailoverResult{
		Instance: "VI_1", OK: true, Action: "force_backup", FromState: "master", State: "backup", Waited: true,
		Handover: &agent.VRRPHandover{Action: "force_backup", NewMaster: "192.0.2.12", NewMasterPriority: 100,
			LastOldMasterAdvert: &at, FirstNewMasterAdvert: &later, AdvertGap: "312ms", AdvertGapMS: &gap, Done: true},
	}, 30*time.Second)
	printFailover(&b, agent.FailoverResult{
		Instance: "VI_2", Action: "takeover", FromState: "backup", State: "backup", Waited: true, Error: "handover did not happen",
		Handover: &agent.VRRPHandover{Action: "takeover", OldMaster: "192.0.2.11", VIPsAdded: &at, FirstAnnounce: &later, AnnounceGap: "312ms"},
	}, time.Minute)
	out := b.String()
	for _, want := range []string{
		"VI_1: master -> backup (force_backup, hold 30s)\n  new master 192.0.2.12 (priority 100)\n  advert gap 312ms: last advert from the old master 01:02:03.400, first from the new master 01:02:03.712\n",
		"measured on the new master",
		"VI_2: backup -> backup (takeover, hold 1m0s)\n  took over from 192.0.2.11\n  VIP add -> first GARP/NA 312ms",
		"  FAILED: handover did not happen\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestPrintStatusVRRP(t *testing.T) {
	now := time.Date(2026, 11, 25, 1, 0, 0, 0, time.UTC)
	changed := now.Add(-1500 * time.Millisecond)
	added, announced := changed.Add(time.Millisecond), changed.Add(time.Millisecond+40*time.Microsecond)
	st := &agent.Status{
		Node: "lb1", StartedAt: now, Config: agent.ConfigStatus{LoadedAt: now},
		Subsystems: []agent.SubsystemStatus{{Name: "vrrp", Configured: 1, State: "running: 1 master", Detail: map[string]any{
			"instances": []any{map[string]any{ // as decoded from JSON
				"name": "VI_1", "interface": "eth0", "vrid": 51, "version": 3, "state": "master", "priority": 200, "base_priority": 200,
				"primary_address": "192.0.2.11", "advert_interval": "100ms", "master_advert_interval": "100ms",
				"last_transition": map[string]any{"from": "backup", "to": "master", "reason": "master_down", "at": changed},
				"vips":            []any{"192.0.2.100/24 dev eth0"}, "vips_installed": 1,
				"master":   map[string]any{"since": changed, "vips_added": added, "first_announce": announced, "announce_rounds": 5},
				"trackers": []any{map[string]any{"name": "interface:eth0", "up": true}, map[string]any{"name": "sync_group", "up": true}},
				"counters": map[string]any{"adverts_in": 0, "adverts_out": 15, "transitions": 2, "drops": map[string]any{"bad_ttl": 3}},
			}},
			"sync_groups": []any{map[string]any{"name": "G", "instances": []any{"VI_1", "VI_2"}}},
		}}},
	}
	var b bytes.Buffer
	printStatus(&b, st, now)
	out := b.String()
	for _, want := range []string{
		"\nvrrp:\n  configured: 1\n  state: running: 1 master\n  instance VI_1: MASTER\n",
		"    eth0 vrid 51 v3, priority 200 (configured 200), advert 100ms, from 192.0.2.11\n",
		"    last transition backup -> master (master_down) 1.5s ago\n",
		"    vips: 192.0.2.100/24 dev eth0 (1 installed)\n",
		"VIP add -> first GARP/NA 40µs; 5 announcement rounds",
		"    trackers: interface:eth0 up\n",
		"    adverts in 0, out 15; priority 0 in 0, out 0; transitions 2\n    drops: bad_ttl 3\n",
		"  sync group G: VI_1, VI_2\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
