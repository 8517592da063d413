# A minimal Fulcrum node: identity, control socket, metrics and logging.
# VRRP instances, virtual servers and proxies are added by later releases; see docs/config.md.

node "lb1" {}

control {
  socket = "/run/fulcrum/fulcrum.sock"
}

metrics {
  listen = "127.0.0.1:9712"
  path   = "/metrics"
}

log {
  level  = "info"
  target = "auto" # journald under systemd, text on stderr in a terminal
}
