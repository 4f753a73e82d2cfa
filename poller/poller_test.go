package poller_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kqueue/kqueue/internal/testenv"
	"github.com/kqueue/kqueue/poller"
	rstore "github.com/kqueue/kqueue/poller/redis"
	"github.com/kqueue/kqueue/protocol"
)

// peer is the dispatcher's end of a connection, driven by the test.
type peer struct {
	t        *testing.T
	p        *poller.Poller
	conn     *protocol.Conn
	raw      net.Conn // under conn
	jobs     chan protocol.Job
	declines chan struct{}      // the poller waits with nothing more to reserve
	stop     context.CancelFunc // stops the poller, as SIGTERM does
	stopped  chan struct{}      // closed when the poller's Run has returned
}

// newPoller is a poller on the test's Redis, its keys under prefix "p_".
func newPoller(r *testenv.Redis, cfg poller.Config) *poller.Poller {
	var names []string
	for _, q := range cfg.Queues {
		names = append(names, q.Name)
	}
	cfg.Store = rstore.New(rstore.Config{Client: r.Client, Prefix: "p_", Queues: names})
	return poller.New(cfg)
}

// startPoller runs a poller against a test-driven dispatcher end with the
// given capacity.
func startPoller(t *testing.T, r *testenv.Redis, capacity int, cfg poller.Config) *peer {
	t.Helper()
	a, b := net.Pipe()
	p := newPoller(r, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	d := &peer{t: t, p: p, conn: protocol.NewConn(b), raw: b, jobs: make(chan protocol.Job, 100),
		declines: make(chan struct{}, 1), stop: cancel, stopped: make(chan struct{})}
	poller.OnDecline(p, func() {
		select {
		case d.declines <- struct{}{}:
		default:
		}
	})
	go func() {
		defer close(d.stopped)
		p.Run(ctx, protocol.NewConn(a))
	}()
	if m, err := d.conn.Recv(); err != nil {
		t.Fatal(err)
	} else if _, ok := m.(protocol.Hello); !ok {
		t.Fatalf("first message %T, want Hello", m)
	}
	d.conn.Send(protocol.Welcome{Version: protocol.Version, Capacity: uint64(capacity)})
	go func() {
		for {
			m, err := d.conn.Recv()
			if err != nil {
				close(d.jobs)
				return
			}
			j := m.(protocol.Job)
			j.Payload = append([]byte{}, j.Payload...)
			d.jobs <- j
		}
	}()
	t.Cleanup(func() {
		cancel()
		d.conn.Close()
		<-d.stopped
	})
	return d
}

func (d *peer) next(timeout time.Duration) protocol.Job {
	d.t.Helper()
	select {
	case j, ok := <-d.jobs:
		if !ok {
			d.t.Fatal("poller closed the connection")
		}
		return j
	case <-time.After(timeout):
		d.t.Fatalf("no job within %s", timeout)
	}
	return protocol.Job{}
}

// declined waits until the poller, having seen what the test did so far,
// waits with nothing more to reserve: what it took is in Redis by then.
func (d *peer) declined() {
	d.t.Helper()
	select {
	case <-d.declines: // maybe from before
	default:
	}
	select {
	case <-d.declines:
	case <-time.After(10 * time.Second):
		d.t.Fatal("the poller never went idle")
	}
}

// keys are a queue's Redis keys under the tests' prefix.
type keys struct{ queue, delayed, reserved, notify, quarantine string }

func keysOf(queue string) keys {
	q := "p_queues:" + queue
	return keys{q, q + ":delayed", q + ":reserved", q + ":notify", q + ":kqueue-quarantine"}
}

// reserveAll pushes n jobs to queue "default", starts a poller with room
// for all of them and takes them: the queue as it was, the jobs as sent.
func reserveAll(t *testing.T, r *testenv.Redis, n int, cfg poller.Config) (*peer, []string, []protocol.Job) {
	t.Helper()
	push(r, "default", n)
	queued := r.Client.LRange(context.Background(), keysOf("default").queue, 0, -1).Val()
	cfg.Queues = []poller.Queue{{Name: "default"}}
	d := startPoller(t, r, n, cfg)
	var jobs []protocol.Job
	for range n {
		jobs = append(jobs, d.next(10*time.Second))
	}
	return d, queued, jobs
}

// stoppingSignal is a heartbeat that closes stopping once the poller says
// it is stopping.
func stoppingSignal() (beat func(poller.Stats), stopping <-chan struct{}) {
	ch := make(chan struct{})
	var once sync.Once
	return func(s poller.Stats) {
		if s.Stopping {
			once.Do(func() { close(ch) })
		}
	}, ch
}

// waitStopped waits for the poller's Run to return; failing that, says why.
func (d *peer) waitStopped(failure string) {
	d.t.Helper()
	select {
	case <-d.stopped:
	case <-time.After(10 * time.Second):
		d.t.Fatal(failure)
	}
}

// A dispatcher lost with jobs it never handed to PHP: those go back to the
// head of their queue as they were (attempts not counted), in the order
// they were reserved; the ones it had handed on stay reserved, to expire
// as under Laravel.
func TestLostDispatcherReturnsUnstartedJobs(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	ctx := context.Background()
	k := keysOf("default")
	d, queued, jobs := reserveAll(t, r, 5, poller.Config{})
	d.conn.SendBatch([]protocol.Message{protocol.Started{ID: jobs[0].ID}, protocol.Started{ID: jobs[2].ID}})
	d.conn.Close() // the dispatcher dies
	d.waitStopped("the poller did not notice the dispatcher was gone")
	back := r.Client.LRange(ctx, k.queue, 0, -1).Val()
	if want := []string{queued[1], queued[3], queued[4]}; !slices.Equal(back, want) {
		t.Errorf("back in the queue:\n%q\nwant, as they were:\n%q", back, want)
	}
	if n := r.Client.ZCard(ctx, k.reserved).Val(); n != 2 {
		t.Errorf("%d still reserved, want the 2 handed to PHP", n)
	}
	if n := r.Client.LLen(ctx, k.notify).Val(); n != 3 {
		t.Errorf("%d notify tokens, want one per returned job", n)
	}
}

// A dispatcher lost while kqueue is stopping (killed when the stop took too
// long, say) is lost all the same: the jobs it had not started go back.
func TestDispatcherLostWhileStoppingReturnsUnstartedJobs(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	ctx := context.Background()
	k := keysOf("default")
	beat, stopping := stoppingSignal()
	d, queued, jobs := reserveAll(t, r, 3, poller.Config{Heartbeat: beat})
	d.conn.Send(protocol.Started{ID: jobs[0].ID})
	d.stop()
	select {
	case <-stopping:
	case <-time.After(10 * time.Second):
		t.Fatal("the poller did not start stopping")
	}
	d.conn.Close() // the dispatcher dies, its jobs unanswered
	d.waitStopped("the poller did not notice the dispatcher was gone")
	if back := r.Client.LRange(ctx, k.queue, 0, -1).Val(); !slices.Equal(back, queued[1:]) {
		t.Errorf("back in the queue:\n%q\nwant, as they were:\n%q", back, queued[1:])
	}
	if n := r.Client.ZCard(ctx, k.reserved).Val(); n != 1 {
		t.Errorf("%d still reserved, want the one handed to PHP", n)
	}
}

// A dispatcher that breaks the protocol is cut off, but it lives and runs
// what it took: nothing goes back to the queue (it would run twice); the
// reservations expire as a lost worker's do.
func TestBrokenDispatcherReturnsNothing(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	ctx := context.Background()
	k := keysOf("default")
	d, _, _ := reserveAll(t, r, 2, poller.Config{})
	d.raw.Write([]byte{0, 0, 0, 1, 99}) // a frame of no known type
	d.waitStopped("the poller kept a dispatcher that broke the protocol")
	if n := r.Client.LLen(ctx, k.queue).Val(); n != 0 {
		t.Errorf("%d jobs back in the queue, want none", n)
	}
	if n := r.Client.ZCard(ctx, k.reserved).Val(); n != 2 {
		t.Errorf("%d reserved, want both", n)
	}
}

// A dispatcher killed halfway through a frame is gone, not broken: the
// jobs it never started go back.
func TestDispatcherKilledMidFrameReturnsUnstartedJobs(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	d, queued, _ := reserveAll(t, r, 2, poller.Config{})
	d.raw.Write([]byte{0, 0, 0, 9, protocol.TypeOutcome}) // 1 byte of 9
	d.raw.Close()
	d.waitStopped("the poller did not notice the dispatcher was gone")
	back := r.Client.LRange(context.Background(), keysOf("default").queue, 0, -1).Val()
	if !slices.Equal(back, queued) {
		t.Errorf("back in the queue: %q, want both as they were: %q", back, queued)
	}
}

// A job given back that PHP never ran (kqueue stopping hard took it back
// from the pool, or from a worker's pipe, unrun) goes back to its queue as
// it was, no attempt counted; one PHP ran is released with its attempt, as
// Laravel does.
func TestReleasedUnstartedJobGoesBackAsItWas(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	d, queued, jobs := reserveAll(t, r, 2, poller.Config{})
	ran, unrun := jobs[0], jobs[1]
	due := time.Now().Add(time.Hour).Unix()
	d.conn.SendBatch([]protocol.Message{
		protocol.Running{ID: ran.ID},
		protocol.Outcome{ID: ran.ID, Kind: protocol.Release, ReleaseAt: due, Result: "interrupted"},
		protocol.Outcome{ID: unrun.ID, Kind: protocol.GiveBack, Result: "interrupted"},
	})
	// Back at the head of the queue, it is the next job reserved; the
	// acknowledgements went to Redis before that reserve.
	again := d.next(10 * time.Second)
	if string(again.Payload) != queued[1] {
		t.Errorf("reserved again: %s, want the unrun job as it was: %s", again.Payload, queued[1])
	}
	delayed := r.Client.ZRange(context.Background(), keysOf("default").delayed, 0, -1).Val()
	if len(delayed) != 1 || !strings.Contains(delayed[0], `"attempts":1`) {
		t.Errorf("delayed: %q, want the job PHP had, its attempt counted", delayed)
	}
}

func (d *peer) done(j protocol.Job) {
	d.conn.Send(protocol.Outcome{ID: j.ID, Kind: protocol.Delete, Result: "done"})
}

// push puts n payloads on queue under the tests' prefix.
func push(r *testenv.Redis, queue string, n int) { r.Push("p_", queue, n) }

// With room for one job at a time, every high job runs before any default
// job, and no more is reserved than the dispatcher can run.
func TestStrictPriorityAndCredit(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	push(r, "default", 3)
	push(r, "high", 3)
	d := startPoller(t, r, 1, poller.Config{Queues: []poller.Queue{{Name: "high"}, {Name: "default"}}})
	var order []string
	for range 6 {
		j := d.next(5 * time.Second)
		if n := r.Client.ZCard(context.Background(), "p_queues:"+j.Queue+":reserved").Val(); n != 1 {
			t.Errorf("%d reserved in %s while one job runs", n, j.Queue)
		}
		d.declined() // no credit, no second job: the count above holds
		if n := r.Client.ZCard(context.Background(), "p_queues:"+j.Queue+":reserved").Val(); n != 1 {
			t.Errorf("%d reserved in %s once the poller went idle", n, j.Queue)
		}
		order = append(order, j.Queue)
		d.done(j)
	}
	if fmt.Sprint(order) != "[high high high default default default]" {
		t.Errorf("order = %v", order)
	}
}

// A queue at its max_running gets no more room, however much the dispatcher
// has: the other queues get it, and the queue its next job once one ends.
func TestMaxRunning(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	push(r, "default", 5)
	d := startPoller(t, r, 4, poller.Config{Queues: []poller.Queue{{Name: "high"}, {Name: "default", MaxRunning: 1}}})
	first := d.next(5 * time.Second)
	if first.Queue != "default" {
		t.Fatalf("first job from %s", first.Queue)
	}
	d.declined() // default is at its cap
	if n := r.Client.LLen(context.Background(), keysOf("default").queue).Val(); n != 4 {
		t.Errorf("%d default jobs left in the queue, want 4: one runs, the cap is 1", n)
	}
	push(r, "high", 2)
	for range 2 {
		if j := d.next(5 * time.Second); j.Queue != "high" {
			t.Fatalf("got a job from %s, want high", j.Queue)
		}
	}
	d.done(first)
	if j := d.next(5 * time.Second); j.Queue != "default" {
		t.Fatalf("got a job from %s after the default one ended, want default", j.Queue)
	}
	d.declined()
	if n := r.Client.LLen(context.Background(), keysOf("default").queue).Val(); n != 3 {
		t.Errorf("%d default jobs left in the queue, want 3", n)
	}
}

// An idle poller picks up a job as soon as it is pushed (the notify list
// wakes it), and a delayed job when it falls due.
func TestWakeUp(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	d := startPoller(t, r, 4, poller.Config{Queues: []poller.Queue{{Name: "default"}}})
	d.declined()
	push(r, "default", 1)
	d.done(d.next(5 * time.Second))

	due := time.Now().Add(1500 * time.Millisecond).Truncate(time.Second)
	r.Client.Do(context.Background(), "ZADD", "p_queues:default:delayed", due.Unix(), `{"uuid":"later","job":"j","data":{},"attempts":0}`)
	j := d.next(5 * time.Second)
	if time.Now().Before(due) {
		t.Errorf("delayed job handed out before it was due")
	}
	d.done(j)
}

// A job that runs longer than retry_after keeps its reservation: the poller
// pushes the expiry forward, so no other worker can take it.
func TestLeaseExtension(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	push(r, "default", 1)
	d := startPoller(t, r, 1, poller.Config{Queues: []poller.Queue{{Name: "default", RetryAfter: 2 * time.Second}}})
	j := d.next(5 * time.Second)
	ctx := context.Background()
	member := r.Client.ZRange(ctx, "p_queues:default:reserved", 0, 0).Val()[0]
	first := r.Client.ZScore(ctx, "p_queues:default:reserved", member).Val()
	testenv.Eventually(t, 10*time.Second, "the reservation extended", func() bool {
		return r.Client.ZScore(ctx, "p_queues:default:reserved", member).Val() > first+1
	})
	d.done(j)
}

// A dispatcher that goes away is an error the caller reconnects on, never a
// clean stop, and jobs it was running are no longer held: their
// reservations are left to expire.
func TestDispatcherGone(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	push(r, "default", 1)
	a, b := net.Pipe()
	p := newPoller(r, poller.Config{Queues: []poller.Queue{{Name: "default"}}})
	done := make(chan error, 1)
	go func() { done <- p.Run(context.Background(), protocol.NewConn(a)) }()
	d := protocol.NewConn(b)
	d.Recv()
	d.Send(protocol.Welcome{Version: protocol.Version, Capacity: 1})
	if m, err := d.Recv(); err != nil {
		t.Fatal(err)
	} else if _, ok := m.(protocol.Job); !ok {
		t.Fatalf("got %T, want a job", m)
	}
	d.Close()
	select {
	case err := <-done:
		if !errors.Is(err, poller.ErrDispatcherGone) {
			t.Errorf("Run = %v, want ErrDispatcherGone", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if n := poller.Inflight(p); n != 0 {
		t.Errorf("%d jobs still held after the connection ended", n)
	}
}

// The heartbeat (which pings systemd's watchdog) comes from the main loop
// itself: while the loop is wedged, here inside a blocked Observe hook, the
// pings stop; once it moves again, they resume.
func TestWedgedLoopStopsTheHeartbeat(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	beats := make(chan struct{}, 1000)
	wedged, release := make(chan struct{}), make(chan struct{})
	d := startPoller(t, r, 1, poller.Config{
		Queues:         []poller.Queue{{Name: "default"}},
		HeartbeatEvery: 5 * time.Millisecond,
		Heartbeat:      func(poller.Stats) { beats <- struct{}{} },
		Observe: func(poller.Settled) {
			close(wedged)
			<-release
		},
	})
	for range 3 { // the loop is alive: it beats
		select {
		case <-beats:
		case <-time.After(10 * time.Second):
			t.Fatal("no heartbeat from a healthy loop")
		}
	}
	push(r, "default", 1)
	d.done(d.next(10 * time.Second))
	select {
	case <-wedged:
	case <-time.After(10 * time.Second):
		t.Fatal("the outcome never reached the loop")
	}
	for len(beats) > 0 {
		<-beats
	}
	// 20 heartbeat periods without one.
	testenv.Never(t, 100*time.Millisecond, "a heartbeat from a wedged loop", func() bool { return len(beats) > 0 })
	close(release)
	select {
	case <-beats:
	case <-time.After(10 * time.Second):
		t.Fatal("no heartbeat once the loop moved again")
	}
}

// With [log] jobs_done off (QuietDone), a job that simply succeeded is a
// debug entry instead of an info one; a failed job is a warning either way.
func TestQuietDone(t *testing.T) {
	t.Parallel()
	for _, quiet := range []bool{false, true} {
		t.Run(fmt.Sprint("quiet=", quiet), func(t *testing.T) {
			t.Parallel()
			logs := testenv.NewLogs()
			d, _, jobs := reserveAll(t, testenv.StartRedis(t), 2, poller.Config{Logger: logs.Logger(), QuietDone: quiet})
			d.conn.SendBatch([]protocol.Message{
				protocol.Outcome{ID: jobs[0].ID, Kind: protocol.Delete, Result: protocol.Done},
				protocol.Outcome{ID: jobs[1].ID, Kind: protocol.Delete, Failed: true, Result: "failed"},
			})
			logs.WaitFor(t, `level=WARN msg="job failed"`, 1, 10*time.Second)
			want, not := `level=INFO msg="job done"`, `level=DEBUG msg="job done"`
			if quiet {
				want, not = not, want
			}
			if got := logs.String(); !strings.Contains(got, want) || strings.Contains(got, not) {
				t.Errorf("want %s, not %s:\n%s", want, not, got)
			}
		})
	}
}

// Past [log] jobs_done_per_second in a second, a job that simply
// succeeded gets a debug entry; once the second is over, one info entry
// says how many — without waiting for another job. Failures are
// warnings as ever.
func TestDoneEntriesPerSecond(t *testing.T) {
	t.Parallel()
	logs := testenv.NewLogs()
	var second atomic.Int64
	second.Store(1_000_000)
	clock := func() time.Time { return time.Unix(second.Load(), 500_000_000) }
	d, _, jobs := reserveAll(t, testenv.StartRedis(t), 7, poller.Config{
		Logger: logs.Logger(), DonePerSecond: 2, Now: clock, HeartbeatEvery: 5 * time.Millisecond,
	})
	var first []protocol.Message
	for _, j := range jobs[:5] {
		first = append(first, protocol.Outcome{ID: j.ID, Kind: protocol.Delete, Result: protocol.Done})
	}
	first = append(first, protocol.Outcome{ID: jobs[5].ID, Kind: protocol.Delete, Failed: true, Result: "failed"})
	d.conn.SendBatch(first)
	logs.WaitFor(t, `level=WARN msg="job failed"`, 1, 10*time.Second)
	if info, debug := logs.Count(`level=INFO msg="job done"`), logs.Count(`level=DEBUG msg="job done"`); info != 2 || debug != 3 {
		t.Errorf("5 jobs done in a second with 2 a second: %d info entries and %d debug, want 2 and 3:\n%s", info, debug, logs)
	}
	if logs.Count("jobs done beyond") != 0 {
		t.Errorf("the count came before its second was over:\n%s", logs)
	}
	second.Add(1)
	logs.WaitFor(t, `level=INFO msg="jobs done beyond [log] jobs_done_per_second" count=3 per_second=2`, 1, 10*time.Second)
	d.conn.Send(protocol.Outcome{ID: jobs[6].ID, Kind: protocol.Delete, Result: protocol.Done})
	logs.WaitFor(t, `level=INFO msg="job done"`, 3, 10*time.Second)
	if n := logs.Count("jobs done beyond"); n != 1 {
		t.Errorf("%d counts, want 1:\n%s", n, logs)
	}
}

// A job's error in its history record and the recent failures is its
// first KeepReason bytes: errors of megabytes (SQL quoted whole) would
// fill the history's Redis.
func TestRecordsKeepTheHeadOfALongError(t *testing.T) {
	t.Parallel()
	recs := make(chan poller.Record, 1)
	d, _, jobs := reserveAll(t, testenv.StartRedis(t), 1, poller.Config{Record: func(r poller.Record) { recs <- r }})
	long := "QueryException: insert into rows values " + strings.Repeat("('é'), ", 100_000)
	d.conn.Send(protocol.Outcome{ID: jobs[0].ID, Kind: protocol.Delete, Failed: true, Result: "failed", Reason: long})
	select {
	case r := <-recs:
		head, ok := strings.CutSuffix(r.Reason, "…")
		if !ok || len(head) > poller.KeepReason || len(head) < poller.KeepReason-4 || !strings.HasPrefix(long, head) || !utf8.ValidString(r.Reason) {
			t.Errorf("record's error of %d bytes: %.100q…%q", len(r.Reason), r.Reason, r.Reason[max(0, len(r.Reason)-20):])
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no record within 10s")
	}
}
