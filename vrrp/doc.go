// Package vrrp is the protocol core of Fulcrum's VRRP: the wire codec of
// VRRPv3 (RFC 5798, IPv4 and IPv6) and VRRPv2 (RFC 3768, IPv4), the receive
// checks of RFC 5798 §7.1 / RFC 3768 §7.1, and the state machine of RFC 5798
// §6 with keepalived's additions (Fault, trackers, preempt_delay), in pure Go
// with no sockets. It is a leaf package: it imports only the standard
// library, and the agent translates the node configuration into its plain
// option types (Config, WireConfig).
//
// # Layers
//
// A received packet goes through three functions, each returning a
// *DropError on failure:
//
//	CheckTTL(ttl, relax)            TTL / Hop Limit is 255 (skipped for unicast peers)
//	Parse(payload, src, dst, opts)  version, type, length, checksum
//	WireConfig.Check(packet)        version and VRID configured, not owner,
//	                                v2 auth and interval, address list
//
// and then reaches Machine.HandleAdvert as an Advert. The transport counts
// every outcome in a Stats (Stats.Count takes the error directly).
//
// The Machine holds the RFC state (Initialize, Backup, Master, plus Fault),
// Master_Adver_Interval, and three timers. It is driven by Start, Stop,
// HandleAdvert, SetTracker and the drills (ForceBackup, TakeOver,
// CancelDrill), and acts only through the Actions interface. Time comes from
// an injected Clock; vrrptest.FakeClock runs a whole failover in
// microseconds and lets tests assert the exact instant of each transition.
//
// # The runner: Instance
//
// An Instance (instance.go) runs one virtual router around a Machine. It
// owns small interfaces that the agent implements with package netio:
//
//	Transport       Recv / Send / Close of VRRP messages (raw IP-112 socket)
//	AddressManager  Add / Remove of VIPs (netlink)
//	Announcer       one round of gratuitous ARP / unsolicited NA
//	AddressWatcher  VIPs removed behind our back (netlink), re-added by a Master
//	LinkWatcher     link state for interface trackers
//	ServiceHealth   health of virtual servers and proxies (track_service)
//
// and vrrptest has in-memory fakes of each. Its receive goroutine applies
// CheckTTL, Parse and WireConfig.Check, counts every drop by reason in a
// Stats and hands accepted adverts to the Machine. As the Machine's Actions
// it sends adverts directly on the Transport (a raw socket write does not
// block), and queues everything slow on goroutines of its own, in order:
// VIP changes and announcements on a worker (a burst of Count rounds on
// becoming Master, the first at once; a second burst after Delay; one round
// every Refresh; a burst when a Master hears a lower-priority advert, the
// sign of a split brain), state-change callbacks, and notify commands (argv,
// timeout, killed with their process group). Trackers (interfaces,
// processes from /proc, keepalived-style track_files, services) feed
// SetTracker / SetTrackerWeight. A Group makes instances move together
// (keepalived's vrrp_sync_group). Update applies a reload in place;
// Failover and AwaitHandover run and observe a drill; Status and Counters
// feed the agent's status, events and metrics. The transport must not
// deliver our own advertisements (disable multicast loopback); the Machine
// ignores adverts from its own PrimaryAddr in any case.
//
// The Machine's Actions are called synchronously under its lock: they must
// not call the Machine back from the same goroutine, and should not block.
//
// # Timers
//
// Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256 for v3 (RFC
// 5798 §6.1) and (256 - Priority) / 256 s for v2 (RFC 3768 §6.1);
// Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time. Priority 100
// at 1 s: Skew_Time 609.375 ms, Master_Down_Interval 3.609375 s. Priority is
// always the effective priority, as in keepalived. A v3 Backup adopts the
// interval the Master advertises (RFC 5798 §6.4.2); v2 drops advertisements
// whose interval differs from its own (RFC 3768 §7.1).
//
// # Checksums
//
// v2 sums the VRRP message only (RFC 3768 §5.3.8). v3 over IPv6 adds the
// IPv6 pseudo-header (RFC 5798 §5.2.8). For v3 over IPv4, RFC 5798 §5.2.8
// names "a pseudo-header as defined in Section 8.1 of [RFC2460]", an IPv6
// definition, and implementations split: keepalived (default), FRR (default
// until 2023) and Fulcrum add the IPv4 pseudo-header (ChecksumStandard);
// Cisco and others sum the message only (ChecksumMessageOnly), as RFC 9568
// §5.2.8 now says and as keepalived does with "v3_checksum_as_v2".
// keepalived before 1.3.6 also put 224.0.0.18 in the pseudo-header of
// unicast packets (ChecksumLegacyUnicast). Parse always accepts the standard
// form and, on request (ParseOptions), the two others; Packet.ChecksumMode
// says which one matched so the transport can log a peer's dialect.
//
// # Departures from the RFC, all following keepalived
//
//   - Fault state, tracker weights and effective priority (see Tracker).
//   - preempt_delay (see Config.PreemptDelay).
//   - Optional immediate answer to a lower-priority advertisement
//     (Config.AdvertOnLowerPriority), and optional parting advertisement of
//     a Master that yields (Config.AdvertOnHigherPriority).
//   - VRRPv2 simple password authentication (RFC 2338), which RFC 3768
//     removed.
//   - The address-list check is configurable (see AddrListPolicy).
package vrrp
