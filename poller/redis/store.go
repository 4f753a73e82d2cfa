// Package redis is the poller's store for Laravel's Redis queues: the
// same keys and the same Lua as Laravel's RedisQueue, so that kqueue and
// `php artisan queue:work` can share queues (docs/laravel-queue.md), plus
// what taking jobs early needs (reservations as they were until PHP runs
// them, receipts for a reply lost in an outage), and Redis Cluster's rules.
package redis

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kqueue/kqueue/payload"
	"github.com/kqueue/kqueue/poller"
	goredis "github.com/redis/go-redis/v9"
)

// Config configures a Store.
type Config struct {
	// Client is the connection to the queues' Redis. Required.
	Client goredis.UniversalClient
	// Prefix is the Laravel Redis client prefix ("laravel_database_").
	Prefix string
	// Queues names the queues, in the poller's order.
	Queues []string
	// FleetMax caps, by queue name, how many of a queue's jobs are
	// reserved at once by every consumer together (see reserveScript).
	FleetMax map[string]int
	// Logger hears of quarantined entries. Default: discard.
	Logger *slog.Logger
}

// Store reserves and settles jobs on Laravel's Redis queues.
type Store struct {
	rdb       goredis.UniversalClient
	prefix    string
	queues    []queue
	log       *slog.Logger
	seq       uint64     // reserve calls made
	uncertain *lostReply // a reserve whose reply was lost: it may have reserved jobs
	history   recordBuf  // Record's arrays, reused from one call to the next
}

type queue struct {
	name     string
	keys     keys
	fleetMax int
}

// lostReply is a reserve call whose reply never came.
type lostReply struct {
	queue int
	seq   uint64
}

// New returns a Store on cfg.Client.
func New(cfg Config) *Store {
	s := &Store{rdb: cfg.Client, prefix: cfg.Prefix, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	// This poller's name in its receipt keys.
	host, _ := os.Hostname()
	token := fmt.Sprintf("%s-%d-%x", host, os.Getpid(), rand.Uint32())
	for _, name := range cfg.Queues {
		s.queues = append(s.queues, queue{name: name, keys: keysFor(cfg.Prefix, name).withReceipt(token), fleetMax: cfg.FleetMax[name]})
	}
	return s
}

// Name is "Redis".
func (s *Store) Name() string { return "Redis" }

// Open loads the scripts.
func (s *Store) Open(ctx context.Context) error {
	if err := s.loadScripts(ctx); err != nil {
		return fmt.Errorf("load scripts into redis: %w", s.classify(err))
	}
	return nil
}

// Reserve runs the reserve script on one queue, with the acknowledgements
// in the same round trip, ahead of it.
func (s *Store) Reserve(ctx context.Context, acks []poller.Ack, q, n int, now, until time.Time) (poller.Reserved, error) {
	k := s.queues[q].keys
	pipe := s.rdb.Pipeline()
	sent := s.queueAcks(ctx, pipe, acks)
	s.seq++
	seq := s.seq
	cmd := reserveScript.EvalSha(ctx, pipe,
		[]string{k.queue, k.delayed, k.reserved, k.notify, k.receipt},
		now.Unix(), until.Unix(), n, seq, s.queues[q].fleetMax)
	// Not cancelled by a stop: the pipeline may carry acknowledgements.
	s.exec(context.WithoutCancel(ctx), pipe)
	var r poller.Reserved
	r.Acked = s.firstErr(sent)
	res, err := cmd.Slice()
	if err != nil {
		if unreachable(err) {
			// Redis may have run it and lost only the reply.
			s.uncertain = &lostReply{queue: q, seq: seq}
		}
		return r, fmt.Errorf("reserve from %s: %w", k.queue, s.classify(err))
	}
	if len(res) != 3 {
		return r, fmt.Errorf("reserve from %s: unexpected reply %v", k.queue, res)
	}
	jobs, _ := res[0].([]any)
	if due, ok := res[1].(string); ok {
		if f, err := strconv.ParseFloat(due, 64); err == nil {
			r.Due = time.Unix(int64(f), 0)
		}
	}
	r.Capped = res[2] == int64(1)
	r.Jobs = jobsOf(q, jobs)
	r.Taken = len(jobs)
	return r, nil
}

// jobsOf turns the payloads a reserve took into jobs.
func jobsOf(q int, payloads []any) []poller.Job {
	jobs := make([]poller.Job, 0, len(payloads))
	for _, p := range payloads {
		s, _ := p.(string)
		jobs = append(jobs, poller.Job{Queue: q, Payload: s})
	}
	return jobs
}

// Ack applies acks in one round trip.
func (s *Store) Ack(ctx context.Context, acks []poller.Ack) error {
	if len(acks) == 0 {
		return nil
	}
	pipe := s.rdb.Pipeline()
	sent := s.queueAcks(ctx, pipe, acks)
	if err := s.exec(ctx, pipe); err != nil {
		if first := s.firstErr(sent); first != nil {
			return first
		}
		return s.classify(err)
	}
	return nil
}

// queueAcks adds acks to pipe: the deletes that follow one another on one
// queue as one ZREM of their originals (Laravel's delete is a ZREM of the
// one job; a job never charged is reserved as it was popped), or, when
// any was charged, as one deleteScript; the charges likewise as one
// chargeScript; each release or give-back as its script. It returns their
// commands.
func (s *Store) queueAcks(ctx context.Context, pipe goredis.Pipeliner, acks []poller.Ack) []goredis.Cmder {
	var cmds []goredis.Cmder
	var jobs []any // deletes, or charges, on one queue so far
	charged := false
	for i, a := range acks {
		k := s.queues[a.Job.Queue].keys
		// A payload goes as a pointer into acks (which outlive the round
		// trip): a string put in an interface is a copy of its header on
		// the heap, one for every job.
		payload := &acks[i].Job.Payload
		switch a.Kind {
		case poller.AckRelease:
			cmds = append(cmds, releaseScript.EvalSha(ctx, pipe, []string{k.delayed, k.reserved}, payload, a.ReleaseAt.Unix()))
			continue
		case poller.AckGiveBack:
			cmds = append(cmds, returnScript.EvalSha(ctx, pipe, []string{k.reserved, k.queue, k.notify}, payload))
			continue
		}
		jobs = append(jobs, payload)
		charged = charged || a.Charged
		if next := i + 1; next < len(acks) && acks[next].Kind == a.Kind && acks[next].Job.Queue == a.Job.Queue {
			continue // the same command goes on
		}
		switch {
		case a.Kind == poller.AckCharge:
			cmds = append(cmds, chargeScript.EvalSha(ctx, pipe, []string{k.reserved}, jobs...))
		case charged:
			cmds = append(cmds, deleteScript.EvalSha(ctx, pipe, []string{k.reserved}, jobs...))
		default:
			cmds = append(cmds, pipe.ZRem(ctx, k.reserved, jobs...))
		}
		jobs, charged = nil, false
	}
	return cmds
}

// firstErr is the first error among cmds (redis.Nil is an answer).
func (s *Store) firstErr(cmds []goredis.Cmder) error {
	for _, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, goredis.Nil) {
			return s.classify(err)
		}
	}
	return nil
}

