package main

import (
	"context"
	"encoding/json"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/kqueue/kqueue/internal/testenv"
)

// sqsApp is a Laravel 8 app whose queue connection is SQS on a test
// server, with queues of this visibility timeout (seconds).
func sqsApp(t *testing.T, visibility int, queues ...string) (*testenv.App, *testenv.Redis, *testenv.SQS) {
	t.Helper()
	s := testenv.StartSQS(t)
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	app.Env["LOG_CHANNEL"] = "null"
	app.QueueOnSQS(t, s, map[string]string{"VisibilityTimeout": strconv.Itoa(visibility)}, queues...)
	return app, r, s
}

// A job that runs longer than its queue's visibility timeout (3 s) runs
// once, with a second instance beside the first ready to receive it:
// kqueue keeps extending its visibility while it runs.
func TestSQSLongJobRunsOnce(t *testing.T) {
	t.Parallel()
	app, r, s := sqsApp(t, 3)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cfg := app.Config(t, 1, "")
	logs := testenv.NewLogs()
	wait := []func() (string, error){background(t, ctx, "run", "--config", cfg), background(t, ctx, "run", "--config", secondConfig(t, cfg))}
	app.Artisan(t, "kq:dispatch", "long") // 14 s
	testenv.Eventually(t, 60*time.Second, "the long job to finish", func() bool {
		return r.Client.LLen(ctx, testenv.Prefix+"kqtest:log").Val() > 0 && s.Left(t, s.URL("default")) == 0
	})
	cancel()
	for _, w := range wait {
		out, err := w()
		logs.Write([]byte(out))
		if err != nil {
			t.Fatal(err, out)
		}
	}
	runs := r.Client.HGetAll(context.Background(), testenv.Prefix+"kqtest:runs").Val()
	if runs["long-0"] != "1" {
		t.Errorf("the long job ran %q times, want once\n%s", runs["long-0"], logs.String())
	}
	if n := len(app.Sqlite(t, "SELECT uuid FROM failed_jobs")); n != 0 {
		t.Errorf("%d jobs failed", n)
	}
}

// A FIFO queue's message groups run in order: with three workers, a
// group's next job begins only once the one before has ended, while the
// two groups run side by side.
func TestSQSFifoGroupsInOrder(t *testing.T) {
	t.Parallel()
	app, r, s := sqsApp(t, 30, "staging", "ordered.fifo")
	ctx := t.Context()
	const jobs = 10
	// Laravel 8 cannot push to a FIFO queue (it sets no message group):
	// its payloads are taken from a standard queue and sent on in order,
	// in two groups, as a later Laravel would send them.
	app.Artisan(t, "kq:dispatch", "spans", "--count="+strconv.Itoa(jobs), "--queue=staging")
	bodies := map[int]string{}
	index := regexp.MustCompile(`span-(\d+)`)
	testenv.Eventually(t, 30*time.Second, "the payloads", func() bool {
		out, err := s.Client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(s.URL("staging")), MaxNumberOfMessages: 10})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			i, _ := strconv.Atoi(index.FindStringSubmatch(*m.Body)[1])
			bodies[i] = *m.Body
		}
		return len(bodies) == jobs
	})
	for i := range jobs {
		if _, err := s.Client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(s.URL("ordered.fifo")), MessageBody: aws.String(bodies[i]),
			MessageGroupId: aws.String("g" + strconv.Itoa(i%2)), MessageDeduplicationId: aws.String("span-" + strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := app.Config(t, 3, "[[queue]]\nname = \"ordered.fifo\"\n")
	if logs, err := kqueue(t, ctx, "run", "--config", cfg, "--stop-when-empty"); err != nil {
		t.Fatal(err, logs)
	}
	type edge struct {
		Tag, Edge string
		At        float64
	}
	start, end := map[int]float64{}, map[int]float64{}
	for _, l := range r.Client.LRange(ctx, testenv.Prefix+"kqtest:spans", 0, -1).Val() {
		var e edge
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatal(err)
		}
		i, _ := strconv.Atoi(strings.TrimPrefix(e.Tag, "span-"))
		if e.Edge == "start" {
			start[i] = e.At
		} else {
			end[i] = e.At
		}
	}
	if len(end) != jobs {
		t.Fatalf("%d of %d jobs ran", len(end), jobs)
	}
	overlap := false
	for i := 2; i < jobs; i++ {
		if start[i] < end[i-2] {
			t.Errorf("span-%d began %.3f s before span-%d (its group's previous) ended", i, end[i-2]-start[i], i-2)
		}
	}
	for i := 1; i < jobs; i++ {
		overlap = overlap || (start[i] < end[i-1] && start[i-1] < end[i])
	}
	if !overlap {
		t.Errorf("the two groups never ran side by side")
	}
	if n := s.Left(t, s.URL("ordered.fifo")); n != 0 {
		t.Errorf("%d messages left", n)
	}
}

