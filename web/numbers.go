package web

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/kqueue/kqueue/poller"
)

// numbers are the counts of one queue's class (or of a whole queue) over
// a window, from the store's tallies.
type numbers struct {
	Runs, Failed, Released int64
	Runtime, Wait          []int64 // by poller.DurationBuckets
	Memory                 []int64 // by poller.MemoryBuckets
}

func (n *numbers) add(stat string, bucket int, v int64) {
	grow := func(h []int64, size int) []int64 {
		if h == nil {
			h = make([]int64, size)
		}
		return h
	}
	switch stat {
	case poller.StatRuns:
		n.Runs += v
	case poller.StatFailed:
		n.Failed += v
	case poller.StatReleased:
		n.Released += v
	case poller.StatRuntime:
		n.Runtime = grow(n.Runtime, len(poller.DurationBuckets)+1)
		if bucket >= 0 && bucket < len(n.Runtime) {
			n.Runtime[bucket] += v
		}
	case poller.StatWait:
		n.Wait = grow(n.Wait, len(poller.DurationBuckets)+1)
		if bucket >= 0 && bucket < len(n.Wait) {
			n.Wait[bucket] += v
		}
	case poller.StatMemory:
		n.Memory = grow(n.Memory, len(poller.MemoryBuckets)+1)
		if bucket >= 0 && bucket < len(n.Memory) {
			n.Memory[bucket] += v
		}
	}
}

// quantile is the bucket index below which q of the counts in h fall, or
// -1 for none.
func quantile(h []int64, q float64) int {
	var total int64
	for _, c := range h {
		total += c
	}
	if total == 0 {
		return -1
	}
	need := int64(q*float64(total) + 0.5)
	var seen int64
	for i, c := range h {
		if seen += c; seen >= max(need, 1) {
			return i
		}
	}
	return len(h) - 1
}

// durationAt says a quantile of a duration histogram: "≤ 50ms".
func durationAt(h []int64, q float64) string {
	i := quantile(h, q)
	switch {
	case i < 0:
		return "–"
	case i >= len(poller.DurationBuckets):
		return "> " + poller.DurationBuckets[len(poller.DurationBuckets)-1].String()
	}
	return "≤ " + poller.DurationBuckets[i].String()
}

// memoryAt says a quantile of the memory histogram: "≤ 64 MiB".
func memoryAt(h []int64, q float64) string {
	i := quantile(h, q)
	switch {
	case i < 0:
		return "–"
	case i >= len(poller.MemoryBuckets):
		return fmt.Sprintf("> %d MiB", poller.MemoryBuckets[len(poller.MemoryBuckets)-1]>>20)
	}
	return fmt.Sprintf("≤ %d MiB", poller.MemoryBuckets[i]>>20)
}

// window is a span of time the numbers cover, and the buckets it reads.
type window struct {
	Name string
	Span time.Duration // of its buckets
	Back time.Duration
}

var windows = []window{{"1 h", time.Minute, time.Hour}, {"24 h", time.Hour, 24 * time.Hour}, {"7 d", time.Hour, 7 * 24 * time.Hour}}

// tallied reads the numbers of a window, by queue and class ("" class:
// the queue's total).
func (s *Server) tallied(ctx context.Context, w window, now time.Time) (map[[2]string]*numbers, error) {
	if s.cfg.Tallies == nil {
		return nil, nil
	}
	ts, err := s.cfg.Tallies.ReadTallies(ctx, w.Span, now.Add(-w.Back), now)
	if err != nil {
		return nil, err
	}
	out := map[[2]string]*numbers{}
	for _, t := range ts {
		for f, v := range t.Counts {
			q, class, stat, b, ok := poller.ParseTallyField(f)
			if !ok {
				continue
			}
			for _, k := range [][2]string{{q, class}, {q, ""}} {
				if out[k] == nil {
					out[k] = &numbers{}
				}
				out[k].add(stat, b, v)
			}
		}
	}
	return out, nil
}

