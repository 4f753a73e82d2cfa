// Package poller owns all queue I/O on Laravel's Redis queues: it reserves
// jobs with Laravel's semantics (several per round trip, only as many as the
// dispatcher can run now), hands them to the dispatcher, extends their
// reservations while they run, and applies each outcome — delete, release
// or keep — back to Redis, pipelined.
package poller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kqueue/kqueue/payload"
	"github.com/kqueue/kqueue/protocol"
	"github.com/redis/go-redis/v9"
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
}

// Config configures a Poller.
type Config struct {
	// Redis is the connection to the queues' Redis. Required.
	Redis redis.UniversalClient
	// Prefix is the Laravel Redis client prefix ("laravel_database_").
	Prefix string
	// Queues lists the queues, highest priority first. Required.
	Queues []Queue
	// Instance names this kqueue instance in the handshake.
	Instance string
	// StopWhenEmpty makes Run return once no job is ready or running, like
	// queue:work --stop-when-empty.
	StopWhenEmpty bool
	// ShutdownTimeout bounds how long Run waits for running jobs' outcomes
	// after ctx is done. Default 30s.
	ShutdownTimeout time.Duration
	// MaxBatch caps the jobs reserved in one round trip. Default 64.
	MaxBatch int
	// IdleWait caps how long an idle poller waits for a wake-up before
	// polling again (delayed dispatch pushes no notify token). Default and
	// maximum 1s.
	IdleWait time.Duration
	// IdleExit, when set, ends Run with ErrIdle once nothing has run or
	// been ready for this long: the dispatcher may then exit, and
	// WaitForWork says when to connect again.
	IdleExit time.Duration
	// Logger receives the job log. Default: discard.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Heartbeat, when set, is called from the main loop every
	// HeartbeatEvery (default 1s) with the live counts — so it stops when
	// the loop is wedged: the place for watchdog pings.
	Heartbeat      func(Stats)
	HeartbeatEvery time.Duration
	// Observe, when set, is told of every settled job (for metrics).
	Observe func(queue, job, outcome string, d time.Duration)
	// MaxPayload is the largest payload handed to the dispatcher; a larger
	// one is quarantined. Default: what a protocol frame can carry.
	MaxPayload int
}

// Stats are the poller's live counts.
type Stats struct {
	Running  int    // jobs handed to the dispatcher and not settled
	Capacity int    // jobs the dispatcher can take at once
	Done     uint64 // settled jobs that succeeded
	Failed   uint64 // settled jobs that failed
	Released uint64 // settled jobs released back to their queue
	Stopping bool
	// RedisDown is how long Redis has not answered; 0 while it does.
	RedisDown time.Duration `json:",omitempty"`
	Unacked   int           `json:",omitempty"` // outcomes waiting for Redis
}

func (s Stats) String() string {
	state := "running"
	if s.Stopping {
		state = "stopping"
	}
	if s.RedisDown > 0 {
		state += fmt.Sprintf(", Redis unreachable for %s (%d outcomes waiting)", s.RedisDown.Round(time.Second), s.Unacked)
	}
	return fmt.Sprintf("%s: %d running (capacity %d), %d done, %d failed, %d released", state, s.Running, s.Capacity, s.Done, s.Failed, s.Released)
}

// Poller moves jobs between Redis and a dispatcher connection.
type Poller struct {
	cfg       Config
	log       *slog.Logger
	queues    []queueState
	weighted  bool
	nextID    uint64
	inflight  map[uint64]*running
	capacity  int
	stats     Stats
	failures  []FailedRecent
	acks      []ack         // outcomes not yet in Redis, oldest first
	acksSince time.Time     // when the oldest of acks was queued
	downSince time.Time     // when Redis stopped answering; zero while it answers
	pool      protocol.Pool // the dispatcher's last word on its workers
	lastTry   time.Time     // the last try to reach Redis while it is away
	token     string        // this poller's name in its receipt keys
	seq       uint64        // reserve calls made
	uncertain *lostReply    // a reserve whose reply was lost: it may have reserved jobs
	// snapshots carries `kqueue status` requests into the main loop.
	snapshots chan chan Snapshot
}

type queueState struct {
	Queue
	keys    keys
	running int // jobs of this queue in the dispatcher's hands
}

// running is a job handed to the dispatcher and not yet settled.
//
// Its reservation is the original payload until PHP runs it, then the
// charged copy (see chargeScript); every command on a reservation names
// both, so that one whose charge never reached Redis is found all the same.
type running struct {
	queue    *queueState
	reserved string // the charged copy: attempts+1, as Laravel reserves it
	original string // the payload as it was on the queue
	p        *payload.Payload
	started  time.Time // reserved at
	handed   bool      // the dispatcher handed it to PHP: it may have run
	began    bool      // PHP runs it: its attempt is counted
	settled  bool      // its outcome came: a charge still queued is moot
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
	p := &Poller{cfg: cfg, log: cfg.Logger, inflight: map[uint64]*running{}, snapshots: make(chan chan Snapshot)}
	host, _ := os.Hostname()
	p.token = fmt.Sprintf("%s-%d-%x", host, os.Getpid(), rand.Uint32())
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	for _, q := range cfg.Queues {
		q.RetryAfter = cmp.Or(q.RetryAfter, 90*time.Second)
		p.queues = append(p.queues, queueState{Queue: q, keys: keysFor(cfg.Prefix, q.Name).withReceipt(p.token)})
		if q.Weight > 0 {
			p.weighted = true
		}
	}
	return p
}

