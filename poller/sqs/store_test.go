package sqs_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/kqueue/kqueue/internal/testenv"
	"github.com/kqueue/kqueue/poller"
	"github.com/kqueue/kqueue/poller/sqs"
)

// open is a Store on the named queues of s, opened.
func open(t *testing.T, s *testenv.SQS, names ...string) *sqs.Store {
	t.Helper()
	var qs []sqs.Queue
	for _, n := range names {
		qs = append(qs, sqs.Queue{Name: n, URL: s.URL(n)})
	}
	st := sqs.New(sqs.Config{Client: s.Client, Queues: qs})
	if err := st.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}

func send(t *testing.T, s *testenv.SQS, queue string, n int, group string) {
	t.Helper()
	for i := range n {
		in := &awssqs.SendMessageInput{QueueUrl: aws.String(s.URL(queue)), MessageBody: aws.String(fmt.Sprintf(`{"uuid":"%s-%d"}`, queue, i))}
		if group != "" {
			in.MessageGroupId, in.MessageDeduplicationId = aws.String(group), aws.String(fmt.Sprint(i))
		}
		if _, err := s.Client.SendMessage(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
}

// A reserve takes as many as asked, in receives of up to 10, each job's
// attempt SQS's receive count; released jobs come back with that count
// raised, given-back ones (never run) as they were, held by the store;
// deleted ones never; extensions keep a job invisible past its
// visibility timeout.
func TestReserveAndSettle(t *testing.T) {
	t.Parallel()
	s := testenv.StartSQS(t)
	s.CreateQueue(t, "work", map[string]string{"VisibilityTimeout": "2"})
	st := open(t, s, "work")
	ctx := context.Background()
	if d := st.LeaseFor(0); d != 2*time.Second {
		t.Errorf("lease %v, want the queue's visibility timeout, 2s", d)
	}
	send(t, s, "work", 25, "")
	now := time.Now()
	r, err := st.Reserve(ctx, nil, 0, 25, now, now.Add(2*time.Second))
	if err != nil || r.Taken != 25 || len(r.Jobs) != 25 {
		t.Fatalf("reserve 25: took %d (%v)", r.Taken, err)
	}
	for _, j := range r.Jobs {
		if j.SQS == nil || j.SQS.Receives != 1 || j.Attempts() != 0 || j.SQS.QueueURL != s.URL("work") || j.Handle != j.SQS.Receipt {
			t.Fatalf("job %+v %+v, want its first receive", j, j.SQS)
		}
	}
	var acks []poller.Ack
	for i, j := range r.Jobs[:20] {
		switch {
		case i < 10:
			acks = append(acks, poller.Ack{Kind: poller.AckDelete, Job: j})
		case i < 15:
			acks = append(acks, poller.Ack{Kind: poller.AckRelease, Job: j, ReleaseAt: time.Now()})
		default:
			acks = append(acks, poller.Ack{Kind: poller.AckGiveBack, Job: j})
		}
	}
	// The other five run past their visibility timeout, extended.
	var leases []poller.Lease
	for _, j := range r.Jobs[20:] {
		leases = append(leases, poller.Lease{Job: j, Until: time.Now().Add(30 * time.Second)})
	}
	if err := st.Extend(ctx, leases); err != nil {
		t.Fatal(err)
	}
	now = time.Now()
	again, err := st.Reserve(ctx, acks, 0, 25, now, now.Add(2*time.Second))
	if err != nil || again.Acked != nil {
		t.Fatal(err, again.Acked)
	}
	receives := map[int64]int{}
	for _, j := range again.Jobs {
		receives[j.SQS.Receives]++
	}
	if len(again.Jobs) != 10 || receives[1] != 5 || receives[2] != 5 {
		t.Fatalf("after 5 released and 5 given back: reserved %d, by receive count %v; want 5 held at 1, 5 received again at 2", len(again.Jobs), receives)
	}
	// Past the 2 s visibility timeout, the extended five stay away.
	testenv.Never(t, 3*time.Second, "an extended job received again", func() bool {
		now := time.Now()
		r, _ := st.Reserve(ctx, nil, 0, 10, now, now.Add(2*time.Second))
		for _, j := range r.Jobs {
			for _, e := range leases {
				if j.SQS.ID == e.Job.SQS.ID {
					return true
				}
			}
		}
		return false
	})
	d, err := st.Depths(ctx)
	if err != nil || len(d) != 1 || d[0].Name != "work" {
		t.Fatalf("depths %+v %v", d, err)
	}
}

// On a FIFO queue a reserve takes one message per receive: a group's
// second waits until the first is deleted.
func TestFifoOnePerGroup(t *testing.T) {
	t.Parallel()
	s := testenv.StartSQS(t)
	s.CreateQueue(t, "ordered.fifo", nil)
	st := open(t, s, "ordered.fifo")
	ctx := context.Background()
	send(t, s, "ordered.fifo", 3, "g")
	now := time.Now()
	r, err := st.Reserve(ctx, nil, 0, 10, now, now.Add(time.Minute))
	if err != nil || len(r.Jobs) != 1 || r.Jobs[0].Payload != `{"uuid":"ordered.fifo-0"}` {
		t.Fatalf("first reserve: %+v %v", r.Jobs, err)
	}
	r, err = st.Reserve(ctx, []poller.Ack{{Kind: poller.AckDelete, Job: r.Jobs[0]}}, 0, 10, now, now.Add(time.Minute))
	if err != nil || len(r.Jobs) != 1 || r.Jobs[0].Payload != `{"uuid":"ordered.fifo-1"}` {
		t.Fatalf("after the first's delete: %+v %v", r.Jobs, err)
	}
}

// A queue has one receive out at a time: a reserve while a long poll of
// its queue is out receives nothing (the poll answers), so a server that
// keeps a FIFO group's order only between receives one after another
// (moto) still keeps it. A transport counts the receives in flight.
func TestOneReceiveAtATime(t *testing.T) {
	t.Parallel()
	s := testenv.StartSQS(t)
	s.CreateQueue(t, "ordered.fifo", nil)
	rt := &receives{}
	client := awssqs.New(s.Client.Options(), func(o *awssqs.Options) { rt.next, o.HTTPClient = o.HTTPClient, rt })
	st := sqs.New(sqs.Config{Client: client, Queues: []sqs.Queue{{Name: "ordered.fifo", URL: s.URL("ordered.fifo")}}})
	ctx := context.Background()
	if err := st.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if woke, err := st.Wait(ctx, 10*time.Millisecond); woke || err != nil { // its long poll runs on, a second
		t.Fatalf("Wait on an empty queue: %v %v", woke, err)
	}
	now := time.Now()
	if r, err := st.Reserve(ctx, nil, 0, 5, now, now.Add(time.Minute)); err != nil || len(r.Jobs) != 0 {
		t.Fatalf("reserve beside the long poll: %+v %v", r.Jobs, err)
	}
	send(t, s, "ordered.fifo", 2, "g")
	testenv.Eventually(t, 10*time.Second, "the long poll to catch the push", func() bool {
		woke, err := st.Wait(ctx, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return woke
	})
	r, err := st.Reserve(ctx, nil, 0, 5, now, now.Add(time.Minute))
	if err != nil || len(r.Jobs) != 1 || r.Jobs[0].Payload != `{"uuid":"ordered.fifo-0"}` {
		t.Fatalf("reserve after the catch: %+v %v", r.Jobs, err)
	}
	if rt.most.Load() != 1 {
		t.Errorf("%d receives were out at once, want 1", rt.most.Load())
	}
}

// receives is an HTTP client that counts the receives in flight.
type receives struct {
	next      awssqs.HTTPClient
	out, most atomic.Int32
}

func (c *receives) Do(req *http.Request) (*http.Response, error) {
	if req.Header.Get("X-Amz-Target") == "AmazonSQS.ReceiveMessage" {
		n := c.out.Add(1)
		defer c.out.Add(-1)
		for m := c.most.Load(); n > m && !c.most.CompareAndSwap(m, n); m = c.most.Load() {
		}
	}
	return c.next.Do(req)
}

// Wait returns once a long poll has caught a pushed job, which the next
// reserve hands out; Done gives back what was caught and not reserved.
func TestWaitCatchesAPush(t *testing.T) {
	t.Parallel()
	s := testenv.StartSQS(t)
	s.CreateQueue(t, "idle", nil)
	st := open(t, s, "idle")
	ctx := context.Background()
	if woke, err := st.Wait(ctx, time.Second); woke || err != nil {
		t.Fatalf("Wait on an empty queue: %v %v", woke, err)
	}
	go s.Client.SendMessage(ctx, &awssqs.SendMessageInput{QueueUrl: aws.String(s.URL("idle")), MessageBody: aws.String(`{"uuid":"idle"}`)})
	woke := false
	testenv.Eventually(t, 10*time.Second, "the wait to catch the push", func() bool {
		w, err := st.Wait(ctx, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		woke = woke || w
		return woke
	})
	if has, err := st.HasWork(ctx, time.Now()); !has || err != nil {
		t.Errorf("HasWork with a caught job: %v %v", has, err)
	}
	st.Done(ctx)
	now := time.Now()
	r, err := st.Reserve(ctx, nil, 0, 10, now, now.Add(time.Minute))
	if err != nil || len(r.Jobs) != 1 || r.Jobs[0].SQS.Receives != 2 {
		t.Fatalf("after Done gave it back: %+v %v", r.Jobs, err)
	}
}

// A reserve is a short poll even on a queue whose own receive wait time
// makes every receive a long poll by default (the SDK leaves a zero
// WaitTimeSeconds out; kqueue writes it in): it returns at once, not at
// its 10 s call timeout, with an error.
func TestReserveDoesNotWaitOnALongPollQueue(t *testing.T) {
	t.Parallel()
	s := testenv.StartSQS(t)
	s.CreateQueue(t, "patient", map[string]string{"ReceiveMessageWaitTimeSeconds": "20"})
	st := open(t, s, "patient")
	now := time.Now()
	r, err := st.Reserve(context.Background(), nil, 0, 5, now, now.Add(time.Minute))
	if err != nil || len(r.Jobs) != 0 {
		t.Fatalf("reserve on an empty queue: %+v %v", r.Jobs, err)
	}
}

// A job given back by the poller (PHP declined it) is held, not sent
// back: it is not received again, so its receive count stays; a long
// poll does not run on its queue meanwhile, and Wait does not wake for
// it; Done gives it back.
func TestGiveBackHolds(t *testing.T) {
	t.Parallel()
	s := testenv.StartSQS(t)
	s.CreateQueue(t, "held", map[string]string{"VisibilityTimeout": "2"})
	st := open(t, s, "held")
	ctx := context.Background()
	send(t, s, "held", 1, "")
	now := time.Now()
	r, err := st.Reserve(ctx, nil, 0, 1, now, now.Add(time.Minute))
	if err != nil || len(r.Jobs) != 1 {
		t.Fatal(r.Jobs, err)
	}
	if err := st.Ack(ctx, []poller.Ack{{Kind: poller.AckGiveBack, Job: r.Jobs[0]}}); err != nil {
		t.Fatal(err)
	}
	// Past the visibility timeout, extended while waiting.
	testenv.Never(t, 3*time.Second, "a wake-up for a held job", func() bool {
		woke, err := st.Wait(ctx, 500*time.Millisecond)
		return woke || err != nil
	})
	now = time.Now()
	r, err = st.Reserve(ctx, nil, 0, 1, now, now.Add(time.Minute))
	if err != nil || len(r.Jobs) != 1 || r.Jobs[0].SQS.Receives != 1 {
		t.Fatalf("the held job: %+v %v, want it at its first receive still", r.Jobs, err)
	}
}

// A missing queue is an error naming it; a server gone is an outage.
func TestErrors(t *testing.T) {
	t.Parallel()
	s := testenv.StartSQS(t)
	st := sqs.New(sqs.Config{Client: s.Client, Queues: []sqs.Queue{{Name: "nowhere", URL: s.URL("nowhere")}}})
	err := st.Open(context.Background())
	if err == nil || poller.IsUnreachable(err) {
		t.Fatalf("Open on a missing queue: %v", err)
	}
	s.CreateQueue(t, "there", nil)
	st = open(t, s, "there")
	s.Stop()
	now := time.Now()
	_, err = st.Reserve(context.Background(), nil, 0, 1, now, now.Add(time.Minute))
	if !poller.IsUnreachable(err) {
		t.Fatalf("reserve with the server gone: %v, want an outage", err)
	}
}
