package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Dialect is what differs between the servers Laravel's database queue
// runs on: quoting, placeholders, how the reserve query locks its rows,
// and which errors mean "away" or "try again".
type Dialect uint8

const (
	MySQL    Dialect = iota + 1 // MySQL or MariaDB
	Postgres                    // PostgreSQL
	SQLite                      // an SQLite file
)

func (d Dialect) String() string {
	switch d {
	case MySQL:
		return "MySQL"
	case Postgres:
		return "PostgreSQL"
	case SQLite:
		return "SQLite"
	}
	return "unknown"
}

// quote quotes a table name, each part of a dotted one ("schema.jobs").
func (d Dialect) quote(name string) string {
	q := `"`
	if d == MySQL {
		q = "`"
	}
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = q + strings.ReplaceAll(p, q, q+q) + q
	}
	return strings.Join(parts, ".")
}

// bind turns a query's ? placeholders into the server's ($1, $2, … on
// PostgreSQL). The queries here hold no ? of their own.
func (d Dialect) bind(query string) string {
	if d != Postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// lockClause is how the reserve query locks the rows it takes, as
// Laravel's DatabaseQueue::getLockForPopping decides it: FOR UPDATE SKIP
// LOCKED where the server has it (MySQL 8.0.1+, MariaDB 10.6+, PostgreSQL
// 9.5+), else FOR UPDATE; SQLite has no row locks: its transaction holds
// the database's write lock from its start (BEGIN IMMEDIATE).
func lockClause(ctx context.Context, db *sql.DB, d Dialect) (string, error) {
	switch d {
	case SQLite:
		return "", nil
	case Postgres:
		var v int
		if err := db.QueryRowContext(ctx, "SHOW server_version_num").Scan(&v); err != nil {
			return "", err
		}
		if v >= 90500 {
			return " FOR UPDATE SKIP LOCKED", nil
		}
		return " FOR UPDATE", nil
	}
	var v string
	if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&v); err != nil {
		return "", err
	}
	if skipLocked(v) {
		return " FOR UPDATE SKIP LOCKED", nil
	}
	return " FOR UPDATE", nil
}

// skipLocked reports whether a MySQL or MariaDB server of version v
// ("10.11.6-MariaDB-0+deb12u1", "8.0.36") has SKIP LOCKED.
func skipLocked(v string) bool {
	mariadb := strings.Contains(v, "MariaDB")
	v = strings.TrimPrefix(v, "5.5.5-") // MariaDB's old replication prefix
	var major, minor, patch int
	fmt.Sscanf(v, "%d.%d.%d", &major, &minor, &patch)
	at := major*10000 + minor*100 + patch
	if mariadb {
		return at >= 100600
	}
	return at >= 80001
}

// unreachable tells an error of the network or of the server's
// availability — a restart, a shutdown, a connection lost, a server that
// takes no more connections or no writes (a failover), an SQLite database
// another process keeps locked past its busy timeout — from one the
// server answered with.
func unreachable(err error) bool {
	var ne net.Error
	if errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, driver.ErrBadConn) || errors.As(err, &ne) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, sql.ErrConnDone) {
		return true
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		// shutdown in progress, normal shutdown, connection killed, too many
		// connections, read-only (--read-only, a replica), gone away, lost
		case 1053, 1077, 1927, 1040, 1290, 2002, 2006, 2013:
			return true
		}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// connection exceptions; too many connections; a read-only
		// transaction (a standby); shutdowns, a server starting
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "53300" || pe.Code == "25006" ||
			pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code() & 0xff
		return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
	}
	var ce *pgconn.ConnectError
	return errors.As(err, &ce) || pgconn.SafeToRetry(err)
}

// transient tells an error the same statements may not meet again: a
// deadlock, a serialization failure, a lock wait that timed out.
func transient(err error) bool {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number == 1213 || me.Number == 1205
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "40001" || pe.Code == "40P01" || pe.Code == "55P03"
	}
	return false
}
