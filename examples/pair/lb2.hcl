# lb2: the second node of a load-balancer pair, the classic keepalived + HAProxy pair as one
# Fulcrum configuration. lb1.hcl is the same file with the other node's name, priorities and
# unicast addresses. See docs/operations.md for deploying and operating the pair; `make demo`
# runs these two files, unchanged, on two nodes in network namespaces.
#
# Network (documentation ranges):
#   eth0  front, 203.0.113.0/24:  lb1 203.0.113.2, lb2 203.0.113.3, service VIP 203.0.113.10
#   eth1  back,  198.51.100.0/24: lb1 198.51.100.2, lb2 198.51.100.3, gateway VIP 198.51.100.1,
#                                 app servers 198.51.100.21, .22 and .23
#
# Two kinds of service on the one front VIP:
#   - 203.0.113.10:8000 is kernel IPVS in NAT mode (keepalived's virtual_server): TCP passed
#     through to the app servers' port 8000. With NAT the replies must go back through the active
#     node, so the app servers' default gateway is the gateway VIP 198.51.100.1, held by the
#     second VRRP instance, which moves together with the first.
#   - 203.0.113.10:443 and :80 are the embedded HTTP proxy (HAProxy's frontend/backend): TLS
#     terminated here, a sticky cookie, a rate limit and a stats page; port 80 redirects to
#     https. The listeners bind the VIP with IP_FREEBIND, so they also start on the backup node,
#     before the VIP is there.
#
# Files beside this one (relative paths are relative to this file):
#   tls/www.example.com.pem, tls/www.example.com.key   the certificate and its key
#   secrets/sticky.key     the key that signs sticky cookies, the same on both nodes, so a
#                          session stays on its server across a failover (16+ random bytes)
#   secrets/stats.pass     the stats page's password
# `fulcrum validate` reads them, so they must exist; `make demo` makes throwaway ones.

node "lb2" {
  interfaces = ["eth0", "eth1"]
}

control {
  socket = "/run/fulcrum/fulcrum.sock" # root-only; used by fulcrum status/reload/events/...
}

metrics {
  listen = "127.0.0.1:9712" # scrape through an SSH tunnel or a local Prometheus agent
}

log {
  level  = "info"
  target = "auto" # journald under systemd
}

# The service VIP. Priorities: lb1 200, lb2 100; the higher one is MASTER (there is no "state").
vrrp_instance "vi_front" {
  interface         = "eth0"
  virtual_router_id = 51 # unique per segment: check that no other VRRP router uses 51 here
  priority          = 100
  advert_interval   = "100ms" # VRRPv3: failover in about 3 x 100ms + skew
  version           = 3
  # After a restart, wait before taking the VIP back, so the proxy and the health checks are up.
  preempt_delay = "10s"

  virtual_ips = ["203.0.113.10/24"]

  # Unicast instead of the multicast group 224.0.0.18: works with IGMP snooping and across
  # switches that do not forward multicast. Remove the block to use multicast.
  unicast {
    source_address = "203.0.113.3"
    peers          = ["203.0.113.2"]
  }

  # lb2 is the backup (100 < 200). Losing the link or the services lowers it to 1 (kept within 1-254).
  track_interface "eth1" {
    weight = -150
  }
  track_service "api" {
    weight = -150
  }
  track_service "www" {
    weight = -150
  }
}

# The app servers' gateway for the NAT replies. It tracks the same objects with the same weights
# as vi_front, so both VIPs move together (drill both with `fulcrum failover -all`).
vrrp_instance "vi_gw" {
  interface         = "eth1"
  virtual_router_id = 52
  priority          = 100
  advert_interval   = "100ms"
  preempt_delay     = "10s"

  virtual_ips = ["198.51.100.1/24"]

  unicast {
    source_address = "198.51.100.3"
    peers          = ["198.51.100.2"]
  }

  track_interface "eth0" {
    weight = -150
  }
  track_service "api" {
    weight = -150
  }
  track_service "www" {
    weight = -150
  }
}

# Layer 4 in the kernel: IPVS, as keepalived's virtual_server.
virtual_server "api" {
  address    = "203.0.113.10:8000"
  protocol   = "tcp"
  scheduler  = "wlc"
  forwarding = "nat"

  real_server "app1" {
    address = "198.51.100.21:8000"
  }
  real_server "app2" {
    address = "198.51.100.22:8000"
  }
  real_server "app3" {
    address = "198.51.100.23:8000"
  }

  # keepalived's TCP_CHECK: a failed server's weight goes to 0 (drained), and back when it passes.
  health_check "tcp" {
    interval = "1s"
    timeout  = "1s"
    rise     = 2
    fall     = 2
  }
}

# Layer 7: HTTPS reverse proxy, as HAProxy's frontend + backend.
proxy "www" {
  listener "https" {
    address = "203.0.113.10:443"
    tls {
      certificate "www" {
        cert_file = "tls/www.example.com.pem"
        key_file  = "tls/www.example.com.key"
      }
    }
  }
  listener "http" {
    address        = "203.0.113.10:80"
    redirect_https = 301
  }

  backend "app" {
    balance = "roundrobin"

    server "app1" {
      address = "198.51.100.21:8080"
    }
    server "app2" {
      address = "198.51.100.22:8080"
    }
    server "app3" {
      address = "198.51.100.23:8080"
    }

    # HAProxy's `cookie SRV insert indirect nocache`, signed with sticky_key.
    sticky {
      cookie = "SRV"
    }

    health_check "http" {
      path          = "/healthz"
      expect_status = ["200"]
      interval      = "1s"
      rise          = 2
      fall          = 2
    }
  }

  sticky_key = trimspace(file("secrets/sticky.key"))

  # HAProxy's `http_req_rate(10s)` limit: 50 requests per 10 s per client address, then 429.
  rate_limit {
    requests = 50
    per      = "10s"
  }

  timeouts {
    connect = "3s"
  }

  # HAProxy's `stats uri /stats` with `stats auth`: https://203.0.113.10/stats (;json for scripts).
  stats {
    path     = "/stats"
    username = "admin"
    password = trimspace(file("secrets/stats.pass"))
    refresh  = "5s"
  }

  access_log = true
}
