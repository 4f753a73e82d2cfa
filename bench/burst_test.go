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

// BenchmarkBurstDrain times the drain of a burst of 20,000 no-op jobs by
// kqueue with a pool that scales (min_workers 1, max_workers 4), by kqueue
// with a fixed pool of 4, and by four `queue:work` processes, each from
// its start to its last job, with the peak memory of all its processes
// together (sampled every 20 ms).
func BenchmarkBurstDrain(b *testing.B) {
	app := benchApp(b)
	scaling := app.Config(b, 0, "[pool]\nmin_workers = 1\nmax_workers = 4\n")
	scalingCfg := copyConfig(b, scaling, "kqueue-scaling.toml")
	fixedCfg := app.Config(b, 4, "")
	for _, r := range []struct {
		name  string
		start func(ctx context.Context) []*exec.Cmd
	}{
		{"queue:work-x4", func(ctx context.Context) []*exec.Cmd {
			var cmds []*exec.Cmd
			for range 4 {
				cmds = append(cmds, app.Command(ctx, "queue:work", "--stop-when-empty"))
			}
			return cmds
		}},
		{"kqueue-fixed-4", func(ctx context.Context) []*exec.Cmd {
			return []*exec.Cmd{exec.CommandContext(ctx, kqueueBin, "run", "--config", fixedCfg, "--stop-when-empty")}
		}},
		{"kqueue-scaling-1-4", func(ctx context.Context) []*exec.Cmd {
			return []*exec.Cmd{exec.CommandContext(ctx, kqueueBin, "run", "--config", scalingCfg, "--stop-when-empty")}
		}},
	} {
		b.Run("runner="+r.name, func(b *testing.B) {
			ctx := context.Background()
			for b.Loop() {
				b.StopTimer()
				app.Redis.Client.FlushAll(ctx)
				app.Artisan(b, "kq:dispatch", "noop", fmt.Sprintf("--count=%d", jobs))
				b.StartTimer()
				start := time.Now()
				cmds := r.start(ctx)
				for _, c := range cmds {
					if err := c.Start(); err != nil {
						b.Fatal(err)
					}
				}
				peak := sampleTree(cmds)
				for _, c := range cmds {
					if err := c.Wait(); err != nil {
						b.Fatalf("%s: %v", r.name, err)
					}
				}
				took := time.Since(start)
				b.StopTimer()
				if k := app.Redis.Client.LLen(ctx, testenv.Prefix+"queues:default").Val(); k != 0 {
					b.Fatalf("%d jobs left", k)
				}
				mb := peak()
				record("burst/"+r.name+"/seconds", took.Seconds())
				record("burst/"+r.name+"/peak-mb", mb)
				b.ReportMetric(took.Seconds(), "s")
				b.ReportMetric(mb, "peak-MB")
				b.StartTimer()
			}
		})
	}
}

// sampleTree samples, until peak is called, the resident memory of the
// processes of cmds and all their descendants together; peak stops and
// returns the most seen, in MB.
func sampleTree(cmds []*exec.Cmd) (peak func() float64) {
	stop := make(chan struct{})
	var (
		wg  sync.WaitGroup
		top float64
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			var sum float64
			for _, c := range cmds {
				if c.Process != nil {
					sum += treeRSS(c.Process.Pid)
				}
			}
			top = max(top, sum)
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() float64 {
		close(stop)
		wg.Wait()
		return top
	}
}

// treeRSS is the resident memory of pid and its descendants, in MB.
func treeRSS(pid int) float64 {
	sum := status(pid, "VmRSS")
	for _, c := range children(pid) {
		sum += treeRSS(c)
	}
	return sum
}

// copyConfig copies the config at path beside it as name: app.Config
// writes one file, which the next call overwrites.
func copyConfig(b *testing.B, path, name string) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(filepath.Dir(path), name)
	if err := os.WriteFile(out, raw, 0o644); err != nil {
		b.Fatal(err)
	}
	return out
}
