package exec

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kqueue/kqueue/protocol"
)

// A pool that scales keeps between MinWorkers and MaxWorkers. Each second
// it may grow by one worker: when the poller says a queue's jobs wait
// longer than its target (protocol.Demand), no worker is idle, none is
// booting, and the host has room — memory left in the budget, the
// service's cgroup and the host, no memory pressure, CPU not saturated.
// It shrinks when, for a whole cooldown, no queue was over its target and
// fewer workers than it keeps were ever busy at once (sampled ten times a
// second): to that many, at least MinWorkers. Idle workers retire; no job
// is interrupted. Each decision is logged once, with its reason, and so is
// each change of what holds growth back.
const (
	scaleEvery  = time.Second
	busySample  = 100 * time.Millisecond
	demandStale = 5 * time.Second // a Demand older than this is none
)

// scaler decides the pool's size; the slots follow it.
type scaler struct {
	min, max int
	cooldown time.Duration

	mu       sync.Mutex
	target   int
	active   []bool        // slots that keep a worker (or boot one)
	changed  chan struct{} // closed and replaced at each change of target
	demand   protocol.Demand
	demandAt time.Time
	quietAt  time.Time // start of the window without pressure
	peakBusy int       // most workers busy at once in that window
	decision string
	held     string // what held growth back last, as logged
	ups      uint64
	downs    uint64
}

func newScaler(min, max int, cooldown time.Duration) *scaler {
	s := &scaler{min: min, max: max, cooldown: cooldown, target: min, active: make([]bool, max), changed: make(chan struct{}), quietAt: time.Now()}
	for i := range min {
		s.active[i] = true
	}
	return s
}

// scales reports whether the size may change at all.
func (s *scaler) scales() bool { return s.max > s.min }

// changes returns the channel closed at the next change of target.
func (s *scaler) changes() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// claim reports whether slot i keeps a worker: it did, or the pool has
// fewer than it wants.
func (s *scaler) claim(i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active[i] {
		return true
	}
	if s.count() < s.target {
		s.active[i] = true
		return true
	}
	return false
}

// release reports whether slot i, idle, should give its worker up: the
// pool keeps more than it wants.
func (s *scaler) release(i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active[i] && s.count() > s.target {
		s.active[i] = false
		return true
	}
	return false
}

func (s *scaler) count() int {
	n := 0
	for _, a := range s.active {
		if a {
			n++
		}
	}
	return n
}

// setDemand takes the poller's word on the queues' waits, as of now.
func (s *scaler) setDemand(d protocol.Demand, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.demand, s.demandAt = d, now
}

// sampleBusy records how many workers are busy now.
func (s *scaler) sampleBusy(busy int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.peakBusy = max(s.peakBusy, busy)
}

// room is what the host has for one more worker: "" when it has room,
// else what holds growth back.
type room func(perWorker int64) string

