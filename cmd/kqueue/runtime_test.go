package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
)

// TestSharedQueuesExactlyOnce runs two `queue:work` processes and kqueue on
// the same queue at once: every job runs exactly once.
func TestSharedQueuesExactlyOnce(t *testing.T) {
	t.Parallel()
	const jobs = 2000
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	app.Env["LOG_CHANNEL"] = "null"
	ctx := t.Context()
	app.Artisan(t, "kq:dispatch", "record", fmt.Sprintf("--count=%d", jobs))
	cfg := app.Config(t, 2, "")

	var wg sync.WaitGroup
	var workers []*exec.Cmd
	for range 2 {
		cmd := app.Command(ctx, "queue:work", "--stop-when-empty")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		workers = append(workers, cmd)
	}
	var logs string
	var runErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		logs, runErr = kqueue(t, ctx, "run", "--config", cfg, "--stop-when-empty")
	}()
	for _, w := range workers {
		if err := w.Wait(); err != nil {
			t.Errorf("queue:work: %v", err)
		}
	}
	wg.Wait()
	if runErr != nil {
		t.Fatalf("kqueue run: %v\n%s", runErr, logs)
	}
	if n := queueSize(t, r.Client, "default"); n != 0 {
		t.Fatalf("%d jobs left in the queue", n)
	}
	runs := r.Client.HGetAll(ctx, testenv.Prefix+"kqtest:runs").Val()
	if len(runs) != jobs {
		t.Errorf("%d distinct jobs ran, want %d", len(runs), jobs)
	}
	for tag, n := range runs {
		if n != "1" {
			t.Errorf("job %s ran %s times", tag, n)
		}
	}
	byKQueue := testenv.JobsDone(logs)
	t.Logf("kqueue ran %d of %d jobs, queue:work the rest", byKQueue, jobs)
	if byKQueue == 0 || byKQueue == jobs {
		t.Errorf("kqueue ran %d of %d jobs: the runners did not share the queue", byKQueue, jobs)
	}
}

// TestTimeout: a job that sleeps past its timeout is killed and failed when
// its tries are used up, or released at once when it has tries left.
func TestTimeout(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	ctx := t.Context()
	app.Artisan(t, "kq:dispatch", "timeout")
	cfg := app.Config(t, 2, "")

	var logs string
	drain(t, r.Client, "default", func() error {
		l, err := kqueue(t, ctx, "run", "--config", cfg, "--stop-when-empty")
		logs += l
		return err
	})
	runs := r.Client.HGetAll(ctx, testenv.Prefix+"kqtest:runs").Val()
	if runs["timeout-once"] != "1" || runs["timeout-twice"] != "2" {
		t.Errorf("runs = %v, want timeout-once once and timeout-twice twice", runs)
	}
	rows := app.Sqlite(t, "SELECT exception FROM failed_jobs")
	if len(rows) != 2 {
		t.Fatalf("%d failed_jobs rows, want 2:\n%s", len(rows), logs)
	}
	for _, row := range rows {
		for _, want := range []string{"MaxAttemptsExceededException", "has timed out", "timeout of 1s", "killed its worker"} {
			if !strings.Contains(row, want) {
				t.Errorf("failed_jobs exception lacks %q: %s", want, row[:min(len(row), 300)])
			}
		}
	}
	hooks := probeLog(t, r.Client)
	for _, tag := range []string{"timeout-once", "timeout-twice"} {
		if !strings.Contains(strings.Join(hooks[tag], "\n"), `"kind":"failed-hook"`) {
			t.Errorf("failed() did not run for %s: %v", tag, hooks[tag])
		}
	}
	if !strings.Contains(logs, "outcome=timeout") {
		t.Errorf("no timeout in the log:\n%s", logs)
	}
}

