package config

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Laravel is what a Laravel app's own configuration says about its queue:
// the answer of exec/php/appconfig.php, which boots the app once.
type Laravel struct {
	// Version is the app's Laravel version ("8.83.27").
	Version string `json:"laravel"`
	// PHP is the PHP version that booted it.
	PHP string `json:"php"`
	// DefaultConnection is config/queue.php default (QUEUE_CONNECTION).
	DefaultConnection string `json:"default_connection"`
	// Connection is the queue connection described: [app] connection, or
	// the default.
	Connection string `json:"connection"`
	// Queue is that connection's config/queue.php entry.
	Queue LaravelQueue `json:"queue"`
	// Redis is the Redis connection it uses; nil unless Queue.Driver is
	// "redis".
	Redis *LaravelRedis `json:"redis"`
	// Database is the database connection and table it uses; nil unless
	// Queue.Driver is "database".
	Database *LaravelDatabase `json:"database"`
	// SQS is the SQS connection's settings; nil unless Queue.Driver is
	// "sqs".
	SQS *LaravelSQS `json:"sqs"`
	// Cache is the default cache store, where queue:restart leaves its
	// signal.
	Cache LaravelCache `json:"cache"`
	// Failed is config/queue.php failed: where failed jobs are recorded.
	Failed LaravelFailed `json:"failed"`
}

// LaravelQueue is a queue connection (config/queue.php connections.NAME).
type LaravelQueue struct {
	Driver      string `json:"driver"`
	Connection  string `json:"connection"` // the Redis connection's name
	Queue       string `json:"queue"`      // the default queue
	RetryAfter  *int   `json:"retry_after"`
	BlockFor    *int   `json:"block_for"`
	AfterCommit bool   `json:"after_commit"`
}

// LaravelRedis is a Redis connection (config/database.php redis.NAME) as
// the app's client sees it: its url merged over host, port, … and the key
// prefix as the client applies it.
type LaravelRedis struct {
	Name     string  `json:"name"`
	Client   string  `json:"client"` // phpredis or predis
	Cluster  bool    `json:"cluster"`
	URL      *string `json:"url"`
	Scheme   *string `json:"scheme"`
	Host     *string `json:"host"`
	Port     *int    `json:"port"`
	Username *string `json:"username"`
	Password *string `json:"password"`
	Database *int    `json:"database"`
	Prefix   string  `json:"prefix"`
	// PrefixFrom is "client" when the prefix was read from a live client
	// (phpredis OPT_PREFIX), "config" when Redis was out of reach and it
	// was read from the config as the client would merge it.
	PrefixFrom string `json:"prefix_from"`
}

// LaravelDatabase is the jobs table of a database queue connection, and
// the database connection (config/database.php connections.NAME) it is
// in, as Laravel's DatabaseManager reads it (its url merged over the rest).
type LaravelDatabase struct {
	// Table is the queue connection's table ("jobs"), without the
	// connection's Prefix.
	Table string `json:"table"`
	// Name is the database connection's name ("mysql").
	Name string `json:"name"`
	// Driver is "mysql", "mariadb", "pgsql", "sqlite" or another Laravel
	// driver kqueue does not read ("sqlsrv").
	Driver   string  `json:"driver"`
	Host     *string `json:"host"`
	Port     *int    `json:"port"`
	Socket   *string `json:"unix_socket"`
	Database string  `json:"database"` // the database's name; SQLite: the file
	Username *string `json:"username"`
	Password *string `json:"password"`
	Prefix   string  `json:"prefix"` // put in front of table names
	// Schema is PostgreSQL's search_path (Laravel 8: schema).
	Schema  *string `json:"search_path"`
	SSLMode *string `json:"sslmode"`
	Charset *string `json:"charset"`
	// BusyTimeout is SQLite's busy_timeout in milliseconds (Laravel 11+).
	BusyTimeout *int `json:"busy_timeout"`
}

// TableName is the jobs table's name in the database: the connection's
// prefix and the queue connection's table.
func (d *LaravelDatabase) TableName() string { return d.Prefix + cmp.Or(d.Table, "jobs") }

// Where says where the database settings come from, for messages.
func (d *LaravelDatabase) Where() string { return "config/database.php connections." + d.Name }

