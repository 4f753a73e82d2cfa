package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kqueue/kqueue/poller"
)

// Overview is the overview page's data (and /api/overview's).
type Overview struct {
	Queues     []QueueRow        `json:"queues"`
	QueueError string            `json:"queue_error,omitempty"`
	Instances  []poller.Instance `json:"instances"`
	// Rate is the jobs settled per second by every instance over the last
	// minute (as far back as this console has watched).
	Rate     float64 `json:"rate"`
	Pausable bool    `json:"pausable"` // the app's Laravel has queue:pause
	// PauseError says why the pauses are unknown.
	PauseError string `json:"pause_error,omitempty"`
}

// QueueRow is one queue: its jobs in the store, and those running on
// every instance.
type QueueRow struct {
	poller.QueueDepth
	Running int  `json:"running"`
	Paused  bool `json:"paused"`
	// OldestWait is how long the oldest ready job has waited since its
	// push, when its payload says (Laravel 11 and later); 0 otherwise.
	OldestWait time.Duration `json:"oldest_wait,omitempty"`
	// From the tallies: runs in the last minute and hour, failures and
	// quantiles of runtime and wait over the hour.
	LastMinute float64 `json:"last_minute"`
	LastHour   int64   `json:"last_hour"`
	FailedHour int64   `json:"failed_hour"`
	Runtime50  string  `json:"runtime_p50"`
	Runtime95  string  `json:"runtime_p95"`
	Wait50     string  `json:"wait_p50"`
	Wait95     string  `json:"wait_p95"`
}

// pausedQueues is the app's answer to "paused".
type pausedQueues struct {
	Paused   []string `json:"paused"`
	Pausable bool     `json:"pausable"`
}

// pausedEvery is how long the console trusts its last reading of the
// app's pauses: reading them boots the app.
const pausedEvery = 15 * time.Second

func (s *Server) overview(r *http.Request) (any, error) {
	ctx := r.Context()
	o := &Overview{}
	depths, err := s.cfg.Store.Depths(ctx)
	if err != nil {
		o.QueueError = err.Error()
	}
	ins, err := s.instances(ctx)
	if err != nil && o.QueueError == "" {
		o.QueueError = err.Error()
	}
	o.Instances = ins
	running := map[string]int{}
	var settled uint64
	for _, in := range ins {
		for _, j := range in.Running {
			running[j.Queue]++
		}
		settled += in.Stats.Done + in.Stats.Failed + in.Stats.Released
	}
	o.Rate = s.rate(time.Now(), settled)
	p, perr := s.pausedQueues(ctx, depths)
	o.Pausable = p.Pausable
	if perr != nil {
		o.PauseError = perr.Error()
	}
	now := time.Now()
	minute, err := s.lastMinute(ctx, now)
	var hour map[[2]string]*numbers
	if err == nil {
		hour, err = s.metricsOf(ctx, windows[0], now)
	}
	if err != nil && o.QueueError == "" {
		o.QueueError = err.Error()
	}
	var oldest map[string]time.Time
	if ol, ok := s.cfg.Store.(oldestReader); ok {
		oldest, _ = ol.Oldest(ctx)
	}
	for _, d := range depths {
		row := QueueRow{QueueDepth: d, Running: running[d.Name], Paused: slices.Contains(p.Paused, d.Name), LastMinute: minute[d.Name]}
		if at, ok := oldest[d.Name]; ok && d.Ready > 0 {
			row.OldestWait = max(now.Sub(at), 0)
		}
		n := hour[[2]string{d.Name, ""}]
		if n == nil {
			n = &numbers{}
		}
		row.LastHour, row.FailedHour = n.Runs, n.Failed
		row.Runtime50, row.Runtime95 = durationAt(n.Runtime, .5), durationAt(n.Runtime, .95)
		row.Wait50, row.Wait95 = durationAt(n.Wait, .5), durationAt(n.Wait, .95)
		o.Queues = append(o.Queues, row)
	}
	return o, nil
}

// oldestReader is a store that can say when each queue's oldest ready
// job was pushed (the Redis store, from Laravel 11's createdAt).
type oldestReader interface {
	Oldest(ctx context.Context) (map[string]time.Time, error)
}

// instances reads the instances' published state, sorted by ID.
func (s *Server) instances(ctx context.Context) ([]poller.Instance, error) {
	if s.cfg.Roster == nil {
		return nil, nil
	}
	ins, err := s.cfg.Roster.Instances(ctx, time.Now())
	sort.Slice(ins, func(i, j int) bool { return ins[i].ID < ins[j].ID })
	return ins, err
}

