package vrrptest

import (
	"fmt"
	"sync"
	"time"

	"github.com/fulcrum-lb/fulcrum/vrrp"
)

// Kind is the kind of a recorded action.
type Kind uint8

// The recorded actions, one per vrrp.Actions method.
const (
	SendAdvert Kind = iota + 1
	AddVIPs
	RemoveVIPs
	Announce
	StateChanged
)

// Event is one recorded vrrp.Actions call.
type Event struct {
	At       time.Time
	Kind     Kind
	Priority uint8       // SendAdvert
	From, To vrrp.State  // StateChanged
	Reason   vrrp.Reason // StateChanged
}

// String renders the event compactly, without its time: "send(100)",
// "add_vips", "remove_vips", "announce", "backup->master(master_down)".
func (e Event) String() string {
	switch e.Kind {
	case SendAdvert:
		return fmt.Sprintf("send(%d)", e.Priority)
	case AddVIPs:
		return "add_vips"
	case RemoveVIPs:
		return "remove_vips"
	case Announce:
		return "announce"
	case StateChanged:
		return fmt.Sprintf("%v->%v(%v)", e.From, e.To, e.Reason)
	default:
		return fmt.Sprintf("event(%d)", e.Kind)
	}
}

// Recorder is a vrrp.Actions that records every call, stamped with Clock's
// time when Clock is set. It is safe for concurrent use.
type Recorder struct {
	Clock vrrp.Clock

	mu     sync.Mutex
	events []Event
}

var _ vrrp.Actions = (*Recorder)(nil)

func (r *Recorder) add(e Event) {
	if r.Clock != nil {
		e.At = r.Clock.Now()
	}
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// SendAdvert implements vrrp.Actions.
func (r *Recorder) SendAdvert(priority uint8) { r.add(Event{Kind: SendAdvert, Priority: priority}) }

// AddVIPs implements vrrp.Actions.
func (r *Recorder) AddVIPs() { r.add(Event{Kind: AddVIPs}) }

// RemoveVIPs implements vrrp.Actions.
func (r *Recorder) RemoveVIPs() { r.add(Event{Kind: RemoveVIPs}) }

// Announce implements vrrp.Actions.
func (r *Recorder) Announce() { r.add(Event{Kind: Announce}) }

// StateChanged implements vrrp.Actions.
func (r *Recorder) StateChanged(from, to vrrp.State, reason vrrp.Reason) {
	r.add(Event{Kind: StateChanged, From: from, To: to, Reason: reason})
}

// Events returns a copy of everything recorded so far.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// Take returns everything recorded since the last Take and forgets it.
func (r *Recorder) Take() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := r.events
	r.events = nil
	return ev
}

// TakeStrings is Take rendered with Event.String.
func (r *Recorder) TakeStrings() []string {
	ev := r.Take()
	out := make([]string, len(ev))
	for i, e := range ev {
		out[i] = e.String()
	}
	return out
}
