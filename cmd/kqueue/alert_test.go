package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
)

// A queue whose oldest job waits past its alert_wait: one warning in the
// log (level WARN, with the queue's name in its own field) and one call
// of the webhook, for the whole episode; once the jobs run, one recovery,
// in the log and through the webhook; then nothing more.
func TestLongWaitAlertsOncePerEpisode(t *testing.T) {
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	app.Env["LOG_CHANNEL"] = "null"
	ctx := t.Context()

	var mu sync.Mutex
	var calls []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var msg struct{ Text string }
		if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &msg) != nil || msg.Text == "" {
			t.Errorf("the webhook got %s %q (%s), want a POST of {\"text\": …}", req.Method, body, req.Header.Get("Content-Type"))
		}
		mu.Lock()
		calls = append(calls, msg.Text)
		mu.Unlock()
	}))
	defer hook.Close()
	got := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), calls...)
	}

	cfg := app.Config(t, 1, "[[queue]]\nname = \"default\"\nalert_wait = 2\n[alerts]\nwebhook = \""+hook.URL+"/hooks/secret-token\"\n")
	kctx, cancel := context.WithCancel(ctx)
	wait := background(t, kctx, "run", "--config", cfg)
	testenv.Eventually(t, 30*time.Second, "kqueue to start", func() bool { _, ok := statusOf(ctx, cfg); return ok })

	// One held job takes the only worker; the next waits behind it.
	app.Artisan(t, "kq:dispatch", "spans", "--count=2", "--from=-1")
	testenv.Eventually(t, 30*time.Second, "the webhook to be told", func() bool { return len(got()) == 1 })
	if s, _ := statusOf(ctx, cfg); len(s.Queues) != 1 || !s.Queues[0].WaitAlert {
		t.Errorf("kqueue status does not show the queue over its alert_wait: %+v", s.Queues)
	}
	testenv.Never(t, 2*time.Second, "a second call while the episode lasts", func() bool { return len(got()) > 1 })

	for range 2 {
		r.Client.RPush(ctx, testenv.Prefix+"kqtest:go", "go")
	}
	testenv.Eventually(t, 30*time.Second, "the recovery to be told", func() bool { return len(got()) == 2 })
	testenv.Never(t, 2*time.Second, "another call after the recovery", func() bool { return len(got()) > 2 })
	cancel()
	logs, err := wait()
	if err != nil {
		t.Fatalf("kqueue run: %v\n%s", err, logs)
	}

	c := got()
	if !strings.Contains(c[0], `jobs on queue "default" wait`) || !strings.Contains(c[0], "over its alert_wait of 2s") {
		t.Errorf("the alert says %q", c[0])
	}
	if !strings.Contains(c[1], `jobs on queue "default" wait`) || !strings.Contains(c[1], "again, under its alert_wait") {
		t.Errorf("the recovery says %q", c[1])
	}
	warn := regexp.MustCompile(`(?m)^.*level=WARN msg="jobs wait too long" .*queue=default .*alert_wait=2s.*$`).FindAllString(logs, -1)
	if len(warn) != 1 {
		t.Errorf("%d warnings of the long wait, want 1:\n%s", len(warn), logs)
	}
	if n := strings.Count(logs, `msg="jobs wait no longer than they should"`); n != 1 {
		t.Errorf("%d recoveries in the log, want 1", n)
	}
	if strings.Contains(logs, "secret-token") {
		t.Errorf("the log shows the webhook's secret URL:\n%s", logs)
	}
}