// Extend sets each lease's expiry, on whichever form of its reservation
// is there: one script per queue.
func (s *Store) Extend(ctx context.Context, leases []poller.Lease) error {
	if len(leases) == 0 {
		return nil
	}
	byQueue := map[int][]any{}
	for _, l := range leases {
		q := l.Job.Queue
		if byQueue[q] == nil {
			byQueue[q] = []any{l.Until.Unix()}
		}
		byQueue[q] = append(byQueue[q], l.Job.Payload)
	}
	pipe := s.rdb.Pipeline()
	for q, args := range byQueue {
		extendScript.EvalSha(ctx, pipe, []string{s.queues[q].keys.reserved}, args...)
	}
	return s.classify(s.exec(ctx, pipe))
}

// Quarantine moves j from the reserved set to the quarantine list.
func (s *Store) Quarantine(ctx context.Context, j poller.Job, why error) {
	q := s.queues[j.Queue]
	s.log.Error("quarantined a malformed job", "queue", q.name, "key", q.keys.quarantine, "error", why, "entry", poller.Preview(j.Payload))
	if err := quarantineScript.Run(ctx, s.rdb, []string{q.keys.reserved, q.keys.quarantine}, j.Payload).Err(); err != nil {
		s.log.Error("quarantine failed; the entry stays reserved", "queue", q.name, "error", err)
	}
}

