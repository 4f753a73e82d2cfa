package rawio

import (
	"bytes"
	"errors"
	"io"
	"os"
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
	read := make(chan error, 1)
	go func() {
		_, err := pr.Read(make([]byte, 16))
		read <- err
	}()
	time.AfterFunc(10*time.Millisecond, func() { pr.Close() }) // the read may not have begun yet: either way it ends
	select {
	case err := <-read:
		if err == nil || errors.Is(err, io.EOF) {
			t.Errorf("a read on a closed end: %v, want the error that says so", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a read waiting on a closed end did not end")
	}

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
