// Package ipvsbench measures Fulcrum's IPVS reconciler against ipvsadm on a real kernel.
// Everything lives in its tests; this file only documents them.
//
// # Running it
//
//	make bench                                        # among the other benchmarks
//	FULCRUM_BENCH=1 go test -v -count=1 -timeout 30m -run '^TestIPVSApply$' ./bench/ipvs
//
// Without FULCRUM_BENCH=1 the benchmark skips with a message, so `go test ./...` (make test)
// passes over it at once. It needs the kernel lab (root, qemu-system-x86, busybox-static,
// kmod, xz-utils, ipvsadm; see lab/kernel): the host kernel has no IPVS, so the whole
// benchmark runs in one guest on Debian's 6.1 kernel, under software emulation (TCG, one
// vCPU). Absolute times are therefore slow and noisy; the ratio between the two tools, run
// alternately in the same guest, is the figure to read.
//
// # What it measures
//
// The rule set is 10,000 TCP services (203.0.113.1-40, ports 10000-10249, scheduler wlc), each
// with 4 NAT destinations (198.51.100.10-13:80, weight 1, on a dummy interface so the kernel
// accepts them): 50,000 kernel objects.
//
//   - From scratch, alternately for a few rounds, each from an empty table (ipvsadm -C, not
//     timed): `ipvsadm -R` reading the same rules as text (-A and -a lines), and
//     ipvs.Reconciler.Apply of the equivalent ipvs.Desired (a fresh Reconciler and state file
//     each round, so the timing includes its first dump of the kernel and its state-file write).
//     The medians and their ratio are reported, with the reconciler's operation count.
//   - One weight changed on the full table: Apply of the desired state with one destination's
//     weight changed. It must cost exactly one kernel operation (an update of that destination,
//     no dump); the time and the operations by kind are reported, with `ipvsadm -e` of one
//     weight (a process start and one operation) for reference.
//   - Also reported: an unchanged Apply (no operation), a full Resync of the table (the dump
//     that runs every minute, and corrects drift), and the adoption by a restarted agent (a new
//     Reconciler over the populated kernel: a dump, no change).
//
// The final table is checked with ipvsadm -Ln (10,000 services, 40,000 destinations, the
// changed weight).
package ipvsbench
