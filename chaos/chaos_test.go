// Package chaos is kqueue's fault-injection suite (make chaos; a short form
// runs with make test). Thousands of mixed jobs go through `kqueue poller`
// and `kqueue dispatcher` as separate processes while a driver SIGKILLs the
// poller, the dispatcher and PHP workers, restarts redis-server (AOF,
// appendfsync always) and freezes it past kqueue's timeouts. At the end
// every job is accounted for: it ran, or it sits in failed_jobs because the
// scenario made it fail. Nothing may be missing; duplicate runs are counted
// and reported with the faults that can cause them.
package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
)

// size: KQ_CHAOS_JOBS and KQ_CHAOS_FAULTS (make chaos: 10000 and 60).
func size(name string, short int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return short
}

func TestChaos(t *testing.T) {
	jobs, faults := size("KQ_CHAOS_JOBS", 1000), size("KQ_CHAOS_FAULTS", 12)
	testenv.Need(t, "redis-server", "php")
	bin := filepath.Join(t.TempDir(), "kqueue")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/kqueue").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	// The queues' Redis takes the faults; the probe that records each run
	// has a server of its own, which does not.
	r := testenv.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	probe := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	app.Env["LOG_CHANNEL"] = "null"
	app.Env["CACHE_DRIVER"] = "file"
	app.Env["KQ_PROBE_REDIS_HOST"], app.Env["KQ_PROBE_REDIS_PORT"] = probe.Socket, "0"
	// Reservations of a killed poller come back after retry_after: short.
	cfg := app.Config(t, 2, "[job]\ntries = 0\n[isolation]\ndriver = \"cgroupfs\"\nmax_concurrent = 1\n")
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(b), "[redis]\n", "[redis]\nretry_after = 5\n", 1)), 0o644)
	app.Artisan(t, "kq:dispatch", "chaos", fmt.Sprintf("--count=%d", jobs))
	start := time.Now()

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	poller := supervise(ctx, t, &wg, bin, "poller", cfg)
	dispatcher := supervise(ctx, t, &wg, bin, "dispatcher", cfg)
	defer func() { cancel(); wg.Wait() }()

	// The faults, one every 200–700 ms, each kind in turn at first.
	kinds := []string{"kill poller", "kill dispatcher", "kill a PHP worker", "restart redis", "freeze redis"}
	done := map[string]int{}
	for i := range faults {
		time.Sleep(time.Duration(200+rand.IntN(500)) * time.Millisecond) // the pace of the faults, not a wait for an event
		kind := kinds[i%len(kinds)]
		if i >= len(kinds) {
			kind = kinds[rand.IntN(len(kinds))]
		}
		switch kind {
		case "kill poller":
			poller.kill()
		case "kill dispatcher":
			dispatcher.kill()
		case "kill a PHP worker":
			if !killWorker(dispatcher.pid()) {
				kind = "kill a PHP worker (none running)"
			}
		case "restart redis":
			r.Restart(t)
		case "freeze redis":
			r.Freeze(t)
			time.Sleep(3 * time.Second) // past kqueue's 2 s Redis timeout
			r.Thaw(t)
		}
		done[kind]++
	}
	t.Logf("%d faults in %s: %v", faults, time.Since(start).Round(time.Second), done)

	// Then everything must settle: nothing ready, delayed or reserved.
	client := r.Client
	testenv.Eventually(t, 3*time.Minute, "every job settled: nothing ready, delayed or reserved", func() bool {
		n := int64(0)
		for _, k := range []string{"", ":delayed", ":reserved"} {
			key := testenv.Prefix + "queues:default" + k
			if k == "" {
				n += client.LLen(context.Background(), key).Val()
			} else {
				n += client.ZCard(context.Background(), key).Val()
			}
		}
		return n == 0
	})
	cancel()
	wg.Wait()

	// The accounting.
	runs := probe.Client.HGetAll(context.Background(), testenv.Prefix+"kqtest:runs").Val()
	failedTag := regexp.MustCompile(`s:3:(?:\\)*"tag(?:\\)*";s:\d+:(?:\\)*"([a-z]+-\d+)`)
	failed := map[string]bool{}
	for _, row := range app.Sqlite(t, "SELECT payload FROM failed_jobs") {
		if m := failedTag.FindStringSubmatch(row); m != nil {
			failed[m[1]] = true
		}
	}
	// Each attempt Laravel began (JobProcessing) or ran (handle()), by tag:
	// a number missing below the highest is an attempt counted without a
	// run. One that began and never reached handle() is a PHP worker killed
	// in between: counted apart.
	attempts := map[string][]int{}
	handled := map[string]map[int]bool{}
	for _, l := range probe.Client.LRange(context.Background(), testenv.Prefix+"kqtest:log", 0, -1).Val() {
		var rec struct {
			Kind    string `json:"kind"`
			Event   string `json:"event"`
			Tag     string `json:"tag"`
			Attempt int    `json:"attempt"`
		}
		if json.Unmarshal([]byte(l), &rec) != nil {
			continue
		}
		switch {
		case rec.Kind == "run":
			if handled[rec.Tag] == nil {
				handled[rec.Tag] = map[int]bool{}
			}
			handled[rec.Tag][rec.Attempt] = true
			attempts[rec.Tag] = append(attempts[rec.Tag], rec.Attempt)
		case rec.Kind == "event" && rec.Event == "JobProcessing":
			attempts[rec.Tag] = append(attempts[rec.Tag], rec.Attempt)
		}
	}
	var lost, wrongFail, failedUnrun, charged []string
	duplicates, cutShort := 0, 0
	for tag, as := range attempts {
		for _, a := range slices.Compact(slices.Sorted(slices.Values(as))) {
			if !handled[tag][a] && !strings.HasPrefix(tag, "fail-") {
				cutShort++
			}
		}
	}
	for tag := range failed {
		if len(attempts[tag]) == 0 {
			failedUnrun = append(failedUnrun, tag)
		}
	}
	for tag, as := range attempts {
		slices.Sort(as)
		for i, a := range slices.Compact(slices.Clone(as)) {
			if a != i+1 {
				charged = append(charged, fmt.Sprintf("%s ran as attempts %v", tag, as))
				break
			}
		}
	}
	for i := range jobs {
		tag := tagOf(i)
		n, _ := strconv.Atoi(runs[tag])
		switch {
		case strings.HasPrefix(tag, "fail-"):
			if !failed[tag] {
				lost = append(lost, tag+" (meant to fail, not in failed_jobs)")
			}
		case failed[tag]:
			wrongFail = append(wrongFail, tag)
		case n == 0:
			lost = append(lost, tag)
		case n > 1:
			duplicates += n - 1
		}
	}
	t.Logf("%d jobs: %d ran at least once, %d failed as intended, %d lost, %d failed without reason, %d failed without having run, %d charged without having run, %d duplicate runs, %d attempts begun and cut short before handle()",
		jobs, len(runs), len(failed), len(lost), len(wrongFail), len(failedUnrun), len(charged), duplicates, cutShort)
	t.Logf("an attempt is cut short between Laravel's JobProcessing and the job's handle() only by a PHP worker killed there (%d kills); it counts, as under queue:work",
		done["kill a PHP worker"])
	t.Logf("duplicates come from a process killed while its job ran: the dispatcher (%d kills) or a PHP worker (%d) "+
		"lose the outcome of what they ran, the poller (%d) its acknowledgements; those jobs run again after retry_after",
		done["kill dispatcher"], done["kill a PHP worker"], done["kill poller"])
	fmt.Printf("chaos: %d jobs, %d faults %v: %d lost, %d failed without having run, %d charged without having run, %d duplicate runs\n",
		jobs, faults, done, len(lost), len(failedUnrun), len(charged), duplicates)
	if len(lost) > 0 {
		t.Errorf("lost jobs: %v", first(lost, 20))
	}
	if len(wrongFail) > 0 {
		t.Errorf("jobs in failed_jobs that should have run: %v", first(wrongFail, 20))
	}
	if len(failedUnrun) > 0 {
		t.Errorf("failed without having run: %v", first(failedUnrun, 20))
	}
	if len(charged) > 0 {
		t.Errorf("charged without having run (an attempt number skipped): %v", first(charged, 20))
	}
}

