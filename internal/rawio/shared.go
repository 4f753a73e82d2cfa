package rawio

import (
	"os"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Counter is a number another process writes into shared memory for the
// daemon to read when it needs to: a store, where a write to a pipe would
// be a system call — which, on a host that flushes the TLB on each one,
// costs that process its TLB too. The memory outlives the writer, so what
// it wrote before it died is there to read.
type Counter struct {
	mem []byte
}

// NewCounter makes a Counter at 0 and the file to hand its writer, which
// maps the file's first 8 bytes (a native-endian uint64) shared and
// writable. The caller closes the file once the writer has it.
func NewCounter() (*Counter, *os.File, error) {
	fd, err := unix.MemfdCreate("kqueue-counter", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, nil, err
	}
	f := os.NewFile(uintptr(fd), "kqueue-counter")
	if err := unix.Ftruncate(fd, 8); err != nil {
		f.Close()
		return nil, nil, err
	}
	mem, err := unix.Mmap(fd, 0, 8, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	c := &Counter{mem: mem}
	runtime.AddCleanup(c, func(mem []byte) { unix.Munmap(mem) }, mem)
	return c, f, nil
}

// Load reads the counter.
func (c *Counter) Load() uint64 {
	return atomic.LoadUint64((*uint64)(unsafe.Pointer(&c.mem[0])))
}
