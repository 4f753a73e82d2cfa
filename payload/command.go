package payload

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// Value is one PHP value read from serialize() output: nil, bool, int64,
// float64, string, or *Object / []Value for what kqueue does not look into
// (arrays and nested objects are skipped, not kept).
type Value any

// Object is a serialized PHP object's class and its scalar properties, by
// unmangled name (protected "\0*\0name" and private "\0Class\0name" both
// become "name"). Arrays and nested objects are left out.
type Object struct {
	Class string
	Props map[string]Value
}

// ErrSerialized is wrapped by every error ReadCommand returns.
var ErrSerialized = errors.New("malformed PHP serialized data")

// maxDepth bounds nesting so hostile input cannot exhaust the stack.
const maxDepth = 512

// ReadCommand reads data.command of an object job: PHP's serialize() of the
// job object. It reads the object's own scalar properties and skips the
// rest.
func ReadCommand(s []byte) (*Object, error) {
	r := &reader{b: s}
	if len(s) == 0 || s[0] != 'O' {
		return nil, fmt.Errorf("%w: not a serialized object", ErrSerialized)
	}
	v, err := r.value(0, true)
	if err != nil {
		return nil, err
	}
	if r.pos != len(s) {
		return nil, r.fail("trailing data")
	}
	return v.(*Object), nil
}

type reader struct {
	b   []byte
	pos int
}

func (r *reader) fail(what string) error {
	return fmt.Errorf("%w: %s at offset %d", ErrSerialized, what, r.pos)
}

func (r *reader) expect(c byte) error {
	if r.pos >= len(r.b) || r.b[r.pos] != c {
		return r.fail(fmt.Sprintf("want %q", c))
	}
	r.pos++
	return nil
}

// until reads up to (not including) the byte c and skips c.
func (r *reader) until(c byte) ([]byte, error) {
	i := bytes.IndexByte(r.b[r.pos:], c)
	if i < 0 {
		return nil, r.fail(fmt.Sprintf("no %q", c))
	}
	tok := r.b[r.pos : r.pos+i]
	r.pos += i + 1
	return tok, nil
}

func (r *reader) int(end byte) (int64, error) {
	tok, err := r.until(end)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(string(tok), 10, 64)
	if err != nil {
		return 0, r.fail("bad integer")
	}
	return n, nil
}

// length reads a non-negative count that must fit in what is left.
func (r *reader) length(end byte) (int, error) {
	n, err := r.int(end)
	if err != nil {
		return 0, err
	}
	if n < 0 || n > int64(len(r.b)-r.pos) {
		return 0, r.fail("bad length")
	}
	return int(n), nil
}

// quoted reads "<n bytes>".
func (r *reader) quoted(n int) ([]byte, error) {
	if err := r.expect('"'); err != nil {
		return nil, err
	}
	if r.pos+n > len(r.b) {
		return nil, r.fail("string runs past the end")
	}
	s := r.b[r.pos : r.pos+n]
	r.pos += n
	return s, r.expect('"')
}

// value reads one value; keep says whether the caller wants objects'
// properties (only the top object's are kept).
func (r *reader) value(depth int, keep bool) (Value, error) {
	if depth > maxDepth {
		return nil, r.fail("nested too deep")
	}
	if r.pos+1 >= len(r.b) {
		return nil, r.fail("truncated")
	}
	kind := r.b[r.pos]
	if kind == 'N' {
		r.pos++
		return nil, r.expect(';')
	}
	r.pos++
	if err := r.expect(':'); err != nil {
		return nil, err
	}
	switch kind {
	case 'b':
		n, err := r.int(';')
		if err != nil || (n != 0 && n != 1) {
			return nil, r.fail("bad bool")
		}
		return n == 1, nil
	case 'i':
		return r.int(';')
	case 'd':
		tok, err := r.until(';')
		if err != nil {
			return nil, err
		}
		switch string(tok) {
		case "INF", "-INF", "NAN":
			return nil, nil
		}
		f, err := strconv.ParseFloat(string(tok), 64)
		if err != nil {
			return nil, r.fail("bad float")
		}
		return f, nil
	case 's':
		n, err := r.length(':')
		if err != nil {
			return nil, err
		}
		s, err := r.quoted(n)
		if err != nil {
			return nil, err
		}
		return string(s), r.expect(';')
	case 'r', 'R':
		_, err := r.int(';')
		return nil, err
	case 'E': // enum case: E:len:"Class:Case";
		n, err := r.length(':')
		if err != nil {
			return nil, err
		}
		if _, err := r.quoted(n); err != nil {
			return nil, err
		}
		return nil, r.expect(';')
	case 'a':
		n, err := r.length(':')
		if err != nil {
			return nil, err
		}
		if err := r.expect('{'); err != nil {
			return nil, err
		}
		for range n {
			if _, err := r.value(depth+1, false); err != nil { // key
				return nil, err
			}
			if _, err := r.value(depth+1, false); err != nil {
				return nil, err
			}
		}
		return []Value(nil), r.expect('}')
	case 'O', 'C':
		n, err := r.length(':')
		if err != nil {
			return nil, err
		}
		class, err := r.quoted(n)
		if err != nil {
			return nil, err
		}
		if err := r.expect(':'); err != nil {
			return nil, err
		}
		if kind == 'C' { // Serializable: C:len:"Class":n:{<n bytes>}
			m, err := r.length(':')
			if err != nil {
				return nil, err
			}
			if err := r.expect('{'); err != nil {
				return nil, err
			}
			if r.pos+m > len(r.b) {
				return nil, r.fail("data runs past the end")
			}
			r.pos += m
			return &Object{Class: string(class)}, r.expect('}')
		}
		count, err := r.length(':')
		if err != nil {
			return nil, err
		}
		if err := r.expect('{'); err != nil {
			return nil, err
		}
		obj := &Object{Class: string(class)}
		if keep {
			obj.Props = make(map[string]Value, count)
		}
		for range count {
			name, err := r.value(depth+1, false)
			if err != nil {
				return nil, err
			}
			// Objects with __serialize() may use integer keys.
			key, isString := name.(string)
			if _, isInt := name.(int64); !isString && !isInt {
				return nil, r.fail("property name is not a string or an integer")
			}
			v, err := r.value(depth+1, false)
			if err != nil {
				return nil, err
			}
			if keep && isString {
				if _, nested := v.(*Object); !nested {
					obj.Props[unmangle(key)] = v
				}
			}
		}
		return obj, r.expect('}')
	}
	r.pos -= 2
	return nil, r.fail(fmt.Sprintf("unknown type %q", kind))
}

// unmangle strips PHP's visibility prefix from a property name.
func unmangle(name string) string {
	if len(name) > 0 && name[0] == 0 {
		if i := bytes.IndexByte([]byte(name[1:]), 0); i >= 0 {
			return name[i+2:]
		}
	}
	return name
}
