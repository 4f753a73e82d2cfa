package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/kqueue/kqueue/cgroup"
	"github.com/kqueue/kqueue/config"
	"github.com/kqueue/kqueue/exec"
	"github.com/kqueue/kqueue/journal"
	"github.com/kqueue/kqueue/metrics"
	"github.com/kqueue/kqueue/notify"
	"github.com/kqueue/kqueue/poller"
	redisstore "github.com/kqueue/kqueue/poller/redis"
	"github.com/kqueue/kqueue/protocol"
	"github.com/redis/go-redis/v9"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

var errUsage = errors.New("usage: see kqueue --help")

// errUnknownCommand: the first argument names no command (exit 2).
var errUnknownCommand = errors.New("unknown command")

const usage = `kqueue runs Laravel queue jobs from Laravel's own Redis queues.

Usage:
  kqueue run        --config FILE [--stop-when-empty]   poller and dispatcher in one process
  kqueue poller     --config FILE                       the queue side (what kqueue@NAME runs)
  kqueue dispatcher --config FILE                       the execution side (kqueue-dispatcher@NAME)
  kqueue check      --config FILE | NAME                check a config and the app behind it
  kqueue status     --config FILE | NAME [--json]       live counts, queue depths, running jobs, last failures
  kqueue version                                        print the version

Flags:
  --config FILE       the instance config (default /etc/kqueue/default.toml);
                      instance NAME is the same as --config /etc/kqueue/NAME.toml
  --stop-when-empty   run: exit once no job is ready or running
  --json              status: print the raw JSON
  --log-format FMT    text (default) or json
  --log-level LEVEL   debug, info (default), warn or error
  --cpuprofile FILE   write a Go CPU profile (pprof) of this run to FILE

run and poller stop on SIGTERM or SIGINT: no new jobs are reserved, running
jobs finish (up to job.shutdown_timeout), and kqueue exits 0.
`

// commandHelp is what `kqueue CMD --help` prints, by command.
var commandHelp = map[string]string{
	"run": `Usage: kqueue run --config FILE | NAME [--stop-when-empty]

Runs the poller and the dispatcher in one foreground process: for
development, demos, containers and tests without systemd. SIGTERM or SIGINT
stops it: no new jobs are taken, running jobs finish (up to
job.shutdown_timeout), and it exits 0.

  --stop-when-empty   exit once no job is ready or running, like queue:work's
`,
	"poller": `Usage: kqueue poller --config FILE | NAME

The queue side, as kqueue@NAME.service runs it: reserves jobs from the app's
Redis queues and hands them to the dispatcher at [dispatcher] socket,
reconnecting when the dispatcher restarts.
`,
	"dispatcher": `Usage: kqueue dispatcher --config FILE | NAME

The execution side, as kqueue-dispatcher@NAME.service runs it: boots the
warm pool of PHP workers and serves the poller on [dispatcher] socket (or
the socket systemd passes it). SIGTERM drains it: no more jobs are taken,
the ones it has finish, then it exits.
`,
	"check": `Usage: kqueue check --config FILE | NAME

Checks a config and the app behind it — PHP found, Laravel boots, Redis
reachable, the cgroup driver usable, settings that disagree with the app's
— and says what to fix. Exits non-zero when something must be fixed.
`,
	"status": `Usage: kqueue status --config FILE | NAME [--json]

Live counts of a running instance: queue depths, workers, running jobs,
the last failures. Asks the instance over its [control] socket.

  --json              print the raw JSON
`,
}

// commonFlags is the flags every command takes, for its help.
const commonFlags = `
  --config FILE       the instance config (default /etc/kqueue/default.toml);
                      NAME is the same as --config /etc/kqueue/NAME.toml
  --log-format FMT    text (default) or json
  --log-level LEVEL   debug, info (default), warn or error
  --cpuprofile FILE   write a Go CPU profile (pprof) of this run to FILE
`