// event is something the main loop reacts to.
type event struct {
	msg  protocol.Message // from the dispatcher
	err  error            // the connection failed or closed
	wake bool             // the idle wait is over
}

// ErrDispatcherGone is returned by Run when the dispatcher closed the
// connection while the poller was not stopping.
var ErrDispatcherGone = errors.New("dispatcher closed the connection")

// Acknowledgements wait for the next reserve to carry them, up to
// maxUnacked of them, and no longer than maxAckDelay: each one not yet in
// Redis is a job that runs again if this process dies.
const (
	maxUnacked  = 8
	maxAckDelay = 5 * time.Millisecond
)

// HardStopGrace is how long a stopping poller waits beyond ShutdownTimeout:
// the dispatcher stops hard at ShutdownTimeout, and the outcomes of the jobs
// it then kills or hands back must still reach Redis.
const HardStopGrace = 10 * time.Second

// maxFrameOverhead is what a Job frame carries besides its payload, at most
// (a queue name of a few KB included).
const maxFrameOverhead = 64 << 10

// errRedisAway: a flush or reserve not tried, Redis being away.
var errRedisAway = errors.New("redis is unreachable")

// ErrIdle ends Run after Config.IdleExit without work; nothing is running.
var ErrIdle = errors.New("idle")

// Run serves one dispatcher connection until ctx is done (then it stops
// reserving, waits up to ShutdownTimeout for running jobs, and returns nil),
// until the queues are empty with StopWhenEmpty (nil), or until the
// connection fails or ends (an error; ErrDispatcherGone when it was closed).
// Jobs whose outcome never came are left to expire after retry_after: the
// poller stops extending them.
func (p *Poller) Run(ctx context.Context, conn *protocol.Conn) error {
	// Whatever happens, the connection is closed and nothing stays in
	// flight: a job whose outcome cannot come is left to retry_after.
	defer func() {
		conn.Close()
		clear(p.inflight)
		for i := range p.queues {
			p.queues[i].running = 0
		}
	}()
	if len(p.queues) == 0 {
		return errors.New("poller: no queues to consume")
	}
	if err := p.loadScripts(ctx); err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if err := conn.Send(protocol.Hello{Version: protocol.Version, Instance: p.cfg.Instance}); err != nil {
		return fmt.Errorf("handshake with dispatcher: %w", err)
	}
	m, err := conn.Recv()
	conn.SetDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("handshake with dispatcher: %w", err)
	}
	w, ok := m.(protocol.Welcome)
	if !ok {
		return fmt.Errorf("handshake with dispatcher: got message type %d, want welcome", m.Type())
	}
	if w.Version != protocol.Version {
		return fmt.Errorf("handshake with dispatcher: it speaks protocol version %d, this poller %d", w.Version, protocol.Version)
	}
	p.capacity = int(w.Capacity)

	loopDone := make(chan struct{})
	events := make(chan event, 256)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			m, err := conn.Recv()
			if o, ok := m.(protocol.Outcome); ok {
				o.Reason = string([]byte(o.Reason)) // detach from the read buffer
				m = o
			}
			select {
			case events <- event{msg: m, err: err}:
			case <-loopDone:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		// Half-close so the dispatcher reads EOF and closes its side; then
		// the reader ends. A dispatcher that does not answer is cut off.
		close(loopDone)
		conn.CloseWrite()
		select {
		case <-readerDone:
		case <-time.After(5 * time.Second):
		}
		conn.Close()
		<-readerDone
	}()

	waker := newWaker(p.cfg.Redis, p.notifyKeys(), events)
	defer waker.stop()

	lease := time.NewTicker(p.leaseInterval())
	defer lease.Stop()
	heartbeat := time.NewTicker(p.cfg.HeartbeatEvery)
	defer heartbeat.Stop()
	ackTimer := time.NewTimer(time.Hour)
	ackTimer.Stop()
	defer ackTimer.Stop()
	p.beat(false)

	var (
		bg       = context.WithoutCancel(ctx) // acks outlive a stop
		done     = ctx.Done()
		stopping bool
		giveUp   <-chan time.Time // armed once stopping
		needPoll = true           // Redis may hold work we have not seen
		armed    bool             // the waker is waiting for us
		idle     time.Time        // since when nothing ran or was ready
		ackWait  <-chan time.Time // armed while acknowledgements wait to ride along
	)
	for {
		// kqueue status first: the rest of a turn may wait on Redis.
		select {
		case reply := <-p.snapshots:
			reply <- p.snapshot(stopping)
		default:
		}
		if stopping && len(p.inflight) == 0 {
			if p.flush(bg) == nil {
				return nil // stopped, nothing left running, every outcome in Redis
			}
			select { // Redis is away: try again until the shutdown timeout
			case <-giveUp:
				p.log.Warn("stopping: Redis is unreachable; these jobs' outcomes are lost and they run again after retry_after",
					"outcomes", len(p.acks))
				return nil
			case <-time.After(time.Second):
				continue
			}
		}
		free := p.capacity - len(p.inflight)
		switch {
		case stopping || !needPoll || free <= 0:
			p.flush(bg) // otherwise the acks ride along with the reserve
		case free < p.capacity/2 && len(p.inflight) > 0:
			// A deep dispatcher (short jobs) still has plenty queued:
			// wait until half of it has run, then reserve that many in
			// one round trip, with the acknowledgements riding along —
			// unless they pile up: each one not yet in Redis is a job
			// that runs again if this process dies (maxAckDelay).
			switch {
			case len(p.acks) >= maxUnacked || (len(p.acks) > 0 && time.Since(p.acksSince) >= maxAckDelay):
				p.flush(bg)
			case len(p.acks) > 0 && ackWait == nil:
				ackTimer.Reset(maxAckDelay - time.Since(p.acksSince))
				ackWait = ackTimer.C
			}
		default:
			got, more, next, err := p.reserve(ctx, conn, free)
			switch {
			case err != nil && ctx.Err() != nil:
				needPoll = false // stopping: the select below sees it
			case err != nil:
				if p.downSince.IsZero() { // an outage is told once, by redisDown
					p.log.Error("reserve failed", "error", err)
				}
				needPoll = false
				if !armed {
					// Again in about a second, spread so that many pollers
					// do not come back to a recovering Redis at once.
					armed = true
					waker.arm(time.Second+rand.N(500*time.Millisecond), false)
				}
			case more:
				// the queues may hold more: poll again once there is room
			default:
				needPoll = false
				if p.cfg.StopWhenEmpty && got == 0 && len(p.inflight) == 0 {
					p.flush(bg)
					return nil
				}
				wait := p.cfg.IdleWait
				if p.cfg.IdleExit > 0 && got == 0 && len(p.inflight) == 0 {
					now := time.Now()
					if idle.IsZero() {
						idle = now
					}
					left := p.cfg.IdleExit - now.Sub(idle)
					if left <= 0 {
						p.flush(bg)
						return ErrIdle
					}
					wait = min(wait, left)
				} else {
					idle = time.Time{}
				}
				if !armed {
					if !next.IsZero() {
						wait = min(wait, max(next.Sub(p.cfg.Now()), time.Millisecond))
					}
					armed = true
					waker.arm(wait, true)
				}
			}
			if needPoll {
				continue
			}
		}

		select {
		case ev := <-events:
			// Take everything that has arrived, then acknowledge it with
			// one pipeline.
			for {
				switch {
				case ev.wake:
					armed = false
					needPoll = true
				case ev.err != nil:
					p.flush(bg)
					return p.connLost(ev.err, stopping)
				default:
					// While Redis is away only the retry timer polls: an
					// outcome must not start a reserve that waits out a
					// timeout and leaves the loop deaf meanwhile.
					if p.handle(ev.msg) && p.downSince.IsZero() {
						needPoll = true
					}
				}
				var more bool
				select {
				case ev = <-events:
					more = true
				default:
				}
				if !more {
					break
				}
			}
		case <-ackWait:
			ackWait = nil // the top of the loop flushes what waited too long
		case <-lease.C:
			p.extendLeases(bg)
		case <-heartbeat.C:
			p.beat(stopping)
		case reply := <-p.snapshots:
			reply <- p.snapshot(stopping)
		case <-done:
			done = nil
			stopping = true
			p.beat(true)
			// The dispatcher stops hard at ShutdownTimeout; what it then
			// kills or hands back still has to reach Redis.
			giveUp = time.After(p.cfg.ShutdownTimeout + HardStopGrace)
			if len(p.inflight) > 0 {
				p.log.Info("stopping: waiting for running jobs", "running", len(p.inflight), "timeout", p.cfg.ShutdownTimeout)
			}
		case <-giveUp:
			p.flush(bg)
			p.log.Warn("stopping: running jobs did not finish in time; their reservations expire after retry_after",
				"running", len(p.inflight))
			return nil
		}
	}
}

