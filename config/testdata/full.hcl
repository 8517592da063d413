# A complete Fulcrum node configuration, using every block and attribute.
# It is the reference example of docs/config.md and a test fixture: the
# certificate, key and secret files it names are created by the test.

node "lb1" {
  interfaces = ["eth0", "eth1"]
  # Addresses configured on this host outside Fulcrum. A VRRP instance whose
  # virtual IPs are all listed here is their address owner (priority 255).
  addresses = ["198.51.100.2", "192.0.2.1"]
}

control {
  socket = "/run/fulcrum/fulcrum.sock"
}

metrics {
  listen = "127.0.0.1:9712"
  path   = "/metrics"
}

log {
  level  = "info"
  target = "journald"
}

vrrp_script "chk_db" {
  command  = ["/usr/local/bin/check-db-replica"]
  interval = "2s"
  fall     = 2
  weight   = -30
}

vrrp_instance "vi_web" {
  interface         = "eth0"
  virtual_router_id = 51
  priority          = 150
  advert_interval   = "100ms"
  version           = 3
  preempt           = true
  preempt_delay     = "30s"

  unicast {
    source_address = "198.51.100.2"
    peers          = ["198.51.100.3"]
    relax_ttl      = false
  }

  virtual_ip "203.0.113.10/24" {
    device = "eth0"
    label  = "eth0:web"
  }
  virtual_ips = ["203.0.113.11/24", "203.0.113.12"]

  accept_v2_checksum = true

  garp {
    delay            = "5s"
    repeat           = 3
    refresh_interval = "60s"
  }

  track_interface "eth1" {
    weight = -50
  }
  track_process "haproxy" {
    weight = 0
  }
  track_file "/run/fulcrum/maintenance" {
    weight = -100
  }
  track_service "web" {
    weight = -20
  }
  track_service "www" {
    weight = 0
  }
  track_script "chk_db" {}

  notify {
    master  = ["/usr/local/bin/fulcrum-notify", "master", "vi_web"]
    backup  = ["/usr/local/bin/fulcrum-notify", "backup", "vi_web"]
    fault   = ["/usr/local/bin/fulcrum-notify", "fault", "vi_web"]
    stop    = ["/usr/local/bin/fulcrum-notify", "stop", "vi_web"]
    timeout = "10s"
  }

  keep_vips_on_shutdown = false
}

vrrp_instance "vi_v6" {
  interface         = "eth0"
  virtual_router_id = 51
  virtual_ips       = ["2001:db8::10/64"]
}

vrrp_instance "vi_legacy" {
  interface         = "eth1"
  virtual_router_id = 52
  version           = 2
  advert_interval   = "2s"
  priority          = 255

  authentication {
    type     = "pass"
    password = "s3cret"
  }

  virtual_ips = ["192.0.2.1/24"]
}

sync_group "sg_edge" {
  instances = ["vi_web", "vi_v6"]
}

virtual_server "web" {
  address         = "203.0.113.10:80"
  protocol        = "tcp"
  scheduler       = "sh"
  scheduler_flags = ["sh-fallback", "sh-port"]
  forwarding      = "nat"

  persistence {
    timeout = "600s"
    netmask = "255.255.255.0"
  }

  quorum {
    min_up     = 1
    hysteresis = 0
  }

  sorry_server = "192.0.2.200:8080"
  on_failure   = "drain"
  slow_start   = "10s"

  real_server "app1" {
    address         = "192.0.2.11:8080"
    weight          = 10
    upper_threshold = 1000
    lower_threshold = 800
  }
  real_server "app2" {
    address    = "192.0.2.12:8080"
    weight     = 0
    forwarding = "nat"
  }

  health_check "http" {
    interval      = "2s"
    timeout       = "1s"
    rise          = 2
    fall          = 3
    initial_state = "down"
    path          = "/healthz"
    method        = "GET"
    host          = "www.example.com"
    expect_status = ["200-299", "301"]
    expect_body   = "ok|ready"
    check_port    = 8081
    so_mark       = 7
  }

  health_check "exec" {
    command        = ["/usr/local/lib/fulcrum/check-app", "--quick"]
    user           = "nobody"
    dynamic_weight = true
    interval       = "10s"
    timeout        = "5s"
  }
}

