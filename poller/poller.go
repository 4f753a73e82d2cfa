// Package poller is the queue side of kqueue, the same for every queue
// backend: it reserves jobs (several per round trip, only as many as the
// dispatcher can run now, queues in priority or weighted order, within
// each queue's max_running), hands them to the dispatcher, extends their
// reservations while they run, and applies each outcome — delete, release,
// give-back or keep — back to the queues, batched. What a backend does is
// behind Store; poller/redis is the first.
package poller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/kqueue/kqueue/payload"
	"github.com/kqueue/kqueue/protocol"
)

// Queue is one Laravel queue to consume.
type Queue struct {
	// Name is the bare queue name ("default").
	Name string
	// Weight selects weighted random order when any queue has one;
	// otherwise queues are served in strict priority, first listed first.
	Weight int
	// RetryAfter is Laravel's retry_after for this queue. Default 90s.
	RetryAfter time.Duration
	// MaxRunning caps how many of this queue's jobs are in the
	// dispatcher's hands at once (0: no cap), so that a flood of long jobs
	// cannot take every worker from the queues listed before it.
	MaxRunning int
	// AlertWait is how long its jobs may wait before a warning (0: never).
	AlertWait time.Duration
	// ScaleWait is the wait above which a pool that scales grows (0: the
	// queue does not count).
	ScaleWait time.Duration
}

// Config configures a Poller.
type Config struct {
	// Store holds the queues. Required.
	Store Store
	// Queues lists the queues, highest priority first, in the order the
	// store knows them. Required.
	Queues []Queue
	// Instance names this kqueue instance in the handshake.
	Instance string
	// StopWhenEmpty makes Run return once no job is ready or running, like
	// queue:work --stop-when-empty.
	StopWhenEmpty bool
	// ShutdownTimeout is how long the dispatcher lets running jobs finish
	// once stopped, before it stops them hard (and how long Run waits for
	// their outcomes, plus HardStopGrace). Default 30s.
	ShutdownTimeout time.Duration
	// MaxBatch caps the jobs reserved in one round trip. Default 64.
	MaxBatch int
	// IdleWait caps how long an idle poller waits for a wake-up before
	// polling again (a delayed dispatch pushes no wake-up). Default and
	// maximum 1s.
	IdleWait time.Duration
	// IdleExit, when set, ends Run with ErrIdle once nothing has run or
	// been ready for this long: the dispatcher may then exit, and
	// WaitForWork says when to connect again.
	IdleExit time.Duration
	// Logger receives the job log. Default: discard.
	Logger *slog.Logger
	// QuietDone logs a job that simply succeeded at debug level, not
	// info ([log] jobs_done = false).
	QuietDone bool
	// DonePerSecond bounds the info entries of jobs that simply
	// succeeded: past it in a second, theirs are debug entries, and one
	// info entry after the second counts them ([log]
	// jobs_done_per_second). 0: no bound.
	DonePerSecond int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Heartbeat, when set, is called from the main loop every
	// HeartbeatEvery (default 1s) with the live counts — so it stops when
	// the loop is wedged: the place for watchdog pings.
	Heartbeat      func(Stats)
	HeartbeatEvery time.Duration
	// Waiting, when set, is told what Serve waits for while no dispatcher
	// is connected, about once a second: the place for watchdog pings
	// then.
	Waiting func(status string)
	// Observe, when set, is told of every settled job (for metrics).
	Observe func(Settled)
	// Record, when set, is given every job that ran, for the console's
	// history. Called from the main loop: it must not block.
	Record func(Record)
	// MaxPayload is the largest payload handed to the dispatcher; a larger
	// one is quarantined. Default: what a protocol frame can carry.
	MaxPayload int
}

// Settled is a job's outcome as metrics count it.
type Settled struct {
	Queue, Job, Outcome string
	Duration            time.Duration
	Wait                time.Duration // from its push to its start; 0: unknown
	Memory              uint64        // peak resident bytes of what ran it; 0: unknown
}

// Stats are the poller's live counts.
type Stats struct {
	Running  int    // jobs handed to the dispatcher and not settled
	Capacity int    // jobs the dispatcher can take at once
	Done     uint64 // settled jobs that succeeded
	Failed   uint64 // settled jobs that failed
	Released uint64 // settled jobs released back to their queue
	Stopping bool
	// Store names the queues' backend ("Redis").
	Store string `json:",omitempty"`
	// StoreDown is how long the store has not answered; 0 while it does.
	StoreDown time.Duration `json:",omitempty"`
	Unacked   int           `json:",omitempty"` // outcomes waiting for the store
}

func (s Stats) String() string {
	state := "running"
	if s.Stopping {
		state = "stopping"
	}
	if s.StoreDown > 0 {
		state += fmt.Sprintf(", %s unreachable for %s (%d outcomes waiting)", s.Store, s.StoreDown.Round(time.Second), s.Unacked)
	}
	return fmt.Sprintf("%s: %d running (capacity %d), %d done, %d failed, %d released", state, s.Running, s.Capacity, s.Done, s.Failed, s.Released)
}

