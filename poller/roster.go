package poller

import (
	"context"
	"os"
	"time"
)

// Instance is what one kqueue instance publishes about itself in its
// store, so that a console reading the store sees every host sharing the
// queues without reaching them: its state as `kqueue status` shows it,
// less the queues' depths (the console reads those once for all).
type Instance struct {
	ID      string    `json:"id"` // host/name: unique among the instances sharing the queues
	Host    string    `json:"host"`
	At      time.Time `json:"at"`      // when it was published
	Expires time.Time `json:"expires"` // when it no longer counts, unless published again
	Snapshot
}

// Roster is a store that keeps the instances' published state beside the
// queues (Redis). An instance that stops publishing drops out of it when
// its entry expires.
type Roster interface {
	Announce(ctx context.Context, in Instance) error
	// Withdraw removes an instance's entry: it stopped.
	Withdraw(ctx context.Context, id string) error
	// Instances reads the entries not yet expired at now.
	Instances(ctx context.Context, now time.Time) ([]Instance, error)
}

// Announce publishes this poller's state to r every every, each entry
// good for ttl, until ctx ends; then it withdraws the entry. The state
// comes from the main loop, so a wedged poller drops out of the roster.
func (p *Poller) Announce(ctx context.Context, r Roster, every, ttl time.Duration) {
	host, _ := os.Hostname()
	id := host + "/" + p.cfg.Instance
	t := time.NewTicker(every)
	defer t.Stop()
	defer func() {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		r.Withdraw(wctx, id) // best effort: the entry expires anyway
	}()
	for {
		s, err := p.loopSnapshot(ctx, every)
		if err == nil {
			now := time.Now()
			in := Instance{ID: id, Host: host, At: now, Expires: now.Add(ttl), Snapshot: s}
			actx, cancel := context.WithTimeout(ctx, every)
			if err := r.Announce(actx, in); err != nil && !IsUnreachable(err) && ctx.Err() == nil {
				p.log.Warn("could not publish this instance's state for the console", "error", err)
			}
			cancel()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
