package config

import (
	"strings"
	"testing"
	"time"
)

func ptr[T any](v T) *T { return &v }

func TestLaravelRedisURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		r    LaravelRedis
		want string
	}{
		{"skeleton", LaravelRedis{Host: ptr("127.0.0.1"), Port: ptr(6379), Database: ptr(0)}, "redis://127.0.0.1:6379/0"},
		{"password and db", LaravelRedis{Host: ptr("redis.internal"), Port: ptr(6380), Password: ptr("p@ss:word"), Database: ptr(3)}, "redis://:p%40ss%3Aword@redis.internal:6380/3"},
		{"acl user", LaravelRedis{Host: ptr("r"), Username: ptr("kq"), Password: ptr("pw")}, "redis://kq:pw@r:6379/0"},
		{"tls scheme", LaravelRedis{Scheme: ptr("tls"), Host: ptr("r"), Port: ptr(6390)}, "rediss://r:6390/0"},
		{"tls in host", LaravelRedis{Host: ptr("tls://r")}, "rediss://r:6379/0"},
		{"unix socket", LaravelRedis{Host: ptr("/run/redis/redis.sock"), Port: ptr(0), Database: ptr(2)}, "unix:///run/redis/redis.sock?db=2"},
		{"unix scheme", LaravelRedis{Scheme: ptr("unix"), Host: ptr("/tmp/r.sock"), Password: ptr("pw")}, "unix://:pw@/tmp/r.sock?db=0"},
		{"ipv6", LaravelRedis{Host: ptr("::1"), Port: ptr(6379)}, "redis://[::1]:6379/0"},
	} {
		got, err := tc.r.KqueueURL()
		if err != nil || got != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if _, err := (&LaravelRedis{Name: "clustered", Cluster: true}).KqueueURL(); err == nil || !strings.Contains(err.Error(), "set [redis] url") {
		t.Errorf("a cluster: %v, want an error that says to set [redis] url", err)
	}
}

func TestSameRedis(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"redis://127.0.0.1:6379/0", "redis://localhost", true},
		{"redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/1", false},
		{"unix:///tmp/r.sock", "unix:///tmp/r.sock?db=0", true},
		{"unix:///tmp/r.sock?db=1", "unix:///tmp/r.sock?db=0", false},
		{"redis://:a@r:6379/0", "redis://:b@r:6379/0", false},
		{"rediss://r:6379/0", "redis://r:6379/0", false},
	} {
		if got := sameRedis(tc.a, tc.b); got != tc.same {
			t.Errorf("sameRedis(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.same)
		}
	}
}

func laravel() *Laravel {
	return &Laravel{
		Version: "8.83.26", DefaultConnection: "redis", Connection: "redis",
		Queue: LaravelQueue{Driver: "redis", Connection: "default", Queue: "emails", RetryAfter: ptr(45)},
		Redis: &LaravelRedis{Name: "default", Host: ptr("/tmp/r.sock"), Port: ptr(0), Database: ptr(0), Prefix: "zc_", PrefixFrom: "client"},
	}
}

