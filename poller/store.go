package poller

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/kqueue/kqueue/protocol"
)

// Store is one queue backend: Laravel's protocol for its queues, as its
// queue:work would speak it. The poller's scheduling — which queue next,
// how many, when to acknowledge, what an outage means — is the same for
// every store; what a store does is here.
//
// The poller calls a Store from its main loop, one call at a time, with
// two exceptions that run beside the loop: Wait (the waker), and Depths
// and HasWork (`kqueue status`, metrics, the idle wait). A Store knows its
// queues by their index in Config.Queues.
//
// Errors: a store wraps those that mean it is away (network, restart) with
// Unreachable; the poller then keeps what it has to send and tries again
// every second.
type Store interface {
	// Name names the backend in messages ("Redis").
	Name() string
	// Open readies the store for a dispatcher connection (Redis loads
	// its scripts).
	Open(ctx context.Context) error
	// Reserve sends acks, then reserves up to n ready jobs of queue q for
	// this poller until until, their attempts not counted yet (see
	// AckCharge). It takes due delayed jobs and lapsed reservations back
	// into the queue first, as Laravel's pop does. (Here and in Ack, the
	// acks slice is the caller's again once the call returns.)
	Reserve(ctx context.Context, acks []Ack, q, n int, now, until time.Time) (Reserved, error)
	// Ack applies acks, in order. An error means some or all of them may
	// not have been applied.
	Ack(ctx context.Context, acks []Ack) error
	// Extend pushes reservations' expiry forward; a job whose
	// reservation is gone is left alone.
	Extend(ctx context.Context, leases []Lease) error
	// Quarantine moves a reserved job that cannot run aside, out of
	// every queue, as it was, saying why in the log.
	Quarantine(ctx context.Context, j Job, why error)
	// Recover checks that the store answers after an outage, and returns
	// the jobs a reserve whose reply was lost in it took for this poller.
	Recover(ctx context.Context) ([]Job, error)
	// Wait returns once a job is pushed to any queue (true), or after
	// within (false), whichever comes first.
	Wait(ctx context.Context, within time.Duration) (bool, error)
	// HasWork reports whether any queue holds a job to run as of now: a
	// ready one, a delayed one due, or a lapsed reservation.
	HasWork(ctx context.Context, now time.Time) (bool, error)
	// Depths reads each queue's jobs, for `kqueue status`.
	Depths(ctx context.Context) ([]QueueDepth, error)
	// Done ends a dispatcher connection's run: the store drops what it
	// kept for recovering a lost reply, unless one is in doubt (Redis:
	// this poller's reserve receipts).
	Done(ctx context.Context)
}

// Leases is a store whose queues say how long a reservation lasts
// (SQS: each queue's visibility timeout). The poller takes a queue's
// lease from it after Open, in place of its RetryAfter, when it is set.
type Leases interface {
	LeaseFor(q int) time.Duration
}

// Job is a job a store reserved for this poller.
type Job struct {
	Queue   int    // its queue's index in Config.Queues
	Payload string // as it was on the queue: what PHP runs
	Handle  string // the store's own (a row's id, an SQS receipt); empty for Redis
	// Row is the job's row where the store keeps its attempts beside the
	// payload (Laravel's database queue): PHP's job is made of it. Nil for
	// Redis.
	Row *protocol.Row
	// SQS is the job's SQS message (the SQS store): PHP's SqsJob is
	// made of it. Nil for the others.
	SQS *protocol.SQSMessage
}

// Attempts is how many times the job ran before, when its store keeps
// that beside the payload; -1 when the payload says (Redis).
func (j Job) Attempts() int { return protocol.StoredAttempts(j.Row, j.SQS) }

// Reserved is what one Reserve took.
type Reserved struct {
	Jobs []Job
	// Taken counts the entries taken off the queue, quarantined ones
	// too: when it is all that was asked, the queue may hold more.
	Taken int
	// Due is when the queue's next delayed job falls due; zero if none.
	Due time.Time
	// Acked is the fate of the acknowledgements sent first, as Ack's
	// error.
	Acked error
	// Capped says a fleet-wide cap held back some of what was asked: the
	// queue may hold more, but other consumers run its share now.
	Capped bool
	// Receiving says a receive of the store's own is out on the queue (an
	// SQS long poll) and may yet bring jobs: the queue is not known empty.
	// The store's Wait returns when it ends.
	Receiving bool
}

// Ack is the store side of a job's reservation: its charge when PHP runs
// it, and its settlement.
type Ack struct {
	Kind      AckKind
	Job       Job
	ReleaseAt time.Time // AckRelease: when it is due again
	// Charged says a charge of the job went to the store before (it may
	// have been applied); otherwise the reservation is still as Reserve
	// made it, or gone.
	Charged bool
}

// AckKind is what an acknowledgement does with a reservation.
type AckKind uint8

const (
	AckDelete   AckKind = iota // the job is done: removed (Laravel's delete)
	AckRelease                 // it ran: back on its queue, due at ReleaseAt, its attempt counted
	AckGiveBack                // it never ran: back at the head of its queue, as it was
	AckCharge                  // PHP runs it: its attempt is counted
)

func (k AckKind) String() string {
	switch k {
	case AckDelete:
		return "delete"
	case AckRelease:
		return "release"
	case AckGiveBack:
		return "give-back"
	case AckCharge:
		return "charge"
	}
	return "unknown"
}

// Lease is a running job's reservation, to be held until Until.
type Lease struct {
	Job   Job
	Until time.Time
}

// Unreachable marks err as the store being away (network, restart, a
// server still loading): the poller keeps what it has to send, and tries
// again every second.
func Unreachable(err error) error {
	if err == nil {
		return nil
	}
	return unreachableError{err}
}

type unreachableError struct{ error }

func (e unreachableError) Unwrap() error { return e.error }

// IsUnreachable reports whether err says the store is away.
func IsUnreachable(err error) bool {
	var u unreachableError
	return errors.As(err, &u)
}

// Preview is an entry shortened for a log line: quoted, its first 200
// bytes and its length.
func Preview(s string) string {
	const n = 200
	if len(s) <= n {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:n]) + fmt.Sprintf("… (%d bytes)", len(s))
}
