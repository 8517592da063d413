package agent

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Event is one entry of the agent's event stream (GET /v1/events).
//
// Seq increases by one per published event across all subsystems. The only
// event not published on the bus is events_dropped, which a subscription
// synthesises when it fell behind: it carries the Seq of the last event it
// stands for, so Seq stays strictly increasing on every stream.
type Event struct {
	Seq       uint64         `json:"seq"`
	Time      time.Time      `json:"time"`
	Subsystem string         `json:"subsystem"`
	Type      string         `json:"type"`
	Attrs     map[string]any `json:"attrs"`
}

// Event types published by the agent itself.
const (
	EventAgentStarted       = "agent_started"
	EventAgentStopping      = "agent_stopping"
	EventConfigReloaded     = "config_reloaded"
	EventConfigReloadFailed = "config_reload_failed"
	EventEventsDropped      = "events_dropped"
)

// Publisher is what subsystems get to publish events. Publish never blocks on
// subscribers and is safe for concurrent use.
type Publisher interface {
	Publish(subsystem, eventType string, attrs map[string]any) Event
}

// ErrBusClosed is returned by Subscription.Next once the bus has been closed
// and every queued event has been delivered.
var ErrBusClosed = errors.New("event bus closed")

// DefaultSubscriberBuffer is the number of events a subscriber may fall
// behind before events are dropped for it.
const DefaultSubscriberBuffer = 256

// Bus is an ordered, non-blocking publish/subscribe bus. The zero value is not
// usable; create one with NewBus.
type Bus struct {
	clock       Clock
	onPublished func() // called once per published event (metrics); may be nil

	mu     sync.Mutex
	seq    uint64
	subs   map[*Subscription]struct{}
	closed bool
}

// NewBus returns a bus that stamps events with clock.Now. onPublished, if not
// nil, is called once per published event.
func NewBus(clock Clock, onPublished func()) *Bus {
	if clock == nil {
		clock = systemClock{}
	}
	return &Bus{clock: clock, onPublished: onPublished, subs: make(map[*Subscription]struct{})}
}

// Publish assigns the next sequence number to a new event and queues it for
// every subscriber. It never waits for a subscriber: a subscriber whose buffer
// is full loses the event and is told so later with an events_dropped event.
// Publishing on a closed bus assigns no sequence number and delivers nothing.
func (b *Bus) Publish(subsystem, eventType string, attrs map[string]any) Event {
	if attrs == nil {
		attrs = map[string]any{}
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return Event{Time: b.clock.Now(), Subsystem: subsystem, Type: eventType, Attrs: attrs}
	}
	b.seq++
	ev := Event{Seq: b.seq, Time: b.clock.Now(), Subsystem: subsystem, Type: eventType, Attrs: attrs}
	for s := range b.subs {
		s.offer(ev)
	}
	b.mu.Unlock()
	if b.onPublished != nil {
		b.onPublished()
	}
	return ev
}

// Subscribe returns a subscription that receives every event published from
// now on, in order. buffer is how many undelivered events it may hold
// (DefaultSubscriberBuffer when <= 0). Close it when done.
func (b *Bus) Subscribe(buffer int) *Subscription {
	if buffer <= 0 {
		buffer = DefaultSubscriberBuffer
	}
	s := &Subscription{bus: b, capacity: buffer, wake: make(chan struct{}, 1)}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		s.closed = true
		return s
	}
	b.subs[s] = struct{}{}
	return s
}

// Close ends every subscription: each delivers what it already queued and
// then returns ErrBusClosed. Close is idempotent.
func (b *Bus) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	for s := range b.subs {
		s.close()
		delete(b.subs, s)
	}
}

// item is one queued entry: an event, or (dropped > 0) a run of dropped events.
type item struct {
	ev      Event
	dropped uint64
	first   uint64 // first dropped seq
}

// Subscription is one reader of the bus.
type Subscription struct {
	bus      *Bus
	capacity int
	wake     chan struct{}

	mu      sync.Mutex
	queue   []item
	nEvents int // events (not drop markers) in queue
	closed  bool
}

// offer queues ev or, when the buffer is full, accounts for it as dropped.
// Consecutive drops collapse into a single marker, so the queue holds at most
// 2*capacity+1 items.
func (s *Subscription) offer(ev Event) {
	s.mu.Lock()
	if s.nEvents >= s.capacity {
		if n := len(s.queue); n > 0 && s.queue[n-1].dropped > 0 {
			last := &s.queue[n-1]
			last.dropped++
			last.ev.Seq, last.ev.Time = ev.Seq, ev.Time
		} else {
			s.queue = append(s.queue, item{dropped: 1, first: ev.Seq, ev: Event{Seq: ev.Seq, Time: ev.Time}})
		}
	} else {
		s.queue = append(s.queue, item{ev: ev})
		s.nEvents++
	}
	s.mu.Unlock()
	s.signal()
}

func (s *Subscription) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Subscription) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.signal()
}

// Next returns the next event, waiting until one arrives, ctx is done
// (ctx.Err()) or the bus is closed and drained (ErrBusClosed).
func (s *Subscription) Next(ctx context.Context) (Event, error) {
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			it := s.queue[0]
			s.queue[0] = item{}
			s.queue = s.queue[1:]
			if it.dropped == 0 {
				s.nEvents--
			}
			s.mu.Unlock()
			if it.dropped > 0 {
				return Event{
					Seq:       it.ev.Seq,
					Time:      it.ev.Time,
					Subsystem: "agent",
					Type:      EventEventsDropped,
					Attrs: map[string]any{
						"count":     it.dropped,
						"first_seq": it.first,
						"last_seq":  it.ev.Seq,
					},
				}, nil
			}
			return it.ev, nil
		}
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return Event{}, ErrBusClosed
		}
		select {
		case <-ctx.Done():
			return Event{}, ctx.Err()
		case <-s.wake:
		}
	}
}

// Close detaches the subscription from the bus. Queued events are discarded.
func (s *Subscription) Close() {
	s.bus.mu.Lock()
	delete(s.bus.subs, s)
	s.bus.mu.Unlock()
	s.mu.Lock()
	s.closed = true
	s.queue = nil
	s.nEvents = 0
	s.mu.Unlock()
	s.signal()
}
