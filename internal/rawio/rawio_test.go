package rawio

import (
	"bytes"
	"errors"
	"io"
	"os"
	"syscall"
	"testing"
	"time"
)

// A Pipe behaves as os.File does on one: a write larger than the pipe
// holds waits for the reader and arrives whole, a read waits for data,
// reads io.EOF once the writer is gone, and a read that waits ends when
// its end is closed.
func TestPipe(t *testing.T) {
	t.Parallel()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pr, err := NewPipe(r)
	if err != nil {
		t.Fatal(err)
	}
	pw, err := NewPipe(w)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB: many pipes full
	wrote := make(chan error, 1)
	go func() {
		n, err := pw.Write(want)
		if err == nil && n != len(want) {
			err = io.ErrShortWrite
		}
		pw.Close()
		wrote <- err
	}()
	got, err := io.ReadAll(pr) // many small reads, then io.EOF
	if err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, not the %d written", len(got), len(want))
	}
	if n, err := pr.Read(nil); n != 0 || err != nil {
		t.Errorf("an empty read: %d, %v", n, err)
	}
	pr.Close()

	// A read waiting on an empty pipe ends when its end is closed.
	r, w, err = os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if pr, err = NewPipe(r); err != nil {
		t.Fatal(err)
	}
	closeEndsRead(t, pr)

	// A write whose reader is gone fails (EPIPE; Go ignores SIGPIPE on
	// fds other than 1 and 2).
	r, w, err = os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if pw, err = NewPipe(w); err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	if _, err := pw.Write([]byte("x")); err == nil {
		t.Error("a write to a pipe without a reader succeeded")
	}
}

// A Timer sleeps at least as long as asked; a sleep ends when the timer
// is closed.
func TestTimer(t *testing.T) {
	t.Parallel()
	tm, err := NewTimer()
	if err != nil {
		t.Fatal(err)
	}
	const d = 100 * time.Microsecond
	for range 20 {
		start := time.Now()
		if err := tm.Sleep(d); err != nil {
			t.Fatal(err)
		}
		if slept := time.Since(start); slept < d {
			t.Fatalf("slept %s of %s", slept, d)
		}
	}
	done := make(chan error, 1)
	go func() { done <- tm.Sleep(time.Hour) }()
	time.AfterFunc(10*time.Millisecond, func() { tm.Close() })
	select {
	case err := <-done:
		if err == nil {
			t.Error("a sleep on a closed timer ended without an error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a sleep did not end when its timer was closed")
	}
}

// What is written to an unpolled pipe is read through its SyscallConn
// without waiting: all of it, then EAGAIN while it is empty.
func TestUnpolledPipe(t *testing.T) {
	t.Parallel()
	r, w, err := UnpolledPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	rc, err := r.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	read := func() (string, error) {
		var buf [64]byte
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, rerr = syscall.Read(int(fd), buf[:])
			return true
		}); err != nil {
			return "", err
		}
		return string(buf[:max(n, 0)]), rerr
	}
	if got, err := read(); got != "" || !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("an empty pipe read %q, %v; want EAGAIN", got, err)
	}
	w.Write([]byte("1\n"))
	w.Write([]byte("2\n"))
	if got, err := read(); got != "1\n2\n" || err != nil {
		t.Fatalf("read %q, %v", got, err)
	}
}

// A QuietPipe's reader gets every byte written, whether it waits for them
// or comes back for them later (its epoll armed or not when they came);
// io.EOF once the writer is gone; a read waiting on it ends when it is
// closed.
func TestQuietPipe(t *testing.T) {
	t.Parallel()
	r, w, err := NewQuietPipe()
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	for i := range 2000 {
		want = append(want, byte(i), byte(i>>8))
	}
	go func() {
		for i := 0; i < len(want); i += 2 {
			w.Write(want[i : i+2])
			if i%200 == 0 {
				time.Sleep(time.Millisecond) // the reader waits
			}
		}
		w.Close()
	}()
	var got []byte
	buf := make([]byte, 64)
	for i := 0; ; i++ {
		if i%7 == 0 {
			time.Sleep(100 * time.Microsecond) // the writer goes on, unheard
		}
		n, err := r.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, not the %d written", len(got), len(want))
	}
	r.Close()

	r2, w2, err := NewQuietPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	closeEndsRead(t, r2)
}

// closeEndsRead checks that a read waiting on r (an empty pipe's end)
// ends, with an error that is not io.EOF, when r is closed. The read may
// not have begun when it is: either way it ends.
func closeEndsRead(t *testing.T, r io.ReadCloser) {
	t.Helper()
	read := make(chan error, 1)
	go func() {
		_, err := r.Read(make([]byte, 16))
		read <- err
	}()
	time.AfterFunc(10*time.Millisecond, func() { r.Close() })
	select {
	case err := <-read:
		if err == nil || errors.Is(err, io.EOF) {
			t.Errorf("a read on a closed end: %v, want the error that says so", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a read waiting on a closed end did not end")
	}
}
