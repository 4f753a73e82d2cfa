// Package config reads and checks kqueue.toml: one strict TOML file per
// instance. Unknown keys and wrong types are errors that name the file, the
// line and the key.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/BurntSushi/toml"
)

// Config is one kqueue instance.
type Config struct {
	// File is the path the config was read from ("" when built in code).
	File string `toml:"-"`
	// Name is the instance name: the file's base name without ".toml".
	Name string `toml:"-"`

	App        App        `toml:"app"`
	Redis      Redis      `toml:"redis"`
	Queues     []Queue    `toml:"queue"`
	Pool       Pool       `toml:"pool"`
	Job        Job        `toml:"job"`
	Isolation  Isolation  `toml:"isolation"`
	Rules      []Rule     `toml:"rule"`
	Dispatcher Dispatcher `toml:"dispatcher"`
	Control    Control    `toml:"control"`
	Metrics    Metrics    `toml:"metrics"`
	Web        Web        `toml:"web"`
	Alerts     Alerts     `toml:"alerts"`
	Log        Log        `toml:"log"`

	// Laravel is the app's own queue configuration, once Adopt has
	// completed the config with it; nil before.
	Laravel *Laravel `toml:"-"`
	// set holds the keys the file itself set, of those the app can
	// supply (see Set).
	set map[string]bool
}

// Alerts is where long waits are told besides the log.
type Alerts struct {
	// Webhook is a URL that gets a Slack-compatible JSON message ({"text":
	// …}) when a queue starts waiting too long and when it recovers.
	// Default "" (the log and metrics only).
	Webhook string `toml:"webhook"`
}

// Log is what the log (the journal, under systemd) holds of the jobs.
type Log struct {
	// JobsDone: an entry ("job done") for each job that simply
	// succeeded; off, those are debug entries, and the log holds the jobs
	// that failed, were released, timed out or crashed. journald keeps
	// 10,000 info messages of a service in 30 s by default (a few times
	// more with free disk space) and drops the rest of the 30 s, kqueue's
	// other info messages with them. Default true.
	JobsDone *bool `toml:"jobs_done"`
	// JobsDonePerSecond bounds those entries: past it in a second, the
	// jobs' entries are debug ones, and one info entry after the second
	// says how many ("jobs done beyond [log] jobs_done_per_second"). At
	// the default, 200, they take 6,000 of journald's 10,000 in 30 s. 0:
	// no bound.
	JobsDonePerSecond *int `toml:"jobs_done_per_second"`
}

// Done reports whether each job that succeeded gets an entry of its own.
func (l Log) Done() bool { return l.JobsDone == nil || *l.JobsDone }

// DonePerSecond is JobsDonePerSecond, with its default.
func (l Log) DonePerSecond() int {
	if l.JobsDonePerSecond == nil {
		return 200
	}
	return *l.JobsDonePerSecond
}

// Metrics is the Prometheus endpoint.
type Metrics struct {
	// Listen is the address of /metrics ("127.0.0.1:9464"). Default ""
	// (off).
	Listen string `toml:"listen"`
}

// Web is the console, `kqueue web`. Without tokens or user_header it
// serves only where nobody else reaches: loopback or a unix socket.
type Web struct {
	// Listen is where `kqueue web` listens without systemd: an address
	// ("127.0.0.1:7380", the default) or "unix:PATH". Under systemd the
	// socket unit kqueue-web@NAME.socket says.
	Listen string `toml:"listen"`
	// Tokens is a file of "ROLE TOKEN" lines (ROLE: operator or viewer):
	// a request carries one as "Authorization: Bearer TOKEN", or signs in
	// with it on the console's page.
	Tokens string `toml:"tokens"`
	// UserHeader names the header in which a reverse proxy in front of
	// the console passes the user it authenticated ("X-Forwarded-User").
	UserHeader string `toml:"user_header"`
	// Operators are the UserHeader users who may act; the others view.
	Operators []string `toml:"operators"`
	// LocalRole is the role of a request without tokens or UserHeader
	// set, on loopback or a unix socket: "operator" (default) or "viewer".
	LocalRole string `toml:"local_role"`
	// History is how many job runs the store keeps for the console's Jobs
	// page, each with its payload (up to 8 KiB) and output (up to 4 KiB).
	// Default 20000; -1 keeps none.
	History int `toml:"history"`
}

