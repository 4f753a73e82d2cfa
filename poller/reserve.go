package poller

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
	"unsafe"

	"github.com/kqueue/kqueue/payload"
	"github.com/kqueue/kqueue/protocol"
)

// reserve takes up to free jobs from the queues in order and sends them to
// the dispatcher. It returns how many it sent, whether a queue may hold more
// (it gave all that was asked), and the earliest time a delayed job falls
// due. The pending acknowledgements ride along with the first round trip.
func (p *Poller) reserve(ctx context.Context, conn *protocol.Conn, free int) (sent int, more bool, due time.Time, err error) {
	var batch []protocol.Message
	hand := func(jobs []Job) {
		for _, j := range p.runnable(ctx, jobs) {
			p.nextID++
			p.inflight[p.nextID] = j
			j.queue.running++
			batch = append(batch, protocol.Job{ID: p.nextID, Queue: j.queue.Name, Payload: j.raw, Row: j.job.Row, SQS: j.job.SQS, Parsed: j.p})
			free--
			sent++
		}
	}
	if p.outage.down() || p.outage.recover {
		jobs, err := p.recover(ctx)
		if err != nil {
			return 0, false, due, err
		}
		hand(jobs)
		free = max(free, 0)
	}
	now := p.cfg.Now()
	p.fleetHeld, p.receiving = false, false
	for _, i := range p.order() {
		if free == 0 {
			more = true
			break
		}
		q := &p.queues[i]
		if q.heldUntil.After(now) {
			continue // its jobs were declined a moment ago
		}
		ask := min(free, p.cfg.MaxBatch)
		if q.MaxRunning > 0 {
			ask = min(ask, q.MaxRunning-q.running)
			if ask <= 0 {
				continue // at its cap: the next queue gets the room
			}
		}
		r, err := p.reserveFrom(ctx, q, ask)
		if err != nil {
			// Hand on what earlier queues gave: it is reserved already.
			return sent, more, due, errors.Join(err, p.send(conn, batch))
		}
		if r.Taken == ask {
			more = true
		}
		p.fleetHeld = p.fleetHeld || r.Capped
		p.receiving = p.receiving || r.Receiving
		if !r.Due.IsZero() && (due.IsZero() || r.Due.Before(due)) {
			due = r.Due
		}
		hand(r.Jobs)
	}
	return sent, more, due, p.send(conn, batch)
}

// send hands a batch of jobs to the dispatcher.
func (p *Poller) send(conn *protocol.Conn, batch []protocol.Message) error {
	if len(batch) == 0 {
		return nil
	}
	if err := conn.SendBatch(batch); err != nil {
		return fmt.Errorf("send jobs to dispatcher: %w", err)
	}
	return nil
}

// reserveFrom reserves up to n jobs of q, the pending acknowledgements
// riding along.
func (p *Poller) reserveFrom(ctx context.Context, q *queueState, n int) (Reserved, error) {
	now := p.cfg.Now()
	sending := len(p.acks.pending)
	r, err := p.store.Reserve(ctx, p.acks.out(), q.index, n, now, now.Add(q.RetryAfter))
	p.acked(sending, r.Acked)
	if err != nil {
		p.outage.begin(err)
		return r, err
	}
	if r.Acked == nil {
		p.outage.end()
	}
	return r, nil
}

// runnable turns reserved jobs into running ones; a job whose payload does
// not parse, or is too large to hand on, is quarantined instead.
func (p *Poller) runnable(ctx context.Context, jobs []Job) []*running {
	now := p.cfg.Now()
	out := make([]*running, 0, len(jobs))
	for _, j := range jobs {
		var pl *payload.Payload
		var err error
		raw := readOnlyBytes(j.Payload)
		if n := j.Attempts(); n >= 0 {
			pl, err = payload.ParseRow(raw, n)
		} else {
			pl, err = payload.Parse(raw)
		}
		if err == nil && len(j.Payload) > p.cfg.MaxPayload {
			err = fmt.Errorf("its payload is %d bytes, over the %d bytes kqueue hands to PHP in one frame", len(j.Payload), p.cfg.MaxPayload)
		}
		if err != nil {
			p.store.Quarantine(ctx, j, err)
			continue
		}
		out = append(out, &running{queue: &p.queues[j.Queue], job: j, raw: raw, p: pl, started: now})
	}
	return out
}

// readOnlyBytes is s's bytes, not a copy: a job's payload is read by the
// payload parser and written to PHP's pipe or the dispatcher's stream, and
// nothing changes it, so the copy []byte(s) makes (the size of every
// payload, for every job) would be garbage for nothing. The bytes must not
// be written to: they are the string's.
func readOnlyBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// recover runs before reserving while the store is (or was) away: it asks
// the store whether it answers, and for the jobs a reserve whose reply was
// lost took (they run now instead of waiting out retry_after).
func (p *Poller) recover(ctx context.Context) ([]Job, error) {
	if !p.outage.mayTry() {
		return nil, errStoreAway
	}
	jobs, err := p.store.Recover(ctx)
	if err != nil {
		p.outage.begin(err)
		return nil, err
	}
	p.outage.recover = false
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
// The pending acknowledgements go first: a job that has finished has no
// lease but its settlement.
func (p *Poller) extendLeases(ctx context.Context) {
	if len(p.inflight) == 0 && len(p.acks.pending) == 0 {
		return
	}
	if !p.outage.mayTry() {
		return // the store is away: the retry timer tries
	}
	// An acknowledgement the store refuses (a script's error) is kept for
	// later; it must not cost the running jobs their leases.
	if err := p.sendAcks(ctx); IsUnreachable(err) {
		return
	}
	if len(p.inflight) == 0 {
		return
	}
	now := p.cfg.Now()
	leases := make([]Lease, 0, len(p.inflight))
	for _, r := range p.inflight {
		leases = append(leases, Lease{Job: r.job, Until: now.Add(r.queue.RetryAfter)})
	}
	if err := p.store.Extend(ctx, leases); err != nil {
		p.outage.begin(err)
	} else {
		p.outage.end()
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
