// Package testenv gives tests the real parts kqueue works with: a private
// redis-server and a private copy of the Laravel fixture app, on Debian's
// php and php-laravel-framework. A missing part fails the test with what to
// install; it is never skipped silently.
package testenv

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Prefix is the fixture app's Redis prefix (the Laravel 8 skeleton's).
const Prefix = "laravel_database_"

// Root is the repository root.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Need fails the test when a program is missing.
func Need(t testing.TB, programs ...string) {
	t.Helper()
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s is not installed: run .ci/run or apt-get install php-cli php-redis php-sqlite3 php-mysql php-pgsql php-mbstring php-laravel-framework redis-server redis-tools mariadb-server postgresql iproute2 faketime chromium prometheus (make deps)", p)
		}
	}
}

// Redis is a private redis-server on a unix socket.
type Redis struct {
	Socket string
	Client *redis.Client
	cmd    *exec.Cmd
	dir    string
	extra  []string // redis-server arguments it was started with
}

// StartRedis starts a redis-server for the test and stops it at cleanup.
func StartRedis(t testing.TB, extra ...string) *Redis {
	t.Helper()
	return StartRedisIn(t, "", extra...)
}

// StartRedisIn is StartRedis with the server's socket inside the chroot at
// root ("" = the host's /tmp), so PHP in the chroot reaches it too.
func StartRedisIn(t testing.TB, root string, extra ...string) *Redis {
	t.Helper()
	Need(t, "redis-server")
	dir := shortTempDir(t, root)
	r := &Redis{Socket: filepath.Join(dir, "redis.sock"), dir: dir, extra: extra}
	r.start(t, extra...)
	t.Cleanup(func() { r.Stop() })
	return r
}

func (r *Redis) start(t testing.TB, extra ...string) {
	t.Helper()
	args := append([]string{"--port", "0", "--unixsocket", r.Socket, "--unixsocketperm", "700",
		"--save", "", "--appendonly", "no", "--dir", r.dir, "--loglevel", "warning"}, extra...)
	r.cmd = exec.Command("redis-server", args...)
	var out bytes.Buffer
	r.cmd.Stdout, r.cmd.Stderr = &out, &out
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	r.Client = redis.NewClient(&redis.Options{Network: "unix", Addr: r.Socket})
	deadline := time.Now().Add(10 * time.Second)
	for r.Client.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not come up: %s", out.String())
		}
		time.Sleep(5 * time.Millisecond) // polling a starting server: there is no event to wait on
	}
}

// URL is the server's address for kqueue.toml.
func (r *Redis) URL() string { return "unix://" + r.Socket }

// Push puts n minimal Laravel payloads on queue (keys under prefix), each
// with its notify token, as Laravel's push does: the poller's and the
// Redis store's tests, which need jobs but no app. Their uuids are
// "queue-i".
func (r *Redis) Push(prefix, queue string, n int) {
	ctx := context.Background()
	q := prefix + "queues:" + queue
	for i := range n {
		r.Client.RPush(ctx, q, fmt.Sprintf(`{"uuid":"%s-%d","displayName":"J","job":"j","data":{},"id":"x","attempts":0}`, queue, i))
		r.Client.RPush(ctx, q+":notify", 1)
	}
}

// Stop stops the server.
func (r *Redis) Stop() {
	if r.cmd == nil {
		return
	}
	r.Client.Close()
	r.cmd.Process.Kill()
	r.cmd.Wait()
	r.cmd = nil
}

// Restart stops the server cleanly (SIGTERM: with --appendonly yes it
// keeps its data) and starts it again on the same socket and folder.
func (r *Redis) Restart(t testing.TB) {
	t.Helper()
	r.Client.Close()
	r.cmd.Process.Signal(syscall.SIGTERM)
	r.cmd.Wait()
	r.start(t, r.extra...)
}

// Freeze stops the server process (SIGSTOP): an outage in which Redis
// keeps its data but answers nobody, the worst kind for a client. Thaw
// ends it.
func (r *Redis) Freeze(t testing.TB) {
	if err := r.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.cmd.Process.Signal(syscall.SIGCONT) })
}

