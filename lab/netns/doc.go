// Package netns builds test networks out of Linux network namespaces: hosts on a shared bridge,
// or two hosts on a bare veth pair, each a namespace in which a test runs Go code, sockets or
// whole processes (keepalived, haproxy, the agent). It is a test bed, imported only by tests
// and benchmarks, and needs root (it skips or, under CI=true, fails via lab/require).
//
// # A LAN
//
//	lan := netns.NewLAN(t, netns.Options{})
//	lb1 := lan.AddHost("lb1", "192.0.2.11/24", "2001:db8::11/64")
//	lb2 := lan.AddHost("lb2", "192.0.2.12/24", "2001:db8::12/64")
//
//	// Go code inside a namespace: sockets made there stay there, usable from any goroutine.
//	ln, err := lb1.Listen("tcp", "192.0.2.11:8080")
//	conn, err := lb2.Dial("tcp", "192.0.2.11:8080")
//	err = lb2.Ping(ctx, lb1.Addr6())
//	resp, err := lb2.HTTPClient().Get("http://192.0.2.11:8080/")
//	err = lb1.Do(func() error { /* runs on a thread inside lb1's namespace */ return nil })
//
//	// Processes inside a namespace, stopped by the test's cleanup, output logged on failure.
//	ka := lb1.Start(t, "keepalived", "-n", "-l", "-D", "-f", conf)
//	ka.WaitOutput(t, "Entering MASTER STATE", 10*time.Second)
//	out, err := lb1.Command(ctx, "ip", "-o", "addr").CombinedOutput()
//
//	lan.Unplug(lb1) // failover: lb1's cable is pulled
//
// A host on two LANs (a load balancer between clients and servers):
//
//	front, back := netns.NewLAN(t, netns.Options{}), netns.NewLAN(t, netns.Options{})
//	lb := front.AddHost("lb", "192.0.2.1/24")          // eth0
//	back.Attach(lb, "198.51.100.1/24")                 // eth1
//	client := front.AddHost("client", "192.0.2.100/24")
//	client.AddRoute("198.51.100.0/24", "192.0.2.1")
//
// Two hosts without a bridge:
//
//	a, b := netns.Pair(t, netns.Options{},
//		netns.HostSpec{Name: "a", Addrs: []string{"192.0.2.1/24"}},
//		netns.HostSpec{Name: "b", Addrs: []string{"192.0.2.2/24"}})
//
// # What is made
//
// Each host is a named namespace, visible to `ip netns list` as Host.NSName, which is
// "fl-<pid>-<n>-<name>" (pid of the test process, n the first free number): parallel test
// binaries never collide. Its first interface is eth0 (then eth1, ...), and lo is up.
// A LAN's bridge, BridgeName, sits in a switch namespace of its own ("fl-<pid>-<n>-sw") with IPv6
// and multicast snooping off, so multicast such as VRRP's 224.0.0.18 and ff02::12 floods to every
// port. Veth pairs are created in one namespace with the peer placed straight into the other:
// nothing ever appears in, or routes from, the root namespace. Addresses must lie in the
// documentation ranges 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 or 2001:db8::/32 (or
// fe80::/10); anything else is refused (see ParseAddrs). IPv6 duplicate address detection is
// off in every host unless Options.KeepDAD, so IPv6 addresses work at once.
//
// # Cleanup
//
// Everything is removed by the test's cleanup, also when the test fails or panics: processes
// from Start are stopped (SIGTERM, then SIGKILL), any process still running inside a host's
// namespace is killed, the host's links are deleted and its namespace unmounted and removed.
// Processes from Start also get SIGKILL if the test binary itself dies. If a test binary is
// killed before its cleanup runs (a -timeout panic, SIGKILL), its namespaces stay behind: Sweep,
// which NewLAN, NewHost and Pair call themselves, removes namespaces named "fl-<pid>-..." whose
// pid no longer exists. By hand: `go test ./lab/netns -run TestSweep` or
//
//	for n in $(ip netns list | awk '/^fl-/{print $1}'); do ip netns del $n; done
//
// (the latter also removes namespaces of tests running right now).
//
// # Threads and namespaces
//
// A network namespace belongs to an OS thread, not to a goroutine. Host.Do runs its function on a
// fresh goroutine locked to a thread that joined the namespace, then moves the thread back and
// unlocks it, or, if that fails, lets the thread die with the goroutine so that it is never
// reused. /proc/sys/net follows the thread's namespace, so SetSysctl inside Do changes only the
// host (verified on kernel 6.18); /proc/net is the process's (main thread's) view and must not be
// used for a namespace: read /proc/thread-self/net inside Do instead.
//
// Call the builders (NewLAN, AddHost, Attach, Pair, NewHost, Start, StartHTTP, WaitOutput) from
// the test's goroutine: they fail the test with t.Fatal. Everything else returns errors and is
// safe for concurrent use.
package netns
