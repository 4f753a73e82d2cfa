package cgroup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
)

// systemdDriver makes each job a transient scope unit in kqueue.slice,
// through systemd's D-Bus API, on a pure cgroup v2 host. systemd owns the
// cgroup; kqueue reads its accounting files.
type systemdDriver struct {
	conn     *sd.Conn
	instance string
	slice    string
}

// newSystemd connects to systemd when it is PID 1 and the host is cgroup
// v2 only.
func newSystemd(instance string) (*systemdDriver, error) {
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		return nil, fmt.Errorf("%w: systemd is not running (no /run/systemd/system)", ErrUnavailable)
	}
	if !isV2(mountRoot) {
		return nil, fmt.Errorf("%w: %s is not a cgroup v2 hierarchy", ErrUnavailable, mountRoot)
	}
	// The context is the connection's whole life (go-systemd closes the
	// connection when it is done), not a timeout for connecting.
	conn, err := sd.NewSystemConnectionContext(context.Background())
	if err != nil {
		return nil, fmt.Errorf("%w: connect to systemd over D-Bus: %v", ErrUnavailable, err)
	}
	return &systemdDriver{conn: conn, instance: instance, slice: "kqueue.slice"}, nil
}

func (*systemdDriver) Name() string { return "systemd" }

func (d *systemdDriver) Close() error {
	d.conn.Close()
	return nil
}

// scopeName is the transient unit of one job: kqueue-INSTANCE-job-N.scope.
func scopeName(instance, name string) string {
	return "kqueue-" + escapeUnit(instance) + "-" + escapeUnit(name) + ".scope"
}

// escapeUnit keeps a name inside the characters unit names allow.
func escapeUnit(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			b.WriteRune(r)
		default:
			fmt.Fprintf(&b, `\x%02x`, r)
		}
	}
	return b.String()
}

// scopeProperties are the transient scope's unit properties: the job's
// process, its slice, and the limits (swap off). systemd forgets the scope
// once it is inactive; a failed one (the kernel OOM-killed the job) stays
// until Delete, so its Result can still be read after systemd has removed
// its cgroup — which it does as soon as the last process ends, sometimes
// before kqueue reads memory.events.
func scopeProperties(pid int, slice, desc string, l Limits) []sd.Property {
	props := []sd.Property{
		sd.PropDescription(desc),
		sd.PropSlice(slice),
		sd.PropPids(uint32(pid)),
		{Name: "CollectMode", Value: godbus.MakeVariant("inactive")},
		{Name: "MemoryAccounting", Value: godbus.MakeVariant(true)},
		{Name: "CPUAccounting", Value: godbus.MakeVariant(true)},
		{Name: "TasksAccounting", Value: godbus.MakeVariant(true)},
	}
	if l.Memory > 0 {
		props = append(props,
			sd.Property{Name: "MemoryMax", Value: godbus.MakeVariant(uint64(l.Memory))},
			sd.Property{Name: "MemorySwapMax", Value: godbus.MakeVariant(uint64(0))})
	}
	if l.CPU > 0 {
		// CPUQuota=N% is CPUQuotaPerSecUSec = N% of a second.
		props = append(props, sd.Property{Name: "CPUQuotaPerSecUSec", Value: godbus.MakeVariant(uint64(l.CPU) * 10000)})
	}
	if l.Tasks > 0 {
		props = append(props, sd.Property{Name: "TasksMax", Value: godbus.MakeVariant(uint64(l.Tasks))})
	}
	return props
}

// Create only names the scope: systemd creates it around the job's process
// in Add, with the limits already in force.
func (d *systemdDriver) Create(name string, l Limits) (Group, error) {
	return &scope{d: d, unit: scopeName(d.instance, name), limits: l}, nil
}

type scope struct {
	d      *systemdDriver
	unit   string
	limits Limits
	dir    string // the scope's cgroup directory, once it exists
}

func (s *scope) Path() string { return s.unit }

