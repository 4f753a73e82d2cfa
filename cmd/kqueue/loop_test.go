package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
)

// holdsThenRuns starts kqueue on the app, dispatches two jobs while hold
// makes the workers decline them, sees that none ran and kqueue status
// says why (want), then lifts the hold and sees each run once, at its
// first attempt: a declined job goes back as it was.
func holdsThenRuns(t *testing.T, extra, want string, hold, lift func(*testenv.App)) {
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	app.Env["LOG_CHANNEL"] = "null"
	cfg := app.Config(t, 2, extra)
	hold(app)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	wait := background(t, ctx, "run", "--config", cfg)
	app.Artisan(t, "kq:dispatch", "record", "--count=2")
	testenv.Eventually(t, 30*time.Second, "kqueue status to say it declines: "+want, func() bool {
		s, ok := statusOf(ctx, cfg)
		return ok && strings.Contains(s.Declining, want)
	})
	runs := testenv.Prefix + "kqtest:runs"
	if n := r.Client.HLen(ctx, runs).Val(); n != 0 {
		t.Fatalf("%d jobs ran while held", n)
	}
	lift(app)
	testenv.Eventually(t, 30*time.Second, "both jobs to run once the hold is lifted", func() bool {
		return r.Client.HLen(ctx, runs).Val() == 2 && queueSize(t, r.Client, "default") == 0
	})
	cancel()
	if logs, err := wait(); err != nil {
		t.Fatalf("kqueue run: %v\n%s", err, logs)
	}
	for tag, n := range r.Client.HGetAll(context.Background(), runs).Val() {
		if n != "1" {
			t.Errorf("%s ran %s times", tag, n)
		}
	}
	for _, rec := range probeLog(t, r.Client)["record-0"] {
		if strings.Contains(rec, `"kind":"run"`) && !strings.Contains(rec, `"attempt":1`) {
			t.Errorf("a declined job was charged an attempt: %s", rec)
		}
	}
}

// A Queue::looping listener that returns false holds every worker, as it
// holds queue:work: no job runs; each goes back to its queue as it was.
func TestLoopingListenerHoldsJobs(t *testing.T) {
	t.Parallel()
	holdsThenRuns(t, "", "a Queue::looping listener returned false",
		func(a *testenv.App) { a.Redis.Client.Set(context.Background(), testenv.Prefix+"kqtest:hold", 1, 0) },
		func(a *testenv.App) { a.Redis.Client.Del(context.Background(), testenv.Prefix+"kqtest:hold") })
}

// php artisan down stops kqueue running jobs, as it stops queue:work;
// php artisan up resumes within a second or so.
func TestMaintenanceMode(t *testing.T) {
	t.Parallel()
	holdsThenRuns(t, "", "the app is down for maintenance",
		func(a *testenv.App) { a.Artisan(t, "down") },
		func(a *testenv.App) { a.Artisan(t, "up") })
}

// With [job] force (queue:work --force), jobs run while the app is down.
func TestMaintenanceModeForced(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	app.Env["LOG_CHANNEL"] = "null"
	cfg := app.Config(t, 1, "[job]\nforce = true\n")
	app.Artisan(t, "down")
	app.Artisan(t, "kq:dispatch", "record", "--count=2")
	drain(t, r.Client, "default", func() error {
		_, err := kqueue(t, t.Context(), "run", "--config", cfg, "--stop-when-empty")
		return err
	})
	if n := r.Client.HLen(t.Context(), testenv.Prefix+"kqtest:runs").Val(); n != 2 {
		t.Errorf("%d jobs ran while down with force, want 2", n)
	}
}

