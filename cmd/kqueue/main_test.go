package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// kqueue runs `kqueue args…` in this process and returns its log.
func kqueue(t *testing.T, ctx context.Context, args ...string) (string, error) {
	t.Helper()
	var logs testenv.SyncBuffer
	err := run(ctx, args, io.Discard, &logs)
	return logs.String(), err
}

// background runs `kqueue args…` until ctx is done; wait returns its log
// and its error.
func background(t *testing.T, ctx context.Context, args ...string) (wait func() (string, error)) {
	type result struct {
		logs string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		logs, err := kqueue(t, ctx, args...)
		ch <- result{logs, err}
	}()
	return func() (string, error) {
		r := <-ch
		return r.logs, r.err
	}
}

// queueSize is Laravel's size(): ready + delayed + reserved.
func queueSize(t *testing.T, rdb *redis.Client, queue string) int64 {
	t.Helper()
	ctx := context.Background()
	k := testenv.Prefix + "queues:" + queue
	n := rdb.LLen(ctx, k).Val() + rdb.ZCard(ctx, k+":delayed").Val() + rdb.ZCard(ctx, k+":reserved").Val()
	return n
}

// drain runs one pass of a runner until the queue is empty, re-running it
// while delayed jobs remain (a --stop-when-empty pass ends at the first empty
// poll, as in Laravel).
func drain(t *testing.T, rdb *redis.Client, queue string, pass func() error) {
	t.Helper()
	drainUntil(t, func() int64 { return queueSize(t, rdb, queue) }, pass)
}

// queueWork is one `php artisan queue:work --stop-when-empty args…` pass;
// its error carries what it printed.
func queueWork(ctx context.Context, app *testenv.App, args ...string) error {
	out, err := app.Command(ctx, append([]string{"queue:work", "--stop-when-empty"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("queue:work: %v\n%s", err, out)
	}
	return nil
}

// drainUntil is drain on a queue that holds left() jobs.
func drainUntil(t *testing.T, left func() int64, pass func() error) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, "queue drained", func() bool {
		if left() == 0 {
			return true
		}
		if err := pass(); err != nil {
			t.Fatal(err)
		}
		return left() == 0
	})
}

// jobsTable lists the rows of a database queue's jobs table: queue,
// attempts, whether reserved, and the job's display name.
func jobsTable(t *testing.T, db *testenv.DB) []string {
	t.Helper()
	rows, err := db.SQL.Query("SELECT queue, attempts, reserved_at IS NULL, payload FROM jobs")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var queue, payload string
		var attempts int
		var free bool
		if err := rows.Scan(&queue, &attempts, &free, &payload); err != nil {
			t.Fatal(err)
		}
		var p struct{ DisplayName string }
		json.Unmarshal([]byte(payload), &p)
		out = append(out, fmt.Sprintf("jobs %s attempts=%d free=%v %s", queue, attempts, free, p.DisplayName))
	}
	sort.Strings(out)
	return out
}

// probeLog returns the fixture's records grouped by job tag, in order.
func probeLog(t *testing.T, rdb *redis.Client) map[string][]string {
	t.Helper()
	lines := rdb.LRange(context.Background(), testenv.Prefix+"kqtest:log", 0, -1).Val()
	byTag := map[string][]string{}
	for _, l := range lines {
		var rec struct {
			Tag string `json:"tag"`
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("bad probe record %q: %v", l, err)
		}
		byTag[rec.Tag] = append(byTag[rec.Tag], l)
	}
	return byTag
}

// redisState lists every key but the probe's and kqueue's records for its
// console (its instances, job history and tallies: kqueue's, not the
// queues') with its type and size.
func redisState(t *testing.T, rdb *redis.Client) []string {
	t.Helper()
	ctx := context.Background()
	var state []string
	for _, db := range []int{0, 1} {
		c := redis.NewClient(&redis.Options{Network: "unix", Addr: rdb.Options().Addr, DB: db})
		for _, k := range c.Keys(ctx, "*").Val() {
			if strings.Contains(k, "kqtest:") || strings.Contains(k, "kqueue:instances") ||
				strings.Contains(k, "kqueue:jobs") || strings.Contains(k, "kqueue:tally:") {
				continue
			}
			typ := c.Type(ctx, k).Val()
			var n int64
			switch typ {
			case "list":
				n = c.LLen(ctx, k).Val()
			case "zset":
				n = c.ZCard(ctx, k).Val()
			case "string":
				n = 1
			}
			state = append(state, fmt.Sprintf("db%d %s %s %d", db, typ, k, n))
		}
		c.Close()
	}
	sort.Strings(state)
	return state
}

