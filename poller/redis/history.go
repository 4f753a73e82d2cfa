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
	out := make([]poller.Record, 0, len(entries))
	for _, e := range entries {
		var r poller.Record
		if v, ok := e.Values["r"].(string); ok && json.Unmarshal([]byte(v), &r) == nil {
			r.ID = e.ID
			out = append(out, r)
		}
	}
	return out, nil
}

// nextID is the stream entry ID right after id ("ms-seq"): XRANGE's start
// past id, on servers before 6.2 too (no exclusive ranges there).
func nextID(id string) string {
	ms, seq, _ := strings.Cut(id, "-")
	n, _ := strconv.ParseUint(seq, 10, 64)
	return ms + "-" + strconv.FormatUint(n+1, 10)
}
