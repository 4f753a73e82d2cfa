package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
)

// results collects every measurement of the run, by name, for the table
// `make bench` writes into BENCHMARKS.md (KQ_BENCH_WRITE=1).
var results = struct {
	sync.Mutex
	m map[string][]float64
}{m: map[string][]float64{}}

// record keeps one measurement.
func record(name string, v float64) {
	results.Lock()
	defer results.Unlock()
	results.m[name] = append(results.m[name], v)
}

// med is the median of a measurement's runs, and how many there were.
func med(name string) (float64, int) {
	results.Lock()
	defer results.Unlock()
	vs := slices.Clone(results.m[name])
	if len(vs) == 0 {
		return 0, 0
	}
	slices.Sort(vs)
	return vs[len(vs)/2], len(vs)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 && os.Getenv("KQ_BENCH_WRITE") == "1" {
		if err := writeReport(filepath.Join(testenv.Root(), "BENCHMARKS.md")); err != nil {
			fmt.Fprintln(os.Stderr, "write BENCHMARKS.md:", err)
			code = 1
		}
	}
	os.Exit(code)
}

const (
	reportBegin = "<!-- make bench: begin -->"
	reportEnd   = "<!-- make bench: end -->"
)

// writeReport puts the run's table between the markers in BENCHMARKS.md and
// prints it.
func writeReport(path string) error {
	table := report()
	fmt.Print(table)
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	i, j := bytes.Index(old, []byte(reportBegin)), bytes.Index(old, []byte(reportEnd))
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %q … %q section", path, reportBegin, reportEnd)
	}
	var out bytes.Buffer
	out.Write(old[:i+len(reportBegin)])
	out.WriteString("\n" + table)
	out.Write(old[j:])
	return os.WriteFile(path, out.Bytes(), 0o644)
}

