package protocol

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Conn reads and writes frames on a stream — or, one of a Pair, hands
// messages to its peer as values. Reads are for one goroutine; writes may
// come from several.
type Conn struct {
	local *localEnd // one of a Pair; nil on a stream

	rw io.ReadWriteCloser
	r  *bufio.Reader

	mu  sync.Mutex
	w   *bufio.Writer
	buf []byte

	rbuf []byte
}

// NewConn wraps a stream.
func NewConn(rw io.ReadWriteCloser) *Conn {
	return &Conn{rw: rw, r: bufio.NewReaderSize(rw, 64<<10), w: bufio.NewWriterSize(rw, 64<<10)}
}

// Send writes one message and flushes it.
func (c *Conn) Send(m Message) error {
	if c.local != nil {
		return c.local.out.send(m)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.write(m); err != nil {
		return err
	}
	return c.w.Flush()
}

// SendBatch writes several messages with one flush.
func (c *Conn) SendBatch(ms []Message) error {
	if c.local != nil {
		return c.local.out.send(ms...)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range ms {
		if err := c.write(m); err != nil {
			return err
		}
	}
	return c.w.Flush()
}

func (c *Conn) write(m Message) error {
	b := append(c.buf[:0], 0, 0, 0, 0, m.Type())
	b = m.AppendBody(b)
	if len(b)-4 > MaxFrame {
		return fmt.Errorf("send frame: %d bytes is over the %d byte limit", len(b)-4, MaxFrame)
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	c.buf = b[:0]
	if cap(c.buf) > 1<<20 {
		c.buf = nil // don't keep a huge payload's buffer
	}
	_, err := c.w.Write(b)
	return err
}

// Recv reads the next message. It returns io.EOF when the peer closed the
// stream between frames. Byte slices in the message are valid until the next
// Recv.
func (c *Conn) Recv() (Message, error) {
	if c.local != nil {
		return c.local.in.recv()
	}
	var hdr [4]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: truncated header: %w", ErrMalformed, err)
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > MaxFrame {
		return nil, fmt.Errorf("%w: length %d", ErrMalformed, n)
	}
	if uint32(cap(c.rbuf)) < n {
		c.rbuf = make([]byte, n)
	}
	frame := c.rbuf[:n]
	if _, err := io.ReadFull(c.r, frame); err != nil {
		return nil, fmt.Errorf("%w: truncated body: %w", ErrMalformed, err)
	}
	m, err := Decode(frame)
	if n > 1<<20 {
		c.rbuf = nil // don't keep a huge payload's buffer
	}
	return m, err
}

// SetDeadline bounds reads and writes on streams that support it (a zero
// time removes the bound); on others it does nothing.
func (c *Conn) SetDeadline(t time.Time) {
	if c.local != nil {
		c.local.setDeadline(t)
		return
	}
	if d, ok := c.rw.(interface{ SetDeadline(time.Time) error }); ok {
		d.SetDeadline(t)
	}
}

// Close closes the stream.
func (c *Conn) Close() error {
	if c.local != nil {
		c.local.close()
		return nil
	}
	return c.rw.Close()
}

// CloseWrite tells the peer this side sends no more (the peer reads EOF)
// while this side can still read. Streams that cannot half-close are
// closed.
func (c *Conn) CloseWrite() error {
	if c.local != nil {
		c.local.closeWrite()
		return nil
	}
	if hc, ok := c.rw.(interface{ CloseWrite() error }); ok {
		return hc.CloseWrite()
	}
	return c.rw.Close()
}
