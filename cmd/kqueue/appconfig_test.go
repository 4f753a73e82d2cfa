package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
)

// zeroConfigApp is a copy of the fixture app that finds everything in its
// own .env — its Redis server, a prefix and retry_after of its own, a
// default queue — so that a kqueue.toml needs only its path.
func zeroConfigApp(t *testing.T) *testenv.App {
	t.Helper()
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	settings := map[string]string{
		"REDIS_PREFIX":      "zc_",
		"REDIS_RETRY_AFTER": "45",
		"REDIS_QUEUE":       "zq",
	}
	for k, v := range app.Env {
		settings[k] = v
	}
	setDotEnv(t, app.Path, settings)
	return app
}

// setDotEnv sets keys in the app's .env, replacing the lines that set them.
func setDotEnv(t *testing.T, appPath string, settings map[string]string) {
	t.Helper()
	path := filepath.Join(appPath, ".env")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		key, _, _ := strings.Cut(line, "=")
		if _, ok := settings[key]; !ok {
			out.WriteString(line + "\n")
		}
	}
	for k, v := range settings {
		fmt.Fprintf(&out, "%s=%q\n", k, v)
	}
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeConfig writes text as the instance NAME's config next to the app.
func writeConfig(t *testing.T, app *testenv.App, name, text string) string {
	t.Helper()
	path := filepath.Join(app.Path, "..", name+".toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkOutput runs kqueue check and returns what it printed.
func checkOutput(t *testing.T, cfg string) (string, error) {
	t.Helper()
	var stdout, stderr testenv.SyncBuffer
	err := run(t.Context(), []string{"check", "--config", cfg}, &stdout, &stderr)
	return stdout.String() + stderr.String(), err
}

// kqueue check on a kqueue.toml that names only the app reports the app's
// own prefix, retry_after, queue and Redis server; a kqueue.toml that says
// otherwise wins, and each disagreement is one line naming both values.
func TestCheckReadsTheAppsQueueConfig(t *testing.T) {
	t.Parallel()
	app := zeroConfigApp(t)
	appOnly := fmt.Sprintf("[app]\npath = %q\n", app.Path)

	t.Run("app-path-only", func(t *testing.T) {
		out, err := checkOutput(t, writeConfig(t, app, "only", appOnly))
		if err != nil {
			t.Fatalf("kqueue check: %v\n%s", err, out)
		}
		for _, want := range []string{
			`from the app: app.connection = "redis" (from config/queue.php default, QUEUE_CONNECTION)`,
			`from the app: redis.url = "unix://` + app.Redis.Socket + `?db=0" (from config/database.php redis.default)`,
			`from the app: redis.prefix = "zc_" (from config/database.php redis.options.prefix, REDIS_PREFIX)`,
			`from the app: redis.retry_after = 45s (from config/queue.php connections.redis.retry_after)`,
			`from the app: queue = "zq" (from config/queue.php connections.redis.queue, REDIS_QUEUE)`,
			`failed jobs: driver database-uuids, database "sqlite", table "failed_jobs"`,
			`redis unix://` + app.Redis.Socket + `?db=0: reachable`,
		} {
			if !strings.Contains(out, want+"\n") {
				t.Errorf("kqueue check does not say %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "disagreement") {
			t.Errorf("kqueue check reports a disagreement where kqueue.toml says nothing:\n%s", out)
		}
	})

	t.Run("retry-after-disagrees", func(t *testing.T) {
		out, err := checkOutput(t, writeConfig(t, app, "retry", appOnly+"[redis]\nretry_after = 120\n"))
		if err != nil {
			t.Fatalf("kqueue check: a retry_after of its own is allowed, got %v\n%s", err, out)
		}
		want := `disagreement: redis.retry_after: kqueue.toml says 2m0s, the app says 45s (config/queue.php connections.redis.retry_after); kqueue.toml's 2m0s wins`
		if !strings.Contains(out, want) {
			t.Errorf("kqueue check does not say %q:\n%s", want, out)
		}
	})

	t.Run("prefix-disagrees", func(t *testing.T) {
		out, err := checkOutput(t, writeConfig(t, app, "prefix", appOnly+"[redis]\nprefix = \"laravel_database_\"\n"))
		want := `redis.prefix: kqueue.toml says "laravel_database_", the app says "zc_" (config/database.php redis.options.prefix, REDIS_PREFIX); kqueue.toml's "laravel_database_" wins: kqueue would wait on keys the app never writes; remove prefix from [redis] or set prefix = "zc_"`
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(out, "disagreement: "+want+"\n") {
			t.Errorf("kqueue check with another prefix: %v, want the error and the line %q:\n%s", err, want, out)
		}
	})

	t.Run("not-redis", func(t *testing.T) {
		out, err := checkOutput(t, writeConfig(t, app, "sync", appOnly+"[app.env]\nQUEUE_CONNECTION = \"sync\"\n"))
		want := `the app's queue connection "sync" uses the "sync" driver (config/queue.php connections.sync.driver): kqueue runs jobs from Redis, database and SQS queues; set QUEUE_CONNECTION=redis, database or sqs in the app's .env, or name such a connection in [app] connection`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("kqueue check on a sync connection: %v, want %q:\n%s", err, want, out)
		}
	})

	t.Run("database", func(t *testing.T) {
		out, err := checkOutput(t, writeConfig(t, app, "db", appOnly+"[app.env]\nQUEUE_CONNECTION = \"database\"\nDB_QUEUE_CONNECTION = \"sqlite\"\n"))
		if err != nil {
			t.Fatalf("kqueue check: %v\n%s", err, out)
		}
		for _, want := range []string{
			`from the app: database = sqlite "` + app.DB + `", table "jobs" (from config/queue.php connections.database.connection and .table; config/database.php connections.sqlite)`,
			`queue connection "database": driver database, database connection "sqlite" (sqlite, database "` + app.DB + `"), table "jobs", default queue "default", retry_after 1m30s, after_commit false`,
			`database config/database.php connections.sqlite: reachable, SQLite 3.`,
			`reserved rows locked with the database's write lock (BEGIN IMMEDIATE)`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("kqueue check does not say %q:\n%s", want, out)
			}
		}
	})

	t.Run("does-not-boot", func(t *testing.T) {
		broken := t.TempDir()
		cfg := writeConfig(t, app, "broken", fmt.Sprintf("[app]\npath = %q\n", broken))
		_, err := kqueue(t, t.Context(), "run", "--config", cfg, "--stop-when-empty")
		// The pool's first worker says why: the app's queue configuration
		// is read from it once it has booted.
		want := "Laravel app at " + broken + " did not boot: Error: Failed opening required '" + broken + "/vendor/autoload.php'"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("kqueue run on an app that does not boot: %v, want %q", err, want)
		}
	})
}

// kqueue runs with a kqueue.toml that names only [app] path: it takes the
// app's Redis server, prefix, retry_after and queue from the app itself
// and runs the jobs the app dispatched there.
func TestRunsWithOnlyTheAppPath(t *testing.T) {
	t.Parallel()
	app := zeroConfigApp(t)
	app.Artisan(t, "kq:dispatch", "record", "--count=5")
	rdb := app.Redis.Client
	if n := rdb.LLen(t.Context(), "zc_queues:zq").Val(); n != 5 {
		t.Fatalf("the app dispatched %d jobs to zc_queues:zq, want 5: %v", n, rdb.Keys(t.Context(), "*").Val())
	}
	// The instance name is unique: kqueue's control socket defaults to
	// /run/kqueue/NAME.control, shared by every test on this host.
	name := "zero" + filepath.Base(filepath.Dir(app.Path))
	cfg := writeConfig(t, app, name, fmt.Sprintf("[app]\npath = %q\n", app.Path))

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	logs, err := kqueue(t, ctx, "run", "--config", cfg, "--stop-when-empty")
	if err != nil {
		t.Fatalf("kqueue run: %v\n%s", err, logs)
	}
	for _, want := range []string{
		`msg="read the app's queue configuration" laravel=8.`,
		`app.connection=redis redis.url="unix://` + app.Redis.Socket + `?db=0" redis.prefix=zc_ redis.retry_after=45s queue=zq`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("the start-up log does not say %q:\n%s", want, logs)
		}
	}
	for _, key := range []string{"zc_queues:zq", "zc_queues:zq:reserved", "zc_queues:zq:delayed"} {
		if n := rdb.Exists(t.Context(), key).Val(); n != 0 {
			t.Errorf("%s is still there after kqueue run --stop-when-empty:\n%s", key, logs)
		}
	}
	runs := rdb.HGetAll(t.Context(), "zc_kqtest:runs").Val()
	for i := range 5 {
		if tag := fmt.Sprintf("record-%d", i); runs[tag] != "1" {
			t.Errorf("job %s ran %q times, want once: %v\n%s", tag, runs[tag], runs, logs)
		}
	}
}
