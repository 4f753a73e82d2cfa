package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/kqueue/kqueue/config"
	"github.com/kqueue/kqueue/internal/rawio"
	goredis "github.com/redis/go-redis/v9"
)

// Dial connects to the queues' Redis — one server, a Redis Cluster or a
// Sentinel-managed primary, as [redis] says — and checks that it answers.
//
// The poller's loop makes one round trip at a time and retries on its own
// (its acknowledgements are kept until Redis has them): a Redis that does
// not answer must cost it seconds, not go-redis's retries of 5 s timeouts,
// which would starve the watchdog. So: 2 s timeouts unless the URL sets
// its own, no retries, deadlines from contexts bounding blocking commands
// (BLPOP) too, no CLIENT SETINFO round trip on each new connection, and
// RESP2 as Laravel speaks it (clear of RESP3 push handling, which can wait
// on a frozen server without a deadline).
func Dial(ctx context.Context, cfg config.Redis) (goredis.UniversalClient, error) {
	var rdb goredis.UniversalClient
	switch cfg.Mode() {
	case config.Cluster, config.Sentinel:
		opts := &goredis.UniversalOptions{
			Addrs:         cfg.Cluster,
			IsClusterMode: cfg.Mode() == config.Cluster,
			Password:      cfg.Password,
		}
		if cfg.Mode() == config.Sentinel {
			opts.Addrs, opts.MasterName = cfg.Sentinels, cfg.SentinelMaster
		}
		opts.ReadTimeout, opts.WriteTimeout, opts.DialTimeout = 2*time.Second, 2*time.Second, 2*time.Second
		opts.MaxRetries, opts.DisableIdentity, opts.ContextTimeoutEnabled, opts.Protocol = -1, true, true, 2
		rdb = goredis.NewUniversalClient(opts)
	default:
		opts, err := goredis.ParseURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("redis.url: %w", err)
		}
		opts.ReadTimeout = cmp.Or(opts.ReadTimeout, 2*time.Second)
		opts.WriteTimeout = cmp.Or(opts.WriteTimeout, 2*time.Second)
		opts.DialTimeout = cmp.Or(opts.DialTimeout, 2*time.Second)
		opts.MaxRetries, opts.DisableIdentity, opts.ContextTimeoutEnabled, opts.Protocol = -1, true, true, 2
		// go-redis's own dialer, its connections read and written with
		// raw system calls (see rawio.Conn).
		dial := goredis.NewDialer(opts)
		opts.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return rawio.NewConn(c), nil
		}
		rdb = goredis.NewClient(opts)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		var nerr net.Error
		if ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.As(err, &nerr) && nerr.Timeout()) {
			// A refused connect says so; a host that is down, or a
			// firewall that drops packets, only ever times out.
			return nil, fmt.Errorf("redis at %s: no answer: is its host up, and reachable from here? (%w)", cfg.String(), err)
		}
		return nil, fmt.Errorf("redis at %s: %w", cfg.String(), err)
	}
	return rdb, nil
}
