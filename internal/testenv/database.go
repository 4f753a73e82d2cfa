package testenv

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"
)

// DB is where a test app's database queue lives: a private MariaDB or
// PostgreSQL server in a temporary folder, on a unix socket only, or an
// SQLite file.
type DB struct {
	// Driver is Laravel's name of it: "mysql" (MariaDB), "pgsql" or
	// "sqlite".
	Driver string
	// Socket is MariaDB's socket, or the folder of PostgreSQL's; "" for
	// SQLite.
	Socket string
	// Name is the database's name, or the SQLite file.
	Name string
	// User is who the app connects as.
	User string
	// SQL is the test's own connection to it.
	SQL *sql.DB

	dir  string
	cmd  *exec.Cmd
	out  bytes.Buffer
	args []string
	uid  *syscall.Credential
	// created: MariaDB's database exists (the test's connection uses it).
	created bool
}

// Backends names the database queue's servers the tests run on, as
// Laravel's drivers name them.
func Backends() []string { return []string{"mysql", "pgsql", "sqlite"} }

// StartDB starts a database for driver ("mysql": MariaDB, "pgsql":
// PostgreSQL; "sqlite": a new file) with its socket or file inside the
// chroot at root ("" = this host), and stops it at cleanup.
func StartDB(t testing.TB, driver, root string) *DB {
	t.Helper()
	d := &DB{Driver: driver, dir: shortTempDir(t, root)}
	switch driver {
	case "mysql":
		d.startMariaDB(t)
	case "pgsql":
		d.startPostgres(t)
	case "sqlite":
		d.Name = filepath.Join(d.dir, "queue.sqlite")
		if err := os.WriteFile(d.Name, nil, 0o666); err != nil {
			t.Fatal(err)
		}
		db, err := sql.Open("sqlite", "file:"+d.Name+"?_pragma=busy_timeout(5000)")
		if err != nil {
			t.Fatal(err)
		}
		d.SQL = db
	default:
		t.Fatalf("testenv: no database %q", driver)
	}
	t.Cleanup(func() { d.Stop() })
	return d
}

func (d *DB) startMariaDB(t testing.TB) {
	Need(t, "mariadbd", "mariadb-install-db")
	data := filepath.Join(d.dir, "data")
	// A private tmpdir: servers started side by side once removed each
	// other's temporary tables' files in a shared /tmp.
	tmp := filepath.Join(d.dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mariadb-install-db", "--no-defaults", "--datadir="+data, "--tmpdir="+tmp, "--user=root",
		"--auth-root-authentication-method=normal", "--skip-test-db").CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	d.Socket, d.Name, d.User = filepath.Join(d.dir, "my.sock"), "app", "root"
	d.args = []string{"mariadbd", "--no-defaults", "--datadir=" + data, "--tmpdir=" + tmp, "--socket=" + d.Socket, "--skip-networking",
		"--user=root", "--innodb-buffer-pool-size=32M", "--skip-log-bin", "--innodb-flush-log-at-trx-commit=2"}
	d.start(t)
	if _, err := d.SQL.Exec("CREATE DATABASE app"); err != nil {
		t.Fatal(err)
	}
	d.created = true
	d.connect(t)
}

func (d *DB) startPostgres(t testing.TB) {
	bin := "/usr/lib/postgresql/15/bin/"
	Need(t, bin+"initdb")
	pg, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("PostgreSQL runs as the postgres user: apt-get install postgresql: %v", err)
	}
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	d.uid = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if err := os.Chown(d.dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(d.dir, "data")
	initdb := exec.Command(bin+"initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: d.uid}
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	d.Socket, d.Name, d.User = d.dir, "postgres", "postgres"
	d.args = []string{bin + "postgres", "-D", data, "-k", d.dir, "-h", "", "-c", "fsync=off"}
	d.start(t)
}

// start starts the server and waits until it answers.
func (d *DB) start(t testing.TB) {
	t.Helper()
	d.out.Reset()
	d.cmd = exec.Command(d.args[0], d.args[1:]...)
	d.cmd.Stdout, d.cmd.Stderr = &d.out, &d.out
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: d.uid}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", d.args[0], err)
	}
	d.connect(t)
	deadline := time.Now().Add(30 * time.Second)
	for d.SQL.Ping() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not come up: %s", d.args[0], d.out.String())
		}
		time.Sleep(20 * time.Millisecond) // polling a starting server: there is no event to wait on
	}
}

// connect opens the test's connection.
func (d *DB) connect(t testing.TB) {
	if d.SQL != nil {
		d.SQL.Close()
	}
	switch d.Driver {
	case "mysql":
		cfg := mysql.NewConfig()
		cfg.User, cfg.Net, cfg.Addr = d.User, "unix", d.Socket
		if d.created {
			cfg.DBName = d.Name
		}
		conn, _ := mysql.NewConnector(cfg)
		d.SQL = sql.OpenDB(conn)
	case "pgsql":
		cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s user=postgres dbname=postgres", d.Socket))
		if err != nil {
			t.Fatal(err)
		}
		d.SQL = stdlib.OpenDB(*cfg)
	}
}

// Stop stops the server (SIGKILL: an outage, not a shutdown).
func (d *DB) Stop() {
	if d.SQL != nil {
		d.SQL.Close()
	}
	if d.cmd != nil {
		d.cmd.Process.Kill()
		d.cmd.Wait()
		d.cmd = nil
	}
}

