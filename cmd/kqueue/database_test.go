package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
)

// servers are the database servers of the tests that need several
// processes on one jobs table.
var servers = []string{"mysql", "pgsql"}

// jobsLeft counts the rows of the jobs table's default queue.
func jobsLeft(t *testing.T, db *testenv.DB) int64 {
	return int64(db.Count(t, "SELECT COUNT(*) FROM jobs WHERE queue = 'default'"))
}

// secondConfig copies the kqueue.toml at cfg for a second instance beside
// the first: its own dispatcher and control sockets.
func secondConfig(t *testing.T, cfg string) string {
	t.Helper()
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer("kqueue.sock", "kqueue2.sock", "kqueue.control", "kqueue2.control").Replace(string(b))
	second := filepath.Join(filepath.Dir(cfg), "kqueue2.toml")
	if err := os.WriteFile(second, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return second
}

// On one jobs table, 2,000 jobs: queue:work and kqueue, then two kqueue
// instances, take them together; each runs exactly once, and both runners
// take some.
func TestDatabaseSharedExactlyOnce(t *testing.T) {
	t.Parallel()
	bin := buildKqueue(t)
	for _, driver := range servers {
		for _, other := range []string{"queue:work", "kqueue"} {
			t.Run(driver+"/"+other, func(t *testing.T) {
				t.Parallel()
				const jobs = 2000
				r := testenv.StartRedis(t)
				app := testenv.NewApp(t, r)
				app.Env["LOG_CHANNEL"] = "null"
				db := app.QueueOn(t, driver)
				ctx := t.Context()
				app.Artisan(t, "kq:dispatch", "record", fmt.Sprintf("--count=%d", jobs))
				cfg := app.Config(t, 2, "")
				start := func(args ...string) (*exec.Cmd, *testenv.SyncBuffer) {
					cmd := exec.CommandContext(ctx, args[0], args[1:]...)
					if args[0] == "queue:work" {
						cmd = app.Command(ctx, "queue:work", "--stop-when-empty")
					}
					var logs testenv.SyncBuffer
					cmd.Stdout, cmd.Stderr = &logs, &logs
					if err := cmd.Start(); err != nil {
						t.Fatal(err)
					}
					return cmd, &logs
				}
				a, aLogs := start(bin, "run", "--config", cfg, "--stop-when-empty")
				var b *exec.Cmd
				var bLogs *testenv.SyncBuffer
				if other == "kqueue" {
					b, bLogs = start(bin, "run", "--config", secondConfig(t, cfg), "--stop-when-empty")
				} else {
					b, bLogs = start("queue:work")
				}
				for _, c := range []struct {
					cmd  *exec.Cmd
					logs *testenv.SyncBuffer
				}{{a, aLogs}, {b, bLogs}} {
					if err := c.cmd.Wait(); err != nil {
						t.Errorf("%s: %v\n%s", c.cmd.Args, err, c.logs.String())
					}
				}
				if n := jobsLeft(t, db); n != 0 {
					t.Fatalf("%d jobs left in the table", n)
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
				byA := testenv.JobsDone(aLogs.String())
				t.Logf("kqueue ran %d of %d jobs, %s the rest", byA, jobs, other)
				if byA == 0 || byA == jobs {
					t.Errorf("kqueue ran %d of %d jobs: the runners did not share the table", byA, jobs)
				}
			})
		}
	}
}

// kqueue killed with SIGKILL in the middle of 5,000 one-try jobs on a
// jobs table, then queue:work drains it: every job runs, the only ones
// failed are jobs PHP was running at the kill (each of which ran), and no
// job was charged an attempt it did not run — the rows kqueue had reserved
// ahead come back to queue:work as they were once retry_after has passed.
func TestDatabaseKilledWithJobsInHand(t *testing.T) {
	t.Parallel()
	bin := buildKqueue(t)
	for _, driver := range servers {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			r := testenv.StartRedis(t)
			app := testenv.NewApp(t, r)
			app.Env["LOG_CHANNEL"] = "null"
			app.Env["DB_QUEUE_RETRY_AFTER"] = "3"
			db := app.QueueOn(t, driver)
			const jobs, workers = 5000, 2
			app.Artisan(t, "kq:dispatch", "record", fmt.Sprintf("--count=%d", jobs))
			cfg := app.Config(t, workers, "")
			ctx := t.Context()
			cmd := exec.CommandContext(ctx, bin, "run", "--config", cfg)
			var logs testenv.SyncBuffer
			cmd.Stdout, cmd.Stderr = &logs, &logs
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Killed with more rows reserved than PHP can be running: some
			// were taken ahead.
			testenv.Eventually(t, 60*time.Second, "a quarter of the jobs to run, more taken", func() bool {
				return jobsLeft(t, db) <= jobs*3/4 && db.Count(t, "SELECT COUNT(*) FROM jobs WHERE reserved_at IS NOT NULL") > workers
			})
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			reserved := db.Count(t, "SELECT COUNT(*) FROM jobs WHERE reserved_at IS NOT NULL")
			charged := db.Count(t, "SELECT COUNT(*) FROM jobs WHERE attempts > 0")
			t.Logf("at the kill: %d rows reserved, %d of them charged", reserved, charged)
			if charged > workers {
				t.Errorf("%d rows charged an attempt at the kill, more than the %d jobs PHP can have been running", charged, workers)
			}
			drainUntil(t, func() int64 { return jobsLeft(t, db) }, func() error {
				return queueWork(ctx, app)
			})

			afterTheKill(t, r, app, jobs, workers)
		})
	}
}