// tagOf is the tag the chaos scenario gives job i (routes/console.php).
func tagOf(i int) string {
	switch i % 100 {
	case 0, 50:
		return fmt.Sprintf("fail-%d", i)
	case 1:
		return fmt.Sprintf("slow-%d", i)
	case 2:
		return fmt.Sprintf("iso-%d", i)
	}
	return fmt.Sprintf("rec-%d", i)
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }

// process is one kqueue process kept running, as systemd would with
// Restart=always.
type process struct {
	mu  sync.Mutex
	cmd *exec.Cmd
}

func supervise(ctx context.Context, t *testing.T, wg *sync.WaitGroup, bin, role, cfg string) *process {
	p := &process{}
	logf, err := os.Create(filepath.Join(t.TempDir(), role+".log"))
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer logf.Close()
		once := sync.OnceFunc(func() { close(started) })
		for ctx.Err() == nil {
			cmd := exec.CommandContext(ctx, bin, role, "--config", cfg)
			cmd.Stdout, cmd.Stderr = logf, logf
			if err := cmd.Start(); err != nil {
				t.Errorf("start %s: %v", role, err)
				return
			}
			p.mu.Lock()
			p.cmd = cmd
			p.mu.Unlock()
			once()
			cmd.Wait()
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond): // RestartSec
			}
		}
	}()
	<-started
	return p
}

func (p *process) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cmd.Process.Signal(syscall.SIGKILL)
}

func (p *process) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// killWorker SIGKILLs one PHP worker of the dispatcher, if it has one.
func killWorker(dispatcher int) bool {
	entries, _ := os.ReadDir("/proc")
	var workers []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(dispatcher) {
			workers = append(workers, pid)
		}
	}
	if len(workers) == 0 {
		return false
	}
	return syscall.Kill(workers[rand.IntN(len(workers))], syscall.SIGKILL) == nil
}
