// Package memconn is an in-process stream between two goroutines: the
// poller and the dispatcher of `kqueue run`, which speak the same
// protocol as the two units do over a unix socket, without a system call
// per frame. Writes never block (the protocol bounds what is in flight:
// the poller sends no more jobs than the dispatcher has room for, and
// the dispatcher answers each once); a read waits for data, the peer's
// close, or its deadline.
package memconn

import (
	"errors"
	"io"
	"os"
	"sync"
	"time"
)

// ErrClosed is a write after either end closed the stream.
var ErrClosed = errors.New("memconn: closed")

// Pair is two connected ends.
func Pair() (*Conn, *Conn) {
	ab, ba := newPipe(), newPipe()
	return &Conn{in: ba, out: ab}, &Conn{in: ab, out: ba}
}

// Conn is one end: it reads what the other writes.
type Conn struct {
	in, out *pipe
}

// pipe carries bytes one way.
type pipe struct {
	mu       sync.Mutex
	buf      []byte
	eof      bool      // the writer is done: reads end once buf is empty
	gone     bool      // the reader is gone: writes fail
	deadline time.Time // the reader's
	more     chan struct{}
}

func newPipe() *pipe { return &pipe{more: make(chan struct{}, 1)} }

func (p *pipe) signal() {
	select {
	case p.more <- struct{}{}:
	default:
	}
}

// Read reads what the peer wrote, waiting for some.
func (c *Conn) Read(b []byte) (int, error) {
	p := c.in
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		p.mu.Lock()
		switch {
		case p.gone:
			p.mu.Unlock()
			return 0, ErrClosed
		case len(p.buf) > 0:
			n := copy(b, p.buf)
			p.buf = p.buf[n:]
			if len(p.buf) == 0 {
				p.buf = p.buf[:0:0] // let a large burst's array go
			}
			p.mu.Unlock()
			return n, nil
		case p.eof:
			p.mu.Unlock()
			return 0, io.EOF
		}
		deadline := p.deadline
		p.mu.Unlock()
		var expired <-chan time.Time
		if !deadline.IsZero() {
			d := time.Until(deadline)
			if d <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			expired = timer.C
		}
		select {
		case <-p.more:
		case <-expired:
		}
	}
}

// Write hands b to the peer; it does not wait for the peer to read.
func (c *Conn) Write(b []byte) (int, error) {
	p := c.out
	p.mu.Lock()
	if p.eof || p.gone {
		p.mu.Unlock()
		return 0, ErrClosed
	}
	p.buf = append(p.buf, b...)
	p.mu.Unlock()
	p.signal()
	return len(b), nil
}

// CloseWrite ends this side's writing: the peer reads what is left, then
// io.EOF.
func (c *Conn) CloseWrite() error {
	c.out.mu.Lock()
	c.out.eof = true
	c.out.mu.Unlock()
	c.out.signal()
	return nil
}

// Close ends both ways: the peer reads io.EOF after what is left, and
// its writes fail.
func (c *Conn) Close() error {
	c.CloseWrite()
	c.in.mu.Lock()
	c.in.gone = true
	c.in.buf = nil
	c.in.mu.Unlock()
	c.in.signal()
	return nil
}

// SetDeadline bounds this end's reads (writes never wait); a zero time
// removes the bound.
func (c *Conn) SetDeadline(t time.Time) error {
	c.in.mu.Lock()
	c.in.deadline = t
	c.in.mu.Unlock()
	c.in.signal()
	return nil
}
