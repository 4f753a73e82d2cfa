package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
)

// TestDifferential runs every outcome of docs/architecture.md (Outcomes) that runs in PHP
// through `php artisan queue:work` and through `kqueue run` on the same app,
// and finds the same jobs run, the same attempts and events, the same
// failed_jobs rows and the same Redis state. It does so on every Laravel
// version of the matrix (testenv.Versions): on this host's Laravel 8,
// kqueue runs in this process; on Laravel 10 and 13, the kqueue binary runs
// inside the version's chroot, next to its PHP.
func TestDifferential(t *testing.T) {
	t.Parallel()
	onEveryVersion(t, "redis")
}

// TestDatabaseDifferential is TestDifferential with the queue in Laravel's
// jobs table (the database driver) on MariaDB, PostgreSQL and SQLite: the
// same jobs run, the same attempts, events and failed_jobs rows, and the
// same jobs table afterwards.
func TestDatabaseDifferential(t *testing.T) {
	t.Parallel()
	onEveryVersion(t, testenv.Backends()...)
}

// TestSQSDifferential is TestDifferential with the queue on SQS (the
// tests' SQS server): queue:work runs Laravel's own SqsQueue and SqsJob
// through the fixture app's stand-in for the AWS SDK's client, kqueue its
// SQS store; the same jobs run, with the same attempts (SQS's receive
// counts), events and failed_jobs rows, and the queue is empty after
// both.
func TestSQSDifferential(t *testing.T) {
	t.Parallel()
	onEveryVersion(t, "sqs")
}

// onEveryVersion runs differential on each Laravel version of the
// matrix, with the queue on each of drivers (named in the subtest when
// there are several).
func onEveryVersion(t *testing.T, drivers ...string) {
	for _, l := range testenv.Versions() {
		for _, driver := range drivers {
			name := "laravel" + l.Version
			if len(drivers) > 1 {
				name += "/" + driver
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				root := l.Root(t)
				bin := ""
				if root != "" {
					// Built on this host: the chroots' C libraries are newer.
					bin = buildKqueue(t)
				}
				differential(t, l, root, bin, driver)
			})
		}
	}
}

