# IPVS direct routing (forwarding = "dr", ipvsadm -g, keepalived lb_kind DR).
#
# The director only rewrites the destination MAC address: requests arrive here, replies go from
# the real servers straight to the clients. So the real servers must be on the same L2 segment
# as the director, IPVS cannot change the port (a real server port other than the service's is a
# warning), and every real server must accept packets for the VIP without answering ARP for it.
#
# On each REAL SERVER (not on this node; Fulcrum does not configure them):
#
#   # the VIP on the loopback, host-only
#   ip address add 203.0.113.20/32 dev lo
#
#   # /etc/sysctl.d/90-ipvs-dr.conf
#   net.ipv4.conf.all.arp_ignore = 1     # answer ARP only for addresses of the receiving interface
#   net.ipv4.conf.all.arp_announce = 2   # never use the VIP as ARP source address
#   net.ipv4.conf.eth0.arp_ignore = 1
#   net.ipv4.conf.eth0.arp_announce = 2
#   net.ipv4.conf.all.rp_filter = 2      # loose, if strict reverse-path filtering drops requests
#
# Without arp_ignore/arp_announce the real servers answer ARP for the VIP and steal its traffic
# from the director. See docs/operations.md, "Troubleshooting".

node "lb-dr" {
  interfaces = ["eth0"]
}

control {}

metrics {}

log {}

vrrp_instance "vi_dr" {
  interface         = "eth0"
  virtual_router_id = 61
  priority          = 150
  advert_interval   = "1s"
  virtual_ips       = ["203.0.113.20/24"]

  track_service "web_dr" {
    weight = -100
  }
}

virtual_server "web_dr" {
  address    = "203.0.113.20:80"
  protocol   = "tcp"
  scheduler  = "wrr"
  forwarding = "dr"

  # Same port as the service: DR does not rewrite ports.
  real_server "web1" {
    address = "203.0.113.31"
    weight  = 2
  }
  real_server "web2" {
    address = "203.0.113.32"
  }

  # Checks go to the real servers' own addresses (203.0.113.31:80, .32:80), not to the VIP.
  health_check "http" {
    path          = "/healthz"
    expect_status = ["200-299"]
  }
}