// run is the whole program, minus the process: testable.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	case "version", "--version":
		fmt.Fprintf(stdout, "kqueue %s\n", buildVersion())
		return nil
	}
	help, ok := commandHelp[cmd]
	if !ok {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w %q", errUnknownCommand, cmd)
	}

	fs := flag.NewFlagSet("kqueue "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stdout, help, commonFlags) }
	configPath := fs.String("config", "/etc/kqueue/default.toml", "")
	stopWhenEmpty := fs.Bool("stop-when-empty", false, "")
	logFormat := fs.String("log-format", "text", "")
	logLevel := fs.String("log-level", "info", "")
	cpuProfile := fs.String("cpuprofile", "", "")
	asJSON := fs.Bool("json", false, "")
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		// kqueue status NAME: the instance NAME's config.
		args = append([]string{"--config", "/etc/kqueue/" + args[0] + ".toml"}, args[1:]...)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		fmt.Fprint(stderr, help, commonFlags)
		return errUsage
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	logs := newLineBatcher(stderr)
	defer logs.Flush()
	log, err := newLogger(logs, stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}

	switch cmd {
	case "run":
		return runAll(ctx, cfg, log, *stopWhenEmpty)
	case "poller":
		return runPoller(ctx, cfg, log)
	case "dispatcher":
		return runDispatcher(ctx, cfg, log)
	case "check":
		return check(ctx, cfg, stdout)
	case "status":
		return status(ctx, cfg, stdout, *asJSON)
	}
	panic("unreachable: every command in commandHelp is handled above")
}

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

// newLogger logs to w (stderr, through a lineBatcher), or straight to the
// journal when stderr is the journal.
func newLogger(w, stderr io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: want debug, info, warn or error, got %q", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		// Under systemd, stderr is the journal: write native entries with
		// the job's fields instead (and no timestamps of our own).
		if stderr == os.Stderr && journal.StderrIsJournal() {
			if h, err := journal.NewHandler(journal.Socket, "kqueue", lv); err == nil {
				return slog.New(h), nil
			}
		}
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: want text or json, got %q", format)
}

// logStart logs what a newcomer needs to know about this instance.
func logStart(log *slog.Logger, cfg *config.Config, role string) {
	log.Info("kqueue starting", "version", buildVersion(), "role", role, "config", cfg.File,
		"app", cfg.App.Path, "redis", cfg.Redis.String(), "queues", queueNames(cfg))
	for _, r := range cfg.Risks() {
		log.Warn("risky setting: " + r)
	}
	if role != "poller" && cfg.App.User == "" && os.Geteuid() == 0 {
		log.Warn("PHP jobs run as root: set [app] user to the account your app runs as (e.g. www-data)")
	}
}

func queueNames(cfg *config.Config) string {
	var names []string
	for _, q := range cfg.Queues {
		names = append(names, q.Name)
	}
	return strings.Join(names, ",")
}

// appUser is [app] user as the credential to start PHP with; nil for
// kqueue's own user. config.Load checked that the user exists.
func appUser(cfg *config.Config) *syscall.Credential {
	if cfg.App.User == "" {
		return nil
	}
	u, err := user.Lookup(cfg.App.User)
	if err != nil {
		return nil
	}
	cred := &syscall.Credential{}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	cred.Uid, cred.Gid = uint32(uid), uint32(gid)
	groups, _ := u.GroupIds()
	for _, g := range groups {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			cred.Groups = append(cred.Groups, uint32(n))
		}
	}
	return cred
}

