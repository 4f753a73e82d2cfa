package cgroup

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// v1 is the cgroupfs driver for the v1 hierarchy (hybrid hosts): memory,
// cpu, cpuacct, pids and freezer controllers, each group nested under
// kqueue's own cgroup in every controller.
type v1 struct {
	root      string // "/kqueue-INSTANCE"
	hierarchy cgroup1.Hierarchy
}

const mountRoot = "/sys/fs/cgroup"

func newV1(instance string) (*v1, error) {
	for _, c := range []string{"memory", "cpu", "cpuacct", "pids", "freezer"} {
		if _, err := os.Stat(filepath.Join(mountRoot, c, "cgroup.procs")); err != nil {
			return nil, fmt.Errorf("%w: cgroup v1 controller %s is not mounted at %s", ErrUnavailable, c, filepath.Join(mountRoot, c))
		}
	}
	d := &v1{
		root: "/kqueue-" + instance,
		hierarchy: func() ([]cgroup1.Subsystem, error) {
			return []cgroup1.Subsystem{
				cgroup1.NewMemory(mountRoot),
				cgroup1.NewCpu(mountRoot),
				cgroup1.NewCpuacct(mountRoot),
				cgroup1.NewPids(mountRoot),
				cgroup1.NewFreezer(mountRoot),
			}, nil
		},
	}
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

func (*v1) Name() string { return "cgroupfs" }

// Close removes the instance's parent group in every controller, if it is
// empty. Never recursively: another dispatcher of the same instance may
// still have groups under it.
func (d *v1) Close() error {
	path := cgroup1.NestedPath(d.root)
	for _, c := range []cgroup1.Name{cgroup1.Memory, cgroup1.Cpu, cgroup1.Cpuacct, cgroup1.Pids, cgroup1.Freezer} {
		if p, err := path(c); err == nil {
			os.Remove(filepath.Join(mountRoot, string(c), p))
		}
	}
	return nil
}

func (d *v1) Create(name string, l Limits) (Group, error) {
	res := &specs.LinuxResources{}
	if l.Memory > 0 {
		limit := l.Memory
		res.Memory = &specs.LinuxMemory{Limit: &limit, Swap: &limit} // memory+swap = memory: no swap
	}
	if l.CPU > 0 {
		period := uint64(100000)
		quota := int64(l.CPU) * 1000
		res.CPU = &specs.LinuxCPU{Period: &period, Quota: &quota}
	}
	if l.Tasks > 0 {
		tasks := int64(l.Tasks)
		res.Pids = &specs.LinuxPids{Limit: &tasks}
	}
	path := filepath.Join(d.root, name)
	cg, err := cgroup1.New(cgroup1.NestedPath(path), res, cgroup1.WithHiearchy(d.hierarchy))
	if err != nil {
		// Remove what was made before the failure.
		if partial, lerr := cgroup1.Load(cgroup1.NestedPath(path), cgroup1.WithHiearchy(d.hierarchy)); lerr == nil {
			partial.Delete()
		}
		return nil, fmt.Errorf("create cgroup %s: %w", path, err)
	}
	return &v1Group{cg: cg, path: path}, nil
}

type v1Group struct {
	cg   cgroup1.Cgroup
	path string
}

func (g *v1Group) Path() string { return g.path }

func (g *v1Group) Add(pid int) error {
	if err := g.cg.AddProc(uint64(pid)); err != nil {
		return fmt.Errorf("add pid %d to cgroup %s: %w", pid, g.path, err)
	}
	return nil
}

// Kill kills every process in the group and waits until it is empty; if
// processes keep coming (a fork bomb), it freezes the group so nothing can
// fork, kills every process, and thaws it so the kills land, until none is
// left.
func (g *v1Group) Kill() error {
	// The usual case: the job's process has ended or is ending, and what
	// it started (if anything) does not fork on: signal what is there and
	// watch the group empty, a millisecond at a time. An empty group stays
	// empty: only a member can fork into it.
	for range 20 {
		procs, err := g.cg.Processes(cgroup1.Memory, true)
		if err != nil {
			break
		}
		if len(procs) == 0 {
			return nil
		}
		killProcs(procs)
		time.Sleep(time.Millisecond)
	}
	// Processes keep coming (a fork bomb): freeze the group, kill every
	// member, thaw, until none is left.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := g.cg.Freeze(); err != nil {
			return fmt.Errorf("freeze cgroup %s: %w", g.path, err)
		}
		procs, err := g.cg.Processes(cgroup1.Memory, true)
		if err != nil {
			g.cg.Thaw()
			return fmt.Errorf("list cgroup %s: %w", g.path, err)
		}
		killProcs(procs)
		if err := g.cg.Thaw(); err != nil {
			return fmt.Errorf("thaw cgroup %s: %w", g.path, err)
		}
		if len(procs) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kill cgroup %s: %d processes remain", g.path, len(procs))
		}
		time.Sleep(5 * time.Millisecond) // the kernel reaps the killed processes
	}
}

// Stats reads the three files it needs (the library's Stat reads every
// controller's, a millisecond per job).
func (g *v1Group) Stats() (Stats, error) {
	dir := func(c cgroup1.Name) (string, error) {
		rel, err := cgroup1.NestedPath(g.path)(c)
		return filepath.Join(mountRoot, string(c), rel), err
	}
	mem, err := dir(cgroup1.Memory)
	if err != nil {
		return Stats{}, fmt.Errorf("read cgroup %s: %w", g.path, err)
	}
	cpu, err := dir(cgroup1.Cpuacct)
	if err != nil {
		return Stats{}, fmt.Errorf("read cgroup %s: %w", g.path, err)
	}
	var s Stats
	if s.PeakMemory, err = readUint(filepath.Join(mem, "memory.max_usage_in_bytes")); err != nil {
		return s, fmt.Errorf("read cgroup %s: %w", g.path, err)
	}
	if ns, err := readUint(filepath.Join(cpu, "cpuacct.usage")); err == nil {
		s.CPU = time.Duration(ns)
	}
	s.OOMKills, _ = keyedValue(filepath.Join(mem, "memory.oom_control"), "oom_kill")
	return s, nil
}

func (g *v1Group) Delete() error {
	if err := g.cg.Delete(); err != nil {
		return fmt.Errorf("delete cgroup %s: %w", g.path, err)
	}
	return nil
}

// killProcs kills each of procs. A pid of 0 (a process kqueue cannot name)
// is skipped: signalled, 0 is kqueue's own process group.
func killProcs(procs []cgroup1.Process) {
	for _, p := range procs {
		if p.Pid > 0 {
			syscall.Kill(p.Pid, syscall.SIGKILL)
		}
	}
}