// liveStats are the counts as of now.
func (p *Poller) liveStats(stopping bool) Stats {
	s := p.stats
	s.Running, s.Capacity, s.Stopping, s.Unacked = len(p.inflight), p.capacity, stopping, len(p.acks)
	if !p.downSince.IsZero() {
		s.RedisDown = max(time.Since(p.downSince), time.Millisecond)
	}
	return s
}

// beat reports the live counts to the heartbeat.
func (p *Poller) beat(stopping bool) {
	if p.cfg.Heartbeat == nil {
		return
	}
	p.cfg.Heartbeat(p.liveStats(stopping))
}

// connLost reports the end of the dispatcher connection. The dispatcher
// closes it only once every job has its outcome; with jobs still in hand it
// is gone (killed, crashed), stopping or not.
func (p *Poller) connLost(err error, stopping bool) error {
	eof := errors.Is(err, io.EOF)
	if eof && stopping && len(p.inflight) == 0 {
		return nil
	}
	if eof {
		err = ErrDispatcherGone
	}
	if peerAlive(err) {
		// It broke the protocol but lives, and still runs what it took:
		// returned, those jobs would run twice. Left to expire instead.
		p.log.Error("the dispatcher broke the protocol; dropping the connection", "error", err, "running", len(p.inflight))
	} else {
		p.returnUnhanded()
	}
	if n := len(p.inflight); n > 0 {
		p.log.Warn("dispatcher connection lost with jobs running; their reservations expire after retry_after", "running", n)
	}
	if eof && stopping {
		return nil // as asked; what was lost is in the log
	}
	return fmt.Errorf("dispatcher connection: %w", err)
}

// peerAlive reports whether a read error came from a dispatcher that is
// still there: a frame that is not one, rather than one cut short or no
// more frames (a dispatcher that died, possibly mid-frame).
func peerAlive(err error) bool {
	return errors.Is(err, protocol.ErrMalformed) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF)
}

