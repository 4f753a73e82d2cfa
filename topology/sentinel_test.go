package topology

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
)

// TestSentinelFailover: kqueue follows a Sentinel-managed primary through
// a failover in the middle of a run (SENTINEL FAILOVER: the replica is
// promoted, the old primary made its replica). Nothing is lost. Writes
// kqueue made on the old primary after the promotion never reach the new
// one (replication is asynchronous), so a job may run again: a reserve
// that did not reach it leaves the job ready there (it runs again as
// attempt 1), an outcome that did not reach it leaves the job reserved
// there (it runs again after retry_after, as attempt 2). Each duplicate is
// counted under its cause.
//
// The producer is the app itself, on the current primary: Laravel 8's
// phpredis connector has no Sentinel support (only Predis, which Debian
// does not ship, has it), so the test asks Sentinel for the primary, as
// an app's deployment would, and points REDIS_HOST/REDIS_PORT at it. Jobs
// are dispatched before the failover (and known to be on the replica
// before it is promoted) and after it, on the new primary: a job pushed to
// a primary that is losing its role would be the producer's loss, not
// kqueue's.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	bin := kqueueBinary(t)
	s := testenv.StartSentinel(t)
	probe := testenv.StartRedis(t)
	app := testenv.NewApp(t, probe)
	app.Env["KQ_PROBE_REDIS_HOST"], app.Env["KQ_PROBE_REDIS_PORT"] = probe.Socket, "0"
	app.Env["CACHE_DRIVER"] = "file"
	app.Env["LOG_CHANNEL"] = "null"
	ctx := t.Context()
	produce := func(args ...string) {
		t.Helper()
		addr, err := s.PrimaryAddr(ctx)
		if err != nil {
			t.Fatal(err)
		}
		host, port, _ := strings.Cut(addr, ":")
		app.Env["REDIS_HOST"], app.Env["REDIS_PORT"] = host, port
		app.Artisan(t, append([]string{"kq:dispatch"}, args...)...)
	}

	const half = 200
	began := time.Now()
	produce("paced", fmt.Sprint("--count=", half))
	// On the replica before anything else happens: a write, then WAIT.
	primary := s.Primary.Client(t)
	primary.Set(ctx, "kqtest:marker", "1", 0)
	if n, err := primary.Wait(ctx, 1, 10*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT for the replica: %d, %v", n, err)
	}

	redisTOML := fmt.Sprintf("sentinel_master = %q\nsentinels = [%q]\nretry_after = 5", s.Master, s.Sentinel.Addr)
	cfg := writeConfig(t, app, "kq", redisTOML, "[pool]\nworkers = 2\n[job]\ntries = 0\n")
	kq := start(t, "kqueue run", exec.Command(bin, "run", "--config", cfg))
	runs := testenv.Prefix + "kqtest:runs"
	testenv.Eventually(t, 60*time.Second, "a third of the first jobs to run", func() bool {
		return probe.Client.HLen(ctx, runs).Val() >= half/3
	})

	failedOver := time.Now()
	if err := s.Client.Failover(ctx, s.Master).Err(); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	replica := s.Replica.Client(t)
	testenv.Eventually(t, 30*time.Second, "the replica to be promoted and announced", func() bool {
		addr, err := s.PrimaryAddr(ctx)
		role, _ := replica.Do(ctx, "ROLE").Slice()
		return err == nil && addr == s.Replica.Addr && len(role) > 0 && role[0] == "master"
	})
	ranAtSwitch := probe.Client.HLen(ctx, runs).Val()
	t.Logf("failover: %s promoted in %s, %d jobs had run", s.Replica.Addr, time.Since(failedOver).Round(time.Millisecond), ranAtSwitch)
	if ranAtSwitch >= half {
		t.Errorf("every first job had run before the failover ended: it was not in the middle of the run")
	}
	produce("paced", fmt.Sprint("--count=", half), fmt.Sprint("--from=", half))

	testenv.Eventually(t, 90*time.Second, "every job to run and the queue to empty on the new primary", func() bool {
		if done, err := kq.exited(); done {
			t.Fatalf("kqueue run exited: %v", err)
		}
		return probe.Client.HLen(ctx, runs).Val() >= 2*half && queued(ctx, replica, "default") == 0
	})
	// The old primary is the new one's replica by now, or soon: then it
	// holds the same (empty) queue.
	old := s.Primary.Client(t)
	testenv.Eventually(t, 30*time.Second, "the old primary to follow the new one", func() bool {
		role, _ := old.Do(ctx, "ROLE").Slice()
		return len(role) > 0 && role[0] == "slave" && queued(ctx, old, "default") == 0
	})
	kq.stop(t)

	a := settle(t, probe.Client, tags("paced", 0, 2*half), func(rs []run, i int) string {
		switch {
		case rs[i].Attempt == 1:
			return "reserved on the old primary after the promotion (the job stayed ready on the new one)"
		case rs[i].Attempt > rs[i-1].Attempt:
			return "outcome written to the old primary after the promotion (the reservation expired on the new one)"
		}
		return "unexplained"
	})
	t.Logf("sentinel failover mid-run: %s in %s", a, time.Since(began).Round(time.Millisecond))
	if len(a.lost) > 0 {
		t.Errorf("lost: %v", a.lost[:min(len(a.lost), 20)])
	}
	if n := len(a.duplicates["unexplained"]); n > 0 {
		t.Errorf("%d duplicate runs without a cause: %v", n, a.duplicates["unexplained"])
	}
	if rows := app.Sqlite(t, "SELECT uuid FROM failed_jobs"); len(rows) != 0 {
		t.Errorf("%d jobs failed", len(rows))
	}
}