// kqueue killed (SIGKILL) while its workers run two jobs loses none:
// the two run to their end in their workers; once their visibility
// timeout (3 s) has passed, the next kqueue receives them again, at their
// second attempt, which these jobs of one try fail as Laravel does
// (MaxAttemptsExceededException: SQS counted both receives). Every other
// job was never received before, and runs at its first attempt.
func TestSQSKilledMidRun(t *testing.T) {
	t.Parallel()
	bin := buildKqueue(t)
	app, r, s := sqsApp(t, 3)
	ctx := t.Context()
	const jobs = 6
	app.Artisan(t, "kq:dispatch", "spans", "--count="+strconv.Itoa(jobs), "--from=-1") // held until kqtest:go
	cfg := app.Config(t, 2, "")
	first := exec.CommandContext(ctx, bin, "run", "--config", cfg)
	var logs testenv.SyncBuffer
	first.Stdout, first.Stderr = &logs, &logs
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	spans := testenv.Prefix + "kqtest:spans"
	testenv.Eventually(t, 60*time.Second, "two jobs to start", func() bool { return r.Client.LLen(ctx, spans).Val() == 2 })
	cut := map[string]bool{}
	for _, l := range r.Client.LRange(ctx, spans, 0, -1).Val() {
		var e struct{ Tag string }
		json.Unmarshal([]byte(l), &e)
		cut[e.Tag] = true
	}
	first.Process.Signal(syscall.SIGKILL)
	first.Wait()
	// Tokens for every job: the two cut off end in their workers, which
	// finish the job in hand when their dispatcher dies.
	for range jobs + 2 {
		r.Client.RPush(ctx, testenv.Prefix+"kqtest:go", 1)
	}
	out, err := exec.CommandContext(ctx, bin, "run", "--config", cfg, "--stop-when-empty").CombinedOutput()
	if err != nil {
		t.Fatal(err, string(out))
	}
	testenv.Eventually(t, 60*time.Second, "every job to end", func() bool {
		if s.Left(t, s.URL("default")) > 0 {
			out, err := exec.CommandContext(ctx, bin, "run", "--config", cfg, "--stop-when-empty").CombinedOutput()
			if err != nil {
				t.Fatal(err, string(out))
			}
		}
		return s.Left(t, s.URL("default")) == 0
	})
	ended := map[string]bool{}
	for _, l := range r.Client.LRange(ctx, spans, 0, -1).Val() {
		var e struct{ Tag, Edge string }
		json.Unmarshal([]byte(l), &e)
		if e.Edge == "end" {
			ended[e.Tag] = true
		}
	}
	failed := app.Sqlite(t, "SELECT payload FROM failed_jobs")
	if len(ended) != jobs || len(failed) > 2 {
		t.Errorf("%d jobs ended and %d failed, want all %d and at most the 2 cut off\n%s", len(ended), len(failed), jobs, logs.String())
	}
	for _, f := range failed {
		tag := regexp.MustCompile(`span-\d+`).FindString(f)
		if !cut[tag] {
			t.Errorf("%s failed, but it was not running at the kill", tag)
		}
	}
}