// returnUnhanded gives the jobs the lost dispatcher never handed to PHP
// back to their queues (see ackGiveBack): they did not run, so no attempt
// is counted (left to expire, each would come back after retry_after with
// one more attempt, and a job allowed one try would fail without having
// run). One round trip; if Redis does not take it, they expire.
func (p *Poller) returnUnhanded() {
	var ids []uint64
	maybe := 0
	for id, r := range p.inflight {
		switch {
		case !r.handed:
			ids = append(ids, id)
		case !r.began:
			maybe++
		}
	}
	if maybe > 0 {
		// Handed ahead into a PHP worker's pipe: PHP may have reached one
		// of them as the dispatcher died. Their reservations hold them as
		// they were (no attempt counted) until retry_after.
		p.log.Warn("dispatcher lost with jobs handed to PHP but not yet started; they come back after retry_after, attempts not counted", "jobs", maybe)
	}
	if len(ids) == 0 {
		p.flush(context.Background()) // the charges of the jobs that ran
		return
	}
	// Latest reserved first: each goes to the head, so they end in the
	// order they were reserved.
	slices.Sort(ids)
	slices.Reverse(ids)
	for _, id := range ids {
		r := p.inflight[id]
		p.queueAck(giveBack(r))
		r.queue.running--
		delete(p.inflight, id)
	}
	switch err := p.flush(context.Background()); {
	case errors.Is(err, errRedisAway):
		p.log.Warn("could not return the jobs the dispatcher had not started: Redis is unreachable; they run again after retry_after", "jobs", len(ids))
	case err == nil:
		p.log.Info("dispatcher lost: returned the jobs it had not started to their queues", "jobs", len(ids))
	} // else dropGiveBacks has said so
}

// handle applies one message from the dispatcher. It reports whether there
// is new capacity to fill.
func (p *Poller) handle(m protocol.Message) bool {
	switch m := m.(type) {
	case protocol.Capacity:
		grew := int(m.Capacity) > p.capacity
		p.capacity = int(m.Capacity)
		return grew
	case protocol.Started:
		if r, ok := p.inflight[m.ID]; ok {
			r.handed = true
		}
		return false
	case protocol.Running:
		if r, ok := p.inflight[m.ID]; ok && !r.began {
			r.handed, r.began = true, true
			p.queueAck(ack{kind: ackCharge, keys: r.queue.keys, reserved: r.reserved, original: r.original, job: r})
		}
		return false
	case protocol.Outcome:
		r, ok := p.inflight[m.ID]
		if !ok {
			p.log.Error("outcome for an unknown job", "id", m.ID)
			return false
		}
		delete(p.inflight, m.ID)
		r.queue.running--
		p.settle(r, m)
		return true
	case protocol.Pool:
		p.pool = m
		return false
	default:
		p.log.Error("unexpected message from dispatcher", "type", m.Type())
		return false
	}
}

// settle queues the Redis side of an outcome and logs the job's story.
func (p *Poller) settle(r *running, o protocol.Outcome) {
	// A delete, release or give-back names both forms of the reservation:
	// a charge still queued is moot. A kept reservation still needs it.
	r.settled = o.Kind != protocol.Keep
	switch o.Kind {
	case protocol.Delete:
		p.queueAck(ack{keys: r.queue.keys, reserved: r.reserved, original: r.original})
	case protocol.GiveBack:
		p.queueAck(giveBack(r))
	case protocol.Release:
		// It ran (a job that did not is given back): released with its
		// attempt counted, as Laravel does, whether or not its charge came
		// first (the dispatcher leaves out the Running of a job whose
		// outcome goes with it).
		p.queueAck(ack{kind: ackRelease, keys: r.queue.keys, reserved: r.reserved, original: r.original, releaseAt: o.ReleaseAt})
	case protocol.Keep:
		// Leave it reserved: it comes back after retry_after, as under Laravel.
	}
	// Attrs, not key-value pairs: one line per job, without boxing.
	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs,
		slog.String("queue", r.queue.Name),
		slog.String("job_uuid", r.p.UUID),
		slog.String("job_name", r.p.Name()),
		slog.Int("attempt", r.p.Attempts+1),
		slog.String("outcome", o.Result),
		slog.Duration("duration", o.Duration.Round(time.Microsecond)),
	)
	if o.Strategy != "" {
		attrs = append(attrs, slog.String("strategy", o.Strategy))
	}
	if o.Scope != "" {
		attrs = append(attrs, slog.String("scope", o.Scope))
	}
	if o.Memory > 0 {
		attrs = append(attrs, slog.Uint64("peak_memory", o.Memory))
	}
	if o.CPU > 0 {
		attrs = append(attrs, slog.Duration("cpu", o.CPU))
	}
	if o.Kind == protocol.Release {
		attrs = append(attrs, slog.Duration("release_in", time.Duration(o.ReleaseAt-p.cfg.Now().Unix())*time.Second))
	}
	if o.Reason != "" {
		attrs = append(attrs, slog.String("error", o.Reason))
	}
	if p.cfg.Observe != nil {
		p.cfg.Observe(r.queue.Name, r.p.Name(), o.Result, o.Duration)
	}
	if o.Failed || o.Result == "timeout" || o.Result == "crashed" || o.Result == "oom" {
		p.recordFailure(FailedRecent{At: p.cfg.Now(), Queue: r.queue.Name, UUID: r.p.UUID, Name: r.p.Name(), Result: o.Result, Reason: o.Reason})
	}
	switch {
	case o.Failed:
		p.stats.Failed++
	case o.Kind == protocol.Release:
		p.stats.Released++
	case o.Kind == protocol.Delete:
		p.stats.Done++
	}
	level := slog.LevelInfo
	if o.Failed || o.Result == "timeout" || o.Result == "crashed" || o.Result == "oom" {
		level = slog.LevelWarn
	}
	p.log.LogAttrs(context.Background(), level, "job "+o.Result, attrs...)
}

