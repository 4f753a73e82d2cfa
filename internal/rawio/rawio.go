// Package rawio reads and writes the daemon's busiest files, the pipes to
// its PHP workers, as os.File does — waiting in the runtime's poller while
// it cannot — but with each read and write a raw system call, which the
// Go scheduler does not hear of. A pipe's end is non-blocking, so such a
// call never waits.
//
// Why: a scheduled system call (os.File's) wakes the runtime's monitor
// thread whenever it sleeps because the daemon had nothing to do — and
// with PHP answering one job at a time, the daemon is idle between any two
// of its jobs. Each wake-up is a thread switch, and on a paravirtualized
// host a thread switch costs more than the read itself (BENCHMARKS.md has
// the measurements). The daemon's Redis connections gained nothing from
// the same: their round trips carry many jobs each.
package rawio

import (
	"io"
	"os"
	"syscall"
	"unsafe"
)

// Pipe is one end of a pipe, read or written with raw system calls.
type Pipe struct {
	f  *os.File
	rc syscall.RawConn
}

// NewPipe wraps f, an end of a pipe from os.Pipe.
func NewPipe(f *os.File) (*Pipe, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &Pipe{f: f, rc: rc}, nil
}

// Read reads what is in the pipe, up to len(b), waiting until there is
// some; io.EOF once the other end is closed and the pipe empty.
func (p *Pipe) Read(b []byte) (int, error) {
	n, err := read(p.rc, b)
	if errno, ok := err.(syscall.Errno); ok {
		err = &os.PathError{Op: "read", Path: p.f.Name(), Err: errno}
	}
	return n, err
}

// Write writes all of b, waiting while the pipe is full.
func (p *Pipe) Write(b []byte) (int, error) {
	n, err := write(p.rc, b)
	if errno, ok := err.(syscall.Errno); ok {
		err = &os.PathError{Op: "write", Path: p.f.Name(), Err: errno}
	}
	return n, err
}

func (p *Pipe) Close() error { return p.f.Close() }

// read is one read into b, waiting in the poller until there is something
// to read; a failed system call's error is its syscall.Errno.
func read(rc syscall.RawConn, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	if err := rc.Read(func(fd uintptr) bool {
		n, errno = rawIO(syscall.SYS_READ, fd, b)
		return errno != syscall.EAGAIN
	}); err != nil {
		return 0, err
	}
	switch {
	case errno != 0:
		return 0, errno
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// write writes all of b, waiting in the poller while it cannot.
func write(rc syscall.RawConn, b []byte) (int, error) {
	done := 0
	var errno syscall.Errno
	if err := rc.Write(func(fd uintptr) bool {
		for done < len(b) {
			var n int
			if n, errno = rawIO(syscall.SYS_WRITE, fd, b[done:]); errno != 0 {
				return errno != syscall.EAGAIN
			}
			done += n
		}
		return true
	}); err != nil {
		return done, err
	}
	if errno != 0 {
		return done, errno
	}
	return done, nil
}

// rawIO is one read or write of b on fd, retried when a signal cut it.
func rawIO(op, fd uintptr, b []byte) (int, syscall.Errno) {
	for {
		n, _, errno := syscall.RawSyscall(op, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		if errno != syscall.EINTR {
			return int(n), errno
		}
	}
}
