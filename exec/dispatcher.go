package exec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
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
	// stateStale: what kqueue status shows of the pool changed since it
	// was last sent (a worker came or went, an isolated job began or
	// ended), which the next capacity sent goes with.
	stateStale atomic.Bool
	stopOnce   sync.Once
	hardOnce   sync.Once

	appMu sync.Mutex
	app   []byte // App's answer, once read
}

// HardStop kills the running jobs and releases them back to their queues
// (attempt counted), and releases queued ones unrun (the poller puts one
// never handed to PHP back as it was): the end of a drain that took longer
// than the shutdown timeout.
func (d *Dispatcher) HardStop() {
	d.hardOnce.Do(func() {
		close(d.pool.hardStop)
		d.pool.rejectQueued()
	})
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
		hardStop:   make(chan struct{}),
		onCapacity: d.capacityChanged,
		took:       map[string]time.Duration{},
	}
	cfg := d.cfg.get()
	// Room for all the poller may send at the pool's largest: the serve
	// loop never waits to hand a job on (see Serve).
	d.pool.tasks = make(chan *task, d.pool.maxCapacity())
	if cfg.Isolation != nil {
		d.pool.iso = newIsolator(d.cfg, script, d.log, d.pool.hardStop)
		d.pool.iso.firstDeath = d.pool.firstDeath
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

// Reload takes a new Config and rolls the pool: every worker is replaced,
// once idle, by one started with it (new code, new environment, new
// limits, rules and recycling). A few settings shape the running process
// and stay until the next restart: the pool's size and the isolation
// driver, concurrency and process model. Reload returns those that
// differ, by their config names.
func (d *Dispatcher) Reload(cfg Config) (needRestart []string) {
	cfg.setDefaults()
	old := d.cfg.get()
	if cfg.Workers != old.Workers || cfg.MaxWorkers != old.MaxWorkers {
		needRestart = append(needRestart, "pool.workers")
		cfg.Workers, cfg.MaxWorkers = old.Workers, old.MaxWorkers
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
	d.appMu.Lock()
	// Read again when next asked, by a PHP run of its own: the deploy may
	// have changed it, and what the pool's first worker said is the old.
	d.app, d.pool.app = nil, nil
	d.appMu.Unlock()
	return needRestart
}

// Healthy reports whether the pool can serve jobs now or is on its way to:
// a worker is ready, or one is booting (a reload replaces them all, and a
// boot can take seconds). A pool whose workers all fail to boot is not.
func (d *Dispatcher) Healthy() bool {
	return d.Ready() > 0 || d.pool.booting.Load() > 0
}

// App is the app's queue configuration, appconfig.php's answer, read once
// with the workers' PHP, user and environment: what kqueue adopts from the
// app. After Start it is what the first worker to boot said of the app it
// booted; before, a PHP run of its own boots the app (not while Start
// runs). The poller, which runs no PHP of its own, asks for it
// (Hello.AppOnly).
func (d *Dispatcher) App(ctx context.Context) ([]byte, error) {
	d.appMu.Lock()
	defer d.appMu.Unlock()
	if d.app != nil {
		return d.app, nil
	}
	var answer []byte
	var err error
	if d.pool != nil && d.pool.app != nil {
		answer, err = described(d.cfg.get().AppPath, d.pool.app)
	} else {
		answer, err = AppConfig(ctx, *d.cfg.get())
	}
	if err != nil {
		return nil, err
	}
	d.app = answer
	return answer, nil
}

// appAnswer is App for a poller: the answer, or {"error": why}.
func (d *Dispatcher) appAnswer(ctx context.Context) []byte {
	answer, err := d.App(ctx)
	if err != nil {
		answer, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	return answer
}

// State is the pool as it is now: its workers, and the ones replaced so
// far by reason.
func (d *Dispatcher) State() protocol.Pool { return d.pool.state() }

// Ready is how many pool workers are booted and serving.
func (d *Dispatcher) Ready() int {
	d.pool.mu.Lock()
	defer d.pool.mu.Unlock()
	return d.pool.ready
}

func (d *Dispatcher) capacityChanged(shown bool) {
	if shown {
		d.stateStale.Store(true)
	}
	select {
	case d.capSig <- struct{}{}:
	default:
	}
}

// Serve runs the jobs of one poller connection until the poller closes it,
// then waits for those jobs to finish. Outcomes that cannot be delivered are
// dropped: their reservations expire, as under Laravel.
//
// The moment the connection is gone the dispatcher is fenced: it starts
// nothing more (what it held is answered as not started, and the poller, or
// retry_after, gives it back as it was). When ctx is done (the dispatcher
// alone is stopping) it drains: it asks for no more jobs (capacity 0),
// answers any that were on their way as not started, lets the ones it has
// finish, and then ends the connection.
func (d *Dispatcher) Serve(ctx context.Context, conn *protocol.Conn) error {
	_, err := d.serve(ctx, conn, nil)
	return err
}

// serve is Serve; appOnly tells a poller that only asked for the app's
// configuration (Hello.AppOnly), answered at once, from one that was
// served. A job session takes one first, when set: one poller is served
// at a time.
func (d *Dispatcher) serve(ctx context.Context, conn *protocol.Conn, one sync.Locker) (appOnly bool, err error) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second)) // a peer that says nothing is let go
	m, err := conn.Recv()
	conn.SetDeadline(time.Time{})
	if err != nil {
		return false, fmt.Errorf("handshake with poller: %w", err)
	}
	h, ok := m.(protocol.Hello)
	if !ok {
		return false, fmt.Errorf("handshake with poller: got message type %d, want hello", m.Type())
	}
	if !h.AppOnly && one != nil {
		one.Lock()
		defer one.Unlock()
	}
	w := protocol.Welcome{Version: protocol.Version, Capacity: uint64(d.pool.capacity())}
	if h.AppOnly && h.Version == protocol.Version {
		w.App = d.appAnswer(ctx)
	}
	if err := conn.Send(w); err != nil {
		return false, fmt.Errorf("handshake with poller: %w", err)
	}
	if h.Version != protocol.Version {
		return false, fmt.Errorf("handshake with poller: it speaks protocol version %d, this dispatcher %d", h.Version, protocol.Version)
	}
	if h.AppOnly {
		return true, nil
	}
	d.log.Info("poller connected")
	return false, d.serveJobs(ctx, conn)
}

