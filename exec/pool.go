package exec

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kqueue/kqueue/cgroup"
	"github.com/kqueue/kqueue/payload"
	"github.com/kqueue/kqueue/protocol"
)

// task is one job to run and where its outcome goes.
type task struct {
	job protocol.Job     // Payload owned by the task
	p   *payload.Payload // nil if the payload could not be read
	s   *session         // the poller's session it came on, which its answers go to
	// replied, when set, is called after its outcome went to s.
	replied func()
}

// reply sends t's outcome to the poller.
func (t *task) reply(o protocol.Outcome) {
	t.s.reply(o)
	if t.replied != nil {
		t.replied()
	}
}

// hand tells that t is about to be handed to PHP: from now on it may run;
// with now, its attempt counts at once (Laravel's failure rules run for a
// job kqueue could not start). It reports whether t may go: false once the
// poller is gone (no outcome could reach it, so nothing more starts); the
// caller then answers it as not started.
func (t *task) hand(now bool) bool {
	return t.s.handed(t.job.ID, now)
}

// begin tells that PHP is about to run t, in what (JobProcessing): its
// attempt counts.
func (t *task) begin(how protocol.Running) {
	how.ID = t.job.ID
	t.s.outcomes <- how
}

func (t *task) name() string {
	if t.p != nil {
		return t.p.Name()
	}
	return "job"
}

func (t *task) fields() []any {
	if t.p == nil {
		return []any{"queue", t.job.Queue}
	}
	return []any{"queue", t.job.Queue, "job_uuid", t.p.UUID, "job_name", t.p.Name(), "attempt", t.p.Attempts + 1}
}

// timeout is the job's timeout: its own, else its rule's, else def (0:
// none).
func (t *task) timeout(s Strategy, def time.Duration) time.Duration {
	timeout := def
	switch {
	case t.p != nil && t.p.Timeout != nil:
		timeout = *t.p.Timeout
	case s.Timeout != nil:
		timeout = *s.Timeout
	}
	return max(timeout, 0)
}

// deadline is when a timeout that starts at start runs out (zero: never).
func deadline(start time.Time, timeout time.Duration) time.Time {
	if timeout <= 0 {
		return time.Time{}
	}
	return start.Add(timeout)
}

// orphan is a job whose worker died under it: Laravel's failure rules must
// still run for it, in a healthy worker.
type orphan struct {
	t       *task
	kind    protocol.Failure
	reason  string
	elapsed time.Duration
	memory  uint64
	cpu     time.Duration
	output  string // what it wrote before it was lost
}

// pool is the warm pool: one goroutine per slot, each owning at most one
// PHP worker at a time.
type pool struct {
	cfg      *settings
	script   string
	log      *slog.Logger
	tasks    chan *task
	hardStop chan struct{}
	wg       sync.WaitGroup
	iso      *isolator // nil: every job inline
	scale    *scaler   // the pool's size
	app      []byte    // the app's queue configuration, as the first worker ready described it; nil after a reload (guarded by Dispatcher.appMu)

	defaultsMu sync.Mutex
	defaults   map[string]Hints // class → declared defaults, until a roll
	deaths     map[string]int   // class → workers that died asked about it, until a roll

	rollMu   sync.Mutex
	rolledAt time.Time     // workers booted before are replaced when idle
	rollCh   chan struct{} // closed at each roll

	mu       sync.Mutex
	ready    int                      // workers booted and serving
	isolated int                      // isolated jobs not yet done
	recent   time.Duration            // moving average of job durations
	seen     int                      // jobs observed, up to prefetchAfter
	depth    int                      // jobs asked for per worker (prefetch)
	took     map[string]time.Duration // moving average of each job class's duration
	// onCapacity is told the capacity changed; shown: so did what kqueue
	// status shows of the pool.
	onCapacity func(shown bool)
	recycles   map[string]uint64 // workers replaced, by reason
	declining  string            // why PHP declines the jobs it is handed; "" while it runs them
	declinedAt time.Time         // the last decline: the state lapses a few seconds after it
	anyDecline atomic.Bool       // declining != "": checked after every job
	draining   bool              // asking for no more jobs (see drain)
	unbegun    map[string]bool   // jobs (by uuid) whose worker died once before they began

	slots       []atomic.Pointer[worker] // each slot's worker, for status
	booting     atomic.Int32             // workers being started now
	failedBoots atomic.Uint64            // boots that failed, all told

}

// Prefetch: while jobs are short, a worker that finishes one should find
// the next already here rather than wait a round trip to Redis for it, and
// the poller should reserve many in one round trip rather than one each.
// So once prefetchAfter jobs have averaged under prefetchOn, the pool asks
// for depth jobs per worker: as many as its workers run in about
// prefetchWindow, at least 2, at most maxDepth. A job thus waits behind
// queued short ones for some 20 milliseconds at most. Above prefetchOff the
// pool asks for one job per worker again. (The poller extends the
// reservations of every job it has handed over, so a queued job's
// reservation does not expire while it waits.) The poller reserves again
// when half of what it handed over has run: the other half must outlast
// its round trip, which on a host whose cores are all busy running PHP
// waits for the daemon's and Redis' turns — a few milliseconds, while a
// no-op job takes some 30 microseconds.
const (
	prefetchAfter  = 16
	prefetchOn     = 10 * time.Millisecond
	prefetchOff    = 50 * time.Millisecond
	prefetchWindow = 20 * time.Millisecond
	maxDepth       = 256
)

// capacity is how many jobs the pool takes at once: depth per ready worker;
// none while it drains.
func (p *pool) capacity() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.draining {
		return 0
	}
	n := p.ready * max(p.depth, 1)
	// An isolated job does not hold a worker: it gives its credit back
	// while it runs, up to max_concurrent.
	if p.iso != nil {
		n += min(p.isolated, cap(p.iso.sem))
	}
	return n
}

// maxCapacity is the most capacity can ever be: every worker ready at the
// deepest prefetch, and every isolated job running.
func (p *pool) maxCapacity() int {
	cfg := p.cfg.get()
	n := max(cfg.Workers, cfg.MaxWorkers, 1) * maxDepth
	if cfg.Isolation != nil {
		n += max(cfg.Isolation.MaxConcurrent, 1)
	}
	return n
}

// drain asks for no more jobs: the pool runs what it has, and its capacity
// is 0 from now on.
func (p *pool) drain() {
	p.mu.Lock()
	p.draining = true
	notify := p.onCapacity
	p.mu.Unlock()
	if notify != nil {
		notify(false)
	}
}

