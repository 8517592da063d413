// Package l7proxy is Fulcrum's embedded HTTP(S) reverse proxy: HAProxy's frontend and backend (or
// nginx's server and upstream) for a classic Linux load-balancer node.
//
// A Proxy serves any number of named proxies, each with listeners, backends of servers and
// routes between them, as described by Options (plain Go values; the agent translates the
// `proxy` blocks of the node configuration into them). The Proxy owns every goroutine it starts:
//
//	p, err := l7proxy.New(opts)      // validates, loads certificates; binds nothing
//	err = p.Start(ctx)               // binds the listeners and serves until ctx ends or Close
//	err = p.Apply(newOpts)           // reload: validate all, keep sockets, swap atomically
//	p.SetServerHealth("www", "app", "app1", false) // active health from the health package
//	st := p.Status()                 // counters for metrics and the control API
//	err = p.Close()                  // graceful: drain in-flight requests, bounded by DrainTimeout
//
// # Listeners
//
// Listeners bind with IP_FREEBIND (IPV6_FREEBIND), so a listener on a virtual IP that VRRP has
// not yet brought up binds at once. A listener speaks HTTP/1.1, and HTTP/2 over TLS through ALPN;
// h2c (HTTP/2 with prior knowledge) is optional. It may expect a PROXY protocol header (v1 or v2,
// parsed strictly with bounded lengths), redirect plain HTTP to HTTPS with 301, 302, 307 or 308,
// and serve the statistics page. TLS uses crypto/tls only: TLS 1.2 or 1.3, ECDHE AEAD suites,
// certificates chosen by SNI (exact name, then a one-label wildcard, then the first certificate),
// OCSP staples from files, and ReloadCertificates (the agent calls it on SIGHUP; with
// Options.CertCheckInterval the files are also polled) swapping certificates for new handshakes
// without touching established connections.
//
// A listener's socket is made by the package (TCP_DEFER_ACCEPT, and TCP_NODELAY, which accepted
// sockets inherit) and its connections are accepted as bare nonblocking descriptors (rawconn.go):
// a descriptor joins Go's netpoller only when a read or write first finds nothing to do, so a
// client that sends one request and closes costs accept4, read, write and close, without
// getsockname, setsockopt or epoll_ctl.
//
// # Forwarding
//
// Every HTTP/1 client connection (plain, or TLS that did not negotiate h2 by ALPN) is served
// first by a connection loop of the package's own (h1server.go): one goroutine per connection
// reads request heads into a reused buffer and parses them strictly; a simple request (no body,
// no Upgrade, Expect or Trailer, an origin-form target without escapes in its path, Connection
// naming nothing but close or keep-alive, routed to a backend without PROXY header) is forwarded
// over a pooled keep-alive server connection with one write, the response head is read by the
// loop's own parser, and head and small body go to the client in one write. That is a read and
// a write on each side per keep-alive request, as HAProxy does, and no read that finds nothing:
// the request is written to the server from inside the wait for its answer (serverConn), and a
// plain client connection accepted raw waits for its next request in one edge-triggered
// RawConn.Read that lasts the connection, reading only after a wake-up (runEdge). Go's own
// reads try before they wait, which on a keep-alive connection finds nothing once per request
// on each side. The calls that never wait (read, write, close and accept4 on nonblocking
// sockets) are raw system calls (rawsys.go), so the runtime never hands a P to another thread
// around them; connections are served by reused worker goroutines. A response without Date
// gets one (RFC 9110 §6.6.1). Rate limiting (429), sticky
// cookies, forwarding headers, header edits, retries, passive health, counters and the access
// log all apply on the loop. Timeouts are kept lazily: a deadline is pushed on only when less
// than 7/8 of its timeout is left, so the idle, header, client and server timeouts may fire up to
// an eighth early, and keep-alive requests rarely touch the timers. The loop reads the socket's
// current listener per request, so a reload never interrupts its connections.
//
// Everything else (request bodies, WebSocket and h2c upgrades, HTTP/2 prior knowledge, the
// statistics page, HTTPS redirects, a head the parser doubts or larger than 8 KiB) hands the
// connection, with the bytes already read replayed in front, to the socket's net/http server,
// which serves it from then on: its answers to malformed input (400, 431, ...) are net/http's,
// and the fuzz tests (FuzzRequestHead, FuzzResponseHead) check that every head the loop accepts
// net/http reads the same way. There requests are forwarded with net/http/httputil.ReverseProxy:
// the Host header is preserved, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host and
// X-Real-IP are set (incoming values are trusted only from ProxyOptions.TrustedProxies), request
// and response headers are edited, WebSocket upgrades pass through, and a PROXY protocol header
// can be sent to the servers of a backend (such connections are not reused across requests). A
// connection failure is retried on another server when the request is idempotent or has no body.
//
// On connections net/http serves, simple HTTP/1 requests (no body, no Upgrade, Expect or
// trailers, to a backend without PROXY header) skip ReverseProxy: the handler writes the
// outbound head straight into a pooled server connection and copies the response itself
// (fast.go), with the same result as ReverseProxy (TestFastPathMatchesReverseProxy compares the
// two). Client connections get no TCP keep-alive probes (HAProxy's default); the idle and client
// timeouts bound them.
//
// # Balancing and health
//
// Backends balance with smooth weighted round robin (nginx's algorithm), weighted least
// connections, or a consistent (rendezvous) hash of the full client address. Servers leave the
// rotation when the health package says so (SetServerHealth) and, following nginx's max_fails and
// fail_timeout, after failed requests (connection errors and 5xx), which are also reported
// through Options.Passive. Stickiness is either a cookie inserted by the proxy (HAProxy's
// `cookie SRV insert indirect nocache`; its value is HMAC-signed, stripped before the request
// reaches the server, and re-issued when the server it names is unavailable) or a hash of the
// client address.
//
// # Protection
//
// Per client address, a sliding-window request limit (two fixed windows weighted, like HAProxy's
// http_req_rate) answers 429 with Retry-After; its table has a fixed maximum number of clients
// and evicts the least recently seen of a random sample when full, so a flood of distinct
// addresses cannot grow memory. An optional limit of concurrent connections per client and a
// per-proxy max_connections (excess connections wait in the kernel's backlog) complete it. Header
// and body sizes are capped (431, 413), header reads are bounded by a timeout (slowloris), and
// every timeout of the configuration (connect, client, server, idle, header) is applied.
//
// # Observability
//
// Status returns counters per proxy, backend and server (requests by class, bytes, sessions,
// errors, rate-limited requests, retries, state, weight, health). An optional *slog.Logger writes
// one access-log record per request. The statistics page (HTML with auto-refresh, and JSON with
// ?format=json or a `;json` suffix) is served on a configurable path, optionally behind basic
// authentication.
package l7proxy
