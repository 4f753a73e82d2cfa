package exec

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kqueue/kqueue/protocol"
)

// The scaler's decisions, step by step on a clock of its own: growth one
// worker a decision, only while a queue waits over its target, no worker
// is idle or booting and the host has room; each hold told once; a
// shrink only after a whole cooldown without pressure, to the most
// workers busy at once then.
func TestScalerDecisions(t *testing.T) {
	s := newScaler(1, 3, time.Minute)
	now := time.Unix(1_800_000_000, 0)
	roomy := func(int64) string { return "" }
	full := func(int64) string { return "memory: full" }
	pressed := protocol.Demand{Queue: "default", Wait: 3 * time.Second, Target: time.Second}
	var demand *protocol.Demand // what the poller says each second
	step := func(ready, idle, booting int, room room) (string, bool) {
		now = now.Add(time.Second)
		if demand != nil {
			s.setDemand(*demand, now)
		}
		return s.decide(now, ready, idle, booting, 64<<20, room)
	}

	if msg, changed := step(1, 0, 0, roomy); changed || msg != "" {
		t.Fatalf("grew with no demand: %q", msg)
	}
	demand = &pressed
	if _, changed := step(1, 1, 0, roomy); changed {
		t.Fatal("grew with a worker idle")
	}
	if msg, changed := step(1, 0, 0, roomy); !changed || !strings.HasPrefix(msg, "pool grew to 2: jobs on default wait 3s (target 1s)") {
		t.Fatalf("did not grow: %q %v", msg, changed)
	}
	if _, changed := step(1, 0, 1, roomy); changed {
		t.Fatal("grew again while the last worker boots")
	}
	msg, changed := step(2, 0, 0, full)
	if changed || !strings.Contains(msg, "pool held at 2 workers") || !strings.Contains(msg, "memory: full") {
		t.Fatalf("a full host: %q %v", msg, changed)
	}
	if msg, _ := step(2, 0, 0, full); msg != "" {
		t.Fatalf("the same hold told twice: %q", msg)
	}
	if _, changed := step(2, 0, 0, roomy); !changed || s.state().Target != 3 {
		t.Fatalf("did not grow to 3 once there was room: %+v", s.state())
	}
	if msg, changed := step(3, 0, 0, roomy); changed || !strings.Contains(msg, "max_workers (3) reached") {
		t.Fatalf("at the maximum: %q %v", msg, changed)
	}

	// The pressure ends; one worker stays busy at most.
	demand = &protocol.Demand{Queue: "default", Target: time.Second}
	s.sampleBusy(1)
	for range 59 {
		if _, changed := step(3, 2, 0, roomy); changed {
			t.Fatalf("shrank before the cooldown: %+v", s.state())
		}
	}
	msg, changed = step(3, 2, 0, roomy)
	if !changed || s.state().Target != 1 || !strings.Contains(msg, "shrank to 1: at most 1 busy at once for 1m0s") {
		t.Fatalf("after the cooldown: %q %+v", msg, s.state())
	}
	if st := s.state(); st.Ups != 2 || st.Downs != 1 {
		t.Fatalf("counted %d ups and %d downs, want 2 and 1", st.Ups, st.Downs)
	}

	// A stale demand is none: the poller stopped saying it.
	s.setDemand(pressed, now)
	now = now.Add(demandStale + time.Second)
	if _, changed := s.decide(now, 1, 0, 0, 64<<20, roomy); changed {
		t.Fatal("grew on a demand the poller has not renewed")
	}
}

// Slots follow the target: a parked slot claims a worker only while the
// pool keeps fewer than it wants; an idle one gives its worker up only
// while it keeps more.
func TestScalerSlots(t *testing.T) {
	s := newScaler(1, 3, time.Minute)
	if !s.claim(0) || s.claim(1) {
		t.Fatal("at the minimum, slot 0 keeps its worker and slot 1 none")
	}
	s.target = 2
	if !s.claim(2) || s.claim(1) {
		t.Fatal("at 2, one more slot gets a worker, no other")
	}
	if s.release(0) {
		t.Fatal("released a worker the pool needs")
	}
	s.target = 1
	if !s.release(2) || s.release(0) {
		t.Fatal("at 1 again, exactly one worker goes")
	}
}

