package config

import (
	"os"
	"os/user"
	"reflect"
	"strconv"
	"strings"
	"syscall"
)

// Credential is User as the credential to start PHP with (uid, gid and
// groups); nil for kqueue's own user. Load checked that the user exists.
func (a *App) Credential() *syscall.Credential {
	if a.User == "" {
		return nil
	}
	u, err := user.Lookup(a.User)
	if err != nil {
		return nil
	}
	cred := &syscall.Credential{}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	cred.Uid, cred.Gid = uint32(uid), uint32(gid)
	if int(uid) == os.Geteuid() && os.Geteuid() != 0 {
		return nil // already that user (kqueue web under its unit): nothing to change, nor the right to
	}
	groups, _ := u.GroupIds()
	for _, g := range groups {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			cred.Groups = append(cred.Groups, uint32(n))
		}
	}
	return cred
}

// QueueNames lists the queues, comma-separated, for the log.
func (c *Config) QueueNames() string {
	var names []string
	for _, q := range c.Queues {
		names = append(names, q.Name)
	}
	return strings.Join(names, ",")
}

// RestartNeeded names the sections whose change in next a reload cannot
// apply on the poller's side: they apply at the next restart.
func (c *Config) RestartNeeded(next *Config) []string {
	var keys []string
	for _, s := range []struct {
		key  string
		same bool
	}{
		{"redis", reflect.DeepEqual(c.Redis, next.Redis)},
		{"queue", reflect.DeepEqual(c.Queues, next.Queues)},
		{"job.shutdown_timeout", c.Job.ShutdownTimeout == next.Job.ShutdownTimeout},
		{"metrics", c.Metrics == next.Metrics},
		{"control", c.Control == next.Control},
		{"dispatcher", c.Dispatcher == next.Dispatcher},
		{"log", c.Log.Done() == next.Log.Done()},
	} {
		if !s.same {
			keys = append(keys, s.key)
		}
	}
	return keys
}
