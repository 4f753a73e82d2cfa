// Package payload reads the JSON payload of a Laravel queue job: the fields
// kqueue needs to schedule, time and describe a job. PHP reads the rest.
package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
	Command       string // data.command: serialized (starts "O:") or encrypted
	MaxTries      *int
	MaxExceptions *int
	FailOnTimeout bool
	Backoff       string // "5,10"; "" when absent
	Timeout       *time.Duration
	RetryUntil    *int64 // Unix seconds
	Attempts      int    // as stored: the pre-increment count
}

// ErrMalformed is wrapped by every error Parse returns.
var ErrMalformed = errors.New("malformed job payload")

type wire struct {
	UUID          *string         `json:"uuid"`
	DisplayName   *string         `json:"displayName"`
	Job           *string         `json:"job"`
	MaxTries      json.RawMessage `json:"maxTries"`
	MaxExceptions json.RawMessage `json:"maxExceptions"`
	FailOnTimeout json.RawMessage `json:"failOnTimeout"`
	Backoff       json.RawMessage `json:"backoff"`
	Timeout       json.RawMessage `json:"timeout"`
	RetryUntil    json.RawMessage `json:"retryUntil"`
	Data          json.RawMessage `json:"data"`
	Attempts      json.RawMessage `json:"attempts"`
}

// Parse reads a payload. It accepts both Laravel's own encoding and the
// reserved copy Redis' cjson writes (other key order, {} for [], %.14g
// numbers).
func Parse(raw []byte) (*Payload, error) {
	if !utf8.Valid(raw) {
		// PHP's json_decode refuses it, so Laravel could neither run nor
		// fail it (its failed_jobs row needs the decoded payload).
		return nil, fmt.Errorf("%w: not valid UTF-8, which PHP's json_decode refuses", ErrMalformed)
	}
	var w wire
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object: %v", ErrMalformed, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the JSON object", ErrMalformed)
	}
	p := &Payload{}
	var err error
	if w.Job == nil || *w.Job == "" {
		return nil, fmt.Errorf("%w: no \"job\" field: this is not a Laravel queue payload", ErrMalformed)
	}
	p.Job = *w.Job
	if w.UUID == nil || *w.UUID == "" {
		return nil, fmt.Errorf("%w: no \"uuid\" field: this is not a Laravel queue payload", ErrMalformed)
	}
	p.UUID = *w.UUID
	if isNull(w.Data) {
		return nil, fmt.Errorf("%w: no \"data\" field: this is not a Laravel queue payload", ErrMalformed)
	}
	if w.DisplayName != nil {
		p.DisplayName = *w.DisplayName
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
	p.FailOnTimeout = string(bytes.TrimSpace(w.FailOnTimeout)) == "true"
	if !isNull(w.Backoff) {
		var s string
		if json.Unmarshal(w.Backoff, &s) == nil {
			p.Backoff = s
		} else {
			p.Backoff = strings.TrimSpace(string(w.Backoff))
		}
	}
	var data struct {
		CommandName string `json:"commandName"`
		Command     string `json:"command"`
	}
	if bytes.HasPrefix(bytes.TrimSpace(w.Data), []byte("{")) {
		_ = json.Unmarshal(w.Data, &data) // data.commandName is optional
	}
	p.CommandName = data.CommandName
	p.Command = data.Command
	return p, nil
}

// Name is how Laravel names the job: displayName, else job.
func (p *Payload) Name() string {
	if p.DisplayName != "" {
		return p.DisplayName
	}
	return p.Job
}

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

func optInt(name string, raw json.RawMessage) (*int, error) {
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
func intField(name string, raw json.RawMessage, required bool) (int, error) {
	t := strings.TrimSpace(string(raw))
	if t == "" || t == "null" {
		if required {
			return 0, fmt.Errorf("%w: no numeric %q field", ErrMalformed, name)
		}
		return 0, nil
	}
	if n, err := strconv.Atoi(t); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f != float64(int(f)) {
		return 0, fmt.Errorf("%w: %q is %s, want an integer", ErrMalformed, name, t)
	}
	return int(f), nil
}