// The memory limit of the cgroup kqueue runs in is read from cgroupfs:
// here a v1 memory cgroup this test makes and moves itself into (cgroup
// v2 is read the same way, from memory.max, in the VM tier).
func TestCgroupMemoryLimit(t *testing.T) {
	if _, _, ok := cgroupMemory(); ok {
		t.Log("this process already runs under a memory limit")
	}
	root := "/sys/fs/cgroup/memory"
	if _, err := os.Stat(filepath.Join(root, "memory.limit_in_bytes")); err != nil {
		t.Skip("no cgroup v1 memory controller here (the VM tier reads v2)")
	}
	orig, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var back string
	for _, line := range strings.Split(string(orig), "\n") {
		if parts := strings.SplitN(line, ":", 3); len(parts) == 3 && parts[1] == "memory" {
			back = filepath.Join(root, parts[2])
		}
	}
	dir := filepath.Join(root, "kqueue-test-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("cannot make a memory cgroup: %v", err)
	}
	defer os.Remove(dir)
	const limit = 3 << 30
	if err := os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), []byte(strconv.Itoa(limit)), 0o644); err != nil {
		t.Fatal(err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), pid, 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.WriteFile(filepath.Join(back, "cgroup.procs"), pid, 0o644)
	got, usage, ok := cgroupMemory()
	if !ok || got != limit || usage <= 0 {
		t.Fatalf("cgroupMemory() = %d, %d, %v; want the limit %d and some usage", got, usage, ok, limit)
	}
}

// In a cgroup with a limit, another worker costs its private memory, not
// its resident size (the files it maps are cached already); the budget
// counts resident sizes, as max_memory does.
func TestHostRoom(t *testing.T) {
	const mb = 1 << 20
	cg := func(limit, usage int64) func() (int64, int64, bool) {
		return func() (int64, int64, bool) { return limit, usage, true }
	}
	plenty := func() (int64, bool) { return 1 << 40, true }
	for _, c := range []struct {
		name string
		h    host
		want string // the hold's kind; "" for room
	}{
		{"room", host{usedByCg: cg(1000*mb, 100*mb), available: plenty, anon: 15 * mb, maxCPU: 0.95}, ""},
		// Workers of 40 MB resident, 15 MB of it their own: a third fits in 90.
		{"shared pages", host{usedByCg: cg(100*mb, 70*mb), available: plenty, anon: 15 * mb, maxCPU: 0.95}, ""},
		{"cgroup full", host{usedByCg: cg(100*mb, 80*mb), available: plenty, anon: 15 * mb, maxCPU: 0.95}, "memory"},
		{"budget", host{budget: 100 * mb, used: 80 * mb, usedByCg: cg(1<<40, 0), available: plenty, maxCPU: 0.95}, "memory_budget"},
		{"host", host{usedByCg: func() (int64, int64, bool) { return 0, 0, false }, available: func() (int64, bool) { return 50 * mb, true }, maxCPU: 0.95}, "memory"},
		{"cpu", host{usedByCg: cg(1<<40, 0), available: plenty, cpuBusy: 0.97, cpuKnown: true, maxCPU: 0.95}, "CPU"},
		{"cpu not looked at", host{usedByCg: cg(1<<40, 0), available: plenty, cpuBusy: 1, cpuKnown: true, maxCPU: 1}, ""},
	} {
		got := c.h.room(40 * mb)
		if kind, _, _ := strings.Cut(got, ":"); (got == "") != (c.want == "") || (c.want != "" && kind != c.want) {
			t.Errorf("%s: room says %q, want a hold of kind %q", c.name, got, c.want)
		}
	}
}
