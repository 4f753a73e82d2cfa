package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// A queue's fleet_max_running holds across kqueue instances: two of them,
// three workers each, on a queue capped at 3 never run more than 3 of its
// jobs at once, by the jobs' own start and end records. When one of them
// is killed with its share in hand, the other takes that share once the
// dead one's reservations lapse (retry_after), and no sooner.
func TestFleetCapHoldsAcrossInstances(t *testing.T) {
	bin := buildKqueue(t)
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	app.Env["LOG_CHANNEL"] = "null"
	const retryAfter = 4 * time.Second
	cfgA := app.Config(t, 3, "[[queue]]\nname = \"default\"\nretry_after = 4\nfleet_max_running = 3\n")
	cfgB := secondInstance(t, cfgA, "b")
	ctx := t.Context()
	start := func(cfg string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, bin, "run", "--config", cfg)
		var logs testenv.SyncBuffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			if t.Failed() {
				t.Logf("%s:\n%s", filepath.Base(cfg), logs.String())
			}
		})
		return cmd
	}
	a, b := start(cfgA), start(cfgB)

	// Short jobs: six workers, at most three of the queue's jobs at once.
	const n = 24
	app.Artisan(t, "kq:dispatch", "spans", "--count=24")
	testenv.Eventually(t, 60*time.Second, "every short job to end", func() bool { return len(spanEnds(t, r.Client)) == n })
	if most := mostAtOnce(spans(t, r.Client), time.Time{}); most != 3 {
		t.Fatalf("at most %d jobs ran at once, want 3 (the cap, with 6 workers free)", most)
	}

	// Held jobs: three run and hold the whole share; three more wait.
	r.Client.Del(ctx, testenv.Prefix+"kqtest:spans")
	app.Artisan(t, "kq:dispatch", "spans", "--count=6", "--from=-1")
	testenv.Eventually(t, 30*time.Second, "three held jobs to start", func() bool { return len(spanStarts(t, r.Client)) == 3 })
	testenv.Never(t, time.Second, "a fourth job to start while three hold the cap", func() bool { return len(spanStarts(t, r.Client)) > 3 })

	// The instance holding held jobs is killed (the one with more); the
	// jobs its workers ran stay reserved until their leases lapse.
	held := map[*exec.Cmd]int{}
	for _, c := range []*exec.Cmd{a, b} {
		pids := workerPIDs(t, c.Process.Pid)
		for _, s := range spanStarts(t, r.Client) {
			if pids[s.PID] {
				held[c]++
			}
		}
	}
	victim := a
	if held[b] > held[a] {
		victim = b
	}
	killed := time.Now()
	victim.Process.Signal(syscall.SIGKILL)
	victim.Wait()
	t.Logf("killed the instance holding %d of the 3 (the other holds %d)", held[victim], 3-held[victim])
	testenv.Eventually(t, retryAfter+5*time.Second, "B to take the dead instance's share", func() bool {
		return len(spanStarts(t, r.Client)) >= 3+held[victim]
	})
	freed := time.Since(killed)
	var first time.Time
	for _, s := range spanStarts(t, r.Client)[3:] {
		if first.IsZero() || s.At.Before(first) {
			first = s.At
		}
	}
	// A lease is renewed every third of retry_after, and Redis keeps it
	// in whole seconds: it lapses a third of retry_after after the kill at
	// the soonest.
	if early := first.Sub(killed); early < retryAfter/3 {
		t.Fatalf("B started a job %s after the kill, before the dead instance's reservations lapsed (%s)", early, retryAfter)
	}
	t.Logf("the dead instance's share was free again %s after the kill (retry_after %s)", freed.Round(100*time.Millisecond), retryAfter)
	for range 12 {
		r.Client.RPush(ctx, testenv.Prefix+"kqtest:go", "go")
	}
	testenv.Eventually(t, 60*time.Second, "the queue to drain", func() bool { return queueSize(t, r.Client, "default") == 0 })
	if most := mostAtOnce(spans(t, r.Client), killed); most > 3 {
		t.Fatalf("%d jobs ran at once after the kill, over the cap of 3", most)
	}
}

// secondInstance writes a copy of the config at path for another instance
// of the same app: its own name and sockets.
func secondInstance(t *testing.T, path, name string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer("kqueue.sock", "kqueue-"+name+".sock", "kqueue.control", "kqueue-"+name+".control").Replace(string(data))
	out := filepath.Join(filepath.Dir(path), "kqueue-"+name+".toml")
	if err := os.WriteFile(out, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// span is one edge of a Span job's run.
type span struct {
	Tag  string
	Edge string
	At   time.Time
	PID  int
}

func spans(t *testing.T, rdb *redis.Client) []span {
	t.Helper()
	var out []span
	for _, raw := range rdb.LRange(context.Background(), testenv.Prefix+"kqtest:spans", 0, -1).Val() {
		var e struct {
			Tag, Edge string
			At        float64
			PID       int
		}
		if err := json.Unmarshal([]byte(raw), &e); err != nil {
			t.Fatalf("span record %q: %v", raw, err)
		}
		out = append(out, span{e.Tag, e.Edge, time.UnixMicro(int64(e.At * 1e6)), e.PID})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

func spanStarts(t *testing.T, rdb *redis.Client) []span { return edges(spans(t, rdb), "start") }
func spanEnds(t *testing.T, rdb *redis.Client) []span   { return edges(spans(t, rdb), "end") }

func edges(all []span, edge string) []span {
	var out []span
	for _, s := range all {
		if s.Edge == edge {
			out = append(out, s)
		}
	}
	return out
}

// mostAtOnce is the most jobs that ran at once among those that started
// after since: starts and ends in time order, an end at the same moment
// as a start first.
func mostAtOnce(all []span, since time.Time) int {
	started := map[string]bool{}
	n, most := 0, 0
	for _, s := range all {
		switch {
		case s.Edge == "start" && s.At.After(since):
			started[s.Tag] = true
			n++
			most = max(most, n)
		case s.Edge == "end" && started[s.Tag]:
			delete(started, s.Tag)
			n--
		}
	}
	return most
}

// workerPIDs are the PIDs of the processes whose parent is pid.
func workerPIDs(t *testing.T, pid int) map[int]bool {
	t.Helper()
	out, err := exec.Command("pgrep", "-P", strconv.Itoa(pid)).Output()
	if err != nil {
		t.Fatalf("pgrep -P %d: %v", pid, err)
	}
	pids := map[int]bool{}
	for _, f := range strings.Fields(string(out)) {
		p, _ := strconv.Atoi(f)
		pids[p] = true
	}
	return pids
}
