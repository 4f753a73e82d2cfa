package testenv

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Logs collects a component's log for assertions.
type Logs struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

// NewLogs returns an empty log.
func NewLogs() *Logs { return &Logs{changed: make(chan struct{})} }

// Write implements io.Writer.
func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.changed)
	l.changed = make(chan struct{})
	return l.buf.Write(p)
}

// Logger logs text lines, debug level included, into l.
func (l *Logs) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// String is everything logged so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Count is how many lines contain s.
func (l *Logs) Count(s string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// WaitFor waits until n lines contain s, failing the test after timeout.
func (l *Logs) WaitFor(t testing.TB, s string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		changed := l.changed
		l.mu.Unlock()
		if l.Count(s) >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %d log lines with %q; log:\n%s", timeout, n, s, l.String())
		}
	}
}

// JobsDone is how many jobs a kqueue's text log says simply succeeded:
// its "job done" entries, and the counts of those past [log]
// jobs_done_per_second.
func JobsDone(log string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		switch {
		case strings.Contains(line, `msg="job done"`):
			n++
		case strings.Contains(line, `msg="jobs done beyond`):
			if _, count, ok := strings.Cut(line, " count="); ok {
				count, _, _ = strings.Cut(count, " ")
				c, _ := strconv.Atoi(count)
				n += c
			}
		}
	}
	return n
}
