package testenv

import (
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"
)

// BlackHole is a TCP address, 127.0.0.1:PORT, where a connect is never
// answered: a listener that accepts nothing and whose queue is full, so
// the kernel drops every further SYN. It is what a client sees of a server
// whose host is down or behind a firewall that drops packets: connecting
// blocks until the client's own timeout.
func BlackHole(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	// Connects complete into the queue until it is full; the first that
	// does not says it is.
	for range 16 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return addr
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatalf("%s: the listener's queue never filled", addr)
	return ""
}
