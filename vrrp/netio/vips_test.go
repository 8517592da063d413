package netio_test

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/fulcrum-lb/fulcrum/lab/netns"
	"github.com/fulcrum-lb/fulcrum/lab/require"
	"github.com/fulcrum-lb/fulcrum/vrrp/netio"
)

// ipAddrShow is `ip -o addr show dev iface` inside h: the independent witness.
func ipAddrShow(t *testing.T, h *netns.Host, iface string) string {
	t.Helper()
	require.Binary(t, "ip")
	out, err := h.Command(ctxT(t, waitFor), "ip", "-o", "addr", "show", "dev", iface).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: ip addr: %v\n%s", h, err, out)
	}
	return string(out)
}

// addrLine returns the `ip -o addr` line of prefix, or "".
func addrLine(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, " "+prefix+" ") {
			return l
		}
	}
	return ""
}

func TestVIPManagerAddRemove(t *testing.T) {
	lan := netns.NewLAN(t, netns.Options{KeepDAD: true}) // so "nodad" on the VIP is ours, not the lab's
	a := lan.AddHost("a", "192.0.2.11/24", "2001:db8::11/64")
	nl, _ := handleIn(t, a)
	m, err := netio.NewVIPManager(nl, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	labelled := netio.VIP{Prefix: netip.MustParsePrefix("192.0.2.100/32"), Label: "eth0:vip"}
	wide := netio.VIP{Prefix: netip.MustParsePrefix("192.0.2.101/24")}
	v6 := netio.VIP{Prefix: netip.MustParsePrefix("2001:db8::100/64")}
	for range 2 { // the second round proves Add idempotent
		for _, v := range []netio.VIP{labelled, wide, v6} {
			if err := m.Add(v); err != nil {
				t.Fatalf("Add(%s): %v", v, err)
			}
		}
	}
	out := ipAddrShow(t, a, "eth0")
	if l := addrLine(out, "192.0.2.100/32"); !strings.Contains(l, " eth0:vip") {
		t.Errorf("192.0.2.100/32 should carry label eth0:vip; ip addr:\n%s", out)
	}
	if addrLine(out, "192.0.2.101/24") == "" {
		t.Errorf("192.0.2.101/24 missing; ip addr:\n%s", out)
	}
	if l := addrLine(out, "2001:db8::100/64"); !strings.Contains(l, "nodad") || strings.Contains(l, "tentative") {
		t.Errorf("2001:db8::100/64 should be there with nodad and not tentative; ip addr:\n%s", out)
	}
	if n := strings.Count(out, "192.0.2.100/32"); n != 1 {
		t.Errorf("192.0.2.100/32 appears %d times after two Adds, want 1", n)
	}
	for _, v := range []netio.VIP{labelled, wide, v6} {
		if ok, err := m.Present(v.Addr()); !ok || err != nil {
			t.Errorf("Present(%s) = %v, %v; want true", v.Addr(), ok, err)
		}
	}
	if got := m.Owned(); !slices.Equal(got, []netio.VIP{labelled, wide, v6}) {
		t.Errorf("Owned() = %v", got)
	}

	for range 2 { // the second round proves Remove of an absent VIP is no error
		for _, v := range []netio.VIP{labelled, v6} {
			if err := m.Remove(v); err != nil {
				t.Fatalf("Remove(%s): %v", v, err)
			}
		}
	}
	out = ipAddrShow(t, a, "eth0")
	if strings.Contains(out, "192.0.2.100") || strings.Contains(out, "2001:db8::100") {
		t.Errorf("removed VIPs still there:\n%s", out)
	}
	if addrLine(out, "192.0.2.101/24") == "" || addrLine(out, "192.0.2.11/24") == "" {
		t.Errorf("Remove took more than asked:\n%s", out)
	}
	if ok, err := m.Present(v6.Addr()); ok || err != nil {
		t.Errorf("Present(%s) after Remove = %v, %v; want false", v6.Addr(), ok, err)
	}
	// Remove finds the address whatever its prefix length.
	if err := m.Remove(netio.HostVIP(wide.Addr())); err != nil {
		t.Fatal(err)
	}
	if out := ipAddrShow(t, a, "eth0"); strings.Contains(out, "192.0.2.101") {
		t.Errorf("Remove(/32) left %s:\n%s", wide, out)
	}
	if got := m.Owned(); len(got) != 0 {
		t.Errorf("Owned() after removing everything = %v", got)
	}

	// A missing interface holds nothing and cannot take VIPs.
	gone, _ := netio.NewVIPManager(nl, "nosuch0")
	if err := gone.Remove(wide); err != nil {
		t.Errorf("Remove on a missing interface: %v", err)
	}
	if ok, err := gone.Present(wide.Addr()); ok || err != nil {
		t.Errorf("Present on a missing interface = %v, %v", ok, err)
	}
	if err := gone.Add(wide); err == nil {
		t.Error("Add on a missing interface succeeded")
	}
}

func TestVIPValidation(t *testing.T) {
	m, err := netio.NewVIPManager(&netlink.Handle{}, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []netio.VIP{
		{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Label: "eth1:vip"},           // not this interface
		{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Label: "eth0:much-too-long"}, // over 15 bytes
		{Prefix: netip.MustParsePrefix("2001:db8::1/64"), Label: "eth0:v6"},          // IPv6 has no labels
		{Prefix: netip.MustParsePrefix("224.0.0.18/32")},                             // multicast
		{Prefix: netip.MustParsePrefix("::ffff:192.0.2.1/128")},                      // mapped
		{}, // nothing
	} {
		if err := m.Add(v); err == nil {
			t.Errorf("Add(%s) succeeded, want a validation error", v)
		}
	}
	if _, err := netio.NewVIPManager(nil, "eth0"); err == nil {
		t.Error("NewVIPManager(nil, ...) succeeded")
	}
	if got := netio.HostVIP(netip.MustParseAddr("2001:db8::1")).Prefix.String(); got != "2001:db8::1/128" {
		t.Errorf("HostVIP = %s", got)
	}
}

// nextVIPEvent waits for the next event.
func nextVIPEvent(t *testing.T, ch <-chan netio.VIPEvent) netio.VIPEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("VIP watch channel closed")
		}
		return ev
	case <-time.After(waitFor):
		t.Fatal("no VIP event")
	}
	panic("unreachable")
}

