package exec

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kqueue/kqueue/cgroup"
	"github.com/kqueue/kqueue/internal/testenv"
	"github.com/kqueue/kqueue/protocol"
)

// harness drives a Dispatcher the way the poller does, over a connection.
type harness struct {
	t        *testing.T
	app      *testenv.App
	d        *Dispatcher
	conn     *protocol.Conn
	logs     *testenv.Logs
	outcomes chan protocol.Outcome
	nextID   uint64

	mu      sync.Mutex
	started map[uint64]bool // jobs the dispatcher said it handed to PHP
	running map[uint64]bool // jobs the dispatcher said PHP runs (attempt counted)
}

// recycles counts the workers replaced for reason so far.
func (h *harness) recycles(reason string) uint64 {
	for _, r := range h.d.State().Recycles {
		if r.Reason == reason {
			return r.Count
		}
	}
	return 0
}

func newHarness(t *testing.T, workers int, configure func(*Config)) *harness {
	t.Helper()
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	h := &harness{t: t, app: app, logs: testenv.NewLogs(), outcomes: make(chan protocol.Outcome, 100), started: map[uint64]bool{}, running: map[uint64]bool{}}
	cfg := Config{AppPath: app.Path, Env: app.Env, Workers: workers, Tries: 1, Timeout: time.Minute}
	if configure != nil {
		configure(&cfg)
	}
	h.d = New(cfg, h.logs.Logger())
	if err := h.d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	served := make(chan error, 1)
	go func() { served <- h.d.Serve(context.Background(), protocol.NewConn(b)) }()
	h.conn = protocol.NewConn(a)
	h.conn.Send(protocol.Hello{Version: protocol.Version})
	if m, err := h.conn.Recv(); err != nil {
		t.Fatal(err)
	} else if _, ok := m.(protocol.Welcome); !ok {
		t.Fatalf("got %T, want Welcome", m)
	}
	go func() {
		for {
			m, err := h.conn.Recv()
			if err != nil {
				close(h.outcomes)
				return
			}
			switch m := m.(type) {
			case protocol.Started:
				h.mu.Lock()
				h.started[m.ID] = true
				h.mu.Unlock()
			case protocol.Running:
				h.mu.Lock()
				h.started[m.ID], h.running[m.ID] = true, true
				h.mu.Unlock()
			case protocol.Outcome:
				h.outcomes <- m
			}
		}
	}()
	t.Cleanup(func() {
		h.conn.CloseWrite()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := h.d.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return h
}

// dispatch has the app dispatch a scenario and returns the payloads.
func (h *harness) dispatch(args ...string) []string {
	h.t.Helper()
	return dispatched(h.t, h.app, args...)
}

// dispatched has app dispatch a scenario (kq:dispatch args…) and takes its
// payloads off the default queue, for a test to hand on itself.
func dispatched(t *testing.T, app *testenv.App, args ...string) []string {
	t.Helper()
	app.Artisan(t, append([]string{"kq:dispatch"}, args...)...)
	ctx := context.Background()
	key := testenv.Prefix + "queues:default"
	payloads := app.Redis.Client.LRange(ctx, key, 0, -1).Val()
	app.Redis.Client.Del(ctx, key, key+":notify")
	return payloads
}

// run hands the dispatcher one job and waits for its outcome.
func (h *harness) run(payload string) protocol.Outcome {
	h.t.Helper()
	h.nextID++
	if err := h.conn.Send(protocol.Job{ID: h.nextID, Queue: "default", Payload: []byte(payload)}); err != nil {
		h.t.Fatal(err)
	}
	select {
	case o := <-h.outcomes:
		if o.ID != h.nextID {
			h.t.Fatalf("outcome for job %d, want %d", o.ID, h.nextID)
		}
		return o
	case <-time.After(60 * time.Second):
		h.t.Fatalf("no outcome within 60s; log:\n%s", h.logs.String())
	}
	return protocol.Outcome{}
}

// Every job is said to be started before it goes to PHP, and so before its
// outcome: a poller that loses the dispatcher returns only the others.
func TestStartedBeforeOutcome(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, nil)
	for _, p := range h.dispatch("noop", "--count=3") {
		o := h.run(p)
		h.mu.Lock()
		started := h.started[o.ID]
		h.mu.Unlock()
		if !started {
			t.Errorf("outcome %+v came without its job's start", o)
		}
	}
}

func TestRecycleAfterMaxJobs(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, func(c *Config) { c.MaxJobs = 2 })
	for _, p := range h.dispatch("noop", "--count=5") {
		if o := h.run(p); o.Kind != protocol.Delete || o.Result != "done" {
			t.Fatalf("outcome %+v", o)
		}
	}
	if n := h.recycles("max_jobs"); n != 2 {
		t.Errorf("%d recycles for max_jobs after 5 jobs with max_jobs=2, want 2", n)
	}
}

