// Package exec is kqueue's dispatcher: it receives jobs from the poller,
// runs each in a warm pool of PHP workers that booted the Laravel app once,
// enforces every job's deadline from outside PHP, replaces workers that die
// or grow, and sends back one outcome per job.
//
// Inside this package the standard library's os/exec is imported as osexec.
package exec

import (
	"cmp"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kqueue/kqueue/cgroup"
)

// Config configures a Dispatcher.
type Config struct {
	// AppPath is the Laravel app root. Required.
	AppPath string
	// PHP is the php binary. Default "php".
	PHP string
	// User runs the PHP workers as this account (uid, gid, groups); nil:
	// as the dispatcher's own.
	User *syscall.Credential
	// Connection is the Laravel queue connection name. Default: the app's
	// default connection (config/queue.php default, QUEUE_CONNECTION).
	Connection string
	// Env is added to the workers' environment, after the daemon's own
	// minus systemd's variables.
	Env map[string]string
	// Workers is the pool size, or where a pool that scales starts.
	// Default 1.
	Workers int
	// MaxWorkers, above Workers, lets the pool grow while jobs wait (the
	// poller's Demand) and the host has room, and shrink back to Workers
	// after ScaleCooldown without need (see scaler).
	MaxWorkers    int
	ScaleCooldown time.Duration
	// MemoryBudget caps what the workers and isolated jobs hold together:
	// the pool does not grow past it. 0: the cgroup's and host's memory
	// only.
	MemoryBudget int64
	// ScaleMaxCPU is the share of the host's CPUs in use (0 to 1) at and
	// above which the pool does not grow. Default 0.95; 1: never held.
	ScaleMaxCPU float64
	// MaxJobs recycles a worker after this many jobs. 0: never.
	MaxJobs int
	// MaxMemory recycles a worker whose resident memory passes this many
	// bytes after a job. 0: never.
	MaxMemory int64
	// MaxLifetime recycles a worker after this long. 0: never.
	MaxLifetime time.Duration
	// Nice is how many nice levels below the daemon's the PHP processes
	// run (0 to 19).
	Nice int
	// Timeout is the deadline of a job whose payload has no timeout.
	// 0: none.
	Timeout time.Duration
	// Tries is queue:work's --tries for jobs that do not say. Default 0
	// here means unlimited, as in Laravel; callers pass 1 for Laravel's
	// default.
	Tries int
	// Queues names the instance's queues, as queue:work's --queue would
	// (for the worker events Laravel fires with them). Default: the
	// connection's queue.
	Queues []string
	// Force runs jobs while the app is down for maintenance (queue:work
	// --force).
	Force bool
	// NoPrefetch takes no more jobs than the workers can start now: for a
	// store that counts an attempt when a job is taken (SQS), so that no
	// job waits in the dispatcher charged for a run it may never get.
	NoPrefetch bool
	// Backoff is queue:work's --backoff ("0", "5,30"). Default "0".
	Backoff string
	// BootTimeout bounds a worker's boot. Default 60s.
	BootTimeout time.Duration
	// ShutdownTimeout is how long running jobs may finish once the
	// dispatcher stops, before it stops them hard (see ServeConn).
	// Default 30s.
	ShutdownTimeout time.Duration
	// StopGrace is how long an idle worker may take to exit. Default 5s.
	StopGrace time.Duration

	// Isolation runs isolated jobs; nil: every job runs inline.
	Isolation *Isolation
	// Rules choose strategies (config [[rule]]), first match first.
	Rules []Rule
}

// Isolation configures isolated jobs.
type Isolation struct {
	// Driver makes each job's cgroup. Required.
	Driver cgroup.Driver
	// MaxConcurrent caps isolated jobs running at once. Default 2.
	MaxConcurrent int
	// Limits apply to isolated jobs that set none themselves.
	Limits cgroup.Limits
	// Fresh starts a fresh PHP process (a full Laravel boot) per isolated
	// job instead of forking a booted template.
	Fresh bool
}

func (c *Config) setDefaults() {
	c.PHP = cmp.Or(c.PHP, "php")
	c.Workers = max(c.Workers, 1)
	c.ScaleCooldown = cmp.Or(c.ScaleCooldown, time.Minute)
	c.ScaleMaxCPU = cmp.Or(c.ScaleMaxCPU, 0.95)
	c.Backoff = cmp.Or(c.Backoff, "0")
	c.BootTimeout = cmp.Or(c.BootTimeout, 60*time.Second)
	c.StopGrace = cmp.Or(c.StopGrace, 5*time.Second)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, 30*time.Second)
}

// env is the workers' environment: the daemon's, without systemd's own
// variables, plus the app's and worker.php's settings.
func (c *Config) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case name == "NOTIFY_SOCKET", name == "JOURNAL_STREAM", name == "INVOCATION_ID",
			strings.HasPrefix(name, "LISTEN_"), strings.HasPrefix(name, "WATCHDOG_"),
			strings.HasPrefix(name, "KQUEUE_"):
			continue
		}
		if _, overridden := c.Env[name]; overridden {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range c.Env {
		env = append(env, k+"="+v)
	}
	return append(env,
		"KQUEUE_APP_PATH="+c.AppPath,
		"KQUEUE_CONNECTION="+c.Connection,
		"KQUEUE_TRIES="+strconv.Itoa(c.Tries),
		"KQUEUE_BACKOFF="+c.Backoff,
		"KQUEUE_QUEUES="+strings.Join(c.Queues, ","),
		"KQUEUE_FORCE="+map[bool]string{true: "1"}[c.Force],
	)
}

// settings holds the dispatcher's current Config. A reload swaps it; each
// reader takes one consistent snapshot with get.
type settings struct{ p atomic.Pointer[Config] }

func newSettings(c Config) *settings {
	s := &settings{}
	s.p.Store(&c)
	return s
}

func (s *settings) get() *Config { return s.p.Load() }
