// Package journal logs to journald with its native protocol, so each job's
// fields (QUEUE, JOB_UUID, OUTCOME, …) are fields of the journal entry and
// `journalctl -u kqueue@default JOB_UUID=…` tells one job's story.
package journal

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kqueue/kqueue/internal/cut"
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
// record. A busy instance writes one per job: the entry is built in one
// buffer, without a string per field.
type Handler struct {
	conn  *net.UnixConn
	level slog.Leveler
	pre   []byte // SYSLOG_IDENTIFIER and the fields of WithAttrs, as written
	group string
	mu    *sync.Mutex
	memfd func(name string, flags int) (int, error) // unix.MemfdCreate; a test's fault
}

// NewHandler connects to journald's socket at path (Socket in production).
func NewHandler(path, ident string, level slog.Leveler) (*Handler, error) {
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("journald: %w", err)
	}
	return &Handler{conn: c, level: level, pre: appendField(nil, "SYSLOG_IDENTIFIER", ident), mu: &sync.Mutex{},
		memfd: unix.MemfdCreate}, nil
}

func (h *Handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.pre = slices.Clip(h.pre)
	for _, a := range as {
		c.pre = appendEntryField(c.pre, h.group, a, maxValue)
	}
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

// Handle sends the record's entry: its attributes as fields, and its
// message, with the head of its error if it has one, so `journalctl -u`
// alone says what went wrong.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	var space [1024]byte
	b := h.entry(space[:0], r, maxValue)
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.conn.Write(b)
	if errors.Is(err, syscall.EMSGSIZE) || errors.Is(err, syscall.ENOBUFS) {
		if err = h.sendInFile(b); err != nil {
			// No memory file (a sandbox refusing memfd_create, say): the
			// entry with each value's head, in a datagram.
			_, err = h.conn.Write(h.entry(b[:0], r, inDatagram))
		}
	}
	return err
}

// An entry's string values are cut past maxValue bytes (no one reads more
// in a journal, and journald holds an entry whole while it stores it),
// past inDatagram when the entry must fit in a datagram; the error in
// MESSAGE past inMessage (ERROR has more of it).
const (
	maxValue   = 4 << 20
	inDatagram = 8 << 10
	inMessage  = 8 << 10
)

// entry appends r's entry to b, its string values cut past limit.
func (h *Handler) entry(b []byte, r slog.Record, limit int) []byte {
	b = append(b, h.pre...)
	b = append(b, "PRIORITY="...)
	b = strconv.AppendInt(b, int64(priority(r.Level)), 10)
	b = append(b, '\n')
	msg, failed := r.Message, false
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "error" && !failed {
			msg, failed = msg+": "+cut.Head(a.Value.String(), inMessage), true
		}
		b = appendEntryField(b, h.group, a, limit)
		return true
	})
	return appendField(b, "MESSAGE", msg)
}

// sendInFile sends an entry too large for one datagram (above about 200
// KiB: a job whose error quotes a bulk insert's SQL) as journald takes it:
// written to a memory file, sealed, and the file passed over the socket.
func (h *Handler) sendInFile(entry []byte) error {
	fd, err := h.memfd("journal-entry", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return fmt.Errorf("journald: an entry of %d bytes: %w", len(entry), err)
	}
	f := os.NewFile(uintptr(fd), "journal-entry")
	defer f.Close()
	if _, err := f.Write(entry); err != nil {
		return fmt.Errorf("journald: an entry of %d bytes: %w", len(entry), err)
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL); err != nil {
		return fmt.Errorf("journald: an entry of %d bytes: sealing: %w", len(entry), err)
	}
	// On the connected socket itself: net refuses WriteMsgUnix on one.
	raw, err := h.conn.SyscallConn()
	if err != nil {
		return err
	}
	rights := unix.UnixRights(int(f.Fd()))
	if werr := raw.Write(func(s uintptr) bool {
		err = unix.Sendmsg(int(s), nil, rights, nil, 0)
		return err != unix.EAGAIN
	}); werr != nil {
		return werr
	}
	if err != nil {
		return fmt.Errorf("journald: an entry of %d bytes: %w", len(entry), err)
	}
	return nil
}

// appendEntryField appends a's field, or its group's fields, a string cut
// past limit bytes; a duration named "duration" is DURATION_MS, in
// milliseconds.
func appendEntryField(b []byte, group string, a slog.Attr, limit int) []byte {
	v := a.Value
	if v.Kind() == slog.KindLogValuer {
		v = v.Resolve()
	}
	switch v.Kind() {
	case slog.KindGroup:
		for _, g := range v.Group() {
			b = appendEntryField(b, group+a.Key+"_", g, limit)
		}
		return b
	case slog.KindDuration:
		if a.Key == "duration" {
			b = append(b, "DURATION_MS="...)
			b = strconv.AppendFloat(b, float64(v.Duration())/float64(time.Millisecond), 'f', 3, 64)
			return append(b, '\n')
		}
	case slog.KindInt64:
		b = appendName(b, group, a.Key)
		b = strconv.AppendInt(append(b, '='), v.Int64(), 10)
		return append(b, '\n')
	case slog.KindUint64:
		b = appendName(b, group, a.Key)
		b = strconv.AppendUint(append(b, '='), v.Uint64(), 10)
		return append(b, '\n')
	}
	return appendValue(appendName(b, group, a.Key), cut.Head(v.String(), limit))
}

// appendName appends the field name of group and key, as fieldName makes
// it, without making it when key alone is one already but for its case.
func appendName(b []byte, group, key string) []byte {
	if group != "" || key == "" || !letter(nameByte[key[0]]) {
		return append(b, fieldName(group+key)...)
	}
	n := len(b)
	b = append(b, key...)
	name := b[n:]
	for i, c := range name {
		u := nameByte[c]
		if u == 0 {
			return append(b[:n], fieldName(key)...)
		}
		name[i] = u
	}
	return b
}

// letter reports whether c is an upper-case letter: what a field name
// begins with.
func letter(c byte) bool { return 'A' <= c && c <= 'Z' }

// nameByte is a byte of a key as in a field name (a letter in upper case,
// a digit or '_'), or 0 for one that is not in names.
var nameByte = func() (t [256]byte) {
	for c := range t {
		switch {
		case 'a' <= c && c <= 'z':
			t[c] = byte(c) - ('a' - 'A')
		case 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_':
			t[c] = byte(c)
		}
	}
	return t
}()

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

// appendField appends the field name=value.
func appendField(b []byte, name, value string) []byte {
	return appendValue(append(b, name...), value)
}

// appendValue appends a field's value after its name. A value with a
// newline takes the binary form, so it can never start a field of its own
// (no "\nPRIORITY=0" injection).
func appendValue(b []byte, value string) []byte {
	if strings.IndexByte(value, '\n') < 0 {
		b = append(b, '=')
		b = append(b, value...)
		return append(b, '\n')
	}
	b = append(b, '\n')
	b = binary.LittleEndian.AppendUint64(b, uint64(len(value)))
	b = append(b, value...)
	return append(b, '\n')
}