// report is the run as markdown: the machine, the versions, then one table
// per measurement, with ratios.
func report() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("Measured %s by `make bench` on %s.\n\n", time.Now().UTC().Format("2006-01-02"), machine())

	n := func(name string) string {
		v, _ := med(name)
		if v == 0 {
			return "—"
		}
		return thousands(v)
	}
	ratio := func(a, b string) string {
		x, _ := med(a)
		y, _ := med(b)
		if x == 0 || y == 0 {
			return "—"
		}
		return fmt.Sprintf("**%.1f×**", x/y)
	}
	pct := func(a, b string) string {
		x, _ := med(a)
		y, _ := med(b)
		if x == 0 || y == 0 {
			return "—"
		}
		return fmt.Sprintf("**%.0f %%**", 100*x/y)
	}
	_, runs := med("throughput/kqueue/1")
	p("### No-op jobs per second (%d jobs, median of %d)\n\n", jobs, runs)
	p("| PHP processes | `queue:work` | kqueue | PHP-only ceiling | kqueue / `queue:work` | kqueue / ceiling |\n|---|---|---|---|---|---|\n")
	for _, w := range []string{"1", "2"} {
		qw, kq, ce := "throughput/queue:work/"+w, "throughput/kqueue/"+w, "throughput/php-ceiling/"+w
		p("| %s | %s | %s | %s | %s | %s |\n", w, n(qw), n(kq), n(ce), ratio(kq, qw), pct(kq, ce))
	}
	p("\nThe ceiling is `Worker::process` alone, on kqueue's job class (it decodes the payload once). " +
		"`queue:work`'s own loop without its Redis round trips — Laravel's `resetScope` before each job, " +
		"its `RedisJob` — for comparison:\n\n")
	p("| PHP processes | `queue:work`'s loop, no queue I/O | kqueue / that loop | kqueue with `[log] jobs_done_per_second = 0` | that / the loop |\n|---|---|---|---|---|\n")
	for _, w := range []string{"1", "2"} {
		kq, every, lo := "throughput/kqueue/"+w, "throughput/kqueue-every-line/"+w, "throughput/php-loop/"+w
		p("| %s | %s | %s | %s | %s |\n", w, n(lo), pct(kq, lo), n(every), pct(every, lo))
	}
	p("\nThe loop writes nothing per job; kqueue, by default, a log line for each job that succeeded, up to 200 a second, " +
		"then one a second with the count (with `[log] jobs_done_per_second = 0`, a line for every job).\n")

	ms := func(name string) string {
		v, _ := med(name)
		if v == 0 {
			return "—"
		}
		switch {
		case v >= 100:
			return fmt.Sprintf("%s ms", thousands(v))
		case v < 1:
			return fmt.Sprintf("%.2f ms", v)
		}
		return fmt.Sprintf("%.1f ms", v)
	}
	p("\n### Pickup latency on an idle queue (dispatch() to handle(), %d jobs 20 ms apart)\n\n", stampJobs)
	p("| runner | p50 | p99 |\n|---|---|---|\n")
	for _, r := range []struct{ label, name string }{
		{"`queue:work` (default: sleeps 3 s when idle)", "pickup/queue:work"},
		{"`queue:work` with `block_for = 5`", "pickup/queue:work_block_for=5"},
		{"kqueue", "pickup/kqueue"},
	} {
		p("| %s | %s | %s |\n", r.label, ms(r.name+"/p50"), ms(r.name+"/p99"))
	}

	p("\n### Laravel's `database` driver: no-op jobs per second (%d jobs from the `jobs` table)\n\n", dbJobs)
	p("| database | PHP processes | `queue:work` | kqueue | kqueue / `queue:work` |\n|---|---|---|---|---|\n")
	for _, d := range []struct{ label, driver string }{{"MariaDB", "mysql"}, {"PostgreSQL", "pgsql"}, {"SQLite", "sqlite"}} {
		for _, w := range []string{"1", "2"} {
			qw, kq := "db/"+d.driver+"/throughput/queue:work/"+w, "db/"+d.driver+"/throughput/kqueue/"+w
			p("| %s | %s | %s | %s | %s |\n", d.label, w, n(qw), n(kq), ratio(kq, qw))
		}
	}
	p("\n### Laravel's `database` driver: pickup latency on an idle queue (%d jobs 20 ms apart)\n\n", stampJobs)
	p("| database | `queue:work` p50 | `queue:work` p99 | kqueue p50 | kqueue p99 |\n|---|---|---|---|---|\n")
	for _, d := range []struct{ label, driver string }{{"MariaDB", "mysql"}, {"PostgreSQL", "pgsql"}, {"SQLite", "sqlite"}} {
		qw, kq := "db/"+d.driver+"/pickup/queue:work", "db/"+d.driver+"/pickup/kqueue"
		p("| %s | %s | %s | %s | %s |\n", d.label, ms(qw+"/p50"), ms(qw+"/p99"), ms(kq+"/p50"), ms(kq+"/p99"))
	}
	tr := "db/pgsql/pickup/kqueue-trigger"
	p("| PostgreSQL, with `kqueue trigger` | | | %s | %s |\n", ms(tr+"/p50"), ms(tr+"/p99"))

	p("\n### SQS: no-op jobs per second (%d jobs) and pickup latency, on the tests' SQS server (moto)\n\n", sqsJobs)
	p("`queue:work` runs Laravel's own `SqsQueue` and `SqsJob` through the test app's stand-in for the AWS SDK's client; the server, in Python, is the bottleneck of both runners.\n\n")
	p("| PHP processes | `queue:work` | kqueue | kqueue / `queue:work` |\n|---|---|---|---|\n")
	for _, w := range []string{"1", "2"} {
		qw, kq := "sqs/throughput/queue:work/"+w, "sqs/throughput/kqueue/"+w
		p("| %s | %s | %s | %s |\n", w, n(qw), n(kq), ratio(kq, qw))
	}
	p("\n| runner | pickup p50 | pickup p99 |\n|---|---|---|\n")
	p("| `queue:work` (sleeps 3 s when idle) | %s | %s |\n", ms("sqs/pickup/queue:work/p50"), ms("sqs/pickup/queue:work/p99"))
	p("| kqueue (long polls) | %s | %s |\n", ms("sqs/pickup/kqueue/p50"), ms("sqs/pickup/kqueue/p99"))

	p("\n### Latency under load (short jobs on `high` while 200 ms jobs on `default` keep 2 PHP processes busy)\n\n")
	p("| runner | p50 | p99 |\n|---|---|---|\n")
	for _, r := range []struct{ label, name string }{
		{"`queue:work --queue=high,default` ×2", "load/queue:work"},
		{"kqueue, 2 workers, `default` with `max_running = 1`", "load/kqueue"},
	} {
		p("| %s | %s | %s |\n", r.label, ms(r.name+"/p50"), ms(r.name+"/p99"))
	}

	p("\n### What one no-op job costs, p50\n\n| path | p50 per job | over inline |\n|---|---|---|\n")
	inline, _ := med("isolation/inline")
	for _, r := range []struct{ label, name string }{
		{"inline (warm pool)", "isolation/inline"},
		{"isolated, fork of a booted template", "isolation/isolated-fork"},
		{"isolated, fresh process", "isolation/isolated-fresh"},
		{"`queue:work --once` (no isolation)", "isolation/queue:work--once"},
	} {
		v, _ := med(r.name)
		over := "—"
		if v > 0 && r.name != "isolation/inline" {
			over = fmt.Sprintf("%.1f ms", v-inline)
		}
		p("| %s | %s | %s |\n", r.label, ms(r.name), over)
	}

	mb := func(name string) string {
		v, _ := med(name)
		if v == 0 {
			return "—"
		}
		return fmt.Sprintf("%.1f MB", v)
	}
	p("\n### Memory (resident, `kqueue poller` and `kqueue dispatcher` as two processes, 2 workers)\n\n| what | RSS |\n|---|---|\n")
	for _, r := range []struct{ label, name string }{
		{"poller, peak under load (VmHWM)", "memory/poller-load"},
		{"dispatcher, peak under load (VmHWM)", "memory/dispatcher-load"},
		{"poller + dispatcher, peak under load", "memory/go-load"},
		{"one PHP pool worker, after the load", "memory/php-worker"},
		{"poller, idle (after the run, before idle_exit)", "memory/poller-idle"},
		{"idle footprint with `idle_exit` (poller alone; dispatcher and PHP gone)", "memory/idle-exit"},
	} {
		p("| %s | %s |\n", r.label, mb(r.name))
	}

	p("\n### The console's cost (no-op jobs per second, 2 PHP processes, %d jobs)\n\n", jobs)
	p("| kqueue | jobs/s | of history off |\n|---|---|---|\n")
	for _, r := range []struct{ label, name string }{
		{"job history off (`[web] history = -1`)", "console/history=off"},
		{"job history on (the default): each run recorded in Redis", "console/history=on"},
		{"history on, a console open on two live pages (overview, Jobs)", "console/history=on+console"},
	} {
		p("| %s | %s | %s |\n", r.label, n(r.name), pct(r.name, "console/history=off"))
	}
	p("\n### The console's pages, server time, with %s runs in the job history\n\n", thousands(historyRuns))
	p("| what | time |\n|---|---|\n")
	p("| first visit after the console starts (it reads the newest runs, the rest behind it) | %s |\n", ms("console/first-visit"))
	p("| a page (Jobs, searches, a job, overview, metrics), median | %s |\n", ms("console/page-p50"))
	p("| a page, the slowest | %s |\n", ms("console/page-max"))

	p("\n### CPU per no-op job, by process (µs; %s jobs; the PHP workers' boot included)\n\n", thousands(jobs))
	p("| runner | PHP processes | daemon | Redis | PHP | all |\n|---|---|---|---|---|---|\n")
	us := func(name string) (string, float64) {
		v, _ := med(name)
		if v == 0 {
			return "—", 0
		}
		return fmt.Sprintf("%.1f", v), v
	}
	for _, r := range []string{"kqueue", "queue:work"} {
		for _, w := range []string{"1", "2"} {
			d, dv := us("cpu/" + r + "/" + w + "/daemon")
			if r == "queue:work" {
				d = "(none)"
			}
			rs, rv := us("cpu/" + r + "/" + w + "/redis")
			ps, pv := us("cpu/" + r + "/" + w + "/php")
			all := "—"
			if rv > 0 && pv > 0 {
				all = fmt.Sprintf("%.1f", dv+rv+pv)
			}
			p("| %s | %s | %s | %s | %s | %s |\n", r, w, d, rs, ps, all)
		}
	}
	p("\nAgainst the PHP CPU of `queue:work`'s loop without queue I/O (the work any runner's PHP does per job):\n\n")
	p("| PHP processes | the loop's PHP | kqueue, all processes | kqueue / the loop |\n|---|---|---|---|\n")
	for _, w := range []string{"1", "2"} {
		ls, lv := us("cpu/php-loop/" + w + "/php")
		var kv float64
		for _, what := range []string{"daemon", "redis", "php"} {
			v, _ := med("cpu/kqueue/" + w + "/" + what)
			kv += v
		}
		ratio := "—"
		if lv > 0 {
			ratio = fmt.Sprintf("**%.2f×**", kv/lv)
		}
		p("| %s | %s | %.1f | %s |\n", w, ls, kv, ratio)
	}

	p("\n### The daemon's own ceiling: PHP replaced by a responder that answers at once (%s no-op jobs, real Redis)\n\n", thousands(ceilingJobs))
	p("From the first job taken to the queue drained; CPU per job by process (µs). The host has %d CPUs; the daemon's default GOMAXPROCS is a third of them, at least 1.\n\n", runtime.NumCPU())
	p("| GOMAXPROCS | workers | jobs/s | daemon | Redis | responders |\n|---|---|---|---|---|---|\n")
	for _, procs := range []string{"1", "2"} {
		for _, w := range []string{"1", "2", "4"} {
			name := "ceiling/" + procs + "/" + w
			rate, _ := med(name + "/rate")
			d, _ := us(name + "/daemon")
			rs, _ := us(name + "/redis")
			rp, _ := us(name + "/responder")
			p("| %s | %s | %s | %s | %s | %s |\n", procs, w, thousands(rate), d, rs, rp)
		}
	}

	p("\n### A burst of %s no-op jobs: time to drain, and peak memory of all the runner's processes\n\n", thousands(jobs))
	p("| runner | drain | peak memory |\n|---|---|---|\n")
	for _, r := range []struct{ label, name string }{
		{"`queue:work` ×4", "burst/queue:work-x4"},
		{"kqueue, a fixed pool of 4", "burst/kqueue-fixed-4"},
		{"kqueue, a pool that scales from 1 to 4", "burst/kqueue-scaling-1-4"},
	} {
		v, _ := med(r.name + "/seconds")
		drain := "—"
		if v > 0 {
			drain = fmt.Sprintf("%.1f s", v)
		}
		p("| %s | %s | %s |\n", r.label, drain, mb(r.name+"/peak-mb"))
	}
	p("\n")
	return b.String()
}

// machine describes the host and the versions of what was measured.
func machine() string {
	cpu := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(string(b), "MemTotal: %d kB", &kb)
		mem = fmt.Sprintf(", %d GiB", (kb+(1<<19))>>20)
	}
	out := func(name string, args ...string) string {
		o, err := exec.Command(name, args...).Output()
		if err != nil {
			return "?"
		}
		return strings.TrimSpace(strings.SplitN(string(o), "\n", 2)[0])
	}
	return fmt.Sprintf("%d × %s%s; %s; PHP %s; %s; %s; %s; %s; %s",
		runtime.NumCPU(), cpu, mem, runtime.Version(), out("php", "-r", "echo PHP_VERSION;"), laravel,
		redisVersion(out("redis-server", "--version")), out("mariadbd", "--version"),
		out("/usr/lib/postgresql/15/bin/postgres", "--version"), out(kqueueBin, "version"))
}

// redisVersion is "Redis 7.0.15" from `redis-server --version`.
func redisVersion(s string) string {
	for _, f := range strings.Fields(s) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			return "Redis " + v
		}
	}
	return s
}

// laravel is the fixture app's `php artisan --version`.
var laravel string

// thousands formats a number with thousands separators.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
