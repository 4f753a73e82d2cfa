package poller

import (
	"context"
	"errors"
	"testing"
	"time"
)

// faultyStore refuses every acknowledgement with a script's error (not an
// outage) and counts lease extensions; the rest is never called here.
type faultyStore struct {
	Store
	extended int
}

func (s *faultyStore) Name() string { return "faulty" }

func (s *faultyStore) Done(context.Context) {}

func (s *faultyStore) Ack(context.Context, []Ack) error {
	return errors.New("WRONGTYPE Operation against a key holding the wrong kind of value")
}

func (s *faultyStore) Extend(_ context.Context, leases []Lease) error {
	s.extended += len(leases)
	return nil
}

// An acknowledgement the store refuses stays queued for a later try, and
// costs the running jobs nothing: their leases are extended all the same
// (else they would lapse, and long jobs run twice).
func TestRefusedAckKeepsLeases(t *testing.T) {
	t.Parallel()
	s := &faultyStore{}
	p := New(Config{Store: s, Queues: []Queue{{Name: "default"}}})
	q := &p.queues[0]
	p.inflight[1] = &running{queue: q, job: Job{Payload: "a"}, started: time.Now()}
	p.inflight[2] = &running{queue: q, job: Job{Payload: "b"}, started: time.Now()}
	p.queueAck(AckDelete, &running{queue: q, job: Job{Payload: "c"}}, time.Time{})
	p.extendLeases(context.Background())
	if s.extended != 2 {
		t.Errorf("%d leases extended, want both running jobs'", s.extended)
	}
	if len(p.acks.pending) != 1 {
		t.Errorf("%d acknowledgements pending, want the refused delete kept", len(p.acks.pending))
	}
}
