package exec

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kqueue/kqueue/cgroup"
	"github.com/kqueue/kqueue/protocol"
)

// isolator runs isolated jobs: each in a fresh PHP process inside its own
// cgroup, which joins the cgroup after Laravel booted and before the job's
// first instruction. At most MaxConcurrent run at once, apart from the warm
// pool.
type isolator struct {
	cfg      *settings
	iso      *Isolation // as started: its driver and concurrency stay
	script   string
	log      *slog.Logger
	hardStop <-chan struct{}
	sem      chan struct{}
	seq      atomic.Uint64
	wg       sync.WaitGroup
	forker   *forker // nil: a fresh process per job
	// firstDeath is the pool's: whether a job died before it began for
	// the first time (it then goes back as it was).
	firstDeath func(*task) bool
	token      string   // tells this dispatcher's groups from others'
	running    sync.Map // job ID → its cgroup.Group, while it runs
}

// usage is what each running isolated job's cgroup has used so far, for
// the console.
func (i *isolator) usage() []protocol.JobUsage {
	var out []protocol.JobUsage
	i.running.Range(func(id, g any) bool {
		if st, err := g.(cgroup.Group).Stats(); err == nil {
			out = append(out, protocol.JobUsage{ID: id.(uint64), PeakMemory: st.PeakMemory, CPU: st.CPU})
		}
		return true
	})
	return out
}

func newIsolator(cfg *settings, script string, log *slog.Logger, hardStop <-chan struct{}) *isolator {
	iso := cfg.get().Isolation
	return &isolator{
		cfg: cfg, iso: iso, script: script, log: log, hardStop: hardStop,
		sem:   make(chan struct{}, max(iso.MaxConcurrent, 1)),
		token: strconv.FormatUint(rand.Uint64()%(1<<32), 36),
	}
}

// submit runs t isolated, in the background.
func (i *isolator) submit(t *task, s Strategy) {
	i.wg.Add(1)
	go func() {
		defer i.wg.Done()
		// Waiting for a turn ends at a hard stop: the job never ran, and
		// nothing is forked or booted for it while kqueue stops.
		select {
		case i.sem <- struct{}{}:
		case <-i.hardStop:
			t.reply(notStarted(t))
			return
		}
		defer func() { <-i.sem }()
		t.reply(i.run(t, s))
	}()
}

// run runs one isolated job and returns its outcome.
// Its duration counts from here: the cgroup and the process are part of
// what isolation costs.
func (i *isolator) run(t *task, s Strategy) protocol.Outcome {
	begin := time.Now()
	// Unique on the host: two dispatchers may share an instance name.
	name := fmt.Sprintf("job-%s-%d", i.token, i.seq.Add(1))
	out := protocol.Outcome{ID: t.job.ID, Strategy: s.String()}
	fail := func(err error) protocol.Outcome {
		// kqueue could not start it inside its limits, so it never ran:
		// Laravel's rules decide (its tries and backoff; with unlimited
		// tries it fails rather than loop).
		i.log.Error("isolated job not run", append(t.fields(), "error", err)...)
		o := &orphan{t: t, kind: protocol.FailIsolation,
			reason: fmt.Sprintf("kqueue could not start %s inside its limits (%s): %v", t.name(), s.Limits, err)}
		// Failing it runs its failed() and writes failed_jobs in PHP: a
		// dispatcher lost from here on must not return it to its queue.
		if !t.hand(true) {
			return notStarted(t)
		}
		return i.applyFailure(o, out)
	}
	select {
	case <-i.hardStop:
		return notStarted(t)
	default:
	}
	g, err := i.iso.Driver.Create(name, s.Limits)
	if err != nil {
		return fail(err)
	}
	out.Scope = g.Path()
	defer func() {
		if err := g.Kill(); err != nil {
			i.log.Error("empty job cgroup", "scope", g.Path(), "error", err)
		}
		if err := g.Delete(); err != nil {
			i.log.Error("remove job cgroup", "scope", g.Path(), "error", err)
		}
	}()
	w, how, err := i.process()
	if err != nil {
		return fail(err)
	}
	if err := g.Add(w.pid); err != nil {
		w.kill()
		return fail(err)
	}
	w.group = g
	l := newJobLog(t, "strategy", out.Strategy, "scope", out.Scope)
	i.log.Debug("isolated job starting", append(l.fields(), "pid", w.pid, "why", s.Why, "process", how)...)
	w.current.Store(l)
	return i.runIn(w, g, t, s, out, begin)
}

