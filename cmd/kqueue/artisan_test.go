package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
)

// buildKqueue builds the kqueue binary, for tests where another program
// (PHP) runs it.
func buildKqueue(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "kqueue")
	cmd := exec.Command(goBin, "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// The library's artisan commands drive a live kqueue: kqueue:run becomes
// the instance (the artisan process execs kqueue, so SIGTERM reaches kqueue
// itself: running jobs finish, and it exits 0), kqueue:status prints
// exactly what `kqueue status` prints, kqueue:check checks the instance, and kqueue:status of a stopped
// instance fails with kqueue's reason. The app finds the binary and the
// config through $KQUEUE_BINARY and $KQUEUE_CONFIG, as a deployed app would
// through its .env. Golden file, masked like status.golden.
func TestArtisanCommands(t *testing.T) {
	t.Parallel()
	bin := buildKqueue(t)
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	app.Env["LOG_CHANNEL"] = "null"
	app.Env["KQUEUE_PHP_LIBRARY"] = filepath.Join(testenv.Root(), "php-library", "src")
	cfg := app.Config(t, 2, "[[queue]]\nname = \"default\"\n[[queue]]\nname = \"low\"\n")
	app.Env["KQUEUE_BINARY"] = bin
	app.Env["KQUEUE_CONFIG"] = cfg
	app.Artisan(t, "kq:dispatch", "waits", "--count=2")
	app.Artisan(t, "kq:dispatch", "record", "--count=2", "--queue=low")

	ctx := t.Context()
	var logs testenv.SyncBuffer
	runner := app.Command(ctx, "kqueue:run")
	runner.Stdout, runner.Stderr = &logs, &logs
	if err := runner.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- runner.Wait() }()
	t.Cleanup(func() {
		runner.Process.Kill()
		<-exited
	})
	// Both workers run a job that waits for the test: the state holds still.
	runs := testenv.Prefix + "kqtest:runs"
	testenv.Eventually(t, 30*time.Second, "the waiting jobs to start", func() bool {
		return r.Client.HExists(ctx, runs, "wait-0").Val() && r.Client.HExists(ctx, runs, "wait-1").Val()
	})
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", runner.Process.Pid)); err != nil || exe != bin {
		t.Errorf("php artisan kqueue:run is %q (%v), want it to have become %s", exe, err, bin)
	}

	var got strings.Builder
	status := mask(app.Artisan(t, "kqueue:status"))
	fmt.Fprintf(&got, "$ php artisan kqueue:status\n%s", status)
	var direct strings.Builder
	if err := run(ctx, []string{"status", "--config", cfg}, &direct, os.Stderr); err != nil {
		t.Fatal(err)
	}
	if status != mask(direct.String()) {
		t.Errorf("php artisan kqueue:status:\n%s\nkqueue status:\n%s", status, mask(direct.String()))
	}
	fmt.Fprintf(&got, "$ php artisan kqueue:check\n%s", app.Artisan(t, "kqueue:check"))

	// SIGTERM reaches kqueue itself: it stops reserving, lets the running
	// jobs finish, and exits 0.
	runner.Process.Signal(syscall.SIGTERM)
	testenv.Eventually(t, 30*time.Second, "kqueue to start stopping", func() bool {
		s, ok := statusOf(ctx, cfg)
		return ok && s.Stats.Stopping
	})
	r.Client.RPush(ctx, testenv.Prefix+"kqtest:go", "go", "go")
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("php artisan kqueue:run after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("php artisan kqueue:run still running 60s after SIGTERM:\n%s", logs.String())
	}
	if n, m := queueSize(t, r.Client, "default"), queueSize(t, r.Client, "low"); n != 0 || m != 2 {
		t.Errorf("after the stop: %d jobs left on default, %d on low; want the running ones done and the rest untouched", n, m)
	}
	out, err := app.Command(ctx, "kqueue:status").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("kqueue:status of a stopped instance: %v", err)
	}
	fmt.Fprintf(&got, "$ php artisan kqueue:status  # stopped\n%s[exit %d]\n", out, exit.ExitCode())

	text := strings.NewReplacer(filepath.Dir(app.Path), "<tmp>", filepath.Dir(r.Socket), "<redis>").Replace(got.String())
	golden := filepath.Join("testdata", "artisan.golden")
	if *update {
		os.WriteFile(golden, []byte(text), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if text != string(want) {
		t.Errorf("artisan commands:\n%s\nwant:\n%s", text, want)
	}
}
