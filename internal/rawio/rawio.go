// Package rawio is how the daemon talks to its PHP workers with as few
// thread switches as it can: on a paravirtualized host a thread switch
// costs more than the read or write it serves (BENCHMARKS.md has the
// measurements), and with PHP answering one job at a time the daemon
// would otherwise wake for every job.
//
//   - Pipe reads and writes as os.File does, waiting in the runtime's
//     poller while it cannot, but each read and write is a raw system
//     call, which the Go scheduler does not hear of: a scheduled one
//     wakes the runtime's monitor thread when the daemon was idle, and
//     the monitor then checks on the daemon every 20 µs while it is busy.
//     (A pipe's end is non-blocking, so such a call never waits.) Conn is
//     the same for a socket (the Redis connections), ReadNow and ReadAt
//     for reads that never wait.
//   - UnpolledPipe is a pipe the runtime's poller does not watch — its
//     epoll wakes the daemon for every write to a pipe it watches, read
//     or not — for what the daemon reads only when it needs to.
//   - QuietPipe wakes the daemon only while its reader waits for data,
//     and Timer naps a fraction of a millisecond (time.Sleep cannot), so
//     that a busy worker's answers are read several at a time.
//   - Counter is a number a worker stores in shared memory, where it
//     would otherwise write it to an UnpolledPipe: no system call at all.
package rawio

import (
	"io"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
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
	n, err := read(p.rc, b, true)
	return n, pathError("read", p.f, err)
}

// Write writes all of b, waiting while the pipe is full.
func (p *Pipe) Write(b []byte) (int, error) {
	n, err := write(p.rc, b)
	return n, pathError("write", p.f, err)
}

func (p *Pipe) Close() error { return p.f.Close() }

// pathError names f in err when it is a failed system call's.
func pathError(op string, f *os.File, err error) error {
	if errno, ok := err.(syscall.Errno); ok {
		return &os.PathError{Op: op, Path: f.Name(), Err: errno}
	}
	return err
}

// ReadNow reads what is in rc's file, up to len(b), without waiting:
// syscall.EAGAIN when there is nothing (an UnpolledPipe's read end),
// io.EOF at its end.
func ReadNow(rc syscall.RawConn, b []byte) (int, error) { return read(rc, b, false) }

// ReadAt reads from f at off, a file whose reads never wait (a file of
// /proc): a raw pread.
func ReadAt(f *os.File, b []byte, off int64) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil || len(b) == 0 {
		return 0, err
	}
	var n uintptr
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		for {
			n, _, errno = syscall.RawSyscall6(syscall.SYS_PREAD64, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(off), 0, 0)
			if errno != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, pathError("pread", f, errno)
	}
	if n == 0 {
		return 0, io.EOF
	}
	return int(n), nil
}

// read is one read into b; while there is nothing to read, it waits in
// the poller, or (not wait) fails with syscall.EAGAIN. A failed system
// call's error is its syscall.Errno.
func read(rc syscall.RawConn, b []byte, wait bool) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	if err := rc.Read(func(fd uintptr) bool {
		n, errno = rawIO(syscall.SYS_READ, fd, b)
		return !wait || errno != syscall.EAGAIN
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

// QuietPipe is the read end of a pipe that wakes the daemon only while
// its reader waits for data. A pipe in the runtime's poller wakes the
// daemon for each write to it, even while its reader is busy, or has
// chosen to let data gather (a Timer's nap) and read it all at once; a
// QuietPipe's end is watched by an epoll instance of its own, armed for
// one event at a time, only when a read finds the pipe empty — that
// epoll's fd is what the runtime's poller watches.
type QuietPipe struct {
	f    *os.File // the pipe's end, unpolled, non-blocking
	rc   syscall.RawConn
	ep   *os.File // its epoll instance, in the runtime's poller
	eprc syscall.RawConn
}

// NewQuietPipe makes a pipe: r, its read end, for the daemon; w, an
// ordinary blocking write end, for a child.
func NewQuietPipe() (r *QuietPipe, w *os.File, err error) {
	f, w, err := UnpolledPipe()
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*QuietPipe, *os.File, error) {
		f.Close()
		w.Close()
		return nil, nil, err
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fail(os.NewSyscallError("epoll_create1", err))
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return fail(os.NewSyscallError("fcntl", err))
	}
	ep := os.NewFile(uintptr(epfd), "epoll") // non-blocking: in the poller
	p := &QuietPipe{f: f, ep: ep}
	if p.rc, err = f.SyscallConn(); err == nil {
		p.eprc, err = ep.SyscallConn()
	}
	if err == nil {
		err = p.arm(unix.EPOLL_CTL_ADD)
	}
	if err != nil {
		ep.Close()
		return fail(err)
	}
	return p, w, nil
}

// arm has the epoll instance report the pipe's next readiness, once.
func (p *QuietPipe) arm(op int) error {
	var cerr error
	err := p.rc.Control(func(fd uintptr) {
		if err := p.eprc.Control(func(epfd uintptr) {
			cerr = unix.EpollCtl(int(epfd), op, int(fd), &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: int32(fd)})
		}); err != nil {
			cerr = err // closed
		}
	})
	if err != nil {
		return err
	}
	if cerr != nil {
		return os.NewSyscallError("epoll_ctl", cerr)
	}
	return nil
}

