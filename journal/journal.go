// Package journal logs to journald with its native protocol, so each job's
// fields (QUEUE, JOB_UUID, OUTCOME, …) are fields of the journal entry and
// `journalctl -u kqueue@default JOB_UUID=…` tells one job's story.
package journal

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Socket is journald's native socket.
const Socket = "/run/systemd/journal/socket"

// StderrIsJournal reports whether stderr is connected to journald, as
// $JOURNAL_STREAM says (device:inode of the stream).
func StderrIsJournal() bool {
	dev, ino, ok := strings.Cut(os.Getenv("JOURNAL_STREAM"), ":")
	if !ok {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(2, &st); err != nil {
		return false
	}
	return strconv.FormatUint(st.Dev, 10) == dev && strconv.FormatUint(st.Ino, 10) == ino
}

// Handler is a slog.Handler that writes one native journal entry per
// record.
type Handler struct {
	conn  *net.UnixConn
	level slog.Leveler
	ident string
	attrs []slog.Attr
	group string
	mu    *sync.Mutex
}

// NewHandler connects to journald's socket at path (Socket in production).
func NewHandler(path, ident string, level slog.Leveler) (*Handler, error) {
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("journald: %w", err)
	}
	return &Handler{conn: c, level: level, ident: ident, mu: &sync.Mutex{}}, nil
}

func (h *Handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr{}, h.attrs...), as...)
	return &c
}

func (h *Handler) WithGroup(name string) slog.Handler {
	c := *h
	c.group = h.group + name + "_"
	return &c
}

// priority maps slog levels to syslog priorities.
func priority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3
	case l >= slog.LevelWarn:
		return 4
	case l >= slog.LevelInfo:
		return 6
	}
	return 7
}

func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	var b bytes.Buffer
	field(&b, "MESSAGE", message(r))
	field(&b, "PRIORITY", strconv.Itoa(priority(r.Level)))
	field(&b, "SYSLOG_IDENTIFIER", h.ident)
	for _, a := range h.attrs {
		h.attr(&b, a)
	}
	r.Attrs(func(a slog.Attr) bool {
		h.attr(&b, a)
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.conn.Write(b.Bytes())
	return err
}

// message is the entry's text: the record's message, and its error if it has
// one, so `journalctl -u` alone says what went wrong.
func message(r slog.Record) string {
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "error" {
			msg += ": " + a.Value.String()
			return false
		}
		return true
	})
	return msg
}

func (h *Handler) attr(b *bytes.Buffer, a slog.Attr) {
	v := a.Value.Resolve()
	key := h.group + a.Key
	switch {
	case v.Kind() == slog.KindDuration && a.Key == "duration":
		field(b, "DURATION_MS", strconv.FormatFloat(float64(v.Duration())/float64(time.Millisecond), 'f', 3, 64))
	case v.Kind() == slog.KindGroup:
		for _, g := range v.Group() {
			h.WithGroup(a.Key).(*Handler).attr(b, g)
		}
	default:
		field(b, fieldName(key), v.String())
	}
}

// fieldName turns a slog key into a journal field name: upper case,
// letters, digits and underscores, not starting with an underscore (those
// are journald's own).
func fieldName(key string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(key) {
		if r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	name := strings.TrimLeft(b.String(), "_0123456789")
	if name == "" {
		name = "FIELD"
	}
	return name
}

// field writes one field. Values with a newline use the binary form, so a
// value can never start a field of its own (no "\nPRIORITY=0" injection).
func field(b *bytes.Buffer, name, value string) {
	if !strings.ContainsAny(value, "\n") {
		b.WriteString(name)
		b.WriteByte('=')
		b.WriteString(value)
		b.WriteByte('\n')
		return
	}
	b.WriteString(name)
	b.WriteByte('\n')
	binary.Write(b, binary.LittleEndian, uint64(len(value)))
	b.WriteString(value)
	b.WriteByte('\n')
}
