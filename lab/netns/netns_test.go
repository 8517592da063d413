package netns_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/fulcrum-lb/fulcrum/lab/netns"
	"github.com/fulcrum-lb/fulcrum/lab/require"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func rootLinks(t *testing.T) []string {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	slices.Sort(names)
	return names
}

// echoOnce accepts one connection and echoes a line back.
func echoOnce(t *testing.T, ln net.Listener) {
	t.Helper()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		line, _ := bufio.NewReader(c).ReadString('\n')
		io.WriteString(c, "echo "+line)
	}()
}

func roundTrip(t *testing.T, from *netns.Host, to netip.AddrPort) {
	t.Helper()
	c, err := from.Dial("tcp", to.String())
	if err != nil {
		t.Fatalf("%s -> %s: %v", from, to, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "hello from %s\n", from)
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || got != fmt.Sprintf("echo hello from %s\n", from) {
		t.Fatalf("%s -> %s: got %q, %v", from, to, got, err)
	}
	if la := netip.MustParseAddrPort(c.LocalAddr().String()); la.Addr() != from.Addr4() && la.Addr() != from.Addr6() {
		t.Fatalf("connection from %s has local address %s", from, la)
	}
}

func TestLANPingAndTCP(t *testing.T) {
	require.Root(t)
	t.Parallel()
	before := rootLinks(t)
	lan := netns.NewLAN(t, netns.Options{})
	a := lan.AddHost("a", "192.0.2.11/24", "2001:db8::11/64")
	b := lan.AddHost("b", "192.0.2.12/24", "2001:db8::12/64")
	if after := rootLinks(t); !slices.Equal(before, after) {
		t.Fatalf("root namespace links changed: %v -> %v", before, after)
	}
	if a.Iface != "eth0" || len(a.MAC) != 6 || a.Addr4() != netip.MustParseAddr("192.0.2.11") || a.Addr6() != netip.MustParseAddr("2001:db8::11") {
		t.Fatalf("host a: %+v", a)
	}
	if !strings.HasPrefix(a.NSName, fmt.Sprintf("fl-%d-", os.Getpid())) || !strings.HasSuffix(a.NSName, "-a") {
		t.Fatalf("NSName %q", a.NSName)
	}
	ctx := ctxT(t, 10*time.Second)
	for _, pair := range [][2]*netns.Host{{a, b}, {b, a}} {
		from, to := pair[0], pair[1]
		for _, dst := range []netip.Addr{to.Addr4(), to.Addr6()} {
			if err := from.Ping(ctx, dst); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Link-local IPv6 works at once too (DAD is off).
	ll, err := b.ListAddrs("eth0")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ll {
		if p.Addr().IsLinkLocalUnicast() {
			if err := a.Ping(ctx, p.Addr().WithZone("eth0")); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, dst := range []netip.Addr{b.Addr4(), b.Addr6()} {
		ln, err := b.Listen("tcp", netip.AddrPortFrom(dst, 0).String())
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		echoOnce(t, ln)
		roundTrip(t, a, netip.MustParseAddrPort(ln.Addr().String()))
	}
}

func TestPair(t *testing.T) {
	require.Root(t)
	t.Parallel()
	a, b := netns.Pair(t, netns.Options{MTU: 9000},
		netns.HostSpec{Name: "a", Addrs: []string{"198.51.100.1/24", "2001:db8:1::1/64"}},
		netns.HostSpec{Name: "b", Addrs: []string{"198.51.100.2/24", "2001:db8:1::2/64"}})
	ctx := ctxT(t, 10*time.Second)
	if err := a.Ping(ctx, b.Addr4()); err != nil {
		t.Fatal(err)
	}
	if err := b.Ping(ctx, a.Addr6()); err != nil {
		t.Fatal(err)
	}
	ln, err := a.Listen("tcp", "[2001:db8:1::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	echoOnce(t, ln)
	roundTrip(t, b, netip.MustParseAddrPort(ln.Addr().String()))
	err = a.Netlink(func(nl *netlink.Handle) error {
		l, err := nl.LinkByName("eth0")
		if err == nil && l.Attrs().MTU != 9000 {
			err = fmt.Errorf("MTU %d", l.Attrs().MTU)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Links(); len(got) != 1 || got[0].Peer != "eth0" || !slices.Equal(got[0].MAC, a.MAC) {
		t.Fatalf("links of a: %+v", got)
	}
}

func TestProcessSeesOnlyItsInterfaces(t *testing.T) {
	require.Root(t)
	require.Binary(t, "ip")
	t.Parallel()
	lan := netns.NewLAN(t, netns.Options{})
	h := lan.AddHost("solo", "203.0.113.5/24")
	ctx := ctxT(t, 10*time.Second)
	// Output, not CombinedOutput: ip may complain on stderr about namespaces that other tests
	// are creating or removing in /run/netns at the same moment.
	out, err := h.Command(ctx, "ip", "-o", "link", "show").Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		names = append(names, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
	}
	if !slices.Equal(names, []string{"lo", "eth0"}) {
		t.Fatalf("links seen inside: %v\n%s", names, out)
	}
	if !strings.Contains(string(out), h.MAC.String()) {
		t.Fatalf("MAC %s not in\n%s", h.MAC, out)
	}
	out, err = h.Command(ctx, "ls", "/sys/class/net").CombinedOutput()
	if err != nil || strings.Join(strings.Fields(string(out)), " ") != "eth0 lo" {
		t.Fatalf("/sys/class/net inside: %q, %v", out, err)
	}
	out, err = h.Command(ctx, "ip", "-o", "-4", "addr", "show", "dev", "eth0").Output()
	if err != nil || !strings.Contains(string(out), "203.0.113.5/24") {
		t.Fatalf("addresses inside: %q, %v", out, err)
	}
	// `ip netns list` knows the host by NSName.
	out, err = exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil || !strings.Contains(string(out), h.NSName) {
		t.Fatalf("ip netns list: %q, %v", out, err)
	}
}

func TestStartAndWaitOutput(t *testing.T) {
	require.Root(t)
	t.Parallel()
	h := netns.NewHost(t, "proc", netns.Options{})
	p := h.Start(t, "sh", "-c", `echo starting; ip -o link show | wc -l; echo ready; exec sleep 600`)
	p.WaitOutput(t, "ready", 10*time.Second)
	if !strings.Contains(p.Output(), "1\n") { // only lo
		t.Fatalf("output: %q", p.Output())
	}
	if err := p.Stop(); err == nil {
		t.Fatal("sleep stopped by SIGTERM exited 0")
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	if syscall.Kill(p.Pid(), 0) == nil {
		t.Fatal("process still exists after Stop")
	}
}

func TestMulticastVRRP(t *testing.T) {
	require.Root(t)
	t.Parallel()
	lan := netns.NewLAN(t, netns.Options{})
	lb1 := lan.AddHost("lb1", "192.0.2.11/24", "2001:db8::11/64")
	lb2 := lan.AddHost("lb2", "192.0.2.12/24", "2001:db8::12/64")
	lb3 := lan.AddHost("lb3", "192.0.2.13/24", "2001:db8::13/64")

	t.Run("ipv4", func(t *testing.T) {
		group := net.IPv4(224, 0, 0, 18)
		var receivers []*ipv4.PacketConn
		for _, h := range []*netns.Host{lb2, lb3} {
			c, err := h.ListenPacket("ip4:112", "0.0.0.0")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			pc := ipv4.NewPacketConn(c)
			ifi, err := ifaceIn(h, "eth0")
			if err != nil {
				t.Fatal(err)
			}
			if err := pc.JoinGroup(ifi, &net.IPAddr{IP: group}); err != nil {
				t.Fatal(err)
			}
			if err := pc.SetControlMessage(ipv4.FlagTTL|ipv4.FlagDst|ipv4.FlagSrc, true); err != nil {
				t.Fatal(err)
			}
			receivers = append(receivers, pc)
		}
		c, err := lb1.ListenPacket("ip4:112", "192.0.2.11")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		pc := ipv4.NewPacketConn(c)
		ifi, err := ifaceIn(lb1, "eth0")
		if err != nil {
			t.Fatal(err)
		}
		if err := pc.SetMulticastInterface(ifi); err != nil {
			t.Fatal(err)
		}
		if err := pc.SetMulticastTTL(255); err != nil {
			t.Fatal(err)
		}
		// A VRRPv3 advertisement: version 3, type 1, VRID 51, priority 100, 1 address.
		advert := []byte{0x31, 51, 100, 1, 0x00, 0x64, 0, 0, 192, 0, 2, 100}
		for _, rc := range receivers {
			rc.SetReadDeadline(time.Now().Add(5 * time.Second))
		}
		// Send a few: the first may race the receivers' group joins on a slow machine.
		go func() {
			for range 5 {
				pc.WriteTo(advert, nil, &net.IPAddr{IP: group})
				time.Sleep(50 * time.Millisecond)
			}
		}()
		for i, rc := range receivers {
			buf := make([]byte, 1500)
			n, cm, src, err := rc.ReadFrom(buf)
			if err != nil {
				t.Fatalf("receiver %d: %v", i, err)
			}
			if !slices.Equal(buf[:n], advert) || src.String() != "192.0.2.11" || cm.TTL != 255 || !cm.Dst.Equal(group) {
				t.Fatalf("receiver %d got % x from %v, %+v", i, buf[:n], src, cm)
			}
		}
	})

	t.Run("ipv6", func(t *testing.T) {
		group := net.ParseIP("ff02::12")
		rc, err := lb2.ListenPacket("ip6:112", "::")
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		rpc := ipv6.NewPacketConn(rc)
		ifi, err := ifaceIn(lb2, "eth0")
		if err != nil {
			t.Fatal(err)
		}
		if err := rpc.JoinGroup(ifi, &net.IPAddr{IP: group}); err != nil {
			t.Fatal(err)
		}
		rpc.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst, true)
		c, err := lb1.ListenPacket("ip6:112", "::")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		spc := ipv6.NewPacketConn(c)
		sifi, err := ifaceIn(lb1, "eth0")
		if err != nil {
			t.Fatal(err)
		}
		spc.SetMulticastInterface(sifi)
		spc.SetMulticastHopLimit(255)
		advert := []byte{0x31, 51, 100, 0, 0x00, 0x64, 0, 0}
		rc.SetReadDeadline(time.Now().Add(5 * time.Second))
		go func() {
			for range 5 {
				// A numeric zone: the net package would resolve a name in the wrong namespace.
				spc.WriteTo(advert, nil, &net.IPAddr{IP: group, Zone: strconv.Itoa(sifi.Index)})
				time.Sleep(50 * time.Millisecond)
			}
		}()
		buf := make([]byte, 1500)
		n, cm, src, err := rpc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		srcIP := src.(*net.IPAddr).IP
		if !slices.Equal(buf[:n], advert) || !srcIP.IsLinkLocalUnicast() || cm.HopLimit != 255 || !cm.Dst.Equal(group) {
			t.Fatalf("got % x from %v, %+v", buf[:n], src, cm)
		}
	})
}

// ifaceIn looks an interface up inside the host (its index is the namespace's).
func ifaceIn(h *netns.Host, name string) (*net.Interface, error) {
	var ifi *net.Interface
	err := h.Do(func() (err error) {
		ifi, err = net.InterfaceByName(name)
		return err
	})
	return ifi, err
}

func TestTwoLANsRouted(t *testing.T) {
	require.Root(t)
	t.Parallel()
	front := netns.NewLAN(t, netns.Options{})
	back := netns.NewLAN(t, netns.Options{})
	lb := front.AddHost("lb", "192.0.2.1/24")
	link := back.Attach(lb, "198.51.100.1/24")
	if link.Name != "eth1" || len(lb.Links()) != 2 {
		t.Fatalf("attach: %+v, links %+v", link, lb.Links())
	}
	client := front.AddHost("client", "192.0.2.100/24")
	server := back.AddHost("server", "198.51.100.10/24")
	if err := lb.SetSysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	if err := client.AddRoute("198.51.100.0/24", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	if err := server.AddRoute("default", "198.51.100.1"); err != nil {
		t.Fatal(err)
	}
	addr := server.StartHTTP(t, "198.51.100.10:8080", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.RemoteAddr)
	}))
	resp, err := client.HTTPClient().Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(body), "hello 192.0.2.100:") {
		t.Fatalf("body %q", body)
	}
	// Refused: names, and addresses outside the documentation ranges.
	if _, err := client.Dial("tcp", "localhost:80"); err == nil || !strings.Contains(err.Error(), "IP literal") {
		t.Fatalf("dial by name: %v", err)
	}
	if err := client.AddRoute("10.0.0.0/8", "192.0.2.1"); err == nil {
		t.Fatal("route to 10.0.0.0/8 accepted")
	}
}

func TestUnplug(t *testing.T) {
	require.Root(t)
	t.Parallel()
	lan := netns.NewLAN(t, netns.Options{})
	a := lan.AddHost("a", "192.0.2.1/24")
	b := lan.AddHost("b", "192.0.2.2/24")
	if err := lan.Unplug(b); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 600*time.Millisecond)
	err := a.Ping(ctx, b.Addr4())
	cancel()
	if err == nil {
		t.Fatal("ping got through an unplugged cable")
	}
	if err := lan.Plug(b); err != nil {
		t.Fatal(err)
	}
	if err := a.Ping(ctxT(t, 10*time.Second), b.Addr4()); err != nil {
		t.Fatal(err)
	}
}

func TestSysctlPerNamespace(t *testing.T) {
	require.Root(t)
	t.Parallel()
	a := netns.NewHost(t, "a", netns.Options{})
	b := netns.NewHost(t, "b", netns.Options{})
	rootBefore, _ := os.ReadFile("/proc/sys/net/ipv4/conf/all/arp_announce")
	if err := a.SetSysctl("net.ipv4.conf.all.arp_announce", "2"); err != nil {
		t.Fatal(err)
	}
	if v, err := a.Sysctl("net.ipv4.conf.all.arp_announce"); err != nil || v != "2" {
		t.Fatalf("a: %q %v", v, err)
	}
	if v, err := b.Sysctl("net/ipv4/conf/all/arp_announce"); err != nil || v != "0" {
		t.Fatalf("b: %q %v", v, err)
	}
	if v, err := a.Sysctl("net.ipv6.conf.default.accept_dad"); err != nil || v != "0" {
		t.Fatalf("accept_dad: %q %v", v, err)
	}
	if rootAfter, _ := os.ReadFile("/proc/sys/net/ipv4/conf/all/arp_announce"); string(rootAfter) != string(rootBefore) {
		t.Fatalf("root namespace changed: %q -> %q", rootBefore, rootAfter)
	}
}

func TestAddrs(t *testing.T) {
	for _, bad := range []string{"10.0.0.1/24", "192.0.2.1/16", "2001:db9::1/64", "2001:db8::1/16", "8.8.8.8", "nonsense"} {
		if _, err := netns.ParseAddrs(bad); err == nil {
			t.Errorf("ParseAddrs(%q) accepted", bad)
		}
	}
	ps, err := netns.ParseAddrs("192.0.2.5", "2001:db8::5/64", "203.0.113.9/24")
	if err != nil || ps[0].String() != "192.0.2.5/32" || ps[1].String() != "2001:db8::5/64" {
		t.Fatalf("%v %v", ps, err)
	}
	require.Root(t)
	t.Parallel()
	h := netns.NewLAN(t, netns.Options{}).AddHost("vip", "192.0.2.50/24")
	vip := netip.MustParseAddr("192.0.2.100")
	if err := h.AddAddr("eth0", "192.0.2.100/32"); err != nil {
		t.Fatal(err)
	}
	if ok, err := h.HasAddr(vip); !ok || err != nil {
		t.Fatalf("HasAddr after AddAddr: %v %v", ok, err)
	}
	if err := h.DelAddr("eth0", "192.0.2.100/32"); err != nil {
		t.Fatal(err)
	}
	if ok, err := h.HasAddr(vip); ok || err != nil {
		t.Fatalf("HasAddr after DelAddr: %v %v", ok, err)
	}
	if err := h.AddAddr("eth0", "172.16.0.1/32"); err == nil {
		t.Fatal("AddAddr of 172.16.0.1 accepted")
	}
}

// TestDoThreads checks that Do runs in the right namespace under heavy concurrency and that no
// thread is left in a foreign namespace afterwards.
func TestDoThreads(t *testing.T) {
	require.Root(t)
	rootIno := nsIno(t, "/proc/thread-self/ns/net")
	hosts := []*netns.Host{netns.NewHost(t, "x", netns.Options{}), netns.NewHost(t, "y", netns.Options{})}
	want := map[*netns.Host]uint64{}
	for _, h := range hosts {
		want[h] = nsIno(t, h.Path())
	}
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for i := range 400 {
		h := hosts[i%2]
		wg.Go(func() {
			errs <- h.Do(func() error {
				if got := nsIno(t, "/proc/thread-self/ns/net"); got != want[h] {
					return fmt.Errorf("Do(%s) ran in netns %d, want %d", h, got, want[h])
				}
				runtime.Gosched()
				return nil
			})
		})
	}
	// Meanwhile, ordinary goroutines must always be in the root namespace.
	for range 50 {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if got := nsIno(t, "/proc/thread-self/ns/net"); got != rootIno {
				errs <- fmt.Errorf("ordinary goroutine's thread in netns %d", got)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Every thread of the process is back in the root namespace.
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		link, err := os.Readlink("/proc/self/task/" + task.Name() + "/ns/net")
		if err == nil && link != fmt.Sprintf("net:[%d]", rootIno) {
			t.Errorf("thread %s is in %s", task.Name(), link)
		}
	}
}

func nsIno(t *testing.T, path string) uint64 {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Error(err)
	}
	return st.Ino
}

func TestDoPanicAndGoexit(t *testing.T) {
	require.Root(t)
	h := netns.NewHost(t, "p", netns.Options{})
	func() {
		defer func() {
			if v := recover(); v == nil || !strings.Contains(fmt.Sprint(v), "boom inside") {
				t.Fatalf("recovered %v", v)
			}
		}()
		h.Do(func() error { panic("boom inside") })
	}()
	reached := false
	t.Run("skip-inside-Do", func(t *testing.T) {
		h.Do(func() error {
			t.Skip("skipped from inside Do")
			return nil
		})
		reached = true
	})
	if reached {
		t.Fatal("t.Skip inside Do did not end the subtest")
	}
	if err := h.Do(func() error { return io.EOF }); err != io.EOF {
		t.Fatalf("Do returned %v", err)
	}
}

// Helper-process tests: the test binary re-runs itself to build a topology and then die in some
// way; the parent checks what is left.

const helperEnv = "FULCRUM_NETNS_HELPER"

func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper process only")
	}
	lan := netns.NewLAN(t, netns.Options{})
	h1 := lan.AddHost("h1", "192.0.2.1/24")
	h2 := lan.AddHost("h2", "192.0.2.2/24")
	p := h1.Start(t, "sleep", "600")
	// A stray process that nobody stops: the host's cleanup must kill it.
	stray := h2.Command(context.Background(), "sleep", "601")
	if err := stray.Start(); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("NS %s %s %s\nPID %d %d\n", lan.Switch().NSName, h1.NSName, h2.NSName, p.Pid(), stray.Process.Pid)
	switch mode {
	case "fail":
		t.Fatal("failing on purpose")
	case "panic":
		panic("panicking on purpose")
	case "hang":
		time.Sleep(time.Hour) // the parent kills us
	}
}

func runHelper(t *testing.T, mode string, kill bool) (names []string, pids []int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if f, ok := strings.CutPrefix(line, "NS "); ok {
			names = strings.Fields(f)
		}
		if f, ok := strings.CutPrefix(line, "PID "); ok {
			for _, s := range strings.Fields(f) {
				n, _ := strconv.Atoi(s)
				pids = append(pids, n)
			}
			if kill {
				cmd.Process.Kill()
			}
		}
	}
	err := cmd.Wait()
	if err == nil || len(names) != 3 || len(pids) != 2 {
		t.Fatalf("helper %s: err %v, names %v, pids %v, output:\n%s", mode, err, names, pids, out.String())
	}
	return names, pids
}

func assertGone(t *testing.T, names []string, pids []int) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.Contains(string(out), n) {
			t.Errorf("%s still in `ip netns list`", n)
		}
		if _, err := os.Stat(filepath.Join(netns.RunDir, n)); err == nil {
			t.Errorf("%s still in %s", n, netns.RunDir)
		}
	}
	for _, pid := range pids {
		deadline := time.Now().Add(5 * time.Second)
		for running(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if running(pid) {
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			t.Errorf("process %d (%q) still running", pid, cmdline)
		}
	}
}

// running reports whether pid exists and is not a zombie (a killed orphan may wait a while for
// whatever reaps orphans here).
func running(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

func TestCleanupOnFailureAndPanic(t *testing.T) {
	require.Root(t)
	require.Binary(t, "ip")
	t.Parallel()
	for _, mode := range []string{"fail", "panic"} {
		t.Run(mode, func(t *testing.T) {
			names, pids := runHelper(t, mode, false)
			assertGone(t, names, pids)
		})
	}
}

// TestSweep is not parallel: the other tests of this package call Sweep too (NewLAN does).
// Test binaries of other packages may still sweep first; either way the namespaces must go.
func TestSweep(t *testing.T) {
	require.Root(t)
	require.Binary(t, "ip")
	// A killed test binary leaves its namespaces behind (its Start'ed processes die with it, but
	// the stray one, started without a parent-death signal, lives on inside h2)...
	names, pids := runHelper(t, "hang", true)
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(netns.RunDir, n)); err != nil {
			t.Fatalf("expected %s to be left behind: %v", n, err)
		}
	}
	// ...and Sweep removes them, killing what still runs inside.
	removed, err := netns.Sweep()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !slices.Contains(removed, n) {
			t.Logf("Sweep did not remove %s: another test process swept first? (removed %v)", n, removed)
		}
	}
	assertGone(t, names, pids)
}

func TestKeepDAD(t *testing.T) {
	require.Root(t)
	t.Parallel()
	a, b := netns.Pair(t, netns.Options{KeepDAD: true},
		netns.HostSpec{Name: "a", Addrs: []string{"2001:db8:2::1/64"}},
		netns.HostSpec{Name: "b", Addrs: []string{"2001:db8:2::2/64"}})
	if v, err := a.Sysctl("net.ipv6.conf.eth0.accept_dad"); err != nil || v == "0" {
		t.Fatalf("accept_dad on eth0 with KeepDAD: %q %v", v, err)
	}
	// Pair returns once DAD has finished, so the address answers at once.
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if err := b.Ping(ctx, a.Addr6()); err != nil {
		t.Fatal(err)
	}
}