// php artisan queue:retry pushes a failed job back before it deletes the
// job's failed_jobs row: a retried job that fails again at once meets its
// own old row (the same uuid, a unique index). Under kqueue's pickup that
// race is routine; the row must not be lost.
func TestRetryKeepsEveryFailedRecord(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	app.Env["LOG_CHANNEL"] = "null"
	cfg := app.Config(t, 2, "")
	const n = 100
	app.Artisan(t, "kq:dispatch", "alwaysfails", "--count=100")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	wait := background(t, ctx, "run", "--config", cfg)
	rows := func() int { return len(app.Sqlite(t, "SELECT uuid FROM failed_jobs")) }
	testenv.Eventually(t, 60*time.Second, "every job to fail once", func() bool { return rows() == n })
	app.Artisan(t, "queue:retry", "all")
	runs := testenv.Prefix + "kqtest:runs"
	testenv.Eventually(t, 60*time.Second, "every retried job to run and fail again", func() bool {
		for i := range n {
			if r.Client.HGet(ctx, runs, "always-"+strconv.Itoa(i)).Val() != "2" {
				return false
			}
		}
		return queueSize(t, r.Client, "default") == 0
	})
	cancel()
	if logs, err := wait(); err != nil {
		t.Fatalf("kqueue run: %v\n%s", err, logs)
	}
	if got, distinct := rows(), len(app.Sqlite(t, "SELECT DISTINCT uuid FROM failed_jobs")); got != n || distinct != n {
		t.Errorf("failed_jobs holds %d rows (%d jobs) after the retry, want one per job: %d", got, distinct, n)
	}
}

// The race of queue:retry made certain: a failed job pushed back while its
// old failed_jobs row is still there (RetryCommand deletes it only after
// the push). When it fails again, its row meets the old one's uuid: kqueue
// writes it again until the old row is gone (here, once the job has run
// again), and a row it can never write goes to the queue's kqueue-failed
// list in Redis, never nowhere.
func TestFailedRecordOutlivesADuplicate(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	app.Env["LOG_CHANNEL"] = "null"
	cfg := app.Config(t, 1, "")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	wait := background(t, ctx, "run", "--config", cfg)
	queue := testenv.Prefix + "queues:default"
	runs := testenv.Prefix + "kqtest:runs"
	app.Artisan(t, "kq:dispatch", "alwaysfails", "--count=2")
	rows := func() []string { return app.Sqlite(t, "SELECT uuid FROM failed_jobs ORDER BY uuid") }
	testenv.Eventually(t, 30*time.Second, "both jobs to fail", func() bool { return len(rows()) == 2 })
	// Push both back as queue:retry does, keeping their rows for now.
	for _, row := range app.Sqlite(t, "SELECT payload FROM failed_jobs ORDER BY uuid") {
		var cols []string
		if err := json.Unmarshal([]byte(row), &cols); err != nil {
			t.Fatal(err)
		}
		r.Client.RPush(ctx, queue, cols[0])
		r.Client.RPush(ctx, queue+":notify", 1)
	}
	// The first job's old row goes (queue:retry's forget) once it has run
	// again, while kqueue tries to write its new one; the second's stays.
	testenv.Eventually(t, 30*time.Second, "the first job to run again", func() bool {
		return r.Client.HGet(ctx, runs, "always-0").Val() == "2"
	})
	app.Sqlite(t, "DELETE FROM failed_jobs WHERE payload LIKE '%always-0%'")
	testenv.Eventually(t, 30*time.Second, "the first job's new row", func() bool {
		return len(app.Sqlite(t, "SELECT uuid FROM failed_jobs WHERE payload LIKE '%always-0%'")) == 1
	})
	testenv.Eventually(t, 90*time.Second, "the second job's record kept in Redis (after ~30 s of tries)", func() bool {
		return r.Client.LLen(ctx, queue+":kqueue-failed").Val() == 1
	})
	if kept := r.Client.LIndex(ctx, queue+":kqueue-failed", 0).Val(); !strings.Contains(kept, "always-1") || !strings.Contains(kept, "UNIQUE") {
		t.Errorf("kept record: %s", kept)
	}
	cancel()
	if logs, err := wait(); err != nil {
		t.Fatalf("kqueue run: %v\n%s", err, logs)
	} else if !strings.Contains(logs, "could not be written") {
		t.Errorf("the log does not say a row could not be written:\n%s", logs)
	}
}
