package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
	"github.com/kqueue/kqueue/poller"
	"github.com/redis/go-redis/v9"
)

// TestLaravelVersions checks, on each Laravel version of the matrix, what
// differs between them (docs/laravel-queue.md) beyond what
// TestDifferential compares. The kqueue binary runs next to the version's
// PHP: inside its chroot for 10 and 13.
func TestLaravelVersions(t *testing.T) {
	t.Parallel()
	for _, l := range testenv.Versions() {
		t.Run("laravel"+l.Version, func(t *testing.T) {
			t.Parallel()
			root := l.Root(t)
			bin := buildKqueue(t)
			r := testenv.StartRedisIn(t, root)
			v := &laravelApp{Laravel: l, app: testenv.NewAppIn(t, r, root)}
			v.kqueue = kqueueIn(t, v.app, bin)
			t.Run("timeout", v.timeout)
			t.Run("class-defaults", v.classDefaults)
			t.Run("restart", v.restart)
			t.Run("prefix", v.prefix)
			if l.Version == "13" {
				t.Run("pause", v.pause)
			}
		})
	}
}

// laravelApp is one Laravel version's app, and kqueue next to it.
type laravelApp struct {
	testenv.Laravel
	app    *testenv.App
	kqueue func(ctx context.Context, args ...string) *exec.Cmd
}

// drain runs `kqueue run --stop-when-empty` with the config text extra
// until the default queue is empty, and returns kqueue's log.
func (v *laravelApp) drain(t *testing.T, extra string) string {
	t.Helper()
	cfg := v.app.Inside(v.app.Config(t, 2, extra))
	var logs strings.Builder
	drain(t, v.app.Redis.Client, "default", func() error {
		out, err := v.kqueue(t.Context(), "run", "--config", cfg, "--stop-when-empty").CombinedOutput()
		logs.Write(out)
		if err != nil {
			t.Log(logs.String())
		}
		return err
	})
	return logs.String()
}

func (v *laravelApp) reset(t *testing.T) {
	t.Helper()
	v.app.Redis.Client.FlushAll(t.Context())
	v.app.Sqlite(t, "DELETE FROM failed_jobs")
}