// observe records how long a job took and adapts the prefetch depth. A
// job that ran is no longer one whose worker died before it began (see
// firstDeath).
func (p *pool) observe(t *task, d time.Duration) {
	class := t.name()
	p.mu.Lock()
	if t.p != nil && len(p.unbegun) > 0 {
		delete(p.unbegun, t.p.UUID)
	}
	if len(p.took) >= maxClasses {
		clear(p.took)
	}
	if old, ok := p.took[class]; ok {
		p.took[class] = old + (d-old)/4
	} else {
		p.took[class] = d
	}
	p.recent += (d - p.recent) / 8
	p.seen = min(p.seen+1, prefetchAfter)
	was := p.depth
	switch {
	case p.recent > prefetchOff || p.seen < prefetchAfter || p.cfg.get().NoPrefetch:
		p.depth = 1
	case p.depth > 1 || p.recent < prefetchOn:
		// The depth follows the ideal by powers of two, with slack both
		// ways so that a noisy average does not flap it.
		ideal := min(max(int(prefetchWindow/max(p.recent, time.Microsecond)), 2), maxDepth)
		switch {
		case p.depth <= 1:
			p.depth = 2
		case ideal >= 2*p.depth:
			p.depth = min(2*p.depth, maxDepth)
		case ideal < p.depth/2:
			p.depth = max(p.depth/2, 2)
		}
	}
	changed := p.depth != was
	notify := p.onCapacity
	p.mu.Unlock()
	if changed && notify != nil {
		notify(false) // kqueue status does not show the depth
	}
}

// ahead is how many jobs a worker running t may hold beyond it: about
// handAheadWork of work, by how long t's class has taken so far (took),
// and none behind a class that is slow or never seen (a job handed behind
// a slow one would wait for it).
func (p *pool) ahead(t *task) (n int, took time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d, ok := p.took[t.name()]
	if !ok || d >= prefetchOn {
		return 0, d
	}
	return min(max(int(handAheadWork/max(d, time.Microsecond)), 1), maxHandAhead), d
}

// maxClasses bounds how many job classes' durations the pool remembers.
const maxClasses = 4096

// isolatedDelta counts isolated jobs handed to the isolator and not yet
// done.
func (p *pool) isolatedDelta(d int) { p.adjust(&p.isolated, d) }

func (p *pool) addReady(delta int) { p.adjust(&p.ready, delta) }

// adjust changes a count the capacity depends on and announces it.
func (p *pool) adjust(count *int, delta int) {
	p.mu.Lock()
	*count += delta
	notify := p.onCapacity
	p.mu.Unlock()
	if notify != nil {
		notify(true)
	}
}

// start boots the first worker (so a broken app is one clear error) and
// starts every slot; the slots run until run is done.
func (p *pool) start(ctx, run context.Context) error {
	p.rollCh = make(chan struct{})
	cfg := p.cfg.get()
	n := cfg.Workers
	p.scale = newScaler(n, max(cfg.MaxWorkers, n), cfg.ScaleCooldown)
	// Every worker boots at once. The first one ready starts the pool;
	// when the first to finish fails, the pool does not start (the app
	// does not boot). The others go to the slots
	// as they come.
	boots := make(chan booted, n)
	for range n {
		p.booting.Add(1)
		go func() {
			w, err := startPoolWorker(context.WithoutCancel(ctx), p.cfg.get(), p.script, p.log, true)
			p.booting.Add(-1)
			boots <- booted{w, err}
		}()
	}
	left := n
	var first booted
	select {
	case first = <-boots:
		left--
	case <-ctx.Done():
		first.err = ctx.Err()
	}
	if first.err != nil {
		go func() { // the rest are stopped as they come
			for range left {
				if b := <-boots; b.err == nil {
					b.w.stop(p.cfg.get().StopGrace, "")
				}
			}
		}()
		return first.err
	}
	p.log.Info("worker ready", "pid", first.w.pid, "laravel", first.w.version, "boot", time.Since(first.w.booted).Round(time.Millisecond))
	p.app = first.w.app
	p.addReady(1)
	p.slots = make([]atomic.Pointer[worker], p.scale.max)
	p.slots[0].Store(first.w) // in the status from the start
	for i := range p.slots {
		p.wg.Add(1)
		switch {
		case i == 0:
			go p.slot(run, i, first.w, nil)
		case i < n:
			go p.slot(run, i, nil, boots)
		default:
			go p.slot(run, i, nil, nil) // parked until the pool grows
		}
	}
	if p.scale.scales() {
		p.wg.Add(1)
		go p.scaleLoop(run)
	}
	return nil
}

// scaleLoop samples how many workers are busy and sizes the pool (see
// scaler) until ctx is done.
func (p *pool) scaleLoop(ctx context.Context) {
	defer p.wg.Done()
	sample := time.NewTicker(busySample)
	defer sample.Stop()
	var cpu cpuGauge
	cpu.busy()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-sample.C:
			ready, idle, booting := p.census()
			p.scale.sampleBusy(ready - idle)
			if now.Sub(last) < scaleEvery {
				continue
			}
			last = now
			busy, busyOK := cpu.busy()
			cfg := p.cfg.get()
			used, perWorker, anon := p.memory()
			h := host{budget: cfg.MemoryBudget, used: used, anon: anon,
				cpuBusy: busy, cpuKnown: busyOK, maxCPU: cfg.ScaleMaxCPU,
				usedByCg: cgroupMemory, available: func() (int64, bool) { return meminfo("MemAvailable") }}
			// The slots follow the target; capacity changes as their
			// workers boot or retire (addReady).
			if msg, _ := p.scale.decide(now, ready, idle, booting, perWorker, h.room); msg != "" {
				p.log.Info(msg)
			}
		}
	}
}

// census counts the workers: ready (booted and serving), idle among them,
// and booting.
func (p *pool) census() (ready, idle, booting int) {
	for i := range p.slots {
		w := p.slots[i].Load()
		if w == nil {
			continue
		}
		select {
		case <-w.exited:
			continue
		default:
		}
		ready++
		if !w.busy.Load() {
			idle++
		}
	}
	return ready, idle, int(p.booting.Load())
}

