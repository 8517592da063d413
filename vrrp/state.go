package vrrp

import (
	"fmt"
	"net/netip"
	"time"
)

// State is a state of the VRRP state machine (RFC 5798 §6.4; RFC 3768 §6.4),
// plus keepalived's Fault.
type State uint8

const (
	// Initialize waits for a Startup event (RFC 5798 §6.4.1). A Machine is in
	// Initialize before Start and after Stop.
	Initialize State = iota
	// Backup monitors the Master (RFC 5798 §6.4.2).
	Backup
	// Master forwards for the virtual addresses and advertises (RFC 5798
	// §6.4.3).
	Master
	// Fault is keepalived's state for an instance whose weight-0 tracker
	// (an interface, a script) is down: no advertisements are sent or
	// heeded and the virtual addresses are removed. It is not in the RFCs.
	Fault
)

// String returns the lower-case state name.
func (s State) String() string {
	switch s {
	case Initialize:
		return "initialize"
	case Backup:
		return "backup"
	case Master:
		return "master"
	case Fault:
		return "fault"
	default:
		return fmt.Sprintf("state(%d)", uint8(s))
	}
}

// Reason says why a transition happened.
type Reason uint8

const (
	// ReasonStartup: Initialize -> Backup at Start (RFC 5798 §6.4.1).
	ReasonStartup Reason = iota + 1
	// ReasonOwner: Initialize -> Master at Start because the priority is 255
	// (RFC 5798 §6.4.1).
	ReasonOwner
	// ReasonMasterDown: Backup -> Master because Master_Down_Timer fired
	// with no advertisement heard (RFC 5798 §6.4.2).
	ReasonMasterDown
	// ReasonMasterResigned: Backup -> Master after the Master sent priority
	// 0 and Master_Down_Timer ran for Skew_Time only (RFC 5798 §6.4.2).
	ReasonMasterResigned
	// ReasonPreempt: Backup -> Master after discarding advertisements of a
	// lower-priority Master (Preempt_Mode, RFC 5798 §6.4.2).
	ReasonPreempt
	// ReasonHigherPriority: Master -> Backup on an advertisement of higher
	// priority (RFC 5798 §6.4.3).
	ReasonHigherPriority
	// ReasonTieBreak: Master -> Backup on an advertisement of equal priority
	// from a greater primary address (RFC 5798 §6.4.3).
	ReasonTieBreak
	// ReasonFault: any state -> Fault because a weight-0 tracker is down.
	ReasonFault
	// ReasonRecovered: Fault -> Backup or Master once no weight-0 tracker
	// is down.
	ReasonRecovered
	// ReasonShutdown: -> Initialize on Stop (RFC 5798 §6.4.2, §6.4.3).
	ReasonShutdown
	// ReasonForceBackup: Master -> Backup by the ForceBackup drill.
	ReasonForceBackup
	// ReasonTakeover: Backup -> Master by the TakeOver drill.
	ReasonTakeover
	// ReasonSyncGroup: Backup -> Master or Master -> Backup because another
	// member of the instance's sync group moved (keepalived
	// vrrp_sync_group; see Group).
	ReasonSyncGroup
)

// String returns a stable snake_case token.
func (r Reason) String() string {
	switch r {
	case ReasonStartup:
		return "startup"
	case ReasonOwner:
		return "address_owner"
	case ReasonMasterDown:
		return "master_down"
	case ReasonMasterResigned:
		return "master_resigned"
	case ReasonPreempt:
		return "preempt"
	case ReasonHigherPriority:
		return "higher_priority"
	case ReasonTieBreak:
		return "tie_break"
	case ReasonFault:
		return "fault"
	case ReasonRecovered:
		return "recovered"
	case ReasonShutdown:
		return "shutdown"
	case ReasonForceBackup:
		return "force_backup"
	case ReasonTakeover:
		return "takeover"
	case ReasonSyncGroup:
		return "sync_group"
	default:
		return fmt.Sprintf("reason(%d)", uint8(r))
	}
}

// Advert is what the state machine uses of a received, checked
// advertisement. Packet.Advert builds one.
type Advert struct {
	// Src is the IP source address of the packet, the sender's primary
	// address, used for the equal-priority tie-break (RFC 5798 §6.4.3).
	Src netip.Addr
	// Priority is the sender's priority; 0 means it resigns.
	Priority uint8
	// Interval is the advertised interval. A v3 Backup adopts it as
	// Master_Adver_Interval (RFC 5798 §6.4.2); v2 ignores it (Check has
	// already dropped adverts whose interval differs from ours).
	Interval time.Duration
}

// Actions is how the Machine acts on the world. The transport implements
// SendAdvert (build with WireConfig.Advert, marshal, write); the VIP manager
// implements AddVIPs, RemoveVIPs and Announce; the agent observes
// StateChanged.
//
// The Machine calls these synchronously, one at a time and in order, with
// its lock held. An implementation must therefore return promptly and must
// not call back into the Machine from the same goroutine (it would
// deadlock); hand work to another goroutine if it needs to. Failures are the
// implementation's to log and count: the protocol has no use for them (a
// lost advertisement is indistinguishable from one lost on the wire).
type Actions interface {
	// SendAdvert sends one advertisement with the given priority: the
	// effective priority, or 0 when the Master resigns.
	SendAdvert(priority uint8)
	// AddVIPs installs the virtual addresses (becoming Master).
	AddVIPs()
	// RemoveVIPs removes them (leaving Master).
	RemoveVIPs()
	// Announce sends the gratuitous ARP / unsolicited Neighbor
	// Advertisement burst for every virtual address (RFC 5798 §6.4.1 and
	// §6.4.2; for IPv6 with the Router flag set). It is called right after
	// AddVIPs, and again after Config.ReannounceDelay.
	Announce()
	// StateChanged reports a transition, after its side effects.
	StateChanged(from, to State, reason Reason)
}
