package redis

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
	"github.com/kqueue/kqueue/poller"
	goredis "github.com/redis/go-redis/v9"
)

// A record comes back from the history as it went in, whatever bytes its
// parts hold; entries written one field per part (before the records were
// packed) read as they did; an entry that is not kqueue's reads as its ID.
func TestHistoryReadsBothForms(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	ctx := context.Background()
	s := New(Config{Client: r.Client, Prefix: "p_", Queues: []string{"default"}})
	ended := time.UnixMilli(time.Now().UnixMilli())
	recs := []poller.Record{
		{UUID: "0b6f3e0e", Name: `App\Jobs\Noop`, Queue: "default", Host: "host", Instance: "default",
			Attempt: 1, Outcome: "done", Ended: ended, Duration: 70 * time.Microsecond, Memory: 20 << 20,
			CPU: 60 * time.Microsecond, Strategy: "inline", Payload: `{"uuid":"0b6f3e0e"}`},
		{UUID: "12:34", Name: "a:b\tc\n3:xyz", Queue: "{eu}:mail", Host: "h", Instance: "i:2", Attempt: 3,
			Outcome: "failed", Failed: true, Reason: "RuntimeException: 5:bad\r\nline two", Ended: ended,
			Duration: 3 * time.Second, Wait: 1500 * time.Millisecond, Strategy: "isolated", Tags: []string{"a", "b:c", "ü"},
			Output: strings.Repeat("out: 9:", 100), Payload: "{}"},
		{Outcome: "done", Ended: ended}, // nothing else known, no payload
	}
	if err := s.Record(ctx, recs, 100); err != nil {
		t.Fatal(err)
	}
	// An entry of the earlier form, and one that is not kqueue's.
	key := s.historyKey()
	if err := r.Client.XAdd(ctx, &goredis.XAddArgs{Stream: key, Values: []any{"u", "old-1", "n", `App\Jobs\Old`, "q", "default",
		"a", "2", "o", "released", "t", ended.UnixMilli(), "d", "1500", "g", "x\ny", "p", "{}"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Client.XAdd(ctx, &goredis.XAddArgs{Stream: key, Values: []any{"r", "7:short", "p", "{}"}}).Err(); err != nil {
		t.Fatal(err)
	}

	got, err := s.Records(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("read %d records, want 5", len(got))
	}
	for i, want := range recs {
		g := got[i]
		if g.ID == "" {
			t.Errorf("record %d has no ID", i)
		}
		g.ID = ""
		if !reflect.DeepEqual(g, want) {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, g, want)
		}
	}
	old := got[3]
	if old.UUID != "old-1" || old.Name != `App\Jobs\Old` || old.Attempt != 2 || old.Outcome != "released" ||
		!old.Ended.Equal(ended) || old.Duration != 1500*time.Microsecond || !reflect.DeepEqual(old.Tags, []string{"x", "y"}) || old.Payload != "{}" {
		t.Errorf("an entry of the earlier form read as %+v", old)
	}
	if bad := got[4]; bad.ID == "" || bad.Outcome != "unreadable" || bad.UUID != "" {
		t.Errorf("an entry that is not kqueue's read as %+v", bad)
	}
	newest, err := s.RecordsBefore(ctx, "", 1)
	if err != nil || len(newest) != 1 || newest[0].ID != got[4].ID {
		t.Errorf("RecordsBefore: %+v, %v", newest, err)
	}
}

// The history is trimmed to about keep runs (once a batch, whole nodes of
// the stream at a time).
func TestHistoryKeepsAboutKeep(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	ctx := context.Background()
	s := New(Config{Client: r.Client, Prefix: "p_", Queues: []string{"default"}})
	recs := make([]poller.Record, 100)
	for i := range recs {
		recs[i] = poller.Record{UUID: "u", Outcome: "done", Ended: time.Now()}
	}
	for range 10 {
		if err := s.Record(ctx, recs, 50); err != nil {
			t.Fatal(err)
		}
	}
	// Kept: 50, and up to a node of the stream (100 entries) and a batch
	// more; untrimmed it would be 1,000.
	if n := r.Client.XLen(ctx, s.historyKey()).Val(); n < 50 || n > 250 {
		t.Errorf("the history holds %d runs, want about 50", n)
	}
}