// memory is what the workers and the isolated jobs hold now (the budget
// they share), and the most one worker holds (64 MiB before any is
// measured), all of it and of its own: what another would take.
func (p *pool) memory() (used, perWorker, anon int64) {
	for i := range p.slots {
		if w := p.slots[i].Load(); w != nil {
			rss := max(rssOf(w.pid), 0)
			used += rss
			perWorker = max(perWorker, rss)
			anon = max(anon, anonOf(w.pid))
		}
	}
	if p.iso != nil {
		for _, u := range p.iso.usage() {
			used += int64(u.PeakMemory)
		}
	}
	if perWorker == 0 {
		perWorker = 64 << 20
	}
	return used, perWorker, anon
}

// booted is a worker's boot: the worker, or why it did not boot.
type booted struct {
	w   *worker
	err error
}

// roll replaces every worker (and the fork template) once it is idle: new
// code after a deploy, no job interrupted.
func (p *pool) roll() {
	p.rollMu.Lock()
	p.rolledAt = time.Now()
	close(p.rollCh)
	p.rollCh = make(chan struct{})
	p.rollMu.Unlock()
	p.forgetDefaults()
	if p.iso != nil && p.iso.forker != nil {
		p.iso.forker.roll()
	}
}

// rolling returns the channel closed at the next roll, and whether w
// predates the last one.
func (p *pool) rolling(w *worker) (<-chan struct{}, bool) {
	p.rollMu.Lock()
	defer p.rollMu.Unlock()
	return p.rollCh, w != nil && w.booted.Before(p.rolledAt)
}

// slot keeps one worker alive and feeds it jobs until ctx is done. Its
// first worker is w, or the first boot from boots.
func (p *pool) slot(ctx context.Context, i int, w *worker, boots <-chan booted) {
	defer p.wg.Done()
	var (
		pending  *orphan
		held     *task // taken from the queue, not started: runs next
		failures int
	)
	for {
		if w == nil && boots == nil && pending == nil && held == nil {
			// A slot the pool does not need now waits until it grows.
			changed := p.scale.changes()
			if !p.scale.claim(i) {
				p.slots[i].Store(nil)
				select {
				case <-changed:
					continue
				case <-ctx.Done():
					return
				}
			}
		}
		if w == nil {
			var err error
			if boots != nil {
				// Taken even when stopping: a worker booted for this slot
				// is retired by it, below.
				b := <-boots
				w, err, boots = b.w, b.err, nil
			} else {
				if ctx.Err() != nil && pending == nil {
					return
				}
				p.booting.Add(1)
				w, err = startPoolWorker(context.WithoutCancel(ctx), p.cfg.get(), p.script, p.log, false)
				p.booting.Add(-1)
			}
			if err != nil {
				failures++
				var again bool
				if pending, again = p.bootFailed(ctx, err, failures, pending); !again {
					return
				}
				continue
			}
			if failures > 0 {
				p.log.Info("worker booted again", "pid", w.pid, "failed_boots", failures)
			} else {
				p.log.Info("worker ready", "pid", w.pid, "boot", time.Since(w.booted).Round(time.Millisecond))
			}
			failures = 0
			// In the slot before the capacity change goes out: the pool's
			// state sent with it lists this worker.
			p.slots[i].Store(w)
			p.addReady(1)
		}
		if pending != nil {
			w = p.failOutside(w, pending)
			pending = nil
			continue
		}
		p.slots[i].Store(w)
		rolled, stale := p.rolling(w)
		if stale {
			p.log.Info("reload: recycling worker", "pid", w.pid, "reason", "reload")
			p.recycled("reload")
			w = p.retire(w, "reload")
			if held != nil {
				p.requeue(held)
				held = nil
			}
			continue
		}
		if held == nil {
			var done bool
			if held, w, done = p.idle(ctx, i, w, rolled); done {
				return
			}
			if held == nil {
				continue // a roll, or w gone: seen to at the top
			}
		}
		r := p.handle(ctx, w, held)
		w, pending, held = r.keep, r.orphan, r.held
	}
}

// bootFailed logs the failures-th failed boot in a row and waits before
// the next. A hard stop meanwhile answers pending, the orphan the slot
// holds for its next worker, which then never boots. It returns what is
// still pending, and whether the slot tries again.
func (p *pool) bootFailed(ctx context.Context, err error, failures int, pending *orphan) (*orphan, bool) {
	p.failedBoots.Add(1)
	// One clear error per failing streak, then quiet retries.
	if failures == 1 {
		p.log.Error("worker failed to boot; retrying with backoff", "error", err)
	} else {
		p.log.Debug("boot attempt failed", "attempt", failures, "error", err)
	}
	select {
	case <-p.hardStop:
		if pending != nil {
			// Its failure handling needs a worker, and none
			// boots: it stays reserved, as under Laravel.
			pending.t.reply(keepOrphan(pending, "kqueue stopped before a worker could boot to run it"))
			pending = nil
		}
	default:
	}
	var wake <-chan struct{}
	if pending != nil {
		wake = p.hardStop // a hard stop answers it at once
	}
	// Once ctx is done the slot stops, unless an orphan still waits for a
	// worker to run its failure handling.
	return pending, p.sleep(ctx, min(time.Duration(1<<min(failures, 6))*250*time.Millisecond, 15*time.Second), wake) || pending != nil
}

// idle waits, with the slot's worker w idle, for its next task, a roll
// (rolled) or the end of ctx, and replaces w should it exit or see
// queue:restart. It returns the task (nil: none yet), the worker to keep,
// and whether the slot is done (w is retired then).
func (p *pool) idle(ctx context.Context, i int, w *worker, rolled <-chan struct{}) (*task, *worker, bool) {
	if p.scale.release(i) {
		return nil, p.shrink(w), false
	}
	select {
	case <-rolled:
		return nil, w, false // the slot checks it at the top
	case <-p.scale.changes():
		if p.scale.release(i) {
			w = p.shrink(w)
		}
		return nil, w, false
	case t := <-p.tasks:
		return t, w, false
	case m, ok := <-w.msgs:
		if !ok {
			<-w.exited
			w.release()
			p.log.Warn("idle worker exited; replacing it", "pid", w.pid, "exit", exitText(w.state))
			p.recycled("exited")
			p.addReady(-1)
			w = nil
		} else if m.Op == "restart" {
			p.log.Info("queue:restart seen; recycling worker", "pid", w.pid, "reason", "restart")
			p.recycled("restart")
			p.forgetDefaults()
			w = p.retire(w, "restart")
		}
		return nil, w, false
	case <-ctx.Done():
		p.retire(w, "")
		return nil, nil, true
	}
}