// TestCrash: a job that calls exit(3) on its first attempt succeeds on its
// second attempt at once — not after retry_after — and kqueue keeps going.
func TestCrash(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	ctx := t.Context()
	app.Artisan(t, "kq:dispatch", "crash")
	app.Artisan(t, "kq:dispatch", "record", "--count=3")
	cfg := app.Config(t, 1, "")

	// One pass: had the crashed job waited for retry_after (90 s), it would
	// still be reserved when the pass ends.
	logs, err := kqueue(t, ctx, "run", "--config", cfg, "--stop-when-empty")
	if err != nil {
		t.Fatalf("kqueue run: %v\n%s", err, logs)
	}
	if n := queueSize(t, r.Client, "default"); n != 0 {
		t.Fatalf("%d jobs left after one pass:\n%s", n, logs)
	}
	runs := r.Client.HGetAll(ctx, testenv.Prefix+"kqtest:runs").Val()
	if runs["crash"] != "2" {
		t.Errorf("crash ran %q times, want 2", runs["crash"])
	}
	for i := range 3 {
		if runs[fmt.Sprintf("record-%d", i)] != "1" {
			t.Errorf("record-%d ran %q times, want 1", i, runs[fmt.Sprintf("record-%d", i)])
		}
	}
	if rows := app.Sqlite(t, "SELECT uuid FROM failed_jobs"); len(rows) != 0 {
		t.Errorf("failed_jobs has %d rows, want none", len(rows))
	}
	for _, want := range []string{"outcome=crashed", "exit code 3"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

// TestMalformedEntries: broken queue entries neither crash nor stall kqueue,
// are never dropped silently, and the jobs behind them run.
func TestMalformedEntries(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	ctx := context.Background()
	q := testenv.Prefix + "queues:default"

	laravel := func(uuid, class, command string) string {
		return fmt.Sprintf(`{"uuid":%q,"displayName":%q,"job":"Illuminate\\Queue\\CallQueuedHandler@call","maxTries":null,"maxExceptions":null,"failOnTimeout":false,"backoff":null,"timeout":null,"retryUntil":null,"data":{"commandName":%q,"command":%q},"id":"x","attempts":0}`,
			uuid, class, class, command)
	}
	quarantined := []string{
		`{"uuid": "not json`,
		`{"uuid":"a","job":"x","data":{}}`,
		`{"uuid":"b","job":"x","data":{},"attempts":"zero"}`,
		`[1,2,3]`,
	}
	failed := map[string]string{
		"00000000-0000-4000-8000-000000000001": laravel("00000000-0000-4000-8000-000000000001", `App\Jobs\Missing`, `O:16:"App\Jobs\Missing":0:{}`),
		"00000000-0000-4000-8000-000000000002": laravel("00000000-0000-4000-8000-000000000002", `App\Jobs\Record`, `O:15:"App\Jobs\Record":1:{s:3:"tag";s:4:"trun`),
	}
	notLaravel := `{"attempts":0,"hello":"world"}`
	for _, e := range append(quarantined, notLaravel, failed["00000000-0000-4000-8000-000000000001"], failed["00000000-0000-4000-8000-000000000002"]) {
		r.Client.RPush(ctx, q, e)
		r.Client.RPush(ctx, q+":notify", 1)
	}
	app.Artisan(t, "kq:dispatch", "record", "--count=2")
	cfg := app.Config(t, 1, "")

	logs, err := kqueue(t, ctx, "run", "--config", cfg, "--stop-when-empty")
	if err != nil {
		t.Fatalf("kqueue run: %v\n%s", err, logs)
	}
	runs := r.Client.HGetAll(ctx, testenv.Prefix+"kqtest:runs").Val()
	if runs["record-0"] != "1" || runs["record-1"] != "1" {
		t.Errorf("the jobs behind the broken ones did not run once each: %v", runs)
	}
	got := r.Client.LRange(ctx, q+":kqueue-quarantine", 0, -1).Val()
	want := append(append([]string{}, quarantined...), notLaravel)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("quarantine = %q, want %q", got, want)
	}
	if !strings.Contains(logs, "quarantined") {
		t.Errorf("quarantine not logged:\n%s", logs)
	}
	rows := app.Sqlite(t, "SELECT uuid, exception FROM failed_jobs ORDER BY uuid")
	if len(rows) != 2 {
		t.Fatalf("failed_jobs has %d rows, want 2:\n%s", len(rows), logs)
	}
	for i, want := range []string{`job class App\\Jobs\\Missing does not exist`, `unserialize(): Error at offset`} {
		if !strings.Contains(rows[i], want) {
			t.Errorf("failed_jobs row %d does not name the problem (%s): %.300s", i, want, rows[i])
		}
	}
	if n := queueSize(t, r.Client, "default"); n != 0 {
		t.Errorf("%d entries left in the queue", n)
	}
}

// TestPollerAndDispatcherProcesses runs the two halves as `kqueue poller`
// and `kqueue dispatcher` over the configured unix socket.
func TestPollerAndDispatcherProcesses(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	app.Env["LOG_CHANNEL"] = "null"
	cfg := app.Config(t, 2, "")
	app.Artisan(t, "kq:dispatch", "record", "--count=50")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	results := make(chan error, 2)
	var dlogs, plogs string
	go func() {
		var err error
		dlogs, err = kqueue(t, ctx, "dispatcher", "--config", cfg)
		results <- err
	}()
	go func() {
		var err error
		plogs, err = kqueue(t, ctx, "poller", "--config", cfg)
		results <- err
	}()
	testenv.Eventually(t, 60*time.Second, "50 jobs to run", func() bool {
		return r.Client.HLen(ctx, testenv.Prefix+"kqtest:runs").Val() == 50 && queueSize(t, r.Client, "default") == 0
	})
	cancel()
	for range 2 {
		if err := <-results; err != nil {
			t.Errorf("exit: %v", err)
		}
	}
	if !strings.Contains(plogs, "connected to dispatcher") {
		t.Errorf("poller log:\n%s\ndispatcher log:\n%s", plogs, dlogs)
	}
}

// TestStopLetsRunningJobsFinish: SIGTERM (ctx cancelled) stops reserving,
// lets the running jobs finish, and exits cleanly with nothing left
// reserved.
func TestStopLetsRunningJobsFinish(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	cfg := app.Config(t, 2, "")
	app.Artisan(t, "kq:dispatch", "sleep", "--count=4") // 4 jobs of 2 s

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	wait := background(t, ctx, "run", "--config", cfg)
	reserved := testenv.Prefix + "queues:default:reserved"
	testenv.Eventually(t, 30*time.Second, "two jobs to start", func() bool {
		return r.Client.HLen(ctx, testenv.Prefix+"kqtest:runs").Val() == 2
	})
	cancel()
	logs, err := wait()
	if err != nil {
		t.Fatalf("kqueue run after SIGTERM: %v\n%s", err, logs)
	}
	bg := context.Background()
	if n := r.Client.ZCard(bg, reserved).Val(); n != 0 {
		t.Errorf("%d reservations left", n)
	}
	if n := r.Client.LLen(bg, testenv.Prefix+"queues:default").Val(); n != 2 {
		t.Errorf("%d jobs left ready, want the 2 that had not started", n)
	}
	if n := strings.Count(logs, `msg="job done"`); n != 2 {
		t.Errorf("%d jobs finished, want the 2 running at the stop:\n%s", n, logs)
	}
}

// TestStopPastShutdownTimeout: jobs still running when the shutdown
// timeout ends are killed and released back to their queue with the
// attempt counted — nothing lost, nothing left reserved.
func TestStopPastShutdownTimeout(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	cfg := app.Config(t, 2, "[job]\nshutdown_timeout = 1\n")
	app.Artisan(t, "kq:dispatch", "sleep", "--count=2") // 2 s each

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	wait := background(t, ctx, "run", "--config", cfg)
	testenv.Eventually(t, 30*time.Second, "both jobs to start", func() bool {
		return r.Client.HLen(ctx, testenv.Prefix+"kqtest:runs").Val() == 2
	})
	cancel()
	logs, err := wait()
	if err != nil {
		t.Fatalf("%v\n%s", err, logs)
	}
	bg := context.Background()
	q := testenv.Prefix + "queues:default"
	if n := r.Client.ZCard(bg, q+":reserved").Val(); n != 0 {
		t.Errorf("%d reservations left", n)
	}
	if n := r.Client.ZCard(bg, q+":delayed").Val() + r.Client.LLen(bg, q).Val(); n != 2 {
		t.Errorf("%d jobs back in the queue, want the 2 interrupted:\n%s", n, logs)
	}
	if n := strings.Count(logs, "outcome=interrupted"); n != 2 {
		t.Errorf("%d interrupted outcomes, want 2:\n%s", n, logs)
	}
}

// A 30 s Redis outage in the middle of a run (the server frozen: it keeps
// its data but answers nobody) loses nothing: the jobs that finish during
// it have their outcomes written once Redis is back, and every job runs
// exactly once.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	app.Env["LOG_CHANNEL"] = "null"
	// The jobs' own Laravel must not need the queue's Redis to finish: its
	// cache (queue:restart) is on files and the probe has a server of its
	// own. Then jobs finish during the outage, and only kqueue has outcomes
	// to write.
	app.Env["CACHE_DRIVER"] = "file"
	probe := testenv.StartRedis(t)
	app.Env["KQ_PROBE_REDIS_HOST"], app.Env["KQ_PROBE_REDIS_PORT"] = probe.Socket, "0"
	cfg := app.Config(t, 2, "")
	app.Artisan(t, "kq:dispatch", "sleep", "--count=4")
	app.Artisan(t, "kq:dispatch", "record", "--count=100")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	logs := testenv.NewLogs()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"run", "--config", cfg}, io.Discard, logs) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	runs := testenv.Prefix + "kqtest:runs"
	testenv.Eventually(t, 30*time.Second, "two slow jobs to start", func() bool {
		return probe.Client.HExists(ctx, runs, "sleep-1").Val()
	})
	r.Freeze(t)
	testenv.Eventually(t, 30*time.Second, "the outage to be seen", func() bool {
		s, ok := statusOf(ctx, cfg)
		return ok && s.Stats.StoreDown > 0
	})
	// The outage shows in STATUS= and kqueue status.
	var out bytes.Buffer
	if err := run(ctx, []string{"status", "--config", cfg}, &out, io.Discard); err != nil || !strings.Contains(out.String(), "Redis unreachable for") {
		t.Errorf("kqueue status during the outage: %v\n%s", err, out.String())
	}
	// The outage: the running jobs finish meanwhile, their outcomes wait.
	select {
	case <-time.After(30 * time.Second):
	case <-ctx.Done():
	}
	r.Thaw(t)
	testenv.Eventually(t, 30*time.Second, "the outage to end", func() bool {
		s, ok := statusOf(ctx, cfg)
		return ok && s.Stats.StoreDown == 0
	})
	testenv.Eventually(t, 60*time.Second, "every job to run", func() bool {
		return probe.Client.HLen(ctx, runs).Val() == 104 && queueSize(t, r.Client, "default") == 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for tag, n := range probe.Client.HGetAll(context.Background(), runs).Val() {
		if n != "1" {
			t.Errorf("%s ran %s times", tag, n)
		}
	}
	if rows := app.Sqlite(t, "SELECT uuid FROM failed_jobs"); len(rows) != 0 {
		t.Errorf("%d jobs failed", len(rows))
	}
	if n := logs.Count("Redis is unreachable"); n != 1 {
		t.Errorf("the outage was reported %d times, want once:\n%s", n, logs.String())
	}
}

// Hostile and broken entries each end as a quarantine entry, a failed_jobs
// row naming the problem, or a normal run — never a crash, a stall or a
// silent drop — and the jobs behind them run.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	app.Env["LOG_CHANNEL"] = "null"
	ctx := context.Background()
	q := testenv.Prefix + "queues:default"
	app.Artisan(t, "kq:dispatch", "record", "--count=5")
	app.Artisan(t, "kq:dispatch", "mix")
	entries := r.Client.LRange(ctx, q, 0, -1).Val()
	r.Client.Del(ctx, q, q+":notify", q+":delayed")
	var secret string
	for _, e := range entries {
		if strings.Contains(e, `"displayName":"App\\Jobs\\Secret"`) {
			secret = e
		}
	}
	if secret == "" {
		t.Fatal("no encrypted job in the mix")
	}
	// An encrypted command whose MAC does not match.
	var p map[string]any
	json.Unmarshal([]byte(secret), &p)
	data := p["data"].(map[string]any)
	sealed, _ := base64.StdEncoding.DecodeString(data["command"].(string))
	var box map[string]any
	json.Unmarshal(sealed, &box)
	box["mac"] = strings.Repeat("0", 64)
	sealed, _ = json.Marshal(box)
	data["command"] = base64.StdEncoding.EncodeToString(sealed)
	badMAC, _ := json.Marshal(p)

	hostile := []string{
		// record-0 with a 50 MB field: it runs.
		strings.Replace(entries[0], `{`, `{"pad":"`+strings.Repeat("x", 50<<20)+`",`, 1),
		// record-1 with journald field injection and control characters in
		// its displayName: it runs, and the log stays one entry.
		strings.Replace(entries[1], `"displayName":"App\\Jobs\\Record"`, `"displayName":"App\\Jobs\\Record\nPRIORITY=0\u0007\u001b[31m"`, 1),
		// record-2 with invalid UTF-8 in its displayName.
		strings.Replace(entries[2], `"displayName":"App\\Jobs\\Record"`, "\"displayName\":\"App\\\\Jobs\\\\Record\xff\xfe\"", 1),
		// record-3 nested 5,000 deep: past what Redis's JSON decoder takes.
		strings.Replace(entries[3], `{`, `{"deep":`+strings.Repeat("[", 5000)+strings.Repeat("]", 5000)+`,`, 1),
		string(badMAC),
	}
	for _, e := range append(hostile, entries[4]) {
		r.Client.RPush(ctx, q, e)
		r.Client.RPush(ctx, q+":notify", 1)
	}
	cfg := app.Config(t, 1, "")
	logs, err := kqueue(t, ctx, "run", "--config", cfg, "--stop-when-empty")
	if err != nil {
		t.Fatalf("kqueue run: %v\n%.5000s", err, logs)
	}
	runs := r.Client.HGetAll(ctx, testenv.Prefix+"kqtest:runs").Val()
	quarantine := r.Client.LRange(ctx, q+":kqueue-quarantine", 0, -1).Val()
	failed := strings.Join(app.Sqlite(t, "SELECT exception FROM failed_jobs"), "\n")
	t.Logf("runs %v; %d quarantined; failed_jobs:\n%.2000s", runs, len(quarantine), failed)
	for _, tag := range []string{"record-0", "record-1", "record-4"} {
		if runs[tag] != "1" {
			t.Errorf("%s ran %q times, want once", tag, runs[tag])
		}
	}
	// Redis's JSON decoder refuses the nested one; PHP's json_decode, and
	// so Laravel, the invalid UTF-8: both are quarantined, whole.
	if len(quarantine) != 2 ||
		!slices.ContainsFunc(quarantine, func(e string) bool { return strings.HasPrefix(e, `{"deep":[[[`) }) ||
		!slices.Contains(quarantine, hostile[2]) {
		t.Errorf("quarantine holds %d entries, want the nested and the invalid UTF-8 one", len(quarantine))
	}
	if !strings.Contains(failed, "The MAC is invalid") {
		t.Errorf("the job with a bad MAC is not failed with the reason")
	}
	if strings.Contains(logs, "\nPRIORITY=0") {
		t.Errorf("a displayName started a log line of its own")
	}
	if n := queueSize(t, r.Client, "default"); n != 0 {
		t.Errorf("%d entries left in the queue", n)
	}
}

