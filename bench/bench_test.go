// Package bench measures kqueue against `php artisan queue:work` side by
// side, in one run, on the same machine, Redis and Laravel app. Run it with
// `make bench`; the numbers go into BENCHMARKS.md as ratios.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// jobs is how many no-op jobs one measurement runs.
const jobs = 20000

var kqueueBin = func() string {
	if p := os.Getenv("KQUEUE_BIN"); p != "" {
		return p
	}
	return filepath.Join(testenv.Root(), "bin", "kqueue")
}()

// BenchmarkNoopThroughput runs no-op Laravel jobs through queue:work and
// through kqueue run with the same number of PHP processes, and reports
// jobs per second.
func BenchmarkNoopThroughput(b *testing.B) {
	app := benchApp(b)

	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("runner=queue:work/php=%d", workers), func(b *testing.B) {
			measure(b, app, func(ctx context.Context) error {
				var wg sync.WaitGroup
				errs := make([]error, workers)
				for i := range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						errs[i] = app.Command(ctx, "queue:work", "--stop-when-empty").Run()
					}()
				}
				wg.Wait()
				for _, err := range errs {
					if err != nil {
						return err
					}
				}
				return nil
			})
		})
		b.Run(fmt.Sprintf("runner=php-ceiling/php=%d", workers), func(b *testing.B) {
			measure(b, app, func(ctx context.Context) error {
				return ceiling(ctx, app, workers)
			})
		})
		b.Run(fmt.Sprintf("runner=kqueue/php=%d", workers), func(b *testing.B) {
			cfg := app.Config(b, workers, "")
			measure(b, app, func(ctx context.Context) error {
				cmd := exec.CommandContext(ctx, kqueueBin, "run", "--config", cfg, "--stop-when-empty")
				if out, err := cmd.CombinedOutput(); err != nil {
					return fmt.Errorf("%v: %s", err, out)
				}
				return nil
			})
		})
	}
}

// ceiling runs the jobs on the queue through Worker::process in workers
// PHP processes at once, each its share, with no queue I/O (ceiling.php).
// Like the runners it is timed from process start (PHP and Laravel boot
// included) to the last job done; reading the payloads first costs it a few
// milliseconds.
func ceiling(ctx context.Context, app *testenv.App, workers int) error {
	share := jobs / workers
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.CommandContext(ctx, "php", filepath.Join(testenv.Root(), "bench", "ceiling.php"), app.Path,
				filepath.Join(testenv.Root(), "exec", "php", "job.php"), strconv.Itoa(i*share), strconv.Itoa(share))
			cmd.Env = app.Environ()
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("ceiling.php: %v: %s", err, out)
			}
		}()
	}
	wg.Wait()
	// What a runner would have taken off the queue.
	app.Redis.Client.Del(ctx, testenv.Prefix+"queues:default")
	return errors.Join(errs...)
}

// benchApp is the fixture app on a private Redis, quiet, for timing.
func benchApp(b *testing.B) *testenv.App {
	if _, err := os.Stat(kqueueBin); err != nil {
		b.Fatalf("%s: build it first (make build)", kqueueBin)
	}
	app := testenv.NewApp(b, testenv.StartRedis(b))
	app.Env["KQ_PROBE"] = "0"
	app.Env["LOG_CHANNEL"] = "null"
	return app
}

// measure dispatches the jobs (untimed), then times one runner draining
// them.
func measure(b *testing.B, app *testenv.App, drain func(context.Context) error) {
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		app.Redis.Client.FlushAll(context.Background())
		app.Artisan(b, "kq:dispatch", "noop", fmt.Sprintf("--count=%d", jobs))
		b.StartTimer()
		start := time.Now()
		if err := drain(context.Background()); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		b.StopTimer()
		if n := app.Redis.Client.LLen(context.Background(), testenv.Prefix+"queues:default").Val(); n != 0 {
			b.Fatalf("%d jobs left", n)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(jobs*b.N)/total.Seconds(), "jobs/s")
}