// shrink retires idle worker w: the pool keeps fewer now.
func (p *pool) shrink(w *worker) *worker {
	p.log.Info("worker retired: the pool shrinks", "pid", w.pid)
	return p.retire(w, "")
}

// handle runs t, taken by the slot whose worker is w, as its strategy
// says: in w (see run), or isolated. When w died asking for t's class's
// defaults, t goes back to the pool's queue for another worker. A task run
// took but did not start goes back there too when w is gone.
func (p *pool) handle(ctx context.Context, w *worker, t *task) runResult {
	s, alive := p.strategyFor(w, t)
	switch {
	case !alive:
		p.addReady(-1)
		p.requeue(t)
		return runResult{}
	case s.Isolated && p.iso != nil:
		p.isolate(t, s)
		return runResult{keep: w}
	}
	r := p.run(ctx, w, t, s)
	if r.keep == nil && r.held != nil {
		p.requeue(r.held)
		r.held = nil
	}
	return r
}

// firstDeath reports whether t's worker died before t began for the first
// time: then t goes back as it was (its worker may have died of something
// else). A second time, the job itself is the likely cause — a class that
// kills PHP as it loads — and it is charged and failed by Laravel's rules
// like any crashing job, instead of going back for ever.
func (p *pool) firstDeath(t *task) bool {
	if t.p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.unbegun == nil || len(p.unbegun) >= maxClasses {
		p.unbegun = map[string]bool{}
	}
	if p.unbegun[t.p.UUID] {
		delete(p.unbegun, t.p.UUID)
		return false
	}
	p.unbegun[t.p.UUID] = true
	return true
}

// seconds is d in whole seconds, rounded up (0 stays 0).
func seconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}

// rejectQueued answers the tasks no worker has taken as not started: after
// a hard stop (when no worker may be able to boot) a stop must not wait
// for them.
func (p *pool) rejectQueued() {
	for {
		select {
		case t := <-p.tasks:
			t.reply(notStarted(t))
		default:
			return
		}
	}
}

// enqueue puts t in the pool's queue; after a hard stop nothing queued
// starts (rejectQueued).
func (p *pool) enqueue(t *task) {
	p.tasks <- t
	select {
	case <-p.hardStop:
		p.rejectQueued()
	default:
	}
}

// requeue gives a task that has not started back to the pool's queue, for
// the first worker free (this slot's is gone).
func (p *pool) requeue(t *task) { go p.enqueue(t) }

// strategyFor chooses how t runs. A class's declared defaults are asked of
// worker w once per class; alive is false if w died meanwhile.
func (p *pool) strategyFor(w *worker, t *task) (s Strategy, alive bool) {
	return p.strategy(t, func(class string) (Hints, bool) { return p.classDefaults(w, class) })
}

// knownStrategy chooses how t runs without asking PHP; ok is false when it
// needs a class's defaults that are not known yet.
func (p *pool) knownStrategy(t *task) (s Strategy, ok bool) {
	return p.strategy(t, p.knownDefaults)
}

// knownDefaults is a class's declared defaults if PHP has been asked.
func (p *pool) knownDefaults(class string) (Hints, bool) {
	p.defaultsMu.Lock()
	defer p.defaultsMu.Unlock()
	h, ok := p.defaults[class]
	return h, ok
}

func (p *pool) strategy(t *task, classDefaults func(string) (Hints, bool)) (Strategy, bool) {
	cfg := p.cfg.get()
	if p.iso == nil && len(cfg.Rules) == 0 {
		return Strategy{}, true
	}
	var limits cgroup.Limits
	if cfg.Isolation != nil {
		limits = cfg.Isolation.Limits
	}
	if t.p == nil {
		return choose(t.job.Queue, "", Hints{}, cfg.Rules, limits), true
	}
	class := t.p.CommandName
	if class == "" {
		class = t.p.Name()
	}
	h, ok := jobHints(t.p, classDefaults)
	if !ok {
		return Strategy{}, false
	}
	return choose(t.job.Queue, class, h, cfg.Rules, limits), true
}

// isolate hands t to the isolator; its credit is back while it runs.
func (p *pool) isolate(t *task, s Strategy) {
	p.isolatedDelta(1)
	t.replied = func() { p.isolatedDelta(-1) }
	p.iso.submit(t, s)
}

// classDefaults asks PHP for a class's declared $isolated, $maxMemory and
// $cpu (Laravel 10+ leaves defaults out of the payload), once per class.
// alive is false when w died asking: the answer is not known then, and
// the job waits for another worker to ask again. A class that kills the
// worker asked about it twice (it does not load: a fatal error, an exit)
// is run isolated from then on, so what it does happens inside limits;
// Laravel's rules then fail it as any crashing job.
func (p *pool) classDefaults(w *worker, class string) (Hints, bool) {
	h, ok := p.knownDefaults(class)
	if ok {
		return h, true
	}
	r := w.do(request{Op: "defaults", Class: class}, nil, time.Now().Add(30*time.Second), p.hardStop, nil)
	p.defaultsMu.Lock()
	defer p.defaultsMu.Unlock()
	if p.defaults == nil {
		p.defaults = map[string]Hints{}
	}
	if !r.ok {
		if p.deaths == nil {
			p.deaths = map[string]int{}
		}
		p.deaths[class]++
		p.log.Error("asking PHP for a job class's defaults killed the worker", "job_name", class, "exit", r.exit, "deaths", p.deaths[class])
		if p.deaths[class] >= 2 {
			p.defaults[class] = Hints{MustIsolate: true}
		}
		return Hints{}, false
	}
	for name, v := range r.msg.Defaults {
		h.set(name, v)
	}
	p.defaults[class] = h
	return h, true
}

// forgetDefaults drops the cached class defaults: new code may declare
// others.
func (p *pool) forgetDefaults() {
	p.defaultsMu.Lock()
	p.defaults, p.deaths = nil, nil
	p.defaultsMu.Unlock()
}

// sleep waits d, or until wake is closed (true) or ctx is done (false).
func (p *pool) sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-wake:
		return true
	case <-ctx.Done():
		return false
	}
}

// retire stops a healthy worker, telling it why (a recycle reason, or ""
// when kqueue stops), and returns nil for the slot's next one.
func (p *pool) retire(w *worker, reason string) *worker {
	p.addReady(-1)
	w.stop(p.cfg.get().StopGrace, reason)
	return nil
}