// decide makes one decision, given the pool's workers (ready: booted and
// serving; idle: of those, waiting for a job; booting) and the host's
// room. It returns what to log ("" for nothing) and whether the target
// changed.
func (s *scaler) decide(now time.Time, ready, idle, booting int, perWorker int64, hasRoom room) (logMsg string, changed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.demand
	if now.Sub(s.demandAt) > demandStale {
		d = protocol.Demand{}
	}
	pressed := d.Target > 0 && d.Wait > d.Target
	if pressed {
		s.quietAt, s.peakBusy = now, 0
	}
	switch {
	case pressed && s.target < s.max && idle == 0 && booting == 0 && ready >= s.target:
		if why := hasRoom(perWorker); why != "" {
			// Told once per kind of hold, not per change of its numbers.
			if kind, _, _ := strings.Cut(why, ":"); kind != s.held {
				s.held = kind
				return fmt.Sprintf("pool held at %d workers: jobs on %s wait %s (target %s), but %s", s.target, d.Queue, d.Wait.Round(100*time.Millisecond), d.Target, why), false
			}
			return "", false
		}
		s.held = ""
		s.target++
		s.ups++
		s.decision = fmt.Sprintf("grew to %d: jobs on %s wait %s (target %s)", s.target, d.Queue, d.Wait.Round(100*time.Millisecond), d.Target)
	case pressed && s.target >= s.max:
		why := fmt.Sprintf("max_workers (%d) reached", s.max)
		if why != s.held {
			s.held = why
			return fmt.Sprintf("pool held at %d workers: jobs on %s wait %s (target %s), but %s", s.target, d.Queue, d.Wait.Round(100*time.Millisecond), d.Target, why), false
		}
		return "", false
	case !pressed && s.target > s.min && now.Sub(s.quietAt) >= s.cooldown && s.peakBusy < s.target:
		to := max(s.peakBusy, s.min)
		s.decision = fmt.Sprintf("shrank to %d: at most %d busy at once for %s, no queue over its target", to, s.peakBusy, s.cooldown)
		s.target = to
		s.downs++
		s.quietAt, s.peakBusy = now, 0
		s.held = ""
	case !pressed && now.Sub(s.quietAt) >= s.cooldown:
		s.quietAt, s.peakBusy = now, 0 // a new window
		return "", false
	default:
		return "", false
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return "pool " + s.decision, true
}

// state is the scaler as the Pool frame carries it.
func (s *scaler) state() protocol.Scale {
	s.mu.Lock()
	defer s.mu.Unlock()
	return protocol.Scale{Min: s.min, Max: s.max, Target: s.target, Decision: s.decision, Ups: s.ups, Downs: s.downs}
}

// host is what the scaler knows of the host at a decision.
type host struct {
	budget    int64   // memory_budget (0: none)
	used      int64   // resident memory of the workers and isolated jobs
	anon      int64   // the most private (anonymous) memory a worker holds
	cpuBusy   float64 // share of the CPUs busy in the last second
	cpuKnown  bool
	maxCPU    float64 // scale_max_cpu, a share (1: never)
	usedByCg  func() (limit, usage int64, ok bool)
	available func() (int64, bool)
}

// room says whether one more worker of perWorker resident bytes fits:
// within the budget beside what the workers and isolated jobs hold, within
// the memory limit of the cgroup this process runs in (there a worker
// costs its private memory: the files it maps are in the cgroup's page
// cache already, or charged where they were first read), and in the
// host's available memory; and whether memory pressure or the CPUs busy
// at maxCPU hold growth back. "" means room.
func (h host) room(perWorker int64) string {
	if h.budget > 0 && h.used+perWorker > h.budget {
		return fmt.Sprintf("memory_budget: workers and isolated jobs use %s of %s, and a worker takes about %s", mib(h.used), mib(h.budget), mib(perWorker))
	}
	if limit, usage, ok := h.usedByCg(); ok {
		each := perWorker
		if h.anon > 0 {
			each = min(each, h.anon)
		}
		if usage+each > limit*9/10 {
			return fmt.Sprintf("memory: the service's cgroup uses %s of its %s limit, and a worker adds about %s", mib(usage), mib(limit), mib(each))
		}
	}
	if avail, ok := h.available(); ok && avail < 2*perWorker {
		return fmt.Sprintf("memory: the host has %s available, and a worker takes about %s", mib(avail), mib(perWorker))
	}
	if p, ok := pressure("memory"); ok && p >= 10 {
		return fmt.Sprintf("memory pressure: tasks stalled on memory %.0f%% of the last 10 s", p)
	}
	if h.cpuKnown && h.maxCPU < 1 && h.cpuBusy >= h.maxCPU {
		return fmt.Sprintf("CPU: the host's CPUs were %.0f%% busy in the last second", h.cpuBusy*100)
	}
	return ""
}

func mib(b int64) string { return fmt.Sprintf("%d MiB", b>>20) }

// cgroupMemory reads the memory limit and usage of the cgroup this process
// runs in — cgroup v2's memory.max and memory.current, or v1's memory
// controller, less the page cache not used lately — or of the ancestor
// with the least room left: a dispatcher
// in a leaf of its service's cgroup (cgroupfs delegation) is bound by the
// service's MemoryMax. ok is false without a limit.
func cgroupMemory() (limit, usage int64, ok bool) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0, 0, false
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var root, limitFile, usageFile, inactive string
		switch {
		case parts[0] == "0" && parts[1] == "":
			root, limitFile, usageFile, inactive = "/sys/fs/cgroup", "memory.max", "memory.current", "inactive_file"
		case parts[1] == "memory":
			root, limitFile, usageFile, inactive = "/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"
		default:
			continue
		}
		for dir := filepath.Join(root, parts[2]); strings.HasPrefix(dir, root); dir = filepath.Dir(dir) {
			l, err1 := readInt(filepath.Join(dir, limitFile))
			u, err2 := readInt(filepath.Join(dir, usageFile))
			// Page cache not used lately is the kernel's to reclaim: the
			// working set is what is left.
			u -= min(statField(filepath.Join(dir, "memory.stat"), inactive), u)
			// v1 writes "no limit" as a huge number, v2 as "max".
			if err1 == nil && err2 == nil && l > 0 && l < 1<<60 && (!ok || l-u < limit-usage) {
				limit, usage, ok = l, u, true
			}
			if dir == root {
				break
			}
		}
		if ok {
			return limit, usage, true
		}
	}
	return 0, 0, false
}

// statField reads one "name value" line of a cgroup's memory.stat (0 when
// it has none).
func statField(path, name string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// anonOf is a process's private (anonymous) resident memory, from
// /proc/PID/status (0 when unknown).
func anonOf(pid int) int64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func readInt(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
}

// meminfo reads one /proc/meminfo field, in bytes.
func meminfo(field string) (int64, bool) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		return kb << 10, err == nil
	}
	return 0, false
}

// pressure reads the kernel's pressure stall information for resource
// (memory, cpu): the share of the last 10 s some task stalled on it, in
// percent. ok is false where the kernel has none.
func pressure(resource string) (float64, bool) {
	data, err := os.ReadFile("/proc/pressure/" + resource)
	if err != nil {
		return 0, false
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	for _, f := range strings.Fields(string(line)) {
		if v, ok := strings.CutPrefix(f, "avg10="); ok {
			p, err := strconv.ParseFloat(v, 64)
			return p, err == nil
		}
	}
	return 0, false
}

// cpuGauge measures how busy the host's CPUs were between two readings of
// /proc/stat.
type cpuGauge struct {
	idle, total uint64
}

// busy is the busy share since the last call; ok is false on the first.
func (g *cpuGauge) busy() (float64, bool) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, false
	}
	var idle, total uint64
	for i, f := range fields[1:] {
		v, _ := strconv.ParseUint(f, 10, 64)
		total += v
		if i == 3 || i == 4 { // idle, iowait
			idle += v
		}
	}
	prevIdle, prevTotal := g.idle, g.total
	g.idle, g.total = idle, total
	if prevTotal == 0 || total <= prevTotal {
		return 0, false
	}
	return 1 - float64(idle-prevIdle)/float64(total-prevTotal), true
}
