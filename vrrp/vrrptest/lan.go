package vrrptest

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/fulcrum-lb/fulcrum/vrrp"
)

// LAN is a simulated segment: every advertisement a Node sends reaches every
// other Node whose link is up, Latency later on the shared FakeClock. It
// models the protocol only (no codec, no checks): it is for scenarios of
// several Machines, such as failover and preemption.
type LAN struct {
	Clock   *FakeClock
	Latency time.Duration

	mu    sync.Mutex
	nodes []*Node
}

// NewLAN returns an empty LAN on clock.
func NewLAN(clock *FakeClock, latency time.Duration) *LAN {
	return &LAN{Clock: clock, Latency: latency}
}

// Node is one router on a LAN. Its Recorder sees every action of its
// Machine; its advertisements are also delivered to the other Nodes.
type Node struct {
	Name    string
	Addr    netip.Addr
	Machine *vrrp.Machine
	*Recorder

	lan      *LAN
	interval time.Duration
	mu       sync.Mutex
	linkDown bool
}

var _ vrrp.Actions = (*Node)(nil)

// Add creates a Node running a Machine with cfg (cfg.PrimaryAddr is its
// address). The Machine is not started.
func (l *LAN) Add(name string, cfg vrrp.Config) (*Node, error) {
	n := &Node{Name: name, Addr: cfg.PrimaryAddr.Unmap(), Recorder: &Recorder{Clock: l.Clock}, lan: l}
	n.interval = cfg.AdvertInterval
	if n.interval == 0 {
		n.interval = vrrp.DefaultAdvertIntervalV3 // equal to the v2 default
	}
	m, err := vrrp.NewMachine(cfg, l.Clock, n)
	if err != nil {
		return nil, fmt.Errorf("vrrptest: node %s: %w", name, err)
	}
	n.Machine = m
	l.mu.Lock()
	l.nodes = append(l.nodes, n)
	l.mu.Unlock()
	return n, nil
}

// SetLink cuts (up=false) or restores the node's link: while it is cut the
// node neither sends nor receives.
func (n *Node) SetLink(up bool) {
	n.mu.Lock()
	n.linkDown = !up
	n.mu.Unlock()
}

func (n *Node) linkUp() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return !n.linkDown
}

// SendAdvert records the advertisement and puts it on the wire.
func (n *Node) SendAdvert(priority uint8) {
	n.Recorder.SendAdvert(priority)
	if !n.linkUp() {
		return
	}
	a := vrrp.Advert{Src: n.Addr, Priority: priority, Interval: n.interval}
	n.lan.mu.Lock()
	peers := append([]*Node(nil), n.lan.nodes...)
	n.lan.mu.Unlock()
	for _, p := range peers {
		if p == n {
			continue
		}
		// Delivered through the clock, never synchronously: Actions run
		// under the sender's lock and must not call into Machines.
		n.lan.Clock.AfterFunc(n.lan.Latency, func() {
			if p.linkUp() && n.linkUp() {
				p.Machine.HandleAdvert(a)
			}
		})
	}
}
