package poller

import (
	"context"
	"time"
)

// waker waits, off the main loop, for a job to be pushed (Store.Wait) or
// for a timeout, and reports it as a wake event.
type waker struct {
	store  Store
	events chan<- event
	armCh  chan armReq
	ctx    context.Context
	cancel context.CancelFunc
}

type armReq struct {
	wait  time.Duration
	block bool // wait on the store, not just the clock
}

func newWaker(store Store, events chan<- event) *waker {
	ctx, cancel := context.WithCancel(context.Background())
	w := &waker{store: store, events: events, armCh: make(chan armReq, 1), ctx: ctx, cancel: cancel}
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
		slept := false
		if req.block {
			_, err := w.store.Wait(w.ctx, min(req.wait, time.Second))
			// Store trouble: sleep instead, so as not to spin.
			slept = err == nil || w.ctx.Err() != nil
		}
		if !slept {
			w.sleep(req.wait)
		}
		select {
		case w.events <- event{wake: true}:
		case <-w.ctx.Done():
			return
		}
	}
}

func (w *waker) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-w.ctx.Done():
	}
}

// stop ends the waker without waiting out a Store.Wait in flight (up to
// a second: a client may not interrupt a command when its context ends).
// The goroutine sends nothing more and ends when the wait returns.
func (w *waker) stop() {
	w.cancel()
}
