package daemon

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/kqueue/kqueue/poller"
)

// recorder writes the poller's job records to the store's history, in
// batches, and counts them in its tallies, off the poller's main loop.
// Both are best effort: a record that finds the queue to the store full,
// or the store away, is dropped — jobs never wait for it.
type recorder struct {
	h      poller.History // nil: no history kept
	keep   int
	t      poller.Tallies                       // nil: none kept
	counts map[bucket]map[poller.TallyKey]int64 // by minute
	log    *slog.Logger
	host   string
	ch     chan poller.Record
	done   chan struct{}
}

// bucket is a tally's time bucket: its start (Unix seconds) and span.
type bucket struct {
	start int64
	span  time.Duration
}

// recordBatch is the most records one round trip writes; recordEvery how
// long a record waits for others to share it; tallyEvery how often the
// counts go to the store.
const (
	recordBatch = 512
	recordEvery = 200 * time.Millisecond
	tallyEvery  = 2 * time.Second
)

// startRecorder starts a recorder into h (nil: none) and t (nil: none).
func startRecorder(ctx context.Context, h poller.History, keep int, t poller.Tallies, log *slog.Logger) (*recorder, func()) {
	host, _ := os.Hostname()
	r := &recorder{h: h, keep: keep, t: t, counts: map[bucket]map[poller.TallyKey]int64{}, log: log, host: host,
		ch: make(chan poller.Record, 8*recordBatch), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(ctx)
	go r.run(ctx)
	return r, func() { cancel(); <-r.done }
}

// add takes a record from the poller's main loop; it never blocks.
func (r *recorder) add(rec poller.Record) {
	rec.Host = r.host
	select {
	case r.ch <- rec:
	default:
	}
}

func (r *recorder) run(ctx context.Context) {
	defer close(r.done)
	batch := make([]poller.Record, 0, recordBatch)
	t := time.NewTimer(recordEvery)
	defer t.Stop()
	tally := time.NewTicker(tallyEvery)
	defer tally.Stop()
	var failing bool
	report := func(ctx context.Context, err error) {
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			r.log.Warn("could not record job runs for the console; they are dropped until it works again", "error", err)
			failing = true
		case err == nil && failing:
			r.log.Info("recording job runs for the console again")
			failing = false
		}
	}
	flush := func(ctx context.Context) {
		if len(batch) == 0 {
			return
		}
		if r.h != nil {
			report(ctx, r.h.Record(ctx, batch, r.keep))
		}
		batch = batch[:0]
	}
	flushTally := func(ctx context.Context) {
		if r.t == nil || len(r.counts) == 0 {
			return
		}
		// A run is counted in its minute; its hour's counts are the sums
		// of its minutes'.
		hours := map[bucket]map[string]int64{}
		var ts []poller.Tally
		for k, c := range r.counts {
			named := make(map[string]int64, len(c))
			hk := bucket{time.Unix(k.start, 0).Truncate(time.Hour).Unix(), time.Hour}
			if hours[hk] == nil {
				hours[hk] = make(map[string]int64, len(c))
			}
			for f, n := range c {
				name := f.Field()
				named[name] = n
				hours[hk][name] += n
			}
			ts = append(ts, poller.Tally{Start: time.Unix(k.start, 0), Span: k.span, Counts: named})
		}
		for k, named := range hours {
			ts = append(ts, poller.Tally{Start: time.Unix(k.start, 0), Span: k.span, Counts: named})
		}
		clear(r.counts)
		report(ctx, r.t.AddTallies(ctx, ts))
	}
	take := func(rec poller.Record) {
		if r.t != nil {
			k := bucket{rec.Ended.Truncate(time.Minute).Unix(), time.Minute}
			if r.counts[k] == nil {
				r.counts[k] = map[poller.TallyKey]int64{}
			}
			rec.Count(r.counts[k])
		}
		if r.h != nil {
			batch = append(batch, rec)
		}
	}
	for {
		select {
		case <-ctx.Done():
			// What is left, if the store takes it at once.
			for more := true; more; {
				select {
				case rec := <-r.ch:
					take(rec)
				default:
					more = false
				}
			}
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			flush(fctx)
			flushTally(fctx)
			cancel()
			return
		case rec := <-r.ch:
			take(rec)
			// And what else waits, without a select for each.
			for more := len(r.ch); more > 0 && len(batch) < recordBatch; more-- {
				take(<-r.ch)
			}
			if len(batch) >= recordBatch {
				flush(ctx)
			}
		case <-t.C:
			flush(ctx)
			t.Reset(recordEvery)
		case <-tally.C:
			flushTally(ctx)
		}
	}
}