// Thaw resumes a frozen server (SIGCONT).
func (r *Redis) Thaw(t testing.TB) {
	if err := r.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// App is a private copy of the Laravel fixture app with its own sqlite
// database (migrated) and Redis.
type App struct {
	Path  string // the app's folder, as this process sees it
	DB    string // the sqlite database, as this process sees it
	Redis *Redis
	Env   map[string]string // what the app needs on top of its .env
	// Root is the chroot the app's PHP runs in ("" = this host): its paths
	// inside are Inside(Path), Inside(DB), ….
	Root string
}

// NewApp copies testdata/app for the test and migrates its database.
func NewApp(t testing.TB, r *Redis) *App {
	t.Helper()
	return NewAppIn(t, r, "")
}

// NewAppIn is NewApp for PHP in the chroot at root ("" = this host): the
// copy is made inside the chroot, where r must be too (StartRedisIn).
func NewAppIn(t testing.TB, r *Redis, root string) *App {
	t.Helper()
	var dir string
	if root == "" {
		Need(t, "php")
		dir = t.TempDir()
	} else {
		dir = shortTempDir(t, root)
	}
	app := &App{Path: filepath.Join(dir, "app"), DB: filepath.Join(dir, "database.sqlite"), Redis: r, Root: root}
	if err := copyTree(filepath.Join(Root(), "testdata", "app"), app.Path); err != nil {
		t.Fatalf("copy fixture app: %v", err)
	}
	if err := os.WriteFile(app.DB, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	app.Env = map[string]string{
		"REDIS_HOST":  app.Inside(r.Socket),
		"REDIS_PORT":  "0",
		"DB_DATABASE": app.Inside(app.DB),
		"KQ_PROBE":    "1",
		"LOG_CHANNEL": "stderr",
	}
	app.Artisan(t, "migrate", "--force")
	return app
}

// CopyIn copies the folder src (a path in the repository) next to the app,
// under name, and returns the copy's path as PHP sees it.
func (a *App) CopyIn(t testing.TB, src, name string) string {
	t.Helper()
	dst := filepath.Join(a.Path, "..", name)
	if err := copyTree(src, dst); err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
	return a.Inside(dst)
}

// Inside is the path PHP sees for path, a path of this process inside the
// app's chroot.
func (a *App) Inside(path string) string {
	if a.Root == "" {
		return path
	}
	rel, err := filepath.Rel(a.Root, path)
	if err != nil || strings.HasPrefix(rel, "..") {
		panic(fmt.Sprintf("testenv: %s is outside the chroot %s", path, a.Root))
	}
	return "/" + rel
}

// PHP is `php args…` run where the app's PHP runs (its chroot, if any),
// in the folder dir as PHP sees it.
func (a *App) PHP(ctx context.Context, dir string, args ...string) *exec.Cmd {
	if a.Root == "" {
		cmd := exec.CommandContext(ctx, "php", args...)
		cmd.Dir = dir
		return cmd
	}
	return InChroot(ctx, a.Root, dir, "/usr/bin/php", args...)
}

// InChroot is a command run in the chroot at root, in the folder dir (a
// path inside it).
func InChroot(ctx context.Context, root, dir, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Path = name // the chroot's, not looked up on this host
	cmd.Dir = cmp.Or(dir, "/")
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	return cmd
}

// Environ is the environment to run the app's PHP with.
func (a *App) Environ() []string {
	env := os.Environ()
	for k, v := range a.Env {
		env = append(env, k+"="+v)
	}
	return env
}

// Command is `php artisan args…` in the app.
func (a *App) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := a.PHP(ctx, a.Inside(a.Path), append([]string{"artisan"}, args...)...)
	cmd.Env = a.Environ()
	return cmd
}

// Artisan runs `php artisan args…` and fails the test if it fails.
func (a *App) Artisan(t testing.TB, args ...string) string {
	t.Helper()
	out, err := a.Command(context.Background(), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("php artisan %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Config writes a kqueue.toml for the app and returns its path. extra is
// appended (more TOML tables). For an app in a chroot, the paths in it are
// the chroot's: it is a config for a kqueue running inside. With workers
// 0 it writes no [pool]: extra may.
func (a *App) Config(t testing.TB, workers int, extra string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "[app]\npath = %q\n", a.Inside(a.Path))
	fmt.Fprintf(&b, "[app.env]\n")
	for k, v := range a.Env {
		fmt.Fprintf(&b, "%s = %q\n", k, v)
	}
	fmt.Fprintf(&b, "[redis]\nurl = %q\n", "unix://"+a.Inside(a.Redis.Socket))
	if workers > 0 {
		fmt.Fprintf(&b, "[pool]\nworkers = %d\n", workers)
	}
	fmt.Fprintf(&b, "[dispatcher]\nsocket = %q\n", a.Inside(filepath.Join(a.Path, "..", "kqueue.sock")))
	fmt.Fprintf(&b, "[control]\nsocket = %q\n", a.Inside(filepath.Join(a.Path, "..", "kqueue.control")))
	b.WriteString(extra)
	path := filepath.Join(a.Path, "..", "kqueue.toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Sqlite runs a query on the app's database with php's PDO and returns the
// rows as tab-separated lines.
func (a *App) Sqlite(t testing.TB, query string) []string {
	t.Helper()
	script := `$db = new PDO('sqlite:' . $argv[1]); foreach ($db->query($argv[2], PDO::FETCH_NUM) as $row) { echo json_encode($row, JSON_UNESCAPED_SLASHES|JSON_UNESCAPED_UNICODE), "\n"; }`
	out, err := a.PHP(context.Background(), "", "-r", script, a.Inside(a.DB), query).CombinedOutput()
	if err != nil {
		t.Fatalf("query %q: %v\n%s", query, err, out)
	}
	var rows []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		rows = append(rows, sc.Text())
	}
	return rows
}

// shortTempDir is a temporary directory with a short path (unix socket
// paths are limited to 108 bytes), in the /tmp of the chroot at root ("" =
// the host's).
func shortTempDir(t testing.TB, root string) string {
	tmp := ""
	if root != "" {
		tmp = filepath.Join(root, "tmp")
	}
	dir, err := os.MkdirTemp(tmp, "kq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if strings.HasSuffix(path, ".sqlite") || strings.Contains(rel, "bootstrap/cache/") && strings.HasSuffix(rel, ".php") {
			return nil // state of another run
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		info, _ := d.Info()
		return os.WriteFile(target, b, info.Mode().Perm())
	})
}
