# lb2: the second node of a load-balancer pair, the classic keepalived + HAProxy pair as one
# Fulcrum configuration. lb1.hcl is the same file with the other node's name, priorities and
# unicast addresses. See docs/operations.md for deploying and operating the pair.
#
# Network (documentation ranges):
#   eth0  front, 203.0.113.0/24:  lb1 203.0.113.2, lb2 203.0.113.3, service VIP 203.0.113.10
#   eth1  back,  198.51.100.0/24: lb1 198.51.100.2, lb2 198.51.100.3, gateway VIP 198.51.100.1,
#                                 app servers 198.51.100.21 and .22
#
# Two services on the front VIP:
#   - 203.0.113.10:443 is IPVS in NAT mode: TCP passed through to the app servers, which terminate
#     TLS themselves. With NAT the replies must go back through the active node, so the app
#     servers' default gateway is the gateway VIP 198.51.100.1, held by the second VRRP instance.
#   - 203.0.113.10:80 is the embedded HTTP proxy (HAProxy's frontend/backend). It binds the VIP
#     with IP_FREEBIND, so it also starts on the backup node, before the VIP is there.
#     To terminate TLS here as well, add a listener with a tls { certificate { cert_file key_file } }
#     block (docs/config.md, "tls"); `fulcrum validate` loads those files, so they must exist.

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
  track_service "tls_pass" {
    weight = -150
  }
  track_service "www" {
    weight = -150
  }
}

# The app servers' gateway for the NAT replies. It tracks the same objects with the same weights
# as vi_front, so both VIPs move together.
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
  track_service "tls_pass" {
    weight = -150
  }
  track_service "www" {
    weight = -150
  }
}

# Layer 4 in the kernel: IPVS, as keepalived's virtual_server.
virtual_server "tls_pass" {
  address    = "203.0.113.10:443"
  protocol   = "tcp"
  scheduler  = "wlc"
  forwarding = "nat"

  real_server "app1" {
    address = "198.51.100.21:443"
  }
  real_server "app2" {
    address = "198.51.100.22:443"
  }

  health_check "tcp" {
    interval = "2s"
    timeout  = "1s"
    rise     = 2
    fall     = 3
  }
}

# Layer 7: HTTP reverse proxy, as HAProxy's frontend + backend.
proxy "www" {
  listener "http" {
    address = "203.0.113.10:80"
  }

  backend "app" {
    balance = "roundrobin"

    server "app1" {
      address = "198.51.100.21:8080"
    }
    server "app2" {
      address = "198.51.100.22:8080"
    }

    health_check "http" {
      path          = "/healthz"
      expect_status = ["200"]
    }
  }

  timeouts {
    connect = "3s"
  }

  access_log = true
}
