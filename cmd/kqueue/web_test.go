package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
	"github.com/kqueue/kqueue/web"
)

// console is a client of a kqueue web under test, signed in with a token.
type console struct {
	t     *testing.T
	base  string
	token string
}

// get fetches path and returns its status and body.
func (c console) get(path string) (int, string) {
	c.t.Helper()
	req, _ := http.NewRequest("GET", c.base+path, nil)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return c.do(req)
}

// post sends a form to path, as a browser on the console's page would.
func (c console) post(path string, form url.Values) (int, string) {
	c.t.Helper()
	req, _ := http.NewRequest("POST", c.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return c.do(req)
}

func (c console) do(req *http.Request) (int, string) {
	c.t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusSeeOther {
		return resp.StatusCode, resp.Header.Get("Location")
	}
	return resp.StatusCode, string(b)
}

// overview reads /api/overview.
func (c console) overview() web.Overview {
	c.t.Helper()
	code, body := c.get("/api/overview")
	var o web.Overview
	if code != 200 || json.Unmarshal([]byte(body), &o) != nil {
		c.t.Fatalf("GET /api/overview: %d %s", code, body)
	}
	return o
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the CSRF token of the page at path.
func (c console) csrf(path string) string {
	c.t.Helper()
	_, body := c.get(path)
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		c.t.Fatalf("no CSRF token on %s:\n%s", path, body)
	}
	return m[1]
}

// startWeb runs `kqueue web` on cfg until the test ends, once it answers.
func startWeb(t *testing.T, ctx context.Context, cfg, base string) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	wait := background(t, ctx, "web", "--config", cfg)
	t.Cleanup(func() {
		cancel()
		if logs, err := wait(); err != nil {
			t.Errorf("kqueue web: %v\n%s", err, logs)
		}
	})
	testenv.Eventually(t, 30*time.Second, "kqueue web to answer", func() bool {
		resp, err := http.Get(base + "/assets/console.css")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
}

// The console, over HTTP: its numbers are Redis's, running jobs come and
// go, failed jobs are found and retried through Laravel, job data is
// escaped, and actions need an operator and a CSRF token.
func TestWeb(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	app := testenv.NewApp(t, r)
	app.Env["LOG_CHANNEL"] = "null"
	port := testenv.FreePort(t)
	tokens := filepath.Join(t.TempDir(), "tokens")
	const operator, viewer = "operator-token-0123456789", "viewer-token-0123456789"
	os.WriteFile(tokens, []byte("# who may use the console\noperator "+operator+"\nviewer "+viewer+"\n"), 0o600)
	// The batch's jobs one at a time: two at once update job_batches in
	// the fixture's SQLite, where one of them can fail as "database is
	// locked" (two deferred transactions upgrading their locks).
	cfg := app.Config(t, 2, fmt.Sprintf("[[queue]]\nname = \"default\"\n[[queue]]\nname = \"low\"\n[[queue]]\nname = \"batches\"\nmax_running = 1\n[web]\nlisten = \"127.0.0.1:%d\"\ntokens = %q\n", port, tokens))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	ctx := t.Context()
	op, view, anon := console{t, base, operator}, console{t, base, viewer}, console{t, base, ""}

	// Before kqueue runs: the overview's numbers are Redis's.
	app.Artisan(t, "kq:dispatch", "record", "--count=3", "--queue=low")
	app.Artisan(t, "kq:dispatch", "due", "--count=2")
	startWeb(t, ctx, cfg, base)
	o := op.overview()
	depth := map[string][2]int64{}
	for _, q := range o.Queues {
		depth[q.Name] = [2]int64{q.Ready, q.Delayed}
	}
	low, dflt := testenv.Prefix+"queues:low", testenv.Prefix+"queues:default"
	if want := [2]int64{r.Client.LLen(ctx, low).Val(), r.Client.ZCard(ctx, low+":delayed").Val()}; depth["low"] != want {
		t.Errorf("overview's low queue: %v, Redis: %v", depth["low"], want)
	}
	if want := [2]int64{r.Client.LLen(ctx, dflt).Val(), r.Client.ZCard(ctx, dflt+":delayed").Val()}; depth["default"] != want || want[1] != 2 {
		t.Errorf("overview's default queue: %v, Redis: %v", depth["default"], want)
	}

	// Access: no token, no page; the viewer sees but may not act.
	if code, _ := anon.get("/api/overview"); code != http.StatusUnauthorized {
		t.Errorf("without a token: %d, want 401", code)
	}
	if code, where := anon.get("/failed"); code != http.StatusSeeOther || !strings.HasPrefix(where, "/login") {
		t.Errorf("a page without a token: %d %s, want the sign-in page", code, where)
	}
	if code, _ := view.get("/"); code != 200 {
		t.Errorf("the viewer's overview: %d", code)
	}
	if code, body := view.post("/restart", url.Values{"csrf": {op.csrf("/")}}); code != http.StatusForbidden || !strings.Contains(body, "may view but not act") {
		t.Errorf("the viewer's restart: %d %s, want 403", code, body)
	}
	if code, body := op.post("/restart", url.Values{"csrf": {"forged"}}); code != http.StatusForbidden || !strings.Contains(body, "CSRF") {
		t.Errorf("a restart with a forged CSRF token: %d %s, want 403", code, body)
	}
	if code, body := op.post("/restart", nil); code != http.StatusForbidden {
		t.Errorf("a restart without a CSRF token: %d %s, want 403", code, body)
	}

	// Batches: one waiting in the queues, its jobs found there; another
	// cancelled from the page.
	first := strings.TrimSpace(app.Artisan(t, "kq:dispatch", "batch", "--count=3", "--queue=batches"))
	second := strings.TrimSpace(app.Artisan(t, "kq:dispatch", "batch", "--count=2", "--queue=held")) // no one runs held
	if _, body := op.get("/batches"); strings.Count(body, "console-batch") != 2 {
		t.Errorf("the batches page does not list both batches:\n%s", body)
	}
	if _, body := op.get("/batches/" + first); strings.Count(body, "<tr><td>App\\Jobs\\Batched</td>") != 3 {
		t.Errorf("the batch's page does not show its 3 jobs waiting:\n%s", body)
	}
	if code, where := op.post("/batches/"+second+"/cancel", url.Values{"csrf": {op.csrf("/batches/" + second)}, "back": {"/batches/" + second}}); code != http.StatusSeeOther || strings.Contains(where, "error=") {
		t.Errorf("cancel the batch: %d %s", code, where)
	}
	if _, body := op.get("/batches/" + second); !strings.Contains(body, `<dd class="state">cancelled</dd>`) {
		t.Errorf("the cancelled batch's page:\n%s", body)
	}

	// kqueue runs: its instance appears, with its workers; running jobs
	// come and go.
	app.Artisan(t, "kq:dispatch", "status")
	app.Artisan(t, "kq:dispatch", "console")
	runCtx, stopRun := context.WithCancel(ctx)
	wait := background(t, runCtx, "run", "--config", cfg)
	defer func() {
		stopRun()
		if logs, err := wait(); err != nil {
			t.Errorf("kqueue run: %v\n%s", err, logs)
		}
	}()
	testenv.Eventually(t, 30*time.Second, "the instance to appear with its 2 workers", func() bool {
		o := op.overview()
		return len(o.Instances) == 1 && len(o.Instances[0].Workers) == 2
	})
	testenv.Eventually(t, 30*time.Second, "the two sleepers on the running page, running inline in a PHP process", func() bool {
		_, body := op.get("/running")
		return strings.Count(body, "App\\Jobs\\Sleeps") == 2 && strings.Count(body, "<td>running</td>") == 2 && strings.Count(body, "<td>inline</td>") == 2
	})
	testenv.Eventually(t, 30*time.Second, "the running page to empty", func() bool {
		_, body := op.get("/running")
		return strings.Contains(body, "No job is running")
	})

	// The batch ran, its first job failed; its failed jobs are retried
	// from its page, through queue:retry-batch.
	runs := testenv.Prefix + "kqtest:runs"
	var batchPage string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the batch's page:\n%s", batchPage)
		}
	})
	testenv.Eventually(t, 30*time.Second, "the batch to run, one job failed", func() bool {
		_, batchPage = op.get("/batches/" + first)
		return strings.Contains(batchPage, "2 of 3 processed, 1 pending, 1 failed")
	})
	if n := r.Client.HGet(ctx, runs, "batched-1").Val(); n != "1" {
		t.Errorf("batched-1 ran %q times, want once", n)
	}
	code, where := op.post("/batches/"+first+"/retry", url.Values{"csrf": {op.csrf("/batches/" + first)}, "back": {"/batches/" + first}})
	if code != http.StatusSeeOther || strings.Contains(where, "error=") {
		t.Fatalf("retry the batch's failed jobs: %d %s", code, where)
	}
	testenv.Eventually(t, 30*time.Second, "the batch's failed job to run again", func() bool {
		return r.Client.HGet(ctx, runs, "fail-batched").Val() == "2"
	})

	// Failed jobs: found by search, shown inert, retried through Laravel.
	var mended string
	testenv.Eventually(t, 30*time.Second, "the failed job to be found by search", func() bool {
		_, body := op.get("/failed?q=" + url.QueryEscape("mended-by-retry first run"))
		m := regexp.MustCompile(`<tr data-id="([^"]+)">`).FindAllStringSubmatch(body, -1)
		if len(m) == 1 {
			mended = m[0][1]
		}
		return len(m) == 1
	})
	_, page := op.get("/failed")
	for _, hostile := range []string{"<script>document.title", "<img src=x"} {
		if strings.Contains(page, hostile) {
			t.Errorf("the failed jobs' page has %q unescaped", hostile)
		}
	}
	if !strings.Contains(page, "&lt;script&gt;document.title=&#34;pwned&#34;&lt;/script&gt;Hostile") {
		t.Errorf("the failed jobs' page does not show the hostile job's name as text:\n%s", page)
	}
	// The history: the hostile job's run, its output and error shown as text.
	var hostile string
	testenv.Eventually(t, 30*time.Second, "the hostile job in the history", func() bool {
		_, body := op.get("/jobs?outcome=failed&q=hostile")
		m := regexp.MustCompile(`<tr data-uuid="([^"]+)">`).FindStringSubmatch(body)
		if m != nil {
			hostile = m[1]
		}
		return m != nil
	})
	// A job's own tags(), read as it ran: its run is found by them.
	if _, body := op.get("/jobs?tag=customer:42"); !strings.Contains(body, "App\\Jobs\\Tagged") {
		t.Errorf("the Jobs page does not find the run by its tag customer:42:\n%s", body)
	}
	_, page = op.get("/jobs/" + hostile)
	for _, text := range []string{
		"&lt;script&gt;document.title=&#39;pwned by output&#39;&lt;/script&gt;",           // its output
		"&lt;img src=x onerror=&#34;document.title=&#39;pwned by exception&#39;&#34;&gt;", // its error
	} {
		if !strings.Contains(page, text) {
			t.Errorf("the hostile job's page does not show %s:\n%s", text, page)
		}
	}
	if strings.Contains(page, "<script>document") || strings.Contains(page, "<img src") {
		t.Errorf("the hostile job's page has markup unescaped:\n%s", page)
	}

	code, where = op.post("/failed/retry", url.Values{"csrf": {op.csrf("/failed")}, "id": {mended}, "back": {"/failed"}})
	if code != http.StatusSeeOther || !strings.Contains(where, "said=") {
		t.Fatalf("retry: %d %s", code, where)
	}
	testenv.Eventually(t, 30*time.Second, "the retried job to run and leave the failed list", func() bool {
		_, body := op.get("/failed")
		return r.Client.HGet(ctx, testenv.Prefix+"kqtest:firstrun", "mended-by-retry").Val() == "2" && !strings.Contains(body, mended)
	})
	if rows := failedJobs(t, app); len(rows) != 3 || strings.Contains(strings.Join(rows, ""), "mended-by-retry") {
		t.Errorf("failed_jobs after the retry: %q, want the rows of the hostile job, status-failure and fail-batched", rows)
	}
}
