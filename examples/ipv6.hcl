# An IPv6 VIP and an IPv6 IPVS service.
#
# IPv6 needs VRRP version 3 (the default; version 2 is IPv4 only). One instance carries one address
# family, so a dual-stack service has two instances (IPv4 and IPv6), which may share the VRID: the
# virtual MAC differs per family (00-00-5E-00-01-VRID and 00-00-5E-00-02-VRID).
# Advertisements go to ff02::12 from the interface's link-local address; the backup learns the
# VIP's new location from unsolicited neighbour advertisements.

node "lb6" {
  interfaces = ["eth0"]
}

control {}

metrics {}

log {}

vrrp_instance "vi_v6" {
  interface         = "eth0"
  virtual_router_id = 60
  version           = 3
  priority          = 150
  advert_interval   = "200ms"
  virtual_ips       = ["2001:db8:10::10/64"]

  track_service "web6" {
    weight = -100
  }
}

virtual_server "web6" {
  address    = "[2001:db8:10::10]:80"
  protocol   = "tcp"
  scheduler  = "wlc"
  forwarding = "nat" # nat and dr need real servers of the same family as the service

  real_server "web6a" {
    address = "[2001:db8:20::11]:8080"
  }
  real_server "web6b" {
    address = "[2001:db8:20::12]:8080"
  }

  health_check "http" {
    path = "/healthz"
  }
}
