package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/kqueue/kqueue/internal/testenv"
)

// browser is a headless Chromium (Debian's) driven over the DevTools
// protocol, its screenshots saved as the test's artifacts.
type browser struct {
	t   *testing.T
	ctx context.Context
	dir string // where screenshots go
}

// newBrowser starts Chromium for the test.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	testenv.Need(t, "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath("chromium"), chromedp.NoSandbox, chromedp.WindowSize(1360, 900),
		chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	dir := os.Getenv("KQUEUE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(testenv.Root(), "artifacts")
	}
	dir = filepath.Join(dir, "console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, ctx: ctx, dir: dir}
}

// run runs steps, failing the test after within.
func (b *browser) run(within time.Duration, what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, within)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.fail(what, err)
	}
}

// fail ends the test with what failed, the page as it was, and its
// screenshot.
func (b *browser) fail(what string, err error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("main")))
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	html = "at " + loc + "\n" + html
	b.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
	b.t.Fatalf("browser: %s: %v\npage:\n%s", what, err, html)
}

// get runs one action that returns a value.
func get[T any](b *browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.fail(what, err)
	}
	return v
}

// shot saves a screenshot of the whole page as NAME.png.
func (b *browser) shot(name string) {
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	os.WriteFile(filepath.Join(b.dir, name+".png"), png, 0o644)
}

// text is the text of the first element matching sel.
func (b *browser) text(sel string) string {
	b.t.Helper()
	return get(b, "read "+sel, chromedp.Text(chromedp.CSS(sel)))
}

