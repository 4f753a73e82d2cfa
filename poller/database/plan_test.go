package database_test

import (
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
)

// The reserve query and Wait's MAX(id) use indexes on every server — a
// queue's rows through Laravel's index on queue (or, on PostgreSQL, the
// primary key in id order), the highest id through the primary key — on a
// table of 20,000 rows in two queues, mostly delayed: no scan of the
// table. The plans are logged (docs/laravel-queue.md
// shows them).
func TestQueryPlans(t *testing.T) {
	each(t, func(t *testing.T, db *testenv.DB) {
		fill(t, db)
		s := open(t, db, "default")
		q := strings.TrimSpace(s.ReserveQuery(64))
		now := time.Now().Unix()
		reserve := plan(t, db, q, "default", now, now-90)
		top := plan(t, db, "SELECT MAX(id) FROM jobs")
		t.Logf("reserve query: %s\nplan:\n%s\nSELECT MAX(id) FROM jobs:\n%s", q, reserve, top)
		switch db.Driver {
		case "mysql":
			if !strings.Contains(reserve, "jobs_queue_index") || strings.Contains(reserve, "\tALL\t") {
				t.Errorf("the reserve query does not use the queue index")
			}
			if !strings.Contains(top, "Select tables optimized away") {
				t.Errorf("MAX(id) reads rows")
			}
		case "pgsql":
			// PostgreSQL's queue index does not keep ids in order: the planner
			// walks the primary key in id order and stops at the LIMIT, or
			// reads the queue's rows through the queue index and sorts them —
			// by its statistics. Never a sequential scan.
			if strings.Contains(reserve, "Seq Scan") || !strings.Contains(reserve, "Index Scan using jobs_") {
				t.Errorf("the reserve query does not use an index")
			}
			if !strings.Contains(top, "Index Only Scan Backward using jobs_pkey") {
				t.Errorf("MAX(id) does not read the primary key's last entry")
			}
		default:
			if !strings.Contains(reserve, "USING INDEX jobs_queue_index (queue=?)") {
				t.Errorf("the reserve query does not use the queue index")
			}
			if strings.Contains(top, "SCAN") {
				t.Errorf("MAX(id) scans the table")
			}
		}
	})
}

// fill puts 20,000 rows in the table: 10,000 delayed and 10 ready on
// default, the rest on another queue; then has the server look at them.
func fill(t *testing.T, db *testenv.DB) {
	t.Helper()
	tx, err := db.SQL.Begin()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	for i := range 20000 {
		queue, at := "default", now+3600
		if i >= 10000 {
			queue, at = "other", now
		} else if i%1000 == 0 {
			at = now
		}
		if _, err := tx.Exec(db.InsertRow(), queue, "{}", at, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	analyze := map[string]string{"mysql": "ANALYZE TABLE jobs", "pgsql": "ANALYZE jobs", "sqlite": "ANALYZE"}[db.Driver]
	if _, err := db.SQL.Exec(analyze); err != nil {
		t.Fatal(err)
	}
}

// plan is the server's plan of query, one line per row, columns
// tab-separated.
func plan(t *testing.T, db *testenv.DB, query string, args ...any) string {
	t.Helper()
	explain := "EXPLAIN "
	if db.Driver == "sqlite" {
		explain = "EXPLAIN QUERY PLAN "
	}
	rows, err := db.SQL.Query(explain+query, args...)
	if err != nil {
		t.Fatalf("%s%s: %v", explain, query, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var b strings.Builder
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if i > 0 {
				b.WriteByte('\t')
			}
			fmt.Fprint(&b, v.String)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
