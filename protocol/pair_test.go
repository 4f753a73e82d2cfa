package protocol

import (
	"errors"
	"io"
	"os"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/kqueue/kqueue/payload"
)

// What one end of a Pair sends, from several goroutines, the other
// receives as it was sent (a job's parsed payload with it) and in each
// sender's order, a batch unbroken; after CloseWrite the receiver gets the
// rest, then io.EOF. The other way stays open.
func TestPairCarriesValues(t *testing.T) {
	t.Parallel()
	a, b := Pair()
	p, err := payload.Parse([]byte(`{"uuid":"u","displayName":"App\\Jobs\\Noop","job":"Illuminate\\Queue\\CallQueuedHandler@call","data":{},"attempts":2}`))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 500 {
				a.SendBatch([]Message{Started{ID: uint64(w<<16 | i)}, Running{ID: uint64(w<<16 | i)}})
			}
		})
	}
	wg.Wait()
	a.Send(Job{ID: 9, Queue: "default", Payload: []byte(`{}`), Parsed: p})
	a.CloseWrite()
	next := [4]int{}
	for range 4 * 500 {
		m, err := b.Recv()
		if err != nil {
			t.Fatal(err)
		}
		s, ok := m.(Started)
		if !ok {
			t.Fatalf("received %#v where a batch begins", m)
		}
		w, i := int(s.ID>>16), int(s.ID&0xffff)
		if i != next[w] {
			t.Fatalf("sender %d: %d after %d", w, i, next[w]-1)
		}
		next[w]++
		if m, err := b.Recv(); err != nil || m != (Running{ID: s.ID}) {
			t.Fatalf("the batch's second message: %#v, %v", m, err)
		}
	}
	m, err := b.Recv()
	if j, ok := m.(Job); err != nil || !ok || j.Parsed != p || j.ID != 9 {
		t.Fatalf("a job: %#v, %v; want its parsed payload with it", m, err)
	}
	if _, err := b.Recv(); err != io.EOF {
		t.Fatalf("after CloseWrite: %v, want io.EOF", err)
	}
	want := Outcome{ID: 9, Kind: Delete, Result: "done", Tags: []string{"a"}}
	if err := b.Send(want); err != nil {
		t.Fatalf("the other way is still open: %v", err)
	}
	if got, err := a.Recv(); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("received back %#v, %v", got, err)
	}
}

// Close ends both ways: the peer receives what was sent, then io.EOF, and
// its sends fail; the closed end's receives fail.
func TestPairClose(t *testing.T) {
	t.Parallel()
	a, b := Pair()
	a.Send(Capacity{Capacity: 3})
	a.Close()
	if m, err := b.Recv(); m != (Capacity{Capacity: 3}) || err != nil {
		t.Fatalf("received %#v, %v", m, err)
	}
	if _, err := b.Recv(); err != io.EOF {
		t.Fatalf("after the peer closed: %v, want io.EOF", err)
	}
	if err := b.Send(Capacity{}); err == nil {
		t.Fatal("a send to a closed peer succeeded")
	}
	if _, err := a.Recv(); err == nil || err == io.EOF {
		t.Fatalf("a receive on the closed end: %v", err)
	}
}

// A receive waiting past its deadline fails with os.ErrDeadlineExceeded;
// a deadline set while a receive waits applies to it; a zero one removes
// it.
func TestPairDeadline(t *testing.T) {
	t.Parallel()
	a, b := Pair()
	b.SetDeadline(time.Now().Add(-time.Second))
	if _, err := b.Recv(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a receive past the deadline: %v", err)
	}
	b.SetDeadline(time.Time{})
	failed := make(chan error, 1)
	go func() {
		_, err := b.Recv()
		failed <- err
	}()
	b.SetDeadline(time.Now().Add(10 * time.Millisecond))
	if err := <-failed; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a waiting receive, its deadline set: %v", err)
	}
	b.SetDeadline(time.Time{})
	a.Send(Started{ID: 1})
	if m, err := b.Recv(); m != (Started{ID: 1}) || err != nil {
		t.Fatalf("a receive without a deadline: %#v, %v", m, err)
	}
}