// serveJobs runs the jobs of a poller connection past its handshake.
func (d *Dispatcher) serveJobs(ctx context.Context, conn *protocol.Conn) error {
	s := &session{conn: conn, outcomes: make(chan protocol.Message, 2*d.pool.maxCapacity()+64), drained: make(chan struct{}), fence: make(chan struct{})}
	stopWriter := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		d.write(s, stopWriter)
	}()
	stopDrain := context.AfterFunc(ctx, func() {
		s.draining.Store(true)
		d.pool.drain()
		s.checkDrained()
	})
	defer stopDrain()

	var readErr error
	for {
		m, err := conn.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) && !s.ended() {
				readErr = fmt.Errorf("read from poller: %w", err)
			}
			break
		}
		if dm, ok := m.(protocol.Demand); ok {
			d.pool.scale.setDemand(dm, time.Now())
			continue
		}
		j, ok := m.(protocol.Job)
		if !ok {
			readErr = fmt.Errorf("read from poller: unexpected message type %d", m.Type())
			break
		}
		if j.Parsed == nil {
			// From a stream, whose Recv reuses its buffer (a Pair's job
			// is the poller's own copy, handed over with its reading).
			j.Payload = append([]byte(nil), j.Payload...)
		}
		t := s.task(j)
		if s.draining.Load() {
			t.reply(notStarted(t)) // on its way before the poller heard capacity 0
			continue
		}
		// Never blocks: the buffer holds all the poller may send (its
		// credit), so this loop always reads what the poller writes.
		d.pool.enqueue(t)
	}
	// The poller is gone (or done): whatever has not started, never will.
	// Then, as a drain does, wait for every job's answer.
	close(s.fence)
	s.draining.Store(true)
	s.checkDrained()
	<-s.drained
	close(stopWriter)
	<-writerDone
	return readErr
}

// session is one poller connection as the dispatcher serves it.
type session struct {
	conn     *protocol.Conn
	outcomes chan protocol.Message // to the writer: outcomes, and Running of jobs handed ahead
	pending  atomic.Int64          // tasks not answered yet
	fence    chan struct{}         // closed when the connection ended: nothing more starts
	draining atomic.Bool           // no more jobs will be taken (the dispatcher stops, or the connection ended)
	drained  chan struct{}         // closed once draining and nothing is pending
	once     sync.Once
}

