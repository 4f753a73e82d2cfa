package database

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"io"
	"log"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/kqueue/kqueue/config"
	_ "modernc.org/sqlite" // registers "sqlite"
)

// Dial opens the database of the app's database queue connection as its
// config/database.php describes it, and checks that it answers.
//
// As for Redis, the poller retries on its own, once a second: a server
// that does not answer must cost it seconds (5 s to connect, 10 s per
// statement on MySQL), not minutes.
func Dial(ctx context.Context, c *config.LaravelDatabase) (*sql.DB, Dialect, error) {
	db, d, err := open(c)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", c.Where(), err)
	}
	db.SetMaxOpenConns(5) // the poller's loop, its waker (and its LISTEN), status and metrics
	db.SetMaxIdleConns(4)
	db.SetConnMaxIdleTime(5 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, 0, fmt.Errorf("%s database %s (%s): %w", d, c.Database, c.Where(), err)
	}
	return db, d, nil
}

func init() {
	// The driver logs a connection it drops to stderr, beside the
	// journal's fields; the poller reports outages itself.
	mysql.SetLogger(log.New(io.Discard, "", 0))
}

func open(c *config.LaravelDatabase) (*sql.DB, Dialect, error) {
	switch c.Driver {
	case "mysql", "mariadb":
		return sql.OpenDB(mysqlConnector(c)), MySQL, nil
	case "pgsql":
		cfg, err := pgConfig(c)
		if err != nil {
			return nil, 0, err
		}
		return stdlib.OpenDB(*cfg), Postgres, nil
	case "sqlite":
		if c.Database == "" || c.Database == ":memory:" {
			return nil, 0, fmt.Errorf("SQLite database %q: kqueue needs the file the app's jobs are in", c.Database)
		}
		// BEGIN IMMEDIATE: a reserve takes the write lock before it reads,
		// so two workers never pick the same rows. The journal mode is the
		// app's (WAL or not); busy_timeout as the app sets it, else 5 s.
		busy := 5000
		if c.BusyTimeout != nil {
			busy = *c.BusyTimeout
		}
		// mode=rw: a database that is not there is an error, not a new
		// empty file.
		q := url.Values{"_txlock": {"immediate"}, "_pragma": {fmt.Sprintf("busy_timeout(%d)", busy)}, "mode": {"rw"}}
		db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: c.Database}).EscapedPath()+"?"+q.Encode())
		return db, SQLite, err
	}
	return nil, 0, fmt.Errorf("driver %q: kqueue reads database queues on MySQL, MariaDB, PostgreSQL and SQLite (mysql, mariadb, pgsql, sqlite)", c.Driver)
}

func mysqlConnector(c *config.LaravelDatabase) driver.Connector {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.DBName = deref(c.Username), deref(c.Password), c.Database
	if s := deref(c.Socket); s != "" {
		cfg.Net, cfg.Addr = "unix", s
	} else {
		cfg.Net, cfg.Addr = "tcp", net.JoinHostPort(cmp.Or(deref(c.Host), "127.0.0.1"), strconv.Itoa(cmp.Or(deref(c.Port), 3306)))
	}
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 5*time.Second, 10*time.Second, 10*time.Second
	// Statements with their values in them: one round trip each, not a
	// prepare, an execute and a close.
	cfg.InterpolateParams = true
	if cs := deref(c.Charset); cs != "" {
		cfg.Apply(mysql.Charset(cs, ""))
	}
	conn, _ := mysql.NewConnector(cfg) // fails only for a TLS name it does not know; none is set
	return readCommitted{conn}
}

// readCommitted opens MySQL sessions at READ COMMITTED. At InnoDB's
// default, REPEATABLE READ, a locking read also locks the gaps between
// the index entries it passes, so pollers reserving and deleting rows side
// by side deadlock one another; without gap locks they don't. The jobs
// table needs no more: every row kqueue changes it has locked first.
type readCommitted struct{ driver.Connector }

func (c readCommitted) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.(driver.ExecerContext).ExecContext(ctx, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// pgConfig is the connection of a pgsql connection: Laravel's PostgresConnector
// builds its DSN of host, port, dbname, sslmode; search_path is set on
// connect, as Laravel does.
func pgConfig(c *config.LaravelDatabase) (*pgx.ConnConfig, error) {
	var kv []string
	add := func(k, v string) {
		if v != "" {
			kv = append(kv, k+"='"+strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v)+"'")
		}
	}
	// No host: libpq's default, Debian's socket folder, as PHP's PDO has it.
	add("host", cmp.Or(deref(c.Host), "/var/run/postgresql"))
	if p := deref(c.Port); p != 0 {
		add("port", strconv.Itoa(p))
	}
	add("dbname", c.Database)
	add("user", deref(c.Username))
	add("password", deref(c.Password))
	add("sslmode", cmp.Or(deref(c.SSLMode), "prefer"))
	add("connect_timeout", "5")
	if sp := deref(c.Schema); sp != "" {
		add("search_path", searchPath(sp))
	}
	return pgx.ParseConfig(strings.Join(kv, " "))
}

// searchPath quotes each schema of a search_path ("a, B" → `"a","B"`), as
// Laravel's PostgresConnector does, keeping $user as it is.
func searchPath(sp string) string {
	var out []string
	for _, p := range strings.Split(sp, ",") {
		p = strings.Trim(strings.TrimSpace(p), `"'`)
		if p == "" {
			continue
		}
		if p != "$user" {
			p = `"` + strings.ReplaceAll(p, `"`, `""`) + `"`
		}
		out = append(out, p)
	}
	return strings.Join(out, ",")
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
