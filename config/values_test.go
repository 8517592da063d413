package config

import (
	"net/netip"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"100ms", 100 * time.Millisecond, true},
		{"1m30s", 90 * time.Second, true},
		{"0", 0, true},
		{"5", 0, false},
		{"1x", 0, false},
		{"-1s", 0, false},
		{"", 0, false},
	} {
		got, err := parseDuration(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseDuration(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"512", 512, true},
		{"512B", 512, true},
		{"64KiB", 64 << 10, true},
		{"10MiB", 10 << 20, true},
		{"10mib", 10 << 20, true},
		{"1.5MiB", 3 << 19, true},
		{"1GiB", 1 << 30, true},
		{"10MB", 10e6, true},
		{"2 KB", 2000, true},
		{"1TiB", 1 << 40, true},
		{"", 0, false},
		{"MiB", 0, false},
		{"10 parsecs", 0, false},
		{"1.2.3", 0, false},
		{"-5", 0, false},
		{"99999999TiB", 0, false},
	} {
		got, err := parseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSize(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestParseAddresses(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"203.0.113.10/24", "203.0.113.10/24"},
		{"203.0.113.10", "203.0.113.10/32"},
		{"2001:db8::1", "2001:db8::1/128"},
		{"2001:db8::1/64", "2001:db8::1/64"},
		{"203.0.113.10/33", ""},
		{"::ffff:192.0.2.1", ""},
		{"fe80::1%eth0", ""},
		{"eth0", ""},
	} {
		got, err := parseVIP(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("parseVIP(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("parseVIP(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}

	for _, tc := range []struct {
		in       string
		optional bool
		want     string
	}{
		{"192.0.2.1:80", false, "192.0.2.1:80"},
		{"[2001:db8::1]:443", false, "[2001:db8::1]:443"},
		{"192.0.2.1", true, "192.0.2.1:0"},
		{"2001:db8::1", true, "[2001:db8::1]:0"},
		{"192.0.2.1", false, ""},
		{"2001:db8::1", false, ""},
		{"192.0.2.1:99999", false, ""},
		{"host:80", false, ""},
		{"[::ffff:192.0.2.1]:80", false, ""},
	} {
		got, err := parseAddrPort(tc.in, tc.optional)
		if tc.want == "" {
			if err == nil {
				t.Errorf("parseAddrPort(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != netip.MustParseAddrPort(tc.want) {
			t.Errorf("parseAddrPort(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestParseMask(t *testing.T) {
	for _, tc := range []struct {
		in     string
		family AddressFamily
		want   int
	}{
		{"255.255.255.255", IPv4, 32},
		{"255.255.255.0", IPv4, 24},
		{"255.255.254.0", IPv4, 23},
		{"24", IPv4, 24},
		{"/16", IPv4, 16},
		{"64", IPv6, 64},
		{"128", IPv6, 128},
		{"255.0.255.0", IPv4, -1},
		{"0.0.0.0", IPv4, -1},
		{"33", IPv4, -1},
		{"0", IPv4, -1},
		{"255.255.255.0", IPv6, -1},
		{"129", IPv6, -1},
	} {
		got, err := parseMask(tc.in, tc.family)
		if tc.want < 0 {
			if err == nil {
				t.Errorf("parseMask(%q, %s) = %d, want an error", tc.in, tc.family, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseMask(%q, %s) = %d, %v; want %d", tc.in, tc.family, got, err, tc.want)
		}
	}
}

func TestParseStatusRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want StatusRange
		ok   bool
	}{
		{"200", StatusRange{200, 200}, true},
		{"200-299", StatusRange{200, 299}, true},
		{"100-599", StatusRange{100, 599}, true},
		{"99", StatusRange{}, false},
		{"600", StatusRange{}, false},
		{"299-200", StatusRange{}, false},
		{"2xx", StatusRange{}, false},
		{"200-", StatusRange{}, false},
	} {
		got, err := parseStatusRange(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseStatusRange(%q) = %v, %v", tc.in, got, err)
		}
	}
	if !(StatusRange{200, 299}).Contains(204) || (StatusRange{200, 299}).Contains(301) {
		t.Error("StatusRange.Contains")
	}
}

func TestNames(t *testing.T) {
	for in, ok := range map[string]bool{
		"eth0": true, "bond0.100": true, "veth-a_b": true, "abcdefghijklmno": true,
		"": false, "abcdefghijklmnop": false, ".": false, "..": false, "eth0:1": false, "a/b": false, "a b": false,
	} {
		if err := checkInterfaceName(in); (err == nil) != ok {
			t.Errorf("checkInterfaceName(%q) = %v", in, err)
		}
	}
	for in, ok := range map[string]bool{
		"web": true, "vi_1": true, "a.b-c": true, "9lives": true,
		"": false, "_x": false, "-x": false, "a b": false, "ü": false,
	} {
		if err := checkName(in); (err == nil) != ok {
			t.Errorf("checkName(%q) = %v", in, err)
		}
	}
}

func TestSuggest(t *testing.T) {
	names := []string{"interface", "priority", "preempt", "preempt_delay", "version"}
	for in, want := range map[string]string{
		"priorty":      "priority",
		"interfce":     "interface",
		"preemt":       "preempt",
		"preempt_dely": "preempt_delay",
		"verison":      "version",
		"zzz":          "",
		"priority":     "",
	} {
		if got := suggest(in, names); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
	if got := suggest("warning", []string{"debug", "info", "warn", "error"}); got != "warn" {
		t.Errorf("prefix suggestion = %q", got)
	}
}