// sent is a job handed to a worker and not answered yet.
type sent struct {
	t       *task
	s       Strategy
	log     *jobLog       // its log fields and output
	size    int           // bytes of the request
	timeout time.Duration // the job's, as handed to PHP (0: none)
	run     uint64        // its number among the runs handed to w (see worker.begun)
	began   bool          // w said it is about to run it (its attempt counts)
	charged bool          // the poller was told so (Running)
}

// chargeAfter is how long a job runs before the poller is told its attempt
// counts (a pool worker's job: how long after it came to the head of its
// worker the daemon looks whether it began, and again as often until it
// did). A job that ends sooner is charged with its outcome, in the same
// round trip as its delete or release, so a finished job whose delete is
// lost with the daemon comes back as it was, not charged (it would fail
// with one try without having failed). One cut short sooner by a crash,
// a timeout or a hard stop is charged at once; one cut short by kqueue's
// own death runs again as the same attempt.
const chargeAfter = 20 * time.Millisecond

// While jobs are short a worker holds about handAheadWork of jobs beyond
// the one it runs, maxHandAhead at most: enough that PHP finds its next job
// in the pipe even when the daemon is late to read its answers (on a host
// whose cores the PHP workers keep busy, it often is).
const (
	handAheadWork = 4 * time.Millisecond
	maxHandAhead  = 31
)

// runResult is how a run ended (see pool.run).
type runResult struct {
	keep   *worker // the worker to keep; nil when it is gone
	orphan *orphan // a job whose worker died under it, for Laravel's failure rules
	held   *task   // taken, not started: it needs the worker to itself first
}

// jobRun is one run of worker w (see pool.run): the jobs handed to w and
// not answered yet, and what the run learns on the way. Its methods are
// the run's steps; they share this state.
type jobRun struct {
	p        *pool
	w        *worker
	inflight []sent          // handed to w, not answered: the head runs, the others wait in its pipe
	held     *task           // taken, not started (see runResult)
	began    time.Time       // when the head of inflight started
	ahead    int             // how many jobs w may hold beyond the head
	took     time.Duration   // how long the head's class has taken (0: not known)
	restart  bool            // queue:restart seen
	retiring string          // why w is replaced once inflight is done
	fenced   <-chan struct{} // the poller's fence; nil once seen
	// The head's deadline and its charge (see chargeAfter) are watched by
	// timers left running from one job to the next: each fires at the
	// earliest moment it is due and, finding the head not due yet (it is
	// another job by then), is set again; quick jobs cost them nothing.
	deadline    time.Time   // the head's (zero: none)
	timer       *time.Timer // fires at timerAt, the head's deadline or earlier
	timerAt     time.Time   // zero: stopped
	chargeTimer *time.Timer // fires chargeAfter after the head began, or earlier
	charging    bool        // chargeTimer is set
}

// run runs t in worker w. While it runs, run takes the next tasks and hands
// them to w as well when they can run inline there, so that the worker goes
// from one job to the next without waiting for the daemon: a worker holds a
// few milliseconds of quick jobs beyond the one it runs (see ahead), and
// runs them in order.
// run returns a runResult: the worker to keep (nil when it is gone), an
// orphan when a job's worker died under it, and a task it took but has not
// started (it needs w to itself first: its class's defaults are not known
// yet). The run's steps are jobRun's methods.
func (p *pool) run(ctx context.Context, w *worker, t *task, s Strategy) runResult {
	r := &jobRun{
		p:           p,
		w:           w,
		fenced:      t.s.fence,
		timer:       time.NewTimer(time.Hour),
		chargeTimer: time.NewTimer(time.Hour),
	}
	r.timer.Stop()
	defer r.timer.Stop()
	r.chargeTimer.Stop()
	defer r.chargeTimer.Stop()
	w.busy.Store(true)
	defer w.busy.Store(false)
	return r.loop(ctx, t, s)
}

// loop hands t to w, then answers w's messages, takes more tasks for it
// and watches the head's deadline until w has answered every job it was
// handed, or is gone.
func (r *jobRun) loop(ctx context.Context, t *task, s Strategy) runResult {
	p, w := r.p, r.w
	r.hand(t, s)
	if len(r.inflight) == 0 {
		return runResult{keep: w}
	}
	r.begin()
	defer w.nap.Store(0)
	for len(r.inflight) > 0 {
		w.nap.Store(int64(r.napFor()))
		var more <-chan *task
		if r.held == nil && len(r.inflight) <= r.ahead && r.retiring == "" && !r.restart && w.writing == nil &&
			ctx.Err() == nil && p.accepts(w, len(r.inflight)) {
			more = p.tasks
		}
		if len(w.pending) > 0 {
			// Jobs handed: those waiting to be taken too, and first the
			// answers read with the last (each makes room for another
			// job), then one write.
			select {
			case t := <-more:
				r.take(t)
				continue
			default:
			}
			if len(w.msgs) == 0 {
				if err := w.flush(); err != nil {
					killGroup(w.pid) // the answer loop sees it gone
				}
			}
		}
		if len(w.msgs) > 0 {
			// An answer read already (the usual case while jobs stream)
			// is taken without the whole select: the timers and the
			// fence wait for the answers in flight at most.
			m, ok := <-w.msgs
			if res, over := r.answer(m, ok); over {
				return res
			}
			continue
		}
		select {
		case t := <-more:
			r.take(t)
		case m, ok := <-w.msgs:
			if res, over := r.answer(m, ok); over {
				return res
			}
		case err := <-w.writing:
			w.writing = nil
			if err != nil {
				killGroup(w.pid) // the answer loop sees it gone
			}
		case <-r.chargeTimer.C:
			r.charging = false
			if len(r.inflight) == 0 {
				break
			}
			if wait := chargeAfter - time.Since(r.began); wait > 0 {
				r.chargeTimer.Reset(wait) // set for a head before this one
				r.charging = true
				break
			}
			r.sync()
			switch {
			case r.inflight[0].began:
				r.charge()
			case w.beganR != nil:
				r.armCharge() // not begun yet: look again
			}
		case <-r.fenced:
			// The poller is gone: nothing more may start, and w would go
			// on to the jobs in its pipe (or begin the one it has).
			// SIGTERM — what it gets when the dispatcher dies — makes it
			// finish the job it has begun and exit.
			r.fenced = nil
			r.sync()
			if len(r.inflight) > 1 || !r.inflight[0].began {
				w.quitting.Store(true)
				syscall.Kill(w.pid, syscall.SIGTERM)
			}
		case <-r.timer.C:
			r.timerAt = time.Time{}
			switch now := time.Now(); {
			case r.deadline.IsZero():
			case now.Before(r.deadline):
				r.timer.Reset(r.deadline.Sub(now)) // set for a head before this one
				r.timerAt = r.deadline
			default:
				return r.timedOut()
			}
		case <-p.hardStop:
			r.kill()
			r.interrupt("kqueue was stopping and the job did not finish within the shutdown timeout")
			p.addReady(-1)
			return runResult{held: r.held}
		}
	}
	return r.end()
}