// runIn runs t in w, a process already inside t's cgroup g, and returns
// its outcome; out is the outcome so far (its strategy and scope), begin
// when run began.
func (i *isolator) runIn(w *worker, g cgroup.Group, t *task, s Strategy, out protocol.Outcome, begin time.Time) protocol.Outcome {
	cfg := i.cfg.get()
	timeout := t.timeout(s, cfg.Timeout)
	if !t.hand(false) {
		w.kill()
		return notStarted(t) // the poller is gone: nothing more starts
	}
	how := protocol.Running{PID: uint64(w.pid), Timeout: timeout, Strategy: s.String()}
	i.running.Store(t.job.ID, g)
	r := w.do(request{Op: "run", Queue: t.job.Queue, Timeout: seconds(timeout), Row: t.job.Row, SQS: t.job.SQS}, t.job.Payload, deadline(time.Now(), timeout), i.hardStop, func() { t.begin(how) })
	i.running.Delete(t.job.ID)
	stats, err := g.Stats()
	if err != nil {
		i.log.Warn("read job cgroup", "scope", g.Path(), "error", err)
	}
	if r.ok && r.msg.Declined != "" {
		// PHP did not run it (maintenance, a paused queue, Looping): back
		// as it was.
		w.stop(cfg.StopGrace, "")
		out := declinedOutcome(t, r.msg)
		out.Strategy, out.Scope = s.String(), g.Path()
		return out
	}
	if !r.began {
		if !r.ok && (r.stopped || i.firstDeath == nil || i.firstDeath(t)) {
			// It died (or was stopped) before Laravel began it: it did not run.
			out := notStarted(t)
			out.Strategy, out.Scope = s.String(), g.Path()
			return out
		}
		// It went through Laravel's process() all the same, or died a
		// second time before it began: the job's own doing.
		t.begin(how)
	}
	if r.ok {
		w.stop(cfg.StopGrace, "")
		o := outcomeOf(r.msg)
		o.ID, o.Duration, o.Memory, o.Strategy, o.Scope = t.job.ID, time.Since(begin), stats.PeakMemory, out.Strategy, out.Scope
		o.CPU, o.Output = stats.CPU, w.current.Load().output()
		return o
	}
	if r.stopped {
		out.Kind, out.ReleaseAt, out.Result, out.Duration = protocol.Release, time.Now().Unix(), "interrupted", r.elapsed
		out.Reason = "kqueue was stopping and the job did not finish within the shutdown timeout"
		return out
	}
	o := &orphan{t: t, elapsed: r.elapsed, memory: stats.PeakMemory, cpu: stats.CPU, output: w.current.Load().output()}
	switch {
	case r.timedOut:
		o.kind = protocol.FailTimeout
		o.reason = fmt.Sprintf("%s has timed out: it ran longer than its timeout of %s, and kqueue killed its cgroup %s and every process in it",
			t.name(), timeout, g.Path())
	case stats.OOMKills > 0:
		o.kind = protocol.FailOOM
		o.reason = fmt.Sprintf("%s exceeded its memory limit (%s): the kernel killed it in cgroup %s (peak %s)",
			t.name(), cgroup.FormatBytes(s.Limits.Memory), g.Path(), cgroup.FormatBytes(int64(stats.PeakMemory)))
	default:
		o.kind = protocol.FailCrash
		o.reason = fmt.Sprintf("%s crashed its process (pid %d, %s): %s%s", t.name(), w.pid, s.Limits, r.exit, w.tail.suffix())
	}
	return i.applyFailure(o, out)
}

// applyFailure runs Laravel's failure rules for a job whose own process is
// gone, in a fresh process outside any job cgroup.
func (i *isolator) applyFailure(o *orphan, out protocol.Outcome) protocol.Outcome {
	cfg := i.cfg.get()
	fw, err := startWorker(context.Background(), cfg, i.script, i.log)
	if err != nil {
		return keepOrphan(o, err.Error())
	}
	res, alive := failIn(fw, o, cfg.Timeout, i.hardStop)
	if alive {
		fw.stop(cfg.StopGrace, "")
	}
	res.Memory, res.CPU, res.Strategy, res.Scope = o.memory, o.cpu, out.Strategy, out.Scope
	return res
}

// process is a booted PHP process for one job: forked from the template
// (fast), or else started fresh.
func (i *isolator) process() (*worker, string, error) {
	if i.forker != nil {
		w, err := i.forker.fork()
		if err == nil {
			return w, "fork", nil
		}
		i.log.Warn("fork path failed; starting a fresh process", "error", err)
	}
	w, err := startWorker(context.Background(), i.cfg.get(), i.script, i.log)
	return w, "fresh", err
}

// wait waits for every isolated job to end.
func (i *isolator) wait() { i.wg.Wait() }
