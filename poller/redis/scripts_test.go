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
// kqueue's reserve script, and finds the same jobs, byte for byte, and —
// once kqueue has charged them — the same Redis state: its reservations
// are Laravel's reserved copies, byte for byte.
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
	var got []string
	for {
		at := time.Now()
		r, err := s.Reserve(ctx, nil, 0, 4, at, at.Add(90*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range r.Jobs {
			got = append(got, j.Payload)
		}
		if r.Taken < 4 {
			break
		}
	}

	if len(want) != 8 {
		t.Fatalf("Laravel popped %d jobs, want 8 (6 ready, 1 due, 1 expired)", len(want))
	}
	var popped []string
	for _, w := range want {
		popped = append(popped, w[0])
	}
	if fmt.Sprint(got) != fmt.Sprint(popped) {
		t.Errorf("popped jobs differ\nLaravel: %q\nkqueue:  %q", popped, got)
	}
	lk, kk := keysFor(testenv.Prefix, "laravel"), keysFor(testenv.Prefix, "kqueue")
	// Until PHP runs them, kqueue's reservations are the jobs as they were;
	// charged (all of them here), they are Laravel's reserved copies.
	var originals []any
	for _, g := range got {
		originals = append(originals, g)
	}
	if n := rdb.ZMScore(ctx, kk.reserved, got...).Val(); slices.Contains(n, 0) {
		t.Errorf("reserved before the charge: some originals missing (scores %v)", n)
	}
	if n, err := chargeScript.Run(ctx, rdb, []string{kk.reserved}, originals...).Int(); err != nil || n != len(got) {
		t.Fatalf("charged %d, %v; want %d", n, err, len(got))
	}
	for _, c := range []struct {
		what     string
		lar, kqu any
	}{
		{"ready", rdb.LRange(ctx, lk.queue, 0, -1).Val(), rdb.LRange(ctx, kk.queue, 0, -1).Val()},
		{"notify", rdb.LLen(ctx, lk.notify).Val(), rdb.LLen(ctx, kk.notify).Val()},
		{"delayed", rdb.ZRangeWithScores(ctx, lk.delayed, 0, -1).Val(), rdb.ZRangeWithScores(ctx, kk.delayed, 0, -1).Val()},
		// The same members; their order is by score, which differs when
		// Laravel's pops, one a call, span a second boundary.
		{"reserved", slices.Sorted(slices.Values(rdb.ZRange(ctx, lk.reserved, 0, -1).Val())), slices.Sorted(slices.Values(rdb.ZRange(ctx, kk.reserved, 0, -1).Val()))},
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

// TestReleaseScript: a release moves the job's charged copy to the
// delayed set — whichever form the reservation had — and a release of a
// reservation that is gone adds nothing.
func TestReleaseScript(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	ctx := context.Background()
	k := keysFor("p_", "q")
	orig := `{"uuid":"u","attempts":0}`
	// Its charged copy, as Redis makes it.
	r.Client.ZAdd(ctx, "scratch", redis.Z{Score: 1, Member: orig})
	if err := chargeScript.Run(ctx, r.Client, []string{"scratch"}, orig).Err(); err != nil {
		t.Fatal(err)
	}
	copy := r.Client.ZRange(ctx, "scratch", 0, -1).Val()[0]
	if copy == orig || !strings.Contains(copy, `"attempts":1`) {
		t.Fatalf("charged copy %s", copy)
	}
	for _, reserved := range []string{orig, copy} { // its charge never reached Redis; it did
		r.Client.Del(ctx, k.delayed)
		r.Client.ZAdd(ctx, k.reserved, redis.Z{Score: 100, Member: reserved})
		for i, want := range []int64{1, 0} {
			n, err := releaseScript.Run(ctx, r.Client, []string{k.delayed, k.reserved}, orig, 1234).Int64()
			if err != nil || n != want {
				t.Fatalf("release %d of %s = %d, %v; want %d", i, reserved, n, err, want)
			}
		}
		if got := r.Client.ZRangeWithScores(ctx, k.delayed, 0, -1).Val(); len(got) != 1 || got[0].Member != copy || got[0].Score != 1234 {
			t.Errorf("reserved %s: delayed = %v", reserved, got)
		}
		if n := r.Client.ZCard(ctx, k.reserved).Val(); n != 0 {
			t.Errorf("reserved still holds %d", n)
		}
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
	// Released, it is its copy with the attempt counted (cjson's encoding).
	got := r.Client.ZRange(ctx, a.delayed, 0, -1).Val()
	var released struct {
		UUID     string
		Attempts int
	}
	if len(got) == 1 {
		json.Unmarshal([]byte(got[0]), &released)
	}
	if len(got) != 1 || released.UUID != "a-1" || released.Attempts != 1 {
		t.Errorf("%s = %q, want the released job (a-1), its attempt counted", a.delayed, got)
	}
	if n := r.Client.ZCard(ctx, b.delayed).Val(); n != 0 {
		t.Errorf("%s holds %d", b.delayed, n)
	}
}

// TestAcksFindEitherForm: a reservation is its original until the job is
// charged, then its charged copy; Extend, delete and give-back find it in
// either form.
func TestAcksFindEitherForm(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	ctx := context.Background()
	s := New(Config{Client: r.Client, Prefix: "p_", Queues: []string{"q"}})
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	k := keysFor("p_", "q")
	for _, charge := range []bool{false, true} {
		for _, end := range []poller.AckKind{poller.AckDelete, poller.AckGiveBack} {
			r.Client.FlushDB(ctx)
			r.Push("p_", "q", 1)
			at := time.Now()
			got, err := s.Reserve(ctx, nil, 0, 1, at, at.Add(90*time.Second))
			if err != nil || len(got.Jobs) != 1 {
				t.Fatalf("reserve: %v, %v", got, err)
			}
			j := got.Jobs[0]
			if charge {
				if err := s.Ack(ctx, []poller.Ack{{Kind: poller.AckCharge, Job: j}}); err != nil {
					t.Fatal(err)
				}
				if r.Client.ZScore(ctx, k.reserved, j.Payload).Err() == nil {
					t.Fatalf("charged: the original is still reserved")
				}
			}
			until := at.Add(time.Hour).Unix()
			if err := s.Extend(ctx, []poller.Lease{{Job: j, Until: time.Unix(until, 0)}}); err != nil {
				t.Fatal(err)
			}
			if z := r.Client.ZRangeWithScores(ctx, k.reserved, 0, -1).Val(); len(z) != 1 || int64(z[0].Score) != until {
				t.Errorf("charged %v: after Extend, reserved = %v, want one reservation until %d", charge, z, until)
			}
			if err := s.Ack(ctx, []poller.Ack{{Kind: end, Job: j, Charged: charge}}); err != nil {
				t.Fatal(err)
			}
			if n := r.Client.ZCard(ctx, k.reserved).Val(); n != 0 {
				t.Errorf("charged %v, %v: reserved still holds %d", charge, end, n)
			}
			ready := r.Client.LRange(ctx, k.queue, 0, -1).Val()
			if want := end == poller.AckGiveBack; (len(ready) == 1 && ready[0] == j.Payload) != want || len(ready) > 1 {
				t.Errorf("charged %v, %v: ready = %q", charge, end, ready)
			}
		}
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