// A crash, timeouts, and an isolated job over its memory limit, with the
// queue in a jobs table: the same outcomes as on Redis, and the jobs
// behind them run once.
func TestDatabaseFailures(t *testing.T) {
	t.Parallel()
	for _, driver := range testenv.Backends() {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			r := testenv.StartRedis(t)
			app := testenv.NewApp(t, r)
			db := app.QueueOn(t, driver)
			ctx := t.Context()
			for _, set := range []string{"crash", "timeout", "isolated"} {
				app.Artisan(t, "kq:dispatch", set)
			}
			cfg := app.Config(t, 2, "[isolation]\ndriver = \"cgroupfs\"\nmax_concurrent = 2\ntasks = 32\n")
			var logs string
			drainUntil(t, func() int64 { return jobsLeft(t, db) }, func() error {
				l, err := kqueue(t, ctx, "run", "--config", cfg, "--stop-when-empty")
				logs += l
				return err
			})
			runs := r.Client.HGetAll(ctx, testenv.Prefix+"kqtest:runs").Val()
			want := map[string]string{"crash": "2", "timeout-once": "1", "timeout-twice": "2", "hog": "1", "after-0": "1", "after-1": "1", "after-2": "1"}
			for tag, n := range want {
				if runs[tag] != n {
					t.Errorf("%s ran %q times, want %s", tag, runs[tag], n)
				}
			}
			if _, skipped := runsOf(t, r); len(skipped) > 0 {
				t.Errorf("charged without having run: %v", skipped)
			}
			all := strings.Join(app.Sqlite(t, "SELECT exception FROM failed_jobs"), "\n")
			for _, want := range []string{"exceeded its memory limit (64M)", "has timed out"} {
				if !strings.Contains(all, want) {
					t.Errorf("failed_jobs lacks %q:\n%s", want, all)
				}
			}
			for _, want := range []string{"outcome=crashed", "outcome=timeout", "outcome=oom"} {
				if !strings.Contains(logs, want) {
					t.Errorf("log lacks %s", want)
				}
			}
		})
	}
}

// The database server restarts while jobs run (kqueue status shows the
// table's depths meanwhile): kqueue reports the outage once and its end
// once, keeps the outcomes meanwhile, and every job runs
// exactly once. The server stays down until kqueue has seen it gone (the
// slow jobs' outcomes need it): a restart between two of kqueue's
// queries would go unseen.
func TestDatabaseRestart(t *testing.T) {
	t.Parallel()
	for _, driver := range servers {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			r := testenv.StartRedis(t)
			app := testenv.NewApp(t, r)
			app.Env["LOG_CHANNEL"] = "null"
			db := app.QueueOn(t, driver)
			const jobs = 2000
			app.Artisan(t, "kq:dispatch", "sleep", "--count=4")
			app.Artisan(t, "kq:dispatch", "record", fmt.Sprintf("--count=%d", jobs))
			cfg := app.Config(t, 2, "")
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
				return r.Client.HExists(ctx, runs, "sleep-1").Val()
			})
			// kqueue status reads the table's depths.
			if st, ok := statusOf(ctx, cfg); !ok || len(st.Queues) != 1 || st.Queues[0].Name != "default" || st.Queues[0].Reserved < 2 {
				t.Errorf("kqueue status: %+v (%v), want the default queue with the slow jobs reserved", st.Queues, ok)
			}
			db.Shutdown()
			testenv.Eventually(t, 30*time.Second, "kqueue to see the database gone", func() bool {
				return logs.Count("is unreachable") > 0
			})
			db.Start(t)
			testenv.Eventually(t, 120*time.Second, "every job to run", func() bool {
				return r.Client.HLen(ctx, runs).Val() == jobs+4 && jobsLeft(t, db) == 0
			})
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			for tag, n := range r.Client.HGetAll(context.Background(), runs).Val() {
				if n != "1" {
					t.Errorf("%s ran %s times", tag, n)
				}
			}
			if rows := app.Sqlite(t, "SELECT uuid FROM failed_jobs"); len(rows) != 0 {
				t.Errorf("%d jobs failed", len(rows))
			}
			down, up := logs.Count("is unreachable"), logs.Count("is reachable again")
			if down != 1 || up != 1 {
				t.Errorf("the outage was reported %d times and its end %d times, want once each", down, up)
			}
		})
	}
}

