// Package keepalived runs the real keepalived (Debian's 2.2.7) as a reference VRRP peer inside
// lab/netns hosts, for interoperability tests and benchmarks of Fulcrum's VRRP. It is a test
// bed, imported only by tests and bench code; it needs root and the keepalived binary (a test
// without them is skipped, or fails under CI=true, via lab/require).
//
// # Usage
//
//	lan := netns.NewLAN(t, netns.Options{})
//	lb1 := lan.AddHost("lb1", "192.0.2.11/24")
//	lb2 := lan.AddHost("lb2", "192.0.2.12/24")
//	vip := netip.MustParsePrefix("192.0.2.100/24")
//	node := func(prio int) keepalived.Config {
//		return keepalived.Config{Version: 3, Instances: []keepalived.Instance{{
//			Name: "VI_1", Interface: "eth0", VRID: 51, Priority: prio,
//			AdvertInt: 100 * time.Millisecond,
//			VIPs:      []keepalived.VIP{{Addr: vip, Dev: "eth0"}},
//		}}}
//	}
//	k1 := keepalived.Start(t, lb1, node(150))
//	k2 := keepalived.Start(t, lb2, node(100))
//	k1.WaitState(t, "VI_1", keepalived.Master, 10*time.Second)
//	k2.WaitState(t, "VI_1", keepalived.Backup, 10*time.Second)
//	keepalived.WaitVIP(t, lb1, vip.Addr(), true, 2*time.Second)
//
//	k1.Kill() // a crash: no priority-0 advert
//	k2.WaitState(t, "VI_1", keepalived.Master, 5*time.Second)
//
//	// One advert from the wire, as keepalived sent it, seen from a third host.
//	sniffer := lan.AddHost("sniffer", "192.0.2.250/24")
//	payload, src, dst, ttl := keepalived.CaptureAdvert(t, sniffer, 5*time.Second)
//
// # What Start runs
//
// Start writes the rendered configuration into a t.TempDir of the node's own and runs
//
//	ip netns exec <host> keepalived --dont-fork --log-console --log-detail --no-syslog \
//	    --dont-respawn --vrrp --use-file=DIR/keepalived.conf --pid=DIR/keepalived.pid \
//	    --vrrp_pid=DIR/vrrp.pid --checkers_pid=DIR/checkers.pid --bfd_pid=DIR/bfd.pid
//
// after `keepalived --config-test` accepted the file. `ip netns exec` shares the machine's
// /run, so every pid file is the node's own: keepalived reads them at start-up to refuse a
// second copy of itself and deletes them on exit, and without --bfd_pid it reads and, on exit,
// deletes /run/bfd.pid even with --vrrp (a machine's own keepalived would lose its file). keepalived logs to the console, which netns.Proc captures (Node.Output); no
// syslog, D-Bus or SNMP is used (none is enabled unless the configuration asks for it).
//
// # States
//
// keepalived reports every transition on a notify FIFO (global_defs vrrp_notify_fifo) in the
// node's directory, one line per event in the order they happened: `INSTANCE "VI_1" MASTER
// 150`. The package reads it as it comes and stamps each line (Notice), which gives
// Node.State, Node.WaitState and Node.AwaitState, and transition times good to a millisecond
// or so. Unlike notify scripts, the FIFO needs no fork per event, keeps the order, and is not
// subject to keepalived's script security checks.
//
// # Stopping
//
// Node.Stop is SIGTERM: keepalived sends a priority-0 advert for each MASTER instance and
// removes its VIPs. Node.Kill is SIGKILL to the whole process group at once: a crash. (Killing
// only the parent is not a crash: the VRRP child gets SIGTERM as its parent-death signal and
// shuts down cleanly.) After Kill the VIPs stay on the host's interfaces. Node.Reload is
// SIGHUP, Node.Update rewrites the configuration and reloads it. The test's cleanup stops
// every node (SIGTERM, then SIGKILL after netns.StopGrace).
package keepalived
