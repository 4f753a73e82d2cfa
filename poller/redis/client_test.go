package redis

import (
	"context"
	"path/filepath"
	"strings"
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

// A Redis that never answers a connect (its host down, or a firewall that
// drops packets) is told apart from one that refuses it: the error says
// there was no answer, and names the server.
func TestDialSaysARedisNeverAnswered(t *testing.T) {
	t.Parallel()
	// (Its dials end before Dial does: none is left behind.)
	url := "redis://" + testenv.BlackHole(t) + "?dial_timeout=300ms"
	_, err := Dial(context.Background(), config.Redis{URL: url})
	if err == nil || !strings.Contains(err.Error(), "redis at "+url) || !strings.Contains(err.Error(), "no answer") {
		t.Fatalf("Dial of a Redis that never answers: %v, want it to say there was no answer", err)
	}
	_, err = Dial(context.Background(), config.Redis{URL: "unix://" + filepath.Join(t.TempDir(), "none.sock")})
	if err == nil || strings.Contains(err.Error(), "no answer") {
		t.Fatalf("Dial of a Redis that is not there: %v, want the refusal, not a timeout", err)
	}
}
