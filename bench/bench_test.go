// Package bench measures kqueue against `php artisan queue:work` side by
// side, in one run, on the same machine, Redis and Laravel app. Run it with
// `make bench`; the numbers go into BENCHMARKS.md as ratios.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
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
)

// jobs is how many no-op jobs one measurement runs.
const jobs = 20000

// stampJobs is how many spaced-out jobs a latency measurement dispatches:
// its p99 is the 5th-longest wait (of 200 it would be the 2nd, one host
// hiccup away from any value).
const stampJobs = 500

var kqueueBin = func() string {
	if p := os.Getenv("KQUEUE_BIN"); p != "" {
		return p
	}
	return filepath.Join(testenv.Root(), "bin", "kqueue")
}()

// BenchmarkNoopThroughput runs no-op Laravel jobs through queue:work, the
// PHP-only ceiling, queue:work's loop without queue I/O and kqueue (as
// configured by default — a log line for each job that succeeded, up to
// 200 a second — and with [log] jobs_done_per_second = 0: a line for every
// one, which the loop does not write), each with
// the same number of PHP processes, and reports each one's jobs per
// second. A run of php=N is a round: every runner once, in turn, so that a
// slow spell of the host (here they come and go over seconds to minutes)
// falls on all of them alike, and -count 3 is three rounds.
// KQ_BENCH_RUNNERS (say "kqueue,php-loop") limits a round to those.
func BenchmarkNoopThroughput(b *testing.B) {
	app := benchApp(b)
	for _, workers := range []int{1, 2} {
		cfg := app.Config(b, workers, "")
		every := app.Config(b, workers, "[log]\njobs_done_per_second = 0\n")
		runners := []runner{
			{"queue:work", func(ctx context.Context) error {
				return together(workers, func(int) error {
					return app.Command(ctx, "queue:work", "--stop-when-empty").Run()
				})
			}},
			{"php-ceiling", func(ctx context.Context) error {
				_, err := ceiling(ctx, app, workers, "process")
				return err
			}},
			{"php-loop", func(ctx context.Context) error {
				_, err := ceiling(ctx, app, workers, "loop")
				return err
			}},
			{"kqueue", kqueueRun(cfg)},
			{"kqueue-every-line", kqueueRun(every)},
		}
		b.Run(fmt.Sprintf("php=%d", workers), func(b *testing.B) {
			for b.Loop() {
				for _, r := range runners {
					if !benchRunner(r.name) {
						continue
					}
					rate := measureOnce(b, app, fmt.Sprintf("throughput/%s/%d", r.name, workers), r.run)
					b.ReportMetric(rate, r.name+"-jobs/s")
				}
			}
		})
	}
}

// kqueueRun runs `kqueue run --stop-when-empty` on the config file cfg.
func kqueueRun(cfg string) func(context.Context) error {
	return func(ctx context.Context) error {
		cmd := exec.CommandContext(ctx, kqueueBin, "run", "--config", cfg, "--stop-when-empty")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
}

// runner is one way of running the jobs on the queue, for a round.
type runner struct {
	name string
	run  func(context.Context) error
}

// benchRunner reports whether KQ_BENCH_RUNNERS (comma-separated; empty:
// every one) names the runner.
func benchRunner(name string) bool {
	only := os.Getenv("KQ_BENCH_RUNNERS")
	return only == "" || slices.Contains(strings.Split(only, ","), name)
}

// ceiling runs the jobs on the queue through Worker::process in workers
// PHP processes at once, each its share, with no queue I/O (ceiling.php;
// mode "process" is the bare Worker::process, "loop" queue:work's loop
// without its Redis round trips).
// Like the runners it is timed from process start (PHP and Laravel boot
// included) to the last job done; reading the payloads first costs it a few
// milliseconds. It returns the CPU the PHP processes spent.
func ceiling(ctx context.Context, app *testenv.App, workers int, mode string) (time.Duration, error) {
	share := jobs / workers
	used := make([]time.Duration, workers)
	err := together(workers, func(i int) error {
		cmd := exec.CommandContext(ctx, "php", filepath.Join(testenv.Root(), "bench", "ceiling.php"), app.Path,
			filepath.Join(testenv.Root(), "exec", "php", "job.php"), strconv.Itoa(i*share), strconv.Itoa(share), mode)
		cmd.Env = app.Environ()
		out, err := cmd.CombinedOutput()
		if cmd.ProcessState != nil {
			used[i] = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		}
		if err != nil {
			return fmt.Errorf("ceiling.php: %v: %s", err, out)
		}
		return nil
	})
	// What a runner would have taken off the queue.
	app.Redis.Client.Del(ctx, testenv.Prefix+"queues:default")
	var cpu time.Duration
	for _, d := range used {
		cpu += d
	}
	return cpu, err
}

// together runs n at once, run(0) … run(n-1), and joins their errors.
func together(n int, run func(i int) error) error {
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = run(i)
		}()
	}
	wg.Wait()
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
	laravel = strings.TrimSpace(app.Artisan(b, "--version"))
	return app
}

