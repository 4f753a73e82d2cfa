package redis

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
	"github.com/kqueue/kqueue/poller"
	goredis "github.com/redis/go-redis/v9"
)

// A record comes back from the history as it went in, whatever bytes its
// parts hold; entries of the earlier forms (one run each: packed, and
// before that one field per part) read as they did; an entry that is not
// kqueue's reads as its ID, and so do the runs of a batch from the first
// that does not unpack.
func TestHistoryReadsEveryForm(t *testing.T) {
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
	// Entries of the earlier forms, and ones that are not kqueue's.
	key := s.historyKey()
	if err := r.Client.XAdd(ctx, &goredis.XAddArgs{Stream: key, Values: []any{"r", string(packRecord(nil, recs[1])), "p", recs[1].Payload}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Client.XAdd(ctx, &goredis.XAddArgs{Stream: key, Values: []any{"u", "old-1", "n", `App\Jobs\Old`, "q", "default",
		"a", "2", "o", "released", "t", ended.UnixMilli(), "d", "1500", "g", "x\ny", "p", "{}"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Client.XAdd(ctx, &goredis.XAddArgs{Stream: key, Values: []any{"r", "7:short", "p", "{}"}}).Err(); err != nil {
		t.Fatal(err)
	}
	broken := string(appendPart(packRecord(nil, recs[2]), "")) + "9:cut"
	if err := r.Client.XAdd(ctx, &goredis.XAddArgs{Stream: key, Values: []any{"b", broken}}).Err(); err != nil {
		t.Fatal(err)
	}

	got, err := s.Records(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 8 {
		t.Fatalf("read %d records, want 8", len(got))
	}
	for i, want := range append(recs[:3:3], recs[1]) {
		g := got[i]
		if g.ID == "" {
			t.Errorf("record %d has no ID", i)
		}
		g.ID = ""
		if !reflect.DeepEqual(g, want) {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, g, want)
		}
	}
	if !strings.HasSuffix(got[0].ID, ".2") || !strings.HasSuffix(got[2].ID, ".0") || strings.Contains(got[3].ID, ".") {
		t.Errorf("IDs %s %s %s: want a batch's runs told apart by how many follow them, an entry of one run by its own", got[0].ID, got[2].ID, got[3].ID)
	}
	old := got[4]
	if old.UUID != "old-1" || old.Name != `App\Jobs\Old` || old.Attempt != 2 || old.Outcome != "released" ||
		!old.Ended.Equal(ended) || old.Duration != 1500*time.Microsecond || !reflect.DeepEqual(old.Tags, []string{"x", "y"}) || old.Payload != "{}" {
		t.Errorf("an entry of the earlier form read as %+v", old)
	}
	if bad := got[5]; bad.ID == "" || bad.Outcome != "unreadable" || bad.UUID != "" {
		t.Errorf("an entry that is not kqueue's read as %+v", bad)
	}
	if g := got[6]; g.Outcome != "done" || g.Payload != "" || !strings.HasSuffix(g.ID, ".1") {
		t.Errorf("a batch's first run, before one cut short, read as %+v", g)
	}
	if bad := got[7]; bad.Outcome != "unreadable" || !strings.HasSuffix(bad.ID, ".0") {
		t.Errorf("a batch's run cut short read as %+v", bad)
	}
	newest, err := s.RecordsBefore(ctx, "", 1)
	if err != nil || len(newest) != 1 || newest[0].ID != got[7].ID {
		t.Errorf("RecordsBefore: %+v, %v", newest, err)
	}
}

// The history is trimmed to about keep runs (once a batch, whole nodes of
// the stream at a time) and never below them: by MINID, or on a server
// that refuses it (before Redis 6.2) by MAXLEN. A store that has not
// written keep runs yet (a daemon just started) trims to keep entries.
func TestHistoryKeepsAboutKeep(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	ctx := context.Background()
	batch := func(n int) []poller.Record {
		recs := make([]poller.Record, n)
		for i := range recs {
			recs[i] = poller.Record{UUID: "u", Outcome: "done", Ended: time.Now(), Payload: strings.Repeat("x", 100)}
		}
		return recs
	}
	held := func(s *Store) int {
		runs, err := s.Records(ctx, "", 10000)
		if err != nil {
			t.Fatal(err)
		}
		return len(runs)
	}
	for _, refuse := range []bool{false, true} {
		client := goredis.NewClient(&goredis.Options{Network: "unix", Addr: r.Socket})
		defer client.Close()
		if refuse {
			client.AddHook(refuseMinID)
		}
		s := New(Config{Client: client, Prefix: fmt.Sprintf("p%v_", refuse), Queues: []string{"default"}})
		total := 0
		for _, n := range []int{100, 1, 30, 100, 100, 1, 1, 1, 7, 100, 100, 3, 100, 100} {
			if err := s.Record(ctx, batch(n), 150); err != nil {
				t.Fatal(err)
			}
			// Kept: 150 at least (all there were, before), and up to
			// the last two batches more (the trim an XADD does is the
			// window before it) and a node of the stream.
			total += n
			if h := held(s); h < min(total, 150) || h > 400 {
				t.Fatalf("refuse MINID %v: after %d runs the history holds %d, want about 150", refuse, total, h)
			}
		}
		if s.history.noMinID != refuse {
			t.Errorf("refuse MINID %v: noMinID %v", refuse, s.history.noMinID)
		}
	}

	// A store that starts on a long history trims it to keep entries.
	old := New(Config{Client: r.Client, Prefix: "restart_", Queues: []string{"default"}})
	for range 300 {
		if err := old.Record(ctx, batch(1), 1000); err != nil {
			t.Fatal(err)
		}
	}
	restarted := New(Config{Client: r.Client, Prefix: "restart_", Queues: []string{"default"}})
	if err := restarted.Record(ctx, batch(1), 100); err != nil {
		t.Fatal(err)
	}
	if h := held(restarted); h < 100 || h > 250 {
		t.Errorf("a store just started left %d runs, want about 100", h)
	}
}

// Reading on from a run near an end of an entry, or past entries of a
// few runs, the history reads about as many entries as hold the runs
// asked for, not the most one read may take.
func TestHistoryReadsWhatItNeeds(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	ctx := context.Background()
	client := goredis.NewClient(&goredis.Options{Network: "unix", Addr: r.Socket})
	defer client.Close()
	// The stream entries XRANGE and XREVRANGE return.
	var counted atomic.Int64
	client.AddHook(hook(func(ctx context.Context, cmd goredis.Cmder, next goredis.ProcessHook) error {
		err := next(ctx, cmd)
		if c, ok := cmd.(*goredis.XMessageSliceCmd); ok {
			counted.Add(int64(len(c.Val())))
		}
		return err
	}))
	s := New(Config{Client: client, Prefix: "p_", Queues: []string{"default"}})
	for i := range 150 {
		n := 100
		if i < 50 {
			n = 1 // a quiet spell first
		}
		recs := make([]poller.Record, n)
		for j := range recs {
			recs[j] = poller.Record{UUID: "u", Outcome: "done", Ended: time.Now()}
		}
		if err := s.Record(ctx, recs, 100000); err != nil {
			t.Fatal(err)
		}
	}
	newest, err := s.RecordsBefore(ctx, "", 99)
	if err != nil || len(newest) != 99 {
		t.Fatalf("RecordsBefore: %d runs, %v", len(newest), err)
	}
	for _, c := range []struct {
		name    string
		read    func() ([]poller.Record, error)
		n, most int // runs asked for; entries it may read
	}{
		// 11 entries hold them; reading one entry, then twice as many
		// as read so far at most, it reads 1 + 1 + 1 + 2 + …
		{"before the newest entry's second run", func() ([]poller.Record, error) { return s.RecordsBefore(ctx, newest[98].ID, 1000) }, 1000, 25},
		// 53 hold them; after 27 entries of one run it may ask for 54.
		{"from the start, 50 entries of one run first", func() ([]poller.Record, error) { return s.Records(ctx, "", 300) }, 300, 90},
	} {
		counted.Store(0)
		runs, err := c.read()
		if err != nil || len(runs) != c.n {
			t.Fatalf("%s: %d runs, %v", c.name, len(runs), err)
		}
		if got := counted.Load(); got > int64(c.most) {
			t.Errorf("%s: read %d entries for %d runs", c.name, got, c.n)
		}
	}
}

// refuseMinID answers an XADD with MINID as a server before Redis 6.2 does.
var refuseMinID = hook(func(ctx context.Context, cmd goredis.Cmder, next goredis.ProcessHook) error {
	if args := cmd.Args(); len(args) > 2 && args[0] == "XADD" && args[2] == "MINID" {
		cmd.SetErr(serverError("ERR Invalid stream ID specified as stream command argument"))
		return cmd.Err()
	}
	return next(ctx, cmd)
})

// hook is a go-redis hook that runs each command through a function.
type hook func(ctx context.Context, cmd goredis.Cmder, next goredis.ProcessHook) error

func (hook) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (hook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return next
}

func (h hook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error { return h(ctx, cmd, next) }
}

// serverError is an error as Redis replies it.
type serverError string

func (e serverError) Error() string { return string(e) }
func (serverError) RedisError()     {}

// Runs are read n at a time, forwards and back, from anywhere: a page may
// end in the middle of an entry, and the next goes on from there.
func TestHistoryPagesThroughEntries(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	ctx := context.Background()
	s := New(Config{Client: r.Client, Prefix: "p_", Queues: []string{"default"}})
	var want []string
	run := func() poller.Record {
		want = append(want, strconv.Itoa(len(want)))
		return poller.Record{UUID: want[len(want)-1], Outcome: "done", Ended: time.Now()}
	}
	for _, n := range []int{1, 5, 3, 0, 40, 2, 0, 1, 17} {
		if n == 0 {
			// An entry of the earlier form, one run.
			if err := r.Client.XAdd(ctx, &goredis.XAddArgs{Stream: s.historyKey(), Values: []any{"r", string(packRecord(nil, run())), "p", ""}}).Err(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		recs := make([]poller.Record, n)
		for i := range recs {
			recs[i] = run()
		}
		if err := s.Record(ctx, recs, 1000); err != nil {
			t.Fatal(err)
		}
	}
	// pages reads every run, n at a time, through read; its UUIDs.
	pages := func(what string, n int, read func(cursor string, n int) ([]poller.Record, error)) []string {
		var got []string
		for cursor := ""; ; {
			recs, err := read(cursor, n)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) > n || len(recs) < n && len(got)+len(recs) != len(want) {
				t.Fatalf("n=%d: %s %q read %d runs", n, what, cursor, len(recs))
			}
			for _, rec := range recs {
				got = append(got, rec.UUID)
			}
			if len(recs) < n {
				return got
			}
			cursor = recs[len(recs)-1].ID
		}
	}
	for _, n := range []int{1, 2, 3, 7, 16, 100} {
		fwd := pages("Records after", n, func(c string, n int) ([]poller.Record, error) { return s.Records(ctx, c, n) })
		back := pages("RecordsBefore", n, func(c string, n int) ([]poller.Record, error) { return s.RecordsBefore(ctx, c, n) })
		slices.Reverse(back)
		if !slices.Equal(fwd, want) || !slices.Equal(back, want) {
			t.Errorf("n=%d: forwards %v, back %v; want %v", n, fwd, back, want)
		}
	}
}
