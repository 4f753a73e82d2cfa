package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMinimalConfig(t *testing.T) {
	t.Parallel()
	src := `
[app]
path = "/srv/app"            # the Laravel app root
[redis]
url = "redis://127.0.0.1:6379/0"
prefix = "laravel_database_"
[[queue]]
name = "high"
[[queue]]
name = "default"
[pool]
workers = 2
`
	c, err := Parse("/etc/kqueue/default.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"name", c.Name, "default"},
		{"app.path", c.App.Path, "/srv/app"},
		{"app.php", c.App.PHP, "php"},
		{"app.connection", c.App.Connection, ""}, // the app's default: Adopt
		{"prefix", *c.Redis.Prefix, "laravel_database_"},
		{"queues", len(c.Queues), 2},
		{"queue order", c.Queues[0].Name + "," + c.Queues[1].Name, "high,default"},
		{"retry_after", c.Queues[1].RetryAfter.D(), 90 * time.Second},
		{"workers", c.Pool.Workers, 2},
		{"timeout", c.Job.Timeout.D(), 60 * time.Second},
		{"tries", *c.Job.Tries, 1},
		{"backoff", c.Job.Backoff, "0"},
		{"max_memory", c.Pool.MaxMemory.Bytes(), int64(256 << 20)},
		{"socket", c.Dispatcher.Socket, "/run/kqueue/default.sock"},
		{"log.jobs_done", c.Log.Done(), true},
		{"log.jobs_done_per_second", c.Log.DonePerSecond(), 200},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

// A pool that scales starts at min_workers (1 unless set); a fixed one is
// its own minimum and maximum. Every queue alerts after 60 s by default
// and scales on the pool's scale_wait unless it sets its own.
func TestScalingAndAlerts(t *testing.T) {
	t.Parallel()
	c, err := Parse("f.toml", []byte("[app]\npath = \"/a\"\n[pool]\nmax_workers = 4\nscale_wait = 2\n[[queue]]\nname = \"high\"\nscale_wait = 0.5\nalert_wait = 0\n[[queue]]\nname = \"default\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range []struct {
		name      string
		got, want any
	}{
		{"workers", c.Pool.Workers, 1},
		{"min", c.Pool.MinWorkers, 1},
		{"scales", c.Pool.Scales(), true},
		{"cooldown", c.Pool.ScaleCooldown.D(), time.Minute},
		{"high scale_wait", c.Queues[0].ScaleWait.D(), 500 * time.Millisecond},
		{"default scale_wait", c.Queues[1].ScaleWait.D(), 2 * time.Second},
		{"high alert_wait (0: never)", c.Queues[0].AlertWait.D(), time.Duration(0)},
		{"default alert_wait", c.Queues[1].AlertWait.D(), time.Minute},
	} {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	fixed, err := Parse("f.toml", []byte("[app]\npath = \"/a\"\n[pool]\nworkers = 3\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p := fixed.Pool; p.MinWorkers != 3 || p.MaxWorkers != 3 || p.Scales() {
		t.Errorf("a fixed pool of 3: min %d, max %d, scales %v", p.MinWorkers, p.MaxWorkers, p.Scales())
	}
}

func TestValues(t *testing.T) {
	t.Parallel()
	src := `
[app]
path = "app"
[redis]
retry_after = "2m"
prefix = ""
[[queue]]
name = "emails"
retry_after = 30
weight = 3
[pool]
max_memory = "1G"
max_lifetime = "1h"
nice = 5
[job]
timeout = 0
tries = 0
backoff = "5, 30,60"
[log]
jobs_done = false
jobs_done_per_second = 0
`
	c, err := Parse("/etc/kqueue/x.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if c.App.Path != "/etc/kqueue/app" {
		t.Errorf("relative app.path = %q, want it resolved against the config's folder", c.App.Path)
	}
	if *c.Redis.Prefix != "" {
		t.Errorf("an empty prefix must stay empty, got %q", *c.Redis.Prefix)
	}
	if c.Redis.RetryAfter.D() != 2*time.Minute || c.Queues[0].RetryAfter.D() != 30*time.Second {
		t.Errorf("retry_after = %v / %v", c.Redis.RetryAfter, c.Queues[0].RetryAfter)
	}
	if c.Pool.MaxMemory.Bytes() != 1<<30 || c.Pool.MaxLifetime.D() != time.Hour || c.Pool.Nice != 5 {
		t.Errorf("pool = %+v", c.Pool)
	}
	if c.Job.Timeout.D() != 0 || *c.Job.Tries != 0 || c.Job.Backoff != "5,30,60" {
		t.Errorf("job = %+v", c.Job)
	}
	if c.Log.Done() {
		t.Errorf("log.jobs_done = false read as true")
	}
	if n := c.Log.DonePerSecond(); n != 0 {
		t.Errorf("log.jobs_done_per_second = 0 read as %d", n)
	}
}

// Config errors name the file, the line and the key, and say what to do.
func TestErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, src, want string
	}{
		{"unknown key", "[app]\npath = \"/a\"\n[pool]\nworkrs = 2\n", `f.toml:4: pool.workrs: unknown key (did you mean "workers"?)`},
		{"unknown table", "[app]\npath = \"/a\"\n[pol]\nworkers = 2\n", `f.toml:3: pol: unknown key`},
		{"wrong type", "[app]\npath = \"/a\"\n[pool]\nworkers = \"two\"\n", `f.toml:4: pool.workers: incompatible types: TOML value has type string; destination has type integer`},
		{"missing path", "[pool]\nworkers = 2\n", `f.toml: app.path: missing: set it to the Laravel app root`},
		{"syntax", "[app\npath = 1\n", `f.toml:2: expected '.' or ']'`},
		{"bad url", "[app]\npath = \"/a\"\n[redis]\nurl = \"http://x\"\n", `f.toml:4: redis.url: want a redis://, rediss:// or unix:// URL`},
		{"bad duration", "[app]\npath = \"/a\"\n[redis]\nretry_after = \"soon\"\n", `f.toml:4: redis.retry_after`},
		{"zero retry_after", "[app]\npath = \"/a\"\n[redis]\nretry_after = 0\n", `f.toml:4: redis.retry_after: must be more than 0 seconds`},
		{"duplicate queue", "[app]\npath = \"/a\"\n[[queue]]\nname = \"a\"\n[[queue]]\nname = \"a\"\n", `queue[1].name: queue "a" is listed twice`},
		{"unnamed queue", "[app]\npath = \"/a\"\n[[queue]]\nweight = 1\n", `queue[0].name: missing`},
		{"negative max_running", "[app]\npath = \"/a\"\n[[queue]]\nname = \"a\"\nmax_running = -1\n", `queue[0].max_running: must be 0 (no cap) or more`},
		{"bad backoff", "[app]\npath = \"/a\"\n[job]\nbackoff = \"1,x\"\n", `f.toml:4: job.backoff: want seconds or a comma-separated list`},
		{"cluster without hash tag", "[app]\npath = \"/a\"\n[redis]\ncluster = [\"127.0.0.1:7000\"]\n[[queue]]\nname = \"{high}\"\n[[queue]]\nname = \"default\"\n",
			`f.toml:8: queue[1].name: queue "default" has no hash tag, so under Redis Cluster its keys (laravel_database_queues:default, …:reserved, …:delayed, …:notify) fall in different slots and no script can touch them together: name the queue "{default}" here`},
		{"cluster empty hash tag", "[app]\npath = \"/a\"\n[redis]\ncluster = [\"127.0.0.1:7000\"]\n[[queue]]\nname = \"{}default\"\n", `queue[0].name: queue "{}default" has no hash tag`},
		{"cluster and url", "[app]\npath = \"/a\"\n[redis]\nurl = \"redis://x\"\ncluster = [\"127.0.0.1:7000\"]\n", `f.toml:4: redis.url: set url, cluster or sentinels, not more than one`},
		{"cluster and sentinels", "[app]\npath = \"/a\"\n[redis]\ncluster = [\"a:1\"]\nsentinels = [\"b:2\"]\nsentinel_master = \"m\"\n", `f.toml:4: redis.cluster: set cluster or sentinels, not both`},
		{"cluster bad address", "[app]\npath = \"/a\"\n[redis]\ncluster = [\"127.0.0.1\"]\n", `f.toml:4: redis.cluster: want host:port addresses such as "10.0.0.1:6379", got "127.0.0.1"`},
		{"sentinel without master", "[app]\npath = \"/a\"\n[redis]\nsentinels = [\"127.0.0.1:26379\"]\n", `f.toml:4: redis.sentinels: sentinel_master is missing`},
		{"sentinel master without sentinels", "[app]\npath = \"/a\"\n[redis]\nsentinel_master = \"mymaster\"\n", `f.toml:4: redis.sentinel_master: sentinels is missing`},
		{"password with url", "[app]\npath = \"/a\"\n[redis]\npassword = \"x\"\n", `f.toml:4: redis.password: with url, write the password in the URL`},
		{"bad size", "[app]\npath = \"/a\"\n[pool]\nmax_memory = \"lots\"\n", `f.toml:4: pool.max_memory`},
		{"fixed and scaling", "[app]\npath = \"/a\"\n[pool]\nworkers = 2\nmax_workers = 4\n", `f.toml:4: pool.workers: set workers (a fixed pool) or min_workers and max_workers (a pool that scales), not both`},
		{"min without max", "[app]\npath = \"/a\"\n[pool]\nmin_workers = 2\n", `f.toml:4: pool.min_workers: min_workers needs max_workers`},
		{"min over max", "[app]\npath = \"/a\"\n[pool]\nmin_workers = 5\nmax_workers = 4\n", `pool.min_workers: min_workers (5) is more than max_workers (4)`},
		{"negative fleet cap", "[app]\npath = \"/a\"\n[[queue]]\nname = \"a\"\nfleet_max_running = -1\n", `queue[0].fleet_max_running: must be 0 (no cap) or more`},
		{"negative jobs_done_per_second", "[app]\npath = \"/a\"\n[log]\njobs_done_per_second = -5\n", `f.toml:4: log.jobs_done_per_second: want a number of entries a second, or 0 for no bound; got -5`},
		{"nice out of range", "[app]\npath = \"/a\"\n[pool]\nnice = 20\n", `f.toml:4: pool.nice: want 0 to 19 (how many nice levels below kqueue's own the PHP processes run); got 20`},
		{"bad webhook", "[app]\npath = \"/a\"\n[alerts]\nwebhook = \"hooks.example/x\"\n", `f.toml:4: alerts.webhook: want an http:// or https:// URL`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("f.toml", []byte(tc.src))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %q\nwant it to contain %q", err, tc.want)
			}
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Errorf("error is %T, want *config.Error", err)
			}
		})
	}
}

