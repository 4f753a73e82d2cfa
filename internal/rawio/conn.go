package rawio

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// Conn is a network connection (a Unix or TCP socket) read and written
// with raw system calls, as a Pipe is: the daemon's Redis connections.
// Their scheduled system calls, one round trip every few dozen jobs, each
// woke the runtime's monitor thread when the daemon had been idle (a
// quarter of the daemon's thread switches per no-op job).
type Conn struct {
	net.Conn // addresses, deadlines, Close
	rc       syscall.RawConn
}

// NewConn wraps c, a connection the net package made; any other, such as
// a TLS connection, is returned as it is.
func NewConn(c net.Conn) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	return &Conn{Conn: c, rc: rc}
}

// Read reads what has come, up to len(b), waiting (until the read
// deadline) until something has; io.EOF once the peer has closed.
func (c *Conn) Read(b []byte) (int, error) {
	n, err := read(c.rc, b, true)
	return n, c.opError("read", err)
}

// Write writes all of b, waiting (until the write deadline) while the
// socket's buffer is full.
func (c *Conn) Write(b []byte) (int, error) {
	n, err := write(c.rc, b)
	return n, c.opError("write", err)
}

func (c *Conn) opError(op string, err error) error {
	if errno, ok := err.(syscall.Errno); ok {
		return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
	}
	return err
}

// SyscallConn is for go-redis's health check of a pooled connection
// before it is used again, the one use it has: its callback peeks at the
// socket with a scheduled system call, so the RawConn returned here does
// not call it, but peeks itself, raw, and answers as the check would —
// nil for a healthy connection (nothing to read), an error for one the
// server has closed or that holds bytes nobody asked for.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return healthCheck{c.rc}, nil }

type healthCheck struct{ syscall.RawConn }

// errUnexpected: a pooled connection holds bytes no command asked for.
var errUnexpected = errors.New("unexpected bytes on an idle connection")

func (h healthCheck) Read(func(fd uintptr) bool) error {
	var peeked error
	if err := h.RawConn.Control(func(fd uintptr) {
		var b [1]byte
		switch n, errno := peek(fd, b[:]); {
		case errno == syscall.EAGAIN, errno == syscall.EINTR:
		case errno != 0:
			peeked = errno
		case n == 0:
			peeked = io.EOF
		default:
			peeked = errUnexpected
		}
	}); err != nil {
		return err
	}
	return peeked
}

// peek is a look at what a socket holds, without taking it or waiting.
func peek(fd uintptr, b []byte) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	return int(n), errno
}