// Start starts a stopped server again, on the same socket and data.
func (d *DB) Start(t testing.TB) {
	t.Helper()
	if d.cmd == nil && d.args != nil {
		d.start(t)
	}
}

// Restart shuts the server down cleanly, its connections cut, and starts
// it again on the same socket and data.
func (d *DB) Restart(t testing.TB) {
	t.Helper()
	d.Shutdown()
	d.start(t)
}

// Shutdown shuts the server down cleanly, its connections cut; Start
// starts it again.
func (d *DB) Shutdown() {
	if d.cmd == nil {
		return
	}
	sig := syscall.SIGTERM // MariaDB: a shutdown that ends every connection
	if d.Driver == "pgsql" {
		sig = syscall.SIGINT // PostgreSQL's fast shutdown (SIGTERM waits for its clients to leave)
	}
	d.cmd.Process.Signal(sig)
	d.cmd.Wait()
	d.cmd = nil
}

// Env is what the fixture app needs to put its queue on this database:
// its database queue connection on the matching database connection.
// inside maps a path of this process to the app's (its chroot's).
func (d *DB) Env(inside func(string) string) map[string]string {
	env := map[string]string{"QUEUE_CONNECTION": "database", "DB_QUEUE_CONNECTION": d.Driver, "QDB_USERNAME": d.User}
	if d.Driver == "sqlite" {
		env["QDB_DATABASE"] = inside(d.Name)
	} else {
		env["QDB_DATABASE"], env["QDB_SOCKET"] = d.Name, inside(d.Socket)
	}
	return env
}

// Count is the number of rows query (a SELECT COUNT(*) …) counts.
func (d *DB) Count(t testing.TB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := d.SQL.QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// CreateJobsTable creates Laravel's jobs table (its queue:table migration)
// for the store's tests, which need no app.
func (d *DB) CreateJobsTable(t testing.TB) {
	t.Helper()
	var stmts []string
	switch d.Driver {
	case "mysql":
		stmts = []string{"CREATE TABLE jobs (id bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY, queue varchar(255) NOT NULL, " +
			"payload longtext NOT NULL, attempts tinyint unsigned NOT NULL, reserved_at int unsigned NULL, " +
			"available_at int unsigned NOT NULL, created_at int unsigned NOT NULL, INDEX jobs_queue_index (queue))"}
	case "pgsql":
		stmts = []string{"CREATE TABLE jobs (id bigserial PRIMARY KEY, queue varchar(255) NOT NULL, payload text NOT NULL, " +
			"attempts smallint NOT NULL, reserved_at integer NULL, available_at integer NOT NULL, created_at integer NOT NULL)",
			"CREATE INDEX jobs_queue_index ON jobs (queue)"}
	default:
		stmts = []string{`CREATE TABLE "jobs" ("id" integer PRIMARY KEY AUTOINCREMENT NOT NULL, "queue" varchar NOT NULL, ` +
			`"payload" text NOT NULL, "attempts" integer NOT NULL, "reserved_at" integer, "available_at" integer NOT NULL, "created_at" integer NOT NULL)`,
			`CREATE INDEX "jobs_queue_index" ON "jobs" ("queue")`}
	}
	for _, s := range stmts {
		if _, err := d.SQL.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// InsertRow is the statement that puts a row in the jobs table as
// DatabaseQueue's push does, with this server's placeholders: its
// arguments are the queue, the payload, available_at and created_at.
func (d *DB) InsertRow() string {
	if d.Driver == "pgsql" {
		return "INSERT INTO jobs (queue, payload, attempts, reserved_at, available_at, created_at) VALUES ($1, $2, 0, NULL, $3, $4)"
	}
	return "INSERT INTO jobs (queue, payload, attempts, reserved_at, available_at, created_at) VALUES (?, ?, 0, NULL, ?, ?)"
}

// Push inserts n minimal Laravel payloads on queue, due at once, as
// DatabaseQueue's push does. Their uuids are "queue-i".
func (d *DB) Push(t testing.TB, queue string, n int) {
	t.Helper()
	now := time.Now().Unix()
	for i := range n {
		if _, err := d.SQL.Exec(d.InsertRow(), queue, fmt.Sprintf(`{"uuid":"%s-%d","displayName":"J","job":"j","data":{}}`, queue, i), now, now); err != nil {
			t.Fatal(err)
		}
	}
}

// QueueOn moves the app's queue connection to a database queue on driver
// ("mysql": a private MariaDB, "pgsql": a private PostgreSQL, "sqlite":
// the app's own database, as a new Laravel app has it), with Laravel's
// jobs table migrated there.
func (a *App) QueueOn(t testing.TB, driver string) *DB {
	t.Helper()
	var d *DB
	if driver == "sqlite" {
		db, err := sql.Open("sqlite", "file:"+a.DB+"?_pragma=busy_timeout(5000)")
		if err != nil {
			t.Fatal(err)
		}
		d = &DB{Driver: "sqlite", Name: a.DB, SQL: db}
		t.Cleanup(func() { db.Close() })
	} else {
		d = StartDB(t, driver, a.Root)
	}
	for k, v := range d.Env(a.Inside) {
		a.Env[k] = v
	}
	if driver != "sqlite" {
		a.Artisan(t, "migrate", "--database="+driver, "--force")
	}
	return d
}
