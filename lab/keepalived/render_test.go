package keepalived_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lab/keepalived"
)

func TestRender(t *testing.T) {
	g := keepalived.DefaultGARP()
	g.MasterDelay, g.MasterRepeat, g.LowerPrioRepeat = 1, 2, 3
	ig := keepalived.DefaultGARP()
	ig.MasterRefresh = 60
	cfg := keepalived.Config{
		RouterID:         "lb1",
		Version:          3,
		GARP:             &g,
		SkipCheckAdvAddr: true,
		Extra:            []string{"vrrp_lower_prio_no_advert"},
		Instances: []keepalived.Instance{{
			Name:            "VI_1",
			Interface:       "eth0",
			VRID:            51,
			Priority:        150,
			AdvertInt:       100 * time.Millisecond,
			PreemptDelay:    1500 * time.Millisecond,
			VIPs:            []keepalived.VIP{{Addr: netip.MustParsePrefix("192.0.2.100/24"), Dev: "eth0"}, {Addr: netip.MustParsePrefix("192.0.2.101/32")}},
			TrackInterfaces: []string{"eth1"},
			GARP:            &ig,
		}, {
			Name:         "VI_2",
			Interface:    "eth0",
			State:        "MASTER",
			VRID:         52,
			AdvertInt:    2 * time.Second,
			Version:      2,
			UnicastSrc:   netip.MustParseAddr("192.0.2.11"),
			UnicastPeers: []netip.Addr{netip.MustParseAddr("192.0.2.12"), netip.MustParseAddr("192.0.2.13")},
			AuthPass:     "s3cret",
			VIPs:         []keepalived.VIP{{Addr: netip.MustParsePrefix("192.0.2.102/24")}},
			Extra:        []string{"garp_extra_if 100"},
		}, {
			Name: "VI_3", Interface: "eth1", VRID: 53, NoPreempt: true,
			VIPs: []keepalived.VIP{{Addr: netip.MustParsePrefix("198.51.100.100/24")}},
		}},
	}
	got, err := cfg.Render()
	if err != nil {
		t.Fatal(err)
	}
	want := `# keepalived.conf rendered by github.com/fulcrum-lb/fulcrum/lab/keepalived
global_defs {
    router_id lb1
    vrrp_version 3
    enable_script_security
    script_user root
    vrrp_garp_master_delay 1
    vrrp_garp_master_repeat 2
    vrrp_garp_lower_prio_delay 5
    vrrp_garp_lower_prio_repeat 3
    vrrp_garp_master_refresh 0
    vrrp_skip_check_adv_addr
    vrrp_lower_prio_no_advert
}

vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 0.1
    preempt_delay 1.5
    garp_master_delay 5
    garp_master_repeat 5
    garp_lower_prio_delay 5
    garp_lower_prio_repeat 5
    garp_master_refresh 60
    virtual_ipaddress {
        192.0.2.100/24 dev eth0
        192.0.2.101/32
    }
    track_interface {
        eth1
    }
}

vrrp_instance VI_2 {
    state MASTER
    interface eth0
    virtual_router_id 52
    advert_int 2
    version 2
    unicast_src_ip 192.0.2.11
    unicast_peer {
        192.0.2.12
        192.0.2.13
    }
    authentication {
        auth_type PASS
        auth_pass s3cret
    }
    virtual_ipaddress {
        192.0.2.102/24
    }
    garp_extra_if 100
}

vrrp_instance VI_3 {
    state BACKUP
    interface eth1
    virtual_router_id 53
    nopreempt
    virtual_ipaddress {
        198.51.100.100/24
    }
}
`
	if got != want {
		t.Errorf("Render:\n%s\nwant:\n%s", got, want)
	}

	// The minimum: keepalived's defaults everywhere.
	got, err = keepalived.Config{NoScriptSecurity: true, Instances: []keepalived.Instance{{
		Name: "v", Interface: "eth0", VRID: 1, VIPs: []keepalived.VIP{{Addr: netip.MustParsePrefix("192.0.2.1/32")}},
	}}}.Render()
	if err != nil {
		t.Fatal(err)
	}
	if want := "global_defs {\n}\n\nvrrp_instance v {\n    state BACKUP\n    interface eth0\n    virtual_router_id 1\n    virtual_ipaddress {\n        192.0.2.1/32\n    }\n}\n"; !strings.HasSuffix(got, want) {
		t.Errorf("minimal Render:\n%s\nwant suffix:\n%s", got, want)
	}
}

