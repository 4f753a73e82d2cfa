package poller

import (
	"errors"
	"fmt"
	"testing"
	"time"
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

// A delete says whether a charge of its job went to the store before it:
// only then may the reservation be the charged copy (a charge still queued
// when the job settles is moot, and never sent).
func TestDeleteSaysWhetherChargeWentOut(t *testing.T) {
	t.Parallel()
	var p Poller
	quick, long := &running{}, &running{}
	p.queueAck(AckCharge, quick, time.Time{})
	quick.settled = true // its outcome came with its charge still queued
	p.queueAck(AckDelete, quick, time.Time{})
	p.queueAck(AckCharge, long, time.Time{})
	if out := p.acks.out(); len(out) != 2 || out[0].Kind != AckDelete || out[0].Charged || out[1].Kind != AckCharge {
		t.Fatalf("out = %+v, want the quick job's delete, uncharged, and the long job's charge", out)
	}
	p.acks.sent(2, nil)
	long.settled = true
	p.queueAck(AckDelete, long, time.Time{})
	if out := p.acks.out(); len(out) != 1 || !out[0].Charged {
		t.Fatalf("out = %+v, want the long job's delete, charged", out)
	}
}