// Recover pings Redis; then, if a reserve's reply was lost, its receipt
// names what it reserved (a frozen Redis runs what was sent once it
// thaws): those still reserved run now instead of waiting out
// retry_after. The poller sends nothing else while Redis is away, so at
// most one reserve is ever in doubt.
func (s *Store) Recover(ctx context.Context) ([]poller.Job, error) {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("redis: %w", s.classify(err))
	}
	u := s.uncertain
	if u == nil {
		return nil, nil
	}
	k := s.queues[u.queue].keys
	got, err := s.rdb.LRange(ctx, k.receipt, 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("read reserve receipt: %w", s.classify(err))
	}
	s.uncertain = nil
	if len(got) == 0 || got[0] != strconv.FormatUint(u.seq, 10) {
		return nil, nil // it reserved nothing
	}
	// Only what is still reserved: a reservation that lapsed meanwhile
	// went back to the queue and may be running elsewhere.
	pipe := s.rdb.Pipeline()
	var scores []*goredis.FloatCmd
	for _, job := range got[1:] {
		scores = append(scores, pipe.ZScore(ctx, k.reserved, job)) // the original: not charged yet
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		s.uncertain = u
		return nil, fmt.Errorf("read reserve receipt: %w", s.classify(err))
	}
	var held []any
	for i, sc := range scores {
		if sc.Err() == nil {
			held = append(held, got[1+i])
		}
	}
	jobs := jobsOf(u.queue, held)
	s.log.Warn("a reserve's reply was lost in the Redis outage; running the jobs it reserved", "queue", s.queues[u.queue].name, "jobs", len(jobs))
	return jobs, nil
}

// Wait takes a notify token as Laravel's block_for does (BLPOP on every
// queue's :notify list); the reserve that follows takes another (tokens
// are only hints). Under Redis Cluster one BLPOP names keys of one slot
// only: the queues of other slots are polled when the wait times out.
func (s *Store) Wait(ctx context.Context, within time.Duration) (bool, error) {
	args := make([]any, 0, len(s.queues)+2)
	args = append(args, "BLPOP")
	for _, k := range s.notifyKeys() {
		args = append(args, k)
	}
	// Sent raw: go-redis would round the timeout to whole seconds, and
	// Redis takes fractions.
	args = append(args, strconv.FormatFloat(within.Seconds(), 'f', 3, 64))
	// A deadline of its own: a Redis that does not answer must not hold
	// the wait forever.
	ctx, cancel := context.WithTimeout(ctx, within+2*time.Second)
	defer cancel()
	switch err := s.rdb.Do(ctx, args...).Err(); {
	case err == nil:
		return true, nil
	case errors.Is(err, goredis.Nil):
		return false, nil
	default:
		return false, fmt.Errorf("wait for work: %w", s.classify(err))
	}
}

func (s *Store) notifyKeys() []string {
	var ks []string
	_, cluster := s.rdb.(*goredis.ClusterClient)
	for _, q := range s.queues {
		if cluster && len(ks) > 0 && hashTag(q.keys.notify) != hashTag(ks[0]) {
			continue
		}
		ks = append(ks, q.keys.notify)
	}
	return ks
}

// HasWork looks for a ready job, a due delayed one or a lapsed
// reservation on any queue.
func (s *Store) HasWork(ctx context.Context, now time.Time) (bool, error) {
	pipe := s.rdb.Pipeline()
	at := strconv.FormatInt(now.Unix(), 10)
	var counts []*goredis.IntCmd
	for _, q := range s.queues {
		counts = append(counts, pipe.LLen(ctx, q.keys.queue),
			pipe.ZCount(ctx, q.keys.delayed, "-inf", at), pipe.ZCount(ctx, q.keys.reserved, "-inf", at))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return false, fmt.Errorf("look for work: %w", s.classify(err))
	}
	for _, c := range counts {
		if c.Val() > 0 {
			return true, nil
		}
	}
	return false, nil
}