func (s *scope) Add(pid int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan string, 1)
	props := scopeProperties(pid, s.d.slice, "kqueue job "+s.unit, s.limits)
	if _, err := s.d.conn.StartTransientUnitContext(ctx, s.unit, "fail", props, done); err != nil {
		return fmt.Errorf("start scope %s: %w", s.unit, err)
	}
	select {
	case result := <-done:
		if result != "done" {
			return fmt.Errorf("start scope %s: %s", s.unit, result)
		}
	case <-ctx.Done():
		return fmt.Errorf("start scope %s: %w", s.unit, ctx.Err())
	}
	p, err := s.d.conn.GetUnitTypePropertyContext(ctx, s.unit, "Scope", "ControlGroup")
	if err != nil {
		return fmt.Errorf("scope %s: read its control group: %w", s.unit, err)
	}
	cg, _ := p.Value.Value().(string)
	s.dir = filepath.Join("/sys/fs/cgroup", cg)
	return nil
}

// Kill writes cgroup.kill: the kernel kills every process in the scope.
func (s *scope) Kill() error {
	if s.dir == "" {
		return nil
	}
	err := os.WriteFile(filepath.Join(s.dir, "cgroup.kill"), []byte("1"), 0)
	if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if _, derr := os.Stat(s.dir); errors.Is(derr, os.ErrNotExist) {
		return nil // already collected: empty
	}
	// A kernel before 5.14 has no cgroup.kill: systemd signals every
	// process of the scope.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.d.conn.KillUnitContext(ctx, s.unit, int32(syscall.SIGKILL))
	return nil
}

func (s *scope) Stats() (Stats, error) {
	var st Stats
	if s.dir == "" {
		return st, nil
	}
	v, err := oomKills(filepath.Join(s.dir, "memory.events"))
	if err != nil {
		// systemd already stopped the scope and removed its cgroup: its
		// Result says whether the kernel OOM-killed the job.
		result, err := s.result()
		if result == "oom-kill" {
			st.OOMKills, st.PeakMemory = 1, uint64(s.limits.Memory)
		}
		return st, err
	}
	st.OOMKills = v
	st.PeakMemory, _ = readUint(filepath.Join(s.dir, "memory.peak"))
	if v, err := keyedValue(filepath.Join(s.dir, "cpu.stat"), "usage_usec"); err == nil {
		st.CPU = time.Duration(v) * time.Microsecond
	}
	return st, nil
}

// result waits for the stopped scope to settle and returns its Result:
// "oom-kill" when the kernel killed a process of it for memory, "success"
// for an inactive (or already forgotten) one.
func (s *scope) result() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		p, err := s.d.conn.GetUnitPropertyContext(ctx, s.unit, "ActiveState")
		if err != nil {
			return "", fmt.Errorf("scope %s: read its state: %w", s.unit, err)
		}
		switch state, _ := p.Value.Value().(string); state {
		case "inactive":
			return "success", nil
		case "failed":
			p, err := s.d.conn.GetUnitTypePropertyContext(ctx, s.unit, "Scope", "Result")
			if err != nil {
				return "", fmt.Errorf("scope %s: read its result: %w", s.unit, err)
			}
			r, _ := p.Value.Value().(string)
			return r, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("scope %s did not stop: %w", s.unit, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Delete stops the scope and clears a failed one: nothing is left loaded.
func (s *scope) Delete() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.d.conn.StopUnitContext(ctx, s.unit, "replace", nil); err != nil && !strings.Contains(err.Error(), "not loaded") {
		return fmt.Errorf("stop scope %s: %w", s.unit, err)
	}
	s.d.conn.ResetFailedUnitContext(ctx, s.unit) // not failed: nothing to clear
	return nil
}

// oomKills reads a cgroup v2 memory.events: the OOM kills, or 1 when the
// group hit its limit and the OOM killer ran but the kill is not counted
// yet (the kernel counts it after it signals the victim, which may be gone
// by the time kqueue looks).
func oomKills(path string) (uint64, error) {
	kills, err := keyedValue(path, "oom_kill")
	if err != nil {
		return 0, err
	}
	if ooms, err := keyedValue(path, "oom"); err == nil && kills == 0 && ooms > 0 {
		return 1, nil
	}
	return kills, nil
}

// readUint reads a file that holds one number.
func readUint(path string) (uint64, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64)
}

// keyedValue reads "key value" lines (memory.events, cpu.stat,
// memory.oom_control).
func keyedValue(path, key string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, key)
}