func noVIPEvent(t *testing.T, ch <-chan netio.VIPEvent, what string) {
	t.Helper()
	select {
	case ev := <-ch:
		t.Fatalf("%s: unexpected VIP event %+v", what, ev)
	case <-time.After(quiet):
	}
}

func TestVIPWatch(t *testing.T) {
	lan := netns.NewLAN(t, netns.Options{})
	a := lan.AddHost("a", "192.0.2.11/24", "2001:db8::11/64")
	nl, ns := handleIn(t, a)
	m, err := netio.NewVIPManager(nl, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		mu        sync.Mutex
		watchErrs []error
	)
	onError := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		watchErrs = append(watchErrs, err)
	}
	events, err := m.Watch(ctx, netio.WatchOptions{Namespace: &ns, OnError: onError})
	if err != nil {
		t.Fatal(err)
	}
	v4 := netio.VIP{Prefix: netip.MustParsePrefix("192.0.2.100/32"), Label: "eth0:vip"}
	v6 := netio.VIP{Prefix: netip.MustParsePrefix("2001:db8::100/64")}
	for _, v := range []netio.VIP{v4, v6} {
		if err := m.Add(v); err != nil {
			t.Fatal(err)
		}
	}
	ipDel := func(prefix string) {
		t.Helper()
		require.Binary(t, "ip")
		if out, err := a.Command(ctx, "ip", "addr", "del", prefix, "dev", "eth0").CombinedOutput(); err != nil {
			t.Fatalf("ip addr del %s: %v\n%s", prefix, err, out)
		}
	}

	start := time.Now()
	ipDel("192.0.2.100/32")
	if ev := nextVIPEvent(t, events); ev.VIP != v4 {
		t.Errorf("event for %s, want %s", ev.VIP, v4)
	} else {
		t.Logf("removal of %s reported after %v", v4, ev.Time.Sub(start))
	}

	// Our own removal is not reported; nor is the removal of an address we
	// do not own.
	if err := m.Remove(v6); err != nil {
		t.Fatal(err)
	}
	if err := a.AddAddr("eth0", "192.0.2.200/32"); err != nil {
		t.Fatal(err)
	}
	ipDel("192.0.2.200/32")
	noVIPEvent(t, events, "own Remove and a foreign address")

	// Put back and removed again: reported again.
	if err := m.Add(v4); err != nil {
		t.Fatal(err)
	}
	ipDel("192.0.2.100/32")
	if ev := nextVIPEvent(t, events); ev.VIP != v4 {
		t.Errorf("event for %s, want %s", ev.VIP, v4)
	}

	// Administratively down deletes IPv6 addresses, VIPs included.
	if err := m.Add(v6); err != nil {
		t.Fatal(err)
	}
	if err := a.SetLinkUp("eth0", false); err != nil {
		t.Fatal(err)
	}
	if ev := nextVIPEvent(t, events); ev.VIP != v6 {
		t.Errorf("after link down: event for %s, want %s", ev.VIP, v6)
	}
	if err := a.SetLinkUp("eth0", true); err != nil {
		t.Fatal(err)
	}

	cancel()
	deadline := time.After(waitFor)
	for {
		select {
		case _, ok := <-events:
			if !ok {
				mu.Lock()
				defer mu.Unlock()
				if len(watchErrs) > 0 {
					t.Errorf("watch errors: %v", watchErrs)
				}
				return
			}
		case <-deadline:
			t.Fatal("watch channel not closed after cancel")
		}
	}
}

