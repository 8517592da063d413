package config

import (
	"strings"
	"testing"
	"time"
)

// badConfig is a malformed file and the one error it must produce.
type badConfig struct {
	name    string
	src     string
	summary string // substring of the error's Summary
	at      string // line:col of the error's Subject.Start
	detail  string // substring of the error's Detail, when not empty
	opts    *Options
	setup   func(t *testing.T, dir string)
}

// badConfigs is the acceptance table: every entry must produce exactly one
// error, with the given summary and position.
func badConfigs() []badConfig {
	certs := func(t *testing.T, dir string) {
		writeKeyPair(t, dir, "a.pem", "a.key", time.Now().Add(24*time.Hour))
		writeKeyPair(t, dir, "b.pem", "b.key", time.Now().Add(24*time.Hour))
	}
	return []badConfig{
		// ---- syntax and structure ----
		{
			name:    "syntax: missing value",
			src:     "node \"n\" {}\nlog {\n  level =\n}\n",
			summary: "Invalid expression",
			at:      "3:10",
		},
		{
			name:    "syntax: unclosed block",
			src:     "node \"n\" {\n",
			summary: "Unclosed configuration block",
			at:      "1:10",
		},
		{
			name: "misspelled attribute gets a suggestion",
			src: `node "n" {}
log {
  levle = "debug"
}
`,
			summary: "Unsupported argument",
			at:      "3:3",
			detail:  `Did you mean "level"?`,
		},
		{
			name: "misspelled top-level block type gets a suggestion",
			src: `node "n" {}
vrrp_instanse "a" {
}
`,
			summary: "Unsupported block type",
			at:      "2:1",
			detail:  `Did you mean "vrrp_instance"?`,
		},
		{
			name: "misspelled nested block type gets a suggestion",
			src: `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  virtual_ips       = ["192.0.2.10/24"]
  unicats {
  }
}
`,
			summary: "Unsupported block type",
			at:      "6:3",
			detail:  `Did you mean "unicast"?`,
		},
		{
			name: "misspelled attribute inside a feature block gets a suggestion",
			src: `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  priorty           = 100
  virtual_ips       = ["192.0.2.10/24"]
}
`,
			summary: "Unsupported argument",
			at:      "5:3",
			detail:  `Did you mean "priority"?`,
		},
		{
			name: "attribute written as a block gets a hint",
			src: `node "n" {}
metrics {
  listen {
  }
}
`,
			summary: "Unsupported block type",
			at:      "3:3",
			detail:  `Did you mean to define argument "listen"?`,
		},
		{
			name:    "missing node block",
			src:     "log {\n}\n",
			summary: "Missing node block",
			at:      "1:1",
		},
		{
			name:    "two node blocks",
			src:     "node \"a\" {}\nnode \"b\" {}\n",
			summary: "Duplicate node block",
			at:      "2:1",
		},
		{
			name: "wrong value type",
			src: `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  priority          = "high"
  virtual_ips       = ["192.0.2.10/24"]
}
`,
			summary: "Incorrect attribute value type",
			at:      "5:23",
		},
		{
			name:    "variables are not allowed",
			src:     "node \"n\" {}\nlog {\n  level = info\n}\n",
			summary: "Variables not allowed",
			at:      "3:11",
		},
		// ---- node-wide blocks ----
		{
			name:    "relative control socket",
			src:     "node \"n\" {}\ncontrol {\n  socket = \"fulcrum.sock\"\n}\n",
			summary: "Invalid socket",
			at:      "3:12",
		},
		{
			name:    "metrics listen without port",
			src:     "node \"n\" {}\nmetrics {\n  listen = \"127.0.0.1\"\n}\n",
			summary: "Invalid address",
			at:      "3:12",
			detail:  "has no port",
		},
		{
			name:    "unknown log level with suggestion",
			src:     "node \"n\" {}\nlog {\n  level = \"warning\"\n}\n",
			summary: "Invalid level",
			at:      "3:11",
			detail:  `Did you mean "warn"?`,
		},
		{
			name: "interface not in node.interfaces",
			src: `node "n" {
  interfaces = ["eth0", "eth1"]
}
vrrp_instance "a" {
  interface         = "eht0"
  virtual_router_id = 1
  virtual_ips       = ["192.0.2.10/24"]
}
`,
			summary: "Unknown interface",
			at:      "5:23",
			detail:  `Did you mean "eth0"?`,
		},
		// ---- VRRP ranges (RFC 3768, RFC 5798) ----
		{
			name: "virtual_router_id above 255",
			src: `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 256
  virtual_ips       = ["192.0.2.10/24"]
}
`,
			summary: "virtual_router_id out of range",
			at:      "4:23",
			detail:  "RFC 5798 §5.2.3",
		},
		{
			name: "virtual_router_id 0",
			src: `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 0
  virtual_ips       = ["192.0.2.10/24"]
}
`,
			summary: "virtual_router_id out of range",
			at:      "4:23",
		},
		{
			name: "missing virtual_router_id",
			src: `node "n" {}
vrrp_instance "a" {
  interface   = "eth0"
  virtual_ips = ["192.0.2.10/24"]
}
`,
			summary: "Missing required argument",
			at:      "2:1",
			detail:  `"virtual_router_id"`,
		},
		{
			name: "priority 0",
			src: `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  priority          = 0
  virtual_ips       = ["192.0.2.10/24"]
}
`,
			summary: "priority out of range",
			at:      "5:23",
		},
		{
			name: "priority 255 without owning the address",
			src: `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  priority          = 255
  virtual_ips       = ["192.0.2.10/24"]
}
`,
			summary: "Priority 255 is reserved for the address owner",
			at:      "5:23",
		},
		{
			name: "address owner with a backup priority",
			src: `node "n" {
  addresses = ["192.0.2.10"]
}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  virtual_ips       = ["192.0.2.10/24"]
}
`,
			summary: "Address owner must use priority 255",
			at:      "7:24",
		},
		{
			name: "version 4",
			src: `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  version           = 4
  virtual_ips       = ["192.0.2.10/24"]
}
`,
			summary: "Invalid version",
			at:      "5:23",
		},
		{
			name: "v2 sub-second advert_interval",
			src: `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  version           = 2
  advert_interval   = "1500ms"
  virtual_ips       = ["192.0.2.10/24"]
}
`,
			summary: "Invalid advert_interval for VRRP version 2",
			at:      "6:23",
			detail:  "RFC 3768 §5.3.7",
		},
		{
			name: "v3 advert_interval below 10ms",
			src: `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  advert_interval   = "5ms"
  virtual_ips       = ["192.0.2.10/24"]
}
`,
			summary: "Invalid advert_interval for VRRP version 3",
			at:      "5:23",
			detail:  "RFC 5798 §5.2.7",
		},
		{
			name: "v3 advert_interval above 40.95s",
			src: `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  advert_interval   = "41s"
  virtual_ips       = ["192.0.2.10/24"]
}
`,
			summary: "Invalid advert_interval for VRRP version 3",
			at:      "5:23",
		},
		{
			name: "v3 advert_interval not in centiseconds",
			src: `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  advert_interval   = "105ms"
  virtual_ips       = ["192.0.2.10/24"]
}
`,
			summary: "Invalid advert_interval for VRRP version 3",
			at:      "5:23",
		},
		{
			name: "v2 with an IPv6 virtual IP",
			src: `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  version           = 2
  virtual_ips       = ["2001:db8::10/64"]
}
`,
			summary: "IPv6 virtual IP requires VRRP version 3",
			at:      "6:24",
		},
		{
			name: "mixed families in one instance",
			src: `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  virtual_ips       = ["192.0.2.10/24", "2001:db8::10/64"]
}
`,
			summary: "Mixed address families",
			at:      "5:41",
		},
		{
			name: "invalid virtual_ip label",
			src: `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  virtual_ip "192.0.2.300/24" {
  }
}
`,
			summary: "Invalid virtual IP",
			at:      "5:14",
		},
		{
			name: "address label not prefixed by the device",
			src: `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  virtual_ip "192.0.2.10/24" {
    label = "eth1:vip"
  }
}
`,
			summary: "Invalid label",
			at:      "6:13",
		},
		{
			name: "authentication with VRRPv3",
			src: `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  virtual_ips       = ["192.0.2.10/24"]
  authentication {
    password = "secret"
  }
}
`,
			summary: "Authentication requires VRRP version 2",
			at:      "6:3",
		},
		{
			name: "v2 password longer than 8 bytes",
			src: `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  version           = 2
  virtual_ips       = ["192.0.2.10/24"]
  authentication {
    password = "much-too-long"
  }
}
`,
			summary: "Password too long",
			at:      "8:16",
			detail:  "RFC 3768 §5.3.10",
		},
		{
			name: "unicast peer of the other family",
			src: `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  virtual_ips       = ["192.0.2.10/24"]
  unicast {
    peers = ["2001:db8::2"]
  }
}
`,
			summary: "Mixed address families",
			at:      "7:14",
		},
		{
			name: "track weight out of range",
			src: `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  virtual_ips       = ["192.0.2.10/24"]
  track_interface "eth1" {
    weight = 300
  }
}
`,
			summary: "weight out of range",
			at:      "7:14",
		},
		{
			name: "bad duration string",
			src: `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  virtual_ips       = ["192.0.2.10/24"]
  preempt_delay     = "10x"
}
`,
			summary: "Invalid duration",
			at:      "6:23",
			detail:  `"10x" is not a duration`,
		},
		{
			name: "duration without a unit",
			src: `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  virtual_ips       = ["192.0.2.10/24"]
  notify {
    timeout = 5
  }
}
`,
			summary: "Invalid duration",
			at:      "7:15",
		},
		{
			name: "notify command not absolute",
			src: `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  virtual_ips       = ["192.0.2.10/24"]
  notify {
    master = ["notify.sh", "master"]
  }
}
`,
			summary: "Command is not an absolute path",
			at:      "7:15",
		},
		// ---- names and references ----
		{
			name: "duplicate vrrp_instance name",
			src: `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  virtual_ips       = ["192.0.2.10/24"]
}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 2
  virtual_ips       = ["192.0.2.11/24"]
}
`,
			summary: "Duplicate vrrp_instance name",
			at:      "7:15",
			detail:  "(line 2)",
		},
		{
			name: "duplicate VRID on one interface and family",
			src: `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 7
  virtual_ips       = ["192.0.2.10/24"]
}
vrrp_instance "b" {
  interface         = "eth0"
  virtual_router_id = 7
  virtual_ips       = ["192.0.2.11/24"]
}
`,
			summary: "Duplicate virtual_router_id",
			at:      "9:23",
			detail:  "RFC 5798 §7.3",
		},
		{
			name: "sync_group names an unknown instance",
			src: `node "n" {}
vrrp_instance "vi_web" {
  interface         = "eth0"
  virtual_router_id = 1
  virtual_ips       = ["192.0.2.10/24"]
}
sync_group "g" {
  instances = ["vi_wbe"]
}
`,
			summary: "Unknown vrrp_instance",
			at:      "8:16",
			detail:  `Did you mean "vi_web"?`,
		},
		{
			name: "track_service names an unknown service",
			src: `node "n" {}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  virtual_ips       = ["192.0.2.10/24"]
  track_service "wbe" {
  }
}
virtual_server "web" {
  fwmark = 1
  real_server "r" {
    address = "192.0.2.20"
  }
}
`,
			summary: "Unknown service",
			at:      "6:17",
			detail:  `Did you mean "web"?`,
		},
		{
			name: "track_script names an unknown vrrp_script",
			src: `node "n" {}
vrrp_script "chk_db" {
  command = ["/usr/local/bin/check-db"]
}
vrrp_instance "a" {
  interface         = "eth0"
  virtual_router_id = 1
  virtual_ips       = ["192.0.2.10/24"]
  track_script "chk_bd" {
  }
}
`,
			summary: "Unknown vrrp_script",
			at:      "9:16",
			detail:  `Did you mean "chk_db"?`,
		},
		{
			name: "vrrp_script without a command",
			src: `node "n" {}
vrrp_script "chk" {
  interval = "2s"
}
`,
			summary: "Missing required argument",
			at:      "2:1",
		},
		{
			name: "vrrp_script timeout longer than its interval",
			src: `node "n" {}
vrrp_script "chk" {
  command  = ["/bin/true"]
  interval = "1s"
  timeout  = "3s"
}
`,
			summary: "Script timeout exceeds interval",
			at:      "5:14",
		},
		{
			name: "duplicate vrrp_script",
			src: `node "n" {}
vrrp_script "chk" {
  command = ["/bin/true"]
}
vrrp_script "chk" {
  command = ["/bin/false"]
}
`,
			summary: "Duplicate vrrp_script name",
			at:      "5:13",
		},
		{
			name: "virtual_server and proxy share names",
			src: `node "n" {}
virtual_server "web" {
  fwmark = 1
  real_server "r" {
    address = "192.0.2.20"
  }
}
proxy "web" {
  listener "l" { address = "127.0.0.1:8080" }
  backend "b" {
    server "s" { address = "127.0.0.1:9000" }
  }
}
`,
			summary: "Duplicate service name",
			at:      "8:7",
		},
		{
			name: "duplicate real_server name",
			src: `node "n" {}
virtual_server "v" {
  address = "192.0.2.1:80"
  real_server "r" {
    address = "192.0.2.20"
  }
  real_server "r" {
    address = "192.0.2.21"
  }
}
`,
			summary: "Duplicate real_server name",
			at:      "7:15",
			detail:  "(line 4)",
		},
		{
			name: "default_backend names an unknown backend",
			src: `node "n" {}
proxy "p" {
  listener "l" { address = "127.0.0.1:8080" }
  backend "api" {
    server "s" { address = "127.0.0.1:9000" }
  }
  default_backend = "apii"
}
`,
			summary: "Unknown backend",
			at:      "7:21",
			detail:  `Did you mean "api"?`,
		},
		{
			name: "two backends and no default_backend",
			src: `node "n" {}
proxy "p" {
  listener "l" { address = "127.0.0.1:8080" }
  backend "a" {
    server "s" { address = "127.0.0.1:9000" }
  }
  backend "b" {
    server "s" { address = "127.0.0.1:9001" }
  }
}
`,
			summary: "Missing default_backend",
			at:      "2:1",
		},
		// ---- IPVS ----
		{
			name: "address and fwmark together",
			src: `node "n" {}
virtual_server "v" {
  address = "192.0.2.1:80"
  fwmark  = 3
}
`,
			summary: "Conflicting arguments",
			at:      "4:3",
		},
		{
			name:    "neither address nor fwmark",
			src:     "node \"n\" {}\nvirtual_server \"v\" {\n  scheduler = \"rr\"\n}\n",
			summary: "Missing address or fwmark",
			at:      "2:1",
		},
		{
			name: "address without port",
			src: `node "n" {}
virtual_server "v" {
  address = "192.0.2.1"
}
`,
			summary: "Invalid address",
			at:      "3:13",
		},
		{
			name: "unknown scheduler with suggestion",
			src: `node "n" {}
virtual_server "v" {
  fwmark    = 1
  scheduler = "wlcx"
}
`,
			summary: "Invalid scheduler",
			at:      "4:15",
			detail:  `Did you mean "wlc"?`,
		},
		{
			name: "scheduler flag of another scheduler",
			src: `node "n" {}
virtual_server "v" {
  fwmark          = 1
  scheduler_flags = ["sh-port"]
}
`,
			summary: "Scheduler flag does not apply",
			at:      "4:22",
		},
		{
			name: "port 0 without persistence",
			src: `node "n" {}
virtual_server "v" {
  address = "192.0.2.1:0"
}
`,
			summary: "Port 0 requires persistence",
			at:      "3:13",
		},
		{
			name: "real_server weight above 65535",
			src: `node "n" {}
virtual_server "v" {
  address = "192.0.2.1:80"
  real_server "r" {
    address = "192.0.2.20"
    weight  = 70000
  }
}
`,
			summary: "weight out of range",
			at:      "6:15",
		},
		{
			name: "IPv6 real server behind an IPv4 NAT service",
			src: `node "n" {}
virtual_server "v" {
  address = "192.0.2.1:80"
  real_server "r" {
    address = "[2001:db8::20]:80"
  }
}
`,
			summary: "Mixed address families",
			at:      "5:15",
			detail:  "tunnel",
		},
		{
			name: "sorry server of the other family",
			src: `node "n" {}
virtual_server "v" {
  address      = "192.0.2.1:80"
  sorry_server = "[2001:db8::99]:80"
  real_server "r" {
    address = "192.0.2.20"
  }
}
`,
			summary: "Mixed address families",
			at:      "4:18",
		},
		{
			name: "bad persistence netmask",
			src: `node "n" {}
virtual_server "v" {
  address = "192.0.2.1:80"
  persistence {
    netmask = "255.0.255.0"
  }
  real_server "r" {
    address = "192.0.2.20"
  }
}
`,
			summary: "Invalid netmask",
			at:      "5:15",
		},
		{
			name: "quorum that can never be reached",
			src: `node "n" {}
virtual_server "v" {
  address = "192.0.2.1:80"
  quorum {
    min_up = 3
  }
  real_server "r" {
    address = "192.0.2.20"
  }
}
`,
			summary: "Quorum can never be reached",
			at:      "5:14",
		},
		// ---- health checks ----
		{
			name: "http-only attribute on a tcp check",
			src: `node "n" {}
virtual_server "v" {
  address = "192.0.2.1:80"
  real_server "r" {
    address = "192.0.2.20"
  }
  health_check "tcp" {
    path = "/health"
  }
}
`,
			summary: "Argument not valid for this check type",
			at:      "8:5",
			detail:  "http, https",
		},
		{
			name: "unknown health check type",
			src: `node "n" {}
virtual_server "v" {
  address = "192.0.2.1:80"
  real_server "r" {
    address = "192.0.2.20"
  }
  health_check "htp" {
  }
}
`,
			summary: "Invalid health check type",
			at:      "7:16",
			detail:  `Did you mean "http"?`,
		},
		{
			name: "status code out of range",
			src: `node "n" {}
virtual_server "v" {
  address = "192.0.2.1:80"
  real_server "r" {
    address = "192.0.2.20"
  }
  health_check "http" {
    expect_status = ["200-299", "700"]
  }
}
`,
			summary: "Invalid status code",
			at:      "8:33",
		},
		{
			name: "expect_body that does not compile",
			src: `node "n" {}
virtual_server "v" {
  address = "192.0.2.1:80"
  real_server "r" {
    address = "192.0.2.20"
  }
  health_check "http" {
    expect_body = "ok("
  }
}
`,
			summary: "Invalid regular expression",
			at:      "8:19",
		},
		{
			name: "timeout longer than interval",
			src: `node "n" {}
virtual_server "v" {
  address = "192.0.2.1:80"
  real_server "r" {
    address = "192.0.2.20"
  }
  health_check "tcp" {
    interval = "1s"
    timeout  = "3s"
  }
}
`,
			summary: "Health check timeout exceeds interval",
			at:      "9:16",
		},
		{
			name: "dns check on a proxy backend",
			src: `node "n" {}
proxy "p" {
  listener "l" { address = "127.0.0.1:8080" }
  backend "b" {
    server "s" { address = "127.0.0.1:9000" }
    health_check "dns" {
      query_name = "example.com"
    }
  }
}
`,
			summary: "Invalid health check type",
			at:      "6:18",
		},
		// ---- proxy ----
		{
			name: "bad size",
			src: `node "n" {}
proxy "p" {
  listener "l" { address = "127.0.0.1:8080" }
  backend "b" {
    server "s" { address = "127.0.0.1:9000" }
  }
  max_body_size = "10 parsecs"
}
`,
			summary: "Invalid size",
			at:      "7:19",
		},
		{
			name: "redirect_https with a non-redirect code",
			src: `node "n" {}
proxy "p" {
  listener "l" {
    address        = "127.0.0.1:8080"
    redirect_https = 303
  }
  backend "b" {
    server "s" { address = "127.0.0.1:9000" }
  }
}
`,
			summary: "Invalid redirect_https",
			at:      "5:22",
		},
		{
			name: "sticky with cookie and ip_hash",
			src: `node "n" {}
proxy "p" {
  listener "l" { address = "127.0.0.1:8080" }
  backend "b" {
    server "s" { address = "127.0.0.1:9000" }
    sticky {
      cookie  = "SRV"
      ip_hash = true
    }
  }
}
`,
			summary: "Conflicting arguments",
			at:      "8:7",
		},
		{
			name: "two proxies on one address",
			src: `node "n" {}
proxy "p" {
  listener "l" { address = "0.0.0.0:8080" }
  backend "b" {
    server "s" { address = "127.0.0.1:9000" }
  }
}
proxy "q" {
  listener "l" { address = "127.0.0.1:8080" }
  backend "b" {
    server "s" { address = "127.0.0.1:9000" }
  }
}
`,
			summary: "Listener address conflict",
			at:      "9:3",
		},
		{
			name:  "TLS 1.1",
			setup: certs,
			src: `node "n" {}
proxy "p" {
  listener "l" {
    address = "127.0.0.1:8443"
    tls {
      min_version = "1.1"
      certificate "c" {
        cert_file = "a.pem"
        key_file  = "a.key"
      }
    }
  }
  backend "b" {
    server "s" { address = "127.0.0.1:9000" }
  }
}
`,
			summary: "Invalid min_version",
			at:      "6:21",
			detail:  "RFC 8996",
		},
		{
			name:  "TLS certificate file missing",
			setup: certs,
			src: `node "n" {}
proxy "p" {
  listener "l" {
    address = "127.0.0.1:8443"
    tls {
      certificate "c" {
        cert_file = "missing.pem"
        key_file  = "a.key"
      }
    }
  }
  backend "b" {
    server "s" { address = "127.0.0.1:9000" }
  }
}
`,
			summary: "Cannot read certificate file",
			at:      "7:21",
			detail:  "missing.pem",
		},
		{
			name:  "TLS certificate and key of different pairs",
			setup: certs,
			src: `node "n" {}
proxy "p" {
  listener "l" {
    address = "127.0.0.1:8443"
    tls {
      certificate "c" {
        cert_file = "a.pem"
        key_file  = "b.key"
      }
    }
  }
  backend "b" {
    server "s" { address = "127.0.0.1:9000" }
  }
}
`,
			summary: "Certificate and key do not match",
			at:      "8:21",
		},
		{
			name:  "TLS key file is not a key",
			setup: certs,
			src: `node "n" {}
proxy "p" {
  listener "l" {
    address = "127.0.0.1:8443"
    tls {
      certificate "c" {
        cert_file = "a.pem"
        key_file  = "a.pem"
      }
    }
  }
  backend "b" {
    server "s" { address = "127.0.0.1:9000" }
  }
}
`,
			summary: "Invalid key file",
			at:      "8:21",
		},
		{
			name:  "h2c on a TLS listener",
			setup: certs,
			src: `node "n" {}
proxy "p" {
  listener "l" {
    address = "127.0.0.1:8443"
    h2c     = true
    tls {
      certificate "c" {
        cert_file = "a.pem"
        key_file  = "a.key"
      }
    }
  }
  backend "b" {
    server "s" { address = "127.0.0.1:9000" }
  }
}
`,
			summary: "Conflicting arguments",
			at:      "5:5",
			detail:  "ALPN",
		},
		{
			name: "send_proxy_protocol version 3",
			src: `node "n" {}
proxy "p" {
  listener "l" { address = "127.0.0.1:8080" }
  backend "b" {
    server "s" { address = "127.0.0.1:9000" }
    send_proxy_protocol = 3
  }
}
`,
			summary: "send_proxy_protocol out of range",
			at:      "6:27",
		},
		{
			name: "trusted_proxies with host bits",
			src: `node "n" {}
proxy "p" {
  listener "l" { address = "127.0.0.1:8080" }
  backend "b" {
    server "s" { address = "127.0.0.1:9000" }
  }
  trusted_proxies = ["192.0.2.0/24", "10.1.2.3/8"]
}
`,
			summary: "Invalid prefix",
			at:      "7:38",
			detail:  "10.0.0.0/8",
		},
		{
			name: "retries above 16",
			src: `node "n" {}
proxy "p" {
  listener "l" { address = "127.0.0.1:8080" }
  backend "b" {
    server "s" { address = "127.0.0.1:9000" }
  }
  retries = 17
}
`,
			summary: "retries out of range",
			at:      "7:13",
		},
		{
			name: "rate_limit that limits nothing",
			src: `node "n" {}
proxy "p" {
  listener "l" { address = "127.0.0.1:8080" }
  backend "b" {
    server "s" { address = "127.0.0.1:9000" }
  }
  rate_limit {
    per = "1s"
  }
}
`,
			summary: "Missing required argument",
			at:      "7:3",
			detail:  "max_connections_per_client",
		},
		{
			name: "sticky_key too short",
			src: `node "n" {}
proxy "p" {
  listener "l" { address = "127.0.0.1:8080" }
  backend "b" {
    server "s" { address = "127.0.0.1:9000" }
  }
  sticky_key = "short"
}
`,
			summary: "sticky_key too short",
			at:      "7:16",
			detail:  "not 5",
		},
		{
			name: "two proxies with different sticky keys",
			src: `node "n" {}
proxy "p" {
  listener "l" { address = "127.0.0.1:8080" }
  backend "b" {
    server "s" { address = "127.0.0.1:9000" }
  }
  sticky_key = "0123456789abcdef-one"
}
proxy "q" {
  listener "l" { address = "127.0.0.1:8081" }
  backend "b" {
    server "s" { address = "127.0.0.1:9000" }
  }
  sticky_key = "0123456789abcdef-two"
}
`,
			summary: "Conflicting sticky_key",
			at:      "14:16",
			detail:  "7:16",
		},
		// ---- functions ----
		{
			name: "env() of an unset variable",
			src: `node "n" {}
proxy "p" {
  listener "l" { address = "127.0.0.1:8080" }
  backend "b" {
    server "s" { address = "127.0.0.1:9000" }
  }
  stats {
    username = "admin"
    password = env("FULCRUM_UNSET_PASSWORD")
  }
}
`,
			summary: "Error in function call",
			at:      "9:16",
			detail:  `"FULCRUM_UNSET_PASSWORD" is not set`,
		},
		{
			name:    "file() of a missing file",
			src:     "node \"n\" {}\ncontrol {\n  socket = file(\"nope.txt\")\n}\n",
			summary: "Error in function call",
			at:      "3:12",
			detail:  "nope.txt",
		},
		// ---- features this build does not have ----
		{
			name:    "feature not supported",
			opts:    &Options{Supported: map[Feature]bool{FeatureProxy: true}},
			src:     "node \"n\" {}\n\nvrrp_instance \"a\" {\n  anything = \"goes\"\n}\n",
			summary: "vrrp_instance is not supported yet",
			at:      "3:1",
			detail:  "does not implement",
		},
		{
			name:    "nil Supported means nothing is supported",
			opts:    &Options{},
			src:     "node \"n\" {}\nsync_group \"g\" {\n  instances = []\n}\n",
			summary: "sync_group is not supported yet",
			at:      "2:1",
		},
	}
}