// rate notes the instances' settled total at now and returns the jobs
// settled per second since the oldest sample of the last minute. An
// instance restarting (its counters back to 0) starts the samples over.
func (s *Server) rate(now time.Time, settled uint64) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.samples); n > 0 && s.samples[n-1].settled > settled {
		s.samples = nil
	}
	s.samples = append(s.samples, sample{now, settled})
	i := 0
	for i < len(s.samples)-1 && now.Sub(s.samples[i].at) > time.Minute {
		i++
	}
	s.samples = s.samples[i:]
	first := s.samples[0]
	if d := now.Sub(first.at); d >= time.Second {
		return float64(settled-first.settled) / d.Seconds()
	}
	return 0
}

// pausedQueues reads which of the queues the app has paused, at most
// every pausedEvery.
func (s *Server) pausedQueues(ctx context.Context, depths []poller.QueueDepth) (pausedQueues, error) {
	s.mu.Lock()
	c := s.paused
	s.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < pausedEvery {
		return c.v, c.err
	}
	var names []string
	for _, d := range depths {
		names = append(names, d.Name)
	}
	v, err, _ := s.reads.Do("paused", func() (any, error) {
		var p pausedQueues
		err := s.ask(context.WithoutCancel(ctx), map[string]any{"op": "paused", "connection": s.cfg.Connection, "queues": names}, &p)
		s.mu.Lock()
		s.paused = cached[pausedQueues]{time.Now(), p, err}
		s.mu.Unlock()
		return p, err
	})
	return v.(pausedQueues), err
}

// Running is the running page's data: every instance's running jobs.
type Running struct {
	Jobs  []RunningRow
	Error string
}

// RunningRow is one running job and where it runs.
type RunningRow struct {
	Host, Instance string
	poller.RunningJob
}

func (s *Server) running(r *http.Request) (any, error) {
	ins, err := s.instances(r.Context())
	var out Running
	for _, in := range ins {
		for _, j := range in.Running {
			// Its age as of now, not as of the instance's last publication.
			j.Age += time.Since(in.At)
			out.Jobs = append(out.Jobs, RunningRow{Host: in.Host, Instance: in.Instance, RunningJob: j})
		}
	}
	sort.Slice(out.Jobs, func(i, j int) bool { return out.Jobs[i].Age > out.Jobs[j].Age })
	return out, err
}

// failedJob is one of Laravel's failed jobs, as its failer keeps it.
type failedJob struct {
	ID         string `json:"id"`
	UUID       string `json:"uuid"`
	Connection string `json:"connection"`
	Queue      string `json:"queue"`
	Name       string `json:"name"`
	Exception  string `json:"exception"`
	FailedAt   string `json:"failed_at"`
	Payload    string `json:"payload"`
}

// failedEvery is how long the console keeps the failed jobs it read.
const failedEvery = 3 * time.Second

// failedJobs reads the app's failed jobs, newest first, at most every
// failedEvery (fresh after an action).
func (s *Server) failedJobs(ctx context.Context, fresh bool) ([]failedJob, error) {
	s.mu.Lock()
	c := s.failed
	s.mu.Unlock()
	if !fresh && !c.at.IsZero() && time.Since(c.at) < failedEvery {
		return c.v, c.err
	}
	// One read at a time, shared by the pages that wait for it, and not
	// cut short when the page that asked goes away: it boots the app.
	v, err, _ := s.reads.Do("failed", func() (any, error) {
		var answer struct {
			Failed []failedJob `json:"failed"`
		}
		err := s.ask(context.WithoutCancel(ctx), map[string]any{"op": "failed"}, &answer)
		s.mu.Lock()
		s.failed = cached[[]failedJob]{time.Now(), answer.Failed, err}
		s.mu.Unlock()
		return answer.Failed, err
	})
	return v.([]failedJob), err
}

// Failed is the failed jobs' page data.
type Failed struct {
	Query  string
	Jobs   []failedJob // those matching Query, the page's
	Total  int         // failed jobs in all
	Match  int         // those matching Query
	Groups []Group     // the matching ones by exception
}

// Group is the failed jobs with one exception message.
type Group struct {
	Exception string
	Count     int
}

// failedShown is how many matching failed jobs a page lists.
const failedShown = 200

func (s *Server) failedList(r *http.Request) (any, error) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	jobs, err := s.failedJobs(r.Context(), false)
	out := Failed{Query: q, Total: len(jobs)}
	count := map[string]int{}
	for _, j := range matching(jobs, q) {
		out.Match++
		if len(out.Jobs) < failedShown {
			out.Jobs = append(out.Jobs, j)
		}
		count[firstLine(j.Exception)]++
	}
	for e, n := range count {
		out.Groups = append(out.Groups, Group{e, n})
	}
	sort.Slice(out.Groups, func(i, j int) bool {
		a, b := out.Groups[i], out.Groups[j]
		return a.Count > b.Count || a.Count == b.Count && a.Exception < b.Exception
	})
	return out, err
}

