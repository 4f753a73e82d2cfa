package main

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
	"github.com/kqueue/kqueue/poller"
)

// A pool that scales, under a load that rises and falls on the fixture
// app: it starts at min_workers, grows one worker at a time while the
// queue's jobs wait longer than scale_wait, never past max_workers, and
// returns to min_workers once scale_cooldown has passed without need;
// each decision is in the log with its reason. Then the same load with a
// memory_budget that two workers fill: the pool stops at two, and says
// that memory holds it. (CPU is left out, scale_max_cpu = 100: the tests
// of other packages may keep this host's CPUs busy meanwhile.)
func TestPoolScalesWithTheLoad(t *testing.T) {
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	app.Env["LOG_CHANNEL"] = "null"
	ctx := t.Context()

	run := func(t *testing.T, pool string) (cfg string, logs func() string, most func() int, rss func() int64, stop func()) {
		cfg = app.Config(t, 0, "[pool]\nmin_workers = 1\nmax_workers = 4\nscale_wait = 0.5\nscale_cooldown = 3\nscale_max_cpu = 100\n"+pool)
		kctx, cancel := context.WithCancel(ctx)
		wait := background(t, kctx, "run", "--config", cfg)
		var mu sync.Mutex
		var out string
		watched := make(chan struct{})
		peak, peakRSS := 0, int64(0)
		go func() {
			defer close(watched)
			for kctx.Err() == nil {
				if s, ok := statusOf(kctx, cfg); ok {
					mu.Lock()
					peak = max(peak, len(s.Workers))
					var sum int64
					for _, w := range s.Workers {
						sum += int64(w.RSS)
					}
					peakRSS = max(peakRSS, sum)
					mu.Unlock()
				}
				select {
				case <-kctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
			}
		}()
		testenv.Eventually(t, 30*time.Second, "kqueue to start", func() bool { _, ok := statusOf(ctx, cfg); return ok })
		return cfg, func() string {
				mu.Lock()
				defer mu.Unlock()
				return out
			}, func() int {
				mu.Lock()
				defer mu.Unlock()
				return peak
			}, func() int64 {
				mu.Lock()
				defer mu.Unlock()
				return peakRSS
			}, func() {
				cancel()
				l, err := wait()
				<-watched
				mu.Lock()
				out = l
				mu.Unlock()
				if err != nil {
					t.Fatalf("kqueue run: %v\n%s", err, l)
				}
			}
	}

	var oneWorker int64
	t.Run("rises and falls", func(t *testing.T) {
		cfg, logs, most, rss, stop := run(t, "")
		s := waitStatus(t, ctx, cfg, func(s poller.Snapshot) bool { return s.Scale != nil && len(s.Workers) == 1 })
		oneWorker = int64(s.Workers[0].RSS)
		// The rise: 60 jobs of 200 ms, 12 s of work for one worker.
		app.Artisan(t, "kq:dispatch", "busy", "--count=60")
		waitStatus(t, ctx, cfg, func(s poller.Snapshot) bool { return s.Scale.Target == 4 && len(s.Workers) == 4 })
		testenv.Eventually(t, 60*time.Second, "the burst to drain", func() bool { return queueSize(t, r.Client, "default") == 0 })
		// The fall: back to one worker after the cooldown.
		waitStatus(t, ctx, cfg, func(s poller.Snapshot) bool { return s.Scale.Target == 1 && len(s.Workers) == 1 })
		stop()
		if most() > 4 {
			t.Errorf("%d workers at once, over max_workers 4", most())
		}
		l := logs()
		for _, want := range []string{"pool grew to 2: jobs on default wait", "pool grew to 3", "pool grew to 4", "pool shrank to 1: at most 0 busy at once for 3s"} {
			if !regexp.MustCompile(regexp.QuoteMeta(want)).MatchString(l) {
				t.Errorf("the log does not say %q:\n%s", want, l)
			}
		}
		if n := regexp.MustCompile(`pool grew`).FindAllStringIndex(l, -1); len(n) != 3 {
			t.Errorf("the pool grew %d times, want 3 (1 to 4)", len(n))
		}
		t.Logf("peak memory of the workers: %d MiB; the decisions:\n%s", rss()>>20, strings.Join(regexp.MustCompile(`(?m)^.*(pool (grew|shrank|held)|retired).*$`).FindAllString(l, -1), "\n"))
	})

	t.Run("memory holds growth back", func(t *testing.T) {
		if oneWorker == 0 {
			t.Skip("needs the first subtest's measure of a worker")
		}
		// Room for two workers and a half: the third does not fit.
		budget := oneWorker * 5 / 2
		cfg, logs, most, rss, stop := run(t, fmt.Sprintf("memory_budget = %q\n", strconv.FormatInt(budget>>10, 10)+"K"))
		app.Artisan(t, "kq:dispatch", "busy", "--count=60")
		waitStatus(t, ctx, cfg, func(s poller.Snapshot) bool { return s.Scale.Target == 2 && len(s.Workers) == 2 })
		testenv.Eventually(t, 60*time.Second, "the burst to drain", func() bool { return queueSize(t, r.Client, "default") == 0 })
		stop()
		l := logs()
		if most() > 2 {
			t.Errorf("%d workers at once, over what the memory budget holds (2)", most())
		}
		if rss() > budget {
			t.Errorf("the workers held %d MiB at once, over the %d MiB budget", rss()>>20, budget>>20)
		}
		if !regexp.MustCompile(`pool held at 2 workers: jobs on default wait .* but memory_budget: workers and isolated jobs use`).MatchString(l) {
			t.Errorf("the log does not say memory held the pool at 2:\n%s", l)
		}
		if n := len(regexp.MustCompile(`pool held at`).FindAllStringIndex(l, -1)); n != 1 {
			t.Errorf("the hold was logged %d times, want once", n)
		}
	})
}

// waitStatus waits for the app's instance's status to satisfy ok.
func waitStatus(t *testing.T, ctx context.Context, cfg string, ok func(poller.Snapshot) bool) poller.Snapshot {
	t.Helper()
	var last poller.Snapshot
	defer func() {
		if t.Failed() {
			t.Logf("last status: scale %+v, %d workers", last.Scale, len(last.Workers))
		}
	}()
	testenv.Eventually(t, 60*time.Second, "the pool's state", func() bool {
		s, got := statusOf(ctx, cfg)
		last = s
		return got && s.Scale != nil && ok(s)
	})

	return last
}