func TestMalformedConfigs(t *testing.T) {
	cases := badConfigs()
	if len(cases) < 40 {
		t.Fatalf("the acceptance table needs at least 40 cases, has %d", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			opts := all()
			if tc.opts != nil {
				opts = *tc.opts
			}
			cfg, diags := parseIn(dir, tc.src, opts, map[string]string{"FULCRUM_SET": "x"})
			if cfg != nil {
				t.Errorf("got a Config despite errors")
			}
			errs := diags.Errors()
			if len(errs) != 1 {
				t.Fatalf("want exactly one error, got %d:%s", len(errs), dump(diags.All()))
			}
			e := errs[0]
			if !strings.Contains(e.Summary, tc.summary) {
				t.Errorf("summary %q does not contain %q", e.Summary, tc.summary)
			}
			if got := at(e); got != tc.at {
				t.Errorf("error at %s, want %s (%s)", got, tc.at, e.Summary)
			}
			if tc.detail != "" && !strings.Contains(e.Detail, tc.detail) {
				t.Errorf("detail %q does not contain %q", e.Detail, tc.detail)
			}
			if e.Subject == nil || !strings.HasSuffix(e.Subject.Filename, "node.hcl") {
				t.Errorf("subject %v does not name the file", e.Subject)
			}
		})
	}
}
