package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kqueue/kqueue/config"
	"github.com/kqueue/kqueue/internal/testenv"
	"github.com/kqueue/kqueue/poller"
	"golang.org/x/sys/unix"
)

// The units pass `systemd-analyze verify` (systemd need not be PID 1).
func TestUnitsVerify(t *testing.T) {
	t.Parallel()
	testenv.Need(t, "systemd-analyze")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	src := filepath.Join(testenv.Root(), "units")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			continue // generators/
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		// An executable must exist at ExecStart: the test binary stands in.
		b = []byte(strings.ReplaceAll(string(b), "/usr/bin/kqueue", self))
		name := strings.Replace(e.Name(), "@.", "@default.", 1) // templates as an instance
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	cmd := exec.Command("systemd-analyze", append([]string{"verify"}, names...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=notice")
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify %v: %v\n%s", names, err, out)
	}
	if len(names) != 7 {
		t.Errorf("units %v, want the poller, the dispatcher's and the console's service and socket, the slice and the umbrella", names)
	}
}

// sd_notify messages arrive in order on a real unixgram socket: READY,
// STATUS and WATCHDOG from the running loop, STOPPING at SIGTERM.
func TestNotify(t *testing.T) {
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	cfg := app.Config(t, 1, "")
	sock := filepath.Join(t.TempDir(), "notify")
	srv, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "1000000")

	ctx, cancel := context.WithCancel(t.Context())
	wait := background(t, ctx, "run", "--config", cfg)
	next := func() string {
		buf := make([]byte, 4096)
		srv.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, err := srv.Read(buf)
		if err != nil {
			t.Fatalf("no sd_notify message: %v", err)
		}
		return string(buf[:n])
	}
	if m := next(); !strings.HasPrefix(m, "READY=1\nSTATUS=") {
		t.Fatalf("first message %q, want READY=1", m)
	}
	seen := map[string]bool{}
	for !seen["WATCHDOG=1"] || !seen["STATUS=running"] {
		m := next()
		switch {
		case m == "WATCHDOG=1":
			seen[m] = true
		case strings.HasPrefix(m, "STATUS=running: 0 running (capacity 1)"):
			seen["STATUS=running"] = true
		}
	}
	cancel()
	for {
		if m := next(); strings.HasPrefix(m, "STOPPING=1") {
			break
		}
	}
	if _, err := wait(); err != nil {
		t.Fatal(err)
	}
}

// The dispatcher started by systemd-socket-activate (the socket passed in
// $LISTEN_FDS) serves a poller that connects to that socket.
func TestSocketActivation(t *testing.T) {
	t.Parallel()
	testenv.Need(t, "systemd-socket-activate")
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	app.Env["LOG_CHANNEL"] = "null"
	cfg := app.Config(t, 1, "")
	sock := filepath.Join(filepath.Dir(cfg), "activated.sock")
	bin := filepath.Join(t.TempDir(), "kqueue")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	act := exec.CommandContext(ctx, "systemd-socket-activate", "-l", sock, bin, "dispatcher", "--config", cfg)
	logs := testenv.NewLogs()
	act.Stdout, act.Stderr = logs, logs
	if err := act.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); act.Wait() }()
	testenv.Eventually(t, 10*time.Second, "the activation socket", func() bool { _, err := os.Stat(sock); return err == nil })

	// The poller's config points at the activation socket.
	b, _ := os.ReadFile(cfg)
	pcfg := filepath.Join(filepath.Dir(cfg), "poller.toml")
	os.WriteFile(pcfg, []byte(strings.Replace(string(b), "kqueue.sock", "activated.sock", 1)), 0o644)
	app.Artisan(t, "kq:dispatch", "record", "--count=5")
	pctx, pcancel := context.WithCancel(ctx)
	pdone := make(chan error, 1)
	go func() {
		_, err := kqueue(t, pctx, "poller", "--config", pcfg)
		pdone <- err
	}()
	testenv.Eventually(t, 60*time.Second, "5 jobs to run", func() bool {
		return r.Client.HLen(ctx, testenv.Prefix+"kqtest:runs").Val() == 5
	})
	pcancel()
	if err := <-pdone; err != nil {
		t.Error(err)
	}
	if !strings.Contains(logs.String(), "listening on the socket systemd passed") {
		t.Errorf("the dispatcher did not use the passed socket:\n%s", logs.String())
	}
}

