package payload

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"unsafe"

	"github.com/kqueue/kqueue/internal/swar"
)

// A payload is read in one pass over its bytes: every job goes through it
// twice (poller and dispatcher), and encoding/json scans a document three
// times and allocates for every field. The scanner below checks the whole
// document against the JSON grammar (RFC 8259, as PHP's json_decode does)
// and hands back the members of the top-level object as raw values.

// maxJSONDepth is how deep arrays and objects may nest: as deep as Redis'
// cjson reads, which makes the copy of a Redis job with its attempt
// counted, as Laravel's pop does (PHP's json_decode stops at 512 by
// default: deeper, no Laravel could run the job either).
const maxJSONDepth = 1000

// errTooDeep: JSON nested deeper than maxJSONDepth.
var errTooDeep = fmt.Errorf("nested deeper than %d", maxJSONDepth)

var errSyntax = errors.New("not a JSON object: invalid JSON")

// members checks that b is one JSON object (surrounded by whitespace at
// most) and calls fn with each member's key (its raw bytes between the
// quotes, escapes and all) and value (raw JSON), in order. For a member
// whose value is an object, descend (if not nil) is asked first whether
// to call within with that object's members as well: what a caller needs
// from inside one is read in the same pass.
func members(b []byte, fn func(key, value []byte), descend func(key []byte) bool, within func(key, value []byte)) error {
	i := skipSpace(b, 0)
	if i == len(b) || b[i] != '{' {
		return errors.New("not a JSON object")
	}
	end, err := object(b, i, 1, fn, descend, within)
	if err != nil {
		return err
	}
	if skipSpace(b, end) != len(b) {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// object scans the object at b[i] == '{', calling fn (if not nil) for its
// members (and descend and within, see members), and returns the index
// after it.
func object(b []byte, i, depth int, fn func(key, value []byte), descend func(key []byte) bool, within func(key, value []byte)) (int, error) {
	if depth > maxJSONDepth {
		return 0, errTooDeep
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i == len(b) || b[i] != '"' {
			return 0, syntaxAt(b, i, "a string key")
		}
		keyStart := i
		kEnd, err := str(b, i)
		if err != nil {
			return 0, err
		}
		i = skipSpace(b, kEnd)
		if i == len(b) || b[i] != ':' {
			return 0, syntaxAt(b, i, "':'")
		}
		vStart := skipSpace(b, i+1)
		var vEnd int
		if descend != nil && vStart < len(b) && b[vStart] == '{' && descend(b[keyStart+1:kEnd-1]) {
			vEnd, err = object(b, vStart, depth+1, within, nil, nil)
		} else {
			vEnd, err = value(b, vStart, depth)
		}
		if err != nil {
			return 0, err
		}
		if fn != nil {
			fn(b[keyStart+1:kEnd-1], b[vStart:vEnd])
		}
		i = skipSpace(b, vEnd)
		switch {
		case i == len(b):
			return 0, syntaxAt(b, i, "',' or '}'")
		case b[i] == '}':
			return i + 1, nil
		case b[i] != ',':
			return 0, syntaxAt(b, i, "',' or '}'")
		}
		i = skipSpace(b, i+1)
	}
}

// value scans the JSON value at b[i] and returns the index after it.
func value(b []byte, i, depth int) (int, error) {
	if i == len(b) {
		return 0, syntaxAt(b, i, "a value")
	}
	switch c := b[i]; {
	case c == '{':
		return object(b, i, depth+1, nil, nil, nil)
	case c == '[':
		return array(b, i, depth+1)
	case c == '"':
		return str(b, i)
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	case c == '-' || isDigit(c):
		return number(b, i)
	}
	return 0, syntaxAt(b, i, "a value")
}

func array(b []byte, i, depth int) (int, error) {
	if depth > maxJSONDepth {
		return 0, errTooDeep
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for {
		end, err := value(b, i, depth)
		if err != nil {
			return 0, err
		}
		i = skipSpace(b, end)
		switch {
		case i == len(b):
			return 0, syntaxAt(b, i, "',' or ']'")
		case b[i] == ']':
			return i + 1, nil
		case b[i] != ',':
			return 0, syntaxAt(b, i, "',' or ']'")
		}
		i = skipSpace(b, i+1)
	}
}

// str scans the string at b[i] == '"' and returns the index after it. The
// bytes are valid UTF-8 already (Parse checks). A serialized command is
// hundreds of bytes with an escape every few: plain bytes are skipped
// eight at a time, and the escapes Laravel writes (\" and \\) take one
// table lookup.
func str(b []byte, i int) (int, error) {
	for i++; ; {
		for i+8 <= len(b) {
			if m := special(binary.LittleEndian.Uint64(b[i:])); m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		for i < len(b) && plain[b[i]] {
			i++
		}
		if i == len(b) {
			return 0, syntaxAt(b, i, "the end of a string")
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, nil
		case c < 0x20:
			return 0, syntaxAt(b, i, "no control character in a string")
		case i+1 < len(b) && shortEscape[b[i+1]]:
			i += 2
		case i+1 == len(b):
			return 0, syntaxAt(b, i+1, "an escape")
		case b[i+1] != 'u':
			return 0, syntaxAt(b, i+1, "a valid escape")
		case i+5 >= len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]):
			return 0, syntaxAt(b, i+1, "four hex digits after \\u")
		default:
			i += 6
		}
	}
}

// shortEscape marks the bytes that follow a backslash in a two-byte escape.
var shortEscape = func() (t [256]bool) {
	for _, c := range `"\/bfnrt` {
		t[c] = true
	}
	return t
}()

// special marks the bytes of w that are '"', '\\' or below 0x20 (see swar).
func special(w uint64) uint64 {
	return swar.Equal(w, '"') | swar.Equal(w, '\\') | swar.Below(w, 0x20)
}

// plain marks the bytes a string holds as they are: all but '"', '\\' and
// control characters.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func number(b []byte, i int) (int, error) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && isDigit(b[i]):
		i = digits(b, i)
	default:
		return 0, syntaxAt(b, i, "a digit")
	}
	if i < len(b) && b[i] == '.' {
		if i+1 == len(b) || !isDigit(b[i+1]) {
			return 0, syntaxAt(b, i+1, "a digit")
		}
		i = digits(b, i+1)
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i == len(b) || !isDigit(b[i]) {
			return 0, syntaxAt(b, i, "a digit")
		}
		i = digits(b, i)
	}
	return i, nil
}