// flush sends the queued acknowledgements in one round trip.
func (p *Poller) flush(ctx context.Context) error {
	if len(p.acks) == 0 {
		return nil
	}
	// While Redis is away, try once a second, not on every turn of the
	// loop: each try may wait out a timeout.
	if !p.downSince.IsZero() && time.Since(p.lastTry) < time.Second {
		return errRedisAway
	}
	p.lastTry = time.Now()
	pipe := p.cfg.Redis.Pipeline()
	sent := p.queueAcks(ctx, pipe)
	err := p.exec(ctx, pipe)
	p.acked(sent, err)
	return err
}

// ack is the Redis side of a job's reservation: its charge when PHP runs
// it, and its settlement. It stays queued until Redis has it: a round trip
// that fails (Redis away) is replayed whole on a later one. Replaying is
// safe: ZREM again does nothing, and a release pushes the job back only if
// its own ZREM removed the reservation (a job reserved again since, by
// queue:work, has another reserved copy). Give-backs and charges are not
// replayed (see dropUnsure).
type ack struct {
	kind      ackKind
	keys      keys
	reserved  string   // the charged copy
	original  string   // the payload as it was on the queue
	releaseAt int64    // ackRelease
	job       *running // ackCharge: moot once the job is settled
}

// ackKind is what an acknowledgement does with a reservation.
type ackKind uint8

const (
	ackDelete   ackKind = iota // the job is done: removed (Laravel's delete)
	ackRelease                 // into the delayed set, due at releaseAt (releaseScript)
	ackGiveBack                // never ran: to the head of its queue as it was (returnScript)
	ackCharge                  // PHP runs it: its attempt counted (chargeScript)
)

// giveBack is the acknowledgement of a job that never ran.
func giveBack(r *running) ack {
	return ack{kind: ackGiveBack, keys: r.queue.keys, reserved: r.reserved, original: r.original}
}

// queueAck queues a for the next round trip.
func (p *Poller) queueAck(a ack) {
	if len(p.acks) == 0 {
		p.acksSince = time.Now()
	}
	p.acks = append(p.acks, a)
}

// queueAcks adds the pending acknowledgements to pipe: the deletes that
// follow one another on one queue as one ZREM of them all (Laravel's
// delete is a ZREM of the one job; here of both forms of its reservation),
// the charges that follow one another on one queue as one chargeScript,
// each release or give-back as its script. A charge whose job has settled
// since is left out: the settlement names both forms.
func (p *Poller) queueAcks(ctx context.Context, pipe redis.Pipeliner) pendingAcks {
	sent := pendingAcks{n: len(p.acks)}
	var members []any // deletes, or charges, on one queue so far
	for i, a := range p.acks {
		switch a.kind {
		case ackRelease:
			sent.cmds = append(sent.cmds, releaseScript.EvalSha(ctx, pipe, []string{a.keys.delayed, a.keys.reserved}, a.reserved, a.original, a.releaseAt))
			continue
		case ackGiveBack:
			sent.cmds = append(sent.cmds, returnScript.EvalSha(ctx, pipe, []string{a.keys.reserved, a.keys.queue, a.keys.notify}, a.reserved, a.original))
			continue
		case ackCharge:
			if !a.job.settled {
				members = append(members, a.original, a.reserved)
			}
		case ackDelete:
			members = append(members, a.reserved, a.original)
		}
		next := i + 1
		if next < len(p.acks) && p.acks[next].kind == a.kind && p.acks[next].keys.reserved == a.keys.reserved {
			continue // the same command goes on
		}
		switch {
		case len(members) == 0:
		case a.kind == ackCharge:
			sent.cmds = append(sent.cmds, chargeScript.EvalSha(ctx, pipe, []string{a.keys.reserved}, members...))
		default:
			sent.cmds = append(sent.cmds, pipe.ZRem(ctx, a.keys.reserved, members...))
		}
		members = nil
	}
	return sent
}

// pendingAcks are the commands that carry the first n acknowledgements.
type pendingAcks struct {
	cmds []redis.Cmder
	n    int
}

// acked drops the acknowledgements Redis took, or keeps them for the next
// round trip (all but the give-backs), and tells of an outage once, when it
// starts and ends.
func (p *Poller) acked(sent pendingAcks, err error) {
	for _, c := range sent.cmds {
		if c.Err() != nil && !errors.Is(c.Err(), redis.Nil) {
			p.redisDown(c.Err())
			p.dropUnsure(sent.n)
			return
		}
	}
	p.acks = p.acks[sent.n:]
	if err == nil {
		p.redisUp()
	}
}