// LaravelSQS is an SQS queue connection (config/queue.php
// connections.NAME with the sqs driver) as Laravel's SqsConnector reads
// it. Secret and Token are never logged.
type LaravelSQS struct {
	Key      *string `json:"key"`
	Secret   *string `json:"secret"`
	Token    *string `json:"token"`
	Region   *string `json:"region"`
	Prefix   string  `json:"prefix"`
	Suffix   string  `json:"suffix"`
	Queue    *string `json:"queue"`
	Endpoint *string `json:"endpoint"`
	// Credentials names a credential provider Laravel 12+ configures
	// ("ecs", "instance"); nil when unset.
	Credentials *string `json:"credentials"`
	// Overflow is connections.NAME.overflow.enabled (Laravel 13): large
	// payloads kept in the app's cache, a pointer in the message.
	Overflow bool `json:"overflow"`
}

// QueueURL is the URL of the queue named name, as Laravel's
// SqsQueue::getQueue makes it: a name that is a URL already is taken as
// it is; otherwise prefix/name with the suffix (which goes before a
// ".fifo" ending).
func (s *LaravelSQS) QueueURL(name string) string {
	if u, err := url.Parse(name); err == nil && u.Scheme != "" && u.Host != "" {
		return name
	}
	fifo := strings.HasSuffix(name, ".fifo")
	if fifo {
		name = strings.TrimSuffix(name, ".fifo")
	}
	if s.Suffix != "" && !strings.HasSuffix(name, s.Suffix) {
		name += s.Suffix
	}
	if fifo {
		name += ".fifo"
	}
	return strings.TrimRight(s.Prefix, "/") + "/" + name
}

// CredentialsFrom says where the credentials come from, for messages:
// never the secret, and of the key only its last four characters.
func (s *LaravelSQS) CredentialsFrom(where string) string {
	switch {
	case s.Key != nil && s.Secret != nil:
		k := *s.Key
		if len(k) > 4 {
			k = "…" + k[len(k)-4:]
		}
		return "the key " + k + " and its secret from " + where + ".key and .secret"
	case s.Credentials != nil:
		return "the " + *s.Credentials + " credential provider (" + where + ".credentials)"
	}
	return "the AWS default chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, ~/.aws (AWS_PROFILE), web identity, the ECS or EC2 instance role"
}

// noFleetCaps refuses fleet_max_running on a connection whose driver
// has no fleet-wide count of running jobs (only Redis's reserve script
// keeps one).
func (c *Config) noFleetCaps(conn, driver string) error {
	for _, q := range c.Queues {
		if q.FleetMaxRunning > 0 {
			return fmt.Errorf("queue %q: fleet_max_running needs the redis driver; on the %q connection (%s driver) use max_running, which caps each instance", q.Name, conn, driver)
		}
	}
	return nil
}

// adoptSQS takes the app's SQS connection: its region, queue URLs and
// where its credentials come from (told, never the secret).
func (c *Config) adoptSQS(l *Laravel, conn, where string) ([]Note, error) {
	s := l.SQS
	if s == nil {
		return nil, fmt.Errorf("the app did not describe its SQS queue connection %q", conn)
	}
	if err := c.noFleetCaps(conn, "sqs"); err != nil {
		return nil, err
	}
	if s.Overflow {
		return nil, fmt.Errorf("the app's SQS connection %q keeps large payloads in its cache (%s.overflow.enabled): kqueue does not read them; turn it off (payloads then stay under SQS's 1 MiB limit) or run this connection with queue:work", conn, where)
	}
	if s.Region == nil && s.Endpoint == nil {
		return nil, fmt.Errorf("the app's SQS connection %q names no region (%s.region, AWS_DEFAULT_REGION)", conn, where)
	}
	if s.Prefix == "" {
		if q := cmp.Or(deref(s.Queue), "default"); !strings.Contains(q, "://") {
			return nil, fmt.Errorf("the app's SQS connection %q has no prefix (%s.prefix, SQS_PREFIX): set it to the queues' URL without their name (https://sqs.REGION.amazonaws.com/ACCOUNT_ID)", conn, where)
		}
	}
	var notes []Note
	region := cmp.Or(deref(s.Region), "(from the endpoint)")
	notes = append(notes, Note{Key: "sqs region", Value: region, App: region, Where: where + ".region, AWS_DEFAULT_REGION"})
	if s.Endpoint != nil {
		notes = append(notes, Note{Key: "sqs endpoint", Value: *s.Endpoint, App: *s.Endpoint, Where: where + ".endpoint"})
	}
	creds := s.CredentialsFrom(where)
	notes = append(notes, Note{Key: "sqs credentials", Value: creds, App: creds, Where: where + ".key, .secret, AWS_ACCESS_KEY_ID"})
	return notes, nil
}

