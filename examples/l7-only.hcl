# A node that runs only the HTTP proxy: no VRRP, no IPVS (for instance behind a cloud load balancer,
# or several such nodes behind an IPVS director). The listener is on all IPv4 addresses.
#
# This example is plain HTTP. To terminate TLS, add a second listener:
#
#   listener "https" {
#     address = "0.0.0.0:443"
#     tls {
#       certificate "default" {
#         cert_file = "/etc/fulcrum/tls/www.pem" # chain, leaf first
#         key_file  = "/etc/fulcrum/tls/www.key"
#       }
#     }
#   }
#
# and set redirect_https = true on the plain listener. `fulcrum validate` loads the certificate and
# key, so they must exist where validate runs.

node "proxy1" {}

control {}

metrics {}

log {}

proxy "edge" {
  listener "http" {
    address = "0.0.0.0:80"
    # The load balancer in front sends a PROXY protocol header; remove if it does not.
    proxy_protocol = true
  }

  backend "app" {
    balance      = "leastconn"
    max_fails    = 3
    fail_timeout = "10s"

    server "app1" {
      address = "192.0.2.11:8080"
    }
    server "app2" {
      address = "192.0.2.12:8080"
    }

    health_check "http" {
      path = "/healthz"
    }
  }

  backend "static" {
    server "static1" {
      address = "192.0.2.21:80"
    }
  }

  default_backend = "app"

  route {
    path_prefix = "/assets/"
    backend     = "static"
  }

  rate_limit {
    requests                   = 100
    per                        = "1s"
    max_connections_per_client = 50
  }

  timeouts {
    connect = "3s"
    client  = "30s"
    server  = "60s"
  }

  max_body_size = "10MiB"

  headers {
    delete = ["X-Internal-Debug"]
  }

  response_headers {
    delete = ["Server", "X-Powered-By"]
  }

  access_log = true
}