// [pool] nice: the PHP workers run that many nice levels below the
// daemon (the test process here), and run jobs as usual.
func TestWorkersRunNiceLevelsBelow(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, func(c *Config) { c.Nice = 5 })
	if o := h.run(h.dispatch("noop")[0]); o.Result != "done" {
		t.Fatalf("outcome %+v", o)
	}
	w := h.d.pool.slots[0].Load()
	if w == nil {
		t.Fatal("no worker in slot 0")
	}
	if got, want := niceOf(t, w.pid), niceOf(t, os.Getpid())+5; got != min(want, 19) {
		t.Errorf("the worker's nice value is %d, want %d", got, min(want, 19))
	}
}

// niceOf is a process's nice value, field 19 of /proc/PID/stat.
func niceOf(t *testing.T, pid int) int {
	t.Helper()
	f, err := testenv.ProcStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(f[19-3])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Memory is measured from outside PHP: a job that leaks past max_memory
// gets its worker replaced.
func TestRecycleOverMaxMemory(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, func(c *Config) { c.MaxMemory = 80 << 20 })
	for _, p := range h.dispatch("hog", "--count=3") {
		if o := h.run(p); o.Result != "done" || o.Memory < 64<<20 {
			t.Fatalf("outcome %+v", o)
		}
	}
	// Each hog leaves 64 MB behind: every worker is replaced after its job.
	testenv.Eventually(t, 10*time.Second, "3 workers replaced for max_memory", func() bool { return h.recycles("max_memory") == 3 })
}

// `php artisan queue:restart` rolls idle workers, as it stops queue:work.
func TestQueueRestartRollsThePool(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 2, nil)
	testenv.Eventually(t, 20*time.Second, "2 workers ready", func() bool { return h.d.Ready() == 2 })
	h.app.Artisan(t, "queue:restart")
	testenv.Eventually(t, 20*time.Second, "both workers rolled", func() bool { return h.recycles("restart") == 2 })
	for _, p := range h.dispatch("noop", "--count=2") {
		if o := h.run(p); o.Result != "done" {
			t.Fatalf("after the roll: %+v", o)
		}
	}
	if n := h.recycles("restart"); n != 2 {
		t.Errorf("%d workers rolled, want 2", n)
	}
}

// The job's output goes to the log with the job's fields, never into the
// protocol; the worker sees no systemd variables.
func TestJobOutputAndEnvironment(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	t.Setenv("LISTEN_FDS", "1")
	t.Setenv("KQ_EXTRA", "from-daemon")
	h := newHarness(t, 1, nil)
	payload := h.dispatch("chatty")[0]
	if o := h.run(payload); o.Result != "done" {
		t.Fatalf("outcome %+v", o)
	}
	h.logs.WaitFor(t, "hello from chatty on stderr", 1, 10*time.Second)
	h.logs.WaitFor(t, "hello from chatty on stdout", 1, 10*time.Second)
	for _, line := range strings.Split(h.logs.String(), "\n") {
		if strings.Contains(line, "hello from chatty") && !strings.Contains(line, `job_name=App\Jobs\Chatty`) {
			t.Errorf("job output without the job's fields: %s", line)
		}
	}
	var env string
	for _, rec := range h.app.Redis.Client.LRange(context.Background(), testenv.Prefix+"kqtest:log", 0, -1).Val() {
		if strings.Contains(rec, `"kind":"env"`) {
			env = rec
		}
	}
	for _, want := range []string{`"NOTIFY_SOCKET":false`, `"LISTEN_FDS":false`, `"KQ_EXTRA":"from-daemon"`} {
		if !strings.Contains(env, want) {
			t.Errorf("worker environment lacks %s: %s", want, env)
		}
	}
}

