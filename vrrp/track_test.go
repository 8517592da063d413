package vrrp_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/vrrp"
	"github.com/fulcrum-lb/fulcrum/vrrp/vrrptest"
)

func TestStrtol(t *testing.T) {
	for in, want := range map[string]int64{
		"42\n": 42, "  -7": -7, "\t+5x": 5, "0x1f": 31, "0X1F\n": 31, "010": 8, "09": 0, "0x": 0,
		"abc": 0, "": 0, "- 3": 0, "99999999999999999999999": 1<<40*10 + 9,
	} {
		if got := vrrp.Strtol([]byte(in)); got != want && !(in == "99999999999999999999999" && got > 1<<40) {
			t.Errorf("strtol(%q) = %d, want %d", in, got, want)
		}
	}
}

// TestFileTracker follows keepalived's vrrp_track.c: weight 0 faults on
// any non-zero value; otherwise value*weight clamped to -254..253, -254
// being a fault.
func TestFileTracker(t *testing.T) {
	type res struct {
		w  int
		up bool
	}
	for _, c := range []struct {
		value  int64
		weight int
		want   res
	}{
		{0, 0, res{0, true}}, {3, 0, res{0, false}}, {-1, 0, res{0, false}},
		{2, 10, res{20, true}}, {0, 10, res{0, true}}, {-1, 10, res{-10, false}},
		{-30, 10, res{0, false}}, {254, 1, res{253, true}}, {-253, 1, res{-253, false}},
		{-254, 1, res{0, false}}, {5, -2, res{-10, false}}, {-5, -2, res{10, true}},
	} {
		w, up := vrrp.FileTracker(c.value, c.weight)
		if (res{w, up}) != c.want {
			t.Errorf("value %d weight %d: got %d/%v, want %+v", c.value, c.weight, w, up, c.want)
		}
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if v := vrrp.ReadTrackFile(p); v != 0 {
		t.Errorf("missing file reads %d", v)
	}
	os.WriteFile(p, []byte("  1000\n"), 0o600)
	if v := vrrp.ReadTrackFile(p); v != 254 {
		t.Errorf("1000 reads %d, want 254 (clamped)", v)
	}
}

// fakeProc builds a proc root with the given processes: pid -> comm and
// cmdline (argv joined by NULs).
func fakeProc(t *testing.T, procs map[string][2]string) string {
	root := t.TempDir()
	for pid, p := range procs {
		d := filepath.Join(root, pid)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "comm"), []byte(p[0]+"\n"), 0o644)
		os.WriteFile(filepath.Join(d, "cmdline"), []byte(strings.ReplaceAll(p[1], " ", "\x00")+"\x00"), 0o644)
	}
	os.MkdirAll(filepath.Join(root, "self"), 0o755)
	return root
}

func TestRunningProcesses(t *testing.T) {
	root := fakeProc(t, map[string][2]string{
		"1":  {"haproxy", "/usr/sbin/haproxy -f /etc/haproxy.cfg"},
		"20": {"nginx: master", "/usr/sbin/nginx -g daemon"},
		"33": {"longprocessname", "/opt/bin/longprocessname-wrapper"},
	})
	found, err := vrrp.RunningProcesses(root, []string{"haproxy", "nginx", "longprocessname-wrapper", "sshd"})
	if err != nil {
		t.Fatal(err)
	}
	if !found["haproxy"] || !found["nginx"] || !found["longprocessname-wrapper"] || found["sshd"] {
		t.Fatalf("found %v", found)
	}
}

