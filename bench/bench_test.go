// Package bench measures kqueue against `php artisan queue:work` side by
// side, in one run, on the same machine, Redis and Laravel app. Run it with
// `make bench`; the numbers go into BENCHMARKS.md as ratios.
package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
)

// jobs is how many no-op jobs one measurement runs.
const jobs = 10000

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
	if _, err := os.Stat(kqueueBin); err != nil {
		b.Fatalf("%s: build it first (make build)", kqueueBin)
	}
	r := testenv.StartRedis(b)
	app := testenv.NewApp(b, r)
	app.Env["KQ_PROBE"] = "0"
	app.Env["LOG_CHANNEL"] = "null"

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
