package protocol

import (
	"errors"
	"io"
	"os"
	"sync"
	"time"
)

// Pair is two connected Conns in one process — the poller and the
// dispatcher of `kqueue run` — that hand each other messages as values:
// nothing is encoded, copied into a stream or decoded, and a Job carries
// the payload as the poller read it (Job.Parsed). Otherwise they behave
// as Conns on a stream: sends never wait (the protocol bounds what is in
// flight: the poller sends no more jobs than the dispatcher has room for,
// and the dispatcher answers each once); a receive waits for a message,
// the peer's close, or its deadline.
func Pair() (*Conn, *Conn) {
	ab, ba := newQueue(), newQueue()
	return &Conn{local: &localEnd{in: ba, out: ab}}, &Conn{local: &localEnd{in: ab, out: ba}}
}

// errPairClosed is a send after either end of a Pair closed.
var errPairClosed = errors.New("send: the connection is closed")

// localEnd is one end of a Pair: it receives what the other sends.
type localEnd struct {
	in, out *queue
}

// queue carries messages one way.
type queue struct {
	mu       sync.Mutex
	msgs     []Message
	eof      bool      // the sender is done: receives end once msgs is empty
	gone     bool      // the receiver is gone: sends fail
	deadline time.Time // the receiver's
	more     chan struct{}
}

func newQueue() *queue { return &queue{more: make(chan struct{}, 1)} }

func (q *queue) signal() {
	select {
	case q.more <- struct{}{}:
	default:
	}
}

// send hands ms to the receiver; it does not wait for them to be received.
func (q *queue) send(ms ...Message) error {
	q.mu.Lock()
	if q.eof || q.gone {
		q.mu.Unlock()
		return errPairClosed
	}
	q.msgs = append(q.msgs, ms...)
	q.mu.Unlock()
	q.signal()
	return nil
}

// recv takes the next message, waiting for one.
func (q *queue) recv() (Message, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		q.mu.Lock()
		switch {
		case q.gone:
			q.mu.Unlock()
			return nil, errPairClosed
		case len(q.msgs) > 0:
			m := q.msgs[0]
			q.msgs[0] = nil
			q.msgs = q.msgs[1:]
			if len(q.msgs) == 0 {
				q.msgs = q.msgs[:0:0] // let a large burst's array go
			}
			q.mu.Unlock()
			return m, nil
		case q.eof:
			q.mu.Unlock()
			return nil, io.EOF
		}
		deadline := q.deadline
		q.mu.Unlock()
		var expired <-chan time.Time
		if !deadline.IsZero() {
			d := time.Until(deadline)
			if d <= 0 {
				return nil, os.ErrDeadlineExceeded
			}
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			expired = timer.C
		}
		select {
		case <-q.more:
		case <-expired:
		}
	}
}

// closeWrite ends this end's sending: the peer receives what is left,
// then io.EOF.
func (e *localEnd) closeWrite() {
	e.out.mu.Lock()
	e.out.eof = true
	e.out.mu.Unlock()
	e.out.signal()
}

// close ends both ways: the peer receives io.EOF after what is left, and
// its sends fail.
func (e *localEnd) close() {
	e.closeWrite()
	e.in.mu.Lock()
	e.in.gone = true
	e.in.msgs = nil
	e.in.mu.Unlock()
	e.in.signal()
}

// setDeadline bounds this end's receives (sends never wait).
func (e *localEnd) setDeadline(t time.Time) {
	e.in.mu.Lock()
	e.in.deadline = t
	e.in.mu.Unlock()
	e.in.signal()
}
