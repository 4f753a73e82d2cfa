package redis

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/kqueue/kqueue/poller"
	goredis "github.com/redis/go-redis/v9"
)

// historyKey is the STREAM of recent job runs, one entry per run (a
// poller.Record), its fields named by one letter (historyFields), those
// that are empty left out. Plain fields, not one JSON value: nothing to
// escape on the way in, and Redis stores the names once for the entries
// that have the same ones. Trimmed to about the number kept as it grows;
// one key, so one Redis Cluster slot.
func (s *Store) historyKey() string { return s.prefix + "kqueue:jobs" }

// A record's fields in its stream entry. Times are Unix milliseconds,
// durations microseconds, tags joined by a line feed.
//
//	u uuid  n name  q queue  h host  i instance  a attempt  o outcome
//	f failed ("1")  e reason  t ended  d duration  w wait  m memory
//	c cpu  s strategy  g tags  x output  p payload

// Record appends records to the history, in one round trip. The commands'
// arguments share arrays, and those that are the same in every command
// are boxed once: a run's record costs a few allocations, not dozens.
func (s *Store) Record(ctx context.Context, recs []poller.Record, keep int) error {
	if len(recs) == 0 {
		return nil
	}
	pipe := s.rdb.Pipeline()
	var key, maxLen any = s.historyKey(), strconv.Itoa(keep)
	const most = 6 + 2*historyFields // one command's arguments
	var args []any
	for _, r := range recs {
		if cap(args)-len(args) < most {
			// Arrays of 32 commands: small objects, not one large one
			// per batch that the runtime would hand back to the OS.
			args = make([]any, 0, 32*most)
		}
		start := len(args)
		args = append(args, "XADD", key, "MAXLEN", "~", maxLen, "*")
		add := func(k, x string) {
			if x != "" {
				args = append(args, k, x)
			}
		}
		num := func(k string, n int64) {
			if n != 0 {
				args = append(args, k, n)
			}
		}
		add("u", r.UUID)
		add("n", r.Name)
		add("q", r.Queue)
		add("h", r.Host)
		add("i", r.Instance)
		num("a", int64(r.Attempt))
		add("o", r.Outcome)
		if r.Failed {
			args = append(args, "f", "1")
		}
		add("e", r.Reason)
		num("t", r.Ended.UnixMilli())
		num("d", r.Duration.Microseconds())
		num("w", r.Wait.Microseconds())
		num("m", int64(r.Memory))
		num("c", r.CPU.Microseconds())
		add("s", r.Strategy)
		add("g", strings.Join(r.Tags, "\n"))
		add("x", r.Output)
		add("p", r.Payload)
		pipe.Do(ctx, args[start:len(args):len(args)]...)
	}
	_, err := pipe.Exec(ctx)
	return s.classify(err)
}

// historyFields counts a record's fields (see historyKey).
const historyFields = 18

// Records reads up to n records after the entry after, oldest first.
func (s *Store) Records(ctx context.Context, after string, n int) ([]poller.Record, error) {
	start := "-"
	if after != "" {
		start = nextID(after)
	}
	entries, err := s.rdb.XRangeN(ctx, s.historyKey(), start, "+", int64(n)).Result()
	if err != nil {
		return nil, s.classify(err)
	}
	return records(entries), nil
}

// RecordsBefore reads up to n records before the entry before, newest
// first.
func (s *Store) RecordsBefore(ctx context.Context, before string, n int) ([]poller.Record, error) {
	end := "+"
	if before != "" {
		end = prevID(before)
		if end == "" {
			return nil, nil // before is the first ID there can be
		}
	}
	entries, err := s.rdb.XRevRangeN(ctx, s.historyKey(), end, "-", int64(n)).Result()
	if err != nil {
		return nil, s.classify(err)
	}
	return records(entries), nil
}

// records decodes stream entries.
func records(entries []goredis.XMessage) []poller.Record {
	out := make([]poller.Record, 0, len(entries))
	for _, e := range entries {
		str := func(k string) string {
			x, _ := e.Values[k].(string)
			return x
		}
		num := func(k string) int64 {
			n, _ := strconv.ParseInt(str(k), 10, 64)
			return n
		}
		r := poller.Record{
			ID: e.ID, UUID: str("u"), Name: str("n"), Queue: str("q"), Host: str("h"), Instance: str("i"),
			Attempt: int(num("a")), Outcome: str("o"), Failed: str("f") == "1", Reason: str("e"),
			Ended: time.UnixMilli(num("t")), Duration: time.Duration(num("d")) * time.Microsecond,
			Wait: time.Duration(num("w")) * time.Microsecond, Memory: uint64(num("m")),
			CPU: time.Duration(num("c")) * time.Microsecond, Strategy: str("s"), Output: str("x"), Payload: str("p"),
		}
		if g := str("g"); g != "" {
			r.Tags = strings.Split(g, "\n")
		}
		out = append(out, r)
	}
	return out
}

// nextID is the stream entry ID right after id ("ms-seq"): XRANGE's start
// past id, on servers before 6.2 too (no exclusive ranges there).
func nextID(id string) string {
	ms, seq, _ := strings.Cut(id, "-")
	n, _ := strconv.ParseUint(seq, 10, 64)
	return ms + "-" + strconv.FormatUint(n+1, 10)
}

// prevID is the stream entry ID right before id, or "" if there is none.
func prevID(id string) string {
	ms, seq, _ := strings.Cut(id, "-")
	n, _ := strconv.ParseUint(seq, 10, 64)
	if n > 0 {
		return ms + "-" + strconv.FormatUint(n-1, 10)
	}
	m, _ := strconv.ParseUint(ms, 10, 64)
	if m == 0 {
		return ""
	}
	return strconv.FormatUint(m-1, 10) + "-18446744073709551615"
}