// redisClient connects to the queues' Redis: one server, a Redis Cluster
// or a Sentinel-managed primary, as [redis] says.
func redisClient(ctx context.Context, cfg *config.Config) (redis.UniversalClient, error) {
	var rdb redis.UniversalClient
	switch cfg.Redis.Mode() {
	case config.Cluster, config.Sentinel:
		opts := &redis.UniversalOptions{
			Addrs:         cfg.Redis.Cluster,
			IsClusterMode: cfg.Redis.Mode() == config.Cluster,
			Password:      cfg.Redis.Password,
		}
		if cfg.Redis.Mode() == config.Sentinel {
			opts.Addrs, opts.MasterName = cfg.Redis.Sentinels, cfg.Redis.SentinelMaster
		}
		// As for a single server, below.
		opts.ReadTimeout, opts.WriteTimeout, opts.DialTimeout = 2*time.Second, 2*time.Second, 2*time.Second
		opts.MaxRetries = -1
		opts.DisableIdentity = true
		opts.ContextTimeoutEnabled = true
		opts.Protocol = 2
		rdb = redis.NewUniversalClient(opts)
	default:
		opts, err := redis.ParseURL(cfg.Redis.URL)
		if err != nil {
			return nil, fmt.Errorf("redis.url: %w", err)
		}
		// The poller's loop does one round trip at a time and retries on its
		// own (its acknowledgements are kept until Redis has them): a Redis
		// that does not answer must cost it seconds, not go-redis's retries
		// of 5 s timeouts, which would starve the watchdog.
		if opts.ReadTimeout == 0 {
			opts.ReadTimeout = 2 * time.Second
		}
		if opts.WriteTimeout == 0 {
			opts.WriteTimeout = 2 * time.Second
		}
		opts.MaxRetries = -1
		if opts.DialTimeout == 0 {
			opts.DialTimeout = 2 * time.Second
		}
		opts.DisableIdentity = true // no CLIENT SETINFO round trip on each new connection
		// Deadlines from contexts bound blocking commands (BLPOP) too; RESP2,
		// as Laravel speaks, keeps clear of RESP3 push handling, which can wait
		// on a frozen server without a deadline.
		opts.ContextTimeoutEnabled = true
		opts.Protocol = 2
		rdb = redis.NewClient(opts)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("redis at %s: %w", cfg.Redis.String(), err)
	}
	return rdb, nil
}

// clockOffsetEnv shifts the poller's clock (a Go duration, "-3s"): fault
// injection for the multi-host tests, whose network namespaces share one
// kernel clock. Not for production.
const clockOffsetEnv = "KQUEUE_FAULT_CLOCK_OFFSET"

func pollerConfig(cfg *config.Config, rdb redis.UniversalClient, log *slog.Logger, n *notify.Notifier) poller.Config {
	every := time.Second
	if wd := n.WatchdogInterval(); wd > 0 {
		every = min(every, wd)
	}
	pc := poller.Config{
		HeartbeatEvery: every,
		Heartbeat: func(s poller.Stats) {
			// Called from the poller's main loop: a wedged loop stops the pings.
			n.Watchdog()
			n.Status(s.String())
			if s.Stopping {
				n.ExtendTimeout(3 * every)
			}
		},
		Instance:        cfg.Name,
		ShutdownTimeout: cfg.Job.ShutdownTimeout.D(),
		Logger:          log,
	}
	var names []string
	for _, q := range cfg.Queues {
		pc.Queues = append(pc.Queues, poller.Queue{Name: q.Name, Weight: q.Weight, RetryAfter: q.RetryAfter.D(), MaxRunning: q.MaxRunning})
		names = append(names, q.Name)
	}
	pc.Store = redisstore.New(redisstore.Config{Client: rdb, Prefix: *cfg.Redis.Prefix, Queues: names, Logger: log})
	if v := os.Getenv(clockOffsetEnv); v != "" {
		if off, err := time.ParseDuration(v); err == nil && off != 0 {
			log.Warn("fault injection: the poller's clock is off by "+off.String(), "env", clockOffsetEnv)
			pc.Now = func() time.Time { return time.Now().Add(off) }
		}
	}
	return pc
}

// dispatcherConfig is the dispatcher's part of the config. driver may be
// nil: then every job runs inline.
func dispatcherConfig(cfg *config.Config, driver cgroup.Driver) exec.Config {
	var rules []exec.Rule
	for _, r := range cfg.Rules {
		rules = append(rules, exec.Rule{
			Class: r.Class, Queue: r.Queue, Strategy: r.Strategy, Timeout: r.Timeout.D(),
			Limits: cgroup.Limits{Memory: r.Memory.Bytes(), CPU: r.CPU, Tasks: r.Tasks},
		})
	}
	var iso *exec.Isolation
	if driver != nil {
		iso = &exec.Isolation{
			Driver:        driver,
			MaxConcurrent: cfg.Isolation.MaxConcurrent,
			Fresh:         cfg.Isolation.Fresh,
			Limits:        cgroup.Limits{Memory: cfg.Isolation.Memory.Bytes(), CPU: cfg.Isolation.CPU, Tasks: cfg.Isolation.Tasks},
		}
	}
	return exec.Config{
		User:        appUser(cfg),
		Isolation:   iso,
		Rules:       rules,
		AppPath:     cfg.App.Path,
		PHP:         cfg.App.PHP,
		Connection:  cfg.App.Connection,
		Env:         cfg.App.Env,
		Workers:     cfg.Pool.Workers,
		MaxJobs:     cfg.Pool.MaxJobs,
		MaxMemory:   cfg.Pool.MaxMemory.Bytes(),
		MaxLifetime: cfg.Pool.MaxLifetime.D(),
		Timeout:     cfg.Job.Timeout.D(),
		Tries:       *cfg.Job.Tries,
		Backoff:     cfg.Job.Backoff,
	}
}

