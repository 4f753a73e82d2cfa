package poller

import (
	"errors"
	"fmt"
	"testing"
)

// A round trip that fails keeps its acknowledgements for the next one, all
// but the give-backs and charges: one replayed after a reply that was lost
// could act on a reservation another consumer has made of the same job
// since.
func TestFailedRoundTripKeepsAcksButNotGiveBacks(t *testing.T) {
	t.Parallel()
	var a acks
	for _, pa := range []struct {
		kind AckKind
		name string
	}{
		{AckDelete, "r1"},
		{AckCharge, "r5"},
		{AckGiveBack, "r2"},
		{AckRelease, "r3"},
		{AckGiveBack, "r4"}, // not in this round trip
	} {
		a.add(Ack{Kind: pa.kind, Job: Job{Handle: pa.name}}, &running{})
	}
	lost := Unreachable(errors.New("read unix @->/run/redis.sock: i/o timeout"))
	if dropped := a.sent(4, lost); dropped != 1 {
		t.Errorf("dropped %d give-backs, want 1", dropped)
	}
	var kept []string
	for _, pa := range a.pending {
		kept = append(kept, pa.Job.Handle)
	}
	if fmt.Sprint(kept) != "[r1 r3 r4]" {
		t.Errorf("kept %v, want [r1 r3 r4]", kept)
	}
}
