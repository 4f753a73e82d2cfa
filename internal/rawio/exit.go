package rawio

import (
	"os"

	"golang.org/x/sys/unix"
)

// AwaitExit waits in the runtime's poller until the process pid, a child
// of this one not yet waited for, has exited: the Wait that follows then
// does not block. A goroutine in a blocking system call (wait4) keeps its
// P until the runtime's monitor takes it back — up to 10 ms later when the
// daemon has been quiet — and with GOMAXPROCS 1 nothing else runs
// meanwhile: each worker's reaper held up the next worker's start by 4–8
// ms. Without a pidfd (Linux before 5.10) it returns at once, and the Wait
// blocks as before.
func AwaitExit(pid int) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	// A pidfd is readable once its process has exited.
	rc.Read(func(fd uintptr) bool {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(p, 0)
		return err != nil || n > 0
	})
}