virtual_server "dns" {
  address    = "203.0.113.53:53"
  protocol   = "udp"
  scheduler  = "rr"
  forwarding = "dr"
  on_failure = "remove"

  real_server "ns1" {
    address = "203.0.113.101"
  }

  health_check "dns" {
    query_name    = "example.com"
    query_type    = "A"
    expect_answer = ["203.0.113.80"]
  }

  health_check "udp" {
    payload = "ping"
    expect  = "pong"
  }
}

virtual_server "mail" {
  fwmark    = 42
  family    = "ipv4"
  scheduler = "mh"

  persistence {
    timeout = "60s"
    netmask = 24
  }

  remove_on_shutdown = true

  real_server "mx1" {
    address    = "192.0.2.25"
    forwarding = "tunnel"
  }

  health_check "tcp" {
    check_port     = 25
    source_address = "192.0.2.1"
    expect         = "220 "
  }
}

virtual_server "api6" {
  address   = "[2001:db8::443]:443"
  protocol  = "sctp"
  scheduler = "twos"

  real_server "api6a" {
    address = "[2001:db8::1001]:8443"
  }

  health_check "https" {
    path          = "/ready"
    sni           = "api.example.com"
    verify_tls    = true
    check_address = "2001:db8::1001"
  }
}

proxy "www" {
  listener "http" {
    address        = "203.0.113.10:8080"
    redirect_https = "301"
    proxy_protocol = false
    h2c            = true
  }

  listener "https" {
    address        = "203.0.113.10:443"
    proxy_protocol = true

    tls {
      min_version = "1.2"

      certificate "default" {
        cert_file = "certs/www.pem"
        key_file  = "certs/www.key"
        ocsp_file = "certs/www.ocsp"
      }
    }
  }

  backend "app" {
    balance             = "leastconn"
    max_fails           = 3
    fail_timeout        = "30s"
    send_proxy_protocol = 2

    server "app1" {
      address = "192.0.2.11:8080"
      weight  = 100
    }
    server "app2" {
      address = "192.0.2.12:8080"
    }

    health_check "http" {
      path          = "/healthz"
      expect_status = ["200"]
    }

    sticky {
      cookie = "SRV"
    }
  }

  backend "static" {
    balance = "source"

    server "cdn1" {
      address = "192.0.2.21:80"
    }

    sticky {
      ip_hash = true
    }
  }

  default_backend = "app"

  route {
    host        = "static.example.com"
    path_prefix = "/assets/"
    backend     = "static"
  }

  rate_limit {
    requests                   = 50
    per                        = "10s"
    max_connections_per_client = 20
    max_clients                = 50000
  }

  max_connections = 10000

  timeouts {
    connect = "3s"
    client  = "30s"
    server  = "30s"
    idle    = "2m"
    header  = "5s"
  }

  max_body_size   = "10MiB"
  max_header_size = "64KiB"

  stats {
    path     = "/stats"
    username = env("FULCRUM_STATS_USER", "admin")
    password = trimspace(file("secrets/stats.pass"))
    refresh  = "5s"
  }

  headers {
    set    = { "X-Forwarded-Proto" = "https" }
    delete = ["Server"]
  }

  response_headers {
    set    = { "Strict-Transport-Security" = "max-age=31536000" }
    delete = ["X-Powered-By"]
  }

  trusted_proxies = ["198.51.100.0/24", "2001:db8::5"]
  retries         = 3
  access_log      = true
  sticky_key      = trimspace(file("secrets/sticky.key"))
}
