package database_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kqueue/kqueue/config"
	"github.com/kqueue/kqueue/internal/testenv"
	"github.com/kqueue/kqueue/poller"
	"github.com/kqueue/kqueue/poller/database"
)

// each runs f on each database the store reads, with a jobs table.
func each(t *testing.T, f func(t *testing.T, db *testenv.DB)) {
	for _, driver := range testenv.Backends() {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			db := testenv.StartDB(t, driver, "")
			db.CreateJobsTable(t)
			f(t, db)
		})
	}
}

// settings is the app's description of db, as appconfig.php gives it.
func settings(db *testenv.DB) *config.LaravelDatabase {
	c := &config.LaravelDatabase{Table: "jobs", Name: db.Driver, Driver: db.Driver, Database: db.Name, Username: &db.User}
	if db.Socket != "" {
		if db.Driver == "pgsql" {
			c.Host = &db.Socket
		} else {
			c.Socket = &db.Socket
		}
	}
	return c
}

func open(t *testing.T, db *testenv.DB, queues ...string) *database.Store {
	t.Helper()
	sqldb, d, err := database.Dial(context.Background(), settings(db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sqldb.Close() })
	var qs []database.Queue
	for _, q := range queues {
		qs = append(qs, database.Queue{Name: q, RetryAfter: 90 * time.Second})
	}
	s := database.New(database.Config{DB: sqldb, Dialect: d, Table: "jobs", Queues: qs})
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// row is a job's row as the test reads it.
type row struct {
	queue    string
	attempts int
	reserved bool
}

func rows(t *testing.T, db *testenv.DB) map[int64]row {
	t.Helper()
	rs, err := db.SQL.Query("SELECT id, queue, attempts, reserved_at FROM jobs")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	out := map[int64]row{}
	for rs.Next() {
		var id int64
		var r row
		var reserved *int64
		if err := rs.Scan(&id, &r.queue, &r.attempts, &reserved); err != nil {
			t.Fatal(err)
		}
		r.reserved = reserved != nil
		out[id] = r
	}
	return out
}

// A reserved row is marked reserved with its attempts as they were; its
// attempt is counted by the charge; a delete removes it; a release puts a
// new row in its place with the counted attempts, due when asked; a
// give-back of a job never charged leaves the row exactly as it was.
func TestSettleAsDatabaseQueue(t *testing.T) {
	each(t, func(t *testing.T, db *testenv.DB) {
		ctx := context.Background()
		s := open(t, db, "default")
		db.Push(t, "default", 4)
		now := time.Now()
		r, err := s.Reserve(ctx, nil, 0, 10, now, now.Add(90*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Jobs) != 4 || r.Taken != 4 {
			t.Fatalf("reserved %d jobs (taken %d), want 4", len(r.Jobs), r.Taken)
		}
		for id, got := range rows(t, db) {
			if !got.reserved || got.attempts != 0 {
				t.Errorf("row %d after reserve: %+v, want reserved with 0 attempts", id, got)
			}
		}
		del, rel, back, charged := r.Jobs[0], r.Jobs[1], r.Jobs[2], r.Jobs[3]
		err = s.Ack(ctx, []poller.Ack{
			{Kind: poller.AckCharge, Job: del}, {Kind: poller.AckCharge, Job: rel}, {Kind: poller.AckCharge, Job: charged},
			{Kind: poller.AckDelete, Job: del},
			{Kind: poller.AckRelease, Job: rel, ReleaseAt: now.Add(30 * time.Second)},
			{Kind: poller.AckGiveBack, Job: back},
		})
		if err != nil {
			t.Fatal(err)
		}
		got := rows(t, db)
		if _, ok := got[del.Row.ID]; ok {
			t.Errorf("deleted row %d is still there", del.Row.ID)
		}
		if _, ok := got[rel.Row.ID]; ok {
			t.Errorf("released row %d is still there (Laravel deletes and inserts)", rel.Row.ID)
		}
		if b := got[back.Row.ID]; b.reserved || b.attempts != 0 {
			t.Errorf("given-back row: %+v, want as it was (not reserved, 0 attempts)", b)
		}
		if c := got[charged.Row.ID]; !c.reserved || c.attempts != 1 {
			t.Errorf("charged row: %+v, want reserved with 1 attempt", c)
		}
		if len(got) != 3 {
			t.Fatalf("rows %v, want the given-back, the charged and the released one", got)
		}
		var released row
		for id, r := range got {
			if id != back.Row.ID && id != charged.Row.ID {
				released = r
			}
		}
		if released.reserved || released.attempts != 1 {
			t.Errorf("released row: %+v, want 1 attempt, not reserved", released)
		}
		d, err := s.Depths(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The head is the given-back job's row: the third pushed.
		if want := (poller.QueueDepth{Name: "default", Ready: 1, Delayed: 1, Reserved: 1, Head: 3}); d[0] != want {
			t.Errorf("depths %+v, want %+v", d[0], want)
		}
		// The released job is due in 30 s: a reserve now takes the given-back
		// one only and says when the next falls due.
		r, err = s.Reserve(ctx, nil, 0, 10, now, now.Add(90*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Jobs) != 1 || r.Jobs[0].Row.ID != back.Row.ID || r.Due.Unix() != now.Add(30*time.Second).Unix() {
			t.Errorf("second reserve: %d jobs, due %v; want the given-back one, due %v", len(r.Jobs), r.Due, now.Add(30*time.Second))
		}
	})
}

// A reservation lapses after retry_after, as Laravel's isReservedButExpired
// has it; an extension keeps it; a lapsed row taken by another worker is
// no longer this one's to charge or give back.
func TestLeases(t *testing.T) {
	each(t, func(t *testing.T, db *testenv.DB) {
		ctx := context.Background()
		a, b := open(t, db, "default"), open(t, db, "default")
		db.Push(t, "default", 2)
		t0 := time.Now()
		r, err := a.Reserve(ctx, nil, 0, 2, t0, t0.Add(90*time.Second))
		if err != nil || len(r.Jobs) != 2 {
			t.Fatalf("reserve: %d jobs, %v", len(r.Jobs), err)
		}
		kept, lapsed := r.Jobs[0], r.Jobs[1]
		t1 := t0.Add(60 * time.Second)
		if err := a.Extend(ctx, []poller.Lease{{Job: kept, Until: t1.Add(90 * time.Second)}}); err != nil {
			t.Fatal(err)
		}
		t2 := t0.Add(100 * time.Second) // past the first reservation, not the extended one
		got, err := b.Reserve(ctx, nil, 0, 2, t2, t2.Add(90*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Jobs) != 1 || got.Jobs[0].Row.ID != lapsed.Row.ID {
			t.Fatalf("another worker took %d jobs, want the lapsed one only", len(got.Jobs))
		}
		// a's charge and give-back of the lapsed row are no longer its own.
		if err := a.Ack(ctx, []poller.Ack{{Kind: poller.AckCharge, Job: lapsed}, {Kind: poller.AckGiveBack, Job: lapsed}}); err != nil {
			t.Fatal(err)
		}
		if r := rows(t, db)[lapsed.Row.ID]; !r.reserved || r.attempts != 0 {
			t.Errorf("the lapsed row, taken by another worker: %+v; want it left alone", r)
		}
	})
}

// Workers reserving at once never take the same row (SKIP LOCKED, or
// SQLite's write lock), and every row is taken.
func TestConcurrentReservesTakeEachRowOnce(t *testing.T) {
	each(t, func(t *testing.T, db *testenv.DB) {
		ctx := context.Background()
		const n = 400
		db.Push(t, "default", n)
		var mu sync.Mutex
		seen := map[int64]int{}
		var wg sync.WaitGroup
		for range 4 {
			s := open(t, db, "default")
			wg.Go(func() {
				for {
					now := time.Now()
					r, err := s.Reserve(ctx, nil, 0, 16, now, now.Add(90*time.Second))
					if err != nil {
						t.Error(err)
						return
					}
					if len(r.Jobs) == 0 {
						return
					}
					var acks []poller.Ack
					mu.Lock()
					for _, j := range r.Jobs {
						seen[j.Row.ID]++
						acks = append(acks, poller.Ack{Kind: poller.AckCharge, Job: j}, poller.Ack{Kind: poller.AckDelete, Job: j})
					}
					mu.Unlock()
					if err := s.Ack(ctx, acks); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if len(seen) != n {
			t.Errorf("%d rows taken, want %d", len(seen), n)
		}
		for id, k := range seen {
			if k != 1 {
				t.Errorf("row %d taken %d times", id, k)
			}
		}
		if left := db.Count(t, "SELECT COUNT(*) FROM jobs"); left != 0 {
			t.Errorf("%d rows left", left)
		}
	})
}

// Wait returns when a row is pushed after a reserve found the queue
// drained, and not before.
func TestWaitSeesAPush(t *testing.T) {
	each(t, func(t *testing.T, db *testenv.DB) {
		s := open(t, db, "default")
		db.Push(t, "default", 1)
		waitsForPushes(t, s, db, 1)
	})
}

// waitsForPushes drains the queue, checks that Wait times out with nothing
// pushed, then n times that it returns true once a job is pushed.
func waitsForPushes(t *testing.T, s *database.Store, db *testenv.DB, n int) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	if _, err := s.Reserve(ctx, nil, 0, 10, now, now.Add(90*time.Second)); err != nil {
		t.Fatal(err)
	}
	if woke, err := s.Wait(ctx, 100*time.Millisecond); err != nil || woke {
		t.Fatalf("Wait on a drained queue: %v, %v; want a timeout", woke, err)
	}
	for range n {
		done := make(chan bool, 1)
		go func() {
			woke, err := s.Wait(ctx, 20*time.Second)
			if err != nil {
				t.Error(err)
			}
			done <- woke
		}()
		db.Push(t, "default", 1)
		if !<-done {
			t.Fatal("Wait timed out after a push")
		}
	}
}

// A database that goes away is reported as unreachable (the poller keeps
// its acknowledgements and retries), and the store works again once it is
// back.
func TestUnreachable(t *testing.T) {
	for _, driver := range []string{"mysql", "pgsql"} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			db := testenv.StartDB(t, driver, "")
			db.CreateJobsTable(t)
			ctx := context.Background()
			s := open(t, db, "default")
			db.Push(t, "default", 1)
			db.Stop()
			now := time.Now()
			_, err := s.Reserve(ctx, nil, 0, 1, now, now.Add(time.Minute))
			if err == nil || !poller.IsUnreachable(err) {
				t.Fatalf("reserve from a stopped server: %v, want it unreachable", err)
			}
			if _, err := s.Recover(ctx); !poller.IsUnreachable(err) {
				t.Fatalf("recover from a stopped server: %v, want it unreachable", err)
			}
			db.Start(t)
			if _, err := s.Recover(ctx); err != nil {
				t.Fatalf("recover once the server is back: %v", err)
			}
			r, err := s.Reserve(ctx, nil, 0, 1, now, now.Add(time.Minute))
			if err != nil || len(r.Jobs) != 1 || r.Jobs[0].Row.Attempts != 0 {
				t.Fatalf("reserve once the server is back: %+v, %v; want the job, as it was", r, err)
			}
		})
	}
}

// With kqueue's trigger on a PostgreSQL table, Wait returns on the
// trigger's notification of a push, and times out without one; the store
// says so in Check.
func TestWaitNotified(t *testing.T) {
	t.Parallel()
	db := testenv.StartDB(t, "pgsql", "")
	db.CreateJobsTable(t)
	for _, stmt := range database.TriggerSQL("jobs") {
		if _, err := db.SQL.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	ctx := context.Background()
	s := open(t, db, "default")
	if how, err := s.Check(ctx); err != nil || !strings.Contains(how, "new jobs notified by kqueue's trigger") {
		t.Fatalf("Check: %q, %v", how, err)
	}
	waitsForPushes(t, s, db, 2) // the listening connection serves wait after wait
}
