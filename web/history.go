package web

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kqueue/kqueue/poller"
)

// history is the console's copy of the store's job history, searched in
// memory: a page over 100,000 runs takes milliseconds, and the store does
// no more than hand over new entries. A console that starts reads the
// newest runs first, to answer at once, and the older ones behind them.
type history struct {
	store poller.History
	keep  int

	mu       sync.Mutex
	recs     []entry // oldest first
	last     string  // the store's ID of the newest
	readAt   time.Time
	loading  bool // older runs are still being read
	classes  map[string]int
	queues   map[string]int
	outcome  map[string]int
	stopLoad context.CancelFunc
}

// entry is a record with what a search looks through, lowercased.
type entry struct {
	poller.Record
	hay string
}

// historyFresh is how long the console serves its copy before asking the
// store for newer entries; historyFirst is how many runs a console that
// starts reads before its first answer, historyChunk how many each read
// takes after that.
const (
	historyFresh = time.Second
	historyFirst = 1000
	historyChunk = 10000
)

// refresh reads the entries written since the last read; the first time,
// the newest, then the rest in the background.
func (h *history) refresh(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if time.Since(h.readAt) < historyFresh {
		return nil
	}
	if h.readAt.IsZero() {
		recs, err := h.store.RecordsBefore(ctx, "", historyFirst)
		if err != nil {
			return err
		}
		slices.Reverse(recs)
		for _, r := range recs {
			h.add(r)
		}
		if len(recs) > 0 {
			h.last = recs[len(recs)-1].ID
		}
		h.readAt = time.Now()
		if len(recs) == historyFirst && h.keep > historyFirst {
			lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
			h.loading, h.stopLoad = true, cancel
			go h.loadOlder(lctx, recs[0].ID)
		}
		return nil
	}
	for {
		recs, err := h.store.Records(ctx, h.last, historyChunk)
		if err != nil {
			return err
		}
		for _, r := range recs {
			h.add(r)
		}
		if len(recs) > 0 {
			h.last = recs[len(recs)-1].ID
		}
		if len(recs) < historyChunk {
			break
		}
	}
	h.trim()
	h.readAt = time.Now()
	return nil
}

// loadOlder reads the runs before the entry first, newest first, into the
// copy, until the store has no more or the copy holds keep.
func (h *history) loadOlder(ctx context.Context, first string) {
	defer func() {
		h.mu.Lock()
		h.loading = false
		h.mu.Unlock()
	}()
	for {
		recs, err := h.store.RecordsBefore(ctx, first, historyChunk)
		if err != nil || len(recs) == 0 {
			return
		}
		first = recs[len(recs)-1].ID
		slices.Reverse(recs)
		older := make([]entry, 0, len(recs))
		for _, r := range recs {
			older = append(older, h.entry(r))
		}
		h.mu.Lock()
		for _, e := range older {
			h.count(e.Record, 1)
		}
		h.recs = append(older, h.recs...)
		full := len(h.recs) >= h.keep
		h.trim()
		h.mu.Unlock()
		if len(recs) < historyChunk || full {
			return
		}
	}
}

// trim drops the oldest runs beyond keep.
func (h *history) trim() {
	if over := len(h.recs) - h.keep; over > 0 {
		for _, e := range h.recs[:over] {
			h.count(e.Record, -1)
		}
		h.recs = slices.Clone(h.recs[over:])
	}
}

// close stops the reading of older runs.
func (h *history) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopLoad != nil {
		h.stopLoad()
	}
}

func (h *history) add(r poller.Record) {
	h.recs = append(h.recs, h.entry(r))
	h.count(r, 1)
}

// entry is r with what a search looks through.
func (h *history) entry(r poller.Record) entry {
	return entry{r, strings.ToLower(strings.Join(append([]string{r.Name, r.Queue, r.UUID, r.Outcome, r.Host, r.Instance, r.Reason}, r.Tags...), "\n"))}
}

func (h *history) count(r poller.Record, n int) {
	if h.classes == nil {
		h.classes, h.queues, h.outcome = map[string]int{}, map[string]int{}, map[string]int{}
	}
	for _, c := range []struct {
		m map[string]int
		k string
	}{{h.classes, r.Name}, {h.queues, r.Queue}, {h.outcome, r.Outcome}} {
		if c.m[c.k] += n; c.m[c.k] <= 0 {
			delete(c.m, c.k)
		}
	}
}

// Filter is what the Jobs page asks for.
type Filter struct {
	Query   string // words, each found in the class, queue, uuid, tags, outcome, host or error
	Class   string
	Queue   string
	Outcome string
	Tag     string
	Before  string // the ID of the last run of the page before: older ones
}