// differential is TestDifferential on one Laravel version, with the queue
// on driver ("redis", "sqs", or a database: testenv.Backends): with the app in
// the chroot at root, and kqueue run from the binary bin inside it, or in
// this process when root is "".
func differential(t *testing.T, l testenv.Laravel, root, bin, driver string) {
	r := testenv.StartRedisIn(t, root)
	app := testenv.NewAppIn(t, r, root)
	ctx := t.Context()
	var db *testenv.DB
	left := func() int64 { return queueSize(t, r.Client, "default") }
	var sq *testenv.SQS
	switch driver {
	case "redis":
	case "sqs":
		sq = testenv.StartSQS(t)
		app.QueueOnSQS(t, sq, nil)
		left = func() int64 { return int64(sq.Left(t, sq.URL("default"))) }
	default:
		db = app.QueueOn(t, driver)
		left = func() int64 { return int64(db.Count(t, "SELECT COUNT(*) FROM jobs")) }
	}
	drain := func(pass func() error) { drainUntil(t, left, pass) }
	run := func(cfg string) (string, error) {
		return kqueue(t, ctx, "run", "--config", cfg, "--stop-when-empty")
	}
	if root != "" {
		kq := kqueueIn(t, app, bin)
		run = func(cfg string) (string, error) {
			out, err := kq(ctx, "run", "--config", cfg, "--stop-when-empty").CombinedOutput()
			return string(out), err
		}
	}
	// holding runs kqueue (not until empty) until kqueue status says its
	// workers decline jobs for why, then stops it.
	holding := func(cfg, why string) {
		if root == "" {
			hctx, cancel := context.WithCancel(ctx)
			wait := background(t, hctx, "run", "--config", cfg)
			testenv.Eventually(t, 60*time.Second, "kqueue to hold: "+why, func() bool {
				s, ok := statusOf(ctx, cfg)
				return ok && strings.Contains(s.Declining, why)
			})
			cancel()
			if logs, err := wait(); err != nil {
				t.Fatalf("kqueue run: %v\n%s", err, logs)
			}
			return
		}
		kq := kqueueIn(t, app, bin)
		cmd := kq(ctx, "run", "--config", cfg)
		var logs testenv.SyncBuffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 60*time.Second, "kqueue to hold: "+why, func() bool {
			out, _ := kq(ctx, "status", "--config", cfg, "--json").Output()
			return strings.Contains(string(out), why)
		})
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("kqueue run: %v\n%s", err, logs.String())
		}
	}
	if v := app.Artisan(t, "--version"); !strings.Contains(v, "Laravel Framework "+l.Version+".") {
		t.Fatalf("the app runs %s, want Laravel %s", strings.TrimSpace(v), l.Version)
	}

	type result struct {
		log    map[string][]string
		failed []string
		state  []string
	}
	collect := func() result {
		state := redisState(t, r.Client)
		if db != nil {
			state = append(state, jobsTable(t, db)...)
		}
		if sq != nil {
			state = append(state, fmt.Sprintf("sqs default: %d messages", sq.Left(t, sq.URL("default"))))
		}
		return result{probeLog(t, r.Client), failedJobs(t, app), state}
	}
	reset := func() {
		r.Client.FlushAll(ctx)
		app.Sqlite(t, "DELETE FROM failed_jobs")
		if db != nil {
			if _, err := db.SQL.Exec("DELETE FROM jobs"); err != nil {
				t.Fatal(err)
			}
		}
	}

	// scenario runs the jobs of kq:dispatch name through queue:work, then
	// through kqueue with so many workers, and returns both results.
	scenario := func(name string, workers int) (laravel, kq result) {
		reset()
		app.Artisan(t, "kq:dispatch", name)
		drain(func() error {
			return queueWork(ctx, app)
		})
		laravel = collect()
		reset()
		cfg := app.Inside(app.Config(t, workers, ""))
		app.Artisan(t, "kq:dispatch", name)
		drain(func() error {
			logs, err := run(cfg)
			if err != nil {
				t.Log(logs)
			}
			return err
		})
		return laravel, collect()
	}
	// compare finds the same jobs run, events, failed_jobs rows and Redis
	// state; the worker's own events too when one worker each ran them.
	compare := func(name string, laravel, kq result, workerEvents bool) {
		for tag, want := range laravel.log {
			if strings.HasPrefix(tag, "worker:") && !workerEvents {
				continue
			}
			if got := kq.log[tag]; !reflect.DeepEqual(got, want) {
				t.Errorf("%s: job %s:\nqueue:work: %s\nkqueue:     %s", name, tag, strings.Join(want, "\n            "), strings.Join(got, "\n            "))
			}
		}
		for tag := range kq.log {
			if _, ok := laravel.log[tag]; !ok {
				t.Errorf("%s: job %s ran under kqueue only: %v", name, tag, kq.log[tag])
			}
		}
		if !reflect.DeepEqual(kq.failed, laravel.failed) {
			t.Errorf("%s: failed_jobs differ:\nqueue:work:\n%s\n\nkqueue:\n%s", name, strings.Join(laravel.failed, "\n---\n"), strings.Join(kq.failed, "\n---\n"))
		}
		if !reflect.DeepEqual(kq.state, laravel.state) {
			t.Errorf("%s: queue state differs:\nqueue:work: %v\nkqueue:     %v", name, laravel.state, kq.state)
		}
	}

	laravel, kq := scenario("mix", 2)
	if len(laravel.log) < 15 {
		t.Fatalf("queue:work ran too little to compare: %d jobs", len(laravel.log))
	}
	if len(laravel.failed) != 4 {
		t.Errorf("queue:work wrote %d failed_jobs rows, want 4", len(laravel.failed))
	}
	compare("mix", laravel, kq, false)
	// What Laravel's worker does with each (its attempts as the queue
	// counts them: Redis's attempts field, the jobs table's column, SQS's
	// receive count), stated here from its source as well as compared.
	for tag, want := range mixAttempts {
		for _, res := range []result{laravel, kq} {
			if got := processing(t, res.log[tag]); got != want {
				t.Errorf("mix: job %s began its attempts %s, want %s", tag, got, want)
			}
		}
	}

	// Around the job: a transaction one job left open is rolled back by the
	// app's Queue::looping listener before the next; the job is a RedisJob
	// (a DatabaseJob); the worker fires WorkerStopping (and WorkerStarting,
	// on 13) as it stops. One worker each, so the next job is the same
	// process's. Not with the queue in the app's own SQLite database:
	// there queue:work deletes the job inside the transaction it left
	// open, the listener rolls the delete back, and the job runs again
	// once retry_after has passed (kqueue deletes it on its own
	// connection: once).
	if driver != "sqlite" {
		laravel, kq = scenario("loop", 1)
		if got := laravel.log["tx-after"]; !strings.Contains(strings.Join(got, "\n"), `"kind":"transaction","tag":"tx-after","level":0`) {
			t.Errorf("queue:work: the job after an open transaction saw %v, want level 0", got)
		}
		want := `"redis_job":true`
		switch {
		case db != nil:
			want = `"database_job":true`
		case sq != nil:
			want = `"sqs_job":true,"sqs_message_id_matches":true`
		}
		if got := laravel.log["introspect"]; !strings.Contains(strings.Join(got, "\n"), want) {
			t.Errorf("queue:work: the job object %v, want %s", got, want)
		}
		if len(laravel.log["worker:WorkerStopping"]) != 1 {
			t.Errorf("queue:work fired WorkerStopping %d times, want 1", len(laravel.log["worker:WorkerStopping"]))
		}
		compare("loop", laravel, kq, true)
	}

	// Held: while the app is down, or a Looping listener returns false, or
	// (12.40+) the queue is paused, neither runs a job (queue:work
	// --stop-when-empty stops at once; kqueue gives each back as it was);
	// then both run them all, at their first attempt. With --force ([job]
	// force) both run them while the app is down.
	holds := []struct {
		name, why  string
		hold, lift func()
		force      bool
	}{
		{"down", "the app is down for maintenance", func() { app.Artisan(t, "down") }, func() { app.Artisan(t, "up") }, false},
		{"down-forced", "", func() { app.Artisan(t, "down") }, func() { app.Artisan(t, "up") }, true},
		{"looping-false", "a Queue::looping listener returned false",
			func() { r.Client.Set(ctx, testenv.Prefix+"kqtest:hold", 1, 0) },
			func() { r.Client.Del(ctx, testenv.Prefix+"kqtest:hold") }, false},
	}
	if db != nil {
		holds = holds[:1] // giving back a job is the store's part; the rest is PHP's, as on Redis
	}
	if sq != nil {
		// On SQS a receive is an attempt, and nothing takes it back:
		// queue:work receives nothing while held; kqueue holds what it
		// received (TestSQSDownForMaintenance), but the stop between
		// hold and lift here gives it back, counted.
		holds = nil
	}
	if l.Version == "13" && db == nil && sq == nil {
		holds = append(holds, struct {
			name, why  string
			hold, lift func()
			force      bool
		}{"paused", "the queue default is paused", func() { app.Artisan(t, "kq:pause", "default") },
			func() { app.Artisan(t, "queue:resume", "redis:default") }, false}, struct {
			name, why  string
			hold, lift func()
			force      bool
		}{"paused-ttl", "the queue default is paused", func() { app.Artisan(t, "kq:pause", "default", "--ttl=5") },
			func() {
				testenv.Eventually(t, 30*time.Second, "the pause to end", func() bool {
					return strings.TrimSpace(app.Artisan(t, "kq:paused", "default")) == "no"
				})
			}, false})
	}
	for _, h := range holds {
		var results [2]result
		for i, runner := range []string{"queue:work", "kqueue"} {
			reset()
			h.hold()
			app.Artisan(t, "kq:dispatch", "record", "--count=3")
			extra := ""
			if h.force {
				extra = "[job]\nforce = true\n"
			}
			cfg := app.Inside(app.Config(t, 1, extra))
			work := func() error { return queueWork(ctx, app) }
			if h.force && runner == "queue:work" {
				work = func() error { return queueWork(ctx, app, "--force") }
			}
			if runner == "kqueue" {
				work = func() error {
					logs, err := run(cfg)
					if err != nil {
						t.Log(logs)
					}
					return err
				}
			}
			if !h.force {
				if runner == "kqueue" {
					holding(cfg, h.why)
				} else if err := work(); err != nil {
					t.Fatal(err)
				}
				if n := r.Client.HLen(ctx, testenv.Prefix+"kqtest:runs").Val(); n != 0 {
					t.Errorf("%s, %s: %d jobs ran while held", h.name, runner, n)
				}
				h.lift()
			}
			drain(work)
			if h.force {
				h.lift()
			}
			results[i] = collect()
		}
		compare(h.name, results[0], results[1], false)
	}
}