// Control is where `kqueue status` reaches a running instance.
type Control struct {
	// Socket is the unix socket path. Default "/run/kqueue/NAME.control".
	Socket string `toml:"socket"`
}

// Isolation is how isolated jobs run: each in its own process and cgroup.
type Isolation struct {
	// Driver is "auto" (default: systemd under systemd on cgroup v2, else
	// cgroupfs where it works, else none), "systemd", "cgroupfs" or
	// "none" (no limits, with a warning).
	Driver string `toml:"driver"`
	// MaxConcurrent caps isolated jobs running at once, apart from the
	// warm pool. Default 2.
	MaxConcurrent int `toml:"max_concurrent"`
	// Memory is the memory limit of an isolated job that sets none.
	// Default "512M"; "0" = none.
	Memory Size `toml:"memory"`
	// CPU is the CPU limit in percent of one core. Default 0 (none).
	CPU int `toml:"cpu"`
	// Tasks caps processes and threads of an isolated job. Default 256.
	Tasks int `toml:"tasks"`
	// Fresh starts a fresh PHP process per isolated job (a Laravel boot,
	// ~100 ms) instead of forking a booted template (a few ms). Default
	// false.
	Fresh bool `toml:"fresh"`
}

// Rule chooses how matching jobs run. The first rule that matches wins; a
// job's own properties ($isolated, $maxMemory, $cpu, $timeout) win over it.
type Rule struct {
	// Class is a glob on the job class ("App\\Jobs\\Video*").
	Class string `toml:"class"`
	// Queue is a queue name the rule is limited to.
	Queue string `toml:"queue"`
	// Strategy is "inline" or "isolated".
	Strategy string `toml:"strategy"`
	// Memory, CPU and Tasks are the isolated job's limits.
	Memory Size `toml:"memory"`
	CPU    int  `toml:"cpu"`
	Tasks  int  `toml:"tasks"`
	// Timeout is the job's timeout when its payload has none.
	Timeout Duration `toml:"timeout"`
}

// App is the Laravel application the jobs belong to.
type App struct {
	// Path is the Laravel app root (the folder holding artisan). Required.
	Path string `toml:"path"`
	// PHP is the php binary. Default: "php" looked up in PATH.
	PHP string `toml:"php"`
	// Connection is the Laravel queue connection name the jobs come from;
	// it is what failed_jobs.connection records. Default: the app's default
	// connection (config/queue.php default, QUEUE_CONNECTION), filled in by
	// Adopt.
	Connection string `toml:"connection"`
	// Env is added to the PHP workers' environment (it wins over the
	// daemon's own environment, and Laravel's .env does not override it).
	Env map[string]string `toml:"env"`
	// User is the account the PHP workers run as (a name, e.g.
	// "www-data"): kqueue starts them with its uid, gid and groups.
	// Default: kqueue's own user. Running as root, set it.
	User string `toml:"user"`
	// Writable lists what PHP may write besides the app's storage/ and
	// bootstrap/cache/ (paths relative to Path, or absolute): under
	// systemd the rest of the filesystem is read-only to the dispatcher
	// and its jobs (an SQLite database's folder, an uploads folder).
	Writable []string `toml:"writable"`
}

// Redis is where Laravel's queues live: one server (URL), a Redis Cluster
// (Cluster) or a Sentinel-managed primary (SentinelMaster and Sentinels).
type Redis struct {
	// URL is a redis:// or unix:// URL. Default: the app's (Adopt: the
	// Redis connection of its queue connection); without the app,
	// "redis://127.0.0.1:6379/0". It excludes Cluster and Sentinels.
	URL string `toml:"url"`
	// Cluster lists Redis Cluster nodes to start from ("10.0.0.1:6379"); the
	// rest are discovered. Every queue name must then carry a hash tag
	// ("{default}"), as Laravel documents. Default none.
	Cluster []string `toml:"cluster"`
	// SentinelMaster is the name Sentinel knows the primary by ("mymaster").
	// Set with Sentinels. Default "".
	SentinelMaster string `toml:"sentinel_master"`
	// Sentinels lists the Sentinel addresses ("10.0.0.1:26379"). Default
	// none.
	Sentinels []string `toml:"sentinels"`
	// Password authenticates to the Cluster nodes or to the Sentinel-managed
	// primary and replicas (with url, write it in the URL). Default "".
	Password string `toml:"password"`
	// Prefix is the Laravel Redis client prefix put in front of every key.
	// Default: the app's (Adopt: as its client applies it); without the
	// app, "laravel_database_" (the Laravel 8 skeleton's).
	Prefix *string `toml:"prefix"`
	// RetryAfter is Laravel's retry_after: how long a reservation lasts
	// before another worker may take the job. Default: the app's queue
	// connection's (Adopt); without the app, 90s.
	RetryAfter Duration `toml:"retry_after"`
}

