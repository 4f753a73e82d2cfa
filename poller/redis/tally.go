package redis

import (
	"context"
	"strconv"
	"time"

	"github.com/kqueue/kqueue/poller"
	goredis "github.com/redis/go-redis/v9"
)

// tallyKey is the HASH of one bucket's counts (poller.Tally): field →
// count, expiring after poller.TallyKeep of its span. Its span and start
// are in its name: "m" and the Unix minute, or "h" and the Unix hour.
func (s *Store) tallyKey(span time.Duration, start time.Time) string {
	if span == time.Hour {
		return s.prefix + "kqueue:tally:h:" + strconv.FormatInt(start.Unix()/3600, 10)
	}
	return s.prefix + "kqueue:tally:m:" + strconv.FormatInt(start.Unix()/60, 10)
}

// AddTallies adds counts with HINCRBY, in one round trip.
func (s *Store) AddTallies(ctx context.Context, ts []poller.Tally) error {
	pipe := s.rdb.Pipeline()
	for _, t := range ts {
		key := s.tallyKey(t.Span, t.Start)
		for f, n := range t.Counts {
			pipe.HIncrBy(ctx, key, f, n)
		}
		pipe.ExpireAt(ctx, key, t.Start.Add(t.Span+poller.TallyKeep[t.Span]))
	}
	_, err := pipe.Exec(ctx)
	return s.classify(err)
}

// ReadTallies reads the buckets of span from from to to, in one round trip.
func (s *Store) ReadTallies(ctx context.Context, span time.Duration, from, to time.Time) ([]poller.Tally, error) {
	pipe := s.rdb.Pipeline()
	var starts []time.Time
	var cmds []*goredis.MapStringStringCmd
	for t := from.Truncate(span); !t.After(to); t = t.Add(span) {
		starts = append(starts, t)
		cmds = append(cmds, pipe.HGetAll(ctx, s.tallyKey(span, t)))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, s.classify(err)
	}
	var out []poller.Tally
	for i, c := range cmds {
		if len(c.Val()) == 0 {
			continue
		}
		t := poller.Tally{Start: starts[i], Span: span, Counts: map[string]int64{}}
		for f, v := range c.Val() {
			n, _ := strconv.ParseInt(v, 10, 64)
			t.Counts[f] = n
		}
		out = append(out, t)
	}
	return out, nil
}