// Depths reads each queue's ready, delayed and reserved counts.
func (s *Store) Depths(ctx context.Context) ([]poller.QueueDepth, error) {
	pipe := s.rdb.Pipeline()
	var cs [][3]*goredis.IntCmd
	heads := make([]*goredis.StringCmd, len(s.queues))
	for i, q := range s.queues {
		cs = append(cs, [3]*goredis.IntCmd{pipe.LLen(ctx, q.keys.queue), pipe.ZCard(ctx, q.keys.delayed), pipe.ZCard(ctx, q.keys.reserved)})
		heads[i] = pipe.LIndex(ctx, q.keys.queue, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return nil, s.classify(err)
	}
	depths := make([]poller.QueueDepth, len(s.queues))
	for i, q := range s.queues {
		depths[i] = poller.QueueDepth{Name: q.name, Ready: cs[i][0].Val(), Delayed: cs[i][1].Val(), Reserved: cs[i][2].Val()}
		if head := heads[i].Val(); head != "" {
			h := fnv.New64a()
			h.Write([]byte(head))
			depths[i].Head = h.Sum64() | 1 // never 0: that is "empty"
		}
	}
	return depths, nil
}

// Oldest says when each queue's oldest ready job was pushed, for the
// queues whose head says (Laravel 11 and later stamp a payload's
// createdAt), for the console.
func (s *Store) Oldest(ctx context.Context) (map[string]time.Time, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*goredis.StringCmd, len(s.queues))
	for i, q := range s.queues {
		cmds[i] = pipe.LIndex(ctx, q.keys.queue, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return nil, s.classify(err)
	}
	out := map[string]time.Time{}
	for i, q := range s.queues {
		if p, err := payload.Parse([]byte(cmds[i].Val())); err == nil && p.CreatedAt != nil {
			out[q.name] = time.Unix(*p.CreatedAt, 0)
		}
	}
	return out, nil
}

// findScan is how many entries Find reads of each queue's ready, delayed
// and reserved jobs.
const findScan = 10000

// Find looks through the first findScan entries of each queue's ready,
// delayed and reserved jobs for those whose payload holds needle (a
// batch's id), up to limit, for the console; it returns how many entries
// it read of each at most.
func (s *Store) Find(ctx context.Context, needle string, limit int) ([]poller.WaitingJob, int, error) {
	pipe := s.rdb.Pipeline()
	type look struct {
		queue, state string
		cmd          *goredis.StringSliceCmd
	}
	var looks []look
	for _, q := range s.queues {
		looks = append(looks,
			look{q.name, "ready", pipe.LRange(ctx, q.keys.queue, 0, findScan-1)},
			look{q.name, "delayed", pipe.ZRange(ctx, q.keys.delayed, 0, findScan-1)},
			look{q.name, "reserved", pipe.ZRange(ctx, q.keys.reserved, 0, findScan-1)})
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return nil, 0, s.classify(err)
	}
	var out []poller.WaitingJob
	for _, l := range looks {
		for _, raw := range l.cmd.Val() {
			if len(out) >= limit {
				return out, findScan, nil
			}
			if !strings.Contains(raw, needle) {
				continue
			}
			w := poller.WaitingJob{Queue: l.queue, State: l.state}
			if p, err := payload.Parse([]byte(raw)); err == nil {
				w.UUID, w.Name = p.UUID, p.Name()
			}
			out = append(out, w)
		}
	}
	return out, findScan, nil
}

// Done deletes this poller's reserve receipts, unless a reserve's reply
// is in doubt (Recover reads its receipt): a stopped poller leaves no key
// of its own behind.
func (s *Store) Done(ctx context.Context) {
	if s.uncertain != nil {
		return
	}
	pipe := s.rdb.Pipeline()
	for _, q := range s.queues {
		pipe.Del(ctx, q.keys.receipt)
	}
	pipe.Exec(ctx) // best effort: a receipt expires with its reservations anyway
}

// exec runs a pipeline. Commands that failed because Redis lost its script
// cache (a restart) are replayed once after loading the scripts again.
func (s *Store) exec(ctx context.Context, pipe goredis.Pipeliner) error {
	cmds, err := pipe.Exec(ctx)
	if err == nil || errors.Is(err, goredis.Nil) {
		return nil
	}
	var replay []goredis.Cmder
	for _, c := range cmds {
		if isNoScript(c.Err()) {
			replay = append(replay, c)
		}
	}
	if len(replay) == 0 {
		return err
	}
	if err := s.loadScripts(ctx); err != nil {
		return err
	}
	for _, c := range replay {
		c.SetErr(nil)
		pipe.Process(ctx, c)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return err
	}
	return nil
}

func (s *Store) loadScripts(ctx context.Context) error {
	for _, sc := range allScripts {
		if err := sc.Load(ctx, s.rdb).Err(); err != nil {
			return err
		}
	}
	return nil
}

// classify marks the errors that mean Redis is away.
func (s *Store) classify(err error) error {
	if err != nil && unreachable(err) {
		return poller.Unreachable(err)
	}
	return err
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// unreachable tells an error of the network or of Redis's availability
// (kqueue retries it) from one Redis answered with.
func unreachable(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ENOENT) ||
		errors.Is(err, goredis.ErrPoolTimeout) || errors.Is(err, goredis.ErrClosed) ||
		strings.HasPrefix(err.Error(), "LOADING") // a restarted Redis reading its data
}