// TestKilledDispatcherReturnsUnstartedJobs: `kqueue dispatcher` killed
// (SIGKILL) in the middle of a run of no-op jobs, with many more of them
// prefetched than its workers had in hand. The poller puts every job the
// dispatcher had not handed to PHP back on the queue as it was, so with one
// try allowed (the default) none of those fails: only the jobs PHP had —
// one running and up to 15 handed ahead, per worker — may, after
// retry_after, as a job whose worker died does under queue:work.
func TestKilledDispatcherReturnsUnstartedJobs(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	app.Env["LOG_CHANNEL"] = "null"
	const jobs = 20000
	app.Artisan(t, "kq:dispatch", "noop", fmt.Sprintf("--count=%d", jobs))
	cfg := app.Config(t, 2, "[[queue]]\nname = \"default\"\nretry_after = 3\n")
	bin := filepath.Join(t.TempDir(), "kqueue")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var dlogs testenv.SyncBuffer
	dispatcher := func() *exec.Cmd {
		cmd := exec.Command(bin, "dispatcher", "--config", cfg)
		cmd.Stdout, cmd.Stderr = &dlogs, &dlogs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	first := dispatcher()
	wait := background(t, ctx, "poller", "--config", cfg)
	q := testenv.Prefix + "queues:default"
	testenv.Eventually(t, 60*time.Second, "a quarter of the jobs to run", func() bool { return r.Client.LLen(ctx, q).Val() <= jobs*3/4 })
	first.Process.Kill()
	first.Wait()

	second := dispatcher()
	defer func() { second.Process.Kill(); second.Wait() }()
	testenv.Eventually(t, 90*time.Second, "every job to run or fail", func() bool { return queueSize(t, r.Client, "default") == 0 })
	cancel()
	logs, _ := wait()
	if !strings.Contains(logs, "returned the jobs it had not started") {
		t.Errorf("the poller did not say it returned jobs:\n%s", logs)
	}
	const inHand = 2 * (1 + 15)
	failed := len(app.Sqlite(t, "SELECT id FROM failed_jobs"))
	if failed > inHand {
		t.Errorf("%d jobs failed, more than the %d PHP may have had in hand when the dispatcher was killed", failed, inHand)
	}
	t.Logf("%d jobs failed (PHP had them when the dispatcher was killed)", failed)
}