// failedJobs reads failed_jobs, normalised so two runs compare: no ids or
// times, payload without uuid/id/retryUntil/createdAt values (createdAt:
// Laravel 12.11+), and each exception cut just before the frame where the
// runner called Worker::process.
func failedJobs(t *testing.T, app *testenv.App) []string {
	t.Helper()
	rows := app.Sqlite(t, "SELECT connection, queue, payload, exception FROM failed_jobs")
	var out []string
	for _, r := range rows {
		var cols []string
		if err := json.Unmarshal([]byte(r), &cols); err != nil {
			t.Fatal(err)
		}
		var p map[string]any
		if err := json.Unmarshal([]byte(cols[2]), &p); err != nil {
			t.Fatalf("failed_jobs payload is not JSON: %v", err)
		}
		p["uuid"], p["id"] = "-", "-"
		for _, k := range []string{"retryUntil", "createdAt"} {
			if p[k] != nil {
				p[k] = "set"
			}
		}
		if data, ok := p["data"].(map[string]any); ok {
			if cmd, ok := data["command"].(string); ok {
				data["command"] = timestamps.ReplaceAllString(cmd, "i:<time>;")
			}
		}
		pj, _ := json.Marshal(p)
		exc := cols[3]
		if i := strings.Index(exc, "Illuminate\\Queue\\Worker->process()"); i >= 0 {
			exc = exc[:strings.LastIndex(exc[:i], "\n")]
		}
		out = append(out, strings.Join([]string{cols[0], cols[1], string(pj), exc}, "\n"))
	}
	sort.Strings(out)
	return out
}

// timestamps matches Unix times serialized in a job's command.
var timestamps = regexp.MustCompile(`i:1[0-9]{9};`)

func TestMain(m *testing.M) {
	// The host's CA bundle (some hosts name it in AWS_CA_BUNDLE) is not in
	// the chroots; the tests' SQS server is plain HTTP.
	os.Unsetenv("AWS_CA_BUNDLE")
	goleak.VerifyTestMain(m)
}

// Each command's --help describes that command (on stdout, exit 0); an
// unknown command is an error, even with --help (exit 2).
func TestCommandHelp(t *testing.T) {
	t.Parallel()
	for cmd := range commandHelp {
		var out strings.Builder
		if err := run(context.Background(), []string{cmd, "--help"}, &out, io.Discard); err != nil {
			t.Errorf("kqueue %s --help: %v", cmd, err)
		}
		if !strings.HasPrefix(out.String(), "Usage: kqueue "+cmd+" ") || !strings.Contains(out.String(), "--config FILE") {
			t.Errorf("kqueue %s --help printed:\n%s", cmd, out.String())
		}
	}
	var stderr strings.Builder
	err := run(context.Background(), []string{"nonsense", "--help"}, io.Discard, &stderr)
	if !errors.Is(err, errUnknownCommand) || !strings.Contains(stderr.String(), "Usage:") {
		t.Errorf("kqueue nonsense --help: %v, want unknown command and the usage", err)
	}
}

// kqueue generator (systemd's generator for kqueue) writes each instance's
// sandbox drop-in from /etc/kqueue/NAME.toml, and says which config it
// could not read.
func TestGenerator(t *testing.T) {
	etc, out := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(etc, "web.toml"), []byte("[app]\npath = \"/srv/web\"\nuser = \"www-data\"\nwritable = [\"database\"]\n"), 0o644)
	os.WriteFile(filepath.Join(etc, "broken.toml"), []byte("[app]\n"), 0o644)
	t.Setenv("KQUEUE_CONFIG_DIR", etc)
	err := run(context.Background(), []string{"generator", out, out, out}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "broken.toml") {
		t.Errorf("generator: %v, want an error naming broken.toml", err)
	}
	got, err := os.ReadFile(filepath.Join(out, "kqueue-dispatcher@web.service.d", "50-kqueue-sandbox.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ReadWritePaths=-/srv/web/storage\n", "ReadWritePaths=-/srv/web/bootstrap/cache\n", "ReadWritePaths=-/srv/web/database\n"} {
		if !strings.Contains(string(got), want) {
			t.Errorf("drop-in lacks %q:\n%s", want, got)
		}
	}
	// The console runs as the app's user, with the same writable paths.
	web, err := os.ReadFile(filepath.Join(out, "kqueue-web@web.service.d", "50-kqueue-sandbox.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if want := string(got) + "User=www-data\n"; string(web) != want {
		t.Errorf("the console's drop-in:\n%s\nwant:\n%s", web, want)
	}
}
