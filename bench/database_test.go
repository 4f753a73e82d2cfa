package bench

import (
	"context"
	"fmt"
	"os/exec"
	"testing"

	"github.com/kqueue/kqueue/internal/testenv"
)

// dbJobs is how many no-op jobs one database measurement runs: queue:work
// takes two transactions per job there, an order of magnitude slower than
// on Redis.
const dbJobs = 5000

// BenchmarkDatabaseThroughput runs no-op jobs from Laravel's jobs table
// (the database driver) on MariaDB, PostgreSQL and SQLite, through
// queue:work and through kqueue run with as many PHP processes.
func BenchmarkDatabaseThroughput(b *testing.B) {
	for _, driver := range testenv.Backends() {
		app := benchApp(b)
		db := app.QueueOn(b, driver)
		for _, workers := range []int{1, 2} {
			b.Run(fmt.Sprintf("db=%s/runner=queue:work/php=%d", driver, workers), func(b *testing.B) {
				measureOn(b, app, db, dbJobs, fmt.Sprintf("db/%s/throughput/queue:work/%d", driver, workers), func(ctx context.Context) error {
					return together(workers, func(int) error {
						return app.Command(ctx, "queue:work", "--stop-when-empty").Run()
					})
				})
			})
			b.Run(fmt.Sprintf("db=%s/runner=kqueue/php=%d", driver, workers), func(b *testing.B) {
				cfg := app.Config(b, workers, "")
				measureOn(b, app, db, dbJobs, fmt.Sprintf("db/%s/throughput/kqueue/%d", driver, workers), kqueueRun(cfg))
			})
		}
	}
}

// BenchmarkDatabasePickup is BenchmarkPickupLatency with the queue in a
// jobs table: queue:work sleeps 3 s when it finds none; kqueue polls the
// table's highest id, or, on PostgreSQL with its trigger installed (last),
// waits for the trigger's notification.
func BenchmarkDatabasePickup(b *testing.B) {
	for _, driver := range testenv.Backends() {
		app := benchApp(b)
		app.QueueOn(b, driver)
		cfg := app.Config(b, 1, "")
		kqueue := func(ctx context.Context) *exec.Cmd {
			return exec.CommandContext(ctx, kqueueBin, "run", "--config", cfg)
		}
		b.Run("db="+driver+"/runner=queue:work", func(b *testing.B) {
			pickup(b, app, func(ctx context.Context) *exec.Cmd { return app.Command(ctx, "queue:work") }, "db/"+driver+"/pickup/queue:work")
		})
		b.Run("db="+driver+"/runner=kqueue", func(b *testing.B) {
			pickup(b, app, kqueue, "db/"+driver+"/pickup/kqueue")
		})
		if driver != "pgsql" {
			continue
		}
		// PostgreSQL with kqueue's trigger: notified, not polling.
		if out, err := exec.Command(kqueueBin, "trigger", "--config", cfg).CombinedOutput(); err != nil {
			b.Fatalf("kqueue trigger: %v\n%s", err, out)
		}
		b.Run("db=pgsql/runner=kqueue-trigger", func(b *testing.B) {
			pickup(b, app, kqueue, "db/pgsql/pickup/kqueue-trigger")
		})
	}
}
