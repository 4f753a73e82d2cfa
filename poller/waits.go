package poller

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/kqueue/kqueue/protocol"
)

// A queue's wait is how long its jobs wait to start, as well as the store
// lets kqueue see it without reading every job: the longer of
//
//   - how long the job at the head of the queue has been there, as seen
//     once a second (a queue whose workers are all stuck on long jobs), and
//   - how long its ready jobs would take to start at the pace the pool has
//     run them: ready jobs × the queue's mean runtime ÷ the workers
//     (Horizon's measure: a long queue drained quickly waits little).
//
// The autoscaler grows the pool on it (Demand), and the long-wait alerts
// fire on it.

// Alert is a queue crossing its alert_wait, one way or the other: once
// per episode, and once when it recovers.
type Alert struct {
	Queue     string
	Wait      time.Duration
	Threshold time.Duration
	Over      bool // false: it recovered
}

func (a Alert) String() string {
	if a.Over {
		return fmt.Sprintf("kqueue: jobs on queue %q wait %s, over its alert_wait of %s", a.Queue, a.Wait.Round(time.Second), a.Threshold)
	}
	return fmt.Sprintf("kqueue: jobs on queue %q wait %s again, under its alert_wait of %s", a.Queue, a.Wait.Round(time.Second), a.Threshold)
}

// waits is each queue's wait as last worked out, shared by the watcher and
// the snapshot.
type waits struct {
	mu     sync.Mutex
	queues []queueWait
	demand *protocol.Demand // the last word for the dispatcher; nil before
}

type queueWait struct {
	head     uint64    // the head's identity as last seen (0: empty)
	since    time.Time // when that head was first seen
	wait     time.Duration
	alerting bool
}

// WatchWaits works out each queue's wait every every until ctx ends: it
// tells the dispatcher, through the main loop, which queue is furthest
// over its scale_wait, and raises and clears long-wait alerts (logged,
// and given to alert when set, from this goroutine).
func (p *Poller) WatchWaits(ctx context.Context, every time.Duration, alert func(Alert)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s, err := p.loopSnapshot(ctx, every)
		if err != nil {
			continue
		}
		depths, err := p.store.Depths(ctx)
		if err != nil || len(depths) != len(p.queues) {
			continue // the outage is told elsewhere; no new word
		}
		for _, a := range p.waits.update(p.queues, depths, s.took, len(s.Workers), time.Now()) {
			if a.Over {
				p.log.Warn("jobs wait too long", "queue", a.Queue, "wait", a.Wait.Round(time.Second), "alert_wait", a.Threshold)
			} else {
				p.log.Info("jobs wait no longer than they should", "queue", a.Queue, "wait", a.Wait.Round(time.Second), "alert_wait", a.Threshold)
			}
			if alert != nil {
				alert(a)
			}
		}
	}
}

// update works out the waits from the queues' depths, the mean runtime of
// each queue's jobs and the pool's workers, and returns the alerts to
// raise or clear.
func (w *waits) update(queues []queueState, depths []QueueDepth, took []time.Duration, workers int, now time.Time) []Alert {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queues) != len(queues) {
		w.queues = make([]queueWait, len(queues))
	}
	var alerts []Alert
	var demand protocol.Demand
	worst := -1.0
	for i := range queues {
		// Only the queue's settings: the rest is the main loop's.
		q, qw, d := &queues[i].Queue, &w.queues[i], depths[i]
		if d.Head != qw.head {
			qw.head, qw.since = d.Head, now
		}
		qw.wait = 0
		if d.Head != 0 {
			qw.wait = now.Sub(qw.since)
		}
		if i < len(took) && d.Ready > 0 {
			qw.wait = max(qw.wait, time.Duration(d.Ready)*took[i]/time.Duration(max(workers, 1)))
		}
		if q.ScaleWait > 0 {
			if r := float64(qw.wait) / float64(q.ScaleWait); r > worst {
				worst, demand = r, protocol.Demand{Queue: q.Name, Wait: qw.wait, Target: q.ScaleWait}
			}
		}
		switch {
		case q.AlertWait <= 0:
		case !qw.alerting && qw.wait > q.AlertWait:
			qw.alerting = true
			alerts = append(alerts, Alert{Queue: q.Name, Wait: qw.wait, Threshold: q.AlertWait, Over: true})
		case qw.alerting && qw.wait <= q.AlertWait/2:
			// Recovered only well under the threshold, so that a wait
			// hovering at it is one episode, not many.
			qw.alerting = false
			alerts = append(alerts, Alert{Queue: q.Name, Wait: qw.wait, Threshold: q.AlertWait})
		}
	}
	if worst >= 0 {
		w.demand = &demand
	}
	return alerts
}

// fill adds the waits to a snapshot's queues.
func (w *waits) fill(queues []queueState, depths []QueueDepth) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range depths {
		if i < len(queues) {
			depths[i].AlertWait = queues[i].AlertWait
		}
		if i < len(w.queues) {
			depths[i].Wait, depths[i].WaitAlert = w.queues[i].wait, w.queues[i].alerting
		}
	}
}

// lastDemand is the last word for the dispatcher, if any.
func (w *waits) lastDemand() (protocol.Demand, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.demand == nil {
		return protocol.Demand{}, false
	}
	return *w.demand, true
}
