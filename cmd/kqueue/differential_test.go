package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/kqueue/kqueue/internal/testenv"
)

// TestDifferential runs every outcome of DESIGN.md §2 that runs in PHP
// through `php artisan queue:work` and through `kqueue run` on the same app,
// and finds the same jobs run, the same attempts and events, the same
// failed_jobs rows and the same Redis state.
func TestDifferential(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	ctx := t.Context()

	type result struct {
		log    map[string][]string
		failed []string
		state  []string
	}
	collect := func() result {
		return result{probeLog(t, r.Client), failedJobs(t, app), redisState(t, r.Client)}
	}
	reset := func() {
		r.Client.FlushAll(ctx)
		app.Sqlite(t, "DELETE FROM failed_jobs")
	}

	app.Artisan(t, "kq:dispatch", "mix")
	drain(t, r.Client, "default", func() error {
		return app.Command(ctx, "queue:work", "--stop-when-empty").Run()
	})
	laravel := collect()

	reset()
	cfg := app.Config(t, 2, "")
	app.Artisan(t, "kq:dispatch", "mix")
	drain(t, r.Client, "default", func() error {
		logs, err := kqueue(t, ctx, "run", "--config", cfg, "--stop-when-empty")
		if err != nil {
			t.Log(logs)
		}
		return err
	})
	kq := collect()

	if len(laravel.log) < 15 {
		t.Fatalf("queue:work ran too little to compare: %d jobs", len(laravel.log))
	}
	for tag, want := range laravel.log {
		if got := kq.log[tag]; !reflect.DeepEqual(got, want) {
			t.Errorf("job %s:\nqueue:work: %s\nkqueue:     %s", tag, strings.Join(want, "\n            "), strings.Join(got, "\n            "))
		}
	}
	for tag := range kq.log {
		if _, ok := laravel.log[tag]; !ok {
			t.Errorf("job %s ran under kqueue only: %v", tag, kq.log[tag])
		}
	}
	if len(laravel.failed) != 4 {
		t.Errorf("queue:work wrote %d failed_jobs rows, want 4", len(laravel.failed))
	}
	if !reflect.DeepEqual(kq.failed, laravel.failed) {
		t.Errorf("failed_jobs differ:\nqueue:work:\n%s\n\nkqueue:\n%s", strings.Join(laravel.failed, "\n---\n"), strings.Join(kq.failed, "\n---\n"))
	}
	if !reflect.DeepEqual(kq.state, laravel.state) {
		t.Errorf("redis state differs:\nqueue:work: %v\nkqueue:     %v", laravel.state, kq.state)
	}
}