// runAll runs the poller and the dispatcher in this process, over a
// socketpair: the same protocol as between the two units.
func runAll(ctx context.Context, cfg *config.Config, log *slog.Logger, stopWhenEmpty bool) error {
	// The app's queue configuration (one PHP boot) is read while the pool
	// boots: the pool needs nothing from it (an unset connection means the
	// app's default to both), and the poller starts after both.
	app := *cfg
	app.Queues = slices.Clone(cfg.Queues)
	adopted := make(chan error, 1)
	go func() { adopted <- adoptApp(ctx, &app, log) }()
	d, driver, err := startDispatcher(ctx, cfg, log)
	if adoptErr := <-adopted; adoptErr != nil {
		if err == nil {
			d.Stop(context.Background())
			driver.Close()
		}
		return adoptErr
	}
	if err != nil {
		return err
	}
	defer driver.Close()
	*cfg = app

	logStart(log, cfg, "run")
	rdb, err := redisClient(ctx, cfg)
	if err != nil {
		d.Stop(context.Background())
		return err
	}
	defer rdb.Close()
	pc, dc, err := socketPair()
	if err != nil {
		d.Stop(context.Background())
		return err
	}
	served := make(chan error, 1)
	go func() { served <- d.Serve(context.WithoutCancel(ctx), protocol.NewConn(dc)) }()

	n := notify.New()
	n.Ready(fmt.Sprintf("%d workers ready", cfg.Pool.Workers))
	defer reloadOnHUP(ctx, cfg, n, log, func(next *config.Config) {
		reloadPoller(cfg, log)(next)
		reloadDispatcher(d, driver, log)(next)
	})()
	stopped := context.AfterFunc(ctx, func() { n.Stopping("stopping: finishing running jobs") })
	defer stopped()
	defer hardStopAfter(ctx, d, cfg.Job.ShutdownTimeout.D())()
	p, stopPoller := startPoller(ctx, cfg, rdb, log, n, func(pc *poller.Config) {
		pc.StopWhenEmpty = stopWhenEmpty
	})
	defer stopPoller()
	runErr := p.Run(ctx, protocol.NewConn(pc))
	serveErr := <-served

	stopCtx, cancel := context.WithTimeout(context.Background(), cfg.Job.ShutdownTimeout.D())
	defer cancel()
	stopErr := d.Stop(stopCtx)
	log.Info("kqueue stopped")
	return errors.Join(runErr, serveErr, stopErr)
}

// startPoller makes the poller, with its metrics (when [metrics] listen
// is set) and its control socket for `kqueue status`; stop ends those.
// tune adjusts the poller's config to the command.
func startPoller(ctx context.Context, cfg *config.Config, rdb redis.UniversalClient, log *slog.Logger,
	n *notify.Notifier, tune func(*poller.Config)) (p *poller.Poller, stop func()) {
	pc := pollerConfig(cfg, rdb, log.With("component", "poller"), n)
	tune(&pc)
	var m *metrics.Metrics
	if cfg.Metrics.Listen != "" {
		// Depths are read through p, which exists before /metrics serves.
		m = metrics.New(func(ctx context.Context) (poller.Snapshot, error) { return p.Snapshot(ctx) })
		pc.Observe = m.Observe
	}
	p = poller.New(pc)

	var stops []func()
	if m != nil {
		addr, stopMetrics, err := m.Serve(ctx, cfg.Metrics.Listen)
		if err != nil {
			log.Error("metrics off", "error", err)
		} else {
			log.Info("metrics", "listen", addr.String())
			stops = append(stops, stopMetrics)
		}
	}
	if stopControl, err := serveControl(ctx, cfg, p, log); err != nil {
		log.Warn("kqueue status will not reach this instance", "error", err)
	} else {
		stops = append(stops, stopControl)
	}
	return p, func() {
		for _, s := range stops {
			s()
		}
	}
}

