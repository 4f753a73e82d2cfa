// Package daemon assembles a kqueue instance from its config: the poller
// on its queues' store, the dispatcher and its pool of PHP workers, the
// sockets between and around them, systemd's notifications and reloads.
// Run is both halves in one process (kqueue run); Poller and Dispatcher
// are the two units (kqueue@NAME and kqueue-dispatcher@NAME).
//
// Every part has the same life: built, started, served until ctx is done,
// then stopped by its own rules. A stop goes in this order:
//
//  1. the poller reserves no more jobs, and the dispatcher takes no more
//     (exec.Dispatcher: capacity 0);
//  2. the running jobs have job.shutdown_timeout to finish; then the
//     dispatcher kills and releases them, and gives back the queued ones;
//  3. the poller writes their outcomes to the store (it waits up to
//     poller.HardStopGrace past the shutdown timeout for them);
//  4. the pool's workers exit; the status and metrics sockets close last.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"

	"github.com/kqueue/kqueue/config"
	"github.com/kqueue/kqueue/exec"
	"github.com/kqueue/kqueue/internal/unixsock"
	"github.com/kqueue/kqueue/notify"
	"github.com/kqueue/kqueue/poller"
	"github.com/kqueue/kqueue/protocol"
)

// Options are what the command line adds to the config.
type Options struct {
	// Version is kqueue's, for the start-up line.
	Version string
	// StopWhenEmpty ends Run once no job is ready or running.
	StopWhenEmpty bool
	// Reload delivers SIGHUP (systemctl reload): the config is read again.
	Reload <-chan os.Signal
}

// Run runs the poller and the dispatcher in this process, over an
// in-process stream: the same protocol as between the two units.
func Run(ctx context.Context, cfg *config.Config, log *slog.Logger, opts Options) error {
	d, answer, appErr, err := startDispatcher(ctx, cfg, log)
	if err != nil {
		return err
	}
	app := *cfg
	app.Queues = slices.Clone(cfg.Queues)
	if err := adopt(&app, answer, appErr, log); err != nil {
		d.close()
		return err
	}
	defer d.driver.Close()
	// The pool started with kqueue.toml's settings (an unset connection
	// means the app's default to both); the poller takes the app's.
	*cfg = app
	logStart(log, cfg, "run", opts.Version)
	n := notify.New()
	p, err := startPoller(ctx, cfg, log, n, func(c *poller.Config) { c.StopWhenEmpty = opts.StopWhenEmpty })
	if err != nil {
		d.Stop(context.Background())
		return err
	}
	defer p.close()
	pc, dc := protocol.Pair()
	served := make(chan error, 1)
	go func() { served <- d.ServeConn(ctx, dc) }()
	n.Ready(fmt.Sprintf("%d workers ready", cfg.Pool.Workers))
	defer stopping(ctx, n)()
	defer reloads(ctx, cfg, opts.Reload, n, log, func(next *config.Config) {
		reloadPoller(cfg, next, log)
		reloadDispatcher(d, next, log)
	})()
	err = errors.Join(p.Run(ctx, pc), <-served)
	log.Info("kqueue stopped")
	return err
}

// Poller is the queue side alone: it connects to the dispatcher's socket
// and reconnects when the dispatcher restarts.
func Poller(ctx context.Context, cfg *config.Config, log *slog.Logger, opts Options) error {
	n := notify.New()
	// It runs no PHP: the dispatcher, which runs as the app's user, tells
	// it the app's queue configuration.
	answer, err := poller.AskApp(ctx, cfg.Dispatcher.Socket, cfg.Name, log, func(status string) { n.Watchdog(); n.Status(status) })
	if ctx.Err() != nil {
		return nil // stopped before it started
	}
	if err := adopt(cfg, answer, err, log); err != nil {
		return err
	}
	logStart(log, cfg, "poller", opts.Version)
	// The poller's reload only reads the config again and says what waits
	// for a restart: a RELOADING=1 of its own would make systemd propagate
	// a second reload to the dispatcher, which systemctl reload reached
	// already (ReloadPropagatedFrom).
	defer reloads(ctx, cfg, opts.Reload, nil, log, func(next *config.Config) { reloadPoller(cfg, next, log) })()
	p, err := startPoller(ctx, cfg, log, n, func(c *poller.Config) {
		c.IdleExit = cfg.Pool.IdleExit.D()
		c.Waiting = func(status string) { n.Watchdog(); n.Status(status) }
	})
	if err != nil {
		return err
	}
	defer p.close()
	n.Ready("redis reachable; connecting to the dispatcher")
	defer stopping(ctx, n)()
	return p.Serve(ctx, cfg.Dispatcher.Socket)
}

// Dispatcher is the execution side alone: it boots the pool and serves
// one poller connection at a time on the socket systemd passed, or its
// own at dispatcher.socket.
func Dispatcher(ctx context.Context, cfg *config.Config, log *slog.Logger, opts Options) error {
	logStart(log, cfg, "dispatcher", opts.Version)
	if os.Getenv("INVOCATION_ID") != "" { // under systemd: in its sandbox
		for _, w := range cfg.SandboxWarnings(config.GeneratorDir) {
			log.Warn(w)
		}
	}
	ln, err := unixsock.Inherited()
	activated := ln != nil
	switch {
	case activated:
		log.Info("listening on the socket systemd passed", "socket", ln.Addr().String())
	case err == nil:
		if ln, err = unixsock.Listen(cfg.Dispatcher.Socket); err != nil {
			return fmt.Errorf("dispatcher socket: %w", err)
		}
	default:
		return err
	}
	defer ln.Close()
	if cfg.Pool.IdleExit > 0 && !activated {
		log.Warn("pool.idle_exit is ignored: it needs the dispatcher started by its socket (kqueue-dispatcher@NAME.socket), which starts it again")
	}
	d, answer, appErr, err := startDispatcher(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer d.driver.Close()
	if err := adopt(cfg, answer, appErr, log); err != nil {
		// The poller asks for it, and says why it cannot start.
		log.Error("the app's queue configuration", "error", err)
	}
	n := notify.New()
	n.Ready(fmt.Sprintf("%d workers ready", cfg.Pool.Workers))
	defer reloads(ctx, cfg, opts.Reload, n, log, func(next *config.Config) { reloadDispatcher(d, next, log) })()
	defer stopping(ctx, n)()
	return d.ServeListener(ctx, ln, exec.ListenOptions{
		IdleExit: cfg.Pool.IdleExit > 0 && activated, Watchdog: func() { n.Watchdog() }, WatchdogEvery: n.WatchdogInterval(),
	})
}

// stopping tells systemd STOPPING=1 once ctx is done, until the returned
// function is called.
func stopping(ctx context.Context, n *notify.Notifier) (cancel func()) {
	stop := context.AfterFunc(ctx, func() { n.Stopping("stopping: finishing running jobs") })
	return func() { stop() }
}

// logStart logs what a newcomer needs to know about this instance.
func logStart(log *slog.Logger, cfg *config.Config, role, version string) {
	log.Info("kqueue starting", "version", version, "role", role, "config", cfg.File,
		"app", cfg.App.Path, "redis", cfg.Redis.String(), "queues", cfg.QueueNames())
	for _, r := range cfg.Risks() {
		log.Warn("risky setting: " + r)
	}
	if role != "poller" && cfg.App.User == "" && os.Geteuid() == 0 {
		log.Warn("PHP jobs run as root: set [app] user to the account your app runs as (e.g. www-data)")
	}
}