// dropUnsure takes the give-backs and charges out of the first n
// acknowledgements: each is sent once. Replayed after a reply that was
// lost, either could act on the reservation another consumer has made of
// the same job since (a reservation that is the original payload is the
// same, byte for byte, whoever made it): a give-back would run it twice, a
// charge count an attempt of theirs. A give-back that Redis did not take
// leaves its job reserved as it was: it comes back after retry_after,
// attempts not counted; a charge not taken leaves a job that ran
// uncounted, and its settlement names both forms of its reservation.
func (p *Poller) dropUnsure(n int) {
	kept := make([]ack, 0, len(p.acks))
	dropped := 0
	for i, a := range p.acks {
		switch {
		case i >= n || a.kind == ackDelete || a.kind == ackRelease:
			kept = append(kept, a)
		case a.kind == ackGiveBack:
			dropped++
		}
	}
	if dropped > 0 {
		p.log.Warn("could not give back jobs that never ran; they come back after retry_after, attempts not counted", "jobs", dropped)
	}
	p.acks = kept
}

// redisDown notes that Redis did not answer; the first failure of an
// outage is logged. Other errors (a script's) are not an outage.
func (p *Poller) redisDown(err error) {
	if !unreachable(err) {
		return
	}
	if p.downSince.IsZero() {
		p.downSince = time.Now()
		p.log.Error("Redis is unreachable; retrying every second, outcomes are kept until it is back", "error", err)
	}
}

// redisUp notes that Redis answered again.
func (p *Poller) redisUp() {
	if !p.downSince.IsZero() {
		p.log.Info("Redis is reachable again", "outage", time.Since(p.downSince).Round(time.Millisecond))
		p.downSince = time.Time{}
	}
}

// exec runs a pipeline. Commands that failed because Redis lost its script
// cache (a restart) are replayed once after loading the scripts again.
func (p *Poller) exec(ctx context.Context, pipe redis.Pipeliner) error {
	cmds, err := pipe.Exec(ctx)
	if err == nil || errors.Is(err, redis.Nil) {
		return nil
	}
	var replay []redis.Cmder
	for _, c := range cmds {
		if isNoScript(c.Err()) {
			replay = append(replay, c)
		}
	}
	if len(replay) == 0 {
		return err
	}
	if err := p.loadScripts(ctx); err != nil {
		return err
	}
	for _, c := range replay {
		c.SetErr(nil)
		pipe.Process(ctx, c)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	return nil
}

// reserve takes up to free jobs from the queues in order and sends them to
// the dispatcher. It returns how many it sent, whether a queue may hold more
// (it gave all that was asked), and the earliest time a delayed job falls
// due.
//
// The pipeline may hold acknowledgements: they go with the first round trip.
func (p *Poller) reserve(ctx context.Context, conn *protocol.Conn, free int) (sent int, more bool, next time.Time, err error) {
	var batch []protocol.Message
	if !p.downSince.IsZero() || p.uncertain != nil {
		jobs, err := p.recover(ctx)
		if err != nil {
			return 0, false, next, err
		}
		for _, j := range jobs {
			p.nextID++
			p.inflight[p.nextID] = j
			j.queue.running++
			batch = append(batch, protocol.Job{ID: p.nextID, Queue: j.queue.Name, Payload: []byte(j.original)})
			free--
			sent++
		}
		free = max(free, 0)
	}
	for _, i := range p.order() {
		if free == 0 {
			more = true
			break
		}
		q := &p.queues[i]
		ask := min(free, p.cfg.MaxBatch)
		if q.MaxRunning > 0 {
			ask = min(ask, q.MaxRunning-q.running)
			if ask <= 0 {
				continue // at its cap: the next queue gets the room
			}
		}
		jobs, taken, due, err := p.reserveFrom(ctx, q, ask)
		if err != nil {
			// Hand on what earlier queues gave: it is reserved already.
			if len(batch) > 0 {
				if serr := conn.SendBatch(batch); serr != nil {
					err = errors.Join(err, fmt.Errorf("send jobs to dispatcher: %w", serr))
				}
			}
			return sent, more, next, err
		}
		if taken == ask {
			more = true
		}
		if !due.IsZero() && (next.IsZero() || due.Before(next)) {
			next = due
		}
		for _, j := range jobs {
			p.nextID++
			p.inflight[p.nextID] = j
			j.queue.running++
			batch = append(batch, protocol.Job{ID: p.nextID, Queue: q.Name, Payload: []byte(j.original)})
			free--
			sent++
		}
	}
	if len(batch) > 0 {
		if err := conn.SendBatch(batch); err != nil {
			return sent, more, next, fmt.Errorf("send jobs to dispatcher: %w", err)
		}
	}
	return sent, more, next, nil
}

// reserveFrom runs the reserve script on one queue. It returns the jobs to
// run, how many entries it took off the queue (quarantined ones too) and
// when the next delayed job falls due.
func (p *Poller) reserveFrom(ctx context.Context, q *queueState, n int) ([]*running, int, time.Time, error) {
	now := p.cfg.Now()
	expiry := now.Add(q.RetryAfter).Unix()
	k := q.keys
	// The pending acknowledgements ride along.
	pipe := p.cfg.Redis.Pipeline()
	acks := p.queueAcks(ctx, pipe)
	p.seq++
	seq := p.seq
	cmd := reserveScript.EvalSha(ctx, pipe,
		[]string{k.queue, k.delayed, k.reserved, k.notify, k.quarantine, k.receipt},
		now.Unix(), expiry, n, seq)
	// Not cancelled by a stop: the pipeline may carry acknowledgements.
	err := p.exec(context.WithoutCancel(ctx), pipe)
	p.acked(acks, err)
	res, err := cmd.Slice()
	if err != nil {
		if unreachable(err) {
			// Redis may have run it and lost only the reply.
			p.uncertain = &lostReply{queue: q, seq: seq}
		}
		p.redisDown(err)
		return nil, 0, time.Time{}, fmt.Errorf("reserve from %s: %w", k.queue, err)
	}
	if len(res) != 3 {
		return nil, 0, time.Time{}, fmt.Errorf("reserve from %s: unexpected reply %v", k.queue, res)
	}
	pairs, _ := res[0].([]any)
	bad, _ := res[1].([]any)
	var due time.Time
	if s, ok := res[2].(string); ok {
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			due = time.Unix(int64(f), 0)
		}
	}
	for _, b := range bad {
		raw, _ := b.(string)
		p.log.Error("quarantined a queue entry that is not a Laravel job payload (not a JSON object with a numeric \"attempts\")",
			"queue", q.Name, "key", k.quarantine, "entry", preview(raw))
	}
	return p.reservedJobs(ctx, q, pairs, now), len(pairs)/2 + len(bad), due, nil
}