func TestRenderRefuses(t *testing.T) {
	ok := keepalived.Instance{Name: "VI_1", Interface: "eth0", VRID: 51, VIPs: []keepalived.VIP{{Addr: netip.MustParsePrefix("192.0.2.100/32")}}}
	with := func(f func(*keepalived.Instance)) keepalived.Config {
		in := ok
		f(&in)
		return keepalived.Config{Instances: []keepalived.Instance{in}}
	}
	zeroGARP := keepalived.GARP{}
	for _, c := range []struct {
		name string
		cfg  keepalived.Config
		want string
	}{
		{"vrid 0", with(func(in *keepalived.Instance) { in.VRID = 0 }), "virtual_router_id 0"},
		{"vrid 256", with(func(in *keepalived.Instance) { in.VRID = 256 }), "virtual_router_id 256"},
		{"priority", with(func(in *keepalived.Instance) { in.Priority = 256 }), "priority 256"},
		{"name", with(func(in *keepalived.Instance) { in.Name = "VI 1" }), "name"},
		{"interface", with(func(in *keepalived.Instance) { in.Interface = "" }), "interface"},
		{"state", with(func(in *keepalived.Instance) { in.State = "backup" }), `state "backup"`},
		{"v2 fractional advert", with(func(in *keepalived.Instance) { in.AdvertInt = 100 * time.Millisecond }), "VRRPv2 wants whole seconds"},
		{"v3 millisecond advert", with(func(in *keepalived.Instance) { in.Version = 3; in.AdvertInt = 105 * time.Millisecond }), "centiseconds"},
		{"v3 auth", with(func(in *keepalived.Instance) { in.Version = 3; in.AuthPass = "x" }), "VRRPv2 only"},
		{"long password", with(func(in *keepalived.Instance) { in.AuthPass = "123456789" }), "auth_pass"},
		{"password with space", with(func(in *keepalived.Instance) { in.AuthPass = "a b" }), "auth_pass"},
		{"nopreempt and preempt_delay", with(func(in *keepalived.Instance) { in.NoPreempt = true; in.PreemptDelay = time.Second }), "with nopreempt"},
		{"nopreempt master", with(func(in *keepalived.Instance) { in.State = "MASTER"; in.NoPreempt = true }), "initial state BACKUP"},
		{"vip outside lab ranges", with(func(in *keepalived.Instance) {
			in.VIPs = []keepalived.VIP{{Addr: netip.MustParsePrefix("10.0.0.1/32")}}
		}), "documentation ranges"},
		{"peer outside lab ranges", with(func(in *keepalived.Instance) { in.UnicastPeers = []netip.Addr{netip.MustParseAddr("8.8.8.8")} }), "documentation ranges"},
		{"no VIP", with(func(in *keepalived.Instance) { in.VIPs = nil }), "no virtual_ipaddress"},
		{"duplicate", keepalived.Config{Instances: []keepalived.Instance{ok, ok}}, "defined twice"},
		{"version", keepalived.Config{Version: 4}, "vrrp_version 4"},
		{"garp repeat 0", keepalived.Config{GARP: &zeroGARP}, "at least 1"},
		{"extra newline", keepalived.Config{Extra: []string{"a\nb"}}, "extra line"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.cfg.Render()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Render error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestRenderVirtualServers(t *testing.T) {
	got, err := keepalived.RenderVirtualServers([]keepalived.VS{{
		Addr:      netip.MustParseAddrPort("192.0.2.100:80"),
		DelayLoop: 500 * time.Millisecond,
		Reals: []keepalived.Real{
			{Addr: netip.MustParseAddrPort("198.51.100.21:8080"), Weight: 2, Check: &keepalived.TCPCheck{
				ConnectTimeout: time.Second, Retry: 2, DelayBeforeRetry: 200 * time.Millisecond, Warmup: keepalived.NoWarmup,
			}},
			{Addr: netip.MustParseAddrPort("198.51.100.22:8080"), Check: &keepalived.TCPCheck{ConnectPort: 9000}},
		},
	}, {
		Addr: netip.MustParseAddrPort("[2001:db8::100]:443"), Sched: "wlc", Method: "DR",
		Reals: []keepalived.Real{{Addr: netip.MustParseAddrPort("[2001:db8::21]:443")}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := `virtual_server 192.0.2.100 80 {
    delay_loop 0.5
    lvs_sched rr
    lvs_method NAT
    protocol TCP
    real_server 198.51.100.21 8080 {
        weight 2
        TCP_CHECK {
            connect_timeout 1
            retry 2
            delay_before_retry 0.2
            warmup 0
        }
    }
    real_server 198.51.100.22 8080 {
        TCP_CHECK {
            connect_port 9000
        }
    }
}

virtual_server 2001:db8::100 443 {
    lvs_sched wlc
    lvs_method DR
    protocol TCP
    real_server 2001:db8::21 443 {
    }
}
`
	if got != want {
		t.Errorf("RenderVirtualServers:\n%s\nwant:\n%s", got, want)
	}
	if _, err := keepalived.RenderVirtualServers([]keepalived.VS{{Addr: netip.MustParseAddrPort("10.1.1.1:80")}}); err == nil {
		t.Error("a virtual server outside the documentation ranges was rendered")
	}
	if _, err := keepalived.RenderVirtualServers([]keepalived.VS{{Addr: netip.MustParseAddrPort("192.0.2.1:80"), Method: "FOO"}}); err == nil {
		t.Error("lvs_method FOO was rendered")
	}
}
