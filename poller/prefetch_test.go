package poller_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
	"github.com/kqueue/kqueue/poller"
	"github.com/kqueue/kqueue/protocol"
)

// A reserved job stays in the reserved set as it was on the queue until
// the dispatcher says PHP runs it; then its charged copy (attempts+1, as
// Laravel's pop reserves it) takes its place. So a job taken early and
// never run comes back to anyone, after retry_after, exactly as it was.
func TestReservedAsItWasUntilPHPRunsIt(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	ctx := context.Background()
	k := keysOf("default")
	d, queued, jobs := reserveAll(t, r, 3, poller.Config{})
	reserved := func() []string {
		got := r.Client.ZRange(ctx, k.reserved, 0, -1).Val()
		slices.Sort(got)
		return got
	}
	want := slices.Clone(queued)
	slices.Sort(want)
	if got := reserved(); !slices.Equal(got, want) {
		t.Fatalf("reserved before any ran:\n%q\nwant the jobs as they were:\n%q", got, want)
	}
	d.conn.SendBatch([]protocol.Message{protocol.Started{ID: jobs[1].ID}, protocol.Running{ID: jobs[0].ID}})
	// The charged copy is cjson's encoding of the job with attempts+1.
	charged := func(m string) bool {
		return m != queued[0] && strings.Contains(m, `"uuid":"default-0"`) && strings.Contains(m, `"attempts":1`)
	}
	testenv.Eventually(t, 10*time.Second, "the running job's attempt to be counted", func() bool {
		return slices.ContainsFunc(reserved(), charged)
	})
	got := reserved()
	if len(got) != 3 || !slices.Contains(got, queued[1]) || !slices.Contains(got, queued[2]) {
		t.Errorf("reserved:\n%q\nwant the running job charged, the others as they were", got)
	}
	// Done: both forms leave.
	d.conn.SendBatch([]protocol.Message{protocol.Outcome{ID: jobs[0].ID, Kind: protocol.Delete, Result: "done"}})
	testenv.Eventually(t, 10*time.Second, "the finished job's delete", func() bool { return len(reserved()) == 2 })
}

// A job that runs and ends before its charge went to Redis is settled
// whole: the charge is dropped, the delete names both forms.
func TestChargeAndOutcomeTogether(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	ctx := context.Background()
	k := keysOf("default")
	d, _, jobs := reserveAll(t, r, 2, poller.Config{})
	var batch []protocol.Message
	for _, j := range jobs {
		batch = append(batch, protocol.Running{ID: j.ID}, protocol.Outcome{ID: j.ID, Kind: protocol.Delete, Result: "done"})
	}
	d.conn.SendBatch(batch)
	testenv.Eventually(t, 10*time.Second, "both deletes", func() bool { return r.Client.ZCard(ctx, k.reserved).Val() == 0 })
}

// A finished job's delete does not wait for a reserve to carry it while the
// other jobs run long: it reaches Redis within a few milliseconds (before,
// it waited in the poller until capacity freed up, its lease no longer
// extended, and another consumer could run it again).
func TestHeldDeleteReachesRedis(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	ctx := context.Background()
	k := keysOf("default")
	d, _, jobs := reserveAll(t, r, 4, poller.Config{})
	var batch []protocol.Message
	for _, j := range jobs {
		batch = append(batch, protocol.Running{ID: j.ID})
	}
	batch = append(batch, protocol.Outcome{ID: jobs[3].ID, Kind: protocol.Delete, Result: "done"})
	d.conn.SendBatch(batch)
	testenv.Eventually(t, 10*time.Second, "the short job's delete while three long ones run", func() bool {
		return r.Client.ZCard(ctx, k.reserved).Val() == 3
	})
}

