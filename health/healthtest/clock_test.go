package healthtest_test

import (
	"slices"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/health"
	"github.com/fulcrum-lb/fulcrum/health/healthtest"
)

var _ health.Clock = (*healthtest.FakeClock)(nil)

func TestFakeClock(t *testing.T) {
	c := healthtest.NewFakeClock(time.Time{})
	t0 := c.Now()
	var fired []string
	at := func(name string) func() {
		return func() { fired = append(fired, name+"@"+c.Now().Sub(t0).String()) }
	}
	c.AfterFunc(2*time.Second, at("b"))
	c.AfterFunc(time.Second, at("a"))
	c.AfterFunc(time.Second, at("a2")) // same deadline: creation order
	stopped := c.AfterFunc(1500*time.Millisecond, at("stopped"))
	c.AfterFunc(0, func() {
		at("zero")()
		c.AfterFunc(500*time.Millisecond, at("nested")) // due within this advance: fires in it
	})
	if len(fired) != 0 {
		t.Fatal("a timer fired inside AfterFunc")
	}
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop: want true, then false")
	}
	if next, ok := c.Next(); !ok || next != t0 {
		t.Fatalf("Next = %v, %v", next, ok)
	}
	c.Advance(1500 * time.Millisecond)
	if want := []string{"zero@0s", "nested@500ms", "a@1s", "a2@1s"}; !slices.Equal(fired, want) {
		t.Fatalf("fired %v, want %v", fired, want)
	}
	if c.Now().Sub(t0) != 1500*time.Millisecond || c.Pending() != 1 {
		t.Fatalf("now %v pending %d", c.Now().Sub(t0), c.Pending())
	}
	if !c.Step() || c.Now().Sub(t0) != 2*time.Second || fired[len(fired)-1] != "b@2s" {
		t.Fatalf("Step: now %v fired %v", c.Now().Sub(t0), fired)
	}
	if c.Step() {
		t.Fatal("Step with nothing pending")
	}
	c.AdvanceTo(t0) // never backwards
	if c.Now().Sub(t0) != 2*time.Second {
		t.Fatal("clock went backwards")
	}
}