// timeout: a job killed at its timeout fails with the exception the
// version's queue:work uses: MaxAttemptsExceededException on 8,
// TimeoutExceededException (its subclass, "… has timed out.") from 10.10.
func (v *laravelApp) timeout(t *testing.T) {
	v.reset(t)
	v.app.Artisan(t, "kq:dispatch", "timeout")
	logs := v.drain(t, "")
	want := `Illuminate\Queue\TimeoutExceededException: `
	if v.Version == "8" {
		want = `Illuminate\Queue\MaxAttemptsExceededException: `
	}
	rows := v.app.Sqlite(t, "SELECT exception FROM failed_jobs")
	if len(rows) != 2 {
		t.Fatalf("%d failed_jobs rows, want 2:\n%s", len(rows), logs)
	}
	for _, row := range rows {
		if !strings.HasPrefix(row, `["`+strings.ReplaceAll(want, `\`, `\\`)) || !strings.Contains(row, "has timed out") {
			t.Errorf("failed_jobs exception is not %q…has timed out: %s", want, row[:min(len(row), 300)])
		}
	}
}

// classDefaults: from Laravel 10 on, the serialized command leaves out
// properties at their declared defaults, so kqueue learns $isolated,
// $maxMemory and $cpu from the class; the plain jobs and their KQueueJob
// twins run with the same strategy on every version.
func (v *laravelApp) classDefaults(t *testing.T) {
	v.reset(t)
	v.app.Env["KQUEUE_PHP_LIBRARY"] = v.app.CopyIn(t, filepath.Join(testenv.Root(), "php-library", "src"), "php-library")
	t.Cleanup(func() { delete(v.app.Env, "KQUEUE_PHP_LIBRARY") })
	v.app.Artisan(t, "kq:dispatch", "both-ways")
	for _, p := range v.app.Redis.Client.LRange(t.Context(), testenv.Prefix+"queues:default", 0, -1).Val() {
		if strings.Contains(p, `PlainLimits`) && strings.Contains(p, `isolated`) != (v.Version == "8") {
			t.Errorf("Laravel %s: the command says $isolated: %v, want it only on 8: %s", v.Version, strings.Contains(p, `isolated`), p)
		}
	}
	logs := v.drain(t, "[isolation]\ndriver = \"none\"\nmemory = \"256M\"\ntasks = 64\n"+
		"[[rule]]\nclass = 'App\\Jobs\\*Unsaid'\nstrategy = \"isolated\"\nmemory = \"128M\"\n")
	want := map[string]string{
		"Limits":      "isolated (memory 96M, cpu 50%, tasks 64)",
		"Unsaid":      "isolated (memory 128M, tasks 64)",
		"MustIsolate": "isolated (memory 256M, tasks 64)",
	}
	for kind, strategy := range want {
		for _, style := range []string{"Plain", "KQueue"} {
			job := `job_name=App\Jobs\` + style + kind + " "
			if !strings.Contains(logs, job) || !strings.Contains(logs, job+"attempt=1 outcome=done") {
				t.Errorf("%s%s did not run once:\n%s", style, kind, logs)
				continue
			}
			line := logs[strings.Index(logs, job):]
			line = line[:strings.IndexByte(line, '\n')]
			if !strings.Contains(line, `strategy="`+strategy+`"`) {
				t.Errorf("%s%s: want strategy %q: %s", style, kind, strategy, line)
			}
		}
	}
}

// start runs `kqueue run --config cfg` next to the app until the test
// stops it (SIGTERM); its log is logs, shown when the test fails.
func (v *laravelApp) start(t *testing.T, cfg string) (cmd *exec.Cmd, logs *testenv.SyncBuffer) {
	logs = &testenv.SyncBuffer{}
	cmd = v.kqueue(t.Context(), "run", "--config", cfg)
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	return cmd, logs
}

// restart: `php artisan queue:restart` recycles kqueue's workers. The
// restart key is a cache key whose layout changed in 11 (no ':' after the
// cache prefix); kqueue reads it through the app's own cache store.
func (v *laravelApp) restart(t *testing.T) {
	v.reset(t)
	cfg := v.app.Inside(v.app.Config(t, 2, ""))
	cmd, logs := v.start(t, cfg)
	testenv.Eventually(t, 30*time.Second, "workers ready", func() bool {
		s, ok := v.status(t, cfg)
		return ok && len(s.Workers) == 2
	})
	v.app.Artisan(t, "queue:restart")
	key := "laravel_database_laravel_cache:illuminate:queue:restart"
	if v.Version == "13" {
		key = "laravel_database_laravel_cacheilluminate:queue:restart"
	}
	cache := redis.NewClient(&redis.Options{Network: "unix", Addr: v.app.Redis.Socket, DB: 1})
	defer cache.Close()
	if n := cache.Exists(t.Context(), key).Val(); n != 1 {
		t.Errorf("queue:restart did not set %s: keys %v", key, cache.Keys(t.Context(), "*").Val())
	}
	testenv.Eventually(t, 30*time.Second, "the workers rolled for queue:restart", func() bool {
		s, ok := v.status(t, cfg)
		return ok && s.Recycles["restart"] == 2
	})
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("kqueue run: %v\n%s", err, logs.String())
	}
}

// status is what `kqueue status --json` says of the instance at cfg,
// asked inside the app's root; false while it does not answer.
func (v *laravelApp) status(t *testing.T, cfg string) (poller.Snapshot, bool) {
	var s poller.Snapshot
	out, err := v.kqueue(t.Context(), "status", "--config", cfg, "--json").Output()
	return s, err == nil && json.Unmarshal(out, &s) == nil
}

// pause (Laravel 12.40 and later): php artisan queue:pause stops kqueue
// taking the queue's jobs, as it stops queue:work, with the worker's
// WorkerQueuePaused and WorkerQueueResumed; queue:resume, or the end of a
// pause with a TTL, lets them run again. Declined jobs go back as they
// were: each runs once, at its first attempt.
func (v *laravelApp) pause(t *testing.T) {
	v.reset(t)
	cfg := v.app.Inside(v.app.Config(t, 2, ""))
	cmd, logs := v.start(t, cfg)
	rdb := v.app.Redis.Client
	runs := testenv.Prefix + "kqtest:runs"
	for i, step := range []struct {
		pause  []string
		resume func()
	}{
		{[]string{"kq:pause", "default"}, func() { v.app.Artisan(t, "queue:resume", "redis:default") }},
		{[]string{"kq:pause", "default", "--ttl=3"}, func() {}}, // resumes by itself
	} {
		v.app.Artisan(t, step.pause...)
		// Workers look at the pause once a second, and fire
		// WorkerQueuePaused (recorded by the probe) when they see it.
		testenv.Eventually(t, 30*time.Second, "the workers to see the pause", func() bool {
			return len(probeLog(t, rdb)["worker:WorkerQueuePaused"]) >= 2*(i+1)
		})
		v.app.Artisan(t, "kq:dispatch", "record", "--count=2", "--from="+strconv.Itoa(2*i))
		testenv.Eventually(t, 30*time.Second, "kqueue status to say the queue is paused", func() bool {
			s, ok := v.status(t, cfg)
			return ok && strings.Contains(s.Declining, "the queue default is paused")
		})
		if n := rdb.HLen(t.Context(), runs).Val(); n != int64(2*i) {
			t.Fatalf("%d jobs ran with the queue paused, want %d", n, 2*i)
		}
		step.resume()
		testenv.Eventually(t, 30*time.Second, "the jobs to run once the queue is resumed", func() bool {
			return rdb.HLen(t.Context(), runs).Val() == int64(2*i+2)
		})
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("kqueue run: %v\n%s", err, logs.String())
	}
	for tag, n := range rdb.HGetAll(context.Background(), runs).Val() {
		if n != "1" {
			t.Errorf("%s ran %s times", tag, n)
		}
	}
	events := probeLog(t, rdb)
	if len(events["worker:WorkerQueuePaused"]) == 0 || len(events["worker:WorkerQueueResumed"]) == 0 {
		t.Errorf("worker events: paused %v, resumed %v; want both fired", events["worker:WorkerQueuePaused"], events["worker:WorkerQueueResumed"])
	}
}

// prefix: the Redis prefix is the app's, read from it — a Laravel 11+
// skeleton's default is laravel-database-, not 8's laravel_database_ —
// kqueue check reports it when kqueue.toml says nothing, and fails when
// kqueue.toml sets another.
func (v *laravelApp) prefix(t *testing.T) {
	v.app.Env["REDIS_PREFIX"] = "laravel-database-"
	t.Cleanup(func() { delete(v.app.Env, "REDIS_PREFIX") })
	cfg := v.app.Inside(v.app.Config(t, 1, ""))
	out, err := v.kqueue(t.Context(), "check", "--config", cfg).CombinedOutput()
	want := `from the app: redis.prefix = "laravel-database-" (from config/database.php redis.options.prefix, REDIS_PREFIX)`
	if err != nil || !strings.Contains(string(out), want) {
		t.Errorf("kqueue check without a prefix: %v, want the line %q:\n%s", err, want, out)
	}
	path := v.app.Config(t, 1, "")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	wrong := bytes.Replace(b, []byte("[redis]\n"), []byte("[redis]\nprefix = \"laravel_database_\"\n"), 1)
	if err := os.WriteFile(path, wrong, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = v.kqueue(t.Context(), "check", "--config", v.app.Inside(path)).CombinedOutput()
	want = `disagreement: redis.prefix: kqueue.toml says "laravel_database_", the app says "laravel-database-" (config/database.php redis.options.prefix, REDIS_PREFIX); kqueue.toml's "laravel_database_" wins: kqueue would wait on keys the app never writes; remove prefix from [redis] or set prefix = "laravel-database-"`
	if err == nil || !strings.Contains(string(out), want) {
		t.Errorf("kqueue check with the wrong prefix: %v, want the error %q:\n%s", err, want, out)
	}
	right := bytes.Replace(b, []byte("[redis]\n"), []byte("[redis]\nprefix = \"laravel-database-\"\n"), 1)
	if err := os.WriteFile(path, right, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := v.kqueue(t.Context(), "check", "--config", v.app.Inside(path)).CombinedOutput(); err != nil || strings.Contains(string(out), "disagreement") {
		t.Errorf("kqueue check with the app's prefix: %v\n%s", err, out)
	}
}