// LaravelCache is the app's default cache store.
type LaravelCache struct {
	Store      string `json:"store"`
	Driver     string `json:"driver"`
	Prefix     string `json:"prefix"`
	Connection string `json:"connection"`
}

// LaravelFailed is where the app records failed jobs.
type LaravelFailed struct {
	Driver   string `json:"driver"`
	Database string `json:"database"`
	Table    string `json:"table"`
}

// ParseLaravel reads appconfig.php's answer.
func ParseLaravel(data []byte) (*Laravel, error) {
	var l Laravel
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("the app's queue configuration: %w", err)
	}
	return &l, nil
}

// DefaultConnectionRetryAfter is what Laravel's Redis connector uses when a
// connection has no retry_after.
const DefaultConnectionRetryAfter = 60 * time.Second

// RetryAfterOrDefault is the connection's retry_after as Laravel applies
// it.
func (q LaravelQueue) RetryAfterOrDefault() time.Duration {
	if q.RetryAfter == nil {
		return DefaultConnectionRetryAfter
	}
	return time.Duration(*q.RetryAfter) * time.Second
}

// KqueueURL is the Redis connection as a kqueue redis.url: unix:// for a socket
// path, rediss:// for TLS, else redis://.
func (r *LaravelRedis) KqueueURL() (string, error) {
	if r.Cluster {
		return "", fmt.Errorf("the app's Redis connection %q is a cluster (config/database.php redis.clusters): set [redis] url", r.Name)
	}
	host := deref(r.Host)
	scheme := strings.ToLower(deref(r.Scheme))
	for _, s := range []string{"tcp", "tls", "ssl", "unix", "redis", "rediss"} {
		if h, ok := strings.CutPrefix(host, s+"://"); ok {
			scheme, host = s, h
			break
		}
	}
	u := &url.URL{}
	if r.Password != nil || r.Username != nil {
		u.User = url.UserPassword(deref(r.Username), deref(r.Password))
	}
	db := 0
	if r.Database != nil {
		db = *r.Database
	}
	if scheme == "unix" || strings.HasPrefix(host, "/") {
		u.Scheme, u.Path = "unix", host
		u.RawQuery = "db=" + strconv.Itoa(db)
		return u.String(), nil
	}
	u.Scheme = "redis"
	if scheme == "tls" || scheme == "ssl" || scheme == "rediss" {
		u.Scheme = "rediss"
	}
	port := 6379
	if r.Port != nil && *r.Port > 0 {
		port = *r.Port
	}
	if host == "" {
		host = "127.0.0.1"
	}
	u.Host = net.JoinHostPort(host, strconv.Itoa(port))
	u.Path = "/" + strconv.Itoa(db)
	return u.String(), nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// sameRedis reports whether two redis.url values name the same server,
// database and credentials.
func sameRedis(a, b string) bool {
	ea, erra := endpointOf(a)
	eb, errb := endpointOf(b)
	return erra == nil && errb == nil && ea == eb
}

type endpoint struct {
	network, addr, user, password string
	db                            string
}

func endpointOf(raw string) (endpoint, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return endpoint{}, err
	}
	e := endpoint{user: u.User.Username(), db: "0"}
	e.password, _ = u.User.Password()
	switch u.Scheme {
	case "unix":
		e.network, e.addr = "unix", u.Path
		if db := u.Query().Get("db"); db != "" {
			e.db = db
		}
	default:
		e.network = u.Scheme
		host, port := u.Hostname(), u.Port()
		switch host {
		case "", "localhost", "::1":
			host = "127.0.0.1"
		}
		e.addr = net.JoinHostPort(host, cmp.Or(port, "6379"))
		if db := strings.Trim(u.Path, "/"); db != "" {
			e.db = db
		}
	}
	return e, nil
}

// Note is one setting kqueue.toml left to the app, or one on which
// kqueue.toml and the app disagree.
type Note struct {
	// Key is the kqueue.toml key ("redis.prefix").
	Key string
	// Value is what kqueue uses; App is what the app says (equal unless
	// Disagree).
	Value, App string
	// Where is where the app's value comes from
	// ("config/database.php redis.options.prefix").
	Where string
	// Disagree: kqueue.toml set Value, the app says App; kqueue.toml wins.
	Disagree bool
	// Fatal: a disagreement that keeps kqueue from seeing the app's jobs.
	Fatal bool
	// Hint says what to do about a disagreement.
	Hint string
}