func TestAdoptFillsWhatTheFileLeaves(t *testing.T) {
	t.Parallel()
	c, err := Parse("kq.toml", []byte("[app]\npath = \"/srv/app\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	notes, err := c.Adopt(laravel())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range notes {
		if n.Disagree {
			t.Errorf("a disagreement where the file says nothing: %s", n)
		}
	}
	if c.App.Connection != "redis" || c.Redis.URL != "unix:///tmp/r.sock?db=0" || *c.Redis.Prefix != "zc_" ||
		c.Redis.RetryAfter.D() != 45*time.Second || len(c.Queues) != 1 || c.Queues[0].Name != "emails" ||
		c.Queues[0].RetryAfter.D() != 45*time.Second || c.Laravel == nil {
		t.Errorf("after Adopt: connection %q url %q prefix %q retry_after %s queues %+v", c.App.Connection, c.Redis.URL, *c.Redis.Prefix, c.Redis.RetryAfter, c.Queues)
	}
	l := laravel()
	l.Queue.RetryAfter = nil
	c, _ = Parse("kq.toml", []byte("[app]\npath = \"/srv/app\"\n"))
	if _, err := c.Adopt(l); err != nil || c.Redis.RetryAfter.D() != 60*time.Second {
		t.Errorf("no retry_after in the app: %s, %v; want Laravel's connector default 60s", c.Redis.RetryAfter, err)
	}
}

func TestAdoptKeepsTheFilesValues(t *testing.T) {
	t.Parallel()
	c, err := Parse("kq.toml", []byte(`
[app]
path = "/srv/app"
connection = "redis"
[redis]
url = "redis://127.0.0.1:6379/0"
prefix = "laravel_database_"
retry_after = 120
[[queue]]
name = "high"
[[queue]]
name = "low"
retry_after = 30
`))
	if err != nil {
		t.Fatal(err)
	}
	notes, err := c.Adopt(laravel())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range notes {
		if !n.Disagree {
			t.Errorf("taken from the app although the file sets it: %s", n)
		}
		got = append(got, n.Key)
		if n.Key == "redis.prefix" && !n.Fatal {
			t.Errorf("a prefix disagreement is not fatal: %s", n)
		}
	}
	if want := "redis.url redis.prefix redis.retry_after queue queue \"low\" retry_after"; strings.Join(got, " ") != want {
		t.Errorf("disagreements on %q, want %q", strings.Join(got, " "), want)
	}
	if c.Redis.URL != "redis://127.0.0.1:6379/0" || *c.Redis.Prefix != "laravel_database_" || c.Redis.RetryAfter.D() != 120*time.Second ||
		c.Queues[0].RetryAfter.D() != 120*time.Second || c.Queues[1].RetryAfter.D() != 30*time.Second {
		t.Errorf("the file's values did not win: %+v %q %+v", c.Redis, *c.Redis.Prefix, c.Queues)
	}
}

func TestAdoptRefusesAnotherDriver(t *testing.T) {
	t.Parallel()
	c, _ := Parse("kq.toml", []byte("[app]\npath = \"/srv/app\"\n"))
	l := laravel()
	l.DefaultConnection, l.Connection, l.Queue.Driver, l.Redis = "beanstalkd", "beanstalkd", "beanstalkd", nil
	_, err := c.Adopt(l)
	if err == nil || !strings.Contains(err.Error(), `the app's queue connection "beanstalkd" uses the "beanstalkd" driver`) {
		t.Errorf("Adopt on a beanstalkd connection: %v", err)
	}
}

// A database connection is adopted with its table, its retry_after and
// its queue; the notes say where each comes from.
func TestAdoptADatabaseConnection(t *testing.T) {
	t.Parallel()
	c, _ := Parse("kq.toml", []byte("[app]\npath = \"/srv/app\"\n"))
	l := laravel()
	retry := 45
	l.DefaultConnection, l.Connection, l.Redis = "database", "database", nil
	l.Queue = LaravelQueue{Driver: "database", Queue: "mail", RetryAfter: &retry}
	l.Database = &LaravelDatabase{Table: "jobs", Name: "pgsql", Driver: "pgsql", Database: "app", Prefix: "kq_"}
	notes, err := c.Adopt(l)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range notes {
		got = append(got, n.String())
	}
	joined := strings.Join(got, "\n")
	for _, want := range []string{`database = pgsql "app", table "kq_jobs" (from config/queue.php connections.database.connection and .table; config/database.php connections.pgsql)`,
		`queue = "mail" (from config/queue.php connections.database.queue, DB_QUEUE)`} {
		if !strings.Contains(joined, want) {
			t.Errorf("notes lack %q:\n%s", want, joined)
		}
	}
	if len(c.Queues) != 1 || c.Queues[0].Name != "mail" || c.Queues[0].RetryAfter.D() != 45*time.Second {
		t.Errorf("queues %+v, want mail with retry_after 45s", c.Queues)
	}
}

// An SQS connection is adopted with its region and where its credentials
// come from (the key's last four characters, never the secret); Laravel
// 13's payload overflow and fleet caps are refused, naming the setting.
func TestAdoptAnSQSConnection(t *testing.T) {
	t.Parallel()
	sqs := func() *Laravel {
		l := laravel()
		key, secret, region, q := "AKIAEXAMPLEKEY1234", "s3cr3t", "eu-west-1", "emails"
		l.DefaultConnection, l.Connection, l.Redis = "sqs", "sqs", nil
		l.Queue = LaravelQueue{Driver: "sqs", Queue: q}
		l.SQS = &LaravelSQS{Key: &key, Secret: &secret, Region: &region, Prefix: "https://sqs.eu-west-1.amazonaws.com/123456789012", Queue: &q}
		return l
	}
	c, _ := Parse("kq.toml", []byte("[app]\npath = \"/srv/app\"\n"))
	notes, err := c.Adopt(sqs())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range notes {
		got = append(got, n.String())
	}
	joined := strings.Join(got, "\n")
	for _, want := range []string{"sqs region = eu-west-1", "the key …1234 and its secret from config/queue.php connections.sqs.key and .secret",
		`queue = "emails" (from config/queue.php connections.sqs.queue, SQS_QUEUE)`} {
		if !strings.Contains(joined, want) {
			t.Errorf("notes lack %q:\n%s", want, joined)
		}
	}
	if strings.Contains(joined, "s3cr3t") || strings.Contains(joined, "AKIAEXAMPLE") {
		t.Errorf("the notes show the credentials:\n%s", joined)
	}

	l := sqs()
	l.SQS.Overflow = true
	c, _ = Parse("kq.toml", []byte("[app]\npath = \"/srv/app\"\n"))
	if _, err := c.Adopt(l); err == nil || !strings.Contains(err.Error(), "connections.sqs.overflow.enabled") {
		t.Errorf("Adopt with overflow: %v", err)
	}
	c, _ = Parse("kq.toml", []byte("[app]\npath = \"/srv/app\"\n[[queue]]\nname = \"emails\"\nfleet_max_running = 2\n"))
	if _, err := c.Adopt(sqs()); err == nil || !strings.Contains(err.Error(), "fleet_max_running needs the redis driver") {
		t.Errorf("Adopt with a fleet cap: %v", err)
	}
}

// QueueURL builds a queue's URL as Laravel's SqsQueue::getQueue does.
func TestSQSQueueURL(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		prefix, suffix, name, want string
	}{
		{"https://sqs.eu-west-1.amazonaws.com/1234", "", "default", "https://sqs.eu-west-1.amazonaws.com/1234/default"},
		{"https://sqs.eu-west-1.amazonaws.com/1234/", "", "default", "https://sqs.eu-west-1.amazonaws.com/1234/default"},
		{"https://q/1234", "-production", "emails", "https://q/1234/emails-production"},
		{"https://q/1234", "-production", "emails-production", "https://q/1234/emails-production"},
		{"https://q/1234", "-production", "orders.fifo", "https://q/1234/orders-production.fifo"},
		{"https://q/1234", "", "https://elsewhere/99/named", "https://elsewhere/99/named"},
	} {
		s := &LaravelSQS{Prefix: c.prefix, Suffix: c.suffix}
		if got := s.QueueURL(c.name); got != c.want {
			t.Errorf("prefix %q suffix %q queue %q: %q, want %q", c.prefix, c.suffix, c.name, got, c.want)
		}
	}
}
