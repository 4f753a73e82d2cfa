package redis

import (
	"context"
	"testing"

	"github.com/kqueue/kqueue/config"
	"github.com/kqueue/kqueue/internal/testenv"
)

// A pooled connection the server closed is found out before it is used
// again: the next command goes over a new one (kqueue's connections are
// read and written raw, rawio.Conn, and answer go-redis's health check
// themselves).
func TestDialReplacesAClosedConnection(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	ctx := context.Background()
	rdb, err := Dial(ctx, config.Redis{URL: "unix://" + r.Socket})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Client.ClientKillByFilter(ctx, "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if v, err := rdb.Get(ctx, "k").Result(); err != nil || v != "v" {
			t.Fatalf("after its connection was closed: %q, %v", v, err)
		}
	}
}