// SIGHUP (systemctl reload) during a steady stream of jobs re-reads the
// config and replaces every worker, interrupting or failing no job; new
// workers run with the new config. Not parallel: the signal goes to the
// whole test process.
func TestReloadRollsWorkers(t *testing.T) {
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	app.Env["LOG_CHANNEL"] = "null"
	cfg := app.Config(t, 2, "")
	const jobs = 400
	app.Artisan(t, "kq:dispatch", "record", fmt.Sprintf("--count=%d", jobs))

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	logs := testenv.NewLogs()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"run", "--config", cfg}, io.Discard, logs) }()
	runs := testenv.Prefix + "kqtest:runs"
	testenv.Eventually(t, 30*time.Second, "jobs to flow", func() bool { return r.Client.HLen(ctx, runs).Val() >= 20 })
	// The deploy: new environment for the workers, and a pool size that
	// only a restart can apply.
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(strings.Replace(string(b), "[app.env]\n", "[app.env]\nKQ_EXTRA = \"reloaded\"\n", 1), "workers = 2", "workers = 3", 1)
	if err := os.WriteFile(cfg, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	testenv.Eventually(t, 30*time.Second, "both workers replaced for the reload", func() bool {
		s, ok := statusOf(ctx, cfg)
		return ok && s.Recycles["reload"] >= 2
	})
	logs.WaitFor(t, "pool.workers changed; it applies at the next restart", 1, 10*time.Second)
	testenv.Eventually(t, 60*time.Second, "every job to run", func() bool {
		return r.Client.HLen(ctx, runs).Val() == jobs && queueSize(t, r.Client, "default") == 0
	})
	app.Artisan(t, "kq:dispatch", "chatty")
	testenv.Eventually(t, 30*time.Second, "a job to see the new environment", func() bool {
		for _, rec := range r.Client.LRange(ctx, testenv.Prefix+"kqtest:log", 0, -1).Val() {
			if strings.Contains(rec, `"kind":"env"`) && strings.Contains(rec, `"KQ_EXTRA":"reloaded"`) {
				return true
			}
		}
		return false
	})
	// A broken config changes nothing: kqueue runs on and says why.
	if err := os.WriteFile(cfg, []byte(edited+"\n[pool]\nworkers = \"many\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	logs.WaitFor(t, "reload: the config has errors; running on with the previous one", 1, 10*time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := r.Client.HLen(context.Background(), runs).Val(); n != jobs+1 {
		t.Errorf("%d jobs ran, want %d", n, jobs+1)
	}
	for tag, n := range r.Client.HGetAll(context.Background(), runs).Val() {
		if n != "1" {
			t.Errorf("%s ran %s times", tag, n)
		}
	}
	if rows := app.Sqlite(t, "SELECT uuid FROM failed_jobs"); len(rows) != 0 {
		t.Errorf("%d jobs failed during the reload", len(rows))
	}
}

// pool.idle_exit: after that long without work the poller lets go, and the
// socket-activated dispatcher exits 0; the next job starts it again through
// its socket. The test plays systemd's part: it holds the listening socket
// and starts the dispatcher whenever a connection waits on it.
func TestIdleExit(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	app.Env["LOG_CHANNEL"] = "null"
	cfg := app.Config(t, 1, "")
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(b), "[pool]\n", "[pool]\nidle_exit = \"1s\"\n", 1)), 0o644)
	bin := filepath.Join(t.TempDir(), "kqueue")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ln, err := net.Listen("unix", filepath.Join(filepath.Dir(cfg), "kqueue.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sock, err := ln.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	logs := testenv.NewLogs()
	exits := make(chan error, 10)
	activator := make(chan struct{})
	go func() {
		defer close(activator)
		for ctx.Err() == nil {
			fds := []unix.PollFd{{Fd: int32(sock.Fd()), Events: unix.POLLIN}}
			if n, _ := unix.Poll(fds, 100); n <= 0 {
				continue
			}
			// $$ is the shell's pid, which exec keeps: the dispatcher's.
			cmd := exec.CommandContext(ctx, "sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" dispatcher --config "$1"`, bin, cfg)
			cmd.ExtraFiles = []*os.File{sock} // fd 3
			cmd.Stdout, cmd.Stderr = logs, logs
			if err := cmd.Start(); err != nil {
				exits <- err
				return
			}
			exits <- cmd.Wait()
		}
	}()
	exited := func(what string) {
		t.Helper()
		select {
		case err := <-exits:
			if err != nil {
				t.Fatalf("%s: the dispatcher exited with %v\n%s", what, err, logs.String())
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("%s: the dispatcher did not exit\n%s", what, logs.String())
		}
	}

	wait := background(t, ctx, "poller", "--config", cfg)
	runs := testenv.Prefix + "kqtest:runs"
	for round := 1; round <= 2; round++ {
		app.Artisan(t, "kq:dispatch", "record", "--count=3")
		testenv.Eventually(t, 60*time.Second, "the jobs to run", func() bool {
			return r.Client.HGet(ctx, runs, "record-2").Val() == fmt.Sprint(round)
		})
		exited(fmt.Sprintf("round %d", round))
	}
	if n := logs.Count("idle: exiting until the next job"); n != 2 {
		t.Errorf("%d idle exits, want 2:\n%s", n, logs.String())
	}
	cancel()
	<-activator
	plog, err := wait()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plog, "letting the dispatcher exit until the next job") {
		t.Errorf("the poller did not say it let the dispatcher go:\n%s", plog)
	}
}

// A stop's bounds add up to less than the units allow: the dispatcher
// stops hard at job.shutdown_timeout, and the poller waits HardStopGrace
// beyond it for the outcomes of what was killed or given back, both inside
// TimeoutStopSec (else systemd kills the poller first, and those jobs come
// back after retry_after with an attempt counted).
func TestStopBoundsFitTheUnits(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse("default.toml", []byte("[app]\npath = \"/srv/app\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	need := cfg.Job.ShutdownTimeout.D() + poller.HardStopGrace
	if config.StopGrace != poller.HardStopGrace {
		t.Errorf("config.StopGrace %s, poller.HardStopGrace %s: kqueue check would warn by the wrong bound", config.StopGrace, poller.HardStopGrace)
	}
	for _, unit := range []string{"kqueue@.service", "kqueue-dispatcher@.service"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "units", unit))
		if err != nil {
			t.Fatal(err)
		}
		var stop time.Duration
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "TimeoutStopSec="); ok {
				stop, err = time.ParseDuration(v)
				if err != nil {
					t.Fatalf("%s: TimeoutStopSec=%s: %v", unit, v, err)
				}
			}
		}
		if stop <= need {
			t.Errorf("%s: TimeoutStopSec %s, want more than shutdown_timeout + HardStopGrace = %s", unit, stop, need)
		}
		if stop != config.UnitStopTimeout {
			t.Errorf("%s: TimeoutStopSec %s, but config.UnitStopTimeout (what kqueue check warns by) is %s", unit, stop, config.UnitStopTimeout)
		}
	}
}

// The units' sandbox, as systemd-analyze security scores it (offline, from
// the shipped files): the poller at most 2.0, the dispatcher at most 5.0.
// The VM tier scores the running units the same way.
func TestUnitsExposure(t *testing.T) {
	t.Parallel()
	testenv.Need(t, "systemd-analyze")
	dir := t.TempDir()
	for unit, max := range map[string]float64{"kqueue@.service": 2.0, "kqueue-dispatcher@.service": 5.0, "kqueue-web@.service": 2.5} {
		b, err := os.ReadFile(filepath.Join("..", "..", "units", unit))
		if err != nil {
			t.Fatal(err)
		}
		name := strings.Replace(unit, "@", "@default", 1)
		os.WriteFile(filepath.Join(dir, name), bytes.ReplaceAll(b, []byte("%i"), []byte("default")), 0o644)
		cmd := exec.Command("systemd-analyze", "security", "--offline=yes", "--no-pager", name)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("systemd-analyze security %s: %v\n%s", name, err, out)
		}
		if score, _ := strconv.ParseFloat(string(m[1]), 64); score > max {
			t.Errorf("%s: exposure %.1f, want at most %.1f:\n%s", unit, score, max, out)
		}
	}
}