// mixAttempts is, for each job of kq:dispatch mix, the attempts at which
// Laravel's worker began it (JobProcessing), how each ended (its last
// event but JobFailed) and whether the job failed there, by the job
// classes' tries, backoff, maxExceptions and retryUntil
// (testdata/app/app/Jobs): Fails throws at each of its 3 tries; Flaky
// throws at its first; MaxExceptions (10 tries) stops at its second
// exception; RetryUntil's 1 try yields to retryUntil (a future one runs
// it again, a past one fails it at once); Releases releases itself once.
var mixAttempts = map[string]string{
	"ok":                 "1:JobProcessed",
	"fails":              "1:JobExceptionOccurred 2:JobExceptionOccurred 3:JobExceptionOccurred,failed",
	"flaky":              "1:JobExceptionOccurred 2:JobProcessed",
	"max-exceptions":     "1:JobExceptionOccurred 2:JobExceptionOccurred,failed",
	"retry-until-future": "1:JobExceptionOccurred 2:JobProcessed",
	"retry-until-past":   "1:JobExceptionOccurred,failed",
	"releases":           "1:JobProcessed 2:JobProcessed",
	"fails-manually":     "1:JobProcessed,failed",
	"delayed":            "1:JobProcessed",
}

// processing lists a job's probe records as "attempt:last event" for
// each JobProcessing, with ",failed" where JobFailed fired.
func processing(t *testing.T, records []string) string {
	t.Helper()
	type attempt struct {
		n      int
		last   string
		failed bool
	}
	var as []attempt
	for _, r := range records {
		var rec struct {
			Kind, Event string
			Attempt     int
		}
		if err := json.Unmarshal([]byte(r), &rec); err != nil {
			t.Fatal(err)
		}
		switch {
		case rec.Kind != "event":
		case rec.Event == "JobProcessing":
			as = append(as, attempt{n: rec.Attempt})
		case len(as) == 0:
		case rec.Event == "JobFailed":
			as[len(as)-1].failed = true
		default:
			as[len(as)-1].last = rec.Event
		}
	}
	var out []string
	for _, a := range as {
		s := fmt.Sprintf("%d:%s", a.n, a.last)
		if a.failed {
			s += ",failed"
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

// kqueueIn copies the kqueue binary bin next to the app and returns
// `kqueue args…` run there: inside the app's chroot, if it has one (paths in
// args are then the chroot's).
func kqueueIn(t *testing.T, app *testenv.App, bin string) func(ctx context.Context, args ...string) *exec.Cmd {
	t.Helper()
	inside := filepath.Join(app.Path, "..", "kqueue")
	if _, err := os.Stat(inside); err != nil {
		// Copied by cp, once, not written by this process: a process
		// that a parallel test forks while this one holds the file open
		// for writing holds it too, until it execs, and an exec of the
		// file meanwhile fails with "text file busy".
		if out, err := exec.Command("cp", bin, inside).CombinedOutput(); err != nil {
			t.Fatalf("cp %s: %v: %s", bin, err, out)
		}
	}
	return func(ctx context.Context, args ...string) *exec.Cmd {
		return testenv.InChroot(ctx, app.Root, "/", app.Inside(inside), args...)
	}
}
