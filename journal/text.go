package journal

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/kqueue/kqueue/internal/swar"
)

// textHandler writes the lines slog's TextHandler writes, byte for byte,
// for the records a busy instance logs by the thousand — one per job, its
// attributes strings, numbers and durations, no groups — straight into the
// line batcher: without the TextHandler's general machinery (a pooled
// buffer, a deferred recover and a Resolve per value), which cost a tenth
// of the daemon's CPU per no-op job. Any other record, and a handler with
// a group, is the TextHandler's own (inner, which has the same attributes).
type textHandler struct {
	inner slog.Handler
	level slog.Leveler
	w     *lineBatcher
	pre   []byte // the attributes added by WithAttrs, as written, each after a space
	last  *atomic.Pointer[stamp]
}

// stamp is a time as written, for the lines of the same millisecond.
type stamp struct {
	ms   int64 // Unix milliseconds
	loc  *time.Location
	text string
}

func newTextHandler(w *lineBatcher, level slog.Leveler) *textHandler {
	return &textHandler{inner: slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}), level: level, w: w,
		last: new(atomic.Pointer[stamp])}
}

func (h *textHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *textHandler) WithAttrs(as []slog.Attr) slog.Handler {
	inner := h.inner.WithAttrs(as)
	pre := slices.Clip(h.pre)
	for _, a := range as {
		var ok bool
		if pre, ok = appendAttr(pre, a); !ok {
			return inner
		}
	}
	return &textHandler{inner: inner, level: h.level, w: h.w, pre: pre, last: h.last}
}

func (h *textHandler) WithGroup(name string) slog.Handler { return h.inner.WithGroup(name) }

func (h *textHandler) Handle(ctx context.Context, r slog.Record) error {
	var space [512]byte
	b := space[:0]
	if !r.Time.IsZero() {
		b = append(b, "time="...)
		b = h.appendTime(b, r.Time.Round(0))
		b = append(b, ' ')
	}
	b = append(b, "level="...)
	b = appendText(b, r.Level.String())
	b = append(b, " msg="...)
	b = appendText(b, r.Message)
	b = append(b, h.pre...)
	ok := true
	r.Attrs(func(a slog.Attr) bool {
		b, ok = appendAttr(b, a)
		return ok
	})
	if !ok {
		return h.inner.Handle(ctx, r)
	}
	b = append(b, '\n')
	_, err := h.w.Write(b)
	return err
}

// appendAttr appends " key=value" as the TextHandler writes it; false for
// an attribute of a kind it leaves to the TextHandler (or with no key).
func appendAttr(b []byte, a slog.Attr) ([]byte, bool) {
	if a.Key == "" {
		return b, false
	}
	v := a.Value
	n := len(b)
	b = append(b, ' ')
	b = appendText(b, a.Key)
	b = append(b, '=')
	switch v.Kind() {
	case slog.KindString:
		b = appendText(b, v.String())
	case slog.KindInt64:
		b = strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindUint64:
		b = strconv.AppendUint(b, v.Uint64(), 10)
	case slog.KindFloat64:
		b = strconv.AppendFloat(b, v.Float64(), 'g', -1, 64)
	case slog.KindBool:
		b = strconv.AppendBool(b, v.Bool())
	case slog.KindDuration:
		b = append(b, v.Duration().String()...)
	default:
		return b[:n], false
	}
	return b, true
}

// appendTime appends t as appendTime does, written once a millisecond:
// a busy instance logs many lines in each.
func (h *textHandler) appendTime(b []byte, t time.Time) []byte {
	ms := t.UnixMilli()
	if ms < 0 {
		return appendTime(b, t) // before 1970, milliseconds round the other way
	}
	if s := h.last.Load(); s != nil && s.ms == ms && s.loc == t.Location() {
		return append(b, s.text...)
	}
	n := len(b)
	b = appendTime(b, t)
	h.last.Store(&stamp{ms: ms, loc: t.Location(), text: string(b[n:])})
	return b
}

// appendTime is the TextHandler's time: RFC 3339 with milliseconds, all
// three digits always written.
func appendTime(b []byte, t time.Time) []byte {
	n := len(b)
	b = t.Truncate(time.Millisecond).Add(time.Millisecond/10).AppendFormat(b, time.RFC3339Nano)
	const millis = len("2006-01-02T15:04:05.000")
	return append(b[:n+millis], b[n+millis+1:]...) // the fourth digit out
}

// appendText appends s, quoted as Go quotes it when the TextHandler would:
// empty, or holding a space, '=', '"', an ASCII control character other
// than DEL, or a rune that is a space, not printable or not UTF-8.
//
// Most of what a job's line holds is printable ASCII, read here eight
// bytes at a time: as is when it has no space or '=', in plain quotes when
// it has one but no backslash. Anything else takes the long way.
func appendText(b []byte, s string) []byte {
	var c uint8
	if len(s) < 8 {
		for i := 0; i < len(s); i++ {
			c |= textClass[s[i]]
		}
	} else {
		var spaced, slashed, other uint64
		for i := 0; ; i += 8 {
			if i+8 > len(s) {
				i = len(s) - 8 // the last word again, from its end
			}
			w := word(s[i : i+8])
			spaced |= swar.Equal(w, ' ') | swar.Equal(w, '=')
			slashed |= swar.Equal(w, '\\')
			other |= swar.Below(w, ' ') | swar.High(w) | swar.Equal(w, 0x7f) | swar.Equal(w, '"')
			if i+8 == len(s) {
				break
			}
		}
		c = classOf(spaced, textSpaced) | classOf(slashed, textSlashed) | classOf(other, textOther)
	}
	switch {
	case c&textOther != 0:
		if needsQuoting(s) {
			return strconv.AppendQuote(b, s)
		}
		return append(b, s...)
	case s == "" || c == textSpaced:
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	case c&textSpaced != 0:
		return strconv.AppendQuote(b, s) // a backslash to escape
	}
	return append(b, s...)
}

// word is the eight bytes of s (of eight) as a little-endian number: one
// load.
func word(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// The classes of bytes appendText tells apart.
const (
	textSpaced  = 1 << iota // a space or '=': quoted
	textSlashed             // a backslash: escaped if quoted
	textOther               // a control character, DEL, '"' or not ASCII: see needsQuoting
)

var textClass = func() (t [256]uint8) {
	for c := range t {
		switch {
		case c == ' ' || c == '=':
			t[c] = textSpaced
		case c == '\\':
			t[c] = textSlashed
		case c < ' ' || c >= 0x7f || c == '"':
			t[c] = textOther
		}
	}
	return t
}()

func classOf(mask uint64, class uint8) uint8 {
	if mask != 0 {
		return class
	}
	return 0
}

func needsQuoting(s string) bool {
	if s == "" {
		return true
	}
	// Eight bytes at a time while they are plain ASCII (a job's line is
	// mostly that); from the first word that is not, byte by byte.
	i := 0
	for ; i+8 <= len(s); i += 8 {
		if notPlain(word(s[i : i+8])) {
			break
		}
	}
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if quoted[c] {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

// notPlain reports whether a byte of w is not printable ASCII that stays
// unquoted: a space or below, '=', '"', or one of 0x80 and above.
func notPlain(w uint64) bool {
	return swar.Below(w, 0x21)|swar.Equal(w, '=')|swar.Equal(w, '"')|swar.High(w) != 0
}

// quoted marks the ASCII bytes that make a value quoted: a space or
// below, '=' and '"'.
var quoted = func() (t [utf8.RuneSelf]bool) {
	for c := range t {
		t[c] = c <= ' ' || c == '=' || c == '"'
	}
	return t
}()