// measure dispatches the jobs (untimed), then times one runner draining
// them.
func measure(b *testing.B, app *testenv.App, name string, drain func(context.Context) error) {
	measureOn(b, app, nil, jobs, name, drain)
}

// measureOn is measure of n jobs, on the app's database queue db (nil:
// on Redis).
func measureOn(b *testing.B, app *testenv.App, db *testenv.DB, n int, name string, drain func(context.Context) error) {
	left := redisLeft(app)
	if db != nil {
		left = func() int64 { return int64(db.Count(b, "SELECT COUNT(*) FROM jobs")) }
	}
	measureLeft(b, app, left, db != nil, n, name, func() {
		app.Redis.Client.FlushAll(context.Background())
		if db != nil {
			// What a runner before left (a row it reserved and died on)
			// would wait out retry_after in this run.
			db.SQL.ExecContext(context.Background(), "DELETE FROM jobs")
		}
	}, drain)
}

// measureLeft dispatches n jobs (after reset, untimed) and times drain on
// a queue that holds left() jobs; a job left behind fails the run unless
// tolerated: then the rate counts what was drained.
func measureLeft(b *testing.B, app *testenv.App, left func() int64, tolerate bool, n int, name string, reset func(), drain func(context.Context) error) {
	var total time.Duration
	drained := 0
	for b.Loop() {
		d, k := drainOnce(b, app, left, tolerate, n, name, reset, drain)
		total += d
		drained += k
	}
	rate := float64(drained) / total.Seconds()
	b.ReportMetric(rate, "jobs/s")
	record(name, rate)
}

// measureOnce is measure for one run inside a benchmark's loop (a round
// of runners): it records the rate under name and returns it.
func measureOnce(b *testing.B, app *testenv.App, name string, drain func(context.Context) error) float64 {
	d, drained := drainOnce(b, app, redisLeft(app), false, jobs, name, func() { app.Redis.Client.FlushAll(context.Background()) }, drain)
	rate := float64(drained) / d.Seconds()
	record(name, rate)
	return rate
}

// redisLeft is how many jobs the app's default Redis queue holds.
func redisLeft(app *testenv.App) func() int64 {
	return func() int64 {
		return app.Redis.Client.LLen(context.Background(), testenv.Prefix+"queues:default").Val()
	}
}

// drainOnce dispatches n jobs (after reset, untimed), times drain, and
// returns how long it took and how many jobs it drained (see measureLeft).
func drainOnce(b *testing.B, app *testenv.App, left func() int64, tolerate bool, n int, name string, reset func(), drain func(context.Context) error) (time.Duration, int) {
	b.StopTimer()
	reset()
	app.Artisan(b, "kq:dispatch", "noop", fmt.Sprintf("--count=%d", n))
	b.StartTimer()
	start := time.Now()
	if err := drain(context.Background()); err != nil {
		b.Fatal(err)
	}
	d := time.Since(start)
	b.StopTimer()
	defer b.StartTimer()
	switch k := int(left()); {
	case k != 0 && !tolerate:
		b.Fatalf("%s: %d jobs left", name, k)
	case k != 0:
		// queue:work --stop-when-empty on SQLite with two processes
		// can stop with a job left: one finds the table locked and
		// takes it for empty. The rate counts what was drained.
		b.Logf("%s stopped with %d jobs left", name, k)
		return d, n - k
	}
	return d, n
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
			record("isolation/"+tc.name, float64(p50.Microseconds())/1000)
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
		record("isolation/queue:work--once", float64(p50.Microseconds())/1000)
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
// the start of its handle() when it lands on an idle queue: stampJobs jobs, 20 ms
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
			pickup(b, app, r.cmd, "pickup/"+strings.TrimPrefix(r.name, "runner="))
		})
	}
}

