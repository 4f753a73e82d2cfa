package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/kqueue/kqueue/config"
	"github.com/kqueue/kqueue/exec"
	dbstore "github.com/kqueue/kqueue/poller/database"
	redisstore "github.com/kqueue/kqueue/poller/redis"
	sqsstore "github.com/kqueue/kqueue/poller/sqs"
)

// check validates a config and the app behind it.
func check(ctx context.Context, cfg *config.Config, stdout io.Writer) error {
	fmt.Fprintf(stdout, "config %s: ok\n", cfg.File)
	problems := checkApp(ctx, cfg, stdout)
	if err := checkStore(ctx, cfg, stdout); err != nil {
		problems = append(problems, err)
	}
	dc := exec.FromConfig(cfg, nil)
	dc.Workers = 1
	d := exec.New(dc, nil)
	if err := d.Start(ctx); err != nil {
		problems = append(problems, err)
	} else {
		fmt.Fprintf(stdout, "php worker: boots\n")
		d.Stop(context.Background())
	}
	generated := ""
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		generated = config.GeneratorDir // systemd runs here
	}
	for _, r := range append(cfg.Risks(), cfg.SandboxWarnings(generated)...) {
		fmt.Fprintf(stdout, "warning: %s\n", r)
	}
	return errors.Join(problems...)
}

// checkStore reaches the queues' store: the app's database for a database
// queue connection, its SQS queues for an SQS one, else Redis.
func checkStore(ctx context.Context, cfg *config.Config, stdout io.Writer) error {
	if l := cfg.Laravel; l != nil && l.SQS != nil {
		var names []string
		for _, q := range cfg.Queues {
			names = append(names, q.Name)
		}
		st, err := sqsstore.Connect(ctx, l.SQS, names, nil)
		if err != nil {
			return err
		}
		lines, err := st.Check(ctx)
		if err != nil {
			return err
		}
		for _, line := range lines {
			fmt.Fprintln(stdout, line)
		}
		return nil
	}
	if l := cfg.Laravel; l != nil && l.Database != nil {
		db, dialect, err := dbstore.Dial(ctx, l.Database)
		if err != nil {
			return err
		}
		defer db.Close()
		how, err := dbstore.New(dbstore.Config{DB: db, Dialect: dialect, Table: l.Database.TableName()}).Check(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "database %s: reachable, %s\n", l.Database.Where(), how)
		return nil
	}
	rdb, err := redisstore.Dial(ctx, cfg.Redis)
	if err != nil {
		return err
	}
	rdb.Close()
	fmt.Fprintf(stdout, "redis %s: reachable\n", cfg.Redis.String())
	return nil
}

// installTrigger installs (or removes) kqueue's notify trigger on the
// app's jobs table, which must be on PostgreSQL.
func installTrigger(ctx context.Context, cfg *config.Config, stdout io.Writer, remove bool) error {
	if _, err := exec.ReadApp(ctx, cfg); err != nil {
		return err
	}
	l := cfg.Laravel
	if l.Database == nil || l.Database.Driver != "pgsql" {
		return fmt.Errorf("kqueue trigger is for a queue in a PostgreSQL jobs table; the app's queue connection %q uses the %s driver", l.Connection, cmp.Or(dbDriver(l), l.Queue.Driver))
	}
	db, _, err := dbstore.Dial(ctx, l.Database)
	if err != nil {
		return err
	}
	defer db.Close()
	stmts := dbstore.TriggerSQL(l.Database.TableName())
	if remove {
		stmts = dbstore.DropTriggerSQL(l.Database.TableName())
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, s := range stmts {
		fmt.Fprintf(stdout, "%s;\n", s)
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s (%s): %w", l.Database.Where(), l.Database.Database, err)
		}
	}
	return tx.Commit()
}

// dbDriver is the database driver of a database queue connection, or "".
func dbDriver(l *config.Laravel) string {
	if l.Database == nil {
		return ""
	}
	return l.Database.Driver + " database"
}

// checkApp is kqueue check's part about the app's queue configuration; it
// returns the problems found.
func checkApp(ctx context.Context, cfg *config.Config, stdout io.Writer) []error {
	notes, err := exec.ReadApp(ctx, cfg)
	l := cfg.Laravel
	if l == nil && err != nil {
		return []error{err}
	}
	if l != nil {
		fmt.Fprintf(stdout, "laravel app %s: boots (Laravel %s, PHP %s)\n", cfg.App.Path, l.Version, l.PHP)
	} else {
		fmt.Fprintf(stdout, "laravel app %s: boots\n", cfg.App.Path)
	}
	var problems []error
	for _, n := range notes {
		switch {
		case n.Fatal:
			fmt.Fprintf(stdout, "disagreement: %s\n", n)
			problems = append(problems, fmt.Errorf("%s: %s", cfg.File, n))
		case n.Disagree:
			fmt.Fprintf(stdout, "disagreement: %s\n", n)
		default:
			fmt.Fprintf(stdout, "from the app: %s\n", n)
		}
	}
	if err != nil {
		return append(problems, err)
	}
	q := l.Queue
	blockFor := "none"
	if q.BlockFor != nil {
		blockFor = fmt.Sprintf("%ds", *q.BlockFor)
	}
	switch {
	case l.Database != nil:
		db := l.Database
		fmt.Fprintf(stdout, "queue connection %q: driver %s, database connection %q (%s, database %q), table %q, default queue %q, retry_after %s, after_commit %t\n",
			l.Connection, q.Driver, db.Name, db.Driver, db.Database, db.TableName(), q.Queue, q.RetryAfterOrDefault(), q.AfterCommit)
	case l.SQS != nil:
		fmt.Fprintf(stdout, "queue connection %q: driver sqs, prefix %q, suffix %q, default queue %q (%s), after_commit %t\n",
			l.Connection, l.SQS.Prefix, l.SQS.Suffix, q.Queue, l.SQS.QueueURL(cmp.Or(q.Queue, "default")), q.AfterCommit)
	default:
		fmt.Fprintf(stdout, "queue connection %q: driver %s, Redis connection %q (%s), default queue %q, retry_after %s, block_for %s (kqueue waits on the :notify list itself), after_commit %t\n",
			l.Connection, q.Driver, l.Redis.Name, l.Redis.Client, q.Queue, q.RetryAfterOrDefault(), blockFor, q.AfterCommit)
		if l.Redis.PrefixFrom == "config" {
			fmt.Fprintf(stdout, "warning: the app's Redis client could not connect, so its prefix was read from its config, not from the client\n")
		}
	}
	fmt.Fprintf(stdout, "cache store %q: driver %s, prefix %q (where queue:restart leaves its signal)\n", l.Cache.Store, l.Cache.Driver, l.Cache.Prefix)
	fmt.Fprintf(stdout, "failed jobs: driver %s, database %q, table %q\n", l.Failed.Driver, l.Failed.Database, l.Failed.Table)
	if w := l.FailedWarning(); w != "" {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	return problems
}