// While a worker holds quick jobs beyond the one it runs, its answers
// wait to be read together (worker.nap): for half the work it holds,
// answerNap at most, so that PHP always has its next job meanwhile; not
// at all when that is under minNap (a timer costs about as much as the
// wake-up it saves). A job's duration is then PHP's own measure, and its
// timeout runs from when the daemon read the answer before it: at most
// answerNap late.
const (
	answerNap = 500 * time.Microsecond
	minNap    = 50 * time.Microsecond
)

// napFor is how long w's answers may wait now (see answerNap).
func (r *jobRun) napFor() time.Duration {
	if r.took <= 0 || len(r.inflight) < 2 {
		return 0
	}
	d := min(time.Duration(len(r.inflight)-1)*r.took/2, answerNap)
	if d < minNap {
		return 0
	}
	return d
}

// take places a task taken from the pool's queue while w runs: behind the
// others in w, unless it runs isolated, or its class's defaults are not
// known yet (w must be free to ask for them first: it is held).
func (r *jobRun) take(t *task) {
	switch s, ok := r.p.knownStrategy(t); {
	case !ok:
		r.held = t
	case s.Isolated && r.p.iso != nil:
		r.p.isolate(t, s)
	default:
		r.hand(t, s)
	}
}

// hand sends a task to w, unless kqueue is stopping hard or the poller
// is gone. The first one w runs at once; the others wait in its pipe.
// The request is queued: loop writes what it handed in one go before it
// waits again.
func (r *jobRun) hand(t *task, s Strategy) {
	select {
	case <-r.p.hardStop:
		t.reply(notStarted(t))
		return
	default:
	}
	ahead := 0
	for _, x := range r.inflight[min(1, len(r.inflight)):] {
		ahead += x.size
	}
	if !t.hand(false) {
		t.reply(notStarted(t))
		return
	}
	timeout := t.timeout(s, r.p.cfg.get().Timeout)
	n, err := r.w.queue(request{Op: "run", Queue: t.job.Queue, Timeout: seconds(timeout), Row: t.job.Row, SQS: t.job.SQS}, t.job.Payload, ahead)
	if err != nil {
		killGroup(r.w.pid) // the answer loop sees it gone
	}
	r.w.runs++
	r.inflight = append(r.inflight, sent{t: t, s: s, log: newJobLog(t), size: n, run: r.w.runs, timeout: timeout})
}

// begin starts the clock of the job at the head: w runs it now. Only
// behind a job of a class known to be quick does w get more: a job
// handed to w behind a slow one would wait for it.
func (r *jobRun) begin() {
	h := &r.inflight[0]
	now := time.Now()
	r.began = now
	r.ahead, r.took = r.p.ahead(h.t)
	r.w.current.Store(h.log)
	r.deadline = deadline(now, h.timeout)
	if !r.deadline.IsZero() && (r.timerAt.IsZero() || r.deadline.Before(r.timerAt)) {
		r.timer.Reset(r.deadline.Sub(now))
		r.timerAt = r.deadline
	}
	if r.w.beganR != nil {
		// A pool worker's "began" is read when needed: whether it began
		// is looked at once the job has had chargeAfter to run.
		r.armCharge()
	}
}

// armCharge sets chargeTimer, unless it is set: it fires at most
// chargeAfter after the head began.
func (r *jobRun) armCharge() {
	if !r.charging {
		r.chargeTimer.Reset(chargeAfter)
		r.charging = true
	}
}

// headDone: the head has its answer; its deadline no longer counts.
func (r *jobRun) headDone() { r.deadline = time.Time{} }

// sync reads what w said began (a pool worker's fd 5), so that the head's
// began is as of now.
func (r *jobRun) sync() {
	r.w.readBegan()
	if len(r.inflight) > 0 {
		if h := &r.inflight[0]; !h.began && r.w.beganR != nil && r.w.begun >= h.run {
			h.began = true
		}
	}
}

// start notes that w has begun the head; its charge goes to the
// poller if it is still running after chargeAfter (see there).
func (r *jobRun) start() {
	if h := &r.inflight[0]; !h.began {
		h.began = true
		r.armCharge()
	}
}

// charge tells the poller that the head's attempt counts.
func (r *jobRun) charge() {
	if h := &r.inflight[0]; !h.charged {
		h.began, h.charged = true, true
		h.t.begin(protocol.Running{PID: uint64(r.w.pid), Timeout: h.timeout, Strategy: "inline"})
	}
}

// answer takes a message w wrote while it ran the head. It reports whether
// the run is over, and then how it ended: w died, or broke the protocol.
func (r *jobRun) answer(m message, ok bool) (res runResult, over bool) {
	p, w := r.p, r.w
	if !ok {
		r.sync() // gone: all it said began is there to read
	}
	h := r.inflight[0]
	switch {
	case !ok && w.quitting.Load() && !h.began:
		// It finished what it had begun, as asked: the rest never
		// started (interrupt gives back a head not begun).
		<-w.exited
		w.release()
		r.interrupt("its poller went")
		p.addReady(-1)
		p.recycled("fenced")
		return runResult{held: r.held}, true
	case !ok:
		<-w.exited
		w.release()
		return r.lost(fmt.Sprintf("%s crashed its worker (pid %d): %s%s", h.t.name(), w.pid, exitText(w.state), w.tail.suffix()), protocol.FailCrash), true
	case m.Op == "restart":
		r.restart = true
		return runResult{}, false
	case m.Op == "began":
		r.start()
		return runResult{}, false
	case m.Op != "done":
		// A worker that breaks the protocol cannot be trusted.
		w.killCollect()
		return r.lost(fmt.Sprintf("%s crashed its worker (pid %d): it broke the protocol (%s: %s)", h.t.name(), w.pid, m.Op, m.Error), protocol.FailCrash), true
	}
	if m.Declined != "" {
		r.declined(m)
		return runResult{}, false
	}
	r.finish(m)
	return runResult{}, false
}