// count is the number of elements matching sel.
func (b *browser) count(sel string) int {
	b.t.Helper()
	return get(b, "count "+sel, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
}

// title is the page's title.
func (b *browser) title() string {
	b.t.Helper()
	return get(b, "read the title", chromedp.Title())
}

// A person walks the console on Laravel 13, with kqueue and a queue:work
// on the same queues: numbers as Redis has them, a running job shown
// live, a failed job searched, retried and gone, a queue paused and
// resumed for both runners, hostile job data shown as text, and a
// viewer's or forged action refused. Screenshots of each page are left in
// artifacts/console (KQUEUE_ARTIFACTS).
func TestConsoleInBrowser(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	l := testenv.Versions()[len(testenv.Versions())-1] // the newest: it has queue:pause
	root := l.Root(t)
	bin := buildKqueue(t)
	r := testenv.StartRedisIn(t, root)
	app := testenv.NewAppIn(t, r, root)
	app.Env["LOG_CHANNEL"] = "null"
	kq := kqueueIn(t, app, bin)
	rdb := r.Client
	ctx := t.Context()

	port := testenv.FreePort(t)
	const operator, viewer = "operator-token-0123456789", "viewer-token-0123456789"
	tokens := filepath.Join(app.Path, "..", "web-tokens")
	os.WriteFile(tokens, []byte("operator "+operator+"\nviewer "+viewer+"\n"), 0o600)
	cfg := app.Inside(app.Config(t, 2, fmt.Sprintf("[[queue]]\nname = \"default\"\n[[queue]]\nname = \"low\"\n[[queue]]\nname = \"batches\"\nmax_running = 1\n[web]\nlisten = \"127.0.0.1:%d\"\ntokens = %q\n", port, app.Inside(tokens))))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	start := func(args ...string) *exec.Cmd {
		logs := &testenv.SyncBuffer{}
		cmd := kq(ctx, args...)
		cmd.Stdout, cmd.Stderr = logs, logs
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			if err := cmd.Wait(); err != nil || t.Failed() {
				t.Logf("kqueue %s: %v\n%s", args[0], err, logs.String())
			}
		})
		return cmd
	}

	// Sign in; the overview's numbers are Redis's.
	app.Artisan(t, "kq:dispatch", "record", "--count=3", "--queue=low")
	app.Artisan(t, "kq:dispatch", "due", "--count=2")
	start("web", "--config", cfg)
	b.run(60*time.Second, "reach the sign-in page", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		for {
			if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err == nil {
				if title, err := chromedp.Run(ctx, chromedp.Title()); err == nil && strings.Contains(title, "Sign in") {
					return nil
				}
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}))
	b.shot("sign-in")
	b.run(10*time.Second, "sign in", chromedp.SetValue(chromedp.CSS(`input[name=token]`), operator),
		chromedp.Submit(chromedp.CSS(`input[name=token]`)), chromedp.WaitVisible(chromedp.CSS(`#queues`)))
	low, dflt := testenv.Prefix+"queues:low", testenv.Prefix+"queues:default"
	for _, c := range []struct {
		sel  string
		want int64
	}{
		{`tr[data-queue="low"] .ready`, rdb.LLen(ctx, low).Val()},
		{`tr[data-queue="default"] .delayed`, rdb.ZCard(ctx, dflt+":delayed").Val()},
		{`tr[data-queue="default"] .ready`, rdb.LLen(ctx, dflt).Val()},
	} {
		if got := b.text(c.sel); got != strconv.FormatInt(c.want, 10) {
			t.Errorf("overview %s: %s, Redis: %d", c.sel, got, c.want)
		}
	}

	// kqueue runs: a running job appears on the page, live, and leaves.
	app.Artisan(t, "kq:dispatch", "status")
	app.Artisan(t, "kq:dispatch", "console")
	start("run", "--config", cfg)
	b.run(10*time.Second, "open the running page", chromedp.Navigate(base+"/running"))
	b.run(60*time.Second, "the sleepers to appear", chromedp.WaitVisible(chromedp.CSS(`#running tr[data-uuid]`)))
	b.shot("running")
	b.run(60*time.Second, "the sleepers to leave", chromedp.Poll[chromedp.Void](`document.querySelectorAll("#running tr[data-uuid]").length === 0`, chromedp.WithPollingTimeout(60*time.Second)))
	b.run(10*time.Second, "open the overview", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(`section.instance`)))
	b.shot("overview")

	// A failed job, found by search, retried from the page: it runs and
	// leaves the failed list.
	b.run(30*time.Second, "search the failed jobs", chromedp.Navigate(base+"/failed"),
		chromedp.SetValue(chromedp.CSS(`input[name=q]`), "mended-by-retry"), chromedp.Submit(chromedp.CSS(`input[name=q]`)),
		chromedp.WaitVisible(chromedp.CSS(`#failed tr[data-id]`)))
	if found := b.count("#failed tr[data-id]"); found != 1 {
		t.Fatalf("the search found %d failed jobs, want 1", found)
	}
	b.shot("failed-search")
	b.run(10*time.Second, "retry it", chromedp.Click(chromedp.CSS(`#failed tr[data-id] input[type=checkbox]`)),
		chromedp.Click(chromedp.CSS(`button[formaction="/failed/retry"]:not([name])`)), chromedp.WaitVisible(chromedp.CSS(`p.said`)))
	testenv.Eventually(t, 30*time.Second, "the retried job to run", func() bool {
		return rdb.HGet(ctx, testenv.Prefix+"kqtest:firstrun", "mended-by-retry").Val() == "2"
	})
	b.run(10*time.Second, "the failed list without it", chromedp.Navigate(base+"/failed"), chromedp.WaitVisible(chromedp.CSS(`#failed`)))
	if page := b.text(`#failed`); strings.Contains(page, "FailsFirstRun") || !strings.Contains(page, "Hostile") {
		t.Errorf("the failed list after the retry:\n%s", page)
	}
	b.shot("failed")

	// Hostile data renders as text: the failed job's page and its run in
	// the history, with its output.
	b.run(10*time.Second, "open the hostile failed job", chromedp.Click(chromedp.CSS(`#failed tr[data-id] a`)), chromedp.WaitVisible(chromedp.CSS(`pre.exception`)))
	if h1, title := b.text("h1"), b.title(); h1 != `<script>document.title="pwned"</script>Hostile` || strings.Contains(title, "pwned") {
		t.Errorf("the hostile job's page: heading %q, title %q", h1, title)
	}
	b.shot("failed-job")
	b.run(10*time.Second, "find the hostile run", chromedp.Navigate(base+"/jobs?outcome=failed&q=hostile"), chromedp.WaitVisible(chromedp.CSS(`#jobs tr[data-uuid] a`)))
	b.shot("jobs")
	b.run(10*time.Second, "open the hostile run", chromedp.Click(chromedp.CSS(`#jobs tr[data-uuid] a`)), chromedp.WaitVisible(chromedp.CSS(`pre.output`)))
	if out, title, images := b.text("pre.output"), b.title(), b.count("main img, main script"); !strings.Contains(out, "<script>document.title='pwned by output'</script>") || strings.Contains(title, "pwned") || images != 0 {
		t.Errorf("the hostile run's page: output %q, title %q, %d elements made of job data", out, title, images)
	}
	b.shot("job")
	b.run(10*time.Second, "open the metrics", chromedp.Navigate(base+"/metrics"), chromedp.WaitVisible(chromedp.CSS(`#metrics`)))
	b.shot("metrics")
	// One at a time (max_running): SQLite's job_batches, see TestWeb.
	batch := strings.TrimSpace(app.Artisan(t, "kq:dispatch", "batch", "--count=4", "--queue=batches"))
	b.run(10*time.Second, "open the batches", chromedp.Navigate(base+"/batches"), chromedp.WaitVisible(chromedp.CSS(`#batches tr[data-id] a`)))
	b.shot("batches")
	b.run(30*time.Second, "the batch to run, one job failed", chromedp.Navigate(base+"/batches/"+batch),
		chromedp.Poll[chromedp.Void](`document.querySelector(".state").textContent === "running" && document.body.textContent.includes("1 failed")`, chromedp.WithPollingTimeout(30*time.Second)))
	b.shot("batch")

	// A queue paused from the page stops kqueue and queue:work; resumed,
	// both take its jobs again, each job running once.
	work := app.Command(ctx, "queue:work", "--sleep=0.1")
	work.Cancel = func() error { return work.Process.Signal(syscall.SIGTERM) }
	if err := work.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { work.Process.Signal(syscall.SIGTERM); work.Wait() })
	b.run(10*time.Second, "pause the default queue", chromedp.Navigate(base+"/"),
		chromedp.Click(chromedp.CSS(`tr[data-queue="default"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-queue="default"] .paused`)))
	b.shot("paused")
	runs := testenv.Prefix + "kqtest:runs"
	before := rdb.HLen(ctx, runs).Val()
	// kqueue's workers look at the pause once a second, and fire
	// WorkerQueuePaused (recorded by the probe) when they see it;
	// queue:work looks before each job.
	testenv.Eventually(t, 30*time.Second, "kqueue's workers to see the pause", func() bool {
		return len(probeLog(t, rdb)["worker:WorkerQueuePaused"]) >= 2
	})
	app.Artisan(t, "kq:dispatch", "record", "--count=4", "--from=100")
	testenv.Eventually(t, 30*time.Second, "kqueue status to say the queue is paused", func() bool {
		s, ok := (&laravelApp{app: app, kqueue: kq}).status(t, cfg)
		return ok && strings.Contains(s.Declining, "the queue default is paused")
	})
	testenv.Never(t, 3*time.Second, "a job of the paused queue ran", func() bool {
		return rdb.HLen(ctx, runs).Val() != before
	})
	b.run(10*time.Second, "resume it", chromedp.Click(chromedp.CSS(`tr[data-queue="default"] button`)),
		chromedp.WaitNotPresent(chromedp.CSS(`tr[data-queue="default"] .paused`)))
	testenv.Eventually(t, 30*time.Second, "the jobs to run once resumed", func() bool {
		return rdb.HLen(ctx, runs).Val() == before+4
	})
	for i := 100; i < 104; i++ {
		if n := rdb.HGet(ctx, runs, fmt.Sprintf("record-%d", i)).Val(); n != "1" {
			t.Errorf("record-%d ran %s times", i, n)
		}
	}

	// Refused: an action with a forged CSRF token, and any action of a
	// viewer's. (The page's own script could not send these: the console's
	// CSP allows no script but its own.)
	post := `fetch("/restart", {method: "POST", body: new URLSearchParams({csrf: %q})}).then(r => r.status)`
	if status := get(b, "forge a restart", chromedp.Evaluate[int](fmt.Sprintf(post, "forged"), chromedp.EvalAwaitPromise)); status != 403 {
		t.Errorf("a restart with a forged CSRF token: %d, want 403", status)
	}
	b.run(10*time.Second, "sign in as the viewer", chromedp.Navigate(base+"/login"),
		chromedp.SetValue(chromedp.CSS(`input[name=token]`), viewer), chromedp.Submit(chromedp.CSS(`input[name=token]`)),
		chromedp.WaitVisible(chromedp.CSS(`#queues`)))
	if buttons := b.count("main button, main input[type=checkbox]"); buttons != 0 {
		t.Errorf("the viewer's overview has %d buttons, want none", buttons)
	}
	b.shot("viewer")
	if status := get(b, "a viewer's restart", chromedp.Evaluate[int](fmt.Sprintf(post, "any"), chromedp.EvalAwaitPromise)); status != 403 {
		t.Errorf("a viewer's restart: %d, want 403", status)
	}
}