// Queue is one Laravel queue to consume, in priority order.
type Queue struct {
	// Name is the queue name as Laravel knows it ("default", "{high}").
	Name string `toml:"name"`
	// Weight, when any queue sets one, switches from strict priority (the
	// order of [[queue]] entries) to weighted random choice. Default 0.
	Weight int `toml:"weight"`
	// RetryAfter overrides redis.retry_after for this queue. Default:
	// redis.retry_after.
	RetryAfter Duration `toml:"retry_after"`
	// MaxRunning caps how many of this queue's jobs run at once (0: no
	// cap), so that a flood of slow jobs leaves workers to other queues.
	MaxRunning int `toml:"max_running"`
	// FleetMaxRunning caps how many of this queue's jobs are reserved at
	// once across every consumer of the queue — every kqueue instance,
	// and queue:work too (0: no cap). Redis only: reservations are
	// Laravel's, and lapse after retry_after when a host dies.
	FleetMaxRunning int `toml:"fleet_max_running"`
	// AlertWait is how long the queue's jobs may wait before kqueue warns
	// (Horizon's "waits"). Default 60s; "0" = never.
	AlertWait Duration `toml:"alert_wait"`
	// ScaleWait is the wait above which the pool grows for this queue.
	// Default pool.scale_wait.
	ScaleWait Duration `toml:"scale_wait"`
}

// Pool is the warm pool of PHP workers.
type Pool struct {
	// Workers is the number of PHP workers. Default: the number of CPUs,
	// or min_workers when max_workers is set.
	Workers int `toml:"workers"`
	// MinWorkers and MaxWorkers, instead of Workers, let the pool scale:
	// it starts at MinWorkers (default 1), grows while jobs wait longer
	// than ScaleWait and the host has room, up to MaxWorkers, and shrinks
	// back after ScaleCooldown without need.
	MinWorkers int `toml:"min_workers"`
	MaxWorkers int `toml:"max_workers"`
	// ScaleWait is the queues' wait above which the pool grows, unless a
	// queue sets its own. Default 1s.
	ScaleWait Duration `toml:"scale_wait"`
	// ScaleCooldown is how long workers must have been more than needed
	// before the pool shrinks. Default 60s.
	ScaleCooldown Duration `toml:"scale_cooldown"`
	// MemoryBudget caps the memory the workers and isolated jobs may use
	// together: the pool does not grow past it. Default: what is left in
	// the service's cgroup (MemoryMax) and on the host.
	MemoryBudget Size `toml:"memory_budget"`
	// ScaleMaxCPU is the host's CPU use, in percent, at and above which
	// the pool does not grow (more workers would only share the same
	// CPUs). Default 95; 100 = never held by CPU.
	ScaleMaxCPU int `toml:"scale_max_cpu"`
	// MaxJobs recycles a worker after this many jobs. Default 0 (never).
	MaxJobs int `toml:"max_jobs"`
	// MaxMemory recycles a worker whose resident memory (measured from
	// outside) passes this size after a job. Default "256M"; "0" = never.
	MaxMemory Size `toml:"max_memory"`
	// MaxLifetime recycles a worker after this long. Default 0 (never).
	MaxLifetime Duration `toml:"max_lifetime"`
	// Nice runs the PHP processes this many nice levels below kqueue's
	// own priority (Horizon's nice), 0 to 19. Default 0.
	Nice int `toml:"nice"`
	// IdleExit lets the dispatcher exit after this long without work; its
	// socket starts it again for the next job (scale to zero under
	// systemd). Default 0 (never). Only kqueue@NAME's two-process setup
	// uses it; kqueue run ignores it.
	IdleExit Duration `toml:"idle_exit"`
}