// Cluster and Sentinel setups: a hash tag anywhere in the queue's key
// before the suffixes keeps every key of the queue in one slot.
func TestRedisModes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, redis, queue, mode, where string
	}{
		{"single", `url = "redis://:secret@10.0.0.1:6379/2"`, "default", Single, "redis://:xxxxx@10.0.0.1:6379/2"},
		{"cluster", `cluster = ["10.0.0.1:6379", "10.0.0.2:6379"]`, "{default}", Cluster, "cluster 10.0.0.1:6379,10.0.0.2:6379"},
		{"cluster, tag inside the name", `cluster = ["10.0.0.1:6379"]`, "emails{eu}", Cluster, "cluster 10.0.0.1:6379"},
		{"cluster, tag in the prefix", "cluster = [\"10.0.0.1:6379\"]\nprefix = \"{app}:\"", "default", Cluster, "cluster 10.0.0.1:6379"},
		{"sentinel", "sentinel_master = \"mymaster\"\nsentinels = [\"10.0.0.1:26379\"]\npassword = \"x\"", "default", Sentinel, `sentinel master "mymaster" via 10.0.0.1:26379`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse("f.toml", []byte(fmt.Sprintf("[app]\npath = \"/a\"\n[redis]\n%s\n[[queue]]\nname = %q\n", tc.redis, tc.queue)))
			if err != nil {
				t.Fatal(err)
			}
			if c.Redis.Mode() != tc.mode || c.Redis.String() != tc.where {
				t.Errorf("mode %s, %s; want %s, %s", c.Redis.Mode(), c.Redis.String(), tc.mode, tc.where)
			}
			if tc.mode != Single && c.Redis.URL != "" {
				t.Errorf("url = %q, want none", c.Redis.URL)
			}
		})
	}
}

