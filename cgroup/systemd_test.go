package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The transient scope's D-Bus properties, as systemd's StartTransientUnit
// takes them (proven against a real systemd in the VM tier).
func TestScopeProperties(t *testing.T) {
	t.Parallel()
	props := scopeProperties(4242, "kqueue.slice", "kqueue job x", Limits{Memory: 64 << 20, CPU: 20, Tasks: 32})
	got := map[string]string{}
	for _, p := range props {
		got[p.Name] = fmt.Sprint(p.Value.Value())
	}
	want := map[string]string{
		"Description":        "kqueue job x",
		"Slice":              "kqueue.slice",
		"PIDs":               "[4242]",
		"CollectMode":        "inactive",
		"MemoryAccounting":   "true",
		"CPUAccounting":      "true",
		"TasksAccounting":    "true",
		"MemoryMax":          "67108864",
		"MemorySwapMax":      "0",
		"CPUQuotaPerSecUSec": "200000",
		"TasksMax":           "32",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("properties %v, want exactly %v", got, want)
	}
	if none := scopeProperties(1, "kqueue.slice", "d", Limits{}); len(none) != 7 {
		t.Errorf("no limits: %d properties, want 7 (no limit properties)", len(none))
	}
}

func TestScopeName(t *testing.T) {
	t.Parallel()
	if n := scopeName("default", "job-17"); n != "kqueue-default-job-17.scope" {
		t.Errorf("got %q", n)
	}
	if n := scopeName("my app", "job-1"); n != `kqueue-my\x20app-job-1.scope` {
		t.Errorf("got %q", n)
	}
}

// The scope's accounting comes from cgroup v2 files.
func TestScopeStats(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "memory.events"), []byte("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "memory.peak"), []byte("67108864\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "cpu.stat"), []byte("usage_usec 1500000\nuser_usec 1000000\n"), 0o644)
	s, err := (&scope{dir: dir}).Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.OOMKills != 1 || s.PeakMemory != 64<<20 || s.CPU != 1500*time.Millisecond {
		t.Errorf("stats %+v", s)
	}
}

// Without systemd as PID 1 (this host), the driver says so.
func TestSystemdUnavailableHere(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		t.Skip("systemd is running here; the VM tier covers it")
	}
	if _, err := newSystemd("t"); err == nil {
		t.Error("newSystemd succeeded without systemd")
	}
}

// The kernel counts an OOM kill after it signals the victim: a group that
// hit the OOM killer counts as OOM-killed even before oom_kill moves.
func TestOOMKills(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "memory.events")
	for events, want := range map[string]uint64{
		"low 0\nhigh 0\nmax 3\noom 0\noom_kill 0\n": 0,
		"low 0\nhigh 0\nmax 9\noom 1\noom_kill 0\n": 1,
		"low 0\nhigh 0\nmax 9\noom 2\noom_kill 2\n": 2,
	} {
		os.WriteFile(path, []byte(events), 0o644)
		if got, err := oomKills(path); err != nil || got != want {
			t.Errorf("%q: %d, %v; want %d", events, got, err, want)
		}
	}
	if _, err := oomKills(filepath.Join(t.TempDir(), "gone")); err == nil {
		t.Error("a removed cgroup read as no OOM")
	}
}