// Job holds the defaults for what a job's payload does not say, as
// queue:work's flags do.
type Job struct {
	// Timeout is the job timeout when the payload has none. Default 60s;
	// "0" = none.
	Timeout Duration `toml:"timeout"`
	// Tries is the default maximum attempts (queue:work --tries). Default 1;
	// 0 = unlimited.
	Tries *int `toml:"tries"`
	// Backoff is the default backoff in seconds, one number or a
	// comma-separated list (queue:work --backoff). Default "0".
	Backoff string `toml:"backoff"`
	// ShutdownTimeout bounds how long a stop waits for running jobs.
	// Default 30s.
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	// Force runs jobs while the app is down for maintenance (queue:work
	// --force). Default false: as queue:work, kqueue runs nothing then.
	Force bool `toml:"force"`
}

// Dispatcher is where the poller and the dispatcher meet.
type Dispatcher struct {
	// Socket is the unix socket path. Default "/run/kqueue/NAME.sock".
	Socket string `toml:"socket"`
}

// Defaults that the documentation promises.
const (
	DefaultURL        = "redis://127.0.0.1:6379/0"
	DefaultPrefix     = "laravel_database_"
	DefaultRetryAfter = 90 * time.Second
	DefaultTimeout    = 60 * time.Second
	DefaultMaxMemory  = 256 << 20
	DefaultAlertWait  = time.Minute
)

var typeError = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "([^"]*)"\): (.*)$`)

// Load reads, checks and completes the config file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load for a config already in memory; path is used in messages
// and for the instance name.
func Parse(path string, data []byte) (*Config, error) {
	var c Config
	md, err := toml.Decode(string(data), &c)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return nil, &Error{File: path, Line: perr.Position.Line, Key: perr.LastKey, Msg: perr.Message}
		}
		// Type errors come as text: "toml: line N (last key "K"): …".
		if m := typeError.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			return nil, &Error{File: path, Line: line, Key: m[2], Msg: m[3]}
		}
		return nil, &Error{File: path, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		key := undecoded[0]
		return nil, &Error{
			File: path,
			Line: lineOf(data, key),
			Key:  key.String(),
			Msg:  "unknown key" + suggest(key),
		}
	}
	c.File = path
	c.Name = strings.TrimSuffix(filepath.Base(path), ".toml")
	c.set = map[string]bool{
		"app.connection":    c.App.Connection != "",
		"redis.url":         c.Redis.URL != "",
		"redis.prefix":      c.Redis.Prefix != nil,
		"redis.retry_after": c.Redis.RetryAfter != 0,
		"queue":             len(c.Queues) > 0,
		"job.timeout":       c.Job.Timeout != 0,
	}
	for i, q := range c.Queues {
		c.set[fmt.Sprintf("queue[%d].retry_after", i)] = q.RetryAfter != 0
	}
	if err := c.complete(); err != nil {
		var cerr *Error
		if errors.As(err, &cerr) {
			cerr.File = path
			cerr.Line = lineOf(data, toml.Key(strings.Split(cerr.Key, ".")))
		}
		return nil, err
	}
	return &c, nil
}

