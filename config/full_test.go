package config

import (
	"crypto/tls"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// loadFull copies testdata/full.hcl into a temporary directory next to the
// files it names, and loads it with every feature supported.
func loadFull(t *testing.T, env map[string]string) (*Config, *Diagnostics, string) {
	t.Helper()
	src, err := os.ReadFile("testdata/full.hcl")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFile(t, dir, "node.hcl", string(src))
	writeKeyPair(t, dir, "certs/www.pem", "certs/www.key", time.Now().Add(90*24*time.Hour))
	writeFile(t, dir, "certs/www.ocsp", "\x30\x03\x0a\x01\x00") // a DER OCSPResponse shell
	writeFile(t, dir, "secrets/stats.pass", "hunter2-stats\n")
	writeFile(t, dir, "secrets/sticky.key", "sticky-0123456789-abcdef\n")
	cfg, diags := load(filepath.Join(dir, "node.hcl"), all(), testSystem(env))
	return cfg, diags, dir
}

func TestFullConfig(t *testing.T) {
	cfg, diags, dir := loadFull(t, nil)
	if diags.HasErrors() || cfg == nil {
		t.Fatalf("full.hcl does not load:%s", dump(diags.All()))
	}
	if w := diags.Warnings(); len(w) != 0 {
		t.Errorf("full.hcl has warnings:%s", dump(w))
	}
	check := func(name string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", name, got, want)
		}
	}
	ip := netip.MustParseAddr
	ap := netip.MustParseAddrPort

	// Node-wide blocks.
	check("Path", cfg.Path, filepath.Join(dir, "node.hcl"))
	check("Node.Name", cfg.Node.Name, "lb1")
	check("Node.Interfaces", cfg.Node.Interfaces, []string{"eth0", "eth1"})
	check("Node.Addresses", cfg.Node.Addresses, []netip.Addr{ip("198.51.100.2"), ip("192.0.2.1")})
	check("Node.Source.Start.Line", cfg.Node.Source.Start.Line, 5)
	check("Control.Socket", cfg.Control.Socket, "/run/fulcrum/fulcrum.sock")
	if cfg.Metrics == nil {
		t.Fatal("Metrics is nil")
	}
	check("Metrics.Listen", cfg.Metrics.Listen, ap("127.0.0.1:9712"))
	check("Metrics.Path", cfg.Metrics.Path, "/metrics")
	check("Log", [2]string{string(cfg.Log.Level), string(cfg.Log.Target)}, [2]string{"info", "journald"})

	// VRRP.
	if len(cfg.VRRPInstances) != 3 {
		t.Fatalf("%d VRRP instances, want 3", len(cfg.VRRPInstances))
	}
	web := cfg.VRRPInstances[0]
	check("vi_web.Name", web.Name, "vi_web")
	check("vi_web.Interface", web.Interface, "eth0")
	check("vi_web.VirtualRouterID", web.VirtualRouterID, uint8(51))
	check("vi_web.Priority", web.Priority, uint8(150))
	check("vi_web.AdvertInterval", web.AdvertInterval, 100*time.Millisecond)
	check("vi_web.Version", web.Version, VRRPv3)
	check("vi_web.Preempt", web.Preempt, true)
	check("vi_web.PreemptDelay", web.PreemptDelay, 30*time.Second)
	check("vi_web.Family", web.Family, IPv4)
	check("vi_web.AddressOwner", web.AddressOwner, false)
	check("vi_web.Unicast", *web.Unicast, Unicast{SourceAddress: ip("198.51.100.2"), Peers: []netip.Addr{ip("198.51.100.3")}})
	check("vi_web.VIP count", len(web.VirtualIPs), 3)
	check("vi_web.VIP[0]", [3]string{web.VirtualIPs[0].Prefix.String(), web.VirtualIPs[0].Device, web.VirtualIPs[0].Label}, [3]string{"203.0.113.10/24", "eth0", "eth0:web"})
	check("vi_web.VIP[2]", web.VirtualIPs[2].Prefix, netip.MustParsePrefix("203.0.113.12/32"))
	check("vi_web.VIP[2].Device", web.VirtualIPs[2].Device, "eth0")
	check("vi_web.AcceptV2Checksum", web.AcceptV2Checksum, true)
	check("vi_web.GARP", web.GARP, GARP{Delay: 5 * time.Second, Repeat: 3, RefreshInterval: time.Minute})
	check("vi_web.TrackInterfaces[0]", [2]any{web.TrackInterfaces[0].Name, web.TrackInterfaces[0].Weight}, [2]any{"eth1", -50})
	check("vi_web.TrackProcesses[0].Name", web.TrackProcesses[0].Name, "haproxy")
	check("vi_web.TrackFiles[0].Name", web.TrackFiles[0].Name, "/run/fulcrum/maintenance")
	check("vi_web.TrackServices", []ServiceKind{web.TrackServices[0].Kind, web.TrackServices[1].Kind}, []ServiceKind{ServiceVirtualServer, ServiceProxy})
	check("vi_web.TrackScripts", web.TrackScripts, []Track{{Name: "chk_db", Weight: -30, Source: web.TrackScripts[0].Source}})
	check("VRRPScripts[0].Fall", cfg.VRRPScripts[0].Fall, 2)
	check("vi_web.Notify.Master", web.Notify.Master, []string{"/usr/local/bin/fulcrum-notify", "master", "vi_web"})
	check("vi_web.Notify.Timeout", web.Notify.Timeout, 10*time.Second)

	v6 := cfg.VRRPInstances[1]
	// Defaults.
	check("vi_v6.Priority", v6.Priority, uint8(100))
	check("vi_v6.AdvertInterval", v6.AdvertInterval, time.Second)
	check("vi_v6.Version", v6.Version, VRRPv3)
	check("vi_v6.Preempt", v6.Preempt, true)
	check("vi_v6.Family", v6.Family, IPv6)
	check("vi_v6.GARP", v6.GARP, GARP{Delay: 5 * time.Second, Repeat: 5})
	check("vi_v6.Notify", v6.Notify, Notify{Timeout: 5 * time.Second})
	check("vi_v6.Unicast", v6.Unicast, (*Unicast)(nil))

	legacy := cfg.VRRPInstances[2]
	check("vi_legacy.Version", legacy.Version, VRRPv2)
	check("vi_legacy.AdvertInterval", legacy.AdvertInterval, 2*time.Second)
	check("vi_legacy.AddressOwner", legacy.AddressOwner, true)
	check("vi_legacy.Authentication.Type", legacy.Authentication.Type, AuthPass)
	check("vi_legacy.Authentication.Password", legacy.Authentication.Password.Reveal(), "s3cret")

	check("SyncGroups", cfg.SyncGroups[0].Instances, []string{"vi_web", "vi_v6"})

	// IPVS.
	if len(cfg.VirtualServers) != 4 {
		t.Fatalf("%d virtual servers, want 4", len(cfg.VirtualServers))
	}
	vs := cfg.VirtualServers[0]
	check("web.Address", vs.Address, ap("203.0.113.10:80"))
	check("web.Family", vs.Family, IPv4)
	check("web.Protocol", vs.Protocol, TCP)
	check("web.Scheduler", vs.Scheduler, SchedSourceHash)
	check("web.SchedulerFlags", vs.SchedulerFlags, []SchedulerFlag{FlagSHFallback, FlagSHPort})
	check("web.Forwarding", vs.Forwarding, ForwardNAT)
	check("web.Persistence", *vs.Persistence, Persistence{Timeout: 600 * time.Second, PrefixLength: 24})
	check("web.Quorum", *vs.Quorum, Quorum{MinUp: 1})
	check("web.SorryServer", vs.SorryServer, ap("192.0.2.200:8080"))
	check("web.OnFailure", vs.OnFailure, FailureDrain)
	check("web.SlowStart", vs.SlowStart, 10*time.Second)
	check("web.RealServers[0]", [4]any{vs.RealServers[0].Address, vs.RealServers[0].Weight, vs.RealServers[0].UpperThreshold, vs.RealServers[0].LowerThreshold},
		[4]any{ap("192.0.2.11:8080"), 10, uint32(1000), uint32(800)})
	check("web.RealServers[1].Weight", vs.RealServers[1].Weight, 0)
	check("web.RealServers[1].Forwarding", vs.RealServers[1].Forwarding, ForwardNAT)
	hc := vs.HealthChecks[0]
	check("web.http.Type", hc.Type, CheckHTTP)
	check("web.http.timing", [4]any{hc.Interval, hc.Timeout, hc.Rise, hc.Fall}, [4]any{2 * time.Second, time.Second, 2, 3})
	check("web.http.InitialState", hc.InitialState, StateDown)
	check("web.http.CheckPort", hc.CheckPort, uint16(8081))
	check("web.http.SOMark", hc.SOMark, uint32(7))
	check("web.http.Path", hc.HTTP.Path, "/healthz")
	check("web.http.Host", hc.HTTP.Host, "www.example.com")
	check("web.http.ExpectStatus", hc.HTTP.ExpectStatus, []StatusRange{{200, 299}, {301, 301}})
	if hc.HTTP.ExpectBody == nil || !hc.HTTP.ExpectBody.MatchString("ready") {
		t.Errorf("web.http.ExpectBody = %v, want ok|ready", hc.HTTP.ExpectBody)
	}
	check("web.http.Payload", hc.Payload, (*PayloadCheck)(nil))
	exec := vs.HealthChecks[1]
	check("web.exec", *exec.Exec, ExecCheck{Command: []string{"/usr/local/lib/fulcrum/check-app", "--quick"}, User: "nobody", DynamicWeight: true})

	dns := cfg.VirtualServers[1]
	check("dns.Protocol", dns.Protocol, UDP)
	check("dns.Forwarding", dns.Forwarding, ForwardDirect)
	check("dns.OnFailure", dns.OnFailure, FailureRemove)
	check("dns.RealServers[0].Address (port from the service)", dns.RealServers[0].Address, ap("203.0.113.101:53"))
	check("dns.RealServers[0].Weight (default)", dns.RealServers[0].Weight, 1)
	check("dns.dns", *dns.HealthChecks[0].DNS, DNSCheck{QueryName: "example.com", QueryType: "A", ExpectAnswer: []string{"203.0.113.80"}})
	check("dns.udp", *dns.HealthChecks[1].Payload, PayloadCheck{Send: "ping", Expect: "pong"})

	mail := cfg.VirtualServers[2]
	check("mail.FWMark", mail.FWMark, uint32(42))
	check("mail.Address", mail.Address.IsValid(), false)
	check("mail.Protocol", mail.Protocol, Protocol(""))
	check("mail.Scheduler", mail.Scheduler, SchedMaglevHash)
	check("mail.RemoveOnShutdown", mail.RemoveOnShutdown, true)
	check("web.RemoveOnShutdown (default)", vs.RemoveOnShutdown, false)
	check("mail.Persistence", *mail.Persistence, Persistence{Timeout: time.Minute, PrefixLength: 24})
	check("mail.RealServers[0].Address", mail.RealServers[0].Address, ap("192.0.2.25:0"))
	check("mail.RealServers[0].Forwarding", mail.RealServers[0].Forwarding, ForwardTunnel)
	check("mail.tcp.SourceAddress", mail.HealthChecks[0].SourceAddress, ip("192.0.2.1"))

	api := cfg.VirtualServers[3]
	check("api6.Family", api.Family, IPv6)
	check("api6.Protocol", api.Protocol, SCTP)
	check("api6.Scheduler", api.Scheduler, SchedWeightedRandomTwoOfTwo)
	check("api6.Forwarding (default)", api.Forwarding, ForwardNAT)
	check("api6.https.HTTP", [3]any{api.HealthChecks[0].HTTP.SNI, api.HealthChecks[0].HTTP.VerifyTLS, api.HealthChecks[0].HTTP.Method}, [3]any{"api.example.com", true, "GET"})
	check("api6.https.ExpectStatus (default)", api.HealthChecks[0].HTTP.ExpectStatus, []StatusRange{{200, 399}})

	// Proxy.
	if len(cfg.Proxies) != 1 {
		t.Fatalf("%d proxies, want 1", len(cfg.Proxies))
	}
	p := cfg.Proxies[0]
	check("www.Listeners[0]", [3]any{p.Listeners[0].Address, p.Listeners[0].RedirectHTTPS, p.Listeners[0].TLS}, [3]any{ap("203.0.113.10:8080"), 301, (*ListenerTLS)(nil)})
	l := p.Listeners[1]
	check("www.https.ProxyProtocol", l.ProxyProtocol, true)
	check("www.https.TLS.MinVersion", l.TLS.MinVersion, uint16(tls.VersionTLS12))
	check("www.https.TLS.Certificates", l.TLS.Certificates[0].CertFile, filepath.Join(dir, "certs/www.pem"))
	check("www.https.TLS.Certificates.Key", l.TLS.Certificates[0].KeyFile, filepath.Join(dir, "certs/www.key"))
	check("www.https.TLS.Certificates.OCSP", l.TLS.Certificates[0].OCSPFile, filepath.Join(dir, "certs/www.ocsp"))
	app := p.Backends[0]
	check("app.Balance", app.Balance, BalanceLeastConn)
	check("app.MaxFails", app.MaxFails, 3)
	check("app.FailTimeout", app.FailTimeout, 30*time.Second)
	check("app.Servers", []int{app.Servers[0].Weight, app.Servers[1].Weight}, []int{100, 1})
	check("app.Sticky", *app.Sticky, Sticky{Cookie: "SRV"})
	check("app.http.ExpectStatus", app.HealthChecks[0].HTTP.ExpectStatus, []StatusRange{{200, 200}})
	static := p.Backends[1]
	check("static.Balance", static.Balance, BalanceSource)
	check("static.Sticky", *static.Sticky, Sticky{IPHash: true})
	check("static.MaxFails (default)", static.MaxFails, 1)
	check("static.FailTimeout (default)", static.FailTimeout, 10*time.Second)
	check("www.DefaultBackend", p.DefaultBackend, "app")
	check("www.Routes", [3]string{p.Routes[0].Host, p.Routes[0].PathPrefix, p.Routes[0].Backend}, [3]string{"static.example.com", "/assets/", "static"})
	check("www.RateLimit", *p.RateLimit, RateLimit{Requests: 50, Per: 10 * time.Second, MaxConnectionsPerClient: 20, MaxClients: 50000})
	check("www.MaxConnections", p.MaxConnections, 10000)
	check("www.Timeouts", p.Timeouts, Timeouts{Connect: 3 * time.Second, Client: 30 * time.Second, Server: 30 * time.Second, Idle: 2 * time.Minute, Header: 5 * time.Second})
	check("www.MaxBodySize", p.MaxBodySize, int64(10<<20))
	check("www.MaxHeaderSize", p.MaxHeaderSize, int64(64<<10))
	check("www.Stats.Path", p.Stats.Path, "/stats")
	check("www.Stats.Username (env default)", p.Stats.Username, "admin")
	check("www.Stats.Password (file, trimmed)", p.Stats.Password.Reveal(), "hunter2-stats")
	check("www.Stats.Refresh", p.Stats.Refresh, 5*time.Second)
	check("www.Headers", p.Headers, Headers{Set: map[string]string{"X-Forwarded-Proto": "https"}, Delete: []string{"Server"}})
	check("www.ResponseHeaders", p.ResponseHeaders, Headers{Set: map[string]string{"Strict-Transport-Security": "max-age=31536000"}, Delete: []string{"X-Powered-By"}})
	check("www.TrustedProxies", p.TrustedProxies, []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8::5/128")})
	check("www.Retries", p.Retries, 3)
	check("www.AccessLog", p.AccessLog, true)
	check("www.StickyKey (file, trimmed)", p.StickyKey.Reveal(), "sticky-0123456789-abcdef")
	check("www.http.H2C", p.Listeners[0].H2C, true)
	check("www.https.H2C (default)", l.H2C, false)
	check("app.SendProxyProtocol", app.SendProxyProtocol, 2)
	check("static.SendProxyProtocol (default)", static.SendProxyProtocol, 0)
}

func TestFullConfigEnv(t *testing.T) {
	cfg, diags, _ := loadFull(t, map[string]string{"FULCRUM_STATS_USER": "ops"})
	if diags.HasErrors() {
		t.Fatalf("full.hcl does not load:%s", dump(diags.All()))
	}
	if got := cfg.Proxies[0].Stats.Username; got != "ops" {
		t.Errorf("env() with the variable set gave %q, want ops", got)
	}
}

// TestMinimalDefaults checks the defaults of the node-wide blocks.
func TestMinimalDefaults(t *testing.T) {
	cfg, diags := Parse([]byte(`node "lb1" {}`), "min.hcl", Options{})
	if diags.HasErrors() {
		t.Fatalf("minimal file:%s", dump(diags.All()))
	}
	want := &Config{
		Path:    "min.hcl",
		Node:    Node{Name: "lb1", Source: cfg.Node.Source},
		Control: Control{Socket: "/run/fulcrum/fulcrum.sock"},
		Log:     Log{Level: LogInfo, Target: LogTargetAuto},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got %#v\nwant %#v", cfg, want)
	}
	if cfg.Metrics != nil {
		t.Error("metrics must be off without a metrics block")
	}

	cfg, diags = Parse([]byte("node \"lb1\" {}\nmetrics {}\n"), "min.hcl", Options{})
	if diags.HasErrors() {
		t.Fatalf("metrics {}:%s", dump(diags.All()))
	}
	if cfg.Metrics == nil || cfg.Metrics.Listen.String() != "127.0.0.1:9712" || cfg.Metrics.Path != "/metrics" {
		t.Errorf("metrics {} = %+v, want 127.0.0.1:9712 /metrics", cfg.Metrics)
	}
}

// TestSupportedSubset checks that a build supporting no feature still loads
// a file with only node-wide blocks, as the agent does today.
func TestSupportedSubset(t *testing.T) {
	src := "node \"lb1\" {}\ncontrol {\n  socket = \"/tmp/f.sock\"\n}\nlog {\n  level = \"debug\"\n  target = \"stderr\"\n}\n"
	cfg, diags := Parse([]byte(src), "n.hcl", Options{Supported: map[Feature]bool{}})
	if diags.HasErrors() {
		t.Fatalf("%s", dump(diags.All()))
	}
	if cfg.Control.Socket != "/tmp/f.sock" || cfg.Log.Level != LogDebug || cfg.Log.Target != LogTargetStderr {
		t.Errorf("got %+v %+v", cfg.Control, cfg.Log)
	}
}

func TestAllFeaturesIsFresh(t *testing.T) {
	a := AllFeatures()
	delete(a, FeatureVRRP)
	if !AllFeatures()[FeatureVRRP] {
		t.Error("AllFeatures returned shared state")
	}
	if len(AllFeatures()) != 4 {
		t.Errorf("AllFeatures has %d features, want 4", len(AllFeatures()))
	}
}

// TestFullFileUnsupported checks that every feature block of full.hcl is
// reported, once each, by a build that supports nothing.
func TestFullFileUnsupported(t *testing.T) {
	src, err := os.ReadFile("testdata/full.hcl")
	if err != nil {
		t.Fatal(err)
	}
	cfg, diags := Parse(src, "full.hcl", Options{})
	if cfg != nil {
		t.Fatal("got a Config")
	}
	counts := map[string]int{}
	for _, e := range diags.Errors() {
		counts[e.Summary]++
	}
	want := map[string]int{
		"vrrp_instance is not supported yet":  4, // three instances and the vrrp_script
		"sync_group is not supported yet":     1,
		"virtual_server is not supported yet": 4,
		"proxy is not supported yet":          1,
	}
	if !reflect.DeepEqual(counts, want) {
		t.Errorf("errors %v, want %v", counts, want)
	}
	if s := diags.Summary(); !strings.HasPrefix(s, "full.hcl:26:1: vrrp_instance is not supported yet") {
		t.Errorf("Summary() = %q", s)
	}
}