// reservedJobs turns reserved (original, charged copy) pairs into jobs to
// run; one whose payload does not parse, or is too large to hand on, is
// quarantined.
func (p *Poller) reservedJobs(ctx context.Context, q *queueState, pairs []any, now time.Time) []*running {
	k := q.keys
	jobs := make([]*running, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		orig, _ := pairs[i].(string)
		copy, _ := pairs[i+1].(string)
		pl, err := payload.Parse([]byte(orig))
		if err == nil && len(orig) > p.cfg.MaxPayload {
			err = fmt.Errorf("its payload is %d bytes, over the %d bytes kqueue hands to PHP in one frame", len(orig), p.cfg.MaxPayload)
		}
		if err != nil {
			p.log.Error("quarantined a malformed job", "queue", q.Name, "key", k.quarantine, "error", err, "entry", preview(orig))
			if err := quarantineScript.Run(ctx, p.cfg.Redis, []string{k.reserved, k.quarantine}, copy, orig).Err(); err != nil {
				p.log.Error("quarantine failed; the entry stays reserved", "queue", q.Name, "error", err)
			}
			continue
		}
		jobs = append(jobs, &running{queue: q, reserved: copy, original: orig, p: pl, started: now})
	}
	return jobs
}

// lostReply is a reserve call whose reply never came.
type lostReply struct {
	queue *queueState
	seq   uint64
}

// recover runs before reserving while Redis is (or was) away. It checks
// that Redis answers; then, a reserve whose reply was lost may still have
// reserved jobs (a frozen Redis runs what was sent once it thaws), and as
// the last one of this poller, its receipt names them: they run now instead
// of waiting out retry_after. Nothing else is sent while Redis is away, so
// at most one reserve is ever in doubt.
func (p *Poller) recover(ctx context.Context) ([]*running, error) {
	// While Redis is away, one try a second at most, acknowledgements and
	// reserves alike: each may wait out a timeout, and the loop must stay
	// free to answer kqueue status in between.
	if !p.downSince.IsZero() {
		if time.Since(p.lastTry) < time.Second {
			return nil, errRedisAway
		}
		p.lastTry = time.Now()
	}
	if err := p.cfg.Redis.Ping(ctx).Err(); err != nil {
		p.redisDown(err)
		return nil, fmt.Errorf("redis: %w", err)
	}
	u := p.uncertain
	if u == nil {
		return nil, nil
	}
	got, err := p.cfg.Redis.LRange(ctx, u.queue.keys.receipt, 0, -1).Result()
	if err != nil {
		p.redisDown(err)
		return nil, fmt.Errorf("read reserve receipt: %w", err)
	}
	p.uncertain = nil
	if len(got) == 0 || got[0] != strconv.FormatUint(u.seq, 10) {
		return nil, nil // it reserved nothing
	}
	// Only what is still reserved: a reservation that lapsed meanwhile
	// went back to the queue and may be running elsewhere.
	pipe := p.cfg.Redis.Pipeline()
	var scores []*redis.FloatCmd
	for i := 1; i+1 < len(got); i += 2 {
		scores = append(scores, pipe.ZScore(ctx, u.queue.keys.reserved, got[i])) // the original: not charged yet
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		p.uncertain = u
		p.redisDown(err)
		return nil, fmt.Errorf("read reserve receipt: %w", err)
	}
	pairs := make([]any, 0, len(got)-1)
	for i, s := range scores {
		if s.Err() == nil {
			pairs = append(pairs, got[1+2*i], got[2+2*i])
		}
	}
	jobs := p.reservedJobs(ctx, u.queue, pairs, p.cfg.Now())
	p.log.Warn("a reserve's reply was lost in the Redis outage; running the jobs it reserved", "queue", u.queue.Name, "jobs", len(jobs))
	return jobs, nil
}

// order is the order to visit queues in this round: as listed (strict
// priority), or a weighted random permutation.
func (p *Poller) order() []int {
	idx := make([]int, len(p.queues))
	for i := range idx {
		idx[i] = i
	}
	if !p.weighted {
		return idx
	}
	// Weighted sampling without replacement (queues with weight 0 count 1).
	total := 0
	w := make([]int, len(p.queues))
	for i, q := range p.queues {
		w[i] = max(q.Weight, 1)
		total += w[i]
	}
	out := idx[:0:0]
	for len(out) < len(p.queues) {
		r := rand.IntN(total)
		for i := range w {
			if w[i] == 0 {
				continue
			}
			if r < w[i] {
				out = append(out, i)
				total -= w[i]
				w[i] = 0
				break
			}
			r -= w[i]
		}
	}
	return out
}