// complete fills in defaults and checks values.
func (c *Config) complete() error {
	if c.App.Path == "" {
		return &Error{Key: "app.path", Msg: "missing: set it to the Laravel app root (the folder with artisan)"}
	}
	if !filepath.IsAbs(c.App.Path) && c.File != "" {
		c.App.Path = filepath.Join(filepath.Dir(c.File), c.App.Path)
	}
	c.App.PHP = cmp.Or(c.App.PHP, "php")
	for _, p := range c.App.Writable {
		if strings.ContainsFunc(p, unicode.IsControl) || p == "" {
			return &Error{Key: "app.writable", Msg: fmt.Sprintf("%q is not a path kqueue can open to the jobs: name a folder, without control characters", p)}
		}
	}
	if c.App.User != "" {
		if _, err := user.Lookup(c.App.User); err != nil {
			return &Error{Key: "app.user", Msg: fmt.Sprintf("no such user %q: name the account your app runs as (e.g. www-data)", c.App.User)}
		}
	}

	if err := c.Redis.complete(); err != nil {
		return err
	}
	if c.Redis.Prefix == nil {
		p := DefaultPrefix
		c.Redis.Prefix = &p
	}
	if c.Redis.RetryAfter < 0 {
		return &Error{Key: "redis.retry_after", Msg: "must be more than 0 seconds"}
	}
	c.Redis.RetryAfter = cmp.Or(c.Redis.RetryAfter, Duration(DefaultRetryAfter))

	if len(c.Queues) == 0 {
		c.Queues = []Queue{{Name: "default"}}
	}
	seen := map[string]bool{}
	for i := range c.Queues {
		q := &c.Queues[i]
		key := fmt.Sprintf("queue[%d]", i)
		if q.Name == "" {
			return &Error{Key: key + ".name", Msg: "missing: every [[queue]] needs a name"}
		}
		if seen[q.Name] {
			return &Error{Key: key + ".name", Msg: fmt.Sprintf("queue %q is listed twice", q.Name)}
		}
		seen[q.Name] = true
		if c.Redis.Mode() == Cluster {
			if err := slotSafe(*c.Redis.Prefix, q.Name); err != nil {
				return &Error{Key: key + ".name", Msg: err.Error()}
			}
		}
		if q.Weight < 0 {
			return &Error{Key: key + ".weight", Msg: "must not be negative"}
		}
		if q.RetryAfter < 0 {
			return &Error{Key: key + ".retry_after", Msg: "must be more than 0 seconds"}
		}
		if q.MaxRunning < 0 {
			return &Error{Key: key + ".max_running", Msg: "must be 0 (no cap) or more"}
		}
		if q.FleetMaxRunning < 0 {
			return &Error{Key: key + ".fleet_max_running", Msg: "must be 0 (no cap) or more"}
		}
		if q.AlertWait == 0 {
			q.AlertWait = Duration(DefaultAlertWait)
		}
		q.RetryAfter = cmp.Or(q.RetryAfter, c.Redis.RetryAfter)
	}

	if err := c.Pool.complete(); err != nil {
		return err
	}
	for i := range c.Queues {
		c.Queues[i].ScaleWait = cmp.Or(c.Queues[i].ScaleWait, c.Pool.ScaleWait)
	}
	if c.Alerts.Webhook != "" {
		if u, err := url.Parse(c.Alerts.Webhook); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return &Error{Key: "alerts.webhook", Msg: "want an http:// or https:// URL"}
		}
	}
	if c.Pool.MaxJobs < 0 {
		return &Error{Key: "pool.max_jobs", Msg: "must not be negative"}
	}
	if n := c.Log.JobsDonePerSecond; n != nil && *n < 0 {
		return &Error{Key: "log.jobs_done_per_second", Msg: fmt.Sprintf("want a number of entries a second, or 0 for no bound; got %d", *n)}
	}
	if c.Pool.Nice < 0 || c.Pool.Nice > 19 {
		return &Error{Key: "pool.nice", Msg: fmt.Sprintf("want 0 to 19 (how many nice levels below kqueue's own the PHP processes run); got %d", c.Pool.Nice)}
	}
	if c.Pool.MaxMemory == 0 {
		c.Pool.MaxMemory = DefaultMaxMemory
	} else if c.Pool.MaxMemory < 0 {
		c.Pool.MaxMemory = 0 // "0" was written: never
	}

	if c.Job.Timeout == 0 {
		c.Job.Timeout = Duration(DefaultTimeout)
	} else if c.Job.Timeout < 0 {
		c.Job.Timeout = 0 // "0" was written: none
	}
	if c.Job.Tries == nil {
		one := 1
		c.Job.Tries = &one
	} else if *c.Job.Tries < 0 {
		return &Error{Key: "job.tries", Msg: "must not be negative (0 = unlimited)"}
	}
	c.Job.Backoff = cmp.Or(strings.ReplaceAll(c.Job.Backoff, " ", ""), "0")
	for _, part := range strings.Split(c.Job.Backoff, ",") {
		if _, err := parseSeconds(part); err != nil {
			return &Error{Key: "job.backoff", Msg: fmt.Sprintf("want seconds or a comma-separated list of seconds like \"5,30,60\", got %q", c.Job.Backoff)}
		}
	}
	c.Job.ShutdownTimeout = cmp.Or(c.Job.ShutdownTimeout, Duration(30*time.Second))

	c.Isolation.Driver = cmp.Or(c.Isolation.Driver, "auto")
	switch c.Isolation.Driver {
	case "auto", "systemd", "cgroupfs", "none":
	default:
		return &Error{Key: "isolation.driver", Msg: fmt.Sprintf("want auto, systemd, cgroupfs or none, got %q", c.Isolation.Driver)}
	}
	if c.Isolation.MaxConcurrent < 0 || c.Isolation.CPU < 0 || c.Isolation.Tasks < 0 {
		return &Error{Key: "isolation", Msg: "max_concurrent, cpu and tasks must not be negative"}
	}
	c.Isolation.MaxConcurrent = cmp.Or(c.Isolation.MaxConcurrent, 2)
	c.Isolation.Memory = cmp.Or(c.Isolation.Memory, Size(512<<20))
	c.Isolation.Tasks = cmp.Or(c.Isolation.Tasks, 256)
	for i, r := range c.Rules {
		key := fmt.Sprintf("rule[%d]", i)
		if r.Class == "" && r.Queue == "" {
			return &Error{Key: key, Msg: "a rule needs a class glob, a queue, or both"}
		}
		if _, err := path.Match(r.Class, ""); err != nil {
			return &Error{Key: key + ".class", Msg: fmt.Sprintf("bad glob %q: %v", r.Class, err)}
		}
		switch r.Strategy {
		case "", "inline", "isolated":
		default:
			return &Error{Key: key + ".strategy", Msg: fmt.Sprintf("want inline or isolated, got %q", r.Strategy)}
		}
		if r.CPU < 0 || r.Tasks < 0 {
			return &Error{Key: key, Msg: "cpu and tasks must not be negative"}
		}
	}

	if c.Dispatcher.Socket == "" {
		c.Dispatcher.Socket = "/run/kqueue/" + cmp.Or(c.Name, "default") + ".sock"
	}
	if c.Control.Socket == "" {
		c.Control.Socket = "/run/kqueue/" + cmp.Or(c.Name, "default") + ".control"
	}
	c.Web.Listen = cmp.Or(c.Web.Listen, "127.0.0.1:7380")
	c.Web.LocalRole = cmp.Or(c.Web.LocalRole, "operator")
	switch {
	case c.Web.History == 0:
		c.Web.History = 20000
	case c.Web.History < -1:
		return &Error{Key: "web.history", Msg: fmt.Sprintf("want a number of jobs, or -1 for none; got %d", c.Web.History)}
	}
	if c.Web.LocalRole != "operator" && c.Web.LocalRole != "viewer" {
		return &Error{Key: "web.local_role", Msg: fmt.Sprintf("want operator or viewer, got %q", c.Web.LocalRole)}
	}
	if c.Web.Tokens != "" && c.Web.UserHeader != "" {
		return &Error{Key: "web.user_header", Msg: "set web.tokens or web.user_header, not both: a request without a valid token would be let in by the header alone"}
	}
	if len(c.Web.Operators) > 0 && c.Web.UserHeader == "" {
		return &Error{Key: "web.operators", Msg: "operators name users of web.user_header, which is not set"}
	}
	return nil
}