// An app that cannot boot is one clear error at start, naming the problem.
func TestBootFailureIsOneClearError(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	if err := os.WriteFile(filepath.Join(app.Path, "config", "broken.php"), []byte("<?php return [;"), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := testenv.NewLogs()
	d := New(Config{AppPath: app.Path, Env: app.Env, Workers: 4}, logs.Logger())
	err := d.Start(context.Background())
	if err == nil {
		d.Stop(context.Background())
		t.Fatal("Start succeeded with a broken app")
	}
	for _, want := range []string{"did not boot", "syntax error", "broken.php"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// Workers boot at once; a pool stopped as soon as it started still stops
// the ones that were booting: none is left running.
func TestStopRightAfterStart(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	logs := testenv.NewLogs()
	d := New(Config{AppPath: app.Path, Env: app.Env, Workers: 3}, logs.Logger())
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := d.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	pids := regexp.MustCompile(`worker ready.* pid=(\d+)`).FindAllStringSubmatch(logs.String(), -1)
	if len(pids) != 3 {
		t.Fatalf("%d workers said ready, want 3:\n%s", len(pids), logs)
	}
	for _, m := range pids {
		pid, _ := strconv.Atoi(m[1])
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("worker %d still there after Stop (kill -0: %v)", pid, err)
		}
	}
}

// A worker that cannot boot again after it died is retried with backoff and
// logged once, not in a respawn storm; the dispatcher keeps running.
func TestRebootFailureBacksOff(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, nil)
	crash := h.dispatch("crash")[0]
	broken := filepath.Join(h.app.Path, "config", "broken.php")
	if err := os.WriteFile(broken, []byte("<?php return [;"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.nextID++
	h.conn.Send(protocol.Job{ID: h.nextID, Queue: "default", Payload: []byte(crash)})
	testenv.Eventually(t, 20*time.Second, "3 failed boots", func() bool { return h.d.pool.failedBoots.Load() >= 3 })
	if n := h.logs.Count("level=ERROR"); n != 1 {
		t.Errorf("%d error lines for one failing streak, want 1:\n%s", n, h.logs.String())
	}
	os.Remove(broken)
	select {
	case o := <-h.outcomes:
		if o.Result != "crashed" || o.Kind != protocol.Release {
			t.Errorf("crashed job's outcome %+v, want released as crashed", o)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the crashed job was not settled once the app booted again:\n%s", h.logs.String())
	}
	testenv.Eventually(t, 10*time.Second, "a worker booted again", func() bool { return h.d.Ready() == 1 })
}

// Backoff follows Laravel: element attempts-1 of the job's list, the last
// one past its end; the release is due that many seconds from now.
func TestBackoffFromTheJob(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, nil)
	payload := h.dispatch("mix")[1] // App\Jobs\Fails: $tries = 3, $backoff = [0, 1]
	if !strings.Contains(payload, `"backoff":"0,1"`) {
		t.Fatalf("not the Fails job: %s", payload)
	}
	for attempt, want := range []int64{0, 1} {
		p := strings.Replace(payload, `"attempts":0`, fmt.Sprintf(`"attempts":%d`, attempt), 1)
		before := time.Now().Unix()
		o := h.run(p)
		if o.Kind != protocol.Release || o.ReleaseAt < before+want || o.ReleaseAt > time.Now().Unix()+want {
			t.Errorf("attempt %d: %+v, want released %ds from now", attempt+1, o, want)
		}
	}
	if o := h.run(strings.Replace(payload, `"attempts":0`, `"attempts":2`, 1)); o.Kind != protocol.Delete || !o.Failed {
		t.Errorf("attempt 3 of 3: %+v, want failed", o)
	}
}

// A job that fails with an error of 300,000 bytes (a bulk insert's SQL
// quoted in its exception) failed, with its error whole: its answer line
// spans many of the reader's buffers.
func TestALongErrorIsTheJobsOwn(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, nil)
	o := h.run(h.dispatch("loud")[0])
	const head = "RuntimeException: loud failed: insert into rows values (1, 'a row'), (1, 'a row'), "
	if o.Kind != protocol.Delete || !o.Failed || len(o.Reason) < 300_000 || !strings.HasPrefix(o.Reason, head) ||
		strings.Trim(o.Reason[len(head):], "(1, 'a row'), ") != "" {
		o.Reason = fmt.Sprintf("%.200q… (%d bytes)", o.Reason, len(o.Reason))
		t.Errorf("outcome %+v, want failed with the job's error", o)
	}
}

// A job's output line of 2 MiB is logged (cut), and the worker's output
// after it too: the lines after it, the next job's.
func TestALongOutputLineIsLogged(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, nil)
	for i, p := range h.dispatch("blurts", "--count=2") {
		if o := h.run(p); o.Result != "done" {
			t.Fatalf("outcome %+v", o)
		}
		h.logs.WaitFor(t, fmt.Sprintf("after blurts-%d", i), 1, 10*time.Second)
	}
	h.logs.WaitFor(t, "… (cut: a line of 2097152 bytes)", 2, 10*time.Second)
}

// brokenDriver cannot make a cgroup: a fault injected where the host would
// refuse one (no D-Bus, no delegation).
type brokenDriver struct{}

func (brokenDriver) Name() string { return "broken" }
func (brokenDriver) Create(string, cgroup.Limits) (cgroup.Group, error) {
	return nil, errors.New("no cgroup for you")
}
func (brokenDriver) Close() error { return nil }

// An isolated job kqueue cannot isolate never runs outside its limits, and
// is not handed back forever either: Laravel's rules fail it (here: one
// try), with the reason in failed_jobs and its failed() hook run.
func TestIsolationFailureFollowsLaravelsRules(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, func(c *Config) {
		c.Isolation = &Isolation{Driver: brokenDriver{}, Fresh: true}
	})
	o := h.run(h.dispatch("isolated")[0]) // App\Jobs\IsolatedHog
	if o.Kind != protocol.Delete || !o.Failed || o.Result != "isolation-failed" ||
		!strings.Contains(o.Reason, "could not start App\\Jobs\\IsolatedHog inside its limits") ||
		!strings.Contains(o.Reason, "no cgroup for you") {
		t.Fatalf("outcome %+v, want failed for the isolation failure", o)
	}
	if n := h.app.Redis.Client.HGet(context.Background(), testenv.Prefix+"kqtest:runs", "hog").Val(); n != "" {
		t.Errorf("the job ran %s times outside its cgroup", n)
	}
	failed := strings.Join(h.app.Sqlite(t, "SELECT exception FROM failed_jobs"), "\n")
	if !strings.Contains(failed, "IsolationFailedException") || !strings.Contains(failed, "no cgroup for you") {
		t.Errorf("failed_jobs: %s", failed)
	}
	h.mu.Lock()
	started := h.started[o.ID]
	h.mu.Unlock()
	if !started {
		t.Error("failing it ran its failed() in PHP, yet it was not said to be started: a lost dispatcher would return it to its queue")
	}
}

