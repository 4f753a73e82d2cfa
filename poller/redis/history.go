package redis

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/kqueue/kqueue/poller"
	goredis "github.com/redis/go-redis/v9"
)

// historyKey is the STREAM of recent job runs, one entry per run with one
// field, "r": the record's JSON (poller.Record). Trimmed to about the
// number kept as it grows; one key, so one Redis Cluster slot.
func (s *Store) historyKey() string { return s.prefix + "kqueue:jobs" }

// Record appends records to the history, in one round trip.
func (s *Store) Record(ctx context.Context, recs []poller.Record, keep int) error {
	if len(recs) == 0 {
		return nil
	}
	pipe := s.rdb.Pipeline()
	for _, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		pipe.XAdd(ctx, &goredis.XAddArgs{Stream: s.historyKey(), MaxLen: int64(keep), Approx: true, Values: []any{"r", b}})
	}
	_, err := pipe.Exec(ctx)
	return s.classify(err)
}

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

// records decodes stream entries; one that is not a record is skipped.
func records(entries []goredis.XMessage) []poller.Record {
	out := make([]poller.Record, 0, len(entries))
	for _, e := range entries {
		var r poller.Record
		if v, ok := e.Values["r"].(string); ok && json.Unmarshal([]byte(v), &r) == nil {
			r.ID = e.ID
			out = append(out, r)
		}
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