// complete checks the pool's size: fixed (workers) or scaling (min_workers
// to max_workers).
func (p *Pool) complete() error {
	switch {
	case p.Workers < 0:
		return &Error{Key: "pool.workers", Msg: "must be at least 1"}
	case p.MinWorkers < 0 || p.MaxWorkers < 0:
		return &Error{Key: "pool.max_workers", Msg: "min_workers and max_workers must be at least 1"}
	case p.MaxWorkers == 0 && p.MinWorkers > 0:
		return &Error{Key: "pool.min_workers", Msg: "min_workers needs max_workers: set both to let the pool scale, or workers for a fixed pool"}
	case p.MaxWorkers > 0 && p.Workers > 0:
		return &Error{Key: "pool.workers", Msg: "set workers (a fixed pool) or min_workers and max_workers (a pool that scales), not both"}
	case p.MaxWorkers > 0:
		p.MinWorkers = cmp.Or(p.MinWorkers, 1)
		if p.MinWorkers > p.MaxWorkers {
			return &Error{Key: "pool.min_workers", Msg: fmt.Sprintf("min_workers (%d) is more than max_workers (%d)", p.MinWorkers, p.MaxWorkers)}
		}
		p.Workers = p.MinWorkers
	default:
		p.Workers = cmp.Or(p.Workers, runtime.NumCPU())
		p.MinWorkers, p.MaxWorkers = p.Workers, p.Workers
	}
	p.ScaleWait = cmp.Or(p.ScaleWait, Duration(time.Second))
	p.ScaleCooldown = cmp.Or(p.ScaleCooldown, Duration(time.Minute))
	if p.MemoryBudget < 0 {
		p.MemoryBudget = 0
	}
	if p.ScaleMaxCPU < 0 || p.ScaleMaxCPU > 100 {
		return &Error{Key: "pool.scale_max_cpu", Msg: fmt.Sprintf("want a percentage from 1 to 100, got %d", p.ScaleMaxCPU)}
	}
	p.ScaleMaxCPU = cmp.Or(p.ScaleMaxCPU, 95)
	return nil
}