// lastMinute is each queue's runs over the last 60 s: the current
// minute's bucket and the part of the one before still in range.
func (s *Server) lastMinute(ctx context.Context, now time.Time) (map[string]float64, error) {
	if s.cfg.Tallies == nil {
		return nil, nil
	}
	cur := now.Truncate(time.Minute)
	ts, err := s.cfg.Tallies.ReadTallies(ctx, time.Minute, cur.Add(-time.Minute), cur)
	if err != nil {
		return nil, err
	}
	frac := now.Sub(cur).Seconds() / 60
	out := map[string]float64{}
	for _, t := range ts {
		weight := 1.0
		if t.Start.Before(cur) {
			weight = 1 - frac
		}
		for f, v := range t.Counts {
			if q, _, stat, _, ok := poller.ParseTallyField(f); ok && stat == poller.StatRuns {
				out[q] += weight * float64(v)
			}
		}
	}
	return out, nil
}

// Metrics is the metrics page's data: per class, each window's numbers.
type Metrics struct {
	Windows []string
	Classes []ClassMetrics
	Window  string // the one shown in full
	// KeptPerClass says what the tallies cost in the store.
	KeptPerClass string
}

// ClassMetrics is one queue's class in one window.
type ClassMetrics struct {
	Queue, Class                 string
	Runs                         int64
	PerMinute                    float64
	FailureRate                  float64 // 0–1
	P50, P95, P99, Wait95, Mem95 string
	Runtime                      []Bar
}

// Bar is one bucket of a histogram, drawn as a bar of Width percent.
type Bar struct {
	Label string
	Count int64
	Width int
}

// metricsCache keeps the metrics page's numbers a few seconds: a week is
// 168 hashes to read.
type metricsCache struct {
	mu  sync.Mutex
	at  map[string]time.Time
	got map[string]map[[2]string]*numbers
}

func (s *Server) metrics(r *http.Request) (any, error) {
	now := time.Now()
	name := r.URL.Query().Get("window")
	w := windows[0]
	for _, x := range windows {
		if x.Name == name {
			w = x
		}
	}
	out := Metrics{Window: w.Name, KeptPerClass: "about 100 KB per class and queue: a count, a failure count and a few histogram buckets for each minute of the last 2 hours and each hour of the last 8 days"}
	for _, x := range windows {
		out.Windows = append(out.Windows, x.Name)
	}
	if s.cfg.Tallies == nil {
		return out, errNoTallies
	}
	nums, err := s.metricsOf(r.Context(), w, now)
	if err != nil {
		return out, err
	}
	for k, n := range nums {
		if k[1] == "" {
			continue
		}
		c := ClassMetrics{Queue: k[0], Class: k[1], Runs: n.Runs, PerMinute: float64(n.Runs) / w.Back.Minutes(),
			P50: durationAt(n.Runtime, .5), P95: durationAt(n.Runtime, .95), P99: durationAt(n.Runtime, .99),
			Wait95: durationAt(n.Wait, .95), Mem95: memoryAt(n.Memory, .95)}
		if n.Runs > 0 {
			c.FailureRate = float64(n.Failed) / float64(n.Runs)
		}
		var most int64
		for _, v := range n.Runtime {
			most = max(most, v)
		}
		for i, v := range n.Runtime {
			if v == 0 {
				continue
			}
			label := "> " + poller.DurationBuckets[len(poller.DurationBuckets)-1].String()
			if i < len(poller.DurationBuckets) {
				label = "≤ " + poller.DurationBuckets[i].String()
			}
			c.Runtime = append(c.Runtime, Bar{label, v, int(100 * v / most)})
		}
		out.Classes = append(out.Classes, c)
	}
	sort.Slice(out.Classes, func(i, j int) bool {
		a, b := out.Classes[i], out.Classes[j]
		return a.Runs > b.Runs || a.Runs == b.Runs && a.Class < b.Class
	})
	return out, nil
}

// metricsOf reads a window's numbers, kept for metricsFresh.
func (s *Server) metricsOf(ctx context.Context, w window, now time.Time) (map[[2]string]*numbers, error) {
	const metricsFresh = 5 * time.Second
	c := &s.metricsCache
	c.mu.Lock()
	defer c.mu.Unlock()
	if at, ok := c.at[w.Name]; ok && now.Sub(at) < metricsFresh {
		return c.got[w.Name], nil
	}
	nums, err := s.tallied(ctx, w, now)
	if err != nil {
		return nil, err
	}
	if c.at == nil {
		c.at, c.got = map[string]time.Time{}, map[string]map[[2]string]*numbers{}
	}
	c.at[w.Name], c.got[w.Name] = now, nums
	return nums, nil
}