// kqueue trigger installs the notify trigger on a PostgreSQL jobs table
// (printing its SQL), kqueue check and the poller's log say it is used,
// the jobs run, and --remove drops it; on another database it refuses.
func TestPostgresTrigger(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	db := app.QueueOn(t, "pgsql")
	cfg := app.Config(t, 1, "")
	ctx := t.Context()
	var out strings.Builder
	if err := run(ctx, []string{"trigger", "--config", cfg}, &out, io.Discard); err != nil {
		t.Fatalf("kqueue trigger: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), `CREATE TRIGGER kqueue_notify AFTER INSERT ON "jobs" FOR EACH STATEMENT`) {
		t.Errorf("kqueue trigger printed:\n%s", out.String())
	}
	if check, err := checkOutput(t, cfg); err != nil || !strings.Contains(check, "new jobs notified by kqueue's trigger") {
		t.Errorf("kqueue check: %v\n%s", err, check)
	}
	app.Artisan(t, "kq:dispatch", "record", "--count=20")
	logs, err := kqueue(t, ctx, "run", "--config", cfg, "--stop-when-empty")
	if err != nil {
		t.Fatalf("kqueue run: %v\n%s", err, logs)
	}
	if !strings.Contains(logs, "the jobs table has kqueue's trigger") {
		t.Errorf("the poller does not say it uses the trigger:\n%s", logs)
	}
	if n := jobsLeft(t, db); n != 0 || r.Client.HLen(ctx, testenv.Prefix+"kqtest:runs").Val() != 20 {
		t.Errorf("%d jobs left, %d ran", n, r.Client.HLen(ctx, testenv.Prefix+"kqtest:runs").Val())
	}
	out.Reset()
	if err := run(ctx, []string{"trigger", "--config", cfg, "--remove"}, &out, io.Discard); err != nil {
		t.Fatalf("kqueue trigger --remove: %v\n%s", err, out.String())
	}
	if n := db.Count(t, "SELECT COUNT(*) FROM pg_trigger WHERE tgname = 'kqueue_notify'"); n != 0 {
		t.Errorf("%d triggers left after --remove", n)
	}

	other := testenv.NewApp(t, r)
	other.QueueOn(t, "sqlite")
	err = run(ctx, []string{"trigger", "--config", other.Config(t, 1, "")}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "kqueue trigger is for a queue in a PostgreSQL jobs table") {
		t.Errorf("kqueue trigger on SQLite: %v", err)
	}
}

// Rows whose payload is not a Laravel job — not JSON, JSON that is not a
// job — ahead of good ones: each is set aside in the queue
// default:kqueue-quarantine, as it was, with an error in the log; the good
// rows behind them run.
func TestDatabaseMalformedRows(t *testing.T) {
	t.Parallel()
	for _, driver := range testenv.Backends() {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			r := testenv.StartRedis(t)
			app := testenv.NewApp(t, r)
			db := app.QueueOn(t, driver)
			for _, p := range []string{`not json at all`, `{"hello":"world"}`} {
				if _, err := db.SQL.Exec(db.InsertRow(), "default", p, 0, 0); err != nil {
					t.Fatal(err)
				}
			}
			app.Artisan(t, "kq:dispatch", "record", "--count=3")
			ctx := t.Context()
			logs, err := kqueue(t, ctx, "run", "--config", app.Config(t, 1, ""), "--stop-when-empty")
			if err != nil {
				t.Fatalf("kqueue run: %v\n%s", err, logs)
			}
			if n := r.Client.HLen(ctx, testenv.Prefix+"kqtest:runs").Val(); n != 3 {
				t.Errorf("%d good jobs ran, want 3", n)
			}
			if n := jobsLeft(t, db); n != 0 {
				t.Errorf("%d rows left on the default queue", n)
			}
			set := db.Count(t, "SELECT COUNT(*) FROM jobs WHERE queue = 'default:kqueue-quarantine' AND attempts = 0 AND reserved_at IS NULL AND payload IN ('not json at all', '{\"hello\":\"world\"}')")
			if set != 2 {
				t.Errorf("%d rows set aside as they were, want 2", set)
			}
			if n := strings.Count(logs, "quarantined a malformed job: its row stays in the table, moved to another queue"); n != 2 {
				t.Errorf("%d quarantine errors in the log, want 2:\n%s", n, logs)
			}
		})
	}
}
