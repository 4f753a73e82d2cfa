package database

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
)

// On PostgreSQL a trigger on the jobs table can tell kqueue of each push
// at once (LISTEN/NOTIFY) instead of kqueue polling for it. kqueue never
// installs it on its own: `kqueue trigger` does, when asked (TriggerSQL).

// trigger names the trigger and its function; channel is what they notify.
const (
	trigger = "kqueue_notify"
	channel = "kqueue_jobs"
)

// TriggerSQL is what installs the trigger on the table (a name as in the
// database, "jobs" or "schema.jobs"): after each INSERT statement on it (a
// push, or a release), a NOTIFY of kqueue_jobs. Replacing it is harmless.
func TriggerSQL(table string) []string {
	t := Postgres.quote(table)
	return []string{
		`CREATE OR REPLACE FUNCTION ` + trigger + `() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_notify('` + channel + `', TG_TABLE_NAME); RETURN NULL; END $$`,
		`DROP TRIGGER IF EXISTS ` + trigger + ` ON ` + t,
		`CREATE TRIGGER ` + trigger + ` AFTER INSERT ON ` + t + ` FOR EACH STATEMENT EXECUTE FUNCTION ` + trigger + `()`,
	}
}

// DropTriggerSQL is what removes it.
func DropTriggerSQL(table string) []string {
	return []string{`DROP TRIGGER IF EXISTS ` + trigger + ` ON ` + Postgres.quote(table)}
}

// hasTrigger reports whether the table has kqueue's trigger.
func (s *Store) hasTrigger(ctx context.Context) (bool, error) {
	var has bool
	err := s.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = $1 AND tgrelid = to_regclass($2))`,
		trigger, s.table).Scan(&has)
	return has, err
}

// waitNotified is Wait with the trigger: it blocks on a notification of
// the channel, on a connection of its own that LISTENs to it from the
// first call on (a push between the last reserve and that LISTEN is seen
// by one look, as Wait's poll looks). Called under waitMu.
func (s *Store) waitNotified(ctx context.Context, within time.Duration) (bool, error) {
	if s.listening == nil {
		conn, err := s.db.Conn(ctx)
		if err != nil {
			return false, err
		}
		if _, err := conn.ExecContext(ctx, "LISTEN "+channel); err != nil {
			conn.Close()
			return false, err
		}
		s.listening = conn
		if pushed, err := s.pushed(ctx); err != nil || pushed {
			if err != nil {
				return false, s.stopListening(err)
			}
			return true, nil
		}
	}
	wctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	err := s.listening.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("not a pgx connection: %T", dc)
		}
		_, err := c.Conn().WaitForNotification(wctx)
		return err
	})
	switch {
	case err == nil:
		return true, nil
	case wctx.Err() != nil:
		return false, nil // no push within (or a stop); the connection stays
	}
	return false, s.stopListening(err)
}

// stopListening drops a listening connection that failed; the next Wait
// makes another.
func (s *Store) stopListening(err error) error {
	s.listening.Close()
	s.listening = nil
	return err
}
