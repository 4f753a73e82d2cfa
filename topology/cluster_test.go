package topology

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
)

// TestCluster: kqueue and `queue:work` share queues with hash tags, {emails}
// and {default}, on a Redis Cluster of three masters; the app dispatches
// through phpredis' RedisCluster. Every job runs once, delayed ones too,
// and a queue name without a hash tag is refused before anything runs.
func TestCluster(t *testing.T) {
	t.Parallel()
	bin := kqueueBinary(t)
	cluster := testenv.StartCluster(t, 3)
	probe := testenv.StartRedis(t)
	app := testenv.NewApp(t, probe)
	app.Env["REDIS_CLUSTER_NODES"] = strings.Join(cluster.Addrs(), ",")
	app.Env["KQ_PROBE_REDIS_HOST"], app.Env["KQ_PROBE_REDIS_PORT"] = probe.Socket, "0"
	app.Env["CACHE_DRIVER"] = "file"
	app.Env["LOG_CHANNEL"] = "null"
	ctx := t.Context()

	// The two queues live on different masters: kqueue works across slots.
	slots := map[string]int64{}
	for _, q := range []string{"{emails}", "{default}"} {
		slots[q] = cluster.Client.ClusterKeySlot(ctx, testenv.Prefix+"queues:"+q).Val()
	}
	owner := func(slot int64) string {
		for _, s := range cluster.Client.ClusterSlots(ctx).Val() {
			if int64(s.Start) <= slot && slot <= int64(s.End) {
				return s.Nodes[0].Addr
			}
		}
		return "?"
	}
	if owner(slots["{emails}"]) == owner(slots["{default}"]) {
		t.Fatalf("{emails} and {default} are served by one master (%v): the test would not cross nodes", slots)
	}

	redisTOML := fmt.Sprintf("cluster = [%q]\nretry_after = 12", cluster.Addrs()[0]) // one seed: the rest are found
	queues := "[[queue]]\nname = \"{emails}\"\n[[queue]]\nname = \"{default}\"\n"
	extra := "[pool]\nworkers = 2\n[job]\ntries = 0\n"

	// A queue without a hash tag is a config error, named.
	bad := writeConfig(t, app, "bad", redisTOML, "[[queue]]\nname = \"default\"\n"+extra)
	out, err := exec.Command(bin, "run", "--config", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `queue[0].name: queue "default" has no hash tag`) {
		t.Errorf("kqueue run with queue \"default\" on a cluster: %v\n%s", err, out)
	}

	began := time.Now()
	app.Artisan(t, "kq:dispatch", "record", "--count=300", "--queue={emails}")
	app.Artisan(t, "kq:dispatch", "record", "--count=300", "--from=300", "--queue={default}")
	app.Artisan(t, "kq:dispatch", "due", "--count=24", "--queue={default}")
	want := append(tags("record", 0, 600), tags("due", 0, 24)...)

	cfg := writeConfig(t, app, "kq", redisTOML, queues+extra)
	kq := start(t, "kqueue run", exec.Command(bin, "run", "--config", cfg))
	worker := start(t, "queue:work", app.Command(context.Background(), "queue:work", "--queue={emails},{default}", "--tries=0", "--sleep=1"))
	runs := testenv.Prefix + "kqtest:runs"
	testenv.Eventually(t, 90*time.Second, "every job to run and the queues to empty", func() bool {
		if done, err := kq.exited(); done {
			t.Fatalf("kqueue run exited: %v", err)
		}
		return probe.Client.HLen(ctx, runs).Val() >= int64(len(want)) &&
			queued(ctx, cluster.Client, "{emails}") == 0 && queued(ctx, cluster.Client, "{default}") == 0
	})
	kq.stop(t)
	worker.stop(t)

	a := settle(t, probe.Client, want, func([]run, int) string { return "unexplained (no fault was injected)" })
	byKQueue := testenv.JobsDone(kq.out.String())
	t.Logf("cluster of 3 masters, {emails} in slot %d, {default} in slot %d: %s in %s; kqueue ran %d, queue:work the rest",
		slots["{emails}"], slots["{default}"], a, time.Since(began).Round(time.Millisecond), byKQueue)
	if len(a.lost) > 0 || a.duplicateRuns() > 0 {
		t.Errorf("%s; lost: %v", a, a.lost[:min(len(a.lost), 20)])
	}
	if byKQueue == 0 {
		t.Errorf("kqueue ran no job")
	}
	if strings.Contains(kq.out.String(), "level=ERROR") {
		t.Errorf("kqueue logged errors (CROSSSLOT?)")
	}
	early, late := lateness(a, "due-")
	t.Logf("delayed jobs ran %.3f s to %.3f s after they were due", early, late)
	if early < -1 || late > 5 {
		t.Errorf("delayed jobs ran from %.3f s to %.3f s after they were due, want within [-1, 5]", early, late)
	}
}
