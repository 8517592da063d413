// Package healthbench measures Fulcrum's health checks at scale beside keepalived's checker.
// Everything lives in its tests and in the child program cmd/hcbench; this file only
// documents them.
//
// # Running it
//
//	make bench                                          # among the other benchmarks
//	FULCRUM_BENCH=1 go test -v -count=1 -timeout 15m -run '^TestHealthChecks$' ./bench/health
//
// Without FULCRUM_BENCH=1 the benchmark skips with a message. It needs root, iproute2 and,
// for the keepalived comparison, the kernel lab (qemu-system-x86, busybox-static, kmod,
// xz-utils; see lab/kernel) and keepalived: keepalived's checker exits when the kernel has no
// IPVS, and the host's kernel has none. FULCRUM_BENCH_OUT=FILE also writes the table there.
// It takes about six to eight minutes.
//
// # What it measures
//
// N TCP connect checks at a 1 s interval (1 s connect timeout) against N listening sockets,
// 192.0.2.1-10 ports 20000-20999 on lo, held by one process (cmd/hcbench listen) in a network
// namespace, with the checker in the same namespace. The checkers:
//
//   - fulcrum: `fulcrum agent` (built from ./cmd/fulcrum) with N real servers in
//     virtual_servers of 100 (198.51.100.x:80), each virtual_server with health_check "tcp"
//     { interval = "1s", timeout = "1s", initial_state = "up" }. It is used when `fulcrum
//     validate` accepts such a file; without kernel IPVS (the host) the agent runs the checks
//     and programs nothing, in the guest it programs the services as keepalived does.
//   - scheduler: health.Scheduler alone with N health.TCP specs, as the agent runs them
//     (cmd/hcbench check; MaxConcurrent and Slack at the package defaults, so the plain
//     connect checks run on the Scheduler's epoll connect engine; hcbench check -dialer runs
//     them through a net.Dialer each, for comparison by hand): the checker's own cost. On
//     the host always; in the guest at 10,000 checks, and at every size when the agent does
//     not run tcp checks.
//   - keepalived: `keepalived --check -n -l -D` with a generated keepalived.conf of
//     virtual_servers of 100 real servers (198.51.100.x:80, NAT, delay_loop 1), every real
//     server with TCP_CHECK { connect_timeout 1 }; only its checker child is measured.
//
// Each side runs until every target has been checked once and, for the agent, its control
// socket answers GET /v1/version, which it does once every subsystem has started (the agent
// runs checks from the start of its health subsystem, while in the guest the IPVS subsystem
// is still programming the N real servers; keepalived's checker programs them before its
// first check) (at most 150 s; a side that is not there by then is measured anyway and
// shows ready -1), then for a warm-up, then for a fixed
// window (host 10 s + 30 s, guest 5 s + 20 s) in which the CPU time of the checker process
// (utime+stime from /proc, all threads) and its RSS (VmRSS, sampled every second; the maximum
// is reported) are measured. The listener records when each target is connected to; the drift
// is |interval - 1 s| between consecutive checks of one target inside the window (p50, p99,
// max, and the count over 100 ms). It is seen from the listener, so it includes the
// listener's own scheduling delays on a loaded machine, not only the checker's lateness.
//
// Runs: on the host, the agent and the scheduler alone with 10,000 checks; in one lab guest
// (Debian's 6.1 kernel with IPVS, software emulation, 2 vCPUs, 2 GiB), keepalived then fulcrum
// (and the scheduler) with 10,000 checks, then again with 200. Emulation saturates the guest long before 10,000
// checks a second (both checkers then run late, and CPU per check is the figure to compare);
// with 200 the schedule holds and CPU % of a core compares at equal work. The report gives
// the ratio fulcrum/keepalived for both sizes and the goals (CPU at or below keepalived's, RSS
// at most 150 MB, no check drifting more than 100 ms) as met or not; they do not fail the test.
package healthbench