// SQS going away is told once, and its return once; jobs pushed after it
// is back run, each once.
func TestSQSUnreachable(t *testing.T) {
	t.Parallel()
	app, r, s := sqsApp(t, 30)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cfg := app.Config(t, 2, "")
	logs := testenv.NewLogs()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"run", "--config", cfg}, io.Discard, logs) }()
	testenv.Eventually(t, 60*time.Second, "kqueue to run", func() bool { _, ok := statusOf(ctx, cfg); return ok })
	s.Stop()
	logs.WaitFor(t, "is unreachable", 1, 30*time.Second)
	testenv.Never(t, 3*time.Second, "a second report of the outage", func() bool { return logs.Count("is unreachable") > 1 })
	s.Start(t)
	s.CreateQueue(t, "default", nil) // the server keeps its queues in memory
	const jobs = 20
	app.Artisan(t, "kq:dispatch", "record", "--count="+strconv.Itoa(jobs))
	runs := testenv.Prefix + "kqtest:runs"
	testenv.Eventually(t, 60*time.Second, "every job to run", func() bool {
		return r.Client.HLen(ctx, runs).Val() == jobs && s.Left(t, s.URL("default")) == 0
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
	down, up := logs.Count("SQS is unreachable"), logs.Count("SQS is reachable again")
	if down != 1 || up != 1 {
		t.Errorf("the outage was reported %d times and its end %d times, want once each\n%s", down, up, logs.String())
	}
	if strings.Contains(logs.String(), "test-secret-never-logged") {
		t.Error("the SQS secret is in the log")
	}
}

// kqueue check says what it took from the app's SQS connection (never
// the secret) and reaches each queue; a queue that does not exist is an
// error naming its URL.
func TestSQSCheck(t *testing.T) {
	t.Parallel()
	app, _, s := sqsApp(t, 45)
	ctx := t.Context()
	cfg := app.Config(t, 1, "")
	var out strings.Builder
	if err := run(ctx, []string{"check", "--config", cfg}, &out, io.Discard); err != nil {
		t.Fatal(err, out.String())
	}
	for _, want := range []string{
		"sqs credentials", "the key …TKEY and its secret from config/queue.php connections.sqs.key and .secret",
		"sqs queue default (" + s.URL("default") + "): reachable, visibility timeout 45s",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("kqueue check does not say %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "test-secret-never-logged") {
		t.Errorf("kqueue check shows the secret:\n%s", out.String())
	}
	out.Reset()
	missing := app.Config(t, 1, "[[queue]]\nname = \"nowhere\"\n")
	err := run(ctx, []string{"check", "--config", missing}, &out, io.Discard)
	if err == nil || !strings.Contains(err.Error(), s.URL("nowhere")) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("kqueue check on a missing queue: %v", err)
	}
}

// While the app is down for maintenance, kqueue's workers decline the
// jobs it received; it holds them (their visibility extended) instead of
// giving them back to SQS, which would count another receive each time.
// Once the app is up they run at their first attempt, as under
// queue:work, which receives nothing while the app is down.
func TestSQSDownForMaintenance(t *testing.T) {
	t.Parallel()
	app, r, s := sqsApp(t, 2)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cfg := app.Config(t, 2, "")
	wait := background(t, ctx, "run", "--config", cfg)
	testenv.Eventually(t, 60*time.Second, "kqueue to run", func() bool { _, ok := statusOf(ctx, cfg); return ok })
	app.Artisan(t, "down")
	app.Artisan(t, "kq:dispatch", "record", "--count=3")
	testenv.Eventually(t, 30*time.Second, "the workers to decline", func() bool {
		st, ok := statusOf(ctx, cfg)
		return ok && strings.Contains(st.Declining, "down for maintenance")
	})
	runs := testenv.Prefix + "kqtest:runs"
	// Longer than the visibility timeout: held, not received again.
	testenv.Never(t, 4*time.Second, "a job run while the app is down", func() bool { return r.Client.HLen(ctx, runs).Val() > 0 })
	app.Artisan(t, "up")
	testenv.Eventually(t, 30*time.Second, "the jobs to run", func() bool {
		return r.Client.HLen(ctx, runs).Val() == 3 && s.Left(t, s.URL("default")) == 0
	})
	cancel()
	if logs, err := wait(); err != nil {
		t.Fatal(err, logs)
	}
	for tag, records := range probeLog(t, r.Client) {
		for _, rec := range records {
			if strings.Contains(rec, `"kind":"run"`) && !strings.Contains(rec, `"attempt":1,`) {
				t.Errorf("%s ran at another attempt than its first: %s", tag, rec)
			}
		}
	}
}
