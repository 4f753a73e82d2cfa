package daemon

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/kqueue/kqueue/poller"
)

// recorder writes the poller's job records to the store's history, in
// batches, off the poller's main loop. History is best effort: a record
// that finds the queue to the store full, or the store away, is dropped —
// jobs never wait for it.
type recorder struct {
	h    poller.History
	keep int
	log  *slog.Logger
	host string
	ch   chan poller.Record
	done chan struct{}
}

// recordBatch is the most records one round trip writes; recordEvery how
// long a record waits for others to share it.
const (
	recordBatch = 512
	recordEvery = 200 * time.Millisecond
)

func startRecorder(ctx context.Context, h poller.History, keep int, log *slog.Logger) (*recorder, func()) {
	host, _ := os.Hostname()
	r := &recorder{h: h, keep: keep, log: log, host: host, ch: make(chan poller.Record, 8*recordBatch), done: make(chan struct{})}
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
	var failing bool
	flush := func(ctx context.Context) {
		if len(batch) == 0 {
			return
		}
		err := r.h.Record(ctx, batch, r.keep)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			r.log.Warn("could not record job runs for the console's history; they are dropped until it works again", "error", err, "jobs", len(batch))
			failing = true
		case err == nil && failing:
			r.log.Info("recording job runs for the console's history again")
			failing = false
		}
		batch = batch[:0]
	}
	for {
		select {
		case <-ctx.Done():
			// What is left, if the store takes it at once.
			for more := true; more && len(batch) < recordBatch; {
				select {
				case rec := <-r.ch:
					batch = append(batch, rec)
				default:
					more = false
				}
			}
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			flush(fctx)
			cancel()
			return
		case rec := <-r.ch:
			batch = append(batch, rec)
			if len(batch) >= recordBatch {
				flush(ctx)
			}
		case <-t.C:
			flush(ctx)
			t.Reset(recordEvery)
		}
	}
}
