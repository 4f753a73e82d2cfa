package journal

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
)

// writes is a writer that hands each write on.
type writes chan string

func (w writes) Write(p []byte) (int, error) { w <- string(p); return len(p), nil }

func TestLineBatcherKeepsOrderAndWritesWithoutFlush(t *testing.T) {
	out := make(writes, 1000)
	b := newLineBatcher(out)
	var want strings.Builder
	for i := range 1000 { // more than batchBytes: some go out at once
		line := fmt.Sprintf("line %d %s\n", i, strings.Repeat("x", 100))
		b.Write([]byte(line))
		want.WriteString(line)
	}
	var got strings.Builder
	timeout := time.After(10 * time.Second)
	for got.Len() < want.Len() {
		select {
		case w := <-out:
			got.WriteString(w)
		case <-timeout:
			t.Fatalf("the last lines never came out without Flush: got %d of %d bytes", got.Len(), want.Len())
		}
	}
	if got.String() != want.String() {
		t.Fatal("the lines came out changed or out of order")
	}
}

func TestLineBatcherFlush(t *testing.T) {
	var out testenv.SyncBuffer
	b := newLineBatcher(&out)
	b.Write([]byte("one\n"))
	b.Write([]byte("two\n"))
	b.Flush()
	if got := out.String(); got != "one\ntwo\n" {
		t.Fatalf("after Flush: %q", got)
	}
	b.Flush()
	if got := out.String(); got != "one\ntwo\n" {
		t.Fatalf("a second Flush wrote again: %q", got)
	}
}

// A line after a quiet spell goes out at once, without waiting for the
// lines that may follow it: if the process dies next, it is not lost.
func TestLineBatcherWritesAQuietLineAtOnce(t *testing.T) {
	var out testenv.SyncBuffer
	b := newLineBatcher(&out)
	b.Write([]byte("alone\n"))
	if got := out.String(); got != "alone\n" {
		t.Fatalf("right after the write: %q", got)
	}
}

// gate is a writer that holds every write but the first until it is
// opened, and says when a write is held.
type gate struct {
	open   chan struct{}
	held   chan struct{}
	mu     sync.Mutex
	got    strings.Builder
	writes atomic.Int32
}

func (g *gate) Write(p []byte) (int, error) {
	if g.writes.Add(1) > 1 {
		select {
		case g.held <- struct{}{}:
		default:
		}
		<-g.open
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.got.Write(p)
	return len(p), nil
}

func (g *gate) String() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.got.String()
}

// A reader that stops reading (a full pipe's) does not hold up the one
// logging until it is maxWaiting behind — not even once that write has
// been held longer than batchDelay, when a line looks like one after a
// quiet spell; then the lines all come out, in order. (The first line,
// after a quiet spell indeed, is written at once.)
func TestLineBatcherDoesNotWaitForASlowReader(t *testing.T) {
	g := &gate{open: make(chan struct{}), held: make(chan struct{}, 1)}
	b := newLineBatcher(g)
	var want strings.Builder
	write := func(line string) {
		t.Helper()
		wrote := make(chan struct{})
		go func() {
			b.Write([]byte(line))
			close(wrote)
		}()
		select {
		case <-wrote:
			want.WriteString(line)
		case <-time.After(10 * time.Second):
			t.Fatalf("Write waited for a writer that holds its writes, with less than maxWaiting waiting (%d bytes written)", want.Len())
		}
	}
	line := func(i int) string { return fmt.Sprintf("line %d %s\n", i, strings.Repeat("x", 200)) }
	i := 0
	for ; want.Len() < batchBytes; i++ {
		write(line(i))
	}
	select {
	case <-g.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the lines past batchBytes did not go out without Flush")
	}
	// The held write has lasted longer than batchDelay, and no timer waits.
	b.mu.Lock()
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	b.last = time.Time{}
	b.mu.Unlock()
	write("one more\n")
	for ; want.Len() < 4*batchBytes; i++ {
		write(line(i))
	}
	close(g.open)
	b.Flush()
	if got := g.String(); got != want.String() {
		t.Fatalf("the lines came out changed or out of order: %d bytes, want %d", len(got), want.Len())
	}
}
