package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3/cgroup2"
	"golang.org/x/sys/unix"
)

// v2 is the cgroupfs driver for a pure cgroup v2 host: each job's group is
// a child of kqueue's own cgroup, which must be delegated to it (systemd's
// Delegate=yes, as kqueue-dispatcher@.service has, or a container's own
// cgroup namespace). cgroup v2 lets no cgroup below the root both hold
// processes and hand controllers to its children, so kqueue first moves
// its own processes into a leaf of its cgroup, "dispatcher"; the PHP
// workers it starts afterwards are born there too.
type v2 struct {
	mount string           // "/sys/fs/cgroup"
	own   string           // kqueue's own cgroup: "/kqueue.slice/kqueue-dispatcher@default.service"
	cg    *cgroup2.Manager // of own
}

// v2Leaf is the child of kqueue's own cgroup its processes move into.
const v2Leaf = "dispatcher"

// v2Controllers are the controllers every job group needs.
var v2Controllers = []string{"cpu", "memory", "pids"}

// v2Host is what the v2 driver needs to know about the host.
type v2Host struct {
	mount string // the cgroup2 mount: /sys/fs/cgroup
	// self is this process's cgroup, as /proc/self/cgroup has it
	// ("/kqueue.slice/kqueue-dispatcher@default.service"), or its leaf
	// once a driver moved it there.
	self string
	// systemd says systemd manages the tree: then kqueue's cgroup must
	// carry systemd's mark of delegation (trusted.delegate or
	// user.delegate), or systemd may undo what kqueue does in it.
	systemd bool
}

// isV2 says whether mount is a pure cgroup v2 hierarchy (no v1 controllers
// next to it, as on a hybrid host).
func isV2(mount string) bool {
	_, err := os.Stat(filepath.Join(mount, "cgroup.controllers"))
	return err == nil
}

func newV2() (*v2, error) {
	if !isV2(mountRoot) {
		return nil, fmt.Errorf("%w: %s is not a cgroup v2 hierarchy (a cgroup v1 or hybrid host)", ErrUnavailable, mountRoot)
	}
	self, err := ownCgroup("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	_, err = os.Stat("/run/systemd/system")
	return openV2(v2Host{mount: mountRoot, self: self, systemd: err == nil})
}

// ownCgroup reads a process's cgroup v2 path from its /proc/PID/cgroup.
func ownCgroup(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("read own cgroup: %w", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if p, ok := strings.CutPrefix(s.Text(), "0::"); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("read own cgroup: %s has no cgroup v2 entry (0::)", file)
}

// openV2 makes kqueue's own cgroup ready for job groups: its processes in
// the leaf, the cpu, memory and pids controllers enabled for its children.
func openV2(h v2Host) (*v2, error) {
	own := path.Clean(h.self)
	if path.Base(own) == v2Leaf {
		own = path.Dir(own) // an earlier driver of this process moved it
	}
	dir := filepath.Join(h.mount, own)
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("%w: kqueue's cgroup %s: %v", ErrUnavailable, own, err)
	}
	have := strings.Fields(string(b))
	var missing []string
	for _, c := range v2Controllers {
		if !slices.Contains(have, c) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: the %s controllers are not delegated to kqueue's cgroup %s (it has %q): run kqueue in a unit with Delegate=yes, like kqueue-dispatcher@.service",
			ErrUnavailable, strings.Join(missing, ", "), own, strings.TrimSpace(string(b)))
	}
	if h.systemd && own != "/" && !delegated(dir) {
		return nil, fmt.Errorf("%w: kqueue's cgroup %s is systemd's, not delegated to kqueue: run kqueue in a unit with Delegate=yes, like kqueue-dispatcher@.service",
			ErrUnavailable, own)
	}
	if err := unix.Access(filepath.Join(dir, "cgroup.subtree_control"), unix.W_OK); err != nil {
		return nil, fmt.Errorf("%w: kqueue's cgroup %s is not writable: %v", ErrUnavailable, own, err)
	}
	if err := enableControllers(dir); err != nil {
		return nil, fmt.Errorf("%w: kqueue's cgroup %s: %v", ErrUnavailable, own, err)
	}
	cg, err := cgroup2.Load(own, cgroup2.WithMountpoint(h.mount))
	if err != nil {
		return nil, fmt.Errorf("%w: kqueue's cgroup %s: %v", ErrUnavailable, own, err)
	}
	d := &v2{mount: h.mount, own: own, cg: cg}
	// Prove it: create and remove a group (named apart from any other
	// process's probe).
	g, err := d.Create(fmt.Sprintf("probe-%d-%d", os.Getpid(), rand.Uint32()), Limits{})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if err := g.Delete(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return d, nil
}

// delegated says whether systemd marked the cgroup dir as delegated.
func delegated(dir string) bool {
	for _, attr := range []string{"trusted.delegate", "user.delegate"} {
		buf := make([]byte, 8)
		if n, err := unix.Getxattr(dir, attr, buf); err == nil && string(buf[:n]) == "1" {
			return true
		}
	}
	return false
}

// enableControllers hands the cpu, memory and pids controllers of the
// cgroup dir to its children. A cgroup that holds processes cannot
// (EBUSY): its processes move into its leaf first.
func enableControllers(dir string) error {
	control := "+" + strings.Join(v2Controllers, " +")
	err := writeFile(filepath.Join(dir, "cgroup.subtree_control"), control)
	if !errors.Is(err, syscall.EBUSY) {
		return err
	}
	if err := moveProcesses(dir, filepath.Join(dir, v2Leaf)); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, "cgroup.subtree_control"), control)
}

