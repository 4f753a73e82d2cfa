// Package payload reads the JSON payload of a Laravel queue job: the fields
// kqueue needs to schedule, time and describe a job. PHP reads the rest.
package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// Payload is what kqueue reads from a job's JSON. Absent or null fields are
// zero.
type Payload struct {
	UUID          string
	DisplayName   string
	Job           string // "Illuminate\\Queue\\CallQueuedHandler@call" for object jobs
	CommandName   string // data.commandName
	command       []byte // data.command as it stands in the JSON: see Command
	MaxTries      *int
	MaxExceptions *int
	FailOnTimeout bool
	Backoff       string // "5,10"; "" when absent
	Timeout       *time.Duration
	RetryUntil    *int64   // Unix seconds
	Attempts      int      // as stored: the pre-increment count
	CreatedAt     *int64   // Unix seconds, when pushed (Laravel 11 and later)
	Tags          []string // Horizon's tags, when Horizon pushed it
	// MarkedIsolated: the payload carries the kqueue PHP library's mark,
	// {"kqueue": {"isolated": true}}, which its payload hook
	// (Queue::createPayloadUsing) adds for a job whose class implements
	// ShouldBeIsolated.
	MarkedIsolated bool
}

// ErrMalformed is wrapped by every error Parse returns.
var ErrMalformed = errors.New("malformed job payload")

type wire struct {
	UUID, DisplayName, Job, MaxTries, MaxExceptions, FailOnTimeout,
	Backoff, Timeout, RetryUntil, Data, Attempts, CreatedAt, Tags, KQueue []byte
	// data.commandName and data.command (a string only) of the last data
	// object, read as the scan went through it (inData); a wire filled
	// another way (the tests' encoding/json reference) reads Data again.
	inData                   bool
	commandName, commandJSON []byte
}

// dataMember notes a member of the data object the scan is in.
func (w *wire) dataMember(key, value []byte) {
	switch string(keyBytes(key)) {
	case "commandName":
		w.commandName = value
	case "command":
		if len(value) > 0 && value[0] == '"' {
			w.commandJSON = value
		}
	}
}

// field returns where the member named key goes, or nil.
func (w *wire) field(key []byte) *[]byte {
	switch string(key) {
	case "uuid":
		return &w.UUID
	case "displayName":
		return &w.DisplayName
	case "job":
		return &w.Job
	case "maxTries":
		return &w.MaxTries
	case "maxExceptions":
		return &w.MaxExceptions
	case "failOnTimeout":
		return &w.FailOnTimeout
	case "backoff":
		return &w.Backoff
	case "timeout":
		return &w.Timeout
	case "retryUntil":
		return &w.RetryUntil
	case "data":
		return &w.Data
	case "attempts":
		return &w.Attempts
	case "createdAt":
		return &w.CreatedAt
	case "tags":
		return &w.Tags
	case "kqueue":
		return &w.KQueue
	}
	return nil
}

// Parse reads a payload. It accepts both Laravel's own encoding and the
// reserved copy Redis' cjson writes (other key order, {} for [], %.14g
// numbers). Keys match exactly and the last of duplicates wins, as with
// PHP's json_decode.
func Parse(raw []byte) (*Payload, error) {
	return parse(raw, nil)
}

// ParseRow reads the payload of a row of Laravel's jobs table (the
// database queue), whose attempts are the row's: the payload has none.
func ParseRow(raw []byte, attempts int) (*Payload, error) {
	return parse(raw, &attempts)
}

// parse reads a payload; attempts, when given, are kept outside it.
func parse(raw []byte, attempts *int) (*Payload, error) {
	if !utf8.Valid(raw) {
		return nil, fmt.Errorf("%w: not valid UTF-8, which PHP's json_decode refuses", ErrMalformed)
	}
	var w wire
	err := members(raw, func(key, value []byte) {
		if f := w.field(keyBytes(key)); f != nil {
			*f = value
		}
	}, func(key []byte) bool {
		if string(keyBytes(key)) != "data" {
			return false
		}
		w.inData, w.commandName, w.commandJSON = true, nil, nil // the last data wins
		return true
	}, w.dataMember)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if attempts != nil {
		w.Attempts = []byte(strconv.Itoa(*attempts))
	}
	return w.payload()
}

