package l7proxy

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The proxy's hot path makes raw system calls (no entersyscall/exitsyscall) for the calls that
// never block: read, write and close on nonblocking sockets, and accept4. An ordinary system
// call lets the runtime's sysmon thread take the P from a goroutine whose call lasts past one
// sysmon tick (20 µs when busy) and start another thread to run it; on a loopback proxy a
// write carries the receiver's TCP processing too and now and then lasts that long. With the
// proxy on one core that meant about 0.35 context switches per one-request connection (HAProxy:
// 0.05), each of them dear. A raw call keeps the P for a few microseconds instead, as an event
// loop would, and sysmon, seeing no system calls, sleeps. Waiting is never done here: a call
// that would wait returns EAGAIN and the caller waits in Go's netpoller.

var zeroByte byte

func bufPtr(b []byte) uintptr {
	if len(b) == 0 {
		return uintptr(unsafe.Pointer(&zeroByte))
	}
	return uintptr(unsafe.Pointer(&b[0]))
}

func rawRead(fd int, b []byte) (int, error)  { return rawIO(syscall.SYS_READ, fd, b) }
func rawWrite(fd int, b []byte) (int, error) { return rawIO(syscall.SYS_WRITE, fd, b) }

// rawIO is read(2) or write(2) of b, again after EINTR.
func rawIO(trap uintptr, fd int, b []byte) (int, error) {
	for {
		n, _, e := syscall.RawSyscall(trap, uintptr(fd), bufPtr(b), uintptr(len(b)))
		switch e {
		case 0:
			return int(n), nil
		case syscall.EINTR:
			continue
		}
		return 0, e
	}
}

// rawClose closes a socket without SO_LINGER (close(2) does not wait then).
func rawClose(fd int) error {
	if _, _, e := syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(fd), 0, 0); e != 0 {
		return e
	}
	return nil
}

// rawAccept4 accepts a connection, nonblocking and close-on-exec, with the peer's address in rsa.
func rawAccept4(fd uintptr, rsa *syscall.RawSockaddrAny) (int, syscall.Errno) {
	n := uint32(syscall.SizeofSockaddrAny)
	r, _, e := syscall.RawSyscall6(syscall.SYS_ACCEPT4, fd, uintptr(unsafe.Pointer(rsa)), uintptr(unsafe.Pointer(&n)),
		unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	return int(r), e
}