// TestInstanceTrackers: interface, process, file and service trackers move
// the effective priority and Fault as keepalived's would.
func TestInstanceTrackers(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "weight")
	os.WriteFile(file, []byte("3\n"), 0o600)
	proc := fakeProc(t, map[string][2]string{"7": {"sshd", "/usr/sbin/sshd -D"}})
	links := vrrptest.NewFakeLinks("eth0", "eth1")
	svcs := &vrrptest.FakeServices{}
	svcs.Set("web", true)

	r := newIRig(t)
	opts := baseOpts("A", "192.0.2.1", 100)
	opts.TrackPollInterval = time.Second
	opts.Trackers = []vrrp.TrackSpec{
		{Kind: vrrp.TrackFile, Name: file, Weight: 10},          // +30
		{Kind: vrrp.TrackProcess, Name: "haproxy", Weight: -20}, // not running: -20
		{Kind: vrrp.TrackProcess, Name: "sshd", Weight: 4},      // running: +4
		{Kind: vrrp.TrackInterface, Name: "eth1", Weight: 5},    // up: +5
		{Kind: vrrp.TrackService, Name: "web"},                  // weight 0: Fault while down
	}
	a := r.add(vrrptest.NewWire(), opts, vrrp.Deps{Links: links, Services: svcs, ProcRoot: proc})
	r.start(a)
	prio := func() uint8 { return a.inst.Status().Priority }
	if p := prio(); p != 119 {
		t.Fatalf("priority %d at start, want 100+30-20+4+5 = 119 (trackers %+v)", p, a.inst.Status().Trackers)
	}
	links.Set("eth1", false)
	if p := prio(); p != 114 {
		t.Fatalf("priority %d with eth1 down, want 114", p)
	}
	os.WriteFile(file, []byte("-1"), 0o600)
	r.clk.Advance(time.Second)
	eventually(t, "the file's new value", func() bool { return prio() == 74 })

	svcs.Set("web", false)
	r.clk.Advance(time.Second)
	eventually(t, "fault from the service", func() bool { return a.inst.Status().State == vrrp.Fault })
	svcs.Set("web", true)
	r.clk.Advance(time.Second)
	eventually(t, "recovery", func() bool { return a.inst.Status().State == vrrp.Backup })

	os.WriteFile(file, []byte("-26"), 0o600) // -260: below -253, a fault
	r.clk.Advance(time.Second)
	eventually(t, "fault from the file", func() bool { return a.inst.Status().State == vrrp.Fault })
	os.WriteFile(file, []byte("0"), 0o600)
	r.clk.Advance(time.Second)
	eventually(t, "recovery from the file", func() bool { return a.inst.Status().State == vrrp.Backup })

	// The instance's own interface is tracked with weight 0.
	links.Set("eth0", false)
	if st := a.inst.Status(); st.State != vrrp.Fault {
		t.Fatalf("state %v with eth0 down", st.State)
	}
	links.Set("eth0", true)
	if st := a.inst.Status(); st.State != vrrp.Backup {
		t.Fatalf("state %v with eth0 up again", st.State)
	}
	var names []string
	for _, tr := range a.inst.Status().Trackers {
		names = append(names, tr.Name)
	}
	if got := strings.Join(names, " "); got != "file:"+file+" interface:eth0 interface:eth1 process:haproxy process:sshd service:web sync_group" {
		t.Fatalf("trackers %s", got)
	}
}

// TestNewInstanceValidation: bad options are refused up front.
func TestNewInstanceValidation(t *testing.T) {
	wire := vrrptest.NewWire()
	deps := func() vrrp.Deps {
		return vrrp.Deps{Transport: wire.Transport(netip4("192.0.2.1")), Addresses: vrrptest.NewFakeAddresses()}
	}
	for name, mod := range map[string]func(*vrrp.InstanceOptions, *vrrp.Deps){
		"no name":    func(o *vrrp.InstanceOptions, _ *vrrp.Deps) { o.Name = "" },
		"no primary": func(o *vrrp.InstanceOptions, _ *vrrp.Deps) { o.PrimaryAddr = netip4("") },
		"vrid 0":     func(o *vrrp.InstanceOptions, _ *vrrp.Deps) { o.VRID = 0 },
		"family":     func(o *vrrp.InstanceOptions, _ *vrrp.Deps) { o.VIPs[0].Prefix = mustPrefix("2001:db8::1/128") },
		"v2 interval": func(o *vrrp.InstanceOptions, _ *vrrp.Deps) {
			o.Version, o.AdvertInterval = vrrp.Version2, 500*time.Millisecond
		},
		"weight": func(o *vrrp.InstanceOptions, _ *vrrp.Deps) {
			o.Trackers = []vrrp.TrackSpec{{Kind: vrrp.TrackFile, Name: "/x", Weight: 255}}
		},
		"service no dep": func(o *vrrp.InstanceOptions, _ *vrrp.Deps) {
			o.Trackers = []vrrp.TrackSpec{{Kind: vrrp.TrackService, Name: "web"}}
		},
		"interface no dep": func(o *vrrp.InstanceOptions, _ *vrrp.Deps) {
			o.Trackers = []vrrp.TrackSpec{{Kind: vrrp.TrackInterface, Name: "eth1"}}
		},
		"no transport": func(_ *vrrp.InstanceOptions, d *vrrp.Deps) { d.Transport = nil },
		"peer family":  func(o *vrrp.InstanceOptions, _ *vrrp.Deps) { o.Peers = []netip.Addr{netip4("2001:db8::2")} },
	} {
		o, d := baseOpts("A", "192.0.2.1", 100), deps()
		mod(&o, &d)
		if _, err := vrrp.NewInstance(o, d); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := vrrp.NewInstance(baseOpts("A", "192.0.2.1", 100), deps()); err != nil {
		t.Fatal(err)
	}
}

func netip4(s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	return netip.MustParseAddr(s)
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