// shift takes the head off inflight and returns it. The others move up,
// so the slice's array serves every job of the run (a few of them, small).
func (r *jobRun) shift() sent {
	h := r.inflight[0]
	n := copy(r.inflight, r.inflight[1:])
	r.inflight[n] = sent{}
	r.inflight = r.inflight[:n]
	return h
}

// declined takes w's answer for a head PHP did not run (see
// message.Declined): it goes back to its queue as it was, its attempt not
// counted; the poller holds its queue a second (see protocol.Declined).
func (r *jobRun) declined(m message) {
	r.headDone()
	h := r.shift()
	r.p.noteDeclined(m.Declined)
	h.t.reply(declinedOutcome(h.t, m))
	if len(r.inflight) > 0 {
		r.begin()
	}
}

// finish takes w's answer for the head.
func (r *jobRun) finish(m message) {
	p, w := r.p, r.w
	// w.current stays: output the job wrote just before it answered may
	// still be in the pipe, and belongs to it.
	r.headDone()
	r.charge() // it went through Laravel's process(), whatever it said before
	h := r.inflight[0]
	elapsed := time.Duration(m.Us) * time.Microsecond // PHP's own measure
	if m.Us <= 0 {
		elapsed = time.Since(r.began)
	}
	r.shift()
	w.jobs.Add(1)
	p.observe(h.t, elapsed)
	rss := w.recentRSS()
	o := outcomeOf(m)
	o.ID, o.Duration, o.Memory, o.Strategy = h.t.job.ID, elapsed, uint64(rss), "inline"
	o.Output = h.log.output()
	h.t.reply(o)
	p.ranAgain()
	if w.jobs.Load()%256 == 0 {
		w.readBegan() // so that its pipe never fills
	}
	if why := p.recycleReason(w, rss, r.restart); why != "" && r.retiring == "" {
		r.retiring = why
	}
	if len(r.inflight) > 0 {
		r.begin()
	}
}

// kill ends w, then takes the answers it wrote before it died: the
// jobs it finished. It reports whether the head is still the one that
// was running (false: w moved on to the next one, or ran them all).
func (r *jobRun) kill() (sameHead bool) {
	var head *task
	if len(r.inflight) > 0 {
		head = r.inflight[0].t
	}
	for _, m := range r.w.killCollect() {
		switch {
		case len(r.inflight) == 0:
		case m.Op == "began":
			r.start()
		case m.Op == "done" && m.Declined != "":
			r.declined(m)
		case m.Op == "done":
			r.finish(m)
		}
	}
	r.sync()
	r.headDone()
	return len(r.inflight) > 0 && r.inflight[0].t == head
}

// timedOut ends the run when the head ran out of time: w is killed, and
// the head is lost with it (see lost), unless w answered it meanwhile.
func (r *jobRun) timedOut() runResult {
	h := r.inflight[0]
	if r.kill() {
		return r.lost(fmt.Sprintf(
			"%s has timed out: it ran longer than its timeout of %s, and kqueue killed its worker (pid %d) and every process it started",
			h.t.name(), h.timeout, r.w.pid), protocol.FailTimeout)
	}
	// It answered as it ran out of time: the job w had moved on to
	// was killed with it, through no fault of its own — released
	// if it had begun (its attempt counts), else given back.
	r.interrupt("kqueue killed its worker when the job before it ran out of time")
	r.p.addReady(-1)
	r.p.recycled(recycleReason(protocol.FailTimeout))
	return runResult{held: r.held}
}

// interrupt answers the jobs of a killed w: the head, if it had begun,
// is released with its attempt counted, as queue:work's are when its
// stop wait runs out; the others never ran and go back as they were.
func (r *jobRun) interrupt(why string) {
	for i, x := range r.inflight {
		if i == 0 && x.began {
			r.charge()
			x.t.reply(protocol.Outcome{
				ID: x.t.job.ID, Kind: protocol.Release, ReleaseAt: time.Now().Unix(),
				Result: "interrupted", Reason: why, Duration: time.Since(r.began),
			})
			continue
		}
		x.t.reply(notStarted(x.t))
	}
	r.inflight = nil
}

// lost ends the run when w died under the head: the jobs after it never
// started and go back to the pool's queue; the head is an orphan, for
// Laravel's failure rules — unless it had not begun either: then it did
// not run, and goes back to its queue as it was.
func (r *jobRun) lost(reason string, kind protocol.Failure) runResult {
	p := r.p
	p.addReady(-1)
	p.recycled(recycleReason(kind))
	if len(r.inflight) == 0 {
		return runResult{held: r.held}
	}
	h := r.inflight[0]
	for _, x := range r.inflight[1:] {
		p.requeue(x.t)
	}
	if !h.began && p.firstDeath(h.t) {
		h.t.reply(notStarted(h.t))
		return runResult{held: r.held}
	}
	r.charge()
	return runResult{orphan: &orphan{t: h.t, kind: kind, elapsed: time.Since(r.began), reason: reason, output: h.log.output()}, held: r.held}
}

// end ends a run whose jobs w has all answered: w is kept, unless it is
// to be replaced (its poller went, or it is due for recycling).
func (r *jobRun) end() runResult {
	p, w := r.p, r.w
	if r.restart {
		p.forgetDefaults()
	}
	if w.quitting.Load() {
		// Told to stop after its job (its poller went): it exits now.
		p.recycled("fenced")
		return runResult{keep: p.retire(w, ""), held: r.held}
	}
	if r.retiring != "" {
		p.log.Info("recycling worker", "pid", w.pid, "reason", r.retiring, "jobs", w.jobs.Load())
		p.recycled(r.retiring)
		return runResult{keep: p.retire(w, r.retiring), held: r.held}
	}
	return runResult{keep: w, held: r.held}
}

// accepts reports whether worker w, with n jobs in hand, may take another:
// only while jobs are short (the pool prefetches: a job taken here would
// rather wait behind a short one than leave another worker idle), and
// neither after a reload rolled the pool nor beyond max_jobs.
func (p *pool) accepts(w *worker, n int) bool {
	p.mu.Lock()
	prefetching := p.depth > 1
	p.mu.Unlock()
	if !prefetching {
		return false
	}
	if _, stale := p.rolling(w); stale {
		return false
	}
	maxJobs := p.cfg.get().MaxJobs
	return maxJobs <= 0 || int(w.jobs.Load())+n < maxJobs
}

