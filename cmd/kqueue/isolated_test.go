package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
)

// TestIsolatedJobs runs, on this host's cgroup v1 controllers: a job that
// allocates 300 MB under a 64 MB limit (OOM-killed by the kernel, failed
// with the limit named, its failed() run), a job whose child outlives its
// timeout (the whole cgroup dies), and a fork bomb (held at the task
// limit); the ordinary jobs after them run normally and kqueue carries on.
//
// Both ways of starting an isolated job — forking a booted template, and a
// fresh process — give the same outcomes.
func TestIsolatedJobs(t *testing.T) {
	t.Parallel()
	for _, fresh := range []bool{false, true} {
		t.Run(map[bool]string{false: "fork", true: "fresh"}[fresh], func(t *testing.T) {
			t.Parallel()
			testIsolatedJobs(t, fresh)
		})
	}
}

func testIsolatedJobs(t *testing.T, fresh bool) {
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	ctx := context.Background()
	app.Artisan(t, "kq:dispatch", "isolated")
	cfg := app.Config(t, 2, fmt.Sprintf("[isolation]\ndriver = \"cgroupfs\"\nmax_concurrent = 2\ntasks = 32\nfresh = %v\n", fresh))

	logs, err := kqueue(t, ctx, "run", "--config", cfg, "--stop-when-empty")
	if err != nil {
		t.Fatalf("kqueue run: %v\n%s", err, logs)
	}
	if n := queueSize(t, r.Client, "default"); n != 0 {
		t.Fatalf("%d jobs left:\n%s", n, logs)
	}
	runs := r.Client.HGetAll(ctx, testenv.Prefix+"kqtest:runs").Val()
	for _, tag := range []string{"after-0", "after-1", "after-2", "hog", "spawner", "bomb"} {
		if runs[tag] != "1" {
			t.Errorf("%s ran %q times, want once", tag, runs[tag])
		}
	}
	records := probeLog(t, r.Client)

	// The hog: killed by the kernel at its limit, failed() told why.
	if strings.Contains(strings.Join(records["hog"], "\n"), "survived") {
		t.Errorf("the hog allocated 300 MB under a 64 MB limit")
	}
	if hook := strings.Join(records["hog"], "\n"); !strings.Contains(hook, "MemoryLimitExceededException") || !strings.Contains(hook, "exceeded its memory limit (64M)") {
		t.Errorf("failed() of the hog: %s", hook)
	}
	rows := app.Sqlite(t, "SELECT exception FROM failed_jobs")
	all := strings.Join(rows, "\n")
	if !strings.Contains(all, "exceeded its memory limit (64M)") {
		t.Errorf("failed_jobs does not name the memory limit:\n%s", all)
	}

	// The spawner: its setsid child died with its cgroup.
	for _, rec := range records["spawner"] {
		var c struct {
			Kind string `json:"kind"`
			Pid  int    `json:"pid"`
		}
		json.Unmarshal([]byte(rec), &c)
		if c.Kind != "child" {
			continue
		}
		if c.Pid == 0 {
			t.Fatalf("no child pid: %s", rec)
		}
		// Dead, or a zombie waiting for init to reap it.
		if stat, err := os.ReadFile("/proc/" + strconv.Itoa(c.Pid) + "/stat"); err == nil && !strings.Contains(string(stat), ") Z ") {
			t.Errorf("the spawner's child %d outlived the job's timeout: %s", c.Pid, stat)
		}
	}
	if !strings.Contains(all, "has timed out") || !strings.Contains(all, "killed its cgroup") {
		t.Errorf("failed_jobs does not tell of the timeout:\n%s", all)
	}

	// The bomb finished (its forks failed at the limit) and left nothing.
	if !strings.Contains(strings.Join(records["bomb"], "\n"), "bomb-done") {
		t.Errorf("the fork bomb did not return: %v", records["bomb"])
	}
	for _, want := range []string{"strategy=\"isolated (memory 64M, tasks 32)\"", "outcome=oom", "outcome=timeout"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}

// isolation.max_concurrent caps isolated jobs apart from the pool: with 1,
// no two run at once, while the pool's two workers stay free for others.
func TestIsolationMaxConcurrent(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	app.Env["LOG_CHANNEL"] = "null"
	app.Artisan(t, "kq:dispatch", "isolated-sleep", "--count=4")
	app.Artisan(t, "kq:dispatch", "record", "--count=3")
	cfg := app.Config(t, 2, "[isolation]\nmax_concurrent = 1\n")
	logs, err := kqueue(t, context.Background(), "run", "--config", cfg, "--stop-when-empty")
	if err != nil {
		t.Fatalf("%v\n%s", err, logs)
	}
	type span struct{ Start, End float64 }
	var spans []span
	for _, recs := range probeLog(t, r.Client) {
		for _, rec := range recs {
			var s struct {
				Kind       string
				Start, End float64
			}
			json.Unmarshal([]byte(rec), &s)
			if s.Kind == "span" {
				spans = append(spans, span{s.Start, s.End})
			}
		}
	}
	if len(spans) != 4 {
		t.Fatalf("%d isolated jobs ran, want 4", len(spans))
	}
	for i, a := range spans {
		for _, b := range spans[i+1:] {
			if a.Start < b.End && b.Start < a.End {
				t.Errorf("two isolated jobs overlapped under max_concurrent = 1: %v %v", a, b)
			}
		}
	}
	if n := r.Client.HLen(context.Background(), testenv.Prefix+"kqtest:runs").Val(); n != 7 {
		t.Errorf("%d jobs ran, want 7", n)
	}
}

// An isolated job with $cpu = 20 that spins for a second of wall time gets
// about a fifth of a core, measured from its cgroup's CPU accounting (and
// reported with its outcome). Asserted loosely: well under a full core.
func TestIsolatedCPULimit(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	app.Env["LOG_CHANNEL"] = "null"
	app.Artisan(t, "kq:dispatch", "cpu")
	cfg := app.Config(t, 1, "[isolation]\ndriver = \"cgroupfs\"\n")
	logs, err := kqueue(t, context.Background(), "run", "--config", cfg, "--stop-when-empty")
	if err != nil {
		t.Fatalf("kqueue run: %v\n%s", err, logs)
	}
	line := regexp.MustCompile(`(?m)^.*msg="job done".*job_name=App\\Jobs\\CpuBound.*$`).FindString(logs)
	cpu := regexp.MustCompile(` cpu=(\S+)`).FindStringSubmatch(line)
	took := regexp.MustCompile(` duration=(\S+)`).FindStringSubmatch(line)
	if cpu == nil || took == nil {
		t.Fatalf("no cpu and duration in the job's outcome:\n%s", logs)
	}
	c, err1 := time.ParseDuration(cpu[1])
	d, err2 := time.ParseDuration(took[1])
	if err1 != nil || err2 != nil || d < time.Second {
		t.Fatalf("cpu %q, duration %q: %v %v", cpu[1], took[1], err1, err2)
	}
	if share := float64(c) / float64(d); share < 0.05 || share > 0.5 {
		t.Errorf("the job used %.0f%% of a core (cpu %s over %s), want about 20%%", 100*share, c, d)
	} else {
		t.Logf("cpu %s over %s: %.0f%% of a core", c, d, 100*share)
	}
}