// pickup measures, on each of b's rounds, one runner's p50 and p99 waits
// for stampJobs spaced-out jobs on an idle queue (stamps), and reports and
// records the last as name/p50 and name/p99, in ms.
func pickup(b *testing.B, app *testenv.App, runner func(context.Context) *exec.Cmd, name string) {
	var p50, p99 float64
	for b.Loop() {
		app.Redis.Client.FlushAll(context.Background())
		p50, p99 = stamps(b, app, runner, nil, "")
	}
	b.ReportMetric(p50*1000, "p50_ms")
	b.ReportMetric(p99*1000, "p99_ms")
	record(name+"/p50", p50*1000)
	record(name+"/p99", p99*1000)
}

// stamps runs one runner; once it has run a first Stamp job (and busy
// says it is busy, if given), the app dispatches stampJobs Stamp jobs 20 ms apart
// onto queue; it returns the p50 and p99 of their waits, in seconds.
func stamps(b *testing.B, app *testenv.App, runner func(context.Context) *exec.Cmd, busy func() bool, queue string) (p50, p99 float64) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rdb := app.Redis.Client
	key := testenv.Prefix + "kqtest:pickup"
	cmd := runner(ctx)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cancel(); cmd.Wait() }()
	on := "--queue=" + queue
	app.Artisan(b, "kq:stamp", "--count=1", "--gap=0", on)
	testenv.Eventually(b, time.Minute, "the first stamp", func() bool { return rdb.LLen(ctx, key).Val() == 1 })
	if busy != nil {
		testenv.Eventually(b, time.Minute, "the workers busy", busy)
	}
	rdb.Del(ctx, key)
	app.Artisan(b, "kq:stamp", fmt.Sprintf("--count=%d", stampJobs), "--gap=20", on)
	testenv.Eventually(b, time.Minute, "every stamp", func() bool { return rdb.LLen(ctx, key).Val() == stampJobs })
	var waits []float64
	for _, s := range rdb.LRange(ctx, key, 0, -1).Val() {
		f, _ := strconv.ParseFloat(s, 64)
		waits = append(waits, f)
	}
	slices.Sort(waits)
	return waits[len(waits)/2], waits[len(waits)*99/100]
}

// BenchmarkLatencyUnderLoad measures how long short jobs on a high-priority
// queue wait while slow jobs keep the pool busy: 200 ms jobs fill "default",
// stampJobs Stamp jobs go to "high", 20 ms apart, two PHP processes each way.
// queue:work takes "high" first whenever it looks, but both its processes
// may be inside a slow job; kqueue caps "default" at one running job
// (max_running), so a worker is always free for "high".
func BenchmarkLatencyUnderLoad(b *testing.B) {
	app := benchApp(b)
	cfg := app.Config(b, 2, "[[queue]]\nname = \"high\"\n[[queue]]\nname = \"default\"\nmax_running = 1\n")
	rdb := app.Redis.Client
	backlog := func() int64 { return rdb.LLen(context.Background(), testenv.Prefix+"queues:default").Val() }
	for _, r := range []struct {
		name string
		cmd  func(ctx context.Context) *exec.Cmd
	}{
		{"queue:work", func(ctx context.Context) *exec.Cmd {
			// Two processes under a shell that passes SIGTERM on.
			cmd := exec.CommandContext(ctx, "sh", "-c", `php artisan queue:work --queue=high,default & a=$!; php artisan queue:work --queue=high,default & b=$!; trap 'kill -TERM $a $b; wait $a $b; exit 0' TERM; wait`)
			cmd.Dir, cmd.Env = app.Path, app.Environ()
			return cmd
		}},
		{"kqueue", func(ctx context.Context) *exec.Cmd {
			return exec.CommandContext(ctx, kqueueBin, "run", "--config", cfg)
		}},
	} {
		b.Run("runner="+r.name, func(b *testing.B) {
			var p50, p99 float64
			for b.Loop() {
				rdb.FlushAll(context.Background())
				// 60 s of slow work: more than the stamps take.
				app.Artisan(b, "kq:dispatch", "busy", "--count=300")
				full := backlog()
				// Busy: both processes (queue:work) or the capped worker
				// (kqueue) have taken slow jobs.
				taken := int64(2)
				if r.name == "kqueue" {
					taken = 1
				}
				p50, p99 = stamps(b, app, r.cmd, func() bool { return backlog() <= full-taken }, "high")
			}
			b.ReportMetric(p50*1000, "p50_ms")
			b.ReportMetric(p99*1000, "p99_ms")
			record("load/"+r.name+"/p50", p50*1000)
			record("load/"+r.name+"/p99", p99*1000)
		})
	}
}

