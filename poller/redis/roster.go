package redis

import (
	"context"
	"encoding/json"
	"time"

	"github.com/kqueue/kqueue/poller"
)

// instancesKey is the HASH of the instances' published state, instance ID
// → JSON (poller.Instance). One key, so one Redis Cluster slot: an entry
// carries its own expiry, and readers drop the expired ones.
func (s *Store) instancesKey() string { return s.prefix + "kqueue:instances" }

// Announce publishes one instance's state.
func (s *Store) Announce(ctx context.Context, in poller.Instance) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return s.classify(s.rdb.HSet(ctx, s.instancesKey(), in.ID, b).Err())
}

// Withdraw removes an instance's entry.
func (s *Store) Withdraw(ctx context.Context, id string) error {
	return s.classify(s.rdb.HDel(ctx, s.instancesKey(), id).Err())
}

// Instances reads the instances' entries that have not expired at now,
// and deletes the others: an instance killed before it could say goodbye
// leaves no trace once its entry has expired.
func (s *Store) Instances(ctx context.Context, now time.Time) ([]poller.Instance, error) {
	all, err := s.rdb.HGetAll(ctx, s.instancesKey()).Result()
	if err != nil {
		return nil, s.classify(err)
	}
	var live []poller.Instance
	var stale []string
	for id, v := range all {
		var in poller.Instance
		if json.Unmarshal([]byte(v), &in) != nil || !in.Expires.After(now) {
			stale = append(stale, id)
			continue
		}
		live = append(live, in)
	}
	if len(stale) > 0 {
		s.rdb.HDel(ctx, s.instancesKey(), stale...) // best effort: the next reader tries again
	}
	return live, nil
}
