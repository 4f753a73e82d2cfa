// Package database is the poller's store for Laravel's database queue: the
// jobs table of Laravel's DatabaseQueue on MySQL, MariaDB, PostgreSQL or
// SQLite, read and written as DatabaseQueue and DatabaseJob do it, so that
// kqueue and `php artisan queue:work` can share a table
// (docs/laravel-queue.md, "The database queue").
//
// One thing differs, by design: DatabaseQueue counts a job's attempt when
// it reserves the row; this store reserves the row as it is (reserved_at
// set, attempts untouched) and counts the attempt when PHP is about to run
// the job (poller.AckCharge), so a job reserved ahead and never started
// goes back exactly as it was.
package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kqueue/kqueue/poller"
	"github.com/kqueue/kqueue/protocol"
)

// Queue is one queue of the table.
type Queue struct {
	Name       string
	RetryAfter time.Duration // Laravel's retry_after: how long a reservation lasts
}

// Config configures a Store.
type Config struct {
	// DB is the database holding the jobs table (Dial). Required.
	DB      *sql.DB
	Dialect Dialect
	// Table is the jobs table's name in the database: the connection's
	// prefix and the queue connection's table ("jobs").
	Table string
	// Queues names the queues, in the poller's order.
	Queues []Queue
	// Logger hears of quarantined rows. Default: discard.
	Logger *slog.Logger
}

// Store reserves and settles jobs in Laravel's jobs table.
type Store struct {
	db     *sql.DB
	d      Dialect
	table  string // as written in queries
	name   string // as the log names it
	queues []Queue
	log    *slog.Logger
	lock   string // the reserve query's locking clause (Open)
	// held maps the rows this poller holds to the reserved_at it last
	// wrote there: its reservation's mark (see ours).
	held map[int64]int64

	// seen is the highest id in the table as the reserves that found
	// their queues drained since the last Wait read it before they looked
	// (the lowest of theirs): Wait wakes the poller once a row of its
	// queues past it appears.
	seenMu sync.Mutex
	seen   int64
	fresh  bool // seen was set since the last Wait began

	// waitMu makes Waits take turns: a stopped waker's may still run.
	waitMu sync.Mutex
	// notified: the table has kqueue's trigger (PostgreSQL): Wait listens
	// on listening instead of polling.
	notified  atomic.Bool
	listening *sql.Conn // under waitMu
}