// BenchmarkIsolationOverhead measures what one no-op job costs, p50, run
// inline in the warm pool, isolated by forking the booted template,
// isolated in a fresh process, and through `php artisan queue:work --once`
// (a fresh Laravel per job, no isolation).
func BenchmarkIsolationOverhead(b *testing.B) {
	app := benchApp(b)
	const n = 60
	isolate := "[isolation]\nmax_concurrent = 1\nfresh = %v\n[[rule]]\nclass = \"App\\\\Jobs\\\\Noop\"\nstrategy = \"isolated\"\n"
	for _, tc := range []struct{ name, extra string }{
		{"inline", ""},
		{"isolated-fork", fmt.Sprintf(isolate, false)},
		{"isolated-fresh", fmt.Sprintf(isolate, true)},
	} {
		b.Run("path="+tc.name, func(b *testing.B) {
			cfg := app.Config(b, 1, tc.extra)
			var p50 time.Duration
			for b.Loop() {
				app.Redis.Client.FlushAll(context.Background())
				app.Artisan(b, "kq:dispatch", "noop", fmt.Sprintf("--count=%d", n))
				out, err := exec.Command(kqueueBin, "run", "--config", cfg, "--stop-when-empty", "--log-format", "json").CombinedOutput()
				if err != nil {
					b.Fatalf("%v: %s", err, out)
				}
				p50 = median(durations(b, out))
			}
			b.ReportMetric(float64(p50.Microseconds())/1000, "ms/job-p50")
		})
	}
	b.Run("path=queue:work--once", func(b *testing.B) {
		var p50 time.Duration
		for b.Loop() {
			app.Redis.Client.FlushAll(context.Background())
			app.Artisan(b, "kq:dispatch", "noop", "--count=20")
			var took []time.Duration
			for range 20 {
				start := time.Now()
				if err := app.Command(context.Background(), "queue:work", "--once").Run(); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
			}
			p50 = median(took)
		}
		b.ReportMetric(float64(p50.Microseconds())/1000, "ms/job-p50")
	})
}

// durations reads the job durations from kqueue's JSON log.
func durations(b *testing.B, log []byte) []time.Duration {
	var ds []time.Duration
	for _, line := range strings.Split(string(log), "\n") {
		var e struct {
			Outcome  string `json:"outcome"`
			Duration int64  `json:"duration"`
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Outcome == "done" {
			ds = append(ds, time.Duration(e.Duration))
		}
	}
	if len(ds) == 0 {
		b.Fatalf("no job durations in the log:\n%s", log)
	}
	return ds
}

func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// BenchmarkPickupLatency measures how long a job waits from dispatch() to
// the start of its handle() when it lands on an idle queue: 200 jobs, 20 ms
// apart, p50 and p99, for queue:work with its default options (it sleeps 3 s
// when the queue is empty), queue:work with block_for = 5 (a blocking pop),
// and kqueue.
func BenchmarkPickupLatency(b *testing.B) {
	app := benchApp(b)
	cfg := app.Config(b, 1, "")
	for _, r := range []struct {
		name string
		env  map[string]string
		cmd  func(ctx context.Context) *exec.Cmd
	}{
		{"runner=queue:work", nil, func(ctx context.Context) *exec.Cmd { return app.Command(ctx, "queue:work") }},
		{"runner=queue:work_block_for=5", map[string]string{"REDIS_BLOCK_FOR": "5"}, func(ctx context.Context) *exec.Cmd { return app.Command(ctx, "queue:work") }},
		{"runner=kqueue", nil, func(ctx context.Context) *exec.Cmd {
			return exec.CommandContext(ctx, kqueueBin, "run", "--config", cfg)
		}},
	} {
		b.Run(r.name, func(b *testing.B) {
			for k, v := range r.env {
				app.Env[k] = v
				defer delete(app.Env, k)
			}
			var p50, p99 float64
			for b.Loop() {
				p50, p99 = pickup(b, app, r.cmd)
			}
			b.ReportMetric(p50*1000, "p50_ms")
			b.ReportMetric(p99*1000, "p99_ms")
		})
	}
}

// pickup runs one runner, waits until it has taken a first job, then has
// the app dispatch 200 spaced-out jobs and returns the p50 and p99 waits.
func pickup(b *testing.B, app *testenv.App, runner func(context.Context) *exec.Cmd) (p50, p99 float64) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rdb := app.Redis.Client
	key := testenv.Prefix + "kqtest:pickup"
	rdb.FlushAll(ctx)
	cmd := runner(ctx)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cancel(); cmd.Wait() }()
	app.Artisan(b, "kq:stamp", "--count=1", "--gap=0")
	wait(b, func() bool { return rdb.LLen(ctx, key).Val() == 1 }, rdb)
	rdb.Del(ctx, key)
	app.Artisan(b, "kq:stamp", "--count=200", "--gap=20")
	wait(b, func() bool { return rdb.LLen(ctx, key).Val() == 200 }, rdb)
	var waits []float64
	for _, s := range rdb.LRange(ctx, key, 0, -1).Val() {
		f, _ := strconv.ParseFloat(s, 64)
		waits = append(waits, f)
	}
	slices.Sort(waits)
	return waits[len(waits)/2], waits[len(waits)*99/100]
}

// wait polls cond for up to a minute.
func wait(b *testing.B, cond func() bool, rdb interface {
	Keys(context.Context, string) *redis.StringSliceCmd
}) {
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out; keys: %v", rdb.Keys(context.Background(), "*").Val())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
