package netiotest_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/vrrp/netio"
	"github.com/fulcrum-lb/fulcrum/vrrp/netio/netiotest"
)

func recv(t *testing.T, c netio.Conn) netio.Packet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	p, err := c.Recv(ctx)
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	return p
}

func nothing(t *testing.T, c netio.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if p, err := c.Recv(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv = %+v, %v; want nothing", p, err)
	}
}

var (
	addrA = netip.MustParseAddr("192.0.2.1")
	addrB = netip.MustParseAddr("192.0.2.2")
	addrC = netip.MustParseAddr("192.0.2.3")
)

func TestWireMulticastAndUnicast(t *testing.T) {
	w := netiotest.NewWire()
	a, b, c := w.Conn(addrA), w.Conn(addrB), w.Conn(addrC)
	v6 := w.Conn(netip.MustParseAddr("fe80::1"))
	msg := []byte{0x31, 1, 100, 0, 0, 100, 0, 0}
	if err := a.Send(msg, netio.Group4()); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*netiotest.FakeConn{b, c} {
		p := recv(t, r)
		if !bytes.Equal(p.Payload, msg) || p.Src != addrA || p.Dst != netio.Group4() || p.TTL != 255 || p.IfIndex == 0 {
			t.Errorf("got %+v", p)
		}
	}
	nothing(t, a)  // no loopback
	nothing(t, v6) // other family

	if err := a.Send(msg, addrC); err != nil {
		t.Fatal(err)
	}
	if p := recv(t, c); p.Dst != addrC {
		t.Errorf("unicast got %+v", p)
	}
	nothing(t, b)

	if s := a.Sent(); len(s) != 2 || s[0].Dst != netio.Group4() || s[1].Dst != addrC {
		t.Errorf("Sent() = %+v", s)
	}
	if err := a.Send(msg, netio.Group6()); err == nil {
		t.Error("sending IPv6 from an IPv4 conn succeeded")
	}
}

func TestPairInjectClose(t *testing.T) {
	a, b := netiotest.Pair(addrA, addrB)
	if got := a.Destinations(); !slices.Equal(got, []netip.Addr{netio.Group4()}) {
		t.Errorf("Destinations() = %v", got)
	}
	b.Inject(netio.Packet{Payload: []byte{1}, Src: addrC, Dst: netio.Group4(), TTL: 64})
	if p := recv(t, b); p.TTL != 64 || p.Src != addrC || p.IfIndex == 0 {
		t.Errorf("injected %+v", p)
	}

	errc := make(chan error, 1)
	go func() {
		_, err := b.Recv(context.Background())
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	b.Close()
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Recv after Close: %v", err)
	}
	if err := b.Send([]byte{1}, addrA); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Send after Close: %v", err)
	}
	if err := a.Send([]byte{1}, netio.Group4()); err != nil { // to a closed peer: lost, no error
		t.Error(err)
	}
}

func TestWireUnicastPeersDownAndDrop(t *testing.T) {
	w := netiotest.NewWire()
	a := w.Conn(addrA, addrB)
	b := w.Conn(addrB, addrA)
	c := w.Conn(addrC)
	if got := a.Destinations(); !slices.Equal(got, []netip.Addr{addrB}) {
		t.Errorf("Destinations() = %v", got)
	}
	if err := c.Send([]byte{1}, addrA); err != nil {
		t.Fatal(err)
	}
	nothing(t, a) // C is no peer of A
	if err := b.Send([]byte{2}, addrA); err != nil {
		t.Fatal(err)
	}
	if p := recv(t, a); p.Src != addrB {
		t.Errorf("got %+v", p)
	}

	w.SetDown(true)
	b.Send([]byte{3}, addrA)
	nothing(t, a)
	w.SetDown(false)
	w.SetDrop(func(from *netiotest.FakeConn, p netio.Packet) bool { return p.Payload[0] == 4 })
	b.Send([]byte{4}, addrA)
	b.Send([]byte{5}, addrA)
	if p := recv(t, a); p.Payload[0] != 5 {
		t.Errorf("drop filter: got payload %v, want [5]", p.Payload)
	}
}

func TestFakeVIPs(t *testing.T) {
	f := netiotest.NewFakeVIPs()
	ctx, cancel := context.WithCancel(context.Background())
	events := f.Watch(ctx)
	v := netio.VIP{Prefix: netip.MustParsePrefix("192.0.2.50/24"), Label: "eth0:1"}
	if err := f.Add(v); err != nil {
		t.Fatal(err)
	}
	if ok, _ := f.Present(v.Addr()); !ok {
		t.Error("not present after Add")
	}
	if !f.RemoveBehindBack(v.Addr()) {
		t.Fatal("RemoveBehindBack: not installed")
	}
	if ev := <-events; ev.VIP != v {
		t.Errorf("event %+v", ev)
	}
	boom := errors.New("boom")
	f.SetError(netiotest.OpAdd, boom)
	if err := f.Add(v); !errors.Is(err, boom) {
		t.Errorf("Add with an error set: %v", err)
	}
	if len(f.Installed()) != 0 {
		t.Errorf("a failed Add installed %v", f.Installed())
	}
	f.SetError(netiotest.OpAdd, nil)
	f.Add(v)
	f.Remove(v)
	var ops []netiotest.Op
	for _, c := range f.Calls() {
		ops = append(ops, c.Op)
	}
	want := []netiotest.Op{netiotest.OpAdd, netiotest.OpPresent, netiotest.OpAdd, netiotest.OpAdd, netiotest.OpRemove}
	if !slices.Equal(ops, want) {
		t.Errorf("calls %v, want %v", ops, want)
	}
	cancel()
	if _, ok := <-events; ok {
		t.Error("watch channel still open after cancel")
	}
}

func TestFakeAnnouncer(t *testing.T) {
	a := netiotest.NewFakeAnnouncer()
	vips := []netip.Addr{addrA}
	go netio.Burst(context.Background(), a, vips, netio.BurstOptions{Count: 3})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if !a.WaitRounds(ctx, 3) {
		t.Fatalf("%d rounds", len(a.Rounds()))
	}
	if r := a.Rounds(); !slices.Equal(r[0].VIPs, vips) {
		t.Errorf("round %+v", r[0])
	}
}