// BenchmarkMemory measures the resident memory of kqueue's two processes
// as systemd runs them — `kqueue dispatcher` started by its socket, `kqueue
// poller` — through 20,000 no-op jobs with 2 workers (peaks, VmHWM), then
// idle, then after pool.idle_exit let the dispatcher and its PHP workers go.
func BenchmarkMemory(b *testing.B) {
	app := benchApp(b)
	cfg := app.Config(b, 2, "")
	raw, err := os.ReadFile(cfg)
	if err != nil {
		b.Fatal(err)
	}
	const idleExit = 3 * time.Second
	raw = []byte(strings.Replace(string(raw), "[pool]\n", fmt.Sprintf("[pool]\nidle_exit = \"%s\"\n", idleExit), 1))
	if err := os.WriteFile(cfg, raw, 0o644); err != nil {
		b.Fatal(err)
	}
	sock := filepath.Join(filepath.Dir(cfg), "kqueue.sock")
	rdb := app.Redis.Client
	ctx := context.Background()
	for b.Loop() {
		rdb.FlushAll(ctx)
		app.Artisan(b, "kq:dispatch", "noop", fmt.Sprintf("--count=%d", jobs))
		os.Remove(sock)
		ln, err := net.Listen("unix", sock)
		if err != nil {
			b.Fatal(err)
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(false) // the dispatcher has it
		lf, err := ln.(*net.UnixListener).File()
		ln.Close()
		if err != nil {
			b.Fatal(err)
		}
		// Socket activation as systemd does it: the listener on fd 3,
		// LISTEN_PID the dispatcher's own pid (the shell execs it).
		disp := exec.Command("sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" dispatcher --config "$1"`, kqueueBin, cfg)
		disp.ExtraFiles = []*os.File{lf}
		disp.Stdout, disp.Stderr = io.Discard, io.Discard
		if err := disp.Start(); err != nil {
			b.Fatal(err)
		}
		lf.Close()
		dispDone := make(chan error, 1)
		go func() { dispDone <- disp.Wait() }()
		poll := exec.Command(kqueueBin, "poller", "--config", cfg)
		poll.Stdout, poll.Stderr = io.Discard, io.Discard
		if err := poll.Start(); err != nil {
			b.Fatal(err)
		}
		q := testenv.Prefix + "queues:default"
		testenv.Eventually(b, time.Minute, "the queue drained", func() bool { return rdb.LLen(ctx, q).Val() == 0 && rdb.ZCard(ctx, q+":reserved").Val() == 0 })

		var php []float64
		for _, pid := range children(disp.Process.Pid) {
			if strings.Contains(cmdline(pid), "worker.php") {
				php = append(php, status(pid, "VmRSS"))
			}
		}
		pollLoad, dispLoad := status(poll.Process.Pid, "VmHWM"), status(disp.Process.Pid, "VmHWM")
		pollIdle := status(poll.Process.Pid, "VmRSS")
		select {
		case <-dispDone:
		case <-time.After(idleExit + 30*time.Second):
			b.Fatal("the dispatcher did not exit after pool.idle_exit")
		}
		idle := status(poll.Process.Pid, "VmRSS")
		poll.Process.Signal(syscall.SIGTERM)
		poll.Wait()

		record("memory/poller-load", pollLoad)
		record("memory/dispatcher-load", dispLoad)
		record("memory/go-load", pollLoad+dispLoad)
		record("memory/poller-idle", pollIdle)
		record("memory/idle-exit", idle)
		if len(php) > 0 {
			record("memory/php-worker", php[0])
		}
		b.ReportMetric(pollLoad+dispLoad, "go-load-MB")
		b.ReportMetric(idle, "idle-exit-MB")
	}
}

// children lists a process's children (each thread has its own: a Go
// program starts processes from any of its threads).
func children(pid int) []int {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, file := range files {
		raw, _ := os.ReadFile(file)
		for _, f := range strings.Fields(string(raw)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

func cmdline(pid int) string {
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return string(raw)
}

// status reads a size field of /proc/PID/status, in MB.
func status(pid int, field string) float64 {
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(v), "%f", &kb)
			return kb / 1024
		}
	}
	return 0
}
