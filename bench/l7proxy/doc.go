// Package l7bench measures Fulcrum's embedded L7 proxy (package l7proxy) side by side with
// HAProxy 2.6 and nginx 1.22 from Debian, doing the same work on this machine. Everything lives
// in its test and in cmd/l7bench (the child process that runs the proxy under test and the
// backend); this file only documents them.
//
// # Running it
//
//	make bench                                  # among the other benchmarks
//	FULCRUM_BENCH=1 go test -v -count=1 -timeout 20m -run '^TestL7Proxy$' ./bench/l7proxy
//
// Without FULCRUM_BENCH=1 the test skips with a message. It needs haproxy, nginx, wrk and taskset
// (Debian packages haproxy, nginx, wrk, util-linux) and two cores; it installs nothing. Knobs:
//
//	FULCRUM_BENCH_ROUNDS=3        interleaved rounds
//	FULCRUM_BENCH_DURATION=5s     wrk duration per run
//	FULCRUM_BENCH_CONNS=50        wrk connections
//	FULCRUM_BENCH_PROXIES=fulcrum,haproxy,nginx   a subset, in this order of columns
//	FULCRUM_BENCH_SCENARIOS=ka,close,tls-ka,tls-close
//	FULCRUM_BENCH_OUT=path        the report (default bin/bench-l7proxy.txt of the module)
//	FULCRUM_BENCH_PROFILE=dir     write fulcrum's CPU and allocation profiles there
//	FULCRUM_BENCH_DEFER=1         HAProxy and nginx with TCP_DEFER_ACCEPT too (defer-accept,
//	                              deferred), as Fulcrum's listeners always have it
//
// # What it measures
//
// One backend (cmd/l7bench backend: a minimal HTTP/1.1 responder, 64-byte body) serves all three
// proxies. Each proxy listens on 127.0.0.1 (plain and TLS, the same self-signed ECDSA P-256
// certificate, generated per run), adds X-Forwarded-For/-Proto/-Host and X-Real-IP, keeps
// connections to the backend alive, and logs nothing. The proxies are pinned to core 0
// (HAProxy nbthread 1, nginx worker_processes 1, Fulcrum with whatever threads Go starts, all on
// that core); wrk (one thread) and the backend are pinned to core 1.
//
// Scenarios: keep-alive small body ("ka"), a new connection per request ("close", wrk -H
// "Connection: close"), the same two over TLS ("tls-ka", "tls-close"). Runs are interleaved:
// every round runs every scenario against every proxy (the proxy order rotates per round). Per
// run: requests/s and the 50th and 99th percentile latency from wrk --latency, and CPU time per
// request: the utime+stime delta of the proxy's process tree (all threads; /proc/PID/stat)
// divided by wrk's request count. The report gives the median over rounds and Fulcrum's ratios
// to HAProxy and nginx (for CPU per request and latency, lower is better; for requests/s,
// higher). The load average before the run is printed: the machine is shared, so read the
// ratios, and rerun when the load was high.
//
// # Syscalls per request
//
// Most of a proxied request's CPU time is in the kernel, so the number of system calls per
// request is the first thing to compare with HAProxy. A witness outside the test: run
// `l7bench backend` on core 1 and `l7bench proxy` (or haproxy with the configuration below) on
// core 0, then `strace -c -f -p PID` during a short wrk run (wrk -t1 -c50 -d3s, with
// -H "Connection: close" for the close scenario) and divide the calls by wrk's request count.
// strace slows the proxy, which makes reads that find no data (EAGAIN) rarer than in the
// benchmark; the counts are for comparing, not for timing. Measured this way (2026-11-25, this
// machine; per request): keep-alive, HAProxy 2 recvfrom + 2 sendto (4.2 with epoll_wait);
// Fulcrum 2 reads + 2 writes (4.06 with epoll_pwait). New connection per request, HAProxy about
// 8.8 (accept4, setsockopt, 2 recvfrom, 2 sendto, shutdown, close); Fulcrum about 6.1 (accept4,
// 2 reads, 2 writes, close). Before the raw accept and the edge-triggered waits (l7proxy's
// rawconn.go, runEdge, serverConn) Fulcrum made about 4.7 and 10.9: Go's accept adds
// getsockname, setsockopt TCP_NODELAY and two epoll_ctl, and its reads try before they wait.
//
// # Context switches per request
//
// The same setup, with the proxy's threads counted instead: sum voluntary_ctxt_switches and
// nonvoluntary_ctxt_switches over /proc/PID/task/*/status before and after a wrk run
// (wrk -t1 -c50 -d4s, -H "Connection: close" for the close scenario) and divide the difference
// by wrk's request count:
//
//	awk '/^voluntary_ctxt/{v+=$2} /^nonvoluntary_ctxt/{n+=$2} END{print v, n}' /proc/PID/task/*/status
//
// Measured this way (2026-11-25, new connection per request): Fulcrum 0.044 voluntary + 0.011
// involuntary per request, HAProxy 0.041 + 0.007. Before the proxy's raw system calls
// (l7proxy's rawsys.go) Fulcrum made 0.22 + 0.13: sysmon handed the P of a goroutine in a long
// loopback write to another thread, on the same core.
package l7bench