// extendLeases pushes every running job's reservation expiry forward, so a
// job that runs longer than retry_after is never handed to another worker.
// The pending acknowledgements go first, in the same round trip: a job
// that has finished has no lease but its settlement.
func (p *Poller) extendLeases(ctx context.Context) {
	if len(p.inflight) == 0 && len(p.acks) == 0 {
		return
	}
	if !p.downSince.IsZero() && time.Since(p.lastTry) < time.Second {
		return // Redis is away: the retry timer tries
	}
	now := p.cfg.Now()
	pipe := p.cfg.Redis.Pipeline()
	acks := p.queueAcks(ctx, pipe)
	for _, r := range p.inflight {
		// Either form: one is there.
		expiry := float64(now.Add(r.queue.RetryAfter).Unix())
		pipe.ZAddXX(ctx, r.queue.keys.reserved, redis.Z{Score: expiry, Member: r.reserved}, redis.Z{Score: expiry, Member: r.original})
	}
	err := p.exec(ctx, pipe)
	p.acked(acks, err)
	if err != nil {
		p.redisDown(err)
	}
}

// leaseInterval is how often reservations are extended: well inside the
// shortest retry_after.
func (p *Poller) leaseInterval() time.Duration {
	shortest := p.queues[0].RetryAfter
	for _, q := range p.queues {
		shortest = min(shortest, q.RetryAfter)
	}
	return max(shortest/3, 500*time.Millisecond)
}

func (p *Poller) notifyKeys() []string {
	var ks []string
	_, cluster := p.cfg.Redis.(*redis.ClusterClient)
	for _, q := range p.queues {
		// Under Redis Cluster one BLPOP names keys of one slot only; the
		// queues of other slots are polled when the wait times out.
		if cluster && len(ks) > 0 && hashTag(q.keys.notify) != hashTag(ks[0]) {
			continue
		}
		ks = append(ks, q.keys.notify)
	}
	return ks
}

func (p *Poller) loadScripts(ctx context.Context) error {
	for _, s := range allScripts {
		if err := s.Load(ctx, p.cfg.Redis).Err(); err != nil {
			return fmt.Errorf("load scripts into redis: %w", err)
		}
	}
	return nil
}

func isNoScript(err error) bool {
	return err != nil && len(err.Error()) >= 8 && err.Error()[:8] == "NOSCRIPT"
}

// preview shortens an entry for the log.
func preview(s string) string {
	const n = 200
	if len(s) <= n {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:n]) + fmt.Sprintf("… (%d bytes)", len(s))
}

// waker waits for a job to become ready (a notify token) or for a timeout,
// off the main loop, and reports it as a wake event.
type waker struct {
	rdb    redis.UniversalClient
	keys   []string
	events chan<- event
	armCh  chan armReq
	ctx    context.Context
	cancel context.CancelFunc
}

type armReq struct {
	wait  time.Duration
	block bool // wait on the notify lists, not just the clock
}

func newWaker(rdb redis.UniversalClient, keys []string, events chan<- event) *waker {
	ctx, cancel := context.WithCancel(context.Background())
	w := &waker{rdb: rdb, keys: keys, events: events, armCh: make(chan armReq, 1), ctx: ctx, cancel: cancel}
	go w.loop()
	return w
}

func (w *waker) arm(wait time.Duration, block bool) {
	select {
	case w.armCh <- armReq{wait, block}:
	default: // already armed
	}
}

func (w *waker) loop() {
	for {
		var req armReq
		select {
		case <-w.ctx.Done():
			return
		case req = <-w.armCh:
		}
		if req.block {
			// BLPOP takes a notify token as Laravel's block_for does; the
			// reserve that follows takes another (tokens are only hints).
			// Sent raw: go-redis would round the timeout to whole seconds,
			// and Redis takes fractions.
			args := make([]any, 0, len(w.keys)+2)
			args = append(args, "BLPOP")
			for _, k := range w.keys {
				args = append(args, k)
			}
			wait := min(req.wait, time.Second)
			args = append(args, strconv.FormatFloat(wait.Seconds(), 'f', 3, 64))
			// A deadline of its own: a Redis that does not answer must not
			// hold the wake-up (and so the poller) forever.
			ctx, cancel := context.WithTimeout(w.ctx, wait+2*time.Second)
			err := w.rdb.Do(ctx, args...).Err()
			cancel()
			if err != nil && !errors.Is(err, redis.Nil) && w.ctx.Err() == nil {
				// Redis trouble: do not spin.
				t := time.NewTimer(req.wait)
				select {
				case <-t.C:
				case <-w.ctx.Done():
					t.Stop()
				}
			}
		} else {
			t := time.NewTimer(req.wait)
			select {
			case <-t.C:
			case <-w.ctx.Done():
				t.Stop()
			}
		}
		select {
		case w.events <- event{wake: true}:
		case <-w.ctx.Done():
			return
		}
	}
}

// stop ends the waker without waiting out a BLPOP in flight (up to a
// second: go-redis does not interrupt a command when its context ends). The
// goroutine sends nothing more and ends when the BLPOP returns, or at once
// when the client is closed.
func (w *waker) stop() {
	w.cancel()
}

// unreachable tells an error of the network or of Redis's availability
// (kqueue retries it) from one Redis answered with.
func unreachable(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ENOENT) ||
		errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrClosed) ||
		strings.HasPrefix(err.Error(), "LOADING") // a restarted Redis reading its data
}