// A job's Started is on the wire before the job can reach PHP: the
// dispatcher does not hand a job on until the poller has taken in the
// whole frame, so a dispatcher killed at any moment has told the poller of
// every job that may have run (one told only later could be returned to
// its queue and run twice). The poller's side is read by hand here, and
// stops halfway through the Started frame.
func TestStartedIsSentBeforePHPHasTheJob(t *testing.T) {
	t.Parallel()
	app := testenv.NewApp(t, testenv.StartRedis(t))
	d := New(Config{AppPath: app.Path, Env: app.Env, Workers: 1, Tries: 1, Timeout: time.Minute}, testenv.NewLogs().Logger())
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe() // unbuffered: a write waits for its reader
	served := make(chan error, 1)
	go func() { served <- d.Serve(context.Background(), protocol.NewConn(b)) }()
	t.Cleanup(func() {
		a.Close()
		<-served
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := d.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	pc := protocol.NewConn(a)
	if err := pc.Send(protocol.Hello{Version: protocol.Version}); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Recv(); err != nil { // Welcome, one write of its own
		t.Fatal(err)
	}

	app.Artisan(t, "kq:dispatch", "record")
	ctx := context.Background()
	key := testenv.Prefix + "queues:default"
	payload := app.Redis.Client.LPop(ctx, key).Val()
	if err := pc.Send(protocol.Job{ID: 1, Queue: "default", Payload: []byte(payload)}); err != nil {
		t.Fatal(err)
	}
	// frame reads one frame's length and type, then the rest unless stop
	// says to leave it (its writer then still waits).
	frame := func(stop func(typ byte) bool) (byte, []byte) {
		var hdr [5]byte
		if _, err := io.ReadFull(a, hdr[:]); err != nil {
			t.Fatal(err)
		}
		rest := make([]byte, binary.BigEndian.Uint32(hdr[:4])-1)
		if stop(hdr[4]) {
			return hdr[4], rest
		}
		if _, err := io.ReadFull(a, rest); err != nil {
			t.Fatal(err)
		}
		return hdr[4], nil
	}
	for {
		started := func(typ byte) bool { return typ == protocol.TypeStarted || typ == protocol.TypeRunning }
		typ, rest := frame(started)
		if !started(typ) {
			continue // the pool's state, a capacity
		}
		// The dispatcher is still writing this frame: the job must not
		// have run. Were it handed on already, it would run within
		// milliseconds; look for that a while.
		runs := testenv.Prefix + "kqtest:runs"
		testenv.Never(t, 300*time.Millisecond, "the job ran before its Started frame was sent", func() bool {
			return app.Redis.Client.HLen(ctx, runs).Val() != 0
		})
		if _, err := io.ReadFull(a, rest); err != nil {
			t.Fatal(err)
		}
		break
	}
	for {
		if typ, _ := frame(func(byte) bool { return false }); typ == protocol.TypeOutcome {
			break
		}
	}
	if n := app.Redis.Client.HLen(ctx, testenv.Prefix+"kqtest:runs").Val(); n != 1 {
		t.Errorf("after its outcome, %d jobs have run, want 1", n)
	}
}