// Poller moves jobs between a store and a dispatcher connection.
type Poller struct {
	cfg      Config
	store    Store
	log      *slog.Logger
	queues   []queueState
	weighted bool
	nextID   uint64
	inflight map[uint64]*running
	capacity int
	stats    Stats
	failures []FailedRecent
	acks     acks
	outage   outage
	pool     protocol.Pool // the dispatcher's last word on its workers
	// fleetHeld: the last reserve found a queue at its fleet-wide cap.
	// Other hosts' jobs ending push no wake-up, so the poller looks again
	// after fleetPoll.
	fleetHeld bool
	// receiving: a queue had a receive of the store's out at the last
	// reserve (Reserved.Receiving): an empty reserve was no empty queue.
	receiving bool
	waits     waits   // each queue's wait, by WatchWaits
	done      doneLog // the "job done" entries in the current second
	// snapshots carries `kqueue status` requests into the main loop.
	snapshots chan chan Snapshot
	// declined, when set, hears each time the main loop waits with
	// nothing more to reserve (tests).
	declined func()
}

type queueState struct {
	Queue
	index   int // in Config.Queues, as the store knows it
	running int // jobs of this queue in the dispatcher's hands
	// heldUntil: PHP declined one of its jobs (protocol.Declined);
	// nothing is taken from it until then, so the other queues get the
	// room and declined jobs do not bounce.
	heldUntil time.Time
	took      time.Duration // moving mean of its jobs' runtimes
}

// running is a job handed to the dispatcher and not yet settled.
type running struct {
	queue   *queueState
	job     Job
	raw     []byte // job.Payload's bytes (read-only), as p was read from and the dispatcher gets it
	p       *payload.Payload
	started time.Time        // reserved at
	handed  bool             // the dispatcher handed it to PHP: it may have run
	began   bool             // PHP runs it: its attempt is counted
	how     protocol.Running // what runs it, as the dispatcher said
	settled bool             // its outcome came: a charge still queued is moot
	// charging: its charge went to the store (which may have applied it).
	charging bool
}

// New returns a Poller.
func New(cfg Config) *Poller {
	cfg.ShutdownTimeout = cmp.Or(cfg.ShutdownTimeout, 30*time.Second)
	cfg.MaxBatch = cmp.Or(cfg.MaxBatch, 64)
	cfg.IdleWait = min(cmp.Or(cfg.IdleWait, time.Second), time.Second)
	cfg.HeartbeatEvery = cmp.Or(cfg.HeartbeatEvery, time.Second)
	cfg.MaxPayload = cmp.Or(cfg.MaxPayload, protocol.MaxFrame-maxFrameOverhead)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &Poller{cfg: cfg, store: cfg.Store, log: cfg.Logger, inflight: map[uint64]*running{}, snapshots: make(chan chan Snapshot)}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.done.limit = cfg.DonePerSecond
	for i, q := range cfg.Queues {
		q.RetryAfter = cmp.Or(q.RetryAfter, 90*time.Second)
		p.queues = append(p.queues, queueState{Queue: q, index: i})
		if q.Weight > 0 {
			p.weighted = true
		}
	}
	p.outage.log, p.outage.store = p.log, "the store"
	if p.store != nil {
		p.outage.store = p.store.Name()
	}
	return p
}

// ErrDispatcherGone is returned by Run when the dispatcher closed the
// connection while the poller was not stopping.
var ErrDispatcherGone = errors.New("dispatcher closed the connection")

// ErrIdle ends Run after Config.IdleExit without work; nothing is running.
var ErrIdle = errors.New("idle")

// HardStopGrace is how long a stopping poller waits beyond ShutdownTimeout:
// the dispatcher stops hard at ShutdownTimeout, and the outcomes of the jobs
// it then kills or hands back must still reach the store.
const HardStopGrace = 10 * time.Second

// maxFrameOverhead is what a Job frame carries besides its payload, at most
// (a queue name of a few KB included).
const maxFrameOverhead = 64 << 10

// Run serves one dispatcher connection until ctx is done (then it stops
// reserving, waits for running jobs' outcomes — up to ShutdownTimeout plus
// HardStopGrace — and returns nil), until the queues are empty with
// StopWhenEmpty (nil), after IdleExit without work (ErrIdle), or until the
// connection fails or ends (an error; ErrDispatcherGone when it was
// closed). Jobs whose outcome never came are left to expire after
// retry_after: the poller stops extending them.
//
// Each turn of the loop answers `kqueue status`, fills the dispatcher's
// free room from the queues (the acknowledgements riding along), then
// waits for the next thing to happen.
func (p *Poller) Run(ctx context.Context, conn *protocol.Conn) error {
	s, err := p.open(ctx, conn)
	if err != nil {
		return err
	}
	defer s.close()
	for {
		s.answerStatus()
		if s.stopping && len(p.inflight) == 0 {
			if s.finished() {
				return nil
			}
			continue
		}
		if next, err := s.fill(); next != wait {
			if next == end {
				return err
			}
			continue
		}
		if end, err := s.wait(); end {
			return err
		}
	}
}

// liveStats are the counts as of now.
func (p *Poller) liveStats(stopping bool) Stats {
	s := p.stats
	s.Running, s.Capacity, s.Stopping, s.Unacked = len(p.inflight), p.capacity, stopping, len(p.acks.pending)
	s.Store, s.StoreDown = p.outage.store, p.outage.lasted()
	return s
}

// beat reports the live counts to the heartbeat.
func (p *Poller) beat(stopping bool) {
	if p.cfg.Heartbeat == nil {
		return
	}
	p.cfg.Heartbeat(p.liveStats(stopping))
}
