package vrrptest

import (
	"reflect"
	"testing"
	"time"
)

func TestFakeClockOrder(t *testing.T) {
	c := NewFakeClock(time.Time{})
	start := c.Now()
	var got []string
	rec := func(s string) func() {
		return func() { got = append(got, s+"@"+c.Now().Sub(start).String()) }
	}
	c.AfterFunc(3*time.Second, rec("c"))
	c.AfterFunc(time.Second, rec("a"))
	c.AfterFunc(time.Second, rec("b")) // same deadline: creation order
	stopped := c.AfterFunc(2*time.Second, rec("never"))
	c.AfterFunc(2*time.Second, func() {
		rec("d")()
		// A timer created by a callback and due within the advance fires in it.
		c.AfterFunc(500*time.Millisecond, rec("e"))
		c.AfterFunc(0, rec("f"))
	})
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop should succeed exactly once")
	}
	if n := c.Pending(); n != 4 {
		t.Fatalf("Pending = %d", n)
	}
	if d, ok := c.NextDeadline(); !ok || d.Sub(start) != time.Second {
		t.Fatalf("NextDeadline = %v, %v", d, ok)
	}
	c.Advance(2500 * time.Millisecond)
	want := []string{"a@1s", "b@1s", "d@2s", "f@2s", "e@2.5s"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fired %v, want %v", got, want)
	}
	if c.Now().Sub(start) != 2500*time.Millisecond {
		t.Fatalf("Now = %v", c.Now().Sub(start))
	}
	if !c.Step() || c.Now().Sub(start) != 3*time.Second || len(got) != 6 {
		t.Fatalf("Step: now %v, fired %v", c.Now().Sub(start), got)
	}
	if c.Step() {
		t.Fatal("Step with nothing pending")
	}
	c.AdvanceTo(start) // never backwards
	if c.Now().Sub(start) != 3*time.Second {
		t.Fatal("clock went backwards")
	}
	if _, ok := c.NextDeadline(); ok {
		t.Fatal("deadline with nothing pending")
	}
}

func TestFakeClockNegativeDelay(t *testing.T) {
	c := NewFakeClock(time.Time{})
	fired := false
	c.AfterFunc(-time.Second, func() { fired = true })
	if fired {
		t.Fatal("fired inside AfterFunc")
	}
	c.Advance(0)
	if !fired {
		t.Fatal("not fired by Advance(0)")
	}
}
