package main

import (
	"context"
	"io"
	"os"
	osexec "os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
)

// With [app] user, the PHP workers run as that account, not as kqueue's.
func TestPHPRunsAsTheAppUser(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	r := testenv.StartRedis(t, "--unixsocketperm", "777")
	os.Chmod(filepath.Dir(r.Socket), 0o755)
	app := testenv.NewApp(t, r)
	app.Env["LOG_CHANNEL"] = "null"
	// nobody reads the app and writes its storage and database.
	root := filepath.Dir(app.Path)
	os.Chmod(filepath.Dir(root), 0o755)
	os.Chmod(root, 0o777)
	if out, err := osexec.Command("chmod", "-R", "a+rwX", app.Path, app.DB).CombinedOutput(); err != nil {
		t.Fatalf("chmod: %v %s", err, out)
	}
	app.Artisan(t, "kq:dispatch", "chatty")
	cfg := app.Config(t, 1, "")
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(b), "[app]\n", "[app]\nuser = \"nobody\"\n", 1)), 0o644)

	logs, err := kqueue(t, context.Background(), "run", "--config", cfg, "--stop-when-empty")
	if err != nil {
		t.Fatalf("kqueue run: %v\n%s", err, logs)
	}
	if strings.Contains(logs, "PHP jobs run as root") {
		t.Errorf("warned about root with [app] user set")
	}
	var env string
	for _, rec := range r.Client.LRange(context.Background(), testenv.Prefix+"kqtest:log", 0, -1).Val() {
		if strings.Contains(rec, `"kind":"env"`) {
			env = rec
		}
	}
	if !strings.Contains(env, `"user":`+nobody.Uid) {
		t.Errorf("the job ran as %s, want nobody (%s)\n%s", env, nobody.Uid, logs)
	}
}

// A user outside root, kqueue's user and its group can use neither the
// dispatcher socket (it runs code as the app) nor the control socket: the
// sockets' mode (0660) refuses them, and the peer check (SO_PEERCRED)
// still does when a mode was loosened by mistake.
func TestSocketsRefuseOtherUsers(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("connecting as another user needs root")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	app.Env["LOG_CHANNEL"] = "null"
	cfg := app.Config(t, 1, "")
	dir := filepath.Dir(cfg)
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o755)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// connect tries, as nobody, and says how it went.
	connect := func(sock string) string {
		cmd := osexec.Command("php", "-r", `$s = @stream_socket_client("unix://".$argv[1], $no, $msg, 5);
			if (!$s) { echo "refused: $msg"; exit; }
			stream_set_timeout($s, 5);
			$got = fread($s, 100);
			if (stream_get_meta_data($s)["timed_out"]) { echo "no answer"; exit; }
			echo $got === "" || $got === false ? "closed" : "answered";`, sock)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("php as nobody: %v %s", err, out)
		}
		return string(out)
	}
	check := func(sock string, logs *testenv.SyncBuffer) {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, filepath.Base(sock), func() bool { _, err := os.Stat(sock); return err == nil })
		if got := connect(sock); !strings.Contains(got, "Permission denied") {
			t.Errorf("%s, mode 0660: nobody got %q, want permission denied", filepath.Base(sock), got)
		}
		os.Chmod(sock, 0o666) // a mistake: now the peer check must refuse
		if got := connect(sock); got != "closed" {
			t.Errorf("%s, mode 0666: nobody got %q, want the connection closed", filepath.Base(sock), got)
		}
		// (Log lines are batched for a few milliseconds.)
		testenv.Eventually(t, 10*time.Second, filepath.Base(sock)+": the refusal logged", func() bool {
			return strings.Contains(logs.String(), "refused a connection")
		})
	}
	dlogs, plogs := &testenv.SyncBuffer{}, &testenv.SyncBuffer{}
	results := make(chan error, 2)
	// The dispatcher serves one poller at a time: check it before the
	// poller connects.
	go func() { results <- run(ctx, []string{"dispatcher", "--config", cfg}, io.Discard, dlogs) }()
	check(filepath.Join(dir, "kqueue.sock"), dlogs)
	go func() { results <- run(ctx, []string{"poller", "--config", cfg}, io.Discard, plogs) }()
	check(filepath.Join(dir, "kqueue.control"), plogs)
	cancel()
	for range 2 {
		if err := <-results; err != nil {
			t.Errorf("exit: %v", err)
		}
	}
}
