package daemon

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
	"github.com/kqueue/kqueue/poller"
	"github.com/kqueue/kqueue/poller/redis"
)

// Runs are counted in their minute's tally and in their hour's, which
// holds the sums of its minutes'.
func TestRecorderTalliesMinutesAndHours(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	s := redis.New(redis.Config{Client: r.Client, Prefix: "p_", Queues: []string{"default"}})
	rec, stop := startRecorder(ctx, nil, 0, s, slog.New(slog.DiscardHandler))
	hour := time.Now().Truncate(time.Hour).Add(-time.Hour)
	run := func(at time.Duration, outcome string, failed bool) {
		rec.add(poller.Record{Queue: "default", Name: `App\Jobs\Noop`, Outcome: outcome, Failed: failed,
			Ended: hour.Add(at), Duration: 3 * time.Millisecond})
	}
	run(time.Minute+time.Second, "done", false)
	run(time.Minute+2*time.Second, "done", false)
	run(2*time.Minute, "failed", true)
	run(59*time.Minute, "released", false)
	run(61*time.Minute, "done", false) // the next hour
	stop()

	runs := poller.TallyField("default", `App\Jobs\Noop`, poller.StatRuns, -1)
	failed := poller.TallyField("default", `App\Jobs\Noop`, poller.StatFailed, -1)
	released := poller.TallyField("default", `App\Jobs\Noop`, poller.StatReleased, -1)
	fast := poller.TallyField("default", `App\Jobs\Noop`, poller.StatRuntime, poller.DurationBucket(3*time.Millisecond))
	for _, c := range []struct {
		span   time.Duration
		at     time.Time
		counts map[string]int64
		what   string
	}{
		{time.Minute, hour.Add(time.Minute), map[string]int64{runs: 2, fast: 2}, "minute 1"},
		{time.Minute, hour.Add(2 * time.Minute), map[string]int64{runs: 1, failed: 1, fast: 1}, "minute 2"},
		{time.Hour, hour, map[string]int64{runs: 4, failed: 1, released: 1, fast: 4}, "the hour"},
		{time.Hour, hour.Add(time.Hour), map[string]int64{runs: 1, fast: 1}, "the next hour"},
	} {
		ts, err := s.ReadTallies(ctx, c.span, c.at, c.at)
		if err != nil {
			t.Fatal(err)
		}
		if len(ts) != 1 {
			t.Fatalf("%s: %d tallies, want 1", c.what, len(ts))
		}
		for f, n := range c.counts {
			if got := ts[0].Counts[f]; got != n {
				t.Errorf("%s: %q = %d, want %d (all: %v)", c.what, f, got, n, ts[0].Counts)
			}
		}
		if len(ts[0].Counts) != len(c.counts) {
			t.Errorf("%s: counts %v, want %v", c.what, ts[0].Counts, c.counts)
		}
	}
}
