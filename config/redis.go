package config

import (
	"cmp"
	"fmt"
	"net"
	"strings"
)

// The ways to reach Redis, as Redis.Mode names them.
const (
	Single   = "single"
	Cluster  = "cluster"
	Sentinel = "sentinel"
)

// Mode is Single (url), Cluster (cluster) or Sentinel (sentinels).
func (r *Redis) Mode() string {
	switch {
	case len(r.Cluster) > 0:
		return Cluster
	case len(r.Sentinels) > 0 || r.SentinelMaster != "":
		return Sentinel
	}
	return Single
}

// String names where the queues are, without the password.
func (r *Redis) String() string {
	switch r.Mode() {
	case Cluster:
		return "cluster " + strings.Join(r.Cluster, ",")
	case Sentinel:
		return fmt.Sprintf("sentinel master %q via %s", r.SentinelMaster, strings.Join(r.Sentinels, ","))
	}
	u, err := redisOptions(r.URL)
	if err != nil {
		return "(invalid)"
	}
	return u.Redacted()
}

// complete checks the choice of url, cluster and sentinels and fills in
// the default URL.
func (r *Redis) complete() error {
	mode := r.Mode()
	if mode != Single {
		if r.URL != "" {
			return &Error{Key: "redis.url", Msg: "set url, cluster or sentinels, not more than one: url names a single server"}
		}
		if len(r.Cluster) > 0 && (len(r.Sentinels) > 0 || r.SentinelMaster != "") {
			return &Error{Key: "redis.cluster", Msg: "set cluster or sentinels, not both: Sentinel does not manage a Redis Cluster"}
		}
	}
	switch mode {
	case Single:
		if r.Password != "" {
			return &Error{Key: "redis.password", Msg: "with url, write the password in the URL (redis://:password@host:port/0)"}
		}
		r.URL = cmp.Or(r.URL, DefaultURL)
		if _, err := redisOptions(r.URL); err != nil {
			return &Error{Key: "redis.url", Msg: err.Error()}
		}
	case Cluster:
		if err := addresses(r.Cluster); err != nil {
			return &Error{Key: "redis.cluster", Msg: err.Error()}
		}
	case Sentinel:
		if r.SentinelMaster == "" {
			return &Error{Key: "redis.sentinels", Msg: "sentinel_master is missing: name the primary as Sentinel knows it (sentinel monitor NAME …)"}
		}
		if len(r.Sentinels) == 0 {
			return &Error{Key: "redis.sentinel_master", Msg: "sentinels is missing: list the Sentinel addresses (\"host:26379\")"}
		}
		if err := addresses(r.Sentinels); err != nil {
			return &Error{Key: "redis.sentinels", Msg: err.Error()}
		}
	}
	return nil
}

// addresses checks a list of host:port addresses.
func addresses(list []string) error {
	for _, a := range list {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return fmt.Errorf("want host:port addresses such as \"10.0.0.1:6379\", got %q", a)
		}
	}
	return nil
}

// slotSafe reports why the keys of queue name would not all hash to one
// Redis Cluster slot. kqueue's scripts, like Laravel's, touch several keys
// of a queue at once (queues:NAME, :delayed, :reserved, :notify and
// kqueue's own :kqueue-receipt:… and :kqueue-quarantine); Cluster runs a
// script only when all its keys are in one slot. Each of those keys is
// prefix + "queues:" + name + a suffix, and Redis hashes only the first
// "{…}" with something inside: if that lies within prefix + "queues:" +
// name, every suffix keeps the slot.
func slotSafe(prefix, name string) error {
	key := prefix + "queues:" + name
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if end := strings.IndexByte(key[open+1:], '}'); end > 0 {
			return nil
		}
	}
	return fmt.Errorf("queue %q has no hash tag, so under Redis Cluster its keys (%squeues:%s, …:reserved, …:delayed, …:notify) fall in different slots and no script can touch them together: name the queue %q here, in the app's queue config and in onQueue(), as Laravel documents",
		name, prefix, name, "{"+strings.Trim(name, "{}")+"}")
}
