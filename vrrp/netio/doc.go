// Package netio is the Linux side of VRRP: the adapters through which the
// pure protocol core (package vrrp) touches the network. It has three parts,
// each an interface with a real implementation and a fake in
// package netio/netiotest:
//
//	Conn       RawConn        raw IP protocol 112 sockets: adverts in and out   (conn.go)
//	VIPs       VIPManager     virtual addresses via netlink, and watchers       (vips.go)
//	Announcer  RawAnnouncer   gratuitous ARP and unsolicited NA frames          (announce.go)
//
// It imports no other Fulcrum package (not vrrp, which will import it, nor
// agent, config, ipvs, health or l7proxy), runs no external tool, and holds
// no package-level mutable state.
//
// # Capabilities
//
// RawConn (raw IP sockets) and RawAnnouncer (AF_PACKET sockets) need
// CAP_NET_RAW. VIPManager (RTM_NEWADDR, RTM_DELADDR) needs CAP_NET_ADMIN.
// Watching addresses and links needs no capability.
//
// # Network namespaces
//
// Listen and NewAnnouncer create their sockets, and look the interface up,
// in the network namespace of the calling OS thread; the sockets stay in it
// for life and may then be used from any goroutine. An agent that runs in
// one namespace needs nothing more; a test calls them inside
// lab/netns.Host.Do. VIPManager works through the *netlink.Handle it is
// given (netlink.NewHandleAt for another namespace), and Watch / WatchLinks
// take the namespace in WatchOptions.
//
// # The transport's socket options
//
// Listen opens "ip4:112" or "ip6:112" (net.ListenConfig.Control sets the
// options before the socket is bound) and wraps it in golang.org/x/net's
// ipv4 / ipv6 PacketConn for control messages:
//
//   - SO_BINDTODEVICE to the instance's interface: only packets that arrive
//     on it are delivered, and everything sent leaves through it, whatever
//     the routing table says (RFC 5798 §5.1.1.2, §5.1.2.2: adverts are
//     link-local).
//   - IP_MULTICAST_ALL / IPV6_MULTICAST_ALL = 0: without it a socket bound
//     to the wildcard address receives multicast of every group that any
//     socket on the host joined, on any interface; with it, only the groups
//     this socket joined on its own interface. A unicast-mode Conn, which
//     joins nothing, so gets no multicast adverts at all.
//   - IP_MULTICAST_LOOP / IPV6_MULTICAST_LOOP = 0: our own adverts are not
//     looped back to us (nor to other sockets of this host).
//   - IP_MULTICAST_TTL, IP_TTL / IPV6_MULTICAST_HOPS, IPV6_UNICAST_HOPS =
//     255, for multicast and unicast alike (RFC 5798 §5.1.1.3, §5.1.2.3;
//     RFC 3768 §5.2.3): receivers drop anything else (RFC 5798 §7.1), which
//     proves the sender is on the link.
//   - IP_TOS / IPV6_TCLASS = 0xc0 (Internetwork Control, DSCP CS6), as
//     keepalived, so that adverts win over bulk traffic in queues.
//   - IP_MULTICAST_IF / IPV6_MULTICAST_IF: the interface for multicast,
//     belt and braces with SO_BINDTODEVICE.
//   - IPV6_CHECKSUM = 6 (ChecksumOffset, RFC 3542 §3.1): the kernel writes
//     the checksum of each IPv6 advert at octets 6-7, over the RFC 8200
//     §8.1 pseudo-header (source, destination, 32-bit length, next header
//     112) plus the message, which is what RFC 5798 §5.2.8 specifies
//     (checked by TestConnIPv6LinkLocalAndChecksum against an independent
//     computation); and it verifies the checksum of what it receives,
//     dropping bad packets before Recv sees them. IPv4 has no such option:
//     the codec computes the IPv4 checksum (with the pseudo-header of
//     Source and the destination, for VRRPv3) and the Conn sends the bytes
//     as they are.
//   - IP_PKTINFO + IP_RECVTTL / IPV6_RECVPKTINFO + IPV6_RECVHOPLIMIT:
//     Recv reports each packet's destination, arrival interface and TTL /
//     Hop Limit from control messages; Send sets the source address and
//     interface per packet with IP_PKTINFO / IPV6_PKTINFO (so the socket is
//     never bound to an address, which would filter received multicast).
//
// In multicast mode the Conn joins 224.0.0.18 or ff02::12 on the interface
// (MCAST_JOIN_GROUP with the interface's index). In unicast mode it
// joins nothing, sends to each peer and drops (counting them in Filtered)
// packets whose source is no peer. IPv6 adverts are sent from the
// interface's link-local address (RFC 5798 §5.1.2.1) unless Source says
// otherwise, which unicast mode allows.
//
// # How the runner uses it
//
// Per interface and family (and mode), the runner opens one Conn in the
// agent's namespace and reads it on one goroutine:
//
//	conn, err := netio.Listen(ctx, netio.ConnOptions{Family: 4, Interface: "eth0"})
//	for {
//		p, err := conn.Recv(ctx)        // ctx.Err() on shutdown, net.ErrClosed after Close
//		// vrrp.CheckTTL(p.TTL, unicast); vrrp.Parse(p.Payload, p.Src, p.Dst, ...);
//		// dispatch by VRID to the instance's Machine.
//	}
//
// Its SendAdvert action marshals the advert with conn.Source() as the
// pseudo-header source and calls conn.Send(msg, dst) for each of
// conn.Destinations(). Sends are safe from any goroutine and never block
// for long.
//
// The VIP manager and the announcer back the AddVIPs / RemoveVIPs /
// Announce actions. Those run under the Machine's lock and must not block,
// so the runner hands them to a goroutine of the instance: AddVIPs calls
// VIPManager.Add for each VIP, then Burst(ctx, announcer, vips, opts) with
// a context that ends when the instance leaves Master; RemoveVIPs cancels
// that context and calls Remove. VIPManager.Watch reports VIPs removed
// behind our back (the runner re-adds them while Master), and WatchLinks
// feeds interface trackers (LinkEvent.Up, keyed by name).
// RawAnnouncer.Stats().RoundFirstFrame is when the first frame of the
// latest burst left, for "VIP added to first GARP".
//
// # Kernel behaviours worth knowing
//
//   - A Linux host creates an ARP entry from a gratuitous ARP only with
//     net.ipv4.conf.*.arp_accept=1; by default it only updates an entry it
//     already has. It takes a gratuitous reply only if its target hardware
//     address equals the sender's (both forms are sent). An unsolicited NA
//     likewise updates only an existing neighbour entry (RFC 4861 §7.2.5;
//     Linux's accept_untracked_na, off by default).
//   - With IPV6_CHECKSUM set, IPv6 adverts with a bad checksum never reach
//     Recv, so the codec's checksum counter sees only IPv4 failures.
//   - Taking an interface administratively down deletes its IPv6 addresses
//     (unless net.ipv6.conf.*.keep_addr_on_down), IPv6 VIPs included: Watch
//     reports them. Losing carrier does not.
//   - Sockets are bound to an interface index: if the interface is deleted
//     and re-created, Send and Announce fail and the runner must open new
//     ones.
package netio