// startDispatcher opens the isolation driver and boots the pool;
// closeDriver is for after the dispatcher's own Stop.
func startDispatcher(ctx context.Context, cfg *config.Config, log *slog.Logger) (d *exec.Dispatcher, driver cgroup.Driver, err error) {
	log = log.With("component", "dispatcher")
	driver, err = cgroup.Open(cfg.Isolation.Driver, cfg.Name, log)
	if err != nil {
		return nil, nil, err
	}
	d = exec.New(dispatcherConfig(cfg, driver), log)
	if err := d.Start(ctx); err != nil {
		driver.Close()
		return nil, nil, err
	}
	return d, driver, nil
}

// prefixMismatch says when kqueue.toml's Redis prefix is not the one the
// app's queue connection puts in front of its keys (as its worker
// reported it): kqueue would wait on queues nobody pushes to. Skeletons
// differ here (laravel_database_ in Laravel 8, laravel-database- on 11+
// framework defaults), so it is read from the app, not guessed.
//
// Only a kqueue.toml that sets prefix itself is checked here, and only
// when the app's configuration was not read at start-up (kqueue
// dispatcher): otherwise adoptApp has compared the two already.
func prefixMismatch(cfg *config.Config, d *exec.Dispatcher) error {
	app, ok := d.AppPrefix()
	if !ok || app == *cfg.Redis.Prefix || cfg.Laravel != nil || !cfg.Set("redis.prefix") {
		return nil
	}
	return fmt.Errorf("redis prefix: %s has %q, but the app's queue connection %q puts %q in front of its keys: set prefix = %q in [redis], or remove it to use the app's",
		cfg.File, *cfg.Redis.Prefix, cmp.Or(cfg.App.Connection, "(its default)"), app, app)
}

// hardStopAfter ends a drain: once ctx is done, running jobs get timeout to
// finish, then they are killed and released. The returned function
// cancels it.
func hardStopAfter(ctx context.Context, d *exec.Dispatcher, timeout time.Duration) (cancel func()) {
	var timer *time.Timer
	var mu sync.Mutex
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		timer = time.AfterFunc(timeout, d.HardStop)
	})
	return func() {
		stop()
		mu.Lock()
		defer mu.Unlock()
		if timer != nil {
			timer.Stop()
		}
	}
}

// reloadOnHUP re-reads the config on each SIGHUP (systemctl reload) and
// hands it to apply, until ctx is done or the returned function is called.
// A config that does not load changes nothing: kqueue runs on with the old
// one and says why. n, when set, hears RELOADING=1 and READY=1.
func reloadOnHUP(ctx context.Context, cfg *config.Config, n *notify.Notifier, log *slog.Logger, apply func(*config.Config)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if n != nil {
					n.Reloading()
				}
				next, err := config.Load(cfg.File)
				if err == nil && cfg.Laravel != nil {
					// The app's configuration as read at start-up: what
					// it changes applies at the next restart anyway.
					_, err = next.Adopt(cfg.Laravel)
				}
				if err != nil {
					log.Error("reload: the config has errors; running on with the previous one", "error", err)
					if n != nil {
						n.Ready("reload failed: the config has errors (see the journal)")
					}
					continue
				}
				apply(next)
				if n != nil {
					n.Ready("reloaded")
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}

// reloadDispatcher applies a reloaded config to the dispatcher: its
// workers are replaced once idle, with the new settings.
func reloadDispatcher(d *exec.Dispatcher, driver cgroup.Driver, log *slog.Logger) func(*config.Config) {
	return func(next *config.Config) {
		log.Info("reload: replacing every PHP worker once it is idle, with the new config")
		for _, key := range d.Reload(dispatcherConfig(next, driver)) {
			log.Warn("reload: " + key + " changed; it applies at the next restart")
		}
	}
}

// reloadPoller reports what a reloaded config changes on the poller's
// side: those settings apply at the next restart.
func reloadPoller(cfg *config.Config, log *slog.Logger) func(*config.Config) {
	return func(next *config.Config) {
		for key, same := range map[string]bool{
			"redis":                reflect.DeepEqual(cfg.Redis, next.Redis),
			"queue":                reflect.DeepEqual(cfg.Queues, next.Queues),
			"job.shutdown_timeout": cfg.Job.ShutdownTimeout == next.Job.ShutdownTimeout,
			"metrics":              cfg.Metrics == next.Metrics,
			"control":              cfg.Control == next.Control,
			"dispatcher":           cfg.Dispatcher == next.Dispatcher,
		} {
			if !same {
				log.Warn("reload: [" + key + "] changed; it applies at the next restart (systemctl restart kqueue@" + cfg.Name + ")")
			}
		}
	}
}

// socketPair is a connected pair of unix stream sockets.
func socketPair() (net.Conn, net.Conn, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "kqueue-socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("socketpair: %w", err)
		}
		conns[i] = c
	}
	return conns[0], conns[1], nil
}

