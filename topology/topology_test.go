// Package topology runs kqueue where Laravel apps run at scale: several
// hosts (network namespaces, with their clocks skewed) sharing one Redis
// with `queue:work`, a Redis Cluster of three masters, and a
// Sentinel-managed primary that fails over in the middle of a run. Every
// test ends with the reliability accounting of the chaos suite: every job
// ran (none lost), and every duplicate run is counted with its cause.
package topology

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
	"github.com/redis/go-redis/v9"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// kqueueBinary builds cmd/kqueue once for the package.
func kqueueBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kqtopo")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "kqueue")
		if out, err := exec.Command("go", "build", "-o", binary, "../cmd/kqueue").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binary != "" {
		os.RemoveAll(filepath.Dir(binary))
	}
	os.Exit(code)
}

// writeConfig writes a kqueue.toml for app at path: [redis] as given (the
// prefix is the fixture's), the app's environment, private sockets, and
// extra tables.
func writeConfig(t *testing.T, app *testenv.App, name, redisTOML, extra string) string {
	t.Helper()
	dir := filepath.Join(filepath.Dir(app.Path), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[app]\npath = %q\n[app.env]\n", app.Path)
	for k, v := range app.Env {
		fmt.Fprintf(&b, "%s = %q\n", k, v)
	}
	fmt.Fprintf(&b, "[redis]\n%s\n", redisTOML)
	fmt.Fprintf(&b, "[dispatcher]\nsocket = %q\n", filepath.Join(dir, "kqueue.sock"))
	fmt.Fprintf(&b, "[control]\nsocket = %q\n", filepath.Join(dir, "kqueue.control"))
	b.WriteString(extra)
	path := filepath.Join(dir, name+".toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// proc is a process of the test (kqueue or queue:work), stopped with
// SIGTERM at the end.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *testenv.SyncBuffer
	done chan struct{}
	err  error
}

// start runs cmd until stop, logging its output when the test fails.
func start(t *testing.T, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{name: name, cmd: cmd, out: &testenv.SyncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("%s output:\n%s", name, tail(p.out.String(), 6000))
		}
	})
	return p
}

// stop sends SIGTERM and waits (SIGKILL after 30 s).
func (p *proc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not stop on SIGTERM within 30 s", p.name)
		p.cmd.Process.Kill()
		<-p.done
	}
}

// exited tells whether the process ended, and how.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// run is one execution of a job, as App\Probe logs it.
type run struct {
	Kind    string `json:"kind"`
	Tag     string `json:"tag"`
	Attempt int    `json:"attempt"`
	Note    string `json:"note"`
}

// account is the reliability accounting: each tag must have run; runs
// past the first are duplicates, each given a cause by explain.
type account struct {
	jobs       int
	lost       []string
	duplicates map[string][]string // cause → tags
	runs       map[string][]run
}

func (a account) String() string {
	n := 0
	var causes []string
	for c, tags := range a.duplicates {
		n += len(tags)
		causes = append(causes, fmt.Sprintf("%d %s (%s)", len(tags), c, strings.Join(tags[:min(len(tags), 5)], ",")))
	}
	sort.Strings(causes)
	s := fmt.Sprintf("%d jobs, %d lost, %d duplicate runs", a.jobs, len(a.lost), n)
	if len(causes) > 0 {
		s += ": " + strings.Join(causes, "; ")
	}
	return s
}

func (a account) duplicateRuns() int {
	n := 0
	for _, tags := range a.duplicates {
		n += len(tags)
	}
	return n
}

// settle reads the probe's log for the tags; explain names the cause of
// one duplicate run (the job's runs in order, the index of the repeat).
func settle(t *testing.T, probe *redis.Client, tags []string, explain func(runs []run, i int) string) account {
	t.Helper()
	ctx := context.Background()
	entries, err := probe.LRange(ctx, testenv.Prefix+"kqtest:log", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	a := account{jobs: len(tags), duplicates: map[string][]string{}, runs: map[string][]run{}}
	for _, e := range entries {
		var r run
		if json.Unmarshal([]byte(e), &r) == nil && r.Kind == "run" {
			a.runs[r.Tag] = append(a.runs[r.Tag], r)
		}
	}
	for _, tag := range tags {
		rs := a.runs[tag]
		if len(rs) == 0 {
			a.lost = append(a.lost, tag)
		}
		for i := 1; i < len(rs); i++ {
			c := explain(rs, i)
			a.duplicates[c] = append(a.duplicates[c], tag)
		}
	}
	return a
}

// tags are the tags a kq:dispatch scenario gives count jobs from from.
func tags(scenario string, from, count int) []string {
	var out []string
	for i := from; i < from+count; i++ {
		out = append(out, fmt.Sprintf("%s-%d", scenario, i))
	}
	return out
}

// queued is what a Laravel queue holds: ready, delayed and reserved.
func queued(ctx context.Context, rdb redis.UniversalClient, queue string) int64 {
	k := testenv.Prefix + "queues:" + queue
	pipe := rdb.Pipeline()
	l := pipe.LLen(ctx, k)
	d := pipe.ZCard(ctx, k+":delayed")
	r := pipe.ZCard(ctx, k+":reserved")
	if _, err := pipe.Exec(ctx); err != nil {
		return -1
	}
	return l.Val() + d.Val() + r.Val()
}

// needRoot: network namespaces need root. Under CI the test must run.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root (network namespaces); CI must run it as root")
	}
	t.Skip("needs root for network namespaces")
}

// lateness is the range of how late the jobs whose tags start with prefix
// ran, by the probe's clock (App\Jobs\Due), over their first runs.
func lateness(a account, prefix string) (early, late float64) {
	early, late = math.Inf(1), math.Inf(-1)
	for tag, rs := range a.runs {
		if !strings.HasPrefix(tag, prefix) {
			continue
		}
		f, err := strconv.ParseFloat(rs[0].Note, 64)
		if err != nil {
			continue
		}
		early, late = min(early, f), max(late, f)
	}
	return early, late
}
