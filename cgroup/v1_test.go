package cgroup

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
)

func driver(t *testing.T) Driver {
	t.Helper()
	d, err := newV1(fmt.Sprintf("test-%d", os.Getpid()))
	if err != nil {
		t.Fatalf("this host has cgroup v1 controllers (a v1/v2 hybrid, as the tests expect): %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// group creates a group that is emptied and removed when the test ends.
func group(t *testing.T, name string, l Limits) Group {
	t.Helper()
	g, err := driver(t).Create(name, l)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Kill(); g.Delete() })
	return g
}

// start runs a shell command in its own group, moved into g before it runs
// anything (it waits on stdin for the go-ahead).
func start(t *testing.T, g Group, script string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", "read go; "+script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := g.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	in.Write([]byte("go\n"))
	in.Close()
	return cmd
}

// A process over its memory limit is killed by the kernel, and the group's
// accounting says so.
func TestMemoryLimitOOMKills(t *testing.T) {
	t.Parallel()
	g := group(t, "oom", Limits{Memory: 32 << 20, Tasks: 16})
	cmd := start(t, g, `exec php -d memory_limit=-1 -r '$a = str_repeat("x", 200 << 20); echo strlen($a);'`)
	err := cmd.Wait()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if err == nil || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the hog was not killed: %v", err)
	}
	s, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.OOMKills == 0 || s.PeakMemory > 33<<20 {
		t.Errorf("stats %+v: want an OOM kill and a peak at the 32M limit", s)
	}
}

// Kill takes every process in the group, children included, even when
// they left the process group.
func TestKillTakesChildren(t *testing.T) {
	t.Parallel()
	g := group(t, "kill", Limits{})
	cmd := start(t, g, `setsid sleep 1000 & sleep 1000 & echo started; wait`)
	testenv.Eventually(t, 10*time.Second, "the children to start", func() bool {
		return strings.Count(procs(t, g), "\n") >= 3
	})
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if p := procs(t, g); p != "" {
		t.Errorf("processes left: %q", p)
	}
	if err := g.Delete(); err != nil {
		t.Errorf("delete after kill: %v", err)
	}
}

// A fork bomb stops at the task limit.
func TestTaskLimitContainsForkBomb(t *testing.T) {
	t.Parallel()
	g := group(t, "bomb", Limits{Tasks: 20})
	// dash gives up at the first fork that fails; the sleeps it started stay.
	cmd := start(t, g, `for i in $(seq 200); do sleep 30 & done`)
	cmd.Wait()
	if n := strings.Count(procs(t, g), "\n"); n < 10 {
		t.Errorf("only %d processes: the bomb did not run", n)
	}
	if n := strings.Count(procs(t, g), "\n"); n > 20 {
		t.Errorf("%d processes under a limit of 20", n)
	}
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
}

// A CPU-bound process held to 20% of a core uses about that.
func TestCPUQuota(t *testing.T) {
	t.Parallel()
	g := group(t, "cpu", Limits{CPU: 20})
	cmd := start(t, g, `exec timeout 2 sh -c 'while :; do :; done'`)
	begin := time.Now()
	cmd.Wait()
	wall := time.Since(begin)
	s, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	share := float64(s.CPU) / float64(wall)
	t.Logf("cpu %s over %s: %.0f%% of a core", s.CPU, wall, share*100)
	if share > 0.35 || share < 0.05 {
		t.Errorf("used %.0f%% of a core under a 20%% quota", share*100)
	}
}

func TestOpen(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)
	d, err := Open("auto", fmt.Sprintf("open-%d", os.Getpid()), log)
	if err != nil || d.Name() != "cgroupfs" {
		t.Fatalf("auto = %v, %v; want cgroupfs on this host", d, err)
	}
	d.Close()
	if d, err := Open("none", "t", log); err != nil || d.Name() != "none" {
		t.Errorf("none = %v, %v", d, err)
	}
	if _, err := Open("docker", "t", log); err == nil || !strings.Contains(err.Error(), "want auto, systemd, cgroupfs or none") {
		t.Errorf("unknown driver: %v", err)
	}
}

func TestLimitsString(t *testing.T) {
	t.Parallel()
	if s := (Limits{Memory: 64 << 20, CPU: 20, Tasks: 32}).String(); s != "memory 64M, cpu 20%, tasks 32" {
		t.Errorf("got %q", s)
	}
}

func procs(t *testing.T, g Group) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("%s/memory%s/cgroup.procs", mountRoot, nestedMemoryPath(t, g)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func nestedMemoryPath(t *testing.T, g Group) string {
	t.Helper()
	b, _ := os.ReadFile("/proc/self/cgroup")
	for _, line := range strings.Split(string(b), "\n") {
		if parts := strings.SplitN(line, ":", 3); len(parts) == 3 && parts[1] == "memory" {
			return strings.TrimSuffix(parts[2], "/") + g.Path()
		}
	}
	t.Fatal("no memory cgroup")
	return ""
}
