package ipvs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	mobyipvs "github.com/moby/ipvs"
)

func TestProbeBranches(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "ip_vs")
	err := probe(missing, func() error { return nil })
	if !errors.Is(err, ErrUnavailable) || !strings.HasPrefix(err.Error(), "IPVS not available: the kernel has no ip_vs (modprobe ip_vs?)") {
		t.Errorf("no /proc file: %v", err)
	}
	present := dir // exists
	err = probe(present, func() error { return syscall.ENOENT })
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, syscall.ENOENT) || !strings.Contains(err.Error(), `generic netlink family "IPVS"`) {
		t.Errorf("no family: %v", err)
	}
	if err := probe(present, func() error { return nil }); err != nil {
		t.Errorf("both present: %v", err)
	}
}

// TestKernelFlagValues pins the flag bits to include/uapi/linux/ip_vs.h (and ip_vs_mh.c).
func TestKernelFlagValues(t *testing.T) {
	for _, c := range []struct {
		got, want uint32
		name      string
	}{
		{KernelFlagPersistent, 0x1, "IP_VS_SVC_F_PERSISTENT"},
		{KernelFlagHashed, 0x2, "IP_VS_SVC_F_HASHED"},
		{KernelFlagOnePacket, 0x4, "IP_VS_SVC_F_ONEPACKET"},
		{KernelFlagSHFallback, 0x8, "IP_VS_SVC_F_SCHED_SH_FALLBACK"},
		{KernelFlagSHPort, 0x10, "IP_VS_SVC_F_SCHED_SH_PORT"},
		{KernelFlagMHFallback, 0x8, "IP_VS_SVC_F_SCHED_MH_FALLBACK"},
		{KernelFlagMHPort, 0x10, "IP_VS_SVC_F_SCHED_MH_PORT"},
		{KernelFwdRoute, mobyipvs.ConnectionFlagDirectRoute, "IP_VS_CONN_F_DROUTE"},
		{KernelFwdTunnel, mobyipvs.ConnectionFlagTunnel, "IP_VS_CONN_F_TUNNEL"},
		{KernelFwdMasq, mobyipvs.ConnectionFlagMasq, "IP_VS_CONN_F_MASQ"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
	if got := kernelFlags(MHFallback|MHPort, true); got != 0x19 {
		t.Errorf("mh-fallback,mh-port,persistent = %#x, want 0x19", got)
	}
	if got := kernelFlags(SHPort, false); got != 0x10 {
		t.Errorf("sh-port = %#x", got)
	}
}

// TestMobyNetmaskByteOrder checks the IPv4 netmask reaches the netlink attribute in network
// byte order (IPVS_SVC_ATTR_NETMASK is a __be32) and the IPv6 one as a plain prefix length.
func TestMobyNetmaskByteOrder(t *testing.T) {
	ks := kernelService(&Service{Key: AddrKey(TCP, netip.MustParseAddrPort("192.0.2.1:80")), Scheduler: "rr",
		Persistence: Persistence{Timeout: time.Minute, Prefix: 24}})
	m := toMobyService(ks)
	var wire [4]byte
	binary.NativeEndian.PutUint32(wire[:], m.Netmask) // what nl.Uint32Attr puts on the wire
	if wire != [4]byte{255, 255, 255, 0} {
		t.Errorf("IPv4 netmask on the wire %v", wire)
	}
	back, err := fromMobyService(m)
	if err != nil || back.Netmask != 0xffffff00 || back.Key != ks.Key || back.Timeout != 60 || back.Flags != KernelFlagPersistent {
		t.Errorf("round trip %+v %v", back, err)
	}
	ks6 := kernelService(&Service{Key: MarkKey(9, IPv6), Scheduler: "rr"})
	if m6 := toMobyService(ks6); m6.Netmask != 128 || m6.FWMark != 9 || m6.AddressFamily != syscall.AF_INET6 || m6.Address != nil {
		t.Errorf("IPv6 fwmark service %+v", m6)
	}
	d := toMobyDestination(KernelDestination{Addr: netip.MustParseAddrPort("198.51.100.1:80"), Weight: 7, FwdMethod: KernelFwdTunnel})
	if len(d.Address) != 4 || d.ConnectionFlags != KernelFwdTunnel || d.Weight != 7 {
		t.Errorf("destination %+v", d)
	}
}

func TestMapErr(t *testing.T) {
	for _, c := range []struct {
		op   OpKind
		in   error
		want error
	}{
		{OpNewService, syscall.EEXIST, ErrExists},
		{OpNewDestination, syscall.EEXIST, ErrExists},
		{OpDelService, syscall.ESRCH, ErrNoService},
		{OpGetService, syscall.ESRCH, ErrNoService},
		{OpNewService, syscall.ENOENT, ErrSchedulerUnavailable},
		{OpUpdateService, syscall.ENOENT, ErrSchedulerUnavailable},
		{OpDelDestination, syscall.ENOENT, ErrNoDestination},
		{OpUpdateDestination, syscall.ENOENT, ErrNoDestination},
	} {
		err := mapErr(c.op, fmt.Errorf("netlink: %w", c.in))
		if !errors.Is(err, c.want) || !errors.Is(err, c.in) {
			t.Errorf("%s %v: %v", c.op, c.in, err)
		}
	}
	if err := mapErr(OpNewService, nil); err != nil {
		t.Error(err)
	}
}

func TestServiceKeyText(t *testing.T) {
	for _, s := range []string{"tcp/192.0.2.1:80", "udp/[2001:db8::1]:53", "sctp/192.0.2.1:5000", "fwmark/ipv4/10", "fwmark/ipv6/4294967295"} {
		k, err := ParseServiceKey(s)
		if err != nil {
			t.Errorf("%s: %v", s, err)
			continue
		}
		if k.String() != s {
			t.Errorf("%s round-trips to %s", s, k)
		}
		var back ServiceKey
		if err := back.UnmarshalText([]byte(s)); err != nil || back != k {
			t.Errorf("%s: UnmarshalText %v %v", s, back, err)
		}
	}
	for _, s := range []string{"", "tcp", "icmp/192.0.2.1:80", "tcp/192.0.2.1", "fwmark/ipv4/0", "fwmark/ipx/1", "fwmark/ipv4"} {
		if _, err := ParseServiceKey(s); err == nil {
			t.Errorf("%q parsed", s)
		}
	}
	if k := AddrKey(UDP, netip.MustParseAddrPort("[2001:db8::1]:53")); k.Family != IPv6 {
		t.Errorf("family %v", k.Family)
	}
}

func TestParsers(t *testing.T) {
	if f, err := ParseSchedFlag("mh-port"); err != nil || f != MHPort {
		t.Error(f, err)
	}
	if _, err := ParseSchedFlag("mh-ports"); err == nil {
		t.Error("bad flag parsed")
	}
	if got := (SHFallback | SHPort).String(); got != "sh-fallback,sh-port" {
		t.Error(got)
	}
	for in, want := range map[string]Forwarding{"masq": Masq, "NAT": Masq, "dr": Route, "route": Route, "tun": Tunnel} {
		if f, err := ParseForwarding(in); err != nil || f != want {
			t.Errorf("%s: %v %v", in, f, err)
		}
	}
	if len(Schedulers()) != 14 || !Scheduler("mh").Valid() || Scheduler("fast").Valid() {
		t.Error("schedulers")
	}
}
