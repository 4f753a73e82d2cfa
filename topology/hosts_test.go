package topology

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
)

// host is a network namespace joined to the test's root namespace by a
// veth pair: a machine of its own as far as the network goes.
type host struct {
	ns      string
	ip      string // its address
	gateway string // the root namespace's end, where Redis listens
}

// hosts makes n network namespaces, each with a /30 link to the root
// namespace, and removes them at cleanup.
func hosts(t *testing.T, n int) []host {
	t.Helper()
	testenv.Need(t, "ip")
	id, net := rand.IntN(1<<16), rand.IntN(256)
	var hs []host
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for i := range n {
		h := host{
			ns:      fmt.Sprintf("kq%04x-h%d", id, i),
			gateway: fmt.Sprintf("10.213.%d.%d", net, 4*i+1),
			ip:      fmt.Sprintf("10.213.%d.%d", net, 4*i+2),
		}
		veth := fmt.Sprintf("kq%04xh%d", id, i)
		ip("netns", "add", h.ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", h.ns).Run() })
		ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
		ip("addr", "add", h.gateway+"/30", "dev", veth)
		ip("link", "set", veth, "up")
		ip("-n", h.ns, "addr", "add", h.ip+"/30", "dev", "eth0")
		ip("-n", h.ns, "link", "set", "eth0", "up")
		ip("-n", h.ns, "link", "set", "lo", "up")
		hs = append(hs, h)
	}
	return hs
}

// command runs name args… on the host (ip netns exec) with env added.
func (h host) command(dir string, env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.ns, name}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// TestHostsWithSkewedClocks: two kqueue instances and a `queue:work` on
// three hosts (network namespaces) share one Redis over TCP, their clocks
// off by +3 s, -3 s and +2 s (kqueue: KQUEUE_FAULT_CLOCK_OFFSET; queue:work:
// libfaketime). retry_after is 12 s, so reservations, as each host
// reckons them, disagree by up to half of it.
//
//   - Reservations and leases: the host whose clock is behind holds two
//     jobs of 14 s, longer than retry_after, while the host whose clock is
//     ahead keeps polling their queue (and so migrating what it takes for
//     expired reservations). kqueue's leases (extended every retry_after/3)
//     keep them: each runs once.
//   - Immediate jobs of 50 ms: shared between the three, each runs once.
//   - Then delayed jobs fall due on the idle queue while all three hosts
//     poll: each runs once, no earlier than the most advanced clock
//     allows (3 s).
func TestHostsWithSkewedClocks(t *testing.T) {
	t.Parallel()
	needRoot(t)
	testenv.Need(t, "faketime")
	libfaketime := "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
	if _, err := os.Stat(libfaketime); err != nil {
		t.Fatalf("libfaketime is not installed: apt-get install faketime (%v)", err)
	}
	bin := kqueueBinary(t)
	hs := hosts(t, 3)
	ahead, behind, worker := hs[0], hs[1], hs[2]
	port := testenv.FreePort(t)
	bind := "127.0.0.1"
	for _, h := range hs {
		bind += " " + h.gateway
	}
	r := testenv.StartRedis(t, "--port", fmt.Sprint(port), "--bind", bind, "--protected-mode", "no")
	probe := testenv.StartRedis(t) // on a unix socket: every namespace reaches it
	app := testenv.NewApp(t, r)    // the producer: the root namespace, on the unix socket
	app.Env["KQ_PROBE_REDIS_HOST"], app.Env["KQ_PROBE_REDIS_PORT"] = probe.Socket, "0"
	app.Env["CACHE_DRIVER"] = "file"
	app.Env["LOG_CHANNEL"] = "null"
	app.Env["REDIS_RETRY_AFTER"] = "12"
	ctx := t.Context()

	// kqueue on a host: its PHP workers reach Redis over the host's link.
	kqueueOn := func(h host, name, offset string, workers int, queues ...string) *proc {
		t.Helper()
		producer := app.Env["REDIS_HOST"]
		app.Env["REDIS_HOST"], app.Env["REDIS_PORT"] = h.gateway, fmt.Sprint(port)
		var extra strings.Builder
		for _, q := range queues {
			fmt.Fprintf(&extra, "[[queue]]\nname = %q\n", q)
		}
		fmt.Fprintf(&extra, "[pool]\nworkers = %d\n[job]\ntries = 0\n", workers)
		cfg := writeConfig(t, app, name, fmt.Sprintf("url = \"redis://%s:%d/0\"\nretry_after = 12", h.gateway, port), extra.String())
		app.Env["REDIS_HOST"], app.Env["REDIS_PORT"] = producer, "0"
		return start(t, name, h.command("", []string{"KQUEUE_FAULT_CLOCK_OFFSET=" + offset}, bin, "run", "--config", cfg))
	}

	began := time.Now()
	app.Artisan(t, "kq:dispatch", "long", "--count=2", "--queue=long")
	// The host behind takes the long jobs, and has room for more.
	kqBehind := kqueueOn(behind, "behind", "-3s", 3, "long", "default")
	testenv.Eventually(t, 60*time.Second, "the host behind to reserve both long jobs", func() bool {
		return r.Client.ZCard(ctx, testenv.Prefix+"queues:long:reserved").Val() == 2
	})
	kqAhead := kqueueOn(ahead, "ahead", "3s", 2, "default", "long")
	env := []string{
		"REDIS_HOST=" + worker.gateway, fmt.Sprintf("REDIS_PORT=%d", port),
		"LD_PRELOAD=" + libfaketime, "FAKETIME=+2s", "FAKETIME_DONT_FAKE_MONOTONIC=1",
	}
	for k, v := range app.Env {
		if k != "REDIS_HOST" && k != "REDIS_PORT" {
			env = append(env, k+"="+v)
		}
	}
	qw := start(t, "queue:work", worker.command(app.Path, env, "php", "artisan", "queue:work", "--queue=default", "--tries=0", "--sleep=1"))
	for _, p := range []*proc{kqAhead, kqBehind} {
		testenv.Eventually(t, 30*time.Second, p.name+" to start with its clock off", func() bool {
			return strings.Contains(p.out.String(), "fault injection: the poller's clock is off")
		})
	}
	// Redis sees each host from its own address: three machines, as far
	// as it can tell, all of them connected.
	testenv.Eventually(t, 30*time.Second, "Redis to have clients on all three hosts", func() bool {
		clients := r.Client.ClientList(ctx).Val()
		for _, h := range hs {
			if !strings.Contains(clients, "addr="+h.ip+":") {
				return false
			}
		}
		return true
	})

	// Jobs of 50 ms: the pace at which every runner gets its share.
	app.Artisan(t, "kq:dispatch", "paced", "--count=300")
	// The delayed jobs once those are taken, so that they fall due on an
	// idle queue: how early they run is then the clocks' doing.
	testenv.Eventually(t, 60*time.Second, "the immediate jobs to be taken", func() bool {
		return r.Client.LLen(ctx, testenv.Prefix+"queues:default").Val() == 0
	})
	app.Artisan(t, "kq:dispatch", "due", "--count=60")
	want := append(append(tags("long", 0, 2), tags("paced", 0, 300)...), tags("due", 0, 60)...)
	runs := testenv.Prefix + "kqtest:runs"
	testenv.Eventually(t, 120*time.Second, "every job to run and the queues to empty", func() bool {
		for _, p := range []*proc{kqAhead, kqBehind, qw} {
			if done, err := p.exited(); done {
				t.Fatalf("%s exited: %v", p.name, err)
			}
		}
		return probe.Client.HLen(ctx, runs).Val() >= int64(len(want)) &&
			queued(ctx, r.Client, "default") == 0 && queued(ctx, r.Client, "long") == 0
	})
	for _, p := range []*proc{kqAhead, kqBehind, qw} {
		p.stop(t)
	}

	a := settle(t, probe.Client, want, func([]run, int) string { return "unexplained (skew within the design's bound)" })
	byAhead := testenv.JobsDone(kqAhead.out.String())
	byBehind := testenv.JobsDone(kqBehind.out.String())
	byWorker := strings.Count(qw.out.String(), "Processed:")
	early, late := lateness(a, "due-")
	t.Logf("3 hosts, clocks +3 s (kqueue, ran %d), -3 s (kqueue, ran %d), +2 s (queue:work, ran %d): %s in %s; delayed jobs ran %.3f s to %.3f s after they were due",
		byAhead, byBehind, byWorker, a, time.Since(began).Round(time.Millisecond), early, late)
	if len(a.lost) > 0 || a.duplicateRuns() > 0 {
		t.Errorf("%s; lost: %v", a, a.lost[:min(len(a.lost), 20)])
	}
	if byAhead == 0 || byBehind == 0 || byWorker == 0 {
		t.Errorf("a host ran nothing: the hosts did not share the queues")
	}
	if early < -4 || late > 5 {
		t.Errorf("delayed jobs ran from %.3f s to %.3f s after they were due, want within [-4, 5] (clocks up to 3 s ahead)", early, late)
	}
	if early > -1 {
		t.Errorf("no delayed job ran early: the clocks ahead were not in effect")
	}
	for _, tag := range tags("long", 0, 2) {
		if rs := a.runs[tag]; len(rs) != 1 || rs[0].Attempt != 1 {
			t.Errorf("%s ran %d times (%+v), want once as attempt 1: a lease was lost to the skew", tag, len(rs), rs)
		}
	}
}
