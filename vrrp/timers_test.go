package vrrp

import (
	"testing"
	"time"
)

// TestTimerValues pins Skew_Time and Master_Down_Interval to hand-computed
// values (RFC 5798 §6.1, RFC 3768 §6.1).
func TestTimerValues(t *testing.T) {
	for _, tc := range []struct {
		v        Version
		prio     uint8
		interval time.Duration
		skew     time.Duration
		down     time.Duration
	}{
		// (256-100)/256 = 0.609375: 609.375 ms; 3 s + that = 3.609375 s.
		{Version3, 100, time.Second, 609375 * time.Microsecond, 3609375 * time.Microsecond},
		{Version2, 100, time.Second, 609375 * time.Microsecond, 3609375 * time.Microsecond},
		// v3 scales the skew with the interval: 156/256 * 3 s = 1.828125 s ...
		{Version3, 100, 3 * time.Second, 1828125 * time.Microsecond, 10828125 * time.Microsecond},
		// ... v2 does not: (256-100)/256 s whatever the interval.
		{Version2, 100, 3 * time.Second, 609375 * time.Microsecond, 9609375 * time.Microsecond},
		// 50 cs: 156/256 * 0.5 s = 304.6875 ms.
		{Version3, 100, 500 * time.Millisecond, 3046875 * time.Microsecond / 10, 18046875 * time.Microsecond / 10},
		// priority 200: 56/256 = 218.75 ms.
		{Version3, 200, time.Second, 218750 * time.Microsecond, 3218750 * time.Microsecond},
		// priority 254: 2/256 = 7.8125 ms.
		{Version3, 254, time.Second, 7812500 * time.Nanosecond, 3007812500 * time.Nanosecond},
		// priority 1: 255/256 = 996.09375 ms.
		{Version2, 1, time.Second, 99609375 * time.Microsecond / 100, 399609375 * time.Microsecond / 100},
		// 10 ms (smallest v3 interval), priority 100: 156/256 * 10 ms = 6.09375 ms.
		{Version3, 100, 10 * time.Millisecond, 6093750 * time.Nanosecond, 36093750 * time.Nanosecond},
	} {
		if got := SkewTime(tc.v, tc.prio, tc.interval); got != tc.skew {
			t.Errorf("SkewTime(%v, %d, %v) = %v, want %v", tc.v, tc.prio, tc.interval, got, tc.skew)
		}
		if got := MasterDownInterval(tc.v, tc.prio, tc.interval); got != tc.down {
			t.Errorf("MasterDownInterval(%v, %d, %v) = %v, want %v", tc.v, tc.prio, tc.interval, got, tc.down)
		}
	}
}

func TestEncodeInterval(t *testing.T) {
	for _, tc := range []struct {
		v    Version
		d    time.Duration
		want uint16
		ok   bool
	}{
		{Version3, time.Second, 100, true},
		{Version3, 10 * time.Millisecond, 1, true},
		{Version3, 40950 * time.Millisecond, 4095, true},
		{Version3, 40960 * time.Millisecond, 0, false},
		{Version3, 15 * time.Millisecond, 0, false},
		{Version3, 0, 0, false},
		{Version2, time.Second, 1, true},
		{Version2, 255 * time.Second, 255, true},
		{Version2, 256 * time.Second, 0, false},
		{Version2, 500 * time.Millisecond, 0, false},
		{Version(4), time.Second, 0, false},
	} {
		got, err := EncodeInterval(tc.v, tc.d)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("EncodeInterval(%v, %v) = %d, %v", tc.v, tc.d, got, err)
		}
	}
}