// keyBytes is a member's key from its raw bytes, escapes resolved.
func keyBytes(raw []byte) []byte {
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw
	}
	s, _ := unquote(append(append([]byte{'"'}, raw...), '"'))
	return []byte(s)
}

// payload checks the fields and converts them.
func (w *wire) payload() (*Payload, error) {
	p := &Payload{}
	var err error
	if p.Job, err = strField("job", w.Job); err != nil {
		return nil, err
	} else if p.Job == "" {
		return nil, fmt.Errorf("%w: no \"job\" field: this is not a Laravel queue payload", ErrMalformed)
	}
	if p.UUID, err = strField("uuid", w.UUID); err != nil {
		return nil, err
	} else if p.UUID == "" {
		return nil, fmt.Errorf("%w: no \"uuid\" field: this is not a Laravel queue payload", ErrMalformed)
	}
	if isNull(w.Data) {
		return nil, fmt.Errorf("%w: no \"data\" field: this is not a Laravel queue payload", ErrMalformed)
	}
	if p.DisplayName, err = strField("displayName", w.DisplayName); err != nil {
		return nil, err
	}
	if p.Attempts, err = intField("attempts", w.Attempts, true); err != nil {
		return nil, err
	}
	if p.MaxTries, err = optInt("maxTries", w.MaxTries); err != nil {
		return nil, err
	}
	if p.MaxExceptions, err = optInt("maxExceptions", w.MaxExceptions); err != nil {
		return nil, err
	}
	if t, err := optInt("timeout", w.Timeout); err != nil {
		return nil, err
	} else if t != nil {
		d := time.Duration(*t) * time.Second
		p.Timeout = &d
	}
	if r, err := optInt("retryUntil", w.RetryUntil); err != nil {
		return nil, err
	} else if r != nil {
		v := int64(*r)
		p.RetryUntil = &v
	}
	if c, err := optInt("createdAt", w.CreatedAt); err == nil && c != nil {
		v := int64(*c)
		p.CreatedAt = &v
	}
	if len(w.Tags) > 0 && w.Tags[0] == '[' {
		json.Unmarshal(w.Tags, &p.Tags) // tags that are not strings are not Horizon's: none
	}
	p.FailOnTimeout = string(w.FailOnTimeout) == "true"
	if len(w.KQueue) > 0 && w.KQueue[0] == '{' {
		members(w.KQueue, func(key, value []byte) {
			if string(keyBytes(key)) == "isolated" {
				p.MarkedIsolated = string(value) == "true"
			}
		}, nil, nil)
	}
	if !isNull(w.Backoff) {
		if s, ok := unquote(w.Backoff); ok {
			p.Backoff = s
		} else {
			p.Backoff = string(w.Backoff)
		}
	}
	if w.Data[0] == '{' {
		// data.commandName and data.command are optional; a value that is
		// not a string counts as absent. The object is valid JSON already.
		if !w.inData {
			members(w.Data, w.dataMember, nil, nil)
		}
		p.CommandName, _ = unquote(w.commandName)
		p.command = w.commandJSON
	}
	return p, nil
}

// Command is data.command: the serialized job (it starts "O:") or an
// encrypted one; "" when absent. It is unquoted on each call: most jobs
// never need it.
func (p *Payload) Command() string {
	s, _ := unquote(p.command)
	return s
}

// A Probe is strings to look for in jobs' serialized commands without
// unquoting them (CommandMayContain): made once, used on many payloads.
type Probe struct {
	escaped [][]byte  // each string as JSON writes it
	spelled [128]bool // their characters
	unsure  bool      // one holds a character JSON may write another way
}

