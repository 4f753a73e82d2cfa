package poller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/kqueue/kqueue/internal/cut"
	"github.com/kqueue/kqueue/protocol"
)

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
// back to their queues (see AckGiveBack): they did not run, so no attempt
// is counted (left to expire, each would come back after retry_after with
// one more attempt, and a job allowed one try would fail without having
// run). One round trip; if the store does not take it, they expire.
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
		p.queueAck(AckGiveBack, r, time.Time{})
		r.queue.running--
		delete(p.inflight, id)
	}
	switch err := p.flush(context.Background()); {
	case errors.Is(err, errStoreAway):
		p.log.Warn(fmt.Sprintf("could not return the jobs the dispatcher had not started: %s is unreachable; they run again after retry_after", p.outage.store), "jobs", len(ids))
	case err == nil:
		p.log.Info("dispatcher lost: returned the jobs it had not started to their queues", "jobs", len(ids))
	} // else acked has said so
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
		if r, ok := p.inflight[m.ID]; ok {
			if m.PID != 0 {
				r.how = m
			}
			if !r.began {
				r.handed, r.began = true, true
				p.queueAck(AckCharge, r, time.Time{})
			}
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

// settle queues the store side of an outcome and logs the job's story.
func (p *Poller) settle(r *running, o protocol.Outcome) {
	// A delete, release or give-back names both forms of the reservation:
	// a charge still queued is moot. A kept reservation still needs it.
	r.settled = o.Kind != protocol.Keep
	switch o.Kind {
	case protocol.Delete:
		p.queueAck(AckDelete, r, time.Time{})
	case protocol.GiveBack:
		p.queueAck(AckGiveBack, r, time.Time{})
	case protocol.Release:
		// It ran (a job that did not is given back): released with its
		// attempt counted, as Laravel does, whether or not its charge came
		// first (the dispatcher leaves out the Running of a job whose
		// outcome goes with it).
		p.queueAck(AckRelease, r, time.Unix(o.ReleaseAt, 0))
	case protocol.Keep:
		// Leave it reserved: it comes back after retry_after, as under Laravel.
	}
	if o.Duration > 0 {
		if r.queue.took == 0 {
			r.queue.took = o.Duration
		} else {
			r.queue.took += (o.Duration - r.queue.took) / 8
		}
	}
	if p.cfg.Observe != nil {
		p.cfg.Observe(Settled{Queue: r.queue.Name, Job: r.p.Name(), Outcome: o.Result, Duration: o.Duration, Wait: p.waited(r, o), Memory: o.Memory})
	}
	if p.cfg.Record != nil && o.Kind != protocol.GiveBack {
		p.cfg.Record(p.record(r, o))
	}
	if o.Failed || o.Failure.Killed() {
		p.recordFailure(FailedRecent{At: p.cfg.Now(), Queue: r.queue.Name, UUID: r.p.UUID, Name: r.p.Name(), Result: o.Result, Reason: cut.Head(o.Reason, KeepReason)})
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
	switch {
	case o.Failed || o.Failure.Killed():
		level = slog.LevelWarn
	case o.Result == protocol.Declined:
		level = slog.LevelDebug // the dispatcher says why, once
		r.queue.heldUntil = p.cfg.Now().Add(time.Second)
	case o.Result == protocol.Done && (p.cfg.QuietDone || !p.done.take(p.cfg.Now(), p.log)):
		level = slog.LevelDebug
	}
	if ctx := context.Background(); p.log.Enabled(ctx, level) {
		p.logSettled(ctx, level, r, o)
	}
}

// logSettled logs a job's entry: "job done", "job failed", … with its
// fields.
func (p *Poller) logSettled(ctx context.Context, level slog.Level, r *running, o protocol.Outcome) {
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
	// The record without its caller's PC, which slog's Logger would walk
	// the stack for on every job (no handler of kqueue's writes the
	// source).
	rec := slog.NewRecord(time.Now(), level, "job "+o.Result, 0)
	rec.AddAttrs(attrs...)
	p.log.Handler().Handle(ctx, rec)
}

// record is the history's record of r's run.
func (p *Poller) record(r *running, o protocol.Outcome) Record {
	now := p.cfg.Now()
	rec := Record{
		UUID: r.p.UUID, Name: r.p.Name(), Queue: r.queue.Name, Instance: p.cfg.Instance, Attempt: r.p.Attempts + 1,
		Outcome: o.Result, Failed: o.Failed, Reason: cut.Head(o.Reason, KeepReason), Ended: now, Duration: o.Duration,
		Memory: o.Memory, CPU: o.CPU, Strategy: o.Strategy, Tags: r.p.Tags, Output: o.Output, Payload: r.job.Payload,
	}
	for _, t := range o.Tags {
		if !slices.Contains(rec.Tags, t) {
			rec.Tags = append(slices.Clip(rec.Tags), t)
		}
	}
	if len(rec.Payload) > KeepPayload {
		rec.Payload = rec.Payload[:KeepPayload]
	}
	rec.Wait = p.waited(r, o)
	return rec
}

// waited is how long a job waited from its push to its start, on its
// first run, where its payload says when it was pushed (Laravel 11 and
// later); 0 otherwise.
func (p *Poller) waited(r *running, o protocol.Outcome) time.Duration {
	if c := r.p.CreatedAt; c != nil && r.p.Attempts == 0 {
		if w := p.cfg.Now().Add(-o.Duration).Sub(time.Unix(*c, 0)); w > 0 {
			return w
		}
	}
	return 0
}
