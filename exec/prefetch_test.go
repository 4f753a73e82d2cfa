package exec

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
	"github.com/kqueue/kqueue/protocol"
)

// link is a dispatcher serving one connection whose poller end the test
// drives by hand: every frame the dispatcher sends arrives on msgs.
type link struct {
	t      *testing.T
	app    *testenv.App
	d      *Dispatcher
	conn   *protocol.Conn // the poller's end
	msgs   chan protocol.Message
	served chan error // Serve's result, once
	err    error
	ended  bool
	stop   context.CancelFunc // the dispatcher alone is stopping (SIGTERM)
	nextID uint64
}

func newLink(t *testing.T, workers int, configure func(*Config)) *link {
	t.Helper()
	app := testenv.NewApp(t, testenv.StartRedis(t))
	cfg := Config{AppPath: app.Path, Env: app.Env, Workers: workers, Tries: 1, Timeout: time.Minute}
	if configure != nil {
		configure(&cfg)
	}
	l := &link{t: t, app: app, d: New(cfg, testenv.NewLogs().Logger()), msgs: make(chan protocol.Message, 10000), served: make(chan error, 1)}
	if err := l.d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	l.stop = cancel
	go func() { l.served <- l.d.Serve(ctx, protocol.NewConn(b)) }()
	l.conn = protocol.NewConn(a)
	if err := l.conn.Send(protocol.Hello{Version: protocol.Version}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.conn.Recv(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(l.msgs)
		for {
			m, err := l.conn.Recv()
			if err != nil {
				return
			}
			if o, ok := m.(protocol.Outcome); ok {
				o.Reason = string([]byte(o.Reason))
				m = o
			}
			l.msgs <- m
		}
	}()
	t.Cleanup(func() {
		cancel()
		l.conn.Close()
		l.wait(60 * time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		l.d.Stop(ctx)
	})
	return l
}

// wait waits for Serve to return, and returns its error.
func (l *link) wait(timeout time.Duration) error {
	l.t.Helper()
	if !l.ended {
		select {
		case l.err = <-l.served:
			l.ended = true
		case <-time.After(timeout):
			l.t.Fatalf("Serve did not return within %s", timeout)
		}
	}
	return l.err
}

// send hands the dispatcher jobs of the given payloads; it returns their ids.
func (l *link) send(payloads ...string) []uint64 {
	l.t.Helper()
	var ids []uint64
	var batch []protocol.Message
	for _, p := range payloads {
		l.nextID++
		ids = append(ids, l.nextID)
		batch = append(batch, protocol.Job{ID: l.nextID, Queue: "default", Payload: []byte(p)})
	}
	if err := l.conn.SendBatch(batch); err != nil {
		l.t.Fatal(err)
	}
	return ids
}

// until reads the dispatcher's frames until one satisfies done; it returns
// them all.
func (l *link) until(what string, done func(protocol.Message) bool) []protocol.Message {
	l.t.Helper()
	var got []protocol.Message
	timeout := time.After(60 * time.Second)
	for {
		select {
		case m, ok := <-l.msgs:
			if !ok {
				l.t.Fatalf("the connection ended before %s", what)
			}
			got = append(got, m)
			if done(m) {
				return got
			}
		case <-timeout:
			l.t.Fatalf("no %s within 60s", what)
		}
	}
}

// runs is how many times the app's jobs have run, by tag.
func (l *link) runs() map[string]string {
	return l.app.Redis.Client.HGetAll(context.Background(), testenv.Prefix+"kqtest:runs").Val()
}

// payloads has the app dispatch a scenario and returns its payloads.
func (l *link) payloads(args ...string) []string {
	l.t.Helper()
	return dispatched(l.t, l.app, args...)
}

// handAhead sends n Waits jobs (wait-0 on) that go ahead into the one
// worker's pipe behind the first of them, which blocks until kqtest:go has
// a token. The pool is told Waits is a quick class (as it learns from a
// run of quick jobs, which a busy host may not time as quick). It returns
// the n jobs' ids.
func (l *link) handAhead(n int) []uint64 {
	l.t.Helper()
	ps := l.payloads("waits", fmt.Sprintf("--count=%d", n))[1:]
	p := l.d.pool
	p.mu.Lock()
	p.took[`App\Jobs\Waits`], p.recent, p.seen, p.depth = time.Millisecond, time.Millisecond, prefetchAfter, 8
	p.mu.Unlock()
	return l.send(ps...)
}

// A dispatcher whose poller is gone starts nothing more: of three jobs
// waiting for its one worker, only the one running when the connection
// ended runs (before, all three ran, their outcomes undeliverable, and ran
// again after retry_after).
func TestFencedWhenThePollerIsGone(t *testing.T) {
	t.Parallel()
	l := newLink(t, 1, nil)
	ids := l.send(l.payloads("waits", "--count=3")[1:]...) // the three Waits jobs
	l.until("the first job running", func(m protocol.Message) bool {
		r, ok := m.(protocol.Running)
		return ok && r.ID == ids[0]
	})
	l.conn.Close() // the poller dies
	l.app.Redis.Client.RPush(context.Background(), testenv.Prefix+"kqtest:go", 1)
	l.wait(60 * time.Second)
	if runs := l.runs(); len(runs) != 1 || runs["wait-0"] != "1" {
		t.Errorf("runs after the poller went: %v, want only wait-0", runs)
	}
}

// The dispatcher stopping alone drains its connection: it asks for no more
// jobs (capacity 0), answers one that was on its way as never run (no
// Running: the poller gives it back as it was), finishes what it had, and
// then ends the connection (before, the poller kept handing it jobs that
// bounced back at once, thousands of times a second).
func TestDrainWhenStoppedAlone(t *testing.T) {
	t.Parallel()
	l := newLink(t, 1, nil)
	ps := l.payloads("record", "--count=2")
	first := l.send(ps[0])[0]
	l.until("the first job handed to PHP", func(m protocol.Message) bool {
		r, ok := m.(protocol.Started)
		return ok && r.ID == first
	})
	l.stop()
	l.until("capacity 0", func(m protocol.Message) bool {
		c, ok := m.(protocol.Capacity)
		return ok && c.Capacity == 0
	})
	late := l.send(ps[1])[0]
	var got []protocol.Message
	for m := range l.msgs { // until the dispatcher ends the connection
		got = append(got, m)
	}
	var outcomes int
	for _, m := range got {
		switch m := m.(type) {
		case protocol.Running:
			if m.ID == late {
				t.Errorf("the job sent after capacity 0 was run")
			}
		case protocol.Started:
			if m.ID == late {
				t.Errorf("the job sent after capacity 0 was handed to PHP")
			}
		case protocol.Outcome:
			outcomes++
			if m.ID == late && m.Kind != protocol.GiveBack {
				t.Errorf("the late job's outcome %+v, want given back unrun", m)
			}
			if m.ID == first && m.Result != "done" {
				t.Errorf("the running job's outcome %+v, want done", m)
			}
		}
	}
	if outcomes != 2 {
		t.Errorf("%d outcomes before the connection ended, want 2: %v", outcomes, got)
	}
	if err := l.wait(60 * time.Second); err != nil {
		t.Errorf("serve: %v", err)
	}
}

// A hard stop counts an attempt only for the job PHP was running: the jobs
// handed ahead into the worker's pipe behind it are answered as never run,
// with no Running said for them (before, they were released with an
// attempt counted, and a job allowed one try failed later without having
// run). Jobs of a class known to be quick are handed ahead (handAhead).
func TestHardStopChargesOnlyTheRunningJob(t *testing.T) {
	t.Parallel()
	l := newLink(t, 1, nil)
	rest := l.handAhead(20)
	ours := map[uint64]bool{}
	for _, id := range rest {
		ours[id] = true
	}
	started, running, outcomes := 0, map[uint64]bool{}, map[uint64]protocol.Outcome{}
	note := func(m protocol.Message) {
		switch m := m.(type) {
		case protocol.Started:
			started++
		case protocol.Running:
			running[m.ID] = true
		case protocol.Outcome:
			if ours[m.ID] {
				outcomes[m.ID] = m
			}
		}
	}
	l.until("jobs handed ahead behind a running one", func(m protocol.Message) bool {
		note(m)
		return started >= 3 && running[rest[0]] // the one that blocks, and two behind it
	})
	l.d.HardStop()
	l.until("every outcome", func(m protocol.Message) bool {
		note(m)
		return len(outcomes) == len(rest)
	})
	var charged []uint64
	for _, id := range rest {
		if running[id] {
			charged = append(charged, id)
		}
		switch o := outcomes[id]; {
		case id == rest[0] && (o.Kind != protocol.Release || o.Result != "interrupted"):
			t.Errorf("the running job's outcome %+v, want released as interrupted", o)
		case id != rest[0] && o.Kind != protocol.GiveBack:
			t.Errorf("job %d: outcome %+v, want given back unrun", id, o)
		}
	}
	if len(charged) != 1 || charged[0] != rest[0] {
		t.Errorf("said running: %v, want only the job PHP was running (%d)", charged, rest[0])
	}
	ran := 0
	for tag, n := range l.runs() {
		var i int
		if _, err := fmt.Sscanf(tag, "wait-%d", &i); err == nil && n != "0" {
			ran++
		}
	}
	if ran > 1 { // the one running may have been killed before it recorded its run
		t.Errorf("%d of the blocked jobs ran, want at most the one PHP was running", ran)
	}
}

// A hard stop answers the jobs no worker could take — here none can boot
// any more — as never run, so a stop does not wait for them for ever
// (before, `kqueue run` hung on SIGTERM).
func TestHardStopWithNoBootableWorker(t *testing.T) {
	t.Parallel()
	l := newLink(t, 1, nil)
	crash := l.payloads("crash")[0]
	records := l.payloads("record", "--count=3")
	broken := filepath.Join(l.app.Path, "config", "broken.php")
	if err := os.WriteFile(broken, []byte("<?php return [;"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(broken) })
	id := l.send(crash)[0]
	l.until("the crashing job running", func(m protocol.Message) bool {
		r, ok := m.(protocol.Running)
		return ok && r.ID == id
	})
	testenv.Eventually(t, 30*time.Second, "the worker to die", func() bool { return l.d.Ready() == 0 })
	waiting := l.send(records...)
	l.d.HardStop()
	answered := map[uint64]bool{}
	l.until("every job answered", func(m protocol.Message) bool {
		if o, ok := m.(protocol.Outcome); ok {
			switch {
			case o.ID == id && o.Kind != protocol.Keep:
				t.Errorf("the crashed job's outcome %+v, want kept reserved (no worker to fail it)", o)
			case o.ID != id && o.Kind != protocol.GiveBack:
				t.Errorf("outcome %+v, want given back unrun", o)
			}
			answered[o.ID] = true
		}
		return len(answered) == len(waiting)+1
	})
}

// The same for jobs already in a PHP worker's pipe: when the poller goes,
// the worker finishes the job it runs and starts none of those behind it.
func TestFencedWorkerStartsNothingInItsPipe(t *testing.T) {
	t.Parallel()
	l := newLink(t, 1, nil)
	ctx := context.Background()
	rest := l.handAhead(10)
	started, running := 0, false
	l.until("jobs handed ahead behind a running one", func(m protocol.Message) bool {
		switch m := m.(type) {
		case protocol.Started:
			started++
		case protocol.Running:
			running = running || m.ID == rest[0]
		}
		return started >= 3 && running // the one that blocks, and two behind it
	})
	l.conn.Close() // the poller dies
	testenv.Eventually(t, 10*time.Second, "the worker told to stop after its job", func() bool {
		w := l.d.pool.slots[0].Load()
		return w != nil && w.quitting.Load()
	})
	l.app.Redis.Client.RPush(ctx, testenv.Prefix+"kqtest:go", 1, 1, 1)
	l.wait(60 * time.Second)
	ran := 0
	for tag := range l.runs() {
		var i int
		if _, err := fmt.Sscanf(tag, "wait-%d", &i); err == nil {
			ran++
		}
	}
	if ran != 1 {
		t.Errorf("%d of the jobs sent after the quick ones ran, want only the one running when the poller went", ran)
	}
}

// The credit the pool can ever grant the poller fits the serve loop's task
// buffer, so the loop never blocks on it and always reads what the poller
// writes: with no write deadline on either side, a poller blocked sending
// jobs and a dispatcher blocked sending outcomes would wait on each other
// for ever. (The buffer was 1,024 tasks: 17 workers at the deepest
// prefetch are granted 1,088.)
func TestCreditFitsTheTaskBuffer(t *testing.T) {
	t.Parallel()
	for _, c := range []Config{{Workers: 1}, {Workers: 17}, {Workers: 100, Isolation: &Isolation{MaxConcurrent: 8}}} {
		c.setDefaults()
		p := &pool{cfg: newSettings(c)}
		if c.Isolation != nil {
			p.iso = &isolator{sem: make(chan struct{}, c.Isolation.MaxConcurrent)}
		}
		p.ready, p.depth, p.isolated = c.Workers, maxDepth, 1000
		if credit, room := p.capacity(), p.maxCapacity(); credit > room {
			t.Errorf("%d workers: credit %d, over the %d tasks the buffer holds", c.Workers, credit, room)
		}
	}
	l := newLink(t, 1, nil)
	if n, want := cap(l.d.pool.tasks), l.d.pool.maxCapacity(); n < want {
		t.Errorf("task buffer of %d, want room for %d", n, want)
	}
}

// The dispatcher leaves out the Running of a job whose outcome goes in the
// same batch and settles its reservation — not of one kept reserved.
func TestDropMoot(t *testing.T) {
	t.Parallel()
	batch := []protocol.Message{
		protocol.Running{ID: 1}, protocol.Running{ID: 2}, protocol.Running{ID: 3},
		protocol.Outcome{ID: 1, Kind: protocol.Delete}, protocol.Outcome{ID: 2, Kind: protocol.Keep},
	}
	got := fmt.Sprint(dropMoot(batch, map[uint64]bool{}))
	want := fmt.Sprint([]protocol.Message{
		protocol.Running{ID: 2}, protocol.Running{ID: 3},
		protocol.Outcome{ID: 1, Kind: protocol.Delete}, protocol.Outcome{ID: 2, Kind: protocol.Keep},
	})
	if got != want {
		t.Errorf("dropMoot = %s, want %s", got, want)
	}
}

// The prefetch depth follows the jobs' durations and changes often; each
// change is a new capacity for the poller, but not a change kqueue status
// shows, whose pool state (each worker's memory read from /proc) is sent
// only when workers or isolated jobs come and go. (Every change of depth
// sent it: ~200 reads of /proc per 20,000 no-op jobs.)
func TestDepthChangesAreNotShownChanges(t *testing.T) {
	var told []bool
	p := &pool{cfg: newSettings(Config{}), took: map[string]time.Duration{},
		onCapacity: func(shown bool) { told = append(told, shown) }}
	quick := &task{}
	for range prefetchAfter + 8 {
		p.observe(quick, time.Microsecond)
	}
	if p.depth < 2 || len(told) == 0 {
		t.Fatalf("depth %d after quick jobs, %d capacity changes told: want prefetch", p.depth, len(told))
	}
	for i, shown := range told {
		if shown {
			t.Errorf("change %d of the depth told as shown by kqueue status", i)
		}
	}
	told = nil
	p.addReady(1)
	p.isolatedDelta(1)
	if len(told) != 2 || !told[0] || !told[1] {
		t.Errorf("a worker ready, an isolated job begun: told %v, want [true true]", told)
	}
}