// runPoller is the queue side alone: it connects to the dispatcher's socket
// and reconnects when the dispatcher restarts.
func runPoller(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	if err := adoptApp(ctx, cfg, log); err != nil {
		return err
	}
	logStart(log, cfg, "poller")
	rdb, err := redisClient(ctx, cfg)
	if err != nil {
		return err
	}
	defer rdb.Close()
	n := notify.New()
	n.Ready("redis reachable; connecting to the dispatcher")
	// systemctl reload reaches the dispatcher through its own unit
	// (ReloadPropagatedFrom); the poller reads the config again and says
	// what waits for a restart.
	// The poller's reload only reads the config again: it tells systemd
	// nothing, since a RELOADING=1 of its own would make systemd propagate
	// a second reload to the dispatcher, which systemctl reload already
	// reached (ReloadPropagatedFrom).
	defer reloadOnHUP(ctx, cfg, nil, log, reloadPoller(cfg, log))()
	stopped := context.AfterFunc(ctx, func() { n.Stopping("stopping: finishing running jobs") })
	defer stopped()
	p, stopPoller := startPoller(ctx, cfg, rdb, log, n, func(pc *poller.Config) {
		pc.IdleExit = cfg.Pool.IdleExit.D()
	})
	defer stopPoller()
	var dialer net.Dialer
	logged := false
	for ctx.Err() == nil {
		n.Watchdog() // this loop is healthy too: it is waiting for the dispatcher
		c, err := dialer.DialContext(ctx, "unix", cfg.Dispatcher.Socket)
		if err != nil {
			if !logged {
				log.Warn("dispatcher not reachable yet; retrying", "socket", cfg.Dispatcher.Socket, "error", err)
				logged = true
			}
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		logged = false
		log.Info("connected to dispatcher", "socket", cfg.Dispatcher.Socket)
		err = p.Run(ctx, protocol.NewConn(c))
		if ctx.Err() != nil {
			return nil // stopped
		}
		if errors.Is(err, poller.ErrIdle) {
			// Scale to zero: the dispatcher exits once we let go; the
			// next job starts it again through its socket.
			log.Info("no work for pool.idle_exit: letting the dispatcher exit until the next job", "idle_exit", cfg.Pool.IdleExit.D())
			n.Status("idle: no dispatcher running (pool.idle_exit); waiting for a job")
			debug.FreeOSMemory() // what the busy spell took, back to the host while idle
			for ctx.Err() == nil {
				n.Watchdog()
				work, err := p.WaitForWork(ctx, time.Second)
				if err != nil && ctx.Err() == nil {
					log.Error("waiting for work", "error", err)
					time.Sleep(time.Second)
				}
				if work {
					break
				}
			}
			continue
		}
		// The dispatcher went away (restart, idle exit, crash): connect
		// again, after a pause so a failing one is not hammered.
		if errors.Is(err, poller.ErrDispatcherGone) {
			log.Info("dispatcher closed the connection; reconnecting")
		} else {
			log.Error("dispatcher connection ended; reconnecting", "error", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
	return nil
}

// runDispatcher is the execution side alone: it boots the pool and serves
// one poller connection at a time on the socket.
func runDispatcher(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	logStart(log, cfg, "dispatcher")
	ln, activated, err := dispatcherListener(cfg, log)
	if err != nil {
		return err
	}
	if cfg.Pool.IdleExit > 0 && !activated {
		log.Warn("pool.idle_exit is ignored: it needs the dispatcher started by its socket (kqueue-dispatcher@NAME.socket), which starts it again")
	}
	defer ln.Close()

	d, driver, err := startDispatcher(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer driver.Close()
	if err := prefixMismatch(cfg, d); err != nil {
		log.Error("no job will be seen", "error", err)
	}
	n := notify.New()
	n.Ready(fmt.Sprintf("%d workers ready", cfg.Pool.Workers))
	defer reloadOnHUP(ctx, cfg, n, log, reloadDispatcher(d, driver, log))()
	defer hardStopAfter(ctx, d, cfg.Job.ShutdownTimeout.D())()
	if every := n.WatchdogInterval(); every > 0 {
		// Pinged only while the pool can run jobs or is booting workers to.
		go func() {
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if d.Healthy() {
						n.Watchdog()
					}
				}
			}
		}()
	}
	go func() {
		<-ctx.Done()
		n.Stopping("stopping: finishing running jobs")
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			break
		}
		if ok, who := peerAllowed(c); !ok {
			log.Warn("dispatcher socket: refused a connection from a process outside root, kqueue's user and its group", "peer", who)
			c.Close()
			continue
		}
		log.Info("poller connected")
		// Stopping drains the connection: no more jobs asked for, the ones
		// in hand finished, then the poller is let go.
		if err := d.Serve(ctx, protocol.NewConn(c)); err != nil {
			log.Error("poller connection ended", "error", err)
		} else if ctx.Err() == nil && cfg.Pool.IdleExit > 0 && activated {
			// The poller let go after pool.idle_exit without work: scale
			// to zero. The socket starts us again for the next job.
			log.Info("idle: exiting until the next job (pool.idle_exit)")
			break
		}
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), cfg.Job.ShutdownTimeout.D())
	defer cancel()
	return d.Stop(stopCtx)
}

// dispatcherListener is the socket systemd passed (socket activation,
// $LISTEN_FDS), or else one of our own at dispatcher.socket.
func dispatcherListener(cfg *config.Config, log *slog.Logger) (ln net.Listener, activated bool, err error) {
	lns, err := activation.Listeners()
	if err != nil {
		return nil, false, fmt.Errorf("socket activation: %w", err)
	}
	if len(lns) > 0 && lns[0] != nil {
		log.Info("listening on the socket systemd passed", "socket", lns[0].Addr().String())
		for _, extra := range lns[1:] {
			if extra != nil {
				extra.Close()
			}
		}
		return lns[0], true, nil
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Dispatcher.Socket), 0o750); err != nil {
		return nil, false, fmt.Errorf("dispatcher socket: %w", err)
	}
	if err := os.Remove(cfg.Dispatcher.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("dispatcher socket: %w", err)
	}
	ln, err = net.Listen("unix", cfg.Dispatcher.Socket)
	if err != nil {
		return nil, false, fmt.Errorf("dispatcher socket: %w", err)
	}
	if err := os.Chmod(cfg.Dispatcher.Socket, 0o660); err != nil {
		ln.Close()
		return nil, false, fmt.Errorf("dispatcher socket: %w", err)
	}
	return ln, false, nil
}

// check validates a config and the app behind it.
func check(ctx context.Context, cfg *config.Config, stdout io.Writer) error {
	fmt.Fprintf(stdout, "config %s: ok\n", cfg.File)
	problems := checkApp(ctx, cfg, stdout)
	rdb, err := redisClient(ctx, cfg)
	if err != nil {
		problems = append(problems, err)
	} else {
		rdb.Close()
		fmt.Fprintf(stdout, "redis %s: reachable\n", cfg.Redis.String())
	}
	dc := dispatcherConfig(cfg, nil)
	dc.Workers = 1
	d := exec.New(dc, nil)
	if err := d.Start(ctx); err != nil {
		problems = append(problems, err)
	} else {
		fmt.Fprintf(stdout, "php worker: boots\n")
		d.Stop(context.Background())
	}
	for _, r := range cfg.Risks() {
		fmt.Fprintf(stdout, "warning: %s\n", r)
	}
	return errors.Join(problems...)
}
