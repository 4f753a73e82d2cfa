package memconn

import (
	"errors"
	"io"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// What one end writes, from several goroutines, the other reads whole and
// in each writer's order; after CloseWrite the reader gets the rest, then
// io.EOF.
func TestStream(t *testing.T) {
	a, b := Pair()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				a.Write([]byte{byte(w), byte(i), byte(i >> 8)})
			}
		})
	}
	go func() { wg.Wait(); a.CloseWrite() }()
	got, err := io.ReadAll(b)
	if err != nil || len(got) != 4*1000*3 {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	next := [4]int{}
	for c := range slices.Chunk(got, 3) { // each Write is whole: 3 bytes
		w, i := int(c[0]), int(c[1])|int(c[2])<<8
		if i != next[w] {
			t.Fatalf("writer %d: %d after %d", w, i, next[w]-1)
		}
		next[w]++
	}
	if _, err := b.Write([]byte("back")); err != nil {
		t.Fatalf("the other way is still open: %v", err)
	}
	buf := make([]byte, 8)
	if n, err := a.Read(buf); string(buf[:n]) != "back" || err != nil {
		t.Fatalf("read back %q %v", buf[:n], err)
	}
}

// Close ends both ways: the peer reads what was written, then io.EOF, and
// its writes fail; the closed end's reads fail.
func TestClose(t *testing.T) {
	a, b := Pair()
	a.Write([]byte("last"))
	a.Close()
	buf := make([]byte, 8)
	if n, err := b.Read(buf); string(buf[:n]) != "last" || err != nil {
		t.Fatalf("read %q %v", buf[:n], err)
	}
	if _, err := b.Read(buf); err != io.EOF {
		t.Fatalf("read after the peer closed: %v, want io.EOF", err)
	}
	if _, err := b.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("write to a closed peer: %v", err)
	}
	if _, err := a.Read(buf); !errors.Is(err, ErrClosed) {
		t.Fatalf("read on the closed end: %v", err)
	}
}

// A read waiting past its deadline fails with os.ErrDeadlineExceeded; a
// deadline set while a read waits applies to it; a zero one removes it.
func TestDeadline(t *testing.T) {
	a, b := Pair()
	b.SetDeadline(time.Now().Add(-time.Second))
	if _, err := b.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
	b.SetDeadline(time.Time{})
	failed := make(chan error, 1)
	go func() {
		_, err := b.Read(make([]byte, 1))
		failed <- err
	}()
	b.SetDeadline(time.Now().Add(10 * time.Millisecond))
	if err := <-failed; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a waiting read, its deadline set: %v", err)
	}
	b.SetDeadline(time.Time{})
	a.Write([]byte("y"))
	if n, err := b.Read(make([]byte, 1)); n != 1 || err != nil {
		t.Fatalf("read without a deadline: %d %v", n, err)
	}
}
