package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/kqueue/kqueue/config"
	"github.com/kqueue/kqueue/exec"
)

// readApp completes cfg with the app's own queue configuration: one PHP
// run that boots the app (~100–200 ms). kqueue.toml's own values win;
// the notes say what came from the app and where the two disagree.
func readApp(ctx context.Context, cfg *config.Config) ([]config.Note, error) {
	answer, err := exec.AppConfig(ctx, dispatcherConfig(cfg, nil))
	if err != nil {
		return nil, err
	}
	l, err := config.ParseLaravel(answer)
	if err != nil {
		return nil, err
	}
	return cfg.Adopt(l)
}

// adoptApp is readApp at start-up: what came from the app is logged, each
// disagreement is a warning (an error when kqueue would see no job).
func adoptApp(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	notes, err := readApp(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%w (set these values in %s, or fix the app)", err, cfg.File)
	}
	var taken []any
	for _, n := range notes {
		switch {
		case n.Fatal:
			log.Error("no job will be seen: " + n.String())
		case n.Disagree:
			log.Warn("kqueue.toml and the app disagree: " + n.String())
		default:
			taken = append(taken, n.Key, strings.Trim(n.Value, `"`))
		}
	}
	l := cfg.Laravel
	log.Info("read the app's queue configuration", append([]any{"laravel", l.Version}, taken...)...)
	if w := failedWarning(l); w != "" {
		log.Warn(w)
	}
	return nil
}

// failedWarning is a warning about the app's failed-job store, or "".
func failedWarning(l *config.Laravel) string {
	switch l.Failed.Driver {
	case "", "null":
		return "the app records no failed jobs (config/queue.php failed.driver is null): a job that fails is dropped, as under queue:work"
	}
	return ""
}

// checkApp is kqueue check's part about the app's queue configuration; it
// returns the problems found.
func checkApp(ctx context.Context, cfg *config.Config, stdout io.Writer) []error {
	notes, err := readApp(ctx, cfg)
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
	fmt.Fprintf(stdout, "queue connection %q: driver %s, Redis connection %q (%s), default queue %q, retry_after %s, block_for %s (kqueue waits on the :notify list itself), after_commit %t\n",
		l.Connection, q.Driver, l.Redis.Name, l.Redis.Client, q.Queue, q.RetryAfterOrDefault(), blockFor, q.AfterCommit)
	if l.Redis.PrefixFrom == "config" {
		fmt.Fprintf(stdout, "warning: the app's Redis client could not connect, so its prefix was read from its config, not from the client\n")
	}
	fmt.Fprintf(stdout, "cache store %q: driver %s, prefix %q (where queue:restart leaves its signal)\n", l.Cache.Store, l.Cache.Driver, l.Cache.Prefix)
	fmt.Fprintf(stdout, "failed jobs: driver %s, database %q, table %q\n", l.Failed.Driver, l.Failed.Database, l.Failed.Table)
	if w := failedWarning(l); w != "" {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	return problems
}