func (f Filter) match(e *entry, words []string) bool {
	switch {
	case f.Class != "" && e.Name != f.Class,
		f.Queue != "" && e.Queue != f.Queue,
		f.Outcome != "" && e.Outcome != f.Outcome,
		f.Tag != "" && !slices.Contains(e.Tags, f.Tag):
		return false
	}
	for _, w := range words {
		if !strings.Contains(e.hay, w) {
			return false
		}
	}
	return true
}

// Jobs is the Jobs page's data.
type Jobs struct {
	Filter
	Runs     []poller.Record
	Matched  int    // runs matching, in all
	Total    int    // runs kept
	Older    string // Before for the next page; "" at the end
	Classes  []string
	Queues   []string
	Outcomes []string
	Took     time.Duration // the search's time, shown: it must stay small
	Loading  bool          // older runs are still being read: not searched yet
}

// jobsPage is how many runs a page lists.
const jobsPage = 50

func (h *history) search(f Filter) Jobs {
	start := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	out := Jobs{Filter: f, Total: len(h.recs), Loading: h.loading, Classes: keys(h.classes), Queues: keys(h.queues), Outcomes: keys(h.outcome)}
	words := strings.Fields(strings.ToLower(f.Query))
	for i := len(h.recs) - 1; i >= 0; i-- {
		e := &h.recs[i]
		if !f.match(e, words) {
			continue
		}
		out.Matched++
		if f.Before != "" && !idBefore(e.ID, f.Before) {
			continue // on the pages before
		}
		if len(out.Runs) < jobsPage {
			out.Runs = append(out.Runs, e.Record)
		} else if out.Older == "" {
			out.Older = out.Runs[len(out.Runs)-1].ID
		}
	}
	out.Took = time.Since(start)
	return out
}

// runs are the runs of the job with this uuid, newest first.
func (h *history) runs(uuid string) []poller.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []poller.Record
	for i := len(h.recs) - 1; i >= 0; i-- {
		if h.recs[i].UUID == uuid {
			out = append(out, h.recs[i].Record)
		}
	}
	return out
}

func keys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (s *Server) jobs(r *http.Request) (any, error) {
	if s.history == nil {
		return Jobs{}, errNoHistory
	}
	err := s.history.refresh(r.Context())
	q := r.URL.Query()
	f := Filter{Query: strings.TrimSpace(q.Get("q")), Class: q.Get("class"), Queue: q.Get("queue"), Outcome: q.Get("outcome"), Tag: q.Get("tag"), Before: q.Get("before")}
	return s.history.search(f), err
}

// Run is a job's page in the history: its runs, newest first, and its
// payload as the last run had it.
type Run struct {
	UUID    string
	Name    string
	Runs    []poller.Record
	Payload string
	Tags    []string
}

func (s *Server) jobRuns(r *http.Request) (any, error) {
	if s.history == nil {
		return nil, errNoHistory
	}
	err := s.history.refresh(r.Context())
	runs := s.history.runs(r.PathValue("uuid"))
	if len(runs) == 0 {
		if err != nil {
			return nil, err
		}
		return nil, errNotFound
	}
	out := Run{UUID: runs[0].UUID, Name: runs[0].Name, Runs: runs}
	out.Payload, out.Tags = shownPayload(runs[0].Payload)
	if len(runs[0].Payload) >= poller.KeepPayload {
		out.Payload += "\n… (its first " + strconv.Itoa(poller.KeepPayload) + " bytes)"
	}
	return out, err
}

// OlderLink is the next page's address: the same search, older runs.
func (j Jobs) OlderLink() string {
	v := url.Values{}
	for k, x := range map[string]string{"q": j.Query, "class": j.Class, "queue": j.Queue, "outcome": j.Outcome, "tag": j.Tag, "before": j.Older} {
		if x != "" {
			v.Set(k, x)
		}
	}
	return "/jobs?" + v.Encode()
}

// idBefore reports whether the run with ID a comes before the one with ID
// b: the Redis store's IDs, its stream entry's ("ms-seq") and, for a run
// in an entry of several, how many runs follow it there (".k").
func idBefore(a, b string) bool {
	an, bn := idNumbers(a), idNumbers(b)
	if c := slices.Compare(an[:2], bn[:2]); c != 0 {
		return c < 0
	}
	return an[2] > bn[2]
}

// idNumbers is a run ID's numbers: ms, seq and the runs after it (0 when
// absent).
func idNumbers(id string) (n [3]uint64) {
	ms, rest, _ := strings.Cut(id, "-")
	seq, later, _ := strings.Cut(rest, ".")
	for i, x := range []string{ms, seq, later} {
		n[i], _ = strconv.ParseUint(x, 10, 64)
	}
	return n
}
