package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
	"github.com/kqueue/kqueue/poller"
	redis "github.com/redis/go-redis/v9"
)

// TestReserveMatchesLaravel puts the same entries in two queues — ready
// jobs, a due delayed job, a not-yet-due one and an expired reservation —
// then pops one queue with Laravel's own RedisQueue::pop and the other with
// kqueue's reserve script, and finds the same jobs, byte for byte, and the
// same Redis state.
func TestReserveMatchesLaravel(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	ctx := context.Background()
	rdb := r.Client

	app.Artisan(t, "kq:dispatch", "mix", "--queue=seed")
	seed := keysFor(testenv.Prefix, "seed")
	entries := rdb.LRange(ctx, seed.queue, 0, -1).Val()
	if len(entries) < 10 {
		t.Fatalf("only %d seed entries", len(entries))
	}
	now := time.Now().Unix()
	for _, name := range []string{"laravel", "kqueue"} {
		k := keysFor(testenv.Prefix, name)
		for _, e := range entries[:6] {
			rdb.RPush(ctx, k.queue, e)
			rdb.RPush(ctx, k.notify, 1)
		}
		rdb.ZAdd(ctx, k.delayed, redis.Z{Score: float64(now - 1), Member: entries[6]})
		rdb.ZAdd(ctx, k.delayed, redis.Z{Score: float64(now + 3600), Member: entries[7]})
		rdb.ZAdd(ctx, k.reserved, redis.Z{Score: float64(now - 10), Member: strings.Replace(entries[8], `"attempts":0`, `"attempts":1`, 1)})
	}

	// Laravel pops one job per call (and migrates first, every time).
	var want [][2]string
	for _, line := range strings.Split(strings.TrimSpace(app.Artisan(t, "kq:pop", "laravel", "--times=9")), "\n") {
		if line == "null" {
			continue
		}
		var pair [2]string
		if err := json.Unmarshal([]byte(line), &pair); err != nil {
			t.Fatalf("kq:pop printed %q: %v", line, err)
		}
		want = append(want, pair)
	}

	s := New(Config{Client: rdb, Prefix: testenv.Prefix, Queues: []string{"kqueue"}})
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	// kqueue pops several per round trip.
	var got [][2]string
	for {
		at := time.Now()
		r, err := s.Reserve(ctx, nil, 0, 4, at, at.Add(90*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range r.Jobs {
			got = append(got, [2]string{j.Payload, j.Handle})
		}
		if r.Taken < 4 {
			break
		}
	}

	if len(want) != 8 {
		t.Fatalf("Laravel popped %d jobs, want 8 (6 ready, 1 due, 1 expired)", len(want))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("popped jobs differ\nLaravel: %q\nkqueue:  %q", want, got)
	}
	lk, kk := keysFor(testenv.Prefix, "laravel"), keysFor(testenv.Prefix, "kqueue")
	// Until PHP runs them, kqueue's reservations are the jobs as they were;
	// charged (all of them here), they are Laravel's reserved copies.
	var originals, charge []any
	for _, g := range got {
		originals = append(originals, g[0])
		charge = append(charge, g[0], g[1])
	}
	if n := rdb.ZMScore(ctx, kk.reserved, toStrings(originals)...).Val(); slices.Contains(n, 0) {
		t.Errorf("reserved before the charge: some originals missing (scores %v)", n)
	}
	if n, err := chargeScript.Run(ctx, rdb, []string{kk.reserved}, charge...).Int(); err != nil || n != len(got) {
		t.Fatalf("charged %d, %v; want %d", n, err, len(got))
	}
	for _, c := range []struct {
		what     string
		lar, kqu any
	}{
		{"ready", rdb.LRange(ctx, lk.queue, 0, -1).Val(), rdb.LRange(ctx, kk.queue, 0, -1).Val()},
		{"notify", rdb.LLen(ctx, lk.notify).Val(), rdb.LLen(ctx, kk.notify).Val()},
		{"delayed", rdb.ZRangeWithScores(ctx, lk.delayed, 0, -1).Val(), rdb.ZRangeWithScores(ctx, kk.delayed, 0, -1).Val()},
		{"reserved", rdb.ZRange(ctx, lk.reserved, 0, -1).Val(), rdb.ZRange(ctx, kk.reserved, 0, -1).Val()},
	} {
		if fmt.Sprint(c.lar) != fmt.Sprint(c.kqu) {
			t.Errorf("%s differs\nLaravel: %v\nkqueue:  %v", c.what, c.lar, c.kqu)
		}
	}
	// Both reserve for retry_after (90 s): the scores agree within the
	// seconds between the two pops.
	for _, z := range rdb.ZRangeWithScores(ctx, kk.reserved, 0, -1).Val() {
		lz := rdb.ZScore(ctx, lk.reserved, z.Member.(string)).Val()
		if d := z.Score - lz; d < 0 || d > 30 {
			t.Errorf("reservation expiry %v vs Laravel's %v", z.Score, lz)
		}
	}
}

// toStrings converts a list of strings held as any.
func toStrings(xs []any) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = x.(string)
	}
	return out
}