// New returns a Store on cfg.DB.
func New(cfg Config) *Store {
	s := &Store{db: cfg.DB, d: cfg.Dialect, table: cfg.Dialect.quote(cfg.Table), name: cfg.Table,
		queues: cfg.Queues, log: cfg.Logger, held: map[int64]int64{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// Name names the database.
func (s *Store) Name() string { return s.d.String() }

// Open finds how the reserve query locks rows on this server, and on
// PostgreSQL whether the table has kqueue's trigger.
func (s *Store) Open(ctx context.Context) error {
	lock, err := lockClause(ctx, s.db, s.d)
	if err != nil {
		return fmt.Errorf("ask the %s server its version: %w", s.d, s.classify(err))
	}
	s.lock = lock
	if s.d == Postgres && !s.notified.Load() {
		has, err := s.hasTrigger(ctx)
		if err != nil {
			return fmt.Errorf("look for kqueue's trigger on %s: %w", s.name, s.classify(err))
		}
		if has {
			s.log.Info("the jobs table has kqueue's trigger: waiting for its notifications instead of polling", "table", s.name)
		}
		s.notified.Store(has)
	}
	return nil
}

// Reserve applies acks, then, in one transaction, takes up to n rows of
// queue q that are available (not reserved, due) or whose reservation
// lapsed (reserved_at at or before now − retry_after), oldest first, and
// marks them reserved at now — as DatabaseQueue's pop, but many at once
// and without counting attempts.
func (s *Store) Reserve(ctx context.Context, acks []poller.Ack, q, n int, now, until time.Time) (poller.Reserved, error) {
	var r poller.Reserved
	if r.Acked = s.Ack(ctx, acks); r.Acked != nil && unreachable(r.Acked) {
		return r, r.Acked
	}
	name := s.queues[q].Name
	// until − now is the queue's retry_after.
	at, lapsed := now.Unix(), now.Unix()-int64(until.Sub(now)/time.Second)
	var top sql.NullInt64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		r.Jobs, r.Due = r.Jobs[:0], time.Time{}
		// Before looking: a row pushed meanwhile is past it, for Wait.
		if err := tx.QueryRowContext(ctx, `SELECT MAX(id) FROM `+s.table).Scan(&top); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, s.reserveQuery(n), name, at, lapsed)
		if err != nil {
			return err
		}
		for rows.Next() {
			var row protocol.Row
			var reserved sql.NullInt64
			var payload string
			if err := rows.Scan(&row.ID, &row.Attempts, &reserved, &row.AvailableAt, &row.CreatedAt, &payload); err != nil {
				rows.Close()
				return err
			}
			row.ReservedAt = at
			r.Jobs = append(r.Jobs, poller.Job{Queue: q, Payload: payload, Handle: strconv.FormatInt(row.ID, 10), Row: &row})
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if len(r.Jobs) > 0 {
			if _, err := tx.ExecContext(ctx, s.d.bind(`UPDATE `+s.table+` SET reserved_at = ? WHERE id IN (`+marks(len(r.Jobs))+`)`),
				append([]any{at}, ids(r.Jobs)...)...); err != nil {
				return err
			}
		}
		if len(r.Jobs) == n {
			return nil
		}
		// Drained: when the next delayed job is due.
		var due sql.NullInt64
		if err := tx.QueryRowContext(ctx, s.d.bind(`SELECT MIN(available_at) FROM `+s.table+
			` WHERE queue = ? AND reserved_at IS NULL AND available_at > ?`), name, at).Scan(&due); err != nil {
			return err
		}
		if due.Valid {
			r.Due = time.Unix(due.Int64, 0)
		}
		return nil
	})
	if err != nil {
		r.Jobs = nil
		return r, fmt.Errorf("reserve from %s (queue %s): %w", s.name, name, s.classify(err))
	}
	for _, j := range r.Jobs {
		s.held[j.Row.ID] = at
	}
	r.Taken = len(r.Jobs)
	if r.Taken < n {
		s.saw(top.Int64)
	}
	return r, nil
}

// saw notes the highest id a drained reserve saw before it looked.
func (s *Store) saw(top int64) {
	s.seenMu.Lock()
	defer s.seenMu.Unlock()
	if !s.fresh || top < s.seen {
		s.seen = top
	}
	s.fresh = true
}

// seenID is the highest id Wait may take as seen; begin starts a new Wait.
func (s *Store) seenID(begin bool) int64 {
	s.seenMu.Lock()
	defer s.seenMu.Unlock()
	if begin {
		s.fresh = false
	}
	return s.seen
}

// takeable is DatabaseQueue's condition for a row it may pop: of a queue
// (?), available as of a time (?) — isAvailable — or reserved at or
// before another (?) — isReservedButExpired.
const takeable = `queue = ? AND ((reserved_at IS NULL AND available_at <= ?) OR reserved_at <= ?)`

// reserveQuery selects up to n rows to reserve, oldest first, locked.
// Laravel's index on queue serves it (docs/laravel-queue.md shows each
// server's plan).
func (s *Store) reserveQuery(n int) string {
	return s.d.bind(`SELECT id, attempts, reserved_at, available_at, created_at, payload FROM ` + s.table +
		` WHERE ` + takeable + ` ORDER BY id ASC LIMIT ` + strconv.Itoa(n) + s.lock)
}

// Ack applies acks in order, in one transaction. When the server refuses
// one (a value out of its column's range, say: a job released 255 times
// on Laravel 8's TINYINT attempts), they are applied one by one, and each
// one it refuses is logged and dropped: it must not hold back the others.
func (s *Store) Ack(ctx context.Context, acks []poller.Ack) error {
	if len(acks) == 0 {
		return nil
	}
	now := time.Now().Unix()
	err := s.tx(ctx, func(tx *sql.Tx) error { return s.applyAll(ctx, tx, acks, now) })
	if err != nil && !unreachable(err) {
		err = s.ackEach(ctx, acks, now)
	}
	if err != nil {
		return fmt.Errorf("settle jobs in %s: %w", s.name, s.classify(err))
	}
	for _, a := range acks {
		if a.Kind != poller.AckCharge {
			delete(s.held, a.Job.Row.ID)
		}
	}
	return nil
}

// applyAll applies acks, each run of one kind together.
func (s *Store) applyAll(ctx context.Context, tx *sql.Tx, acks []poller.Ack, now int64) error {
	for i := 0; i < len(acks); {
		end := i + 1
		for end < len(acks) && acks[end].Kind == acks[i].Kind {
			end++
		}
		if err := s.apply(ctx, tx, acks[i:end], now); err != nil {
			return err
		}
		i = end
	}
	return nil
}

// ackEach applies acks one at a time, dropping those the server refuses.
func (s *Store) ackEach(ctx context.Context, acks []poller.Ack, now int64) error {
	for _, a := range acks {
		err := s.tx(ctx, func(tx *sql.Tx) error { return s.apply(ctx, tx, []poller.Ack{a}, now) })
		switch {
		case err == nil:
		case unreachable(err):
			return err
		default:
			s.log.Error("the database refused to settle a job; dropped: its row stays as it is", "table", s.name,
				"id", a.Job.Row.ID, "queue", s.queues[a.Job.Queue].Name, "ack", a.Kind.String(), "error", err)
		}
	}
	return nil
}

// apply applies a run of acknowledgements of one kind.
func (s *Store) apply(ctx context.Context, tx *sql.Tx, acks []poller.Ack, now int64) error {
	switch acks[0].Kind {
	case poller.AckDelete:
		// DatabaseQueue::deleteReserved: by id.
		_, err := tx.ExecContext(ctx, s.d.bind(`DELETE FROM `+s.table+` WHERE id IN (`+marks(len(acks))+`)`), ackIDs(acks)...)
		return err
	case poller.AckCharge:
		return s.byMark(ctx, tx, acks, `UPDATE `+s.table+` SET attempts = attempts + 1`)
	case poller.AckGiveBack:
		return s.byMark(ctx, tx, acks, `UPDATE `+s.table+` SET reserved_at = NULL`)
	}
	// DatabaseQueue::deleteAndRelease: the row goes, a new one comes with
	// the attempts the run counted, due at ReleaseAt — only if the row was
	// there: a release replayed after a lost reply must not put the job in
	// twice (Laravel inserts regardless).
	for _, a := range acks {
		res, err := tx.ExecContext(ctx, s.d.bind(`DELETE FROM `+s.table+` WHERE id = ?`), a.Job.Row.ID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			continue
		}
		if _, err := tx.ExecContext(ctx, s.d.bind(`INSERT INTO `+s.table+` (queue, attempts, reserved_at, available_at, created_at, payload) VALUES (?, ?, NULL, ?, ?, ?)`),
			s.queues[a.Job.Queue].Name, a.Job.Row.Attempts+1, a.ReleaseAt.Unix(), now, a.Job.Payload); err != nil {
			return err
		}
	}
	return nil
}

// byMark runs update (an UPDATE … SET …) on the rows of acks that still
// carry this poller's reservation, one statement per range of marks.
func (s *Store) byMark(ctx context.Context, tx *sql.Tx, acks []poller.Ack, update string) error {
	groups := map[[2]int64][]any{}
	var order [][2]int64
	for _, a := range acks {
		m := s.ours(a.Job)
		if _, ok := groups[m]; !ok {
			order = append(order, m)
		}
		groups[m] = append(groups[m], a.Job.Row.ID)
	}
	for _, m := range order {
		ids := groups[m]
		if _, err := tx.ExecContext(ctx, s.d.bind(update+` WHERE reserved_at >= ? AND reserved_at < ? AND id IN (`+marks(len(ids))+`)`),
			append([]any{m[0], m[1]}, ids...)...); err != nil {
			return err
		}
	}
	return nil
}

// ours is the range of reserved_at that says j's row still carries this
// poller's reservation: from the mark it last wrote there, up to when
// that would have lapsed. A worker that takes the row after a lapse
// writes retry_after later or more; an extension of this poller's whose
// reply was lost wrote within the range.
func (s *Store) ours(j poller.Job) [2]int64 {
	m, ok := s.held[j.Row.ID]
	if !ok {
		m = j.Row.ReservedAt
	}
	return [2]int64{m, m + max(int64(s.queues[j.Queue].RetryAfter/time.Second), 1)}
}

// Extend moves each lease's reserved_at to its Until less retry_after, on
// the rows that still carry this poller's reservation.
func (s *Store) Extend(ctx context.Context, leases []poller.Lease) error {
	if len(leases) == 0 {
		return nil
	}
	type move struct {
		from [2]int64
		to   int64
	}
	groups := map[move][]any{}
	for _, l := range leases {
		m := move{s.ours(l.Job), l.Until.Add(-s.queues[l.Job.Queue].RetryAfter).Unix()}
		groups[m] = append(groups[m], l.Job.Row.ID)
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		for m, ids := range groups {
			if _, err := tx.ExecContext(ctx, s.d.bind(`UPDATE `+s.table+` SET reserved_at = ? WHERE reserved_at >= ? AND reserved_at < ? AND id IN (`+marks(len(ids))+`)`),
				append([]any{m.to, m.from[0], m.from[1]}, ids...)...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("extend reservations in %s: %w", s.name, s.classify(err))
	}
	for m, ids := range groups {
		for _, id := range ids {
			s.held[id.(int64)] = m.to
		}
	}
	return nil
}

// QuarantineSuffix is added to the queue name of a row set aside: it
// stays in the table as it was, in a queue no worker reads.
const QuarantineSuffix = ":kqueue-quarantine"

// Quarantine moves j's row to its queue's quarantine queue (the queue
// column is all that changes, and reserved_at cleared).
func (s *Store) Quarantine(ctx context.Context, j poller.Job, why error) {
	q := s.queues[j.Queue].Name
	to := q + QuarantineSuffix
	s.log.Error("quarantined a malformed job: its row stays in the table, moved to another queue", "queue", q,
		"table", s.name, "id", j.Row.ID, "moved_to", to, "error", why, "entry", poller.Preview(j.Payload))
	err := s.tx(ctx, func(tx *sql.Tx) error {
		m := s.ours(j)
		_, err := tx.ExecContext(ctx, s.d.bind(`UPDATE `+s.table+` SET queue = ?, reserved_at = NULL WHERE id = ? AND reserved_at >= ? AND reserved_at < ?`), to, j.Row.ID, m[0], m[1])
		return err
	})
	if err != nil {
		s.log.Error("quarantine failed; the row stays reserved until retry_after", "queue", q, "id", j.Row.ID, "error", err)
		return
	}
	delete(s.held, j.Row.ID)
}

// Recover checks that the database answers. A reserve whose commit's
// reply was lost leaves its rows reserved; they go back to the queue when
// their retry_after has passed, as a crashed queue:work's would.
func (s *Store) Recover(ctx context.Context) ([]poller.Job, error) {
	if err := s.db.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("%s: %w", s.d, s.classify(err))
	}
	return nil, nil
}

// Poll intervals of Wait: short after activity, longer while idle.
const (
	firstPoll = 5 * time.Millisecond
	maxPoll   = 50 * time.Millisecond
)

// Wait polls the table's highest id (an index lookup) until a row past
// what the last drained reserve saw appears: a push, or a release. It
// starts at 5 ms and backs off to 50 ms. With kqueue's trigger on the
// table (PostgreSQL), it waits for the trigger's notification instead.
func (s *Store) Wait(ctx context.Context, within time.Duration) (bool, error) {
	s.waitMu.Lock()
	defer s.waitMu.Unlock()
	s.seenID(true)
	if s.notified.Load() {
		woke, err := s.waitNotified(ctx, within)
		if err != nil {
			return false, fmt.Errorf("wait for a notification: %w", s.classify(err))
		}
		return woke, nil
	}
	deadline := time.Now().Add(within)
	every := firstPoll
	for {
		if pushed, err := s.pushed(ctx); err != nil || pushed {
			if err != nil {
				return false, fmt.Errorf("wait for work: %w", s.classify(err))
			}
			return true, nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false, nil
		}
		t := time.NewTimer(min(every, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return false, nil
		case <-t.C:
		}
		every = min(2*every, maxPoll)
	}
}

// pushed reports whether a row of the queues is past what the drained
// reserves saw: the table's highest id (an index lookup) is past it, and
// so is a row of the queues (the primary key's range past it: the few
// rows pushed since). Rows of other queues only are taken as seen.
func (s *Store) pushed(ctx context.Context) (bool, error) {
	var top sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(id) FROM `+s.table).Scan(&top); err != nil {
		return false, err
	}
	seen := s.seenID(false)
	if top.Int64 <= seen {
		return false, nil
	}
	args := []any{seen}
	for _, q := range s.queues {
		args = append(args, q.Name)
	}
	var one int
	err := s.db.QueryRowContext(ctx, s.d.bind(`SELECT 1 FROM `+s.table+` WHERE id > ? AND queue IN (`+marks(len(s.queues))+`) LIMIT 1`), args...).Scan(&one)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, sql.ErrNoRows):
		s.saw(top.Int64)
		return false, nil
	}
	return false, err
}

// HasWork looks for an available row or a lapsed reservation on any
// queue.
func (s *Store) HasWork(ctx context.Context, now time.Time) (bool, error) {
	for _, q := range s.queues {
		var one int
		err := s.db.QueryRowContext(ctx, s.d.bind(`SELECT 1 FROM `+s.table+` WHERE `+takeable+` LIMIT 1`),
			q.Name, now.Unix(), now.Add(-q.RetryAfter).Unix()).Scan(&one)
		switch {
		case err == nil:
			return true, nil
		case !errors.Is(err, sql.ErrNoRows):
			return false, fmt.Errorf("look for work: %w", s.classify(err))
		}
	}
	return false, nil
}

// Depths counts each queue's ready, delayed and reserved rows.
func (s *Store) Depths(ctx context.Context) ([]poller.QueueDepth, error) {
	now := time.Now().Unix()
	args := []any{now, now, now}
	for _, q := range s.queues {
		args = append(args, q.Name)
	}
	// The head: the oldest ready row, as Laravel's pop takes it (lowest
	// id), for the queue's wait.
	rows, err := s.db.QueryContext(ctx, s.d.bind(`SELECT queue,
		SUM(CASE WHEN reserved_at IS NULL AND available_at <= ? THEN 1 ELSE 0 END),
		SUM(CASE WHEN reserved_at IS NULL AND available_at > ? THEN 1 ELSE 0 END),
		SUM(CASE WHEN reserved_at IS NOT NULL THEN 1 ELSE 0 END),
		MIN(CASE WHEN reserved_at IS NULL AND available_at <= ? THEN id END)
		FROM `+s.table+` WHERE queue IN (`+marks(len(s.queues))+`) GROUP BY queue`), args...)
	if err != nil {
		return nil, s.classify(err)
	}
	defer rows.Close()
	byName := map[string]poller.QueueDepth{}
	for rows.Next() {
		var d poller.QueueDepth
		var head sql.NullInt64
		if err := rows.Scan(&d.Name, &d.Ready, &d.Delayed, &d.Reserved, &head); err != nil {
			return nil, s.classify(err)
		}
		d.Head = uint64(head.Int64)
		byName[d.Name] = d
	}
	if err := rows.Err(); err != nil {
		return nil, s.classify(err)
	}
	depths := make([]poller.QueueDepth, len(s.queues))
	for i, q := range s.queues {
		depths[i] = byName[q.Name]
		depths[i].Name = q.Name
	}
	return depths, nil
}

// Done has nothing to drop: the table holds no state of this poller's
// but its reservations.
func (s *Store) Done(context.Context) {}

// tx runs f in a transaction, again (up to three times in all) when the
// server reports a deadlock, a serialization failure or a lock wait that
// timed out.
func (s *Store) tx(ctx context.Context, f func(*sql.Tx) error) error {
	var err error
	for try := range 3 {
		if try > 0 {
			time.Sleep(time.Duration(try) * 10 * time.Millisecond)
		}
		var tx *sql.Tx
		if tx, err = s.db.BeginTx(ctx, nil); err != nil {
			if transient(err) {
				continue
			}
			return err
		}
		if err = f(tx); err == nil {
			err = tx.Commit()
		} else {
			tx.Rollback()
		}
		if err == nil || !transient(err) {
			return err
		}
	}
	return err
}

// classify marks the errors that mean the database is away.
func (s *Store) classify(err error) error {
	if err != nil && unreachable(err) {
		return poller.Unreachable(err)
	}
	return err
}

// marks is n placeholders, comma-separated.
func marks(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

func ids(jobs []poller.Job) []any {
	out := make([]any, len(jobs))
	for i, j := range jobs {
		out[i] = j.Row.ID
	}
	return out
}

func ackIDs(acks []poller.Ack) []any {
	out := make([]any, len(acks))
	for i, a := range acks {
		out[i] = a.Job.Row.ID
	}
	return out
}

// Check says how the store works on this server — its version, how the
// reserve query locks rows — or why it cannot: no jobs table.
func (s *Store) Check(ctx context.Context) (string, error) {
	if err := s.Open(ctx); err != nil {
		return "", err
	}
	var version string
	q := map[Dialect]string{MySQL: "SELECT VERSION()", Postgres: "SHOW server_version", SQLite: "SELECT sqlite_version()"}[s.d]
	if err := s.db.QueryRowContext(ctx, q).Scan(&version); err != nil {
		return "", s.classify(err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, queue, payload, attempts, reserved_at, available_at, created_at FROM `+s.table+` WHERE 1 = 0`)
	if err != nil {
		return "", fmt.Errorf("the jobs table %s: %w (php artisan queue:table, then migrate, creates it)", s.name, s.classify(err))
	}
	rows.Close()
	lock := strings.TrimSpace(s.lock)
	if s.d == SQLite {
		var mode string
		if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err == nil {
			version += ", journal mode " + mode
		}
		lock = "the database's write lock (BEGIN IMMEDIATE)"
	}
	how := fmt.Sprintf("%s %s, table %s, reserved rows locked with %s", s.d, version, s.name, lock)
	switch {
	case s.notified.Load():
		how += "; new jobs notified by kqueue's trigger"
	case s.d == Postgres:
		how += "; new jobs found by polling (kqueue trigger installs a trigger that notifies them at once)"
	}
	return how, nil
}
