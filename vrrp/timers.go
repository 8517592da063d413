package vrrp

import (
	"fmt"
	"time"
)

// SkewTime returns Skew_Time for a router of the given priority.
//
//   - v3 (RFC 5798 §6.1): Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256,
//     so it scales with the interval the Master advertises.
//   - v2 (RFC 3768 §6.1): Skew_Time = (256 - Priority) / 256 seconds, whatever
//     the advertisement interval.
//
// The result is truncated to the nanosecond (keepalived truncates to the
// microsecond); for intervals that are whole centiseconds the truncation is
// at most half a nanosecond. Example: priority 100, 1 s: 156/256 s =
// 609.375 ms.
func SkewTime(v Version, priority uint8, masterAdverInterval time.Duration) time.Duration {
	w := time.Duration(256 - int(priority))
	if v == Version2 {
		return w * time.Second / 256
	}
	return w * masterAdverInterval / 256
}

// MasterDownInterval returns Master_Down_Interval = (3 * Master_Adver_Interval)
// + Skew_Time (RFC 5798 §6.1; RFC 3768 §6.1 with Advertisement_Interval).
// Example: priority 100, 1 s: 3 s + 609.375 ms = 3.609375 s.
func MasterDownInterval(v Version, priority uint8, masterAdverInterval time.Duration) time.Duration {
	return 3*masterAdverInterval + SkewTime(v, priority, masterAdverInterval)
}

// EncodeInterval converts an advertisement interval to the version's wire
// field: centiseconds 1..4095 for v3 (RFC 5798 §5.2.7), whole seconds 1..255
// for v2 (RFC 3768 §5.3.7). It refuses intervals the field cannot carry
// exactly rather than rounding them.
func EncodeInterval(v Version, d time.Duration) (uint16, error) {
	unit, limit := centisecond, time.Duration(maxAdverIntV3)
	switch v {
	case Version3:
	case Version2:
		unit, limit = time.Second, maxAdverIntV2
	default:
		return 0, fmt.Errorf("vrrp: unknown version %d", uint8(v))
	}
	if d <= 0 || d%unit != 0 || d/unit > limit {
		return 0, fmt.Errorf("vrrp: advertisement interval %v is not a whole number of %v in 1..%d for %v", d, unit, limit, v)
	}
	return uint16(d / unit), nil
}
