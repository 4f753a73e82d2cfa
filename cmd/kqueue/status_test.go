package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
	"github.com/kqueue/kqueue/poller"
)

var update = flag.Bool("update", false, "rewrite golden files")

// statusOf is what `kqueue status --json` says of the instance at cfg;
// false while it does not answer.
func statusOf(ctx context.Context, cfg string) (poller.Snapshot, bool) {
	var js bytes.Buffer
	var s poller.Snapshot
	ok := run(ctx, []string{"status", "--config", cfg, "--json"}, &js, io.Discard) == nil && json.Unmarshal(js.Bytes(), &s) == nil
	return s, ok
}

// `kqueue status` shows a running instance's live state: counts, queue
// depths, running jobs, the last failures. Golden file, with ages, uuids
// and times masked.
func TestStatus(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	app.Env["LOG_CHANNEL"] = "null"
	cfg := app.Config(t, 2, "[[queue]]\nname = \"default\"\n[[queue]]\nname = \"low\"\n")
	app.Artisan(t, "kq:dispatch", "status")
	app.Artisan(t, "kq:dispatch", "record", "--count=2", "--queue=low")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	wait := background(t, ctx, "run", "--config", cfg)
	runs := testenv.Prefix + "kqtest:runs"
	testenv.Eventually(t, 30*time.Second, "the sleeping jobs to start", func() bool {
		return r.Client.HExists(ctx, runs, "sleep-0").Val() && r.Client.HExists(ctx, runs, "sleep-1").Val()
	})

	testenv.Eventually(t, 30*time.Second, "the dispatcher to report both workers", func() bool {
		s, ok := statusOf(ctx, cfg)
		return ok && len(s.Workers) == 2
	})

	var out bytes.Buffer
	if err := run(ctx, []string{"status", "--config", cfg}, &out, os.Stderr); err != nil {
		t.Fatal(err)
	}
	got := mask(out.String())
	golden := filepath.Join("testdata", "status.golden")
	if *update {
		os.WriteFile(golden, []byte(got), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("kqueue status:\n%s\nwant:\n%s", got, want)
	}

	var js bytes.Buffer
	if err := run(ctx, []string{"status", "--config", cfg, "--json"}, &js, os.Stderr); err != nil {
		t.Fatal(err)
	}
	var s struct {
		Running []struct {
			JobName string `json:"job_name"`
		} `json:"running"`
	}
	if err := json.Unmarshal(js.Bytes(), &s); err != nil || len(s.Running) != 2 {
		t.Errorf("status --json: %v %s", err, js.String())
	}
	cancel()
	if _, err := wait(); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"status", "--config", cfg}, &out, os.Stderr); err == nil || !strings.Contains(err.Error(), "is not running") {
		t.Errorf("status of a stopped instance: %v", err)
	}
}

var masks = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`), "<uuid>"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`), "<time>"},
	{regexp.MustCompile(`(?m)^\d+(\.\d+)?m?s `), "<age> "},
	// Workers: which one ran which job, their memory and age vary.
	{regexp.MustCompile(`(?m)^PID +STATE +JOBS +MEMORY +AGE$`), "PID STATE JOBS MEMORY AGE"},
	// A queue's wait grows by the second.
	{regexp.MustCompile(`(?m)^(\S+ +\d+ +\d+ +\d+ +)\d+(\.\d+)?m?s$`), "${1}<wait>"},
	{regexp.MustCompile(`(?m)^\d+ +(busy|idle) +\d+ +\S+ +\S+$`), "<pid> <state> <jobs> <memory> <age>"},
}

func mask(s string) string {
	for _, m := range masks {
		s = m.re.ReplaceAllString(s, m.with)
	}
	return s
}

// [metrics] listen serves Prometheus metrics: jobs by outcome, durations,
// queue depths.
func TestMetrics(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	app.Env["LOG_CHANNEL"] = "null"
	addr := freeAddr(t)
	cfg := app.Config(t, 1, fmt.Sprintf("[metrics]\nlisten = %q\n", addr))
	app.Artisan(t, "kq:dispatch", "record", "--count=3")
	app.Artisan(t, "kq:dispatch", "status")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	wait := background(t, ctx, "run", "--config", cfg)
	runs := testenv.Prefix + "kqtest:runs"
	testenv.Eventually(t, 30*time.Second, "jobs to run", func() bool { return r.Client.HLen(ctx, runs).Val() >= 4 })
	body := scrapeUntil(t, addr, "the jobs counted", func(body string) bool {
		return strings.Contains(body, `kqueue_jobs_total{job="App\\Jobs\\Record",outcome="done",queue="default"} 3`) &&
			strings.Contains(body, `kqueue_jobs_total{job="App\\Jobs\\FailsManually",outcome="failed",queue="default"} 1`)
	})
	for _, want := range []string{
		`kqueue_job_duration_seconds_count{job="App\\Jobs\\Record",queue="default"} 3`,
		`kqueue_job_memory_peak_bytes{job="App\\Jobs\\Record",queue="default"}`,
		`kqueue_queue_wait_seconds{queue="default"}`,
		`kqueue_queue_wait_alert{queue="default"} 0`,
		`kqueue_queue_alert_wait_seconds{queue="default"} 60`,
		`kqueue_pool_target_workers 1`,
		`kqueue_pool_max_workers 1`,
		`kqueue_store_unreachable_seconds 0`,
		`kqueue_queue_jobs{queue="default",state="ready"}`,
		`kqueue_running_jobs`,
		`kqueue_pool_workers{state="busy"}`,
		`kqueue_pool_workers{state="idle"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s:\n%s", want, body)
		}
	}
	cancel()
	if _, err := wait(); err != nil {
		t.Fatal(err)
	}
}

// freeAddr is a loopback address nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// scrapeUntil reads /metrics at addr until ok accepts it, and returns it.
func scrapeUntil(t *testing.T, addr, what string, ok func(body string) bool) string {
	t.Helper()
	var body string
	testenv.Eventually(t, 30*time.Second, what+" in the metrics", func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return ok(body)
	})
	return body
}
