package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
)

// kqueue killed with SIGKILL in the middle of 20,000 jobs of a class with
// no $tries (one try, as queue:work's default): every job runs, and the
// only ones failed are jobs PHP was running at the kill (two workers: at
// most two), each of which did run. The jobs kqueue had taken early were
// never charged an attempt, so whoever runs them next — kqueue again, in
// any of its process layouts, or queue:work — finds them as they were.
func TestKilledWithJobsInHand(t *testing.T) {
	bin := buildKqueue(t)
	for _, c := range []struct {
		name string
		kill []string // the processes killed: "run", or "poller"/"dispatcher"
		then string   // who drains afterwards: "kqueue" or "queue:work"
	}{
		{"run", []string{"run"}, "kqueue"},
		{"poller", []string{"poller"}, "kqueue"},
		{"dispatcher", []string{"dispatcher"}, "kqueue"},
		{"both", []string{"poller", "dispatcher"}, "kqueue"},
		{"queue:work-after", []string{"run"}, "queue:work"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := testenv.StartRedis(t)
			app := testenv.NewApp(t, r)
			app.Env["LOG_CHANNEL"] = "null"
			const jobs, workers = 20000, 2
			app.Artisan(t, "kq:dispatch", "record", fmt.Sprintf("--count=%d", jobs))
			cfg := app.Config(t, workers, "[[queue]]\nname = \"default\"\nretry_after = 3\n")
			ctx := t.Context()
			start := func(role string, args ...string) *exec.Cmd {
				cmd := exec.CommandContext(ctx, bin, append([]string{role, "--config", cfg}, args...)...)
				var logs testenv.SyncBuffer
				cmd.Stdout, cmd.Stderr = &logs, &logs
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
				return cmd
			}
			procs := map[string]*exec.Cmd{}
			if c.kill[0] == "run" {
				procs["run"] = start("run")
			} else {
				procs["dispatcher"] = start("dispatcher")
				procs["poller"] = start("poller")
			}
			q := testenv.Prefix + "queues:default"
			testenv.Eventually(t, 60*time.Second, "a quarter of the jobs to run", func() bool { return r.Client.LLen(ctx, q).Val() <= jobs*3/4 })
			for _, name := range c.kill {
				procs[name].Process.Signal(syscall.SIGKILL)
			}
			for _, name := range c.kill {
				procs[name].Wait()
			}

			switch {
			case c.then == "queue:work":
				drain(t, r.Client, "default", func() error {
					return queueWork(ctx, app)
				})
			case c.kill[0] == "run":
				drain(t, r.Client, "default", func() error {
					out, err := exec.CommandContext(ctx, bin, "run", "--config", cfg, "--stop-when-empty").CombinedOutput()
					if err != nil {
						return fmt.Errorf("kqueue run: %v\n%s", err, out)
					}
					return nil
				})
			default:
				for _, name := range c.kill {
					procs[name] = start(name)
				}
				testenv.Eventually(t, 90*time.Second, "every job to run or fail", func() bool { return queueSize(t, r.Client, "default") == 0 })
			}

			afterTheKill(t, r, app, jobs, workers)
		})
	}
}

// afterTheKill checks what a kill left once the queue is drained: every
// one of the jobs Record jobs ran; none was charged an attempt it did not
// run; the failed ones, at most workers (those PHP was running at the
// kill), each ran.
func afterTheKill(t *testing.T, r *testenv.Redis, app *testenv.App, jobs, workers int) {
	t.Helper()
	ran, skipped := runsOf(t, r)
	if len(ran) != jobs {
		t.Errorf("%d jobs ran, want all %d", len(ran), jobs)
	}
	if len(skipped) > 0 {
		t.Errorf("charged without having run (an attempt number skipped): %v", first(skipped, 5))
	}
	failed := app.Sqlite(t, "SELECT payload FROM failed_jobs")
	if len(failed) > workers {
		t.Errorf("%d failed_jobs rows, more than the %d jobs PHP can have been running at the kill", len(failed), workers)
	}
	for _, f := range failed {
		if tag := recordTag.FindString(f); tag == "" || !ran[tag] {
			t.Errorf("failed without having run: %s", f)
		}
	}
	t.Logf("%d failed_jobs rows (jobs PHP was running at the kill)", len(failed))
}

// recordTag finds a Record job's tag in its payload.
var recordTag = regexp.MustCompile(`record-\d+`)

// runsOf reads the probe's run records: the tags that ran, and the tags
// whose attempt numbers skip one (an attempt counted without a run).
func runsOf(t *testing.T, r *testenv.Redis) (ran map[string]bool, skipped []string) {
	t.Helper()
	attempts := map[string][]int{}
	for _, l := range r.Client.LRange(context.Background(), testenv.Prefix+"kqtest:log", 0, -1).Val() {
		var rec struct {
			Kind    string `json:"kind"`
			Tag     string `json:"tag"`
			Attempt int    `json:"attempt"`
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("bad probe record %q: %v", l, err)
		}
		if rec.Kind == "run" {
			attempts[rec.Tag] = append(attempts[rec.Tag], rec.Attempt)
		}
	}
	ran = map[string]bool{}
	for tag, as := range attempts {
		ran[tag] = true
		slices.Sort(as)
		// A repeated number is a duplicate run; a missing one, a charge
		// without a run.
		for i, a := range slices.Compact(slices.Clone(as)) {
			if a != i+1 {
				skipped = append(skipped, fmt.Sprintf("%s ran as attempts %v", tag, as))
				break
			}
		}
	}
	slices.Sort(skipped)
	return ran, skipped
}

func first(s []string, n int) string { return strings.Join(s[:min(n, len(s))], "; ") }