// matching are the jobs where every word of q appears (any case) in the
// class, queue, ids, exception or payload (its tags among it).
func matching(jobs []failedJob, q string) []failedJob {
	words := strings.Fields(strings.ToLower(q))
	if len(words) == 0 {
		return jobs
	}
	var out []failedJob
	for _, j := range jobs {
		hay := strings.ToLower(strings.Join([]string{j.Name, j.Queue, j.ID, j.UUID, j.Exception, j.Payload}, "\n"))
		if !slices.ContainsFunc(words, func(w string) bool { return !strings.Contains(hay, w) }) {
			out = append(out, j)
		}
	}
	return out
}

// FailedJob is one failed job's page.
type FailedJob struct {
	failedJob
	Payload string // indented, an encrypted command hidden
	Tags    []string
}

func (s *Server) failedJob(r *http.Request) (any, error) {
	jobs, err := s.failedJobs(r.Context(), false)
	if err != nil {
		return nil, err
	}
	id := r.PathValue("id")
	for _, j := range jobs {
		if j.ID == id {
			out := FailedJob{failedJob: j}
			out.Payload, out.Tags = shownPayload(j.Payload)
			return out, nil
		}
	}
	return nil, errNotFound
}

// shownPayload is a payload indented for reading, with an encrypted
// command (ShouldBeEncrypted) shown as hidden, and its tags.
func shownPayload(raw string) (string, []string) {
	var p map[string]any
	if json.Unmarshal([]byte(raw), &p) != nil {
		// Cut short (the history keeps a payload's first bytes): shown as
		// it is, up to a command that is not PHP's serialized form.
		const cmd = `"command":"`
		if i := strings.Index(raw, cmd); i >= 0 && !strings.HasPrefix(raw[i+len(cmd):], "O:") {
			return raw[:i+len(cmd)] + `(encrypted: hidden)"`, nil
		}
		return raw, nil
	}
	if data, ok := p["data"].(map[string]any); ok {
		if cmd, ok := data["command"].(string); ok && !strings.HasPrefix(cmd, "O:") {
			data["command"] = "(encrypted: hidden)"
		}
	}
	var tags []string
	if ts, ok := p["tags"].([]any); ok {
		for _, t := range ts {
			tags = append(tags, fmt.Sprint(t))
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	enc.Encode(p)
	return b.String(), tags
}

// pause pauses or resumes a queue with Laravel's own pause keys, so that
// queue:work honours them too.
func (s *Server) pause(r *http.Request, who Who) (string, error) {
	queue := r.PathValue("queue")
	op := "pause"
	if strings.HasSuffix(r.URL.Path, "/resume") {
		op = "resume"
	}
	err := s.ask(r.Context(), map[string]any{"op": op, "connection": s.cfg.Connection, "queue": queue}, nil)
	s.mu.Lock()
	s.paused = cached[pausedQueues]{} // read again
	s.mu.Unlock()
	s.record(op, who, err, "queue", queue)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("queue %s: %sd", queue, op), nil
}

// restart is queue:restart: every worker of the app, kqueue's and
// queue:work's, ends after its current job.
func (s *Server) restart(r *http.Request, who Who) (string, error) {
	var answer struct{ Output string }
	err := s.ask(r.Context(), map[string]any{"op": "restart"}, &answer)
	s.record("restart", who, err)
	return answer.Output, err
}

// retry is queue:retry: of the ids given, or of every failed job matching
// the form's q when all is set.
func (s *Server) retry(r *http.Request, who Who) (string, error) {
	return s.onFailed(r, who, "retry")
}

// forget is queue:forget, of the ids given.
func (s *Server) forget(r *http.Request, who Who) (string, error) {
	return s.onFailed(r, who, "forget")
}

func (s *Server) onFailed(r *http.Request, who Who, op string) (string, error) {
	r.ParseForm()
	ids := r.PostForm["id"]
	if r.PostFormValue("all") != "" {
		jobs, err := s.failedJobs(r.Context(), true)
		if err != nil {
			return "", err
		}
		ids = nil
		for _, j := range matching(jobs, r.PostFormValue("q")) {
			ids = append(ids, j.ID)
		}
	}
	if len(ids) == 0 {
		return "", fmt.Errorf("no failed job selected")
	}
	var answer struct{ Output string }
	err := s.ask(r.Context(), map[string]any{"op": op, "ids": ids}, &answer)
	s.mu.Lock()
	s.failed = cached[[]failedJob]{} // read again
	s.mu.Unlock()
	s.record(op, who, err, "jobs", len(ids), "ids", strings.Join(ids, ","))
	if err != nil {
		return "", err
	}
	verb := map[string]string{"retry": "pushed back onto their queues", "forget": "forgotten"}[op]
	return fmt.Sprintf("%d failed jobs %s", len(ids), verb), nil
}

// record writes an operator's action to the log (the journal, under
// systemd), with who did it.
func (s *Server) record(action string, who Who, err error, attrs ...any) {
	attrs = append([]any{"action", action, "user", who.Name, "role", string(who.Role)}, attrs...)
	if err != nil {
		s.log.Error("console action failed", append(attrs, "error", err)...)
		return
	}
	s.log.Info("console action", attrs...)
}