// notStarted is the outcome of a job that never ran (kqueue stopping, its
// poller gone, the worker it was handed to dead before it began): back to
// its queue as it was, no attempt counted.
func notStarted(t *task) protocol.Outcome {
	return protocol.Outcome{ID: t.job.ID, Kind: protocol.GiveBack, Strategy: "inline",
		Result: "interrupted", Reason: "the job had not started"}
}

// declineLapse is how long after the last decline the pool still says it
// declines: a paused queue's jobs come back about once a second.
const declineLapse = 3 * time.Second

// declinedOutcome is the outcome of a job PHP declined to run.
func declinedOutcome(t *task, m message) protocol.Outcome {
	return protocol.Outcome{ID: t.job.ID, Kind: protocol.GiveBack, Result: protocol.Declined, Reason: m.Declined}
}

// noteDeclined notes that PHP declined a job for why; the log hears of it
// once, until a job runs again.
func (p *pool) noteDeclined(why string) {
	p.mu.Lock()
	changed := p.declining != why
	p.declining, p.declinedAt = why, time.Now()
	p.mu.Unlock()
	p.anyDecline.Store(true)
	if changed {
		p.log.Warn("running no job: "+why+"; each is given back to its queue as it was, and tried again a second later", "reason", why)
	}
}

// ranAgain notes that a job ran after PHP had declined others.
func (p *pool) ranAgain() {
	// Read first: a write on every job would bounce the cache line.
	if !p.anyDecline.Load() || !p.anyDecline.Swap(false) {
		return
	}
	p.mu.Lock()
	why := p.declining
	p.declining = ""
	p.mu.Unlock()
	p.log.Info("running jobs again", "was", why)
}

// recycled counts a worker replaced for reason.
func (p *pool) recycled(reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.recycles == nil {
		p.recycles = map[string]uint64{}
	}
	p.recycles[reason]++
}

// state is the pool as `kqueue status` shows it: each live worker with its
// memory and jobs, and the workers replaced so far by reason.
func (p *pool) state() protocol.Pool {
	var s protocol.Pool
	for i := range p.slots {
		w := p.slots[i].Load()
		if w == nil {
			continue
		}
		select {
		case <-w.exited:
			continue // being replaced
		default:
		}
		s.Workers = append(s.Workers, protocol.PoolWorker{
			PID: uint64(w.pid), Busy: w.busy.Load(), Jobs: uint64(w.jobs.Load()),
			RSS: uint64(max(rssOf(w.pid), 0)), Age: time.Since(w.booted),
		})
	}
	p.mu.Lock()
	for reason, n := range p.recycles {
		s.Recycles = append(s.Recycles, protocol.Recycle{Reason: reason, Count: n})
	}
	if time.Since(p.declinedAt) < declineLapse {
		s.Declining = p.declining
	}
	p.mu.Unlock()
	slices.SortFunc(s.Recycles, func(a, b protocol.Recycle) int { return strings.Compare(a.Reason, b.Reason) })
	if p.iso != nil {
		s.Isolated = p.iso.usage()
	}
	s.Scale = p.scale.state()
	return s
}

// failOutside runs Laravel's failure rules for an orphaned job in the
// slot's worker w and returns the worker to keep (nil when it died too).
func (p *pool) failOutside(w *worker, o *orphan) *worker {
	out, alive := failIn(w, o, p.cfg.get().Timeout, p.hardStop)
	o.t.reply(out)
	if !alive {
		p.addReady(-1)
		return nil
	}
	return w
}

// failIn runs Laravel's failure rules for an orphaned job in worker w:
// failed when its attempts are used up (or failOnTimeout), otherwise
// released at once with its backoff. It reports whether w survived.
func failIn(w *worker, o *orphan, timeout time.Duration, hardStop <-chan struct{}) (protocol.Outcome, bool) {
	t := o.t
	r := w.do(request{Op: "fail", Queue: t.job.Queue, Kind: o.kind.String(), Reason: o.reason, Row: t.job.Row, SQS: t.job.SQS}, t.job.Payload,
		time.Now().Add(max(timeout, time.Minute)), hardStop, nil)
	if r.ok {
		out := outcomeOf(r.msg)
		out.ID, out.Duration, out.Failure, out.Result, out.Reason = t.job.ID, o.elapsed, o.kind, o.kind.String(), o.reason
		out.Output = o.output
		return out, true
	}
	return keepOrphan(o, r.exit), false
}

// keepOrphan is the outcome of an orphan whose failure handling could not
// run: Laravel's retry_after brings it back, and Laravel fails it then if
// it is over its attempts.
func keepOrphan(o *orphan, why string) protocol.Outcome {
	return protocol.Outcome{
		ID: o.t.job.ID, Kind: protocol.Keep, Failure: o.kind, Result: o.kind.String(), Duration: o.elapsed, Output: o.output,
		Reason: o.reason + "; Laravel's failure handling for it did not run (" + why + "), so it is retried after retry_after",
	}
}

// recycleReason says why a worker must be replaced after a job, or "".
func (p *pool) recycleReason(w *worker, rss int64, restart bool) string {
	cfg := p.cfg.get()
	switch {
	case restart:
		return "restart"
	case cfg.MaxJobs > 0 && int(w.jobs.Load()) >= cfg.MaxJobs:
		return "max_jobs"
	case cfg.MaxMemory > 0 && rss > cfg.MaxMemory:
		return "max_memory"
	case cfg.MaxLifetime > 0 && time.Since(w.booted) > cfg.MaxLifetime:
		return "max_lifetime"
	}
	return ""
}

// outcomeOf maps worker.php's answer to the poller's outcome.
func outcomeOf(m message) protocol.Outcome {
	o := protocol.Outcome{Failed: m.Failed, Reason: m.Error, Tags: m.Tags}
	switch {
	case m.Released:
		o.Kind, o.Result = protocol.Release, "released"
		o.ReleaseAt = time.Now().Unix()
		if m.ReleaseAt != nil {
			o.ReleaseAt = *m.ReleaseAt
		}
	case m.Deleted:
		o.Kind, o.Result = protocol.Delete, protocol.Done
		if m.Failed {
			o.Result = "failed"
		}
	default:
		o.Kind, o.Result = protocol.Keep, "kept"
	}
	return o
}
