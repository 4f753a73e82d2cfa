package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
)

// ceilingJobs is how many no-op jobs a run of the daemon's ceiling takes:
// at tens of thousands a second, enough for a few seconds.
const ceilingJobs = 100000

// BenchmarkDaemonCeiling is how many no-op jobs a second one daemon can
// feed when PHP is not the limit: kqueue run, on real Redis, with its
// workers replaced by bench/responder, which answers every job at once.
// GOMAXPROCS and the number of workers vary; the rate counts from the
// first job taken to the queue drained (the boot is left out), and the
// CPU each process spent per job is reported beside it.
func BenchmarkDaemonCeiling(b *testing.B) {
	app := benchApp(b)
	ctx := context.Background()
	responder := filepath.Join(b.TempDir(), "php")
	if out, err := exec.Command("go", "build", "-o", responder, "./responder").CombinedOutput(); err != nil {
		b.Fatalf("build the responder: %v\n%s", err, out)
	}
	for _, procs := range []int{1, 2} {
		for _, workers := range []int{1, 2, 4} {
			// The responder as the app's php: in [app], which Config writes
			// first.
			cfg := app.Config(b, workers, "")
			raw, err := os.ReadFile(cfg)
			if err != nil || !strings.HasPrefix(string(raw), "[app]\n") {
				b.Fatalf("%s: %v, does not begin with [app]", cfg, err)
			}
			if err := os.WriteFile(cfg, []byte(fmt.Sprintf("[app]\nphp = %q\n", responder)+string(raw[len("[app]\n"):])), 0o644); err != nil {
				b.Fatal(err)
			}
			name := fmt.Sprintf("ceiling/%d/%d", procs, workers)
			b.Run(fmt.Sprintf("gomaxprocs=%d/workers=%d", procs, workers), func(b *testing.B) {
				for b.Loop() {
					b.StopTimer()
					app.Redis.Client.FlushAll(ctx)
					app.Artisan(b, "kq:dispatch", "noop", fmt.Sprintf("--count=%d", ceilingJobs))
					redis0 := redisCPU(b, app)
					cmd := exec.Command(kqueueBin, "run", "--config", cfg)
					cmd.Env = append(os.Environ(), fmt.Sprintf("GOMAXPROCS=%d", procs))
					if err := cmd.Start(); err != nil {
						b.Fatal(err)
					}
					q := testenv.Prefix + "queues:default"
					var start time.Time
					testenv.Eventually(b, 2*time.Minute, "the first job taken", func() bool {
						start = time.Now()
						return app.Redis.Client.LLen(ctx, q).Val() < ceilingJobs
					})
					waitDrained(b, app)
					took := time.Since(start)
					daemon, answers := kqueueCPU(cmd.Process.Pid)
					redis := redisCPU(b, app) - redis0
					cmd.Process.Signal(syscall.SIGTERM)
					cmd.Wait()
					rate := ceilingJobs / took.Seconds()
					record(name+"/rate", rate)
					b.ReportMetric(rate, "jobs/s")
					reportCPU(b, name, "", ceilingJobs, map[string]time.Duration{"daemon": daemon, "redis": redis, "responder": answers})
					b.StartTimer()
				}
			})
		}
	}
}