// task makes the task of job j, answering on this session.
func (s *session) task(j protocol.Job) *task {
	s.pending.Add(1)
	t := &task{job: j, s: s}
	if j.Parsed != nil {
		t.p = j.Parsed // the poller's reading, in the same process
		return t
	}
	parse := payload.Parse
	if n := protocol.StoredAttempts(j.Row, j.SQS); n >= 0 {
		parse = func(raw []byte) (*payload.Payload, error) { return payload.ParseRow(raw, n) }
	}
	if p, err := parse(j.Payload); err == nil {
		t.p = p
	}
	return t
}

// reply sends a task's outcome to the poller.
func (s *session) reply(o protocol.Outcome) {
	s.outcomes <- o
	s.pending.Add(-1)
	s.checkDrained()
}

// handed tells the poller that job id is about to go to PHP (see
// task.hand); false once the poller is gone.
func (s *session) handed(id uint64, now bool) bool {
	select {
	case <-s.fence:
		return false
	default:
	}
	// Sent, not queued for the writer: the poller must know a job may
	// have run before PHP can have it, or a dispatcher killed in
	// between leaves it to be returned and run twice. A send that
	// fails shows in the writer's log.
	if now {
		_ = s.conn.Send(protocol.Running{ID: id})
	} else {
		_ = s.conn.Send(protocol.Started{ID: id})
	}
	return true
}

// ended reports whether a drain has ended the connection (a stream that
// cannot half-close is closed whole: reading it then fails).
func (s *session) ended() bool {
	select {
	case <-s.drained:
		return true
	default:
		return false
	}
}

// checkDrained closes drained once the session drains with nothing pending.
func (s *session) checkDrained() {
	if s.draining.Load() && s.pending.Load() == 0 {
		s.once.Do(func() { close(s.drained) })
	}
}

// dropMoot takes out of batch each Running whose job's Outcome is in the
// batch too and settles its reservation (a delete, release or give-back
// names both of its forms), so a quick job costs the poller and Redis
// nothing for its charge. settled is scratch space.
func dropMoot(batch []protocol.Message, settled map[uint64]bool) []protocol.Message {
	clear(settled)
	for _, m := range batch {
		// A kept job's reservation stays: its charge must still be made.
		if o, ok := m.(protocol.Outcome); ok && o.Kind != protocol.Keep {
			settled[o.ID] = true
		}
	}
	if len(settled) == 0 {
		return batch
	}
	kept := batch[:0]
	for _, m := range batch {
		if r, ok := m.(protocol.Running); ok && settled[r.ID] {
			continue
		}
		kept = append(kept, m)
	}
	return kept
}

// poolStateEvery is how often the poller hears of the pool's workers.
const poolStateEvery = 2 * time.Second

// write sends outcomes and capacity changes, batching what is ready. Once a
// drain has answered every job, it ends the connection's write side: the
// poller sees the dispatcher go, with nothing of its in hand.
func (d *Dispatcher) write(s *session, stop <-chan struct{}) {
	var (
		batch   []protocol.Message
		broken  bool
		settled = map[uint64]bool{}
	)
	flush := func() {
		batch = dropMoot(batch, settled)
		if len(batch) > 0 && !broken {
			if err := s.conn.SendBatch(batch); err != nil {
				d.log.Error("send outcomes to poller", "error", err, "outcomes", len(batch))
				broken = true
			}
		}
		batch = batch[:0]
	}
	takeReady := func() {
		for {
			select {
			case o := <-s.outcomes:
				batch = append(batch, o)
			default:
				return
			}
		}
	}
	// The pool's state, now and every few seconds, for `kqueue status`.
	tick := time.NewTicker(poolStateEvery)
	defer tick.Stop()
	batch = append(batch, d.pool.state())
	flush()
	drained := s.drained
	for {
		select {
		case o := <-s.outcomes:
			batch = append(batch, o)
		case <-tick.C:
			batch = append(batch, d.pool.state())
		case <-d.capSig:
			batch = append(batch, protocol.Capacity{Capacity: uint64(d.pool.capacity())})
			if d.stateStale.Swap(false) {
				// kqueue status shows the change at once. (Not for a
				// change of prefetch depth, which is frequent: the state
				// reads each worker's memory from /proc.)
				batch = append(batch, d.pool.state())
			}
		case <-drained:
			drained = nil
			takeReady()
			flush()
			s.conn.CloseWrite()
			broken = true // nothing more can go
		case <-stop:
			takeReady()
			flush()
			return
		}
		// Take whatever else is ready, then send it in one write.
		takeReady()
		flush()
	}
}
