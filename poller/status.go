package poller

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/kqueue/kqueue/protocol"
)

// Snapshot is what `kqueue status` shows of a running poller.
type Snapshot struct {
	Instance string            `json:"instance"`
	Stats    Stats             `json:"stats"`
	Queues   []QueueDepth      `json:"queues"`
	Running  []RunningJob      `json:"running"`
	Workers  []PoolWorker      `json:"workers"`
	Recycles map[string]uint64 `json:"recycles,omitempty"` // workers replaced, by reason
	Failures []FailedRecent    `json:"recent_failures"`
	// Declining says why the workers give the jobs they are handed back
	// unrun (maintenance mode, a paused queue, a Looping listener).
	Declining string `json:"declining,omitempty"`
	// QueuesError says why Queues is empty: the store did not answer.
	QueuesError string `json:"queues_error,omitempty"`
	// Scale is the pool's size, and its last decision when it scales.
	Scale *protocol.Scale `json:"scale,omitempty"`

	took []time.Duration // each queue's mean runtime (WatchWaits)
}

// PoolWorker is one of the dispatcher's warm PHP workers.
type PoolWorker struct {
	PID   uint64        `json:"pid"`
	State string        `json:"state"` // "busy" or "idle"
	Jobs  uint64        `json:"jobs"`  // jobs it has run
	RSS   uint64        `json:"rss"`   // resident bytes
	Age   time.Duration `json:"age"`
}

// QueueDepth is one queue's jobs in the store.
type QueueDepth struct {
	Name     string `json:"name"`
	Ready    int64  `json:"ready"`
	Delayed  int64  `json:"delayed"`
	Reserved int64  `json:"reserved"`
	// Head tells the job at the head of the ready queue from the next
	// (0: none, or the store does not say), for WatchWaits.
	Head uint64 `json:"-"`
	// Wait is how long the queue's jobs wait (see WatchWaits); WaitAlert
	// whether that is over its AlertWait.
	Wait      time.Duration `json:"wait"`
	WaitAlert bool          `json:"wait_alert,omitempty"`
	AlertWait time.Duration `json:"alert_wait,omitempty"`
}

// RunningJob is a job handed to the dispatcher and not yet settled.
type RunningJob struct {
	Queue   string        `json:"queue"`
	UUID    string        `json:"job_uuid"`
	Name    string        `json:"job_name"`
	Attempt int           `json:"attempt"`
	Age     time.Duration `json:"age"`
	// State is "running" once PHP runs it (and for long enough that the
	// dispatcher said so), "handed to PHP" or "waiting for a worker".
	State string `json:"state,omitempty"`
	// What runs it, once the dispatcher said: its PHP process, its
	// timeout (0: none), "inline" or "isolated (limits)", and for an
	// isolated job what its cgroup has used so far.
	PID        uint64        `json:"pid,omitempty"`
	Timeout    time.Duration `json:"timeout,omitempty"`
	Strategy   string        `json:"strategy,omitempty"`
	PeakMemory uint64        `json:"peak_memory,omitempty"`
	CPU        time.Duration `json:"cpu,omitempty"`
}

// WaitingJob is a job waiting in a queue, for the console.
type WaitingJob struct {
	Queue string `json:"queue"`
	State string `json:"state"` // ready, delayed or reserved
	UUID  string `json:"uuid"`
	Name  string `json:"name"`
}

// FailedRecent is one of the last failures.
type FailedRecent struct {
	At     time.Time `json:"at"`
	Queue  string    `json:"queue"`
	UUID   string    `json:"job_uuid"`
	Name   string    `json:"job_name"`
	Result string    `json:"outcome"`
	Reason string    `json:"error"`
}

// keepFailures is how many recent failures a snapshot shows.
const keepFailures = 10

// Snapshot asks the running main loop for its state (so a wedged loop
// does not answer) and reads the queues' depths from the store.
func (p *Poller) Snapshot(ctx context.Context) (Snapshot, error) {
	s, err := p.loopSnapshot(ctx, 0)
	if err != nil {
		return s, err
	}
	depths, err := p.store.Depths(ctx)
	if err != nil {
		s.QueuesError = err.Error() // the rest of the state still helps
		return s, nil
	}
	p.waits.fill(p.queues, depths)
	s.Queues = depths
	return s, nil
}

// loopSnapshot asks the main loop for its state, waiting up to within
// (0: as long as ctx lets it).
func (p *Poller) loopSnapshot(ctx context.Context, within time.Duration) (Snapshot, error) {
	if within > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, within)
		defer cancel()
	}
	reply := make(chan Snapshot, 1)
	select {
	case p.snapshots <- reply:
	case <-ctx.Done():
		return Snapshot{}, fmt.Errorf("poller main loop did not answer: %w", ctx.Err())
	}
	var s Snapshot
	select {
	case s = <-reply:
	case <-ctx.Done():
		return Snapshot{}, fmt.Errorf("poller main loop did not answer: %w", ctx.Err())
	}
	return s, nil
}

// snapshot fills a snapshot from the main loop's state.
func (p *Poller) snapshot(stopping bool) Snapshot {
	s := Snapshot{Instance: p.cfg.Instance, Stats: p.liveStats(stopping), Failures: append([]FailedRecent(nil), p.failures...)}
	now := p.cfg.Now()
	usage := map[uint64]protocol.JobUsage{}
	for _, u := range p.pool.Isolated {
		usage[u.ID] = u
	}
	for id, r := range p.inflight {
		j := RunningJob{Queue: r.queue.Name, UUID: r.p.UUID, Name: r.p.Name(), Attempt: r.p.Attempts + 1, Age: now.Sub(r.started),
			State: "waiting for a worker", PID: r.how.PID, Timeout: r.how.Timeout, Strategy: r.how.Strategy}
		switch {
		case r.began:
			j.State = "running"
		case r.handed:
			j.State = "handed to PHP"
		}
		if u, ok := usage[id]; ok {
			j.PeakMemory, j.CPU = u.PeakMemory, u.CPU
		}
		s.Running = append(s.Running, j)
	}
	sort.Slice(s.Running, func(i, j int) bool { return s.Running[i].Age > s.Running[j].Age })
	for _, w := range p.pool.Workers {
		state := "idle"
		if w.Busy {
			state = "busy"
		}
		s.Workers = append(s.Workers, PoolWorker{PID: w.PID, State: state, Jobs: w.Jobs, RSS: w.RSS, Age: w.Age})
	}
	s.Declining = p.pool.Declining
	if sc := p.pool.Scale; sc.Max > 0 {
		s.Scale = &sc
	}
	for _, q := range p.queues {
		s.took = append(s.took, q.took)
	}
	for _, r := range p.pool.Recycles {
		if s.Recycles == nil {
			s.Recycles = map[string]uint64{}
		}
		s.Recycles[r.Reason] = r.Count
	}
	return s
}

// recordFailure keeps the last failures for the snapshot.
func (p *Poller) recordFailure(f FailedRecent) {
	p.failures = append(p.failures, f)
	if len(p.failures) > keepFailures {
		p.failures = p.failures[len(p.failures)-keepFailures:]
	}
}

// WaitForWork waits up to within for a job to run on any queue: one ready,
// a delayed one due, or a reservation expired. It wakes at once on a push.
// An idle poller calls it before it connects, and so starts, the
// dispatcher again.
func (p *Poller) WaitForWork(ctx context.Context, within time.Duration) (bool, error) {
	if work, err := p.store.HasWork(ctx, p.cfg.Now()); work || err != nil {
		return work, err
	}
	return p.store.Wait(ctx, within)
}
