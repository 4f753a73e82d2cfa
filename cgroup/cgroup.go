// Package cgroup gives an isolated job its own cgroup with kernel-enforced
// memory, CPU and task limits, kills everything in it on demand, and reads
// back what happened: OOM kills, peak memory, CPU time. One interface,
// several drivers: systemd (a transient scope per job, cgroup v2), cgroupfs
// (v2 inside kqueue's delegated cgroup, or v1 on hybrid hosts), none (no
// limits, loudly).
package cgroup

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Limits are what the kernel enforces on one job. Zero means no limit.
type Limits struct {
	Memory int64 // bytes of memory, swap off
	CPU    int   // percent of one core
	Tasks  int   // processes and threads
}

func (l Limits) String() string {
	var parts []string
	if l.Memory > 0 {
		parts = append(parts, "memory "+FormatBytes(l.Memory))
	}
	if l.CPU > 0 {
		parts = append(parts, fmt.Sprintf("cpu %d%%", l.CPU))
	}
	if l.Tasks > 0 {
		parts = append(parts, fmt.Sprintf("tasks %d", l.Tasks))
	}
	if len(parts) == 0 {
		return "no limits"
	}
	return strings.Join(parts, ", ")
}

// FormatBytes writes a size the way limits are configured: 64M, 1G.
func FormatBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dG", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%dM", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%dK", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// Stats is what a group's accounting says after its job.
type Stats struct {
	OOMKills   uint64        // processes the kernel killed for memory
	PeakMemory uint64        // bytes
	CPU        time.Duration // user + system
}

// Driver creates groups.
type Driver interface {
	// Name is the driver's name as configured: "cgroupfs", "none".
	Name() string
	// Create makes a group for one job. name is unique among live groups.
	Create(name string, l Limits) (Group, error)
	// Close removes what the driver made for the instance, once its groups
	// are gone.
	Close() error
}

// Group is one job's cgroup.
type Group interface {
	// Path names the group for logs.
	Path() string
	// Add moves a process (and its future children) into the group.
	Add(pid int) error
	// Kill kills every process in the group.
	Kill() error
	// Stats reads the group's accounting.
	Stats() (Stats, error)
	// Delete removes the group; its processes must be gone.
	Delete() error
}

// ErrUnavailable says a driver cannot work on this host.
var ErrUnavailable = errors.New("cgroup driver unavailable")

// Open returns the configured driver: "auto" picks systemd (running as
// PID 1 on a cgroup v2 host, reachable over D-Bus), else cgroupfs where it
// works, else none — and logs which. cgroupfs is cgroup v2 on a pure v2
// host and v1 on a hybrid or v1 host. instance names the kqueue instance.
func Open(name, instance string, log *slog.Logger) (Driver, error) {
	switch name {
	case "systemd":
		return newSystemd(instance)
	case "none":
		log.Warn("isolation.driver = none: isolated jobs run in their own process but NO memory, CPU or task limit is enforced")
		return None{}, nil
	case "cgroupfs":
		return newCgroupfs(instance)
	case "", "auto":
		if d, err := newSystemd(instance); err == nil {
			log.Info("isolation driver chosen", "driver", d.Name(), "why", "systemd is PID 1 on a cgroup v2 host: a transient scope per job")
			return d, nil
		}
		d, err := newCgroupfs(instance)
		if err == nil {
			why := "cgroup v1 memory, cpu and pids controllers are mounted"
			if v, ok := d.(*v2); ok {
				why = "cgroup v2: kqueue's own cgroup " + v.own + " is delegated to it"
			}
			log.Info("isolation driver chosen", "driver", d.Name(), "why", why)
			return d, nil
		}
		log.Warn("no cgroup driver works here: isolated jobs run without limits", "error", err)
		return None{}, nil
	}
	return nil, fmt.Errorf("isolation.driver %q: want auto, systemd, cgroupfs or none", name)
}

// newCgroupfs is the cgroupfs driver of this host: cgroup v2 on a pure v2
// host, else the v1 hierarchy.
func newCgroupfs(instance string) (Driver, error) {
	if isV2(mountRoot) {
		return newV2()
	}
	return newV1(instance)
}