// TestReleaseScript: a release moves the reserved copy, unchanged, to the
// delayed set — whichever form the reservation had — and a release of a
// reservation that is gone adds nothing.
func TestReleaseScript(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	ctx := context.Background()
	k := keysFor("p_", "q")
	copy, orig := `{"uuid":"u","attempts":1}`, `{"uuid":"u","attempts":0}`
	r.Client.ZAdd(ctx, k.reserved, redis.Z{Score: 100, Member: orig}) // its charge never reached Redis
	for i, want := range []int64{1, 0} {
		n, err := releaseScript.Run(ctx, r.Client, []string{k.delayed, k.reserved}, copy, orig, 1234).Int64()
		if err != nil || n != want {
			t.Fatalf("release %d = %d, %v; want %d", i, n, err, want)
		}
	}
	if got := r.Client.ZRangeWithScores(ctx, k.delayed, 0, -1).Val(); len(got) != 1 || got[0].Member != copy || got[0].Score != 1234 {
		t.Errorf("delayed = %v", got)
	}
	if n := r.Client.ZCard(ctx, k.reserved).Val(); n != 0 {
		t.Errorf("reserved still holds %d", n)
	}
}

// Acknowledgements of two queues, deletes with a release between them,
// flushed in one round trip: every delete leaves its reserved set, the
// release goes to its delayed set, nothing else moves.
func TestAcksAcrossQueues(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	ctx := context.Background()
	r.Push("p_", "a", 3)
	r.Push("p_", "b", 2)
	s := New(Config{Client: r.Client, Prefix: "p_", Queues: []string{"a", "b"}})
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	var jobs []poller.Job
	for q := range 2 {
		at := time.Now()
		got, err := s.Reserve(ctx, nil, q, 10, at, at.Add(90*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, got.Jobs...)
	}
	if len(jobs) != 5 {
		t.Fatalf("reserved %d jobs, want 5", len(jobs))
	}
	// a, a, release a, a, b, b
	var acks []poller.Ack
	for i, j := range jobs {
		a := poller.Ack{Kind: poller.AckDelete, Job: j}
		if i == 1 {
			a.Kind, a.ReleaseAt = poller.AckRelease, time.Unix(4102444800, 0)
		}
		acks = append(acks, a)
	}
	if err := s.Ack(ctx, acks); err != nil {
		t.Fatal(err)
	}
	a, b := keysFor("p_", "a"), keysFor("p_", "b")
	for _, k := range []keys{a, b} {
		if n := r.Client.ZCard(ctx, k.reserved).Val(); n != 0 {
			t.Errorf("%s holds %d", k.reserved, n)
		}
	}
	if got := r.Client.ZRange(ctx, a.delayed, 0, -1).Val(); len(got) != 1 || got[0] != jobs[1].Handle {
		t.Errorf("%s = %q, want the released job", a.delayed, got)
	}
	if n := r.Client.ZCard(ctx, b.delayed).Val(); n != 0 {
		t.Errorf("%s holds %d", b.delayed, n)
	}
}

// BenchmarkReserveAck is the poller's Redis side per job: reserve 64 jobs in
// one round trip, then acknowledge them riding along with the next one.
func BenchmarkReserveAck(b *testing.B) {
	r := testenv.StartRedis(b)
	ctx := context.Background()
	s := New(Config{Client: r.Client, Prefix: "p_", Queues: []string{"default"}})
	if err := s.Open(ctx); err != nil {
		b.Fatal(err)
	}
	const batch = 64
	var acks []poller.Ack
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		r.Push("p_", "default", batch)
		b.StartTimer()
		at := time.Now()
		got, err := s.Reserve(ctx, acks, 0, batch, at, at.Add(90*time.Second))
		if err != nil || got.Acked != nil || len(got.Jobs) != batch {
			b.Fatalf("reserved %d: %v, %v", len(got.Jobs), err, got.Acked)
		}
		acks = acks[:0]
		for _, j := range got.Jobs {
			acks = append(acks, poller.Ack{Kind: poller.AckDelete, Job: j})
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/job")
}

// BenchmarkRecord is the job history's cost per run on the Go side and in
// Redis: 256 records of a no-op job's fields and payload in one round trip.
func BenchmarkRecord(b *testing.B) {
	r := testenv.StartRedis(b)
	ctx := context.Background()
	s := New(Config{Client: r.Client, Prefix: "p_", Queues: []string{"default"}})
	const batch = 256
	recs := make([]poller.Record, batch)
	payload := `{"uuid":"0b6f3e0e-7d0a-4a8e-9d9b-4f5e6a7b8c9d","displayName":"App\\Jobs\\Noop","job":"Illuminate\\Queue\\CallQueuedHandler@call",` +
		`"maxTries":null,"data":{"commandName":"App\\Jobs\\Noop","command":"` + strings.Repeat("x", 400) + `"},"id":"abcdefgh","attempts":0}`
	for i := range recs {
		recs[i] = poller.Record{UUID: "0b6f3e0e-7d0a-4a8e-9d9b-4f5e6a7b8c9d", Name: `App\Jobs\Noop`, Queue: "default", Host: "host",
			Instance: "default", Attempt: 1, Outcome: "done", Ended: time.Now(), Duration: 70 * time.Microsecond,
			Memory: 20 << 20, CPU: 60 * time.Microsecond, Strategy: "inline", Payload: payload}
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Record(ctx, recs, 20000); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/record")
}
