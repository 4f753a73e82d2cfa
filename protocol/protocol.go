// Package protocol defines the frames the poller and the dispatcher exchange
// over a unix stream socket: every message, its encoding, and the version
// handshake, in one place.
//
// A frame is a 4-byte big-endian length, then that many bytes: one type
// byte and the body. Integers in bodies are uvarints (signed ones zig-zag
// varints), strings and byte slices a uvarint length then the bytes.
//
// The poller speaks first (Hello), the dispatcher answers (Welcome) with its
// capacity; then the poller sends Job frames while it has credit and the
// dispatcher sends one Outcome per Job, plus Capacity whenever the number of
// jobs it can run at once changes.
package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/kqueue/kqueue/payload"
)

// Version is the protocol version; a peer with another version is refused.
const Version = 10

// MaxFrame bounds a frame's size (a Laravel payload may be tens of MB).
const MaxFrame = 128 << 20

// Message types.
const (
	TypeHello    byte = 1
	TypeWelcome  byte = 2
	TypeCapacity byte = 3
	TypeJob      byte = 4
	TypeOutcome  byte = 5
	TypePool     byte = 6
	TypeStarted  byte = 7
	TypeRunning  byte = 8
	TypeDemand   byte = 9
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed frame")

// Message is one frame's content.
type Message interface {
	Type() byte
	// AppendBody appends the encoded body (without length and type).
	AppendBody(b []byte) []byte
}

// Hello opens a connection (poller → dispatcher).
type Hello struct {
	Version  uint64
	Instance string
	// AppOnly asks for Welcome.App and nothing more: the dispatcher
	// answers and closes the connection (a poller starting up, which
	// runs no PHP of its own).
	AppOnly bool
}

// Welcome accepts a connection (dispatcher → poller).
type Welcome struct {
	Version  uint64
	Capacity uint64 // jobs the dispatcher can run at once
	// App is the app's queue configuration as the dispatcher read it at
	// start-up (exec/php/appconfig.php's answer).
	App []byte
}

// Capacity announces a new capacity (dispatcher → poller).
type Capacity struct {
	Capacity uint64
}

// Job hands one reserved job to the dispatcher (poller → dispatcher).
type Job struct {
	ID      uint64 // the poller's handle for this reservation
	Queue   string // bare queue name, as Laravel names it
	Payload []byte // the original payload, byte for byte
	// Row is the job's row, from a store that keeps a job's attempts
	// beside its payload (Laravel's database queue); nil from Redis,
	// whose payload carries them.
	Row *Row
	// SQS is the job's SQS message, from the SQS store; nil from
	// the others.
	SQS *SQSMessage
	// Parsed is the payload as the poller read it, handed on between the
	// ends of a Pair (which share a process), so that the dispatcher need
	// not read it again; nil from a stream: it is never encoded.
	Parsed *payload.Payload
}

// SQSMessage is a job's message on an SQS queue as the poller received it:
// what Laravel's SqsJob holds beside the body.
type SQSMessage struct {
	ID      string `json:"MessageId"`
	Receipt string `json:"ReceiptHandle"`
	// Receives is SQS's ApproximateReceiveCount: this receive counted,
	// it is the job's attempt (Laravel's SqsJob::attempts).
	Receives int64 `json:"ApproximateReceiveCount"`
	// QueueURL is the queue's URL, which Laravel's SqsJob takes for the
	// queue's name.
	QueueURL string `json:"QueueUrl"`
}

// Attempts is the job's attempts before this run, as a Row counts them.
func (m *SQSMessage) Attempts() int64 { return max(m.Receives-1, 0) }

// StoredAttempts is a job's attempts before this run where its store keeps
// them beside the payload (a database row, an SQS message), or -1 where
// the payload says (Redis).
func StoredAttempts(row *Row, sqs *SQSMessage) int {
	switch {
	case row != nil:
		return int(row.Attempts)
	case sqs != nil:
		return int(sqs.Attempts())
	}
	return -1
}

// Row is a job's row in Laravel's jobs table (the database queue), as the
// poller reserved it: Laravel's DatabaseJobRecord, its attempts not yet
// counted for this run. Times are Unix seconds.
type Row struct {
	ID          int64 `json:"id"`
	Attempts    int64 `json:"attempts"`
	ReservedAt  int64 `json:"reserved_at"`
	AvailableAt int64 `json:"available_at"`
	CreatedAt   int64 `json:"created_at"`
}

// Started says a job has been handed to PHP (dispatcher → poller, before
// the job can reach PHP, and before its Outcome): from here on PHP may run
// it. A job the dispatcher took but never started can go back to its queue
// as it was when the dispatcher is lost; one it started may have run.
type Started struct {
	ID uint64
}

// Running says PHP is about to run the job (dispatcher → poller, before
// its Outcome; it implies Started): Laravel's JobProcessing fired for it,
// and its attempt is counted.
type Running struct {
	ID uint64
	// What runs it, when the dispatcher knows (zero otherwise): the PHP
	// process, the job's timeout, and "inline" or "isolated (limits)".
	PID      uint64
	Timeout  time.Duration
	Strategy string
}

// Kind is what the poller must do with a job's reservation.
type Kind uint8

const (
	// Delete removes the reservation: the job succeeded, or failed and was
	// recorded (Failed says which).
	Delete Kind = 1
	// Release moves the job back to the queue, due at ReleaseAt.
	Release Kind = 2
	// Keep leaves the reservation to expire after retry_after, as Laravel
	// does for a job that neither deleted nor released itself.
	Keep Kind = 3
	// GiveBack: the job never ran (it was never said to be Running); it
	// goes back to the head of its queue as it was, no attempt counted.
	GiveBack Kind = 4
)

func (k Kind) String() string {
	switch k {
	case Delete:
		return "delete"
	case Release:
		return "release"
	case Keep:
		return "keep"
	case GiveBack:
		return "give-back"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Failure is why a job ended without PHP answering for it; Laravel's
// failure rules then run for it in another process.
type Failure uint8

const (
	NoFailure     Failure = iota
	FailTimeout           // it ran past its timeout and was killed
	FailCrash             // its process died under it
	FailOOM               // the kernel killed it over its memory limit
	FailIsolation         // kqueue could not start it inside its limits
	maxFailure    = FailIsolation
)

// String names the failure as the log, metrics and worker.php do.
func (f Failure) String() string {
	switch f {
	case NoFailure:
		return "none"
	case FailTimeout:
		return "timeout"
	case FailCrash:
		return "crashed"
	case FailOOM:
		return "oom"
	case FailIsolation:
		return "isolation-failed"
	}
	return fmt.Sprintf("failure(%d)", uint8(f))
}

// Killed reports whether the job was killed while it ran (its deadline,
// its process, the kernel).
func (f Failure) Killed() bool { return f == FailTimeout || f == FailCrash || f == FailOOM }

// Declined is the Result of a job PHP declined to run, as queue:work's
// loop would not have popped it: the app down for maintenance, a paused
// queue, a Looping listener returning false. It comes with Kind GiveBack;
// the poller takes nothing from that job's queue for a second, as
// queue:work pauses.
const Declined = "declined"

// Done is the Result of a job that simply succeeded.
const Done = "done"

// Outcome reports how one job ended (dispatcher → poller).
type Outcome struct {
	ID        uint64
	Kind      Kind
	ReleaseAt int64 // Unix seconds, for Release
	Failed    bool  // the job was failed (failed() ran, failed_jobs written)
	Failure   Failure
	// Result names what happened for the log: "done", "failed",
	// "released", "interrupted", or the Failure.
	Result   string
	Reason   string // an error text, when there is one
	Duration time.Duration
	Memory   uint64        // peak resident bytes of the process that ran it, if known
	Strategy string        // "inline" or "isolated (limits)"
	Scope    string        // the isolated job's cgroup or scope
	CPU      time.Duration // CPU time of the isolated job's cgroup, if known
	// Output is the job's last lines of output (a few KiB), for its record
	// in the console; the journal has them all.
	Output string
	// Tags are the job's own tags() (Laravel's, as Horizon records them),
	// read as it ran; nil for a class without.
	Tags []string
}

// Pool is the dispatcher's warm pool as it is now, for `kqueue status` and
// metrics (dispatcher → poller, every few seconds).
type Pool struct {
	Workers  []PoolWorker
	Recycles []Recycle // workers replaced so far, by reason
	// Declining says why PHP gives the jobs it is handed back unrun (the
	// app is down for maintenance, a queue paused, a Looping listener);
	// "" while it runs them.
	Declining string
	// Isolated is what each running isolated job's cgroup has used so far.
	Isolated []JobUsage
	// Scale is the pool's size and its last decision, when it scales.
	Scale Scale
}

// Scale is the state of a pool that follows the load.
type Scale struct {
	Min, Max int
	Target   int    // the workers the pool keeps now
	Decision string // the last change and why ("" before any)
	Ups      uint64 // times it grew
	Downs    uint64 // times it shrank
}

// Demand is how long the queues' jobs wait, as the poller sees them
// (poller → dispatcher, about every second): the queue furthest over its
// target. A pool that scales grows while Wait is over Target.
type Demand struct {
	Queue  string
	Wait   time.Duration
	Target time.Duration
}

// JobUsage is a running isolated job's use of its cgroup.
type JobUsage struct {
	ID         uint64 // the job's
	PeakMemory uint64 // bytes
	CPU        time.Duration
}

// PoolWorker is one warm PHP worker.
type PoolWorker struct {
	PID  uint64
	Busy bool
	Jobs uint64        // jobs it has run
	RSS  uint64        // resident bytes, measured from outside
	Age  time.Duration // since it booted
}

// Recycle counts the workers replaced for one reason (max_jobs,
// max_memory, max_lifetime, reload, restart, timeout, crash, exited).
type Recycle struct {
	Reason string
	Count  uint64
}

func (Hello) Type() byte    { return TypeHello }
func (Welcome) Type() byte  { return TypeWelcome }
func (Capacity) Type() byte { return TypeCapacity }
func (Job) Type() byte      { return TypeJob }
func (Outcome) Type() byte  { return TypeOutcome }
func (Pool) Type() byte     { return TypePool }
func (Started) Type() byte  { return TypeStarted }
func (Running) Type() byte  { return TypeRunning }
func (Demand) Type() byte   { return TypeDemand }

func (m Demand) AppendBody(b []byte) []byte {
	b = appendString(b, m.Queue)
	b = binary.AppendVarint(b, int64(m.Wait))
	return binary.AppendVarint(b, int64(m.Target))
}

// Hello and Welcome keep the version first and their other fields after
// the ones of earlier versions, so that a peer of another version still
// reads the version and says so.

func (m Hello) AppendBody(b []byte) []byte {
	b = binary.AppendUvarint(b, m.Version)
	b = appendString(b, m.Instance)
	return append(b, boolByte(m.AppOnly))
}

func (m Welcome) AppendBody(b []byte) []byte {
	b = binary.AppendUvarint(b, m.Version)
	b = binary.AppendUvarint(b, m.Capacity)
	return appendString(b, string(m.App))
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

func (m Capacity) AppendBody(b []byte) []byte {
	return binary.AppendUvarint(b, m.Capacity)
}

func (m Job) AppendBody(b []byte) []byte {
	b = binary.AppendUvarint(b, m.ID)
	b = appendString(b, m.Queue)
	b = binary.AppendUvarint(b, uint64(len(m.Payload)))
	b = append(b, m.Payload...)
	if m.Row == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		for _, v := range [...]int64{m.Row.ID, m.Row.Attempts, m.Row.ReservedAt, m.Row.AvailableAt, m.Row.CreatedAt} {
			b = binary.AppendVarint(b, v)
		}
	}
	if m.SQS == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	b = appendString(b, m.SQS.ID)
	b = appendString(b, m.SQS.Receipt)
	b = binary.AppendVarint(b, m.SQS.Receives)
	return appendString(b, m.SQS.QueueURL)
}

func (m Outcome) AppendBody(b []byte) []byte {
	b = binary.AppendUvarint(b, m.ID)
	b = append(b, byte(m.Kind))
	b = binary.AppendVarint(b, m.ReleaseAt)
	if m.Failed {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = append(b, byte(m.Failure))
	b = appendString(b, m.Result)
	b = appendString(b, m.Reason)
	b = binary.AppendVarint(b, int64(m.Duration))
	b = binary.AppendUvarint(b, m.Memory)
	b = appendString(b, m.Strategy)
	b = appendString(b, m.Scope)
	b = binary.AppendVarint(b, int64(m.CPU))
	b = appendString(b, m.Output)
	b = binary.AppendUvarint(b, uint64(len(m.Tags)))
	for _, t := range m.Tags {
		b = appendString(b, t)
	}
	return b
}

func (m Started) AppendBody(b []byte) []byte {
	return binary.AppendUvarint(b, m.ID)
}

func (m Running) AppendBody(b []byte) []byte {
	b = binary.AppendUvarint(b, m.ID)
	b = binary.AppendUvarint(b, m.PID)
	b = binary.AppendVarint(b, int64(m.Timeout))
	return appendString(b, m.Strategy)
}

func (m Pool) AppendBody(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(m.Workers)))
	for _, w := range m.Workers {
		b = binary.AppendUvarint(b, w.PID)
		if w.Busy {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
		b = binary.AppendUvarint(b, w.Jobs)
		b = binary.AppendUvarint(b, w.RSS)
		b = binary.AppendVarint(b, int64(w.Age))
	}
	b = binary.AppendUvarint(b, uint64(len(m.Recycles)))
	for _, r := range m.Recycles {
		b = appendString(b, r.Reason)
		b = binary.AppendUvarint(b, r.Count)
	}
	b = appendString(b, m.Declining)
	b = binary.AppendUvarint(b, uint64(len(m.Isolated)))
	for _, u := range m.Isolated {
		b = binary.AppendUvarint(b, u.ID)
		b = binary.AppendUvarint(b, u.PeakMemory)
		b = binary.AppendVarint(b, int64(u.CPU))
	}
	b = binary.AppendUvarint(b, uint64(m.Scale.Min))
	b = binary.AppendUvarint(b, uint64(m.Scale.Max))
	b = binary.AppendUvarint(b, uint64(m.Scale.Target))
	b = appendString(b, m.Scale.Decision)
	b = binary.AppendUvarint(b, m.Scale.Ups)
	return binary.AppendUvarint(b, m.Scale.Downs)
}

// Decode reads one frame's content: its type byte and body. Byte slices in
// the result alias frame.
func Decode(frame []byte) (Message, error) {
	if len(frame) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrMalformed)
	}
	d := decoder{b: frame[1:]}
	var m Message
	switch frame[0] {
	case TypeHello:
		h := Hello{Version: d.uvarint(), Instance: d.string()}
		if len(d.b) > 0 { // from version 6
			h.AppOnly = d.byte() == 1
		}
		m = h
	case TypeWelcome:
		w := Welcome{Version: d.uvarint(), Capacity: d.uvarint()}
		if len(d.b) > 0 { // from version 6
			if app := d.bytes(); len(app) > 0 {
				w.App = append([]byte(nil), app...) // Recv reuses its buffer
			}
		}
		m = w
	case TypeCapacity:
		m = Capacity{Capacity: d.uvarint()}
	case TypeJob:
		j := Job{ID: d.uvarint(), Queue: d.string(), Payload: d.bytes()}
		if d.byte() == 1 {
			j.Row = &Row{ID: d.varint(), Attempts: d.varint(), ReservedAt: d.varint(), AvailableAt: d.varint(), CreatedAt: d.varint()}
		}
		if d.byte() == 1 {
			j.SQS = &SQSMessage{ID: d.string(), Receipt: d.string(), Receives: d.varint(), QueueURL: d.string()}
		}
		m = j
	case TypeOutcome:
		o := Outcome{ID: d.uvarint(), Kind: Kind(d.byte()), ReleaseAt: d.varint()}
		o.Failed = d.byte() == 1
		o.Failure = Failure(d.byte())
		o.Result = d.string()
		o.Reason = d.string()
		o.Duration = time.Duration(d.varint())
		o.Memory = d.uvarint()
		o.Strategy = d.string()
		o.Scope = d.string()
		o.CPU = time.Duration(d.varint())
		o.Output = d.string()
		for n := d.count(); n > 0 && d.err == nil; n-- {
			o.Tags = append(o.Tags, d.string())
		}
		if d.err == nil && (o.Kind < Delete || o.Kind > GiveBack) {
			d.err = fmt.Errorf("unknown outcome kind %d", o.Kind)
		}
		if d.err == nil && o.Failure > maxFailure {
			d.err = fmt.Errorf("unknown failure %d", o.Failure)
		}
		m = o
	case TypeStarted:
		m = Started{ID: d.uvarint()}
	case TypeRunning:
		m = Running{ID: d.uvarint(), PID: d.uvarint(), Timeout: time.Duration(d.varint()), Strategy: d.string()}
	case TypePool:
		var p Pool
		for n := d.count(); n > 0 && d.err == nil; n-- {
			w := PoolWorker{PID: d.uvarint(), Busy: d.byte() == 1, Jobs: d.uvarint(), RSS: d.uvarint()}
			w.Age = time.Duration(d.varint())
			p.Workers = append(p.Workers, w)
		}
		for n := d.count(); n > 0 && d.err == nil; n-- {
			p.Recycles = append(p.Recycles, Recycle{Reason: d.string(), Count: d.uvarint()})
		}
		p.Declining = d.string()
		for n := d.count(); n > 0 && d.err == nil; n-- {
			p.Isolated = append(p.Isolated, JobUsage{ID: d.uvarint(), PeakMemory: d.uvarint(), CPU: time.Duration(d.varint())})
		}
		p.Scale = Scale{Min: int(d.uvarint()), Max: int(d.uvarint()), Target: int(d.uvarint()), Decision: d.string()}
		p.Scale.Ups, p.Scale.Downs = d.uvarint(), d.uvarint()
		m = p
	case TypeDemand:
		m = Demand{Queue: d.string(), Wait: time.Duration(d.varint()), Target: time.Duration(d.varint())}
	default:
		return nil, fmt.Errorf("%w: unknown type %d", ErrMalformed, frame[0])
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d bytes left over", len(d.b))
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: type %d: %v", ErrMalformed, frame[0], d.err)
	}
	return m, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads fields until the first error, which sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("truncated %s", what)
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("integer")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("integer")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("byte")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("bytes")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.bytes()) }

// count reads a list's length; each element takes at least one byte, so a
// count beyond what is left is malformed (and cannot make a huge loop).
func (d *decoder) count() uint64 {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("list")
		return 0
	}
	return n
}
