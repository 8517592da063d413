package ipvs_test

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/ipvs"
	"github.com/fulcrum-lb/fulcrum/ipvs/ipvstest"
)

// kernelContract checks the answers of an ipvs.Kernel the Reconciler relies on. It runs
// against ipvstest.Fake on the host (TestFakeContract) and against real IPVS in the kernel lab
// (TestKernelIPVS/Contract), so the fake is held to what the kernel does. It uses services in
// 192.0.2.200-209 and removes them.
func kernelContract(t *testing.T, k ipvs.Kernel) {
	v4 := tcpKey("192.0.2.200:80")
	v6 := ipvs.AddrKey(ipvs.UDP, ap("[2001:db8::200]:53"))
	t.Cleanup(func() {
		_ = k.DelService(v4)
		_ = k.DelService(v6)
	})
	svc := ipvs.KernelService{Key: v4, Scheduler: "wrr", Netmask: 0xffffffff}

	if _, err := k.GetService(v4); !errors.Is(err, ipvs.ErrNoService) || !errors.Is(err, syscall.ESRCH) {
		t.Errorf("GetService of a missing service: %v, want ErrNoService (ESRCH)", err)
	}
	if ds, err := k.GetDestinations(v4); err != nil || len(ds) != 0 {
		t.Errorf("GetDestinations of a missing service: %v %v, want an empty answer", ds, err)
	}
	if err := k.DelService(v4); !errors.Is(err, ipvs.ErrNoService) {
		t.Errorf("DelService of a missing service: %v", err)
	}
	if err := k.NewDestination(v4, ipvs.KernelDestination{Addr: ap("198.51.100.1:80"), Weight: 1}); !errors.Is(err, ipvs.ErrNoService) {
		t.Errorf("NewDestination on a missing service: %v", err)
	}
	if err := k.NewService(svc); err != nil {
		t.Fatalf("NewService: %v", err)
	}
	if err := k.NewService(svc); !errors.Is(err, ipvs.ErrExists) || !errors.Is(err, syscall.EEXIST) {
		t.Errorf("NewService twice: %v, want ErrExists (EEXIST)", err)
	}
	got, err := k.GetService(v4)
	if err != nil || got.Key != v4 || got.Scheduler != "wrr" || got.Flags != ipvs.KernelFlagHashed || got.Netmask != 0xffffffff {
		t.Errorf("GetService: %+v %v (the kernel adds the hashed flag)", got, err)
	}
	upd := svc
	upd.Scheduler, upd.Flags, upd.Timeout, upd.Netmask = "sh", ipvs.KernelFlagPersistent|ipvs.KernelFlagSHPort, 120, 0xffffff00
	if err := k.UpdateService(upd); err != nil {
		t.Errorf("UpdateService: %v", err)
	}
	got, _ = k.GetService(v4)
	if got.Scheduler != "sh" || got.Flags != upd.Flags|ipvs.KernelFlagHashed || got.Timeout != 120 || got.Netmask != 0xffffff00 {
		t.Errorf("after UpdateService: %+v", got)
	}
	bad := svc
	bad.Scheduler = "nosuchsched"
	if err := k.UpdateService(bad); !errors.Is(err, ipvs.ErrSchedulerUnavailable) {
		t.Errorf("UpdateService to an unknown scheduler: %v", err)
	}

	d := ipvs.KernelDestination{Addr: ap("198.51.100.1:8080"), Weight: 5, FwdMethod: ipvs.KernelFwdMasq, UpperThreshold: 10, LowerThreshold: 5}
	if err := k.NewDestination(v4, d); err != nil {
		t.Fatalf("NewDestination: %v", err)
	}
	if err := k.NewDestination(v4, d); !errors.Is(err, ipvs.ErrExists) {
		t.Errorf("NewDestination twice: %v", err)
	}
	if err := k.NewDestination(v4, ipvs.KernelDestination{Addr: ap("198.51.100.2:80"), Weight: 1, UpperThreshold: 1, LowerThreshold: 2}); !errors.Is(err, syscall.ERANGE) {
		t.Errorf("NewDestination with lower > upper threshold: %v, want ERANGE", err)
	}
	d.Weight, d.FwdMethod = 65535, ipvs.KernelFwdRoute
	if err := k.UpdateDestination(v4, d); err != nil {
		t.Errorf("UpdateDestination: %v", err)
	}
	ds, err := k.GetDestinations(v4)
	if err != nil || len(ds) != 1 || ds[0].Addr != d.Addr || ds[0].Weight != 65535 || ds[0].FwdMethod != ipvs.KernelFwdRoute ||
		ds[0].UpperThreshold != 10 || ds[0].LowerThreshold != 5 {
		t.Errorf("GetDestinations: %+v %v", ds, err)
	}
	missing := ipvs.KernelDestination{Addr: ap("198.51.100.3:80"), Weight: 1}
	if err := k.UpdateDestination(v4, missing); !errors.Is(err, ipvs.ErrNoDestination) {
		t.Errorf("UpdateDestination of a missing one: %v", err)
	}
	if err := k.DelDestination(v4, missing.Addr); !errors.Is(err, ipvs.ErrNoDestination) {
		t.Errorf("DelDestination of a missing one: %v", err)
	}
	if err := k.DelDestination(v4, d.Addr); err != nil {
		t.Errorf("DelDestination: %v", err)
	}

	// IPv6: the netmask is a prefix length, and 0 is refused.
	s6 := ipvs.KernelService{Key: v6, Scheduler: "rr"}
	if err := k.NewService(s6); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("IPv6 service with netmask 0: %v, want EINVAL", err)
	}
	s6.Netmask = 128
	if err := k.NewService(s6); err != nil {
		t.Errorf("IPv6 NewService: %v", err)
	}
	if err := k.NewDestination(v6, ipvs.KernelDestination{Addr: ap("[2001:db8:100::1]:53"), Weight: 2, FwdMethod: ipvs.KernelFwdTunnel}); err != nil {
		t.Errorf("IPv6 NewDestination: %v", err)
	}
	found := 0
	svcs, err := k.GetServices()
	for _, s := range svcs {
		if s.Key == v4 || s.Key == v6 {
			found++
		}
	}
	if err != nil || found != 2 {
		t.Errorf("GetServices: %d of 2 found, %v", found, err)
	}
	if err := k.DelService(v4); err != nil {
		t.Errorf("DelService: %v", err)
	}
	if err := k.DelService(v6); err != nil {
		t.Errorf("DelService v6: %v", err)
	}

	// Global timeouts: zero leaves a value unchanged.
	before, err := k.GetConfig()
	if err != nil || before.TCP == 0 {
		t.Fatalf("GetConfig: %+v %v", before, err)
	}
	if err := k.SetConfig(ipvs.Timeouts{UDP: 77 * time.Second}); err != nil {
		t.Fatalf("SetConfig: %v", err)
	}
	after, _ := k.GetConfig()
	if after != (ipvs.Timeouts{TCP: before.TCP, TCPFin: before.TCPFin, UDP: 77 * time.Second}) {
		t.Errorf("SetConfig(udp only): %+v, before %+v", after, before)
	}
	_ = k.SetConfig(before)
}

func TestFakeContract(t *testing.T) {
	f := ipvstest.NewFake()
	kernelContract(t, f)
	if f.Len() != 0 {
		t.Errorf("%d services left", f.Len())
	}
}