// Read reads what is in the pipe, up to len(b), waiting until there is
// some; io.EOF once the other end is closed and the pipe empty.
func (p *QuietPipe) Read(b []byte) (int, error) {
	for {
		n, err := read(p.rc, b, false) // unpolled: the poller cannot wait for it
		if err != syscall.EAGAIN {
			return n, pathError("read", p.f, err)
		}
		if err := p.wait(); err != nil {
			return 0, err
		}
	}
}

// wait arms the epoll instance and waits in the runtime's poller until it
// reports the pipe readable (or closed at the other end).
func (p *QuietPipe) wait() error {
	if err := p.arm(unix.EPOLL_CTL_MOD); err != nil {
		return err
	}
	var events [1]unix.EpollEvent
	var werr error
	if err := p.eprc.Read(func(fd uintptr) bool {
		// A look, not a wait (timeout 0): raw.
		n, _, errno := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, fd, uintptr(unsafe.Pointer(&events[0])), 1, 0, 0, 0)
		if errno != 0 && errno != syscall.EINTR {
			werr = os.NewSyscallError("epoll_pwait", errno)
		}
		return (errno == 0 && n > 0) || werr != nil
	}); err != nil {
		return err
	}
	return werr
}

// Close closes the pipe's end; a Read waiting on it ends.
func (p *QuietPipe) Close() error {
	p.ep.Close()
	return p.f.Close()
}

// UnpolledPipe is a pipe whose read end the runtime's poller does not
// watch: the runtime's epoll wakes the daemon for each write to a pipe it
// watches, whether or not anything waits to read it. r is non-blocking
// (though os.File does not know it): read it through its SyscallConn,
// never waiting. w is an ordinary blocking end, for a child.
func UnpolledPipe() (r, w *os.File, err error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, os.NewSyscallError("pipe2", err)
	}
	// Blocking when os.NewFile sees them, so that it does not hand them
	// to the poller.
	r, w = os.NewFile(uintptr(fds[0]), "|0"), os.NewFile(uintptr(fds[1]), "|1")
	if err := unix.SetNonblock(fds[0], true); err != nil {
		r.Close()
		w.Close()
		return nil, nil, os.NewSyscallError("fcntl", err)
	}
	return r, w, nil
}

// Timer sleeps for spans shorter than a millisecond, which time.Sleep
// cannot do in a process that is otherwise idle: the runtime then waits
// in epoll, whose timeout is whole milliseconds, so time.Sleep(200 µs)
// takes a millisecond. A timerfd waited on in the runtime's poller wakes
// on time (some tens of µs late). One goroutine sleeps on a Timer at a
// time.
type Timer struct {
	f  *os.File
	rc syscall.RawConn
}

// NewTimer makes a Timer.
func NewTimer() (*Timer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("timerfd_create", err)
	}
	f := os.NewFile(uintptr(fd), "timerfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Timer{f: f, rc: rc}, nil
}

// Sleep waits for d (> 0), or until the timer is closed (an error).
func (t *Timer) Sleep(d time.Duration) error {
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(max(int64(d), 1))}
	var serr error
	if err := t.rc.Control(func(fd uintptr) { serr = unix.TimerfdSettime(int(fd), 0, &spec, nil) }); err != nil {
		return err // closed
	}
	if serr != nil {
		return os.NewSyscallError("timerfd_settime", serr)
	}
	var expirations [8]byte
	_, err := read(t.rc, expirations[:], true)
	return err
}

// Close closes the timer; a Sleep on it ends.
func (t *Timer) Close() error { return t.f.Close() }
