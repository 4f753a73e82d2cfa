package exec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kqueue/kqueue/cgroup"
)

// A class whose defaults cannot be learned because asking kills the worker
// is not taken to have none (before, one death was cached as "no
// defaults", and an $isolated class then ran inline, unlimited, until the
// next reload): asked again by the next worker, and after a second death
// run isolated, where what it does is inside limits.
func TestClassThatKillsItsWorkerRunsIsolated(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, func(c *Config) {
		c.Isolation = &Isolation{Driver: cgroup.None{}, Fresh: true}
	})
	if err := os.WriteFile(filepath.Join(h.app.Path, "app", "Jobs", "DiesOnLoad.php"), []byte("<?php\nexit(3);\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const class = `App\\Jobs\\DiesOnLoad`
	payload := `{"uuid":"dies-1","displayName":"App\\Jobs\\DiesOnLoad","job":"Illuminate\\Queue\\CallQueuedHandler@call",` +
		`"maxTries":null,"maxExceptions":null,"backoff":null,"timeout":null,"retryUntil":null,` +
		`"data":{"commandName":"` + class + `","command":"O:19:\"App\\Jobs\\DiesOnLoad\":0:{}"},"id":"d1","attempts":0}`
	o := h.run(payload)
	if !strings.HasPrefix(o.Strategy, "isolated") {
		t.Errorf("outcome %+v: ran %q, want isolated", o, o.Strategy)
	}
}
