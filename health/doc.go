// Package health runs the health checks of a Fulcrum node: active probes of real servers (TCP,
// HTTP and HTTPS, UDP, DNS, external programs) and passive results reported by the L7 proxy, turned
// into an up/down state per check with rise/fall hysteresis, and delivered as changes to whoever
// acts on them (IPVS weights, the proxy's pools, VRRP trackers, events, metrics).
//
// # Checkers
//
// A check's definition is a Probe: a plain Go value (TCP, HTTP, UDP, DNS, Exec, Passive) that
// can be hashed and compared. Probe.Build validates it and returns a Checker, whose Check runs one
// probe and returns a Result: an Outcome (healthy, unhealthy, error), a typed Reason (refused,
// timeout, bad_status, tls_error, icmp_unreachable, ...), a Detail for humans, the Latency and,
// for dynamic Exec checks, a Weight. Checkers may be used on their own:
//
//	c, err := health.HTTP{Addr: netip.MustParseAddrPort("192.0.2.20:80"), Path: "/healthz"}.Build()
//	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
//	r := c.Check(ctx)
//	if r.Reason == health.ReasonBadStatus { ... }
//
// DialOptions, shared by the network checkers, connect to a separate check address or port, bind
// a source address or interface (SO_BINDTODEVICE), set SO_MARK so a check can follow a policy
// route (a DR path), and can make sockets inside another network namespace (DialOptions.Do).
//
// # Scheduler
//
// A Scheduler owns the checks of a node. Update replaces the set of checks (a reload keeps the
// state of every check whose ID and probe are unchanged, so a reload never flaps anything); Run
// drives them until its context ends. One owner goroutine keeps the checks in a heap ordered by
// due time and hands due checks to a fixed pool of Options.MaxConcurrent workers, so 10,000
// checks cost one timer and a few hundred goroutines, not 10,000 sleeping goroutines. The first
// run of each check is spread at random over its interval; later runs keep that phase
// (due + Interval), never closer than MinSpacing after the previous run ended, and a check never
// overlaps itself. All time comes from an injected Clock (healthtest.FakeClock in tests).
//
// Plain TCP connect checks (TCP without Send or Expect, keepalived's TCP_CHECK), the bulk of a
// load balancer's checks, do not take a worker: on the system clock the Scheduler runs them on
// its connect engine, as keepalived's checker does: one goroutine owns both their due times
// (a heap of their own) and one epoll instance, with no hand-off to another goroutine; each
// run is a nonblocking socket (with the DialOptions' source, device and mark, closed with a
// RST), its event when the handshake ends, or its deadline in a heap when the target never
// answers. Runs due within Options.Slack of each other start together (20 ms on the system
// clock, at most a twentieth of the interval), so 10,000 checks a second wake that goroutine
// about 50 times a second. Options.NoConnectEngine runs them on the workers through a
// net.Dialer.
//
// Each result moves the consecutive success and failure counters; Rise successes bring a down
// check up, Fall failures bring an up check down. Every state change, and every change of a
// dynamic weight, is delivered in order to the Sink, from a goroutine of the Scheduler's own.
// Status, Statuses and Healthy read the current state at any time; ServiceHealth combines
// checks (all, any, quorum) for VRRP's track_service.
//
// Passive checks have no probe of their own: ReportPassive(target, ok) feeds them with the
// proxy's view of each request, and they follow nginx's max_fails/fail_timeout rules.
//
// # Ownership
//
// The package has no package-level mutable state. Run owns every goroutine it starts and stops
// them all before it returns. The package does not import the agent's config: the agent
// translates its configuration into Specs.
package health
