package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
)

// BenchmarkCPUPerJob measures the CPU each process spends per no-op job —
// kqueue's daemon (poller and dispatcher in one process), Redis, the PHP
// workers — for kqueue and for queue:work with as many PHP processes:
// the daemon's from its /proc/PID/stat once the queue is drained (before
// it stops), the PHP workers' the same way, Redis's from INFO cpu; and the
// PHP CPU of queue:work's loop without queue I/O, the work any runner's
// PHP does, which kqueue's total is compared with. As in
// BenchmarkNoopThroughput, a run of php=N is a round of every runner in
// turn (KQ_BENCH_RUNNERS limits it). With KQ_BENCH_CPUPROFILE=FILE,
// kqueue writes a Go CPU profile of each run to FILE.php1 and FILE.php2
// (`go tool pprof -top bin/kqueue FILE.php2`).
func BenchmarkCPUPerJob(b *testing.B) {
	app := benchApp(b)
	ctx := context.Background()
	for _, workers := range []int{1, 2} {
		cfg := app.Config(b, workers, "")
		runners := []struct {
			name string
			run  func(b *testing.B) map[string]time.Duration
		}{
			{"kqueue", func(b *testing.B) map[string]time.Duration {
				redis0 := redisCPU(b, app)
				args := []string{"run", "--config", cfg}
				if prof := os.Getenv("KQ_BENCH_CPUPROFILE"); prof != "" {
					args = append(args, "--cpuprofile", fmt.Sprintf("%s.php%d", prof, workers))
				}
				cmd := exec.Command(kqueueBin, args...)
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				waitDrained(b, app)
				daemon, php := kqueueCPU(cmd.Process.Pid)
				redis := redisCPU(b, app) - redis0
				cmd.Process.Signal(syscall.SIGTERM)
				cmd.Wait()
				return map[string]time.Duration{"daemon": daemon, "redis": redis, "php": php}
			}},
			{"queue:work", func(b *testing.B) map[string]time.Duration {
				redis0 := redisCPU(b, app)
				used := make([]time.Duration, workers)
				err := together(workers, func(i int) error {
					cmd := app.Command(ctx, "queue:work", "--stop-when-empty")
					err := cmd.Run()
					if cmd.ProcessState != nil {
						used[i] = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
					}
					return err
				})
				var php time.Duration
				for _, d := range used {
					php += d
				}
				if err != nil {
					b.Fatal(err)
				}
				return map[string]time.Duration{"redis": redisCPU(b, app) - redis0, "php": php}
			}},
			// The loop's PHP work alone (queue:work's loop without queue
			// I/O, see ceiling): what any runner's PHP must spend per job.
			{"php-loop", func(b *testing.B) map[string]time.Duration {
				php, err := ceiling(ctx, app, workers, "loop")
				if err != nil {
					b.Fatal(err)
				}
				return map[string]time.Duration{"php": php}
			}},
		}
		b.Run(fmt.Sprintf("php=%d", workers), func(b *testing.B) {
			for b.Loop() {
				for _, r := range runners {
					if !benchRunner(r.name) {
						continue
					}
					b.StopTimer()
					app.Redis.Client.FlushAll(ctx)
					app.Artisan(b, "kq:dispatch", "noop", fmt.Sprintf("--count=%d", jobs))
					used := r.run(b)
					reportCPU(b, fmt.Sprintf("cpu/%s/%d", r.name, workers), r.name+"-", jobs, used)
					b.StartTimer()
				}
			}
		})
	}
}

// waitDrained waits until the default queue holds no job, ready or
// reserved.
func waitDrained(b *testing.B, app *testenv.App) {
	ctx, q := context.Background(), testenv.Prefix+"queues:default"
	testenv.Eventually(b, 2*time.Minute, "the queue drained", func() bool {
		return app.Redis.Client.LLen(ctx, q).Val() == 0 && app.Redis.Client.ZCard(ctx, q+":reserved").Val() == 0
	})
}

// kqueueCPU is the CPU a kqueue run and its worker.php processes have
// spent so far.
func kqueueCPU(pid int) (daemon, workers time.Duration) {
	for _, child := range children(pid) {
		if strings.Contains(cmdline(child), "worker.php") {
			workers += procCPU(child)
		}
	}
	return procCPU(pid), workers
}

// reportCPU records the CPU each process spent per job of a run of n
// jobs, under name/PROCESS, and reports it as the metric
// PREFIXPROCESS-µs/job.
func reportCPU(b *testing.B, name, prefix string, n int, used map[string]time.Duration) {
	for what, d := range used {
		us := float64(d.Microseconds()) / float64(n)
		record(name+"/"+what, us)
		b.ReportMetric(us, prefix+what+"-µs/job")
	}
}

// procCPU is a process's own CPU time (user and system), from
// /proc/PID/stat.
func procCPU(pid int) time.Duration {
	// utime and stime are fields 14 and 15.
	f, err := testenv.ProcStat(pid)
	if err != nil || len(f) < 15-2 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[14-3], 10, 64)
	st, _ := strconv.ParseInt(f[15-3], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz
}

// redisCPU is the CPU Redis has used so far, from INFO cpu.
func redisCPU(b *testing.B, app *testenv.App) time.Duration {
	info := app.Redis.Client.Info(context.Background(), "cpu").Val()
	var total float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}
