# A UDP DNS service on IPVS, with a DNS health check (keepalived DNS_CHECK).
#
# TCP port 53 (for large answers and zone transfers) is a separate IPVS service: it is added here
# with the same real servers and a tcp check.

node "dns-lb" {
  interfaces = ["eth0", "eth1"]
}

control {}

metrics {}

log {}

vrrp_instance "vi_dns" {
  interface         = "eth0"
  virtual_router_id = 53
  priority          = 150
  virtual_ips       = ["203.0.113.53/24"]

  track_service "dns_udp" {
    weight = -100
  }
}

# The resolvers' replies come back through this node (NAT): their default gateway must be the
# director (or a VIP of it) on 198.51.100.0/24.
virtual_server "dns_udp" {
  address    = "203.0.113.53:53"
  protocol   = "udp"
  scheduler  = "rr"
  forwarding = "nat"
  # A failing resolver is taken out of the service rather than weighted 0: with UDP there are no
  # established connections to let finish.
  on_failure = "remove"

  quorum {
    min_up = 1
  }

  real_server "ns1" {
    address = "198.51.100.53:53"
  }
  real_server "ns2" {
    address = "198.51.100.54:53"
  }

  health_check "dns" {
    interval   = "2s"
    timeout    = "1s"
    query_name = "example.com"
    query_type = "SOA"
  }
}

virtual_server "dns_tcp" {
  address    = "203.0.113.53:53"
  protocol   = "tcp"
  scheduler  = "wlc"
  forwarding = "nat"

  real_server "ns1" {
    address = "198.51.100.53:53"
  }
  real_server "ns2" {
    address = "198.51.100.54:53"
  }

  health_check "tcp" {}
}