// nextLinkEvent waits for the next event.
func nextLinkEvent(t *testing.T, ch <-chan netio.LinkEvent) netio.LinkEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("link watch channel closed")
		}
		return ev
	case <-time.After(waitFor):
		t.Fatal("no link event")
	}
	panic("unreachable")
}

func TestWatchLinks(t *testing.T) {
	lan := netns.NewLAN(t, netns.Options{})
	a := lan.AddHost("a", "192.0.2.11/24")
	lan.AddHost("b", "192.0.2.12/24")
	ns := nsHandle(t, a)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := netio.WatchLinks(ctx, netio.WatchOptions{Namespace: &ns}, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	idx := ifIndex(t, a, "eth0")
	expect := func(what string, up bool) {
		t.Helper()
		ev := nextLinkEvent(t, events)
		if ev.Name != "eth0" || ev.Index != idx || ev.Up != up || ev.Deleted {
			t.Fatalf("%s: got %+v, want eth0 (index %d) up=%v", what, ev, idx, up)
		}
	}
	expect("initial state", true)

	if err := lan.Unplug(a); err != nil { // carrier lost
		t.Fatal(err)
	}
	expect("unplugged", false)
	if err := lan.Plug(a); err != nil {
		t.Fatal(err)
	}
	expect("plugged", true)
	if err := a.SetLinkUp("eth0", false); err != nil { // administratively down
		t.Fatal(err)
	}
	expect("set down", false)
	if err := a.SetLinkUp("eth0", true); err != nil {
		t.Fatal(err)
	}
	expect("set up", true)

	// lo is not watched: flapping it reports nothing.
	if err := a.SetLinkUp("lo", false); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		t.Fatalf("unexpected event %+v", ev)
	case <-time.After(quiet):
	}

	cancel()
	select {
	case _, ok := <-events:
		if ok {
			t.Fatal("event after cancel")
		}
	case <-time.After(waitFor):
		t.Fatal("link watch channel not closed after cancel")
	}
}
