# keepalived.conf + haproxy.cfg of a classic "load balancer on Linux" pair, migrated to one Fulcrum
# file (node lb1). docs/migrating.md shows the originals and maps them line by line.

node "lb1" {                                   # global_defs { router_id lb1 }
  interfaces = ["eth0", "eth1"]
}

control {}

metrics {}                                     # new: Prometheus on 127.0.0.1:9712

log {
  target = "auto"                              # haproxy: log /dev/log local0 -> journald
}

vrrp_instance "VI_1" {                         # vrrp_instance VI_1 (no "state MASTER")
  interface         = "eth0"                   # interface eth0
  virtual_router_id = 51                       # virtual_router_id 51
  priority          = 101                      # priority 101 (lb2: 100)
  advert_interval   = "1s"                     # advert_int 1
  version           = 3                        # keepalived's default was 2; no authentication in v3
  virtual_ips       = ["203.0.113.10/24"]      # virtual_ipaddress { 203.0.113.10/24 }

  # vrrp_script chk_haproxy + track_script: the proxy is part of the agent now, so the VIP tracks
  # the services themselves. weight -2 as in the script: 101 - 2 = 99 < 100 hands over to lb2.
  track_service "www" {
    weight = -2
  }
  track_service "https_pass" {
    weight = -2
  }
}

virtual_server "https_pass" {                  # virtual_server 203.0.113.10 443 {
  address    = "203.0.113.10:443"              #   protocol TCP
  protocol   = "tcp"
  scheduler  = "rr"                            #   lb_algo rr
  forwarding = "nat"                           #   lb_kind NAT

  persistence {
    timeout = "50s"                            #   persistence_timeout 50
  }

  real_server "app1" {                         #   real_server 198.51.100.21 443 { weight 1
    address = "198.51.100.21:443"
    weight  = 1
  }
  real_server "app2" {                         #   real_server 198.51.100.22 443 { weight 1
    address = "198.51.100.22:443"
    weight  = 1
  }

  health_check "tcp" {                         #   TCP_CHECK {
    interval = "6s"                            #     delay_loop 6
    timeout  = "3s"                            #     connect_timeout 3
    fall     = 3                               #     retry 3
  }
}

proxy "www" {                                  # frontend www + backend app
  listener "http" {
    address = "203.0.113.10:80"                # bind 203.0.113.10:80
  }

  backend "app" {
    balance = "roundrobin"                     # balance roundrobin

    server "app1" {                            # server app1 198.51.100.21:8080 check cookie app1
      address = "198.51.100.21:8080"
    }
    server "app2" {                            # server app2 198.51.100.22:8080 check cookie app2
      address = "198.51.100.22:8080"
    }

    health_check "http" {                      # option httpchk GET /healthz
      path          = "/healthz"
      expect_status = ["200"]                  # http-check expect status 200
    }

    sticky {
      cookie = "SRV"                           # cookie SRV insert indirect nocache
    }
  }

  default_backend = "app"                      # default_backend app

  max_connections = 4096                       # maxconn 4096

  rate_limit {                                 # stick-table ... store http_req_rate(10s)
    requests = 100                             # http-request deny deny_status 429
    per      = "10s"                           #   if { sc_http_req_rate(0) gt 100 }
  }

  timeouts {
    connect = "5s"                             # timeout connect 5s
    client  = "30s"                            # timeout client 30s
    server  = "30s"                            # timeout server 30s
    header  = "10s"                            # timeout http-request 10s
    idle    = "60s"                            # timeout http-keep-alive 60s
  }

  retries    = 3                               # retries 3 + option redispatch
  access_log = true                            # option httplog

  # Without sticky_key the cookie key is random per agent start, so a restart or a failover
  # re-balances every client. Set the same key (16+ bytes) on both nodes, kept out of the file:
  #   sticky_key = trimspace(file("/etc/fulcrum/secrets/sticky.key"))
}

# listen stats: the stats page is served on every listener of its proxy, so it gets a proxy of its
# own on the loopback (reach it with an SSH tunnel). For authentication (stats auth), add
#   username = "admin"
#   password = trimspace(file("/etc/fulcrum/secrets/stats.pass"))
proxy "stats" {
  listener "local" {
    address = "127.0.0.1:8404"                 # bind 127.0.0.1:8404
  }

  # A proxy needs a backend; requests for other paths than /stats go here.
  backend "app" {
    server "app1" {
      address = "198.51.100.21:8080"
    }
  }

  stats {
    path    = "/stats"                         # stats uri /stats
    refresh = "5s"                             # stats refresh 5s
  }
}
