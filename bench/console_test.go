package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
	"github.com/kqueue/kqueue/poller"
	redisstore "github.com/kqueue/kqueue/poller/redis"
	"github.com/kqueue/kqueue/web"
)

// BenchmarkConsoleCost measures what the console costs the jobs: no-op
// throughput with 2 PHP processes, kqueue with its job history off
// ([web] history = -1), on (the default), and on with a console open on
// two live pages (the overview and the Jobs page, each rendered again
// every second).
func BenchmarkConsoleCost(b *testing.B) {
	app := benchApp(b)
	for _, c := range []struct {
		name             string
		history, console bool
	}{
		{"history=off", false, false},
		{"history=on", true, false},
		{"history=on+console", true, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			port := testenv.FreePort(b)
			web := fmt.Sprintf("[web]\nlisten = \"127.0.0.1:%d\"\n", port)
			if !c.history {
				web += "history = -1\n"
			}
			cfg := app.Config(b, 2, web)
			if c.console {
				watch(b, cfg, port)
			}
			measure(b, app, "console/"+c.name, kqueueRun(cfg))
		})
	}
}

// watch runs `kqueue web` on cfg and keeps two of its pages open, live,
// until the benchmark ends.
func watch(b *testing.B, cfg string, port int) {
	ctx, cancel := context.WithCancel(context.Background())
	web := exec.CommandContext(ctx, kqueueBin, "web", "--config", cfg)
	if err := web.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cancel(); web.Wait() })
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	testenv.Eventually(b, 30*time.Second, "kqueue web to answer", func() bool {
		resp, err := http.Get(base + "/assets/console.css")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	for _, page := range []string{"/", "/jobs"} {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/events?path="+url.QueryEscape(page), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			defer resp.Body.Close()
			io.Copy(io.Discard, bufio.NewReader(resp.Body))
		}()
	}
}

// historyRuns is the history a console page is timed on.
const historyRuns = 100000

// BenchmarkConsolePages times the console's pages on the server with
// 100,000 runs in the job history (records like kqueue's, each with a
// payload): the first visit, which reads the history once, then each
// page as a user reaches it.
func BenchmarkConsolePages(b *testing.B) {
	r := testenv.StartRedis(b)
	store := redisstore.New(redisstore.Config{Client: r.Client, Prefix: testenv.Prefix, Queues: []string{"default", "low"}})
	ctx := context.Background()
	payload := `{"uuid":"%s","displayName":"App\\Jobs\\Class%d","job":"Illuminate\\Queue\\CallQueuedHandler@call","maxTries":null,"data":{"commandName":"App\\Jobs\\Class%d","command":"O:16:\"App\\Jobs\\Class%d\":1:{s:2:\"id\";i:%d;}"}}`
	var uuid string
	for i := 0; i < historyRuns; i += 1000 {
		var recs []poller.Record
		for j := i; j < i+1000; j++ {
			uuid = fmt.Sprintf("00000000-0000-4000-8000-%012d", j)
			recs = append(recs, poller.Record{
				UUID: uuid, Name: "App\\Jobs\\Class" + strconv.Itoa(j%20), Queue: []string{"default", "low"}[j%2],
				Host: "host-" + strconv.Itoa(j%3), Instance: "default", Attempt: 1, Outcome: []string{"done", "done", "done", "failed"}[j%4],
				Ended: time.Now(), Duration: time.Duration(j%500) * time.Millisecond, Tags: []string{"user:" + strconv.Itoa(j%1000)},
				Payload: fmt.Sprintf(payload, uuid, j%20, j%20, j%20, j),
			})
		}
		if err := store.Record(ctx, recs, historyRuns); err != nil {
			b.Fatal(err)
		}
	}
	srv, err := web.New(web.Config{Name: "bench", Store: store, Roster: store, History: store, Keep: historyRuns, Tallies: store})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	get := func(path string) time.Duration {
		req := httptest.NewRequest("GET", "http://localhost"+path, nil)
		w := httptest.NewRecorder()
		start := time.Now()
		srv.ServeHTTP(w, req)
		took := time.Since(start)
		if w.Code != 200 {
			b.Fatalf("GET %s: %d %s", path, w.Code, w.Body.String())
		}
		return took
	}
	first := get("/jobs")
	record("console/first-visit", float64(first)/float64(time.Millisecond))
	// The rest of the history is read behind the first answer.
	testenv.Eventually(b, 60*time.Second, "the console to read the whole history", func() bool {
		req := httptest.NewRequest("GET", "http://localhost/api/jobs", nil)
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		var j web.Jobs
		return json.Unmarshal(w.Body.Bytes(), &j) == nil && j.Total == historyRuns && !j.Loading
	})
	pages := []string{
		"/jobs", "/jobs?q=class7", "/jobs?class=App%5CJobs%5CClass3&outcome=failed", "/jobs?tag=user:42",
		"/jobs?q=" + uuid, "/jobs/" + uuid, "/", "/metrics",
	}
	var worst time.Duration
	var all []time.Duration
	for b.Loop() {
		for _, p := range pages {
			d := get(p)
			all = append(all, d)
			worst = max(worst, d)
		}
	}
	slices.Sort(all)
	record("console/page-p50", float64(all[len(all)/2])/float64(time.Millisecond))
	record("console/page-max", float64(worst)/float64(time.Millisecond))
	b.ReportMetric(float64(all[len(all)/2])/float64(time.Millisecond), "ms/page-p50")
	b.ReportMetric(float64(worst)/float64(time.Millisecond), "ms/page-max")
	b.ReportMetric(float64(first)/float64(time.Millisecond), "ms/first-visit")
}
