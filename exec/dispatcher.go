package exec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/kqueue/kqueue/exec/php"
	"github.com/kqueue/kqueue/payload"
	"github.com/kqueue/kqueue/protocol"
)

// Dispatcher runs the jobs a poller connection hands it.
type Dispatcher struct {
	cfg  *settings
	log  *slog.Logger
	pool *pool
	dir  string // holds worker.php

	stopPool context.CancelFunc
	capSig   chan struct{}
	stopOnce sync.Once
	hardOnce sync.Once
}

// HardStop kills the running jobs and releases them back to their queues
// (attempt counted), and releases queued ones unrun (the poller puts one
// never handed to PHP back as it was): the end of a drain that took longer
// than the shutdown timeout.
func (d *Dispatcher) HardStop() {
	d.hardOnce.Do(func() { close(d.pool.hardStop) })
}

// New returns a Dispatcher; Start boots its pool.
func New(cfg Config, log *slog.Logger) *Dispatcher {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Dispatcher{cfg: newSettings(cfg), log: log, capSig: make(chan struct{}, 1)}
}

// Start writes worker.php out, boots the first worker (a Laravel app that
// cannot boot is one clear error here) and starts the pool.
func (d *Dispatcher) Start(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "kqueue-php-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	var script string
	if err == nil {
		script, err = php.Install(dir)
	}
	if err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("start dispatcher: write worker.php: %w", err)
	}
	d.dir = dir
	run, stop := context.WithCancel(context.WithoutCancel(ctx))
	d.stopPool = stop
	d.pool = &pool{
		cfg:        d.cfg,
		script:     script,
		log:        d.log,
		tasks:      make(chan *task, 1024),
		hardStop:   make(chan struct{}),
		onCapacity: d.capacityChanged,
		took:       map[string]time.Duration{},
	}
	cfg := d.cfg.get()
	if cfg.Isolation != nil {
		d.pool.iso = newIsolator(d.cfg, script, d.log, d.pool.hardStop)
		if !cfg.Isolation.Fresh {
			f, err := newForker(d.cfg, script, dir, d.log)
			if err != nil {
				stop()
				os.RemoveAll(dir)
				return err
			}
			d.pool.iso.forker = f
		}
	}
	if err := d.pool.start(ctx, run); err != nil {
		stop()
		if d.pool.iso != nil && d.pool.iso.forker != nil {
			d.pool.iso.forker.close()
		}
		os.RemoveAll(dir)
		return err
	}
	d.log.Info("pool started", "workers", cfg.Workers, "app", cfg.AppPath)
	return nil
}

// Stop stops the pool: workers finish their jobs and exit. When ctx ends
// first, running jobs are killed and released.
func (d *Dispatcher) Stop(ctx context.Context) error {
	var err error
	d.stopOnce.Do(func() {
		d.stopPool()
		done := make(chan struct{})
		go func() {
			d.pool.wg.Wait()
			if d.pool.iso != nil {
				d.pool.iso.wait()
				if d.pool.iso.forker != nil {
					d.pool.iso.forker.close()
				}
			}
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			d.HardStop()
			<-done
			err = fmt.Errorf("stop dispatcher: running jobs killed: %w", ctx.Err())
		}
		os.RemoveAll(d.dir)
	})
	return err
}

// Roll replaces every PHP worker once it is idle (a deploy: new code, no
// job interrupted), as `php artisan queue:restart` does.
func (d *Dispatcher) Roll() { d.pool.roll() }

// AppPrefix is the Redis key prefix the app's queue connection uses, as
// its first worker reported it after Start; ok is false when the app could
// not say (not a Redis connection, or Redis out of reach at boot).
func (d *Dispatcher) AppPrefix() (prefix string, ok bool) {
	if d.pool.appPrefix == nil {
		return "", false
	}
	return *d.pool.appPrefix, true
}

// Reload takes a new Config and rolls the pool: every worker is replaced,
// once idle, by one started with it (new code, new environment, new
// limits, rules and recycling). A few settings shape the running process
// and stay until the next restart: the pool's size and the isolation
// driver, concurrency and process model. Reload returns those that
// differ, by their config names.
func (d *Dispatcher) Reload(cfg Config) (needRestart []string) {
	cfg.setDefaults()
	old := d.cfg.get()
	if cfg.Workers != old.Workers {
		needRestart = append(needRestart, "pool.workers")
		cfg.Workers = old.Workers
	}
	switch {
	case (cfg.Isolation == nil) != (old.Isolation == nil):
		needRestart = append(needRestart, "isolation.driver")
		cfg.Isolation = old.Isolation
	case cfg.Isolation != nil:
		iso := *cfg.Isolation
		if iso.Driver.Name() != old.Isolation.Driver.Name() {
			needRestart = append(needRestart, "isolation.driver")
		}
		if iso.MaxConcurrent != old.Isolation.MaxConcurrent {
			needRestart = append(needRestart, "isolation.max_concurrent")
		}
		if iso.Fresh != old.Isolation.Fresh {
			needRestart = append(needRestart, "isolation.fresh")
		}
		iso.Driver, iso.MaxConcurrent, iso.Fresh = old.Isolation.Driver, old.Isolation.MaxConcurrent, old.Isolation.Fresh
		cfg.Isolation = &iso
	}
	d.cfg.p.Store(&cfg)
	d.pool.roll()
	return needRestart
}