func (n Note) String() string {
	if !n.Disagree {
		return fmt.Sprintf("%s = %s (from %s)", n.Key, n.Value, n.Where)
	}
	s := fmt.Sprintf("%s: kqueue.toml says %s, the app says %s (%s); kqueue.toml's %s wins", n.Key, n.Value, n.App, n.Where, n.Value)
	if n.Hint != "" {
		s += ": " + n.Hint
	}
	return s
}

// Adopt completes the config with the app's own queue configuration: every
// value kqueue.toml does not set is taken from l, and every value it sets
// that l contradicts is kept and reported (kqueue.toml wins). It fails
// when the app's queue connection is not a Redis one, or its Redis server
// cannot be named as a redis.url and kqueue.toml names none. Adopt works
// on a Config from Load or Parse; it records l in c.Laravel.
func (c *Config) Adopt(l *Laravel) ([]Note, error) {
	var notes []Note
	conn := l.Connection
	if c.set["app.connection"] {
		if l.DefaultConnection != "" && c.App.Connection != l.DefaultConnection {
			notes = append(notes, Note{Key: "app.connection", Value: strconv.Quote(c.App.Connection), App: strconv.Quote(l.DefaultConnection),
				Where: "config/queue.php default, QUEUE_CONNECTION", Disagree: true,
				Hint: "kqueue takes jobs from the connection it names, not from the one the app dispatches to by default"})
		}
	} else {
		c.App.Connection = conn
		notes = append(notes, Note{Key: "app.connection", Value: strconv.Quote(conn), App: strconv.Quote(conn), Where: "config/queue.php default, QUEUE_CONNECTION"})
	}
	where := "config/queue.php connections." + conn
	switch l.Queue.Driver {
	case "redis":
		n, err := c.adoptRedis(l, conn)
		notes = append(notes, n...)
		if err != nil {
			return notes, err
		}
	case "database":
		if l.Database == nil {
			return notes, fmt.Errorf("the app did not describe the database of its queue connection %q", conn)
		}
		db := l.Database
		if err := c.noFleetCaps(conn, "database"); err != nil {
			return notes, err
		}
		if db.Driver == "sqlite" && db.Database != ":memory:" && !filepath.IsAbs(db.Database) {
			// Relative to the app, where its PHP runs.
			db.Database = filepath.Join(c.App.Path, db.Database)
		}
		v := db.Driver + " " + strconv.Quote(db.Database) + ", table " + strconv.Quote(db.TableName())
		notes = append(notes, Note{Key: "database", Value: v, App: v, Where: where + ".connection and .table; " + db.Where()})
	case "sqs":
		n, err := c.adoptSQS(l, conn, where)
		notes = append(notes, n...)
		if err != nil {
			return notes, err
		}
	default:
		return notes, fmt.Errorf("the app's queue connection %q uses the %q driver (%s.driver): kqueue runs jobs from Redis, database and SQS queues; set QUEUE_CONNECTION=redis, database or sqs in the app's .env, or name such a connection in [app] connection",
			conn, l.Queue.Driver, where)
	}

	appRetry := l.Queue.RetryAfterOrDefault()
	retryWhere := where + ".retry_after"
	if l.Queue.RetryAfter == nil {
		retryWhere += " (unset: Laravel's connector uses 60)"
	}
	hint := func(ours Duration) string {
		return fmt.Sprintf("kqueue reserves jobs for %s and extends that while they run; a queue:work worker on the same queues reserves them for %s", ours, appRetry)
	}
	retryKey := "redis.retry_after"
	if l.Queue.Driver == "database" {
		retryKey = "retry_after" // of the queue connection: [redis] sets it for Redis only
	}
	switch {
	case l.Queue.Driver == "sqs":
		// SQS has no retry_after: each queue's visibility timeout is its
		// lease, read from the queue when kqueue starts.
	case c.set["redis.retry_after"]:
		if c.Redis.RetryAfter.D() != appRetry {
			notes = append(notes, Note{Key: retryKey, Value: c.Redis.RetryAfter.String(), App: appRetry.String(),
				Where: retryWhere, Disagree: true, Hint: hint(c.Redis.RetryAfter)})
		}
	default:
		c.Redis.RetryAfter = Duration(appRetry)
		notes = append(notes, Note{Key: retryKey, Value: appRetry.String(), App: appRetry.String(), Where: retryWhere})
	}

	appQueue := cmp.Or(l.Queue.Queue, "default")
	if !c.set["queue"] {
		// The default queue's settings, under the app's name for it.
		if len(c.Queues) == 0 {
			c.Queues = []Queue{{}}
		}
		c.Queues[0].Name = appQueue
		c.Queues = c.Queues[:1]
		env := "REDIS_QUEUE"
		switch l.Queue.Driver {
		case "database":
			env = "DB_QUEUE"
		case "sqs":
			env = "SQS_QUEUE"
		}
		notes = append(notes, Note{Key: "queue", Value: strconv.Quote(appQueue), App: strconv.Quote(appQueue), Where: where + ".queue, " + env})
	} else if !c.hasQueue(appQueue) {
		notes = append(notes, Note{Key: "queue", Value: strconv.Quote(queueList(c.Queues)), App: strconv.Quote(appQueue),
			Where: where + ".queue, the queue jobs go to when they name none", Disagree: true,
			Hint: "jobs dispatched without onQueue() wait there; add a [[queue]] for it if kqueue should run them"})
	}
	for i := range c.Queues {
		q := &c.Queues[i]
		if !c.set[fmt.Sprintf("queue[%d].retry_after", i)] {
			q.RetryAfter = c.Redis.RetryAfter
		} else if q.RetryAfter.D() != appRetry {
			notes = append(notes, Note{Key: fmt.Sprintf("queue %q retry_after", q.Name), Value: q.RetryAfter.String(), App: appRetry.String(),
				Where: retryWhere, Disagree: true, Hint: hint(q.RetryAfter)})
		}
	}
	c.Laravel = l
	return notes, nil
}

