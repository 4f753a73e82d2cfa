package journal

import (
	"fmt"
	"strings"
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
