package exec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
)

// prefixedApp is the fixture app on a Redis of its own, and its
// environment with REDIS_PREFIX=p:.
func prefixedApp(t *testing.T) (*testenv.Redis, *testenv.App, map[string]string) {
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	env := map[string]string{"REDIS_PREFIX": "p:"}
	for k, v := range app.Env {
		env[k] = v
	}
	return r, app, env
}

// answer is what the tests read of AppConfig's answer.
type answer struct {
	Connection string `json:"connection"`
	Queue      struct {
		Driver     string `json:"driver"`
		RetryAfter int    `json:"retry_after"`
	} `json:"queue"`
	Redis struct {
		Host       string `json:"host"`
		Port       int    `json:"port"`
		Prefix     string `json:"prefix"`
		PrefixFrom string `json:"prefix_from"`
	} `json:"redis"`
}

func decode(t *testing.T, b []byte) answer {
	t.Helper()
	var a answer
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return a
}

// AppConfig answers with the app's queue connection and the prefix its
// Redis client applies, and a connection the app does not have is an
// error that names it.
func TestAppConfig(t *testing.T) {
	t.Parallel()
	r, app, env := prefixedApp(t)
	b, err := AppConfig(t.Context(), Config{AppPath: app.Path, Env: env})
	if err != nil {
		t.Fatal(err)
	}
	got := decode(t, b)
	if got.Connection != "redis" || got.Queue.Driver != "redis" || got.Queue.RetryAfter != 90 ||
		got.Redis.Host != r.Socket || got.Redis.Prefix != "p:" || got.Redis.PrefixFrom != "client" {
		t.Errorf("AppConfig = %s", b)
	}

	_, err = AppConfig(t.Context(), Config{AppPath: app.Path, Env: app.Env, Connection: "nope"})
	if !errors.Is(err, ErrAppConfig) || !strings.Contains(err.Error(), `the app has no queue connection "nope"`) {
		t.Errorf("AppConfig for a connection the app lacks: %v", err)
	}
}

// Once the pool has started, the app's queue configuration is what its
// first worker said of the app it booted: the same answer as AppConfig's,
// with no PHP run of its own; a connection the app lacks, or one that
// cannot be described, is the same error. After a reload it is read
// again, by a PHP run of its own.
func TestAppComesFromThePoolsFirstWorker(t *testing.T) {
	t.Parallel()
	_, app, env := prefixedApp(t)
	// php, counting its runs.
	runs := filepath.Join(t.TempDir(), "runs")
	php := filepath.Join(t.TempDir(), "php")
	script := "#!/bin/sh\necho \"$*\" >> " + runs + "\nexec php \"$@\"\n"
	// Written by a process of its own: one that a parallel test forks
	// while this one holds the file open for writing holds it too, until
	// it execs, and running the script meanwhile fails with "text file
	// busy".
	write := osexec.Command("sh", "-c", `cat > "$1" && chmod 755 "$1"`, "sh", php)
	write.Stdin = strings.NewReader(script)
	if out, err := write.CombinedOutput(); err != nil {
		t.Fatalf("write %s: %v: %s", php, err, out)
	}
	want, err := AppConfig(t.Context(), Config{AppPath: app.Path, Env: env})
	if err != nil {
		t.Fatal(err)
	}
	broken := maps.Clone(env)
	broken["DB_QUEUE_CONNECTION"] = "nosuch" // describe() throws
	for _, c := range []struct {
		connection, err string
		env             map[string]string
	}{
		{"", "", env},
		{"nope", `the app has no queue connection "nope"`, env},
		{"database", `RuntimeException: the queue connection's database connection "nosuch" is not in config/database.php connections`, broken},
	} {
		os.Remove(runs)
		d := New(Config{AppPath: app.Path, Env: c.env, PHP: php, Workers: 2, Connection: c.connection}, testenv.NewLogs().Logger())
		if err := d.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		got, err := d.App(t.Context())
		before, _ := os.ReadFile(runs)
		var reloaded []byte
		if err == nil {
			// A deploy changes the prefix; systemctl reload.
			next := maps.Clone(env)
			next["REDIS_PREFIX"] = "q:"
			d.Reload(Config{AppPath: app.Path, Env: next, PHP: php, Workers: 2})
			reloaded, _ = d.App(t.Context())
		}
		d.Stop(context.Background())
		switch {
		case c.err == "" && err != nil:
			t.Fatal(err)
		case c.err == "" && !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(want)):
			t.Errorf("App = %s\nwant AppConfig's %s", got, want)
		case c.err == "" && !strings.Contains(string(reloaded), `"prefix":"q:"`):
			t.Errorf("App after a reload = %s, want the new prefix q:", reloaded)
		case c.err != "" && (!errors.Is(err, ErrAppConfig) || !strings.Contains(err.Error(), c.err)):
			t.Errorf("App for a connection the app lacks: %v, want an error saying %q", err, c.err)
		}
		if n := strings.Count(string(before), "\n"); n != 2 || strings.Count(string(before), "worker.php") != 2 {
			t.Errorf("connection %q: php ran %d times, want twice (the two workers):\n%s", c.connection, n, before)
		}
	}
}

// A Redis that drops packets (its host down, say) keeps neither the pool
// from starting nor the poller from the app's configuration: reading the
// Redis client's prefix, and queue:restart's time from the app's cache
// (Redis too), give up after a moment, and the prefix is the config's.
func TestPoolStartsWithRedisBlackHoled(t *testing.T) {
	t.Parallel()
	_, app, env := prefixedApp(t)
	host, port, _ := net.SplitHostPort(testenv.BlackHole(t))
	env["REDIS_HOST"], env["REDIS_PORT"] = host, port
	d := New(Config{AppPath: app.Path, Env: env, Workers: 1, BootTimeout: 20 * time.Second}, testenv.NewLogs().Logger())
	if err := d.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer d.Stop(context.Background())
	b, err := d.App(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := decode(t, b); strconv.Itoa(got.Redis.Port) != port || got.Redis.Prefix != "p:" || got.Redis.PrefixFrom != "config" {
		t.Errorf("App = %s, want port %s and the config's prefix p:", b, port)
	}
}
