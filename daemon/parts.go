package daemon

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/kqueue/kqueue/cgroup"
	"github.com/kqueue/kqueue/config"
	"github.com/kqueue/kqueue/exec"
	"github.com/kqueue/kqueue/metrics"
	"github.com/kqueue/kqueue/notify"
	"github.com/kqueue/kqueue/poller"
	dbstore "github.com/kqueue/kqueue/poller/database"
	redisstore "github.com/kqueue/kqueue/poller/redis"
	sqsstore "github.com/kqueue/kqueue/poller/sqs"
)

// pollerPart is the poller with what serves around it: its store's
// connection, its metrics and its control socket.
type pollerPart struct {
	*poller.Poller
	stops []func() // in the order they were started
}

// close stops what serves around the poller, the last started first.
func (p *pollerPart) close() {
	for _, stop := range slices.Backward(p.stops) {
		stop()
	}
}

// startPoller builds the poller on the queues' store, with its metrics
// (when [metrics] listen is set) and its control socket for `kqueue
// status`. tune adjusts the poller's config to the command.
func startPoller(ctx context.Context, cfg *config.Config, log *slog.Logger, n *notify.Notifier, tune func(*poller.Config)) (*pollerPart, error) {
	log = log.With("component", "poller")
	pc := pollerConfig(cfg, log, n)
	store, closeStore, err := openStore(ctx, cfg, pc.Queues, log)
	if err != nil {
		return nil, err
	}
	part := &pollerPart{stops: []func(){closeStore}}
	pc.Store = store
	h, _ := store.(poller.History)
	if cfg.Web.History <= 0 {
		h = nil
	}
	if t, _ := store.(poller.Tallies); h != nil || t != nil {
		rec, stop := startRecorder(ctx, h, cfg.Web.History, t, log)
		pc.Record = rec.add
		part.stops = append(part.stops, stop)
	}
	tune(&pc)
	var m *metrics.Metrics
	if cfg.Metrics.Listen != "" {
		// Depths are read through the poller, which exists before /metrics serves.
		m = metrics.New(func(ctx context.Context) (poller.Snapshot, error) { return part.Snapshot(ctx) })
		pc.Observe = m.Observe
	}
	part.Poller = poller.New(pc)
	if m != nil {
		if addr, stop, err := m.Serve(ctx, cfg.Metrics.Listen); err != nil {
			log.Error("metrics off", "error", err)
		} else {
			log.Info("metrics", "listen", addr.String())
			part.stops = append(part.stops, stop)
		}
	}
	if r, ok := store.(poller.Roster); ok {
		actx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); part.Announce(actx, r, announceEvery, 5*announceEvery) }()
		part.stops = append(part.stops, func() { cancel(); <-done })
	}
	{
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		var alert func(poller.Alert)
		if cfg.Alerts.Webhook != "" {
			alert = webhook(wctx, cfg.Alerts.Webhook, log)
		}
		every := watchEvery
		switch store.(type) {
		case *dbstore.Store:
			every = watchEveryDB // each look counts the jobs table's rows
		case *sqsstore.Store:
			every = watchEveryDB // each look is a request per queue, billed
		}
		go func() { defer close(done); part.WatchWaits(wctx, every, alert) }()
		part.stops = append(part.stops, func() { cancel(); <-done })
	}
	if stop, err := part.ServeControl(ctx, cfg.Control.Socket); err != nil {
		log.Warn("kqueue status will not reach this instance", "error", err)
	} else {
		part.stops = append(part.stops, stop)
	}
	return part, nil
}

// announceEvery is how often an instance publishes its state for the
// console (kqueue web); an entry not renewed for five times that expires.
const announceEvery = 2 * time.Second

// watchEvery is how often the queues' waits are worked out (for the
// autoscaler and the long-wait alerts); watchEveryDB on the database
// driver, where each look counts the queues' rows, and on SQS, where it
// is a billed request per queue.
const (
	watchEvery   = time.Second
	watchEveryDB = 5 * time.Second
)