func TestRisks(t *testing.T) {
	t.Parallel()
	c, err := Parse("f.toml", []byte("[app]\npath = \"/a\"\n[redis]\nretry_after = 60\n[job]\ntimeout = 90\n"))
	if err != nil {
		t.Fatal(err)
	}
	risks := strings.Join(c.Risks(), "\n")
	if !strings.Contains(risks, "job.timeout (1m30s) >= retry_after (1m0s)") || !strings.Contains(risks, "set [job] timeout below retry_after") {
		t.Errorf("risks = %q", risks)
	}
	// kqueue's own default, not the admin's: said so.
	c, err = Parse("f.toml", []byte("[app]\npath = \"/a\"\n[redis]\nretry_after = 8\n"))
	if err != nil {
		t.Fatal(err)
	}
	if risks := strings.Join(c.Risks(), "\n"); !strings.Contains(risks, "kqueue's default) >= retry_after (8s)") {
		t.Errorf("risks = %q", risks)
	}
}

// A shutdown_timeout the units' TimeoutStopSec cannot hold is said, with
// the drop-in that fixes it; the default fits.
func TestRiskOfAStopLongerThanTheUnits(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		toml string
		warn bool
	}{
		{"", false},
		{"[job]\nshutdown_timeout = 300\n", true},
	} {
		cfg, err := Parse("f.toml", []byte("[app]\npath = \"/a\"\n"+c.toml))
		if err != nil {
			t.Fatal(err)
		}
		risks := strings.Join(cfg.Risks(), "\n")
		if got := strings.Contains(risks, "TimeoutStopSec"); got != c.warn {
			t.Errorf("%q: risks %q, want a TimeoutStopSec warning: %v", c.toml, risks, c.warn)
		}
	}
}

// The documented example config at the repository root is valid.
func TestExampleConfig(t *testing.T) {
	t.Parallel()
	path := filepath.Join("..", "kqueue.toml")
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err != nil {
		t.Fatal(err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("[app]\npath = \"/a\"\n[[queue]]\nname = \"x\"\nweight = 2\n[pool]\nmax_memory = \"1G\"\n"))
	f.Add([]byte("[redis]\nretry_after = \"2m\"\n"))
	f.Add([]byte("[job]\nbackoff = \"1,2\"\ntimeout = 1.5\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.toml", data)
		if err == nil && (c.App.Path == "" || len(c.Queues) == 0 || c.Pool.Workers < 1) {
			t.Fatalf("accepted an incomplete config: %+v", c)
		}
	})
}