// A payload too large to hand to the dispatcher is quarantined like any
// other entry kqueue cannot run, and the jobs around it go on.
func TestOversizedPayloadIsQuarantined(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	ctx := context.Background()
	k := keysOf("default")
	big := `{"uuid":"big","displayName":"J","job":"j","data":{"pad":"` + strings.Repeat("x", 500) + `"},"id":"x","attempts":0}`
	push(r, "default", 1)
	r.Client.RPush(ctx, k.queue, big)
	r.Client.RPush(ctx, k.notify, 1)
	push(r, "default", 1)
	d := startPoller(t, r, 10, poller.Config{Queues: []poller.Queue{{Name: "default"}}, MaxPayload: 400})
	a, b := d.next(10*time.Second), d.next(10*time.Second)
	for _, j := range []protocol.Job{a, b} {
		if strings.Contains(string(j.Payload), "big") {
			t.Errorf("the oversized payload was handed on")
		}
	}
	d.done(a)
	d.done(b)
	testenv.Eventually(t, 10*time.Second, "nothing reserved", func() bool { return r.Client.ZCard(ctx, k.reserved).Val() == 0 })
	if q := r.Client.LRange(ctx, k.quarantine, 0, -1).Val(); !slices.Equal(q, []string{big}) {
		t.Errorf("quarantine = %d entries, want the oversized one as it was", len(q))
	}
}

// Stopping, the poller outwaits the dispatcher's hard stop: the releases
// and give-backs that come after ShutdownTimeout still reach Redis (before,
// in split mode, both gave up at the same moment and those jobs came back
// after retry_after with an attempt counted).
func TestStopOutwaitsTheHardStop(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	ctx := context.Background()
	k := keysOf("default")
	beat, stopping := stoppingSignal()
	d, queued, jobs := reserveAll(t, r, 2, poller.Config{ShutdownTimeout: time.Nanosecond, Heartbeat: beat})
	d.conn.Send(protocol.Running{ID: jobs[0].ID})
	d.stop()
	<-stopping // and its ShutdownTimeout is over: the dispatcher stops hard
	d.conn.SendBatch([]protocol.Message{
		protocol.Outcome{ID: jobs[0].ID, Kind: protocol.Release, ReleaseAt: time.Now().Unix() + 3600, Result: "interrupted"},
		protocol.Outcome{ID: jobs[1].ID, Kind: protocol.GiveBack, Result: "interrupted"},
	})
	d.conn.CloseWrite()
	d.waitStopped("the poller did not stop")
	if got := r.Client.LRange(ctx, k.queue, 0, -1).Val(); !slices.Equal(got, queued[1:]) {
		t.Errorf("queue = %q, want the unrun job back as it was", got)
	}
	if n := r.Client.ZCard(ctx, k.delayed).Val(); n != 1 {
		t.Errorf("%d delayed, want the interrupted job released", n)
	}
	if n := r.Client.ZCard(ctx, k.reserved).Val(); n != 0 {
		t.Errorf("%d still reserved", n)
	}
}

// A job that ran and kept its reservation (neither deleted nor released:
// it comes back after retry_after, as under Laravel) is charged all the
// same, also when its Running and its outcome come together: else it would
// come back with the same attempt number for ever.
func TestKeptJobIsCharged(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	ctx := context.Background()
	k := keysOf("default")
	d, queued, jobs := reserveAll(t, r, 1, poller.Config{})
	d.conn.SendBatch([]protocol.Message{
		protocol.Running{ID: jobs[0].ID},
		protocol.Outcome{ID: jobs[0].ID, Kind: protocol.Keep, Result: "kept"},
	})
	testenv.Eventually(t, 10*time.Second, "the kept job charged", func() bool {
		got := r.Client.ZRange(ctx, k.reserved, 0, -1).Val()
		return len(got) == 1 && got[0] != queued[0] && strings.Contains(got[0], `"attempts":1`)
	})
}

// A job PHP declined (its queue paused, the app down) goes back as it was,
// and its queue is left alone for a second: the other queues get the room
// (a paused high-priority queue must not starve the rest), and the
// declined job does not bounce straight back.
func TestDeclinedQueueIsHeld(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	push(r, "high", 1)
	push(r, "low", 1)
	d := startPoller(t, r, 1, poller.Config{Queues: []poller.Queue{{Name: "high"}, {Name: "low"}}})
	first := d.next(10 * time.Second)
	if first.Queue != "high" {
		t.Fatalf("first job from %s, want high", first.Queue)
	}
	d.conn.Send(protocol.Outcome{ID: first.ID, Kind: protocol.GiveBack, Result: protocol.Declined, Reason: "the queue high is paused"})
	if next := d.next(10 * time.Second); next.Queue != "low" {
		t.Errorf("after a declined high job, got one from %s, want low", next.Queue)
	}
	if n := r.Client.LLen(context.Background(), keysOf("high").queue).Val(); n != 1 {
		t.Errorf("%d jobs back on high, want the declined one", n)
	}
}