// moveProcesses moves every process of the cgroup dir into the cgroup
// leaf (made if need be), again until none is left: a process may fork
// while the others move.
func moveProcesses(dir, leaf string) error {
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("make the leaf for its own processes: %w", err)
	}
	for range 100 {
		pids, err := readPids(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			err := writeFile(filepath.Join(leaf, "cgroup.procs"), strconv.Itoa(pid))
			if err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("move pid %d into %s: %w", pid, leaf, err)
			}
		}
	}
	return fmt.Errorf("move its processes into %s: they keep coming", leaf)
}

func (*v2) Name() string { return "cgroupfs" }

// Close leaves kqueue's cgroup as it is: its processes sit in the leaf
// until they end, and the job groups are gone already. systemd removes
// the whole subtree with the unit.
func (*v2) Close() error { return nil }

// path is the cgroup of the job named name, below the mount: what the
// kernel's OOM report and /proc/PID/cgroup show.
func (d *v2) path(name string) string { return path.Join(d.own, name) }

func (d *v2) Create(name string, l Limits) (Group, error) {
	p := d.path(name)
	cg, err := d.cg.NewChild(name, nil)
	if err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", p, err)
	}
	dir := filepath.Join(d.mount, p)
	_, err = os.Stat(filepath.Join(dir, "memory.swap.max"))
	if err := cg.Update(v2Resources(l, err == nil)); err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("create cgroup %s: %w", p, err)
	}
	return &v2Group{cg: cg, path: p, dir: dir}, nil
}

// v2Resources are the limits as cgroup v2 files: memory.max,
// memory.swap.max 0 (where the kernel accounts swap), cpu.max as a quota
// per 100 ms period ("20000 100000" for 20% of a core), pids.max.
func v2Resources(l Limits, swap bool) *cgroup2.Resources {
	res := &cgroup2.Resources{}
	if l.Memory > 0 {
		limit := l.Memory
		res.Memory = &cgroup2.Memory{Max: &limit}
		if swap {
			none := int64(0)
			res.Memory.Swap = &none
		}
	}
	if l.CPU > 0 {
		period := uint64(100000)
		quota := int64(l.CPU) * 1000
		res.CPU = &cgroup2.CPU{Max: cgroup2.NewCPUMax(&quota, &period)}
	}
	if l.Tasks > 0 {
		res.Pids = &cgroup2.Pids{Max: int64(l.Tasks)}
	}
	return res
}

type v2Group struct {
	cg   *cgroup2.Manager
	path string // below the mount
	dir  string // in the mount
}

func (g *v2Group) Path() string { return g.path }

func (g *v2Group) Add(pid int) error {
	if err := g.cg.AddProc(uint64(pid)); err != nil {
		return fmt.Errorf("add pid %d to cgroup %s: %w", pid, g.path, err)
	}
	return nil
}

// Kill writes cgroup.kill: the kernel kills every process in the group,
// including those forking meanwhile. A kernel before 5.14 has no
// cgroup.kill: every process listed is killed, again until none is left.
// Either way Kill returns once the group is empty.
func (g *v2Group) Kill() error {
	err := writeFile(filepath.Join(g.dir, "cgroup.kill"), "1")
	if errors.Is(err, os.ErrNotExist) {
		if _, derr := os.Stat(g.dir); errors.Is(derr, os.ErrNotExist) {
			return nil // deleted already: empty
		}
		err = nil // no cgroup.kill: one by one below
	}
	if err != nil {
		return fmt.Errorf("kill cgroup %s: %w", g.path, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids, err := readPids(filepath.Join(g.dir, "cgroup.procs"))
		if err != nil {
			return fmt.Errorf("list cgroup %s: %w", g.path, err)
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		// An exiting process has left cgroup.procs before it has left the
		// group: populated says when rmdir can succeed.
		if populated, err := keyedValue(filepath.Join(g.dir, "cgroup.events"), "populated"); err == nil && populated == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kill cgroup %s: %d processes remain", g.path, len(pids))
		}
		time.Sleep(5 * time.Millisecond) // the kernel reaps the killed processes
	}
}

// Stats reads oom_kill from memory.events, memory.peak (0 on a kernel
// before 5.19, which has none) and usage_usec from cpu.stat.
func (g *v2Group) Stats() (Stats, error) {
	m, err := g.cg.StatFiltered(cgroup2.StatMemory | cgroup2.StatMemoryEvents | cgroup2.StatCPU)
	if err != nil {
		return Stats{}, fmt.Errorf("read cgroup %s: %w", g.path, err)
	}
	var s Stats
	if m.MemoryEvents != nil {
		s.OOMKills = m.MemoryEvents.OomKill
		if s.OOMKills == 0 && m.MemoryEvents.Oom > 0 {
			s.OOMKills = 1 // the kernel counts the kill after it signals the victim
		}
	}
	if m.Memory != nil {
		s.PeakMemory = m.Memory.MaxUsage
	}
	if m.CPU != nil {
		s.CPU = time.Duration(m.CPU.UsageUsec) * time.Microsecond
	}
	return s, nil
}

func (g *v2Group) Delete() error {
	if _, err := os.Stat(g.dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := g.cg.Delete(); err != nil {
		return fmt.Errorf("delete cgroup %s: %w", g.path, err)
	}
	return nil
}

// writeFile writes one value to a cgroup file, which must exist.
func writeFile(file, value string) error {
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// readPids reads a cgroup.procs file. A 0 there (a process the reader
// cannot name: another pid namespace's) is left out: signalled, 0 is the
// caller's own process group; written to cgroup.procs, the caller.
func readPids(file string) ([]int, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a pid", file, f)
		}
		if pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
