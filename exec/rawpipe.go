package exec

import (
	"io"
	"os"
	"syscall"
	"unsafe"
)

// rawPipe reads or writes one end of a pipe to a PHP worker as os.File
// does — waiting in the runtime's poller while it cannot — but makes each
// read and write a raw system call, which the Go scheduler does not hear
// of. A pipe's end is non-blocking, so such a call never waits.
//
// Why: a scheduled system call (os.File's) wakes the runtime's monitor
// thread whenever it sleeps because the daemon had nothing to do — and
// with PHP answering one job at a time, the daemon is idle between any
// two of its jobs. Each such wake-up is a thread switch, which on a
// paravirtualized host costs more than the read itself (BENCHMARKS.md).
type rawPipe struct {
	f  *os.File
	rc syscall.RawConn
}

func newRawPipe(f *os.File) (*rawPipe, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &rawPipe{f: f, rc: rc}, nil
}

// Read reads what is in the pipe, up to len(b), waiting until there is
// some; io.EOF once the other end is closed and the pipe empty.
func (p *rawPipe) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := p.rc.Read(func(fd uintptr) bool {
		n, errno = rawIO(syscall.SYS_READ, fd, b)
		return errno != syscall.EAGAIN
	})
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, &os.PathError{Op: "read", Path: p.f.Name(), Err: errno}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of b, waiting while the pipe is full.
func (p *rawPipe) Write(b []byte) (int, error) {
	done := 0
	var errno syscall.Errno
	err := p.rc.Write(func(fd uintptr) bool {
		for done < len(b) {
			var n int
			if n, errno = rawIO(syscall.SYS_WRITE, fd, b[done:]); errno != 0 {
				return errno != syscall.EAGAIN
			}
			done += n
		}
		return true
	})
	switch {
	case err != nil:
		return done, err
	case errno != 0:
		return done, &os.PathError{Op: "write", Path: p.f.Name(), Err: errno}
	}
	return done, nil
}

func (p *rawPipe) Close() error { return p.f.Close() }

// rawIO is one read or write of b on fd, retried when a signal cut it.
func rawIO(op, fd uintptr, b []byte) (int, syscall.Errno) {
	for {
		n, _, errno := syscall.RawSyscall(op, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		if errno != syscall.EINTR {
			return int(n), errno
		}
	}
}
