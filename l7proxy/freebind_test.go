package l7proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fulcrum-lb/fulcrum/lab/require"
)

func syscallEADDRINUSE() error { return syscall.EADDRINUSE }

// TestFreebind binds a documentation address that no interface has, inside a network namespace
// of the test's own (a locked thread that is thrown away afterwards): without IP_FREEBIND the
// kernel refuses it. No packet is sent.
func TestFreebind(t *testing.T) {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- errSkip{err}
			return
		}
		// The control: a plain bind of an absent address fails. (IPv6: in a namespace whose
		// loopback is down, the kernel lets any IPv4 address bind.)
		if ln, err := net.Listen("tcp6", "[2001:db8::10]:8080"); err == nil {
			ln.Close()
			errc <- errors.New("plain listen on an absent address succeeded: not in a fresh namespace?")
			return
		}
		for _, a := range []string{"192.0.2.10:8080", "[2001:db8::10]:8080"} {
			ln, err := listenFreebind(context.Background(), netip.MustParseAddrPort(a))
			if err != nil {
				errc <- err
				return
			}
			ln.Close()
		}
		errc <- nil
	}()
	err := <-errc
	var skip errSkip
	if errors.As(err, &skip) {
		require.Missing(t, "a network namespace ("+skip.err.Error()+")", "run as root")
	}
	if err != nil {
		t.Fatalf("freebind listen: %v", err)
	}
}

type errSkip struct{ err error }

func (e errSkip) Error() string { return e.err.Error() }
