package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// This host is hybrid (cgroup v1 controllers, no controller on v2), so the
// v2 driver runs for real only in the VM tier. Here it runs against a
// fixture tree that looks like a delegated cgroup v2 subtree.

const v2Own = "/kqueue.slice/kqueue-dispatcher@t.service"

// v2Tree is a fake cgroup v2 mount holding kqueue's own cgroup v2Own with
// the controllers in controllers, and the files its job groups will have.
func v2Tree(t *testing.T, controllers string, jobs ...string) string {
	t.Helper()
	mount := t.TempDir()
	files := map[string]string{
		"cgroup.controllers":              "cpuset cpu io memory pids",
		v2Own + "/cgroup.controllers":     controllers,
		v2Own + "/cgroup.subtree_control": "",
		v2Own + "/cgroup.procs":           "",
	}
	for _, j := range jobs {
		for _, f := range []string{"cgroup.procs", "cgroup.type", "memory.max", "memory.swap.max", "cpu.max", "pids.max"} {
			files[v2Own+"/"+j+"/"+f] = ""
		}
		files[v2Own+"/"+j+"/cgroup.type"] = "domain\n"
		files[v2Own+"/"+j+"/cgroup.events"] = "populated 0\nfrozen 0\n"
		files[v2Own+"/"+j+"/memory.events"] = "low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\noom_group_kill 0\n"
		files[v2Own+"/"+j+"/memory.peak"] = "67104768\n"
		files[v2Own+"/"+j+"/memory.stat"] = "anon 1048576\nfile 0\n"
		files[v2Own+"/"+j+"/cpu.stat"] = "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n"
	}
	for name, content := range files {
		p := filepath.Join(mount, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return mount
}

func read(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The limits land in the job group's files as cgroup v2 writes them.
func TestV2LimitFiles(t *testing.T) {
	t.Parallel()
	mount := v2Tree(t, "cpu memory pids", "job-a-1")
	d, err := openV2(v2Host{mount: mount, self: v2Own})
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(mount, v2Own, "cgroup.subtree_control")); got != "+cpu +memory +pids" {
		t.Errorf("cgroup.subtree_control = %q", got)
	}
	g, err := d.Create("job-a-1", Limits{Memory: 64 << 20, CPU: 20, Tasks: 32})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := g.Path(), v2Own+"/job-a-1"; got != want {
		t.Errorf("Path = %q, want %q", got, want)
	}
	dir := filepath.Join(mount, v2Own, "job-a-1")
	for file, want := range map[string]string{
		"memory.max":      "67108864",
		"memory.swap.max": "0",
		"cpu.max":         "20000 100000",
		"pids.max":        "32",
	} {
		if got := read(t, filepath.Join(dir, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if err := g.Add(4242); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(dir, "cgroup.procs")); got != "4242" {
		t.Errorf("cgroup.procs = %q after Add(4242)", got)
	}
	s, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if want := (Stats{OOMKills: 1, PeakMemory: 67104768, CPU: 1500 * 1e6}); s != want {
		t.Errorf("Stats = %+v, want %+v", s, want)
	}
}

// No limit, no write; a kernel that does not account swap has no
// memory.swap.max to write.
func TestV2NoLimitsNoSwapFile(t *testing.T) {
	t.Parallel()
	mount := v2Tree(t, "cpu memory pids", "job-a-1")
	d, err := openV2(v2Host{mount: mount, self: v2Own})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(mount, v2Own, "job-a-1")
	if _, err := d.Create("job-a-1", Limits{}); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"memory.max", "memory.swap.max", "cpu.max", "pids.max"} {
		if got := read(t, filepath.Join(dir, file)); got != "" {
			t.Errorf("%s = %q with no limits", file, got)
		}
	}
	if err := os.Remove(filepath.Join(dir, "memory.swap.max")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Create("job-a-1", Limits{Memory: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(dir, "memory.max")); got != strconv.Itoa(1<<30) {
		t.Errorf("memory.max = %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "memory.swap.max")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("memory.swap.max was written on a kernel without swap accounting: %v", err)
	}
}

func TestV2Resources(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		l    Limits
		swap bool
		want []string // enabled controllers
	}{
		{Limits{}, true, nil},
		{Limits{Memory: 64 << 20}, true, []string{"memory"}},
		{Limits{CPU: 250}, false, []string{"cpu"}},
		{Limits{Memory: 1, CPU: 1, Tasks: 1}, false, []string{"cpu", "memory", "pids"}},
	} {
		r := v2Resources(c.l, c.swap)
		if got := r.EnabledControllers(); strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("%v: controllers %v, want %v", c.l, got, c.want)
		}
		if c.l.Memory > 0 && (r.Memory.Swap != nil) != c.swap {
			t.Errorf("%v: swap limit set = %v, want %v", c.l, r.Memory.Swap != nil, c.swap)
		}
		if c.l.CPU == 250 && r.CPU.Max != "250000 100000" {
			t.Errorf("cpu 250%%: cpu.max %q", r.CPU.Max)
		}
	}
}

// kqueue's cgroup is the parent of the leaf it moved itself into.
func TestV2OwnFromLeaf(t *testing.T) {
	t.Parallel()
	mount := v2Tree(t, "cpu memory pids", "job-a-1")
	d, err := openV2(v2Host{mount: mount, self: v2Own + "/" + v2Leaf})
	if err != nil {
		t.Fatal(err)
	}
	if d.own != v2Own {
		t.Errorf("own = %q, want %q", d.own, v2Own)
	}
}

func TestOwnCgroup(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "cgroup")
	os.WriteFile(file, []byte("12:pids:/system.slice\n1:name=systemd:/x\n0::/kqueue.slice/kqueue-dispatcher@default.service\n"), 0o644)
	if got, err := ownCgroup(file); err != nil || got != "/kqueue.slice/kqueue-dispatcher@default.service" {
		t.Errorf("ownCgroup = %q, %v", got, err)
	}
	os.WriteFile(file, []byte("12:pids:/\n"), 0o644)
	if _, err := ownCgroup(file); err == nil || !strings.Contains(err.Error(), "no cgroup v2 entry") {
		t.Errorf("v1 only: %v", err)
	}
}

// Where the v2 driver cannot work it says why, as ErrUnavailable.
func TestV2Unavailable(t *testing.T) {
	t.Parallel()
	if isV2(mountRoot) {
		t.Skip("a pure cgroup v2 host")
	}
	if _, err := newV2(); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "/sys/fs/cgroup is not a cgroup v2 hierarchy") {
		t.Errorf("on this hybrid host: %v", err)
	}
	d, err := newCgroupfs("t")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, ok := d.(*v1); !ok {
		t.Errorf("cgroupfs on a hybrid host is %T, want the v1 driver", d)
	}
}

func TestV2NotDelegated(t *testing.T) {
	t.Parallel()
	mount := v2Tree(t, "memory pids")
	_, err := openV2(v2Host{mount: mount, self: v2Own})
	want := `cgroup driver unavailable: the cpu controllers are not delegated to kqueue's cgroup /kqueue.slice/kqueue-dispatcher@t.service (it has "memory pids"): run kqueue in a unit with Delegate=yes, like kqueue-dispatcher@.service`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}

	mount = v2Tree(t, "cpu memory pids")
	_, err = openV2(v2Host{mount: mount, self: v2Own, systemd: true})
	want = `cgroup driver unavailable: kqueue's cgroup /kqueue.slice/kqueue-dispatcher@t.service is systemd's, not delegated to kqueue: run kqueue in a unit with Delegate=yes, like kqueue-dispatcher@.service`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	// systemd marks a delegated cgroup.
	if err := unix.Setxattr(filepath.Join(mount, v2Own), "trusted.delegate", []byte("1"), 0); err != nil {
		t.Skipf("no trusted xattrs here: %v", err)
	}
	if _, err := openV2(v2Host{mount: mount, self: v2Own, systemd: true}); err != nil {
		t.Errorf("delegated: %v", err)
	}
}

// A 0 in cgroup.procs (a process the reader cannot name) is no pid:
// signalled, it would be kqueue's own process group.
func TestReadPidsLeavesOutZero(t *testing.T) {
	file := filepath.Join(t.TempDir(), "cgroup.procs")
	if err := os.WriteFile(file, []byte("12\n0\n34\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pids, err := readPids(file)
	if err != nil || !slices.Equal(pids, []int{12, 34}) {
		t.Fatalf("readPids = %v, %v; want [12 34]", pids, err)
	}
}
