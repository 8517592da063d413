package agent

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestBusOrderAcrossPublishers(t *testing.T) {
	bus := NewBus(nil, nil)
	sub := bus.Subscribe(10000)
	defer sub.Close()
	const publishers, each = 4, 500
	var wg sync.WaitGroup
	for _, name := range []string{"vrrp", "ipvs", "health", "l7proxy"}[:publishers] {
		wg.Go(func() {
			for range each {
				bus.Publish(name, "tick", nil)
			}
		})
	}
	wg.Wait()
	ctx := context.Background()
	for want := uint64(1); want <= publishers*each; want++ {
		ev, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Seq != want {
			t.Fatalf("event seq %d, want %d", ev.Seq, want)
		}
		if ev.Attrs == nil {
			t.Fatal("nil attrs; want {} on the wire")
		}
	}
}

func TestBusDropAccounting(t *testing.T) {
	bus := NewBus(nil, nil)
	slow := bus.Subscribe(4)
	fast := bus.Subscribe(100)
	defer slow.Close()
	defer fast.Close()
	for range 10 {
		bus.Publish("agent", "e", nil)
	}
	ctx := context.Background()
	for want := uint64(1); want <= 4; want++ {
		if ev, _ := slow.Next(ctx); ev.Seq != want || ev.Type != "e" {
			t.Fatalf("event %+v, want seq %d", ev, want)
		}
	}
	ev, _ := slow.Next(ctx)
	if ev.Type != EventEventsDropped || ev.Attrs["count"] != uint64(6) ||
		ev.Attrs["first_seq"] != uint64(5) || ev.Attrs["last_seq"] != uint64(10) || ev.Seq != 10 {
		t.Fatalf("drop event = %+v, want 6 dropped (5..10)", ev)
	}
	// The stream continues.
	bus.Publish("agent", "e", nil)
	if ev, _ := slow.Next(ctx); ev.Seq != 11 || ev.Type != "e" {
		t.Fatalf("after drop got %+v", ev)
	}
	// Other subscribers lost nothing.
	for want := uint64(1); want <= 11; want++ {
		if ev, _ := fast.Next(ctx); ev.Seq != want {
			t.Fatalf("fast subscriber got seq %d, want %d", ev.Seq, want)
		}
	}
}

func TestBusDropMarkerKeepsPosition(t *testing.T) {
	bus := NewBus(nil, nil)
	sub := bus.Subscribe(2)
	defer sub.Close()
	ctx := context.Background()
	bus.Publish("a", "e", nil) // 1
	bus.Publish("a", "e", nil) // 2
	bus.Publish("a", "e", nil) // 3 dropped
	bus.Publish("a", "e", nil) // 4 dropped
	if ev, _ := sub.Next(ctx); ev.Seq != 1 {
		t.Fatalf("got %+v", ev)
	}
	bus.Publish("a", "e", nil) // 5 fits again
	var got []string
	for range 3 {
		ev, _ := sub.Next(ctx)
		got = append(got, ev.Type)
		if ev.Type == EventEventsDropped && ev.Attrs["count"] != uint64(2) {
			t.Fatalf("drop count %v", ev.Attrs["count"])
		}
	}
	if got[0] != "e" || got[1] != EventEventsDropped || got[2] != "e" {
		t.Fatalf("order = %v, want e, events_dropped, e", got)
	}
}

func TestPublishNeverBlocks(t *testing.T) {
	bus := NewBus(nil, nil)
	stuck := bus.Subscribe(1) // never read
	defer stuck.Close()
	done := make(chan struct{})
	go func() {
		for range 100000 {
			bus.Publish("agent", "e", nil)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked on a subscriber that does not read")
	}
	stuck.mu.Lock()
	n := len(stuck.queue)
	stuck.mu.Unlock()
	if n > 3 {
		t.Fatalf("stuck subscriber holds %d items, want a bounded queue", n)
	}
}

func TestBusCloseEndsSubscriptions(t *testing.T) {
	bus := NewBus(nil, nil)
	sub := bus.Subscribe(0)
	bus.Publish("agent", "last", nil)
	errc := make(chan error, 1)
	go func() {
		ctx := context.Background()
		if ev, err := sub.Next(ctx); err != nil || ev.Type != "last" {
			errc <- err
			return
		}
		_, err := sub.Next(ctx)
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	bus.Close()
	if err := <-errc; !errors.Is(err, ErrBusClosed) {
		t.Fatalf("Next after Close = %v, want ErrBusClosed", err)
	}
	if ev := bus.Publish("agent", "late", nil); ev.Seq != 0 {
		t.Fatalf("publish after close got seq %d", ev.Seq)
	}
	if _, err := bus.Subscribe(0).Next(context.Background()); !errors.Is(err, ErrBusClosed) {
		t.Fatalf("subscribe after close: %v", err)
	}
}

func TestSubscriptionNextHonoursContext(t *testing.T) {
	bus := NewBus(nil, nil)
	sub := bus.Subscribe(0)
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := sub.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next = %v", err)
	}
}

func TestBusStampsClockAndCounts(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	n := 0
	bus := NewBus(fixedClock{at}, func() { n++ })
	ev := bus.Publish("vrrp", "state_changed", map[string]any{"instance": "VI_1"})
	if !ev.Time.Equal(at) || ev.Subsystem != "vrrp" || ev.Attrs["instance"] != "VI_1" || n != 1 {
		t.Fatalf("event %+v, count %d", ev, n)
	}
}
