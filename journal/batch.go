package journal

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"
)

// lineBatcher gathers the log lines written to it for a moment and writes
// them out together. A busy instance logs a line per job: one write per
// line cost about 5 % of no-op throughput when stderr was a pipe, and a
// write every 2 ms an eighth of the daemon's thread switches. A line
// waits at most batchDelay, and one after a quiet spell not at all (should
// the process die next, of a panic elsewhere, it is out); Flush writes what
// waits at once.
//
// The lines go out from a goroutine other than the one logging: a write to
// a pipe waits until its reader has room, and the poller logs each job's
// end — it would take no outcomes meanwhile (at 30,000 jobs a second,
// 64 KiB of lines every 7 ms, each write 30–90 µs with a prompt reader;
// with one that stops reading, kqueue stopped). Only a reader more than
// maxWaiting behind makes the logger wait.
type lineBatcher struct {
	mu      sync.Mutex
	w       io.Writer
	buf     []byte      // the lines waiting
	spare   []byte      // a buffer written out before, for the next lines
	timer   *time.Timer // armed while lines wait
	last    time.Time   // when lines were last written
	kicked  bool        // a Flush of their own is on its way (see Write)
	writing bool        // lines are going out: not a quiet spell

	out sync.Mutex // held while lines go out: one write at a time, in order
}

const (
	batchDelay = 10 * time.Millisecond
	batchBytes = 64 << 10 // written out from this size, without waiting for batchDelay
	maxWaiting = 1 << 20  // the logger waits for the writer from this size
)

func newLineBatcher(w io.Writer) *lineBatcher { return &lineBatcher{w: w} }

func (b *lineBatcher) Write(p []byte) (int, error) {
	b.mu.Lock()
	b.buf = append(b.buf, p...)
	now := false
	switch {
	case len(b.buf) >= maxWaiting:
		now = true // the reader is far behind: wait for it
	case b.kicked:
	case len(b.buf) >= batchBytes:
		b.kicked = true
		go b.Flush()
	case b.timer != nil:
	case !b.writing && time.Since(b.last) >= batchDelay:
		now = true // after a quiet spell
	default:
		b.timer = time.AfterFunc(batchDelay, b.Flush)
	}
	b.mu.Unlock()
	if now {
		b.Flush()
	}
	return len(p), nil
}

// Flush writes the waiting lines.
func (b *lineBatcher) Flush() {
	b.out.Lock()
	defer b.out.Unlock()
	b.mu.Lock()
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	b.kicked = false
	lines := b.buf
	if len(lines) == 0 {
		b.mu.Unlock()
		return
	}
	b.buf, b.spare = b.spare[:0], nil
	b.writing = true
	b.mu.Unlock()
	b.w.Write(lines) // a log line that cannot be written has nowhere else to go
	b.mu.Lock()
	b.writing = false
	b.last = time.Now()
	if cap(lines) <= 4*batchBytes {
		b.spare = lines[:0] // not a backlog's buffer: that goes
	}
	b.mu.Unlock()
}

// NewLogger is kqueue's logger on stderr: native journal entries, with
// each job's fields, when stderr is the journal; otherwise text (or JSON)
// lines, batched. flush writes out what waits.
func NewLogger(stderr io.Writer, format, level string) (log *slog.Logger, flush func(), err error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, nil, fmt.Errorf("--log-level: want debug, info, warn or error, got %q", level)
	}
	b := newLineBatcher(stderr)
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		// Under systemd, stderr is the journal: write native entries with
		// the job's fields instead (and no timestamps of our own).
		if stderr == os.Stderr && StderrIsJournal() {
			if h, err := NewHandler(Socket, "kqueue", lv); err == nil {
				return slog.New(h), b.Flush, nil
			}
		}
		return slog.New(newTextHandler(b, lv)), b.Flush, nil
	case "json":
		return slog.New(slog.NewJSONHandler(b, opts)), b.Flush, nil
	}
	return nil, nil, fmt.Errorf("--log-format: want text or json, got %q", format)
}