// adoptRedis takes the Redis server and key prefix of the app's queue
// connection conn.
func (c *Config) adoptRedis(l *Laravel, conn string) ([]Note, error) {
	var notes []Note
	if l.Redis == nil {
		return notes, fmt.Errorf("the app did not describe the Redis connection of its queue connection %q", conn)
	}
	r := l.Redis
	redisWhere := "config/database.php redis." + r.Name
	if r.Cluster {
		redisWhere = "config/database.php redis.clusters." + r.Name
	}

	appURL, urlErr := r.KqueueURL()
	switch {
	case c.Redis.Mode() != Single:
		// kqueue.toml names a Cluster or Sentinels: it says where to go.
	case !c.set["redis.url"] && urlErr != nil:
		return notes, urlErr
	case !c.set["redis.url"]:
		c.Redis.URL = appURL
		notes = append(notes, Note{Key: "redis.url", Value: strconv.Quote(redactURL(appURL)), App: strconv.Quote(redactURL(appURL)), Where: redisWhere})
	case urlErr == nil && !sameRedis(c.Redis.URL, appURL):
		notes = append(notes, Note{Key: "redis.url", Value: strconv.Quote(redactURL(c.Redis.URL)), App: strconv.Quote(redactURL(appURL)),
			Where: redisWhere, Disagree: true,
			Hint: "fine if both reach the same server (a proxy, another name for it); else kqueue waits on a Redis the app does not push to"})
	}

	prefixWhere := "config/database.php redis.options.prefix, REDIS_PREFIX"
	if c.set["redis.prefix"] {
		if *c.Redis.Prefix != r.Prefix {
			notes = append(notes, Note{Key: "redis.prefix", Value: strconv.Quote(*c.Redis.Prefix), App: strconv.Quote(r.Prefix),
				Where: prefixWhere, Disagree: true, Fatal: true,
				Hint: fmt.Sprintf("kqueue would wait on keys the app never writes; remove prefix from [redis] or set prefix = %q", r.Prefix)})
		}
	} else {
		p := r.Prefix
		c.Redis.Prefix = &p
		notes = append(notes, Note{Key: "redis.prefix", Value: strconv.Quote(p), App: strconv.Quote(p), Where: prefixWhere})
	}

	return notes, nil
}

func (c *Config) hasQueue(name string) bool {
	for _, q := range c.Queues {
		if q.Name == name {
			return true
		}
	}
	return false
}

func queueList(qs []Queue) string {
	var names []string
	for _, q := range qs {
		names = append(names, q.Name)
	}
	return strings.Join(names, ",")
}

// redactURL hides a password in a Redis URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid)"
	}
	return u.Redacted()
}

// Set reports whether the config file itself set key ("redis.prefix",
// "redis.url", "redis.retry_after", "app.connection", "queue",
// "queue[N].retry_after"); false for a Config built in code.
func (c *Config) Set(key string) bool { return c.set[key] }

// FailedWarning is a warning about the app's failed-job store, or "".
func (l *Laravel) FailedWarning() string {
	switch l.Failed.Driver {
	case "", "null":
		return "the app records no failed jobs (config/queue.php failed.driver is null): a job that fails is dropped, as under queue:work"
	}
	return ""
}