// Scales reports whether the pool's size follows the load.
func (p Pool) Scales() bool { return p.MaxWorkers > p.MinWorkers }

// UnitStopTimeout is the TimeoutStopSec of the shipped units, and
// StopGrace how long a stopping poller waits beyond job.shutdown_timeout
// for the outcomes of the dispatcher's hard stop (poller.HardStopGrace).
// A stop must fit: systemd kills what is still running at TimeoutStopSec.
const (
	UnitStopTimeout = 60 * time.Second
	StopGrace       = 10 * time.Second
)

// Risks lists the settings that are legal but dangerous, for the start-up
// log.
func (c *Config) Risks() []string {
	var risks []string
	if need := c.Job.ShutdownTimeout.D() + StopGrace; need >= UnitStopTimeout {
		risks = append(risks, fmt.Sprintf(
			"job.shutdown_timeout (%s) + %s for the hard stop's outcomes >= the units' TimeoutStopSec (%s): under systemd, a stop is killed before the jobs it interrupts are released; add a drop-in with TimeoutStopSec=%ds or more to kqueue@.service and kqueue-dispatcher@.service",
			c.Job.ShutdownTimeout.D(), StopGrace, UnitStopTimeout, int((need+UnitStopTimeout/6)/time.Second)))
	}
	for _, q := range c.Queues {
		if c.Job.Timeout > 0 && c.Job.Timeout >= q.RetryAfter {
			whose := ""
			if !c.Set("job.timeout") {
				whose = ", kqueue's default"
			}
			risks = append(risks, fmt.Sprintf(
				"job.timeout (%s%s) >= retry_after (%s) of queue %q: harmless while only kqueue consumes this queue (it extends its own reservations), "+
					"but a queue:work worker sharing it may run a job that runs longer than retry_after a second time; "+
					"to be safe, set [job] timeout below retry_after, or raise retry_after in the app's queue connection",
				c.Job.Timeout, whose, q.RetryAfter, q.Name))
		}
	}
	if c.Pool.MaxMemory == 0 && c.Pool.MaxJobs == 0 && c.Pool.MaxLifetime == 0 {
		risks = append(risks, "pool.max_memory, max_jobs and max_lifetime are all off: a leaking job will grow its worker without bound")
	}
	return risks
}

func redisOptions(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %w", err)
	}
	switch u.Scheme {
	case "redis", "rediss", "unix":
		return u, nil
	}
	return nil, fmt.Errorf("want a redis://, rediss:// or unix:// URL, got %q", raw)
}

// Error is a config problem, located as precisely as possible.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(cmp.Or(e.File, "config"))
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	fmt.Fprintf(&b, ": %s", e.Msg)
	return b.String()
}