// Healthy reports whether the pool can serve jobs now or is on its way to:
// a worker is ready, or one is booting (a reload replaces them all, and a
// boot can take seconds). A pool whose workers all fail to boot is not.
func (d *Dispatcher) Healthy() bool {
	return d.Ready() > 0 || d.pool.booting.Load() > 0
}

// Ready is how many pool workers are booted and serving.
func (d *Dispatcher) Ready() int {
	d.pool.mu.Lock()
	defer d.pool.mu.Unlock()
	return d.pool.ready
}

func (d *Dispatcher) capacityChanged() {
	select {
	case d.capSig <- struct{}{}:
	default:
	}
}

// Serve runs the jobs of one poller connection until the poller closes it,
// then waits for those jobs to finish. Outcomes that cannot be delivered are
// dropped: their reservations expire, as under Laravel.
func (d *Dispatcher) Serve(ctx context.Context, conn *protocol.Conn) error {
	defer conn.Close()
	m, err := conn.Recv()
	if err != nil {
		return fmt.Errorf("handshake with poller: %w", err)
	}
	h, ok := m.(protocol.Hello)
	if !ok {
		return fmt.Errorf("handshake with poller: got message type %d, want hello", m.Type())
	}
	if err := conn.Send(protocol.Welcome{Version: protocol.Version, Capacity: uint64(d.pool.capacity())}); err != nil {
		return fmt.Errorf("handshake with poller: %w", err)
	}
	if h.Version != protocol.Version {
		return fmt.Errorf("handshake with poller: it speaks protocol version %d, this dispatcher %d", h.Version, protocol.Version)
	}

	outcomes := make(chan protocol.Message, 1024)
	stopWriter := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		d.write(conn, outcomes, stopWriter)
	}()

	var running sync.WaitGroup
	var readErr error
	for {
		m, err := conn.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				readErr = fmt.Errorf("read from poller: %w", err)
			}
			break
		}
		j, ok := m.(protocol.Job)
		if !ok {
			readErr = fmt.Errorf("read from poller: unexpected message type %d", m.Type())
			break
		}
		j.Payload = append([]byte(nil), j.Payload...) // Recv reuses its buffer
		id := j.ID
		t := &task{job: j, reply: func(o protocol.Outcome) {
			outcomes <- o
			running.Done()
		}, started: func() {
			// Sent, not queued for the writer: the poller must know a
			// job may have run before PHP can have it, or a dispatcher
			// killed in between leaves it to be returned and run twice.
			// A send that fails shows in the writer's log.
			_ = conn.Send(protocol.Started{ID: id})
		}}
		if p, err := payload.Parse(j.Payload); err == nil {
			t.p = p
		}
		running.Add(1)
		select {
		case d.pool.tasks <- t:
		case <-ctx.Done():
			running.Done()
			readErr = ctx.Err()
		}
		if readErr != nil {
			break
		}
	}
	running.Wait()
	close(stopWriter)
	<-writerDone
	return readErr
}

// poolStateEvery is how often the poller hears of the pool's workers.
const poolStateEvery = 2 * time.Second

// write sends outcomes and capacity changes, batching what is ready.
func (d *Dispatcher) write(conn *protocol.Conn, outcomes <-chan protocol.Message, stop <-chan struct{}) {
	var (
		batch  []protocol.Message
		broken bool
	)
	flush := func() {
		if len(batch) > 0 && !broken {
			if err := conn.SendBatch(batch); err != nil {
				d.log.Error("send outcomes to poller", "error", err, "outcomes", len(batch))
				broken = true
			}
		}
		batch = batch[:0]
	}
	// The pool's state, now and every few seconds, for `kqueue status`.
	tick := time.NewTicker(poolStateEvery)
	defer tick.Stop()
	batch = append(batch, d.pool.state())
	flush()
	for {
		select {
		case o := <-outcomes:
			batch = append(batch, o)
		case <-tick.C:
			batch = append(batch, d.pool.state())
		case <-d.capSig:
			// The workers changed too: kqueue status shows them at once.
			batch = append(batch, protocol.Capacity{Capacity: uint64(d.pool.capacity())}, d.pool.state())
		case <-stop:
			for {
				select {
				case o := <-outcomes:
					batch = append(batch, o)
					continue
				default:
				}
				break
			}
			flush()
			return
		}
		// Take whatever else is ready, then send it in one write.
		for more := true; more; {
			select {
			case o := <-outcomes:
				batch = append(batch, o)
			default:
				more = false
			}
		}
		flush()
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