// NewProbe prepares s for CommandMayContain. Each is best made of
// printable ASCII other than '/' (which JSON may write as "\/"): a probe
// for any other character may be in every command.
func NewProbe(s ...string) *Probe {
	pr := &Probe{}
	for _, s := range s {
		var esc []byte
		for i := 0; i < len(s); i++ {
			switch c := s[i]; {
			case c < 0x20 || c > 0x7e || c == '/':
				pr.unsure = true
			case c == '"' || c == '\\':
				esc = append(esc, '\\', c)
			default:
				esc = append(esc, c)
			}
			if s[i] < 0x80 {
				pr.spelled[s[i]] = true
			}
		}
		pr.escaped = append(pr.escaped, esc)
	}
	return pr
}

// CommandMayContain reports whether Command() may contain any of pr's
// strings; false is certain, so the command need not be unquoted to rule
// them out.
func (p *Payload) CommandMayContain(pr *Probe) bool {
	if pr.unsure {
		return true
	}
	// Each character is written one way — '"' and '\' escaped, the rest
	// as is — unless the JSON spells it \uXXXX. PHP does so for control
	// characters, which every protected or private property's name
	// holds: an escape that spells none of pr's characters does not
	// matter.
	c := p.command
	if bytes.Contains(c, []byte(`\u`)) && spellsAny(c, &pr.spelled) {
		return true
	}
	for _, e := range pr.escaped {
		if bytes.Contains(c, e) {
			return true
		}
	}
	return false
}

// spellsAny reports whether the JSON string c has a \uXXXX escape for
// one of the ASCII characters marked in spelled.
func spellsAny(c []byte, spelled *[128]bool) bool {
	for i := 0; ; {
		j := bytes.IndexByte(c[i:], '\\')
		if j < 0 || i+j+1 == len(c) {
			return false
		}
		i += j + 1
		if c[i] != 'u' {
			i++ // \\ is one escape: the next backslash begins another
			continue
		}
		if i+5 > len(c) {
			return true // (Parse would not have let it through)
		}
		r := 0
		for _, h := range c[i+1 : i+5] {
			r = r<<4 | hexValue(h)
		}
		if r < len(spelled) && spelled[r] {
			return true
		}
		i += 5
	}
}

// hexValue is the value of the hex digit h.
func hexValue(h byte) int {
	if h <= '9' {
		return int(h - '0')
	}
	return int(h|0x20-'a') + 10
}

// strField reads a string member; absent or null is "".
func strField(name string, raw []byte) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	s, ok := unquote(raw)
	if !ok {
		return "", fmt.Errorf("%w: %q is %s, want a string", ErrMalformed, name, preview(raw))
	}
	return s, nil
}

// preview is the start of a raw value, for an error.
func preview(raw []byte) string {
	if len(raw) > 40 {
		return string(raw[:40]) + "…"
	}
	return string(raw)
}

// Name is how Laravel names the job: displayName, else job.
func (p *Payload) Name() string {
	if p.DisplayName != "" {
		return p.DisplayName
	}
	return p.Job
}

func isNull(raw []byte) bool {
	return len(raw) == 0 || string(raw) == "null"
}

func optInt(name string, raw []byte) (*int, error) {
	if isNull(raw) {
		return nil, nil
	}
	n, err := intField(name, raw, true)
	if err != nil {
		return nil, err
	}
	return &n, nil
}

// intField reads a JSON number that must be integral (cjson may write it as
// 1e+16 or 3.0).
func intField(name string, raw []byte, required bool) (int, error) {
	// string(raw) is converted where it is used, so that it needs no copy
	// of its own but in an error.
	if len(raw) == 0 || string(raw) == "null" {
		if required {
			return 0, fmt.Errorf("%w: no numeric %q field", ErrMalformed, name)
		}
		return 0, nil
	}
	if n, err := strconv.Atoi(string(raw)); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f != float64(int(f)) {
		return 0, fmt.Errorf("%w: %q is %s, want an integer", ErrMalformed, name, raw)
	}
	return int(f), nil
}