// openStore connects to the store of the app's queue connection: its
// database for the database driver, SQS for sqs, else Redis.
func openStore(ctx context.Context, cfg *config.Config, queues []poller.Queue, log *slog.Logger) (poller.Store, func(), error) {
	var names []string
	for _, q := range queues {
		names = append(names, q.Name)
	}
	if l := cfg.Laravel; l != nil && l.SQS != nil { // Adopt took an SQS queue connection
		st, err := sqsstore.Connect(ctx, l.SQS, names, log)
		if err != nil {
			return nil, nil, err
		}
		return st, func() {
			// What it still holds goes back (scaled to zero, no session ends).
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			st.Done(ctx)
		}, nil
	}
	if l := cfg.Laravel; l != nil && l.Database != nil { // Adopt took a database queue connection
		db, dialect, err := dbstore.Dial(ctx, l.Database)
		if err != nil {
			return nil, nil, err
		}
		var qs []dbstore.Queue
		for _, q := range queues {
			qs = append(qs, dbstore.Queue{Name: q.Name, RetryAfter: q.RetryAfter})
		}
		return dbstore.New(dbstore.Config{DB: db, Dialect: dialect, Table: l.Database.TableName(), Queues: qs, Logger: log}),
			func() { db.Close() }, nil
	}
	rdb, err := redisstore.Dial(ctx, cfg.Redis)
	if err != nil {
		return nil, nil, err
	}
	fleet := map[string]int{}
	for _, q := range cfg.Queues {
		fleet[q.Name] = q.FleetMaxRunning
	}
	return redisstore.New(redisstore.Config{Client: rdb, Prefix: *cfg.Redis.Prefix, Queues: names, FleetMax: fleet, Logger: log}),
		func() { rdb.Close() }, nil
}

// clockOffsetEnv shifts the poller's clock (a Go duration, "-3s"): fault
// injection for the multi-host tests, whose network namespaces share one
// kernel clock. Not for production.
const clockOffsetEnv = "KQUEUE_FAULT_CLOCK_OFFSET"

// pollerQueues are the config's queues as the poller and its store take
// them.
func pollerQueues(cfg *config.Config) []poller.Queue {
	var qs []poller.Queue
	for _, q := range cfg.Queues {
		pq := poller.Queue{Name: q.Name, Weight: q.Weight, RetryAfter: q.RetryAfter.D(), MaxRunning: q.MaxRunning, AlertWait: q.AlertWait.D()}
		if cfg.Pool.Scales() {
			pq.ScaleWait = q.ScaleWait.D()
		}
		qs = append(qs, pq)
	}
	return qs
}

// pollerConfig is the poller's part of the config, its heartbeat pinging
// systemd's watchdog.
func pollerConfig(cfg *config.Config, log *slog.Logger, n *notify.Notifier) poller.Config {
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
		QuietDone:       !cfg.Log.Done(),
		DonePerSecond:   cfg.Log.DonePerSecond(),
	}
	pc.Queues = pollerQueues(cfg)
	if off, err := time.ParseDuration(os.Getenv(clockOffsetEnv)); err == nil && off != 0 {
		log.Warn("fault injection: the poller's clock is off by "+off.String(), "env", clockOffsetEnv)
		pc.Now = func() time.Time { return time.Now().Add(off) }
	}
	return pc
}

// dispatcherPart is the dispatcher and its isolation driver, which is
// closed after the dispatcher has stopped.
type dispatcherPart struct {
	*exec.Dispatcher
	driver cgroup.Driver
}

// close stops a dispatcher that will serve nothing.
func (d *dispatcherPart) close() {
	d.Stop(context.Background())
	d.driver.Close()
}

// startDispatcher opens the isolation driver and boots the pool; then it
// reads the app's queue configuration (answer, or appErr) as the first
// worker to boot described it.
func startDispatcher(ctx context.Context, cfg *config.Config, log *slog.Logger) (d *dispatcherPart, answer []byte, appErr, err error) {
	log = log.With("component", "dispatcher")
	driver, err := cgroup.Open(cfg.Isolation.Driver, cfg.Name, log)
	if err != nil {
		return nil, nil, nil, err
	}
	d = &dispatcherPart{exec.New(exec.FromConfig(cfg, driver), log), driver}
	if err := d.Start(ctx); err != nil {
		driver.Close()
		return nil, nil, nil, err
	}
	answer, appErr = d.App(ctx)
	return d, answer, appErr, nil
}