func digits(b []byte, i int) int {
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	return i
}

func literal(b []byte, i int, lit string) (int, error) {
	if !bytes.HasPrefix(b[i:], []byte(lit)) {
		return 0, syntaxAt(b, i, lit)
	}
	return i + len(lit), nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isHex(c byte) bool { return isDigit(c) || 'a' <= c|0x20 && c|0x20 <= 'f' }

func syntaxAt(b []byte, i int, want string) error {
	if i >= len(b) {
		return fmt.Errorf("%w: unexpected end, want %s", errSyntax, want)
	}
	return fmt.Errorf("%w at offset %d: want %s", errSyntax, i, want)
}

// unquote returns the string a raw JSON string token stands for (escapes
// resolved as encoding/json does), or ok false if raw is not a string.
func unquote(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	first := bytes.IndexByte(inner, '\\')
	if first < 0 {
		return string(inner), true
	}
	if len(inner) <= maxNameLen {
		if s, ok := names.get(inner); ok {
			return s, true
		}
	}
	// Laravel escapes every backslash and quote of a class name and a
	// serialized command; \u escapes (surrogates and all) are left to
	// encoding/json.
	out := make([]byte, first, len(inner))
	copy(out, inner)
	for i := first; i < len(inner); i++ {
		c := inner[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		switch inner[i] {
		case '"', '\\', '/':
			out = append(out, inner[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		default: // 'u'
			return unquoteJSON(raw)
		}
	}
	// The string takes out's bytes over: nothing else holds them.
	str := unsafe.String(unsafe.SliceData(out), len(out))
	if len(inner) <= maxNameLen {
		names.put(inner, str)
	}
	return str, true
}

// names are the escaped strings short enough to be class names
// (displayName, data.commandName, and job — every object job's is
// Illuminate\\Queue\\CallQueuedHandler@call —, which PHP escapes),
// unquoted once: a queue holds few classes and many jobs of each.
var names = nameCache{m: map[string]string{}}

// maxNameLen bounds the strings names keeps (PHP's class names are
// rarely longer), and maxNames how many: when full, it starts over.
const (
	maxNameLen = 128
	maxNames   = 1024
)

type nameCache struct {
	mu sync.Mutex
	m  map[string]string // escaped -> unquoted
}

func (c *nameCache) get(escaped []byte) (string, bool) {
	c.mu.Lock()
	s, ok := c.m[string(escaped)]
	c.mu.Unlock()
	return s, ok
}

func (c *nameCache) put(escaped []byte, s string) {
	c.mu.Lock()
	if len(c.m) >= maxNames {
		clear(c.m)
	}
	c.m[string(escaped)] = s
	c.mu.Unlock()
}

// unquoteJSON is unquote by encoding/json, for \u escapes.
func unquoteJSON(raw []byte) (string, bool) {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}
