// Package sqs is the poller's store for Laravel's SQS queues: messages
// received, deleted and made visible again as Laravel's SqsQueue and
// SqsJob do it, so that kqueue and `php artisan queue:work` can share a
// queue (docs/laravel-queue.md, "The SQS queue").
//
// SQS counts a job's attempt when a message is received (its
// ApproximateReceiveCount, which SqsJob::attempts returns), and nothing can
// take a receive back. So this store receives no more than the poller can
// start now (the dispatcher runs SQS jobs without prefetch): a message
// received ahead of its run would be charged an attempt it may never get.
// What kqueue does beyond queue:work keeps to SqsJob's semantics: batches
// of up to 10 per receive and per delete, long polling while idle instead
// of a sleep, and a running job's visibility extended while it runs.
package sqs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/kqueue/kqueue/poller"
	"github.com/kqueue/kqueue/protocol"
)

// Queue is one SQS queue.
type Queue struct {
	Name string // as Laravel names it (the job's queue)
	URL  string // as Laravel's SqsQueue::getQueue makes it
}

// Config configures a Store.
type Config struct {
	Client *sqs.Client // Required.
	Queues []Queue
	// Logger hears of quarantined messages and refused settlements.
	// Default: discard.
	Logger *slog.Logger
}

// Store receives and settles jobs on SQS queues.
type Store struct {
	c      *sqs.Client
	queues []queue
	log    *slog.Logger

	// Long polls run beside the poller's loop while it waits (Wait). What
	// they receive, and what the poller gives back unrun, the store holds
	// (see held) and hands out at the next Reserve of its queue.
	mu      sync.Mutex
	polling []bool
	held    [][]held
	fresh   int // messages caught since the last Wait that said so
	pollErr error
	arrived chan struct{} // a long poll caught something, or failed
	polls   sync.WaitGroup
	closing bool // Done has begun: no more long polls
}

type queue struct {
	Queue
	fifo bool
	// visibility is the queue's visibility timeout (Open): a job's lease.
	visibility time.Duration
}

// held is a message received and not in the poller's hands: caught by a
// long poll, or given back by the poller without having run (PHP declined
// it: the app was down; its dispatcher went away). SQS counted its
// receive, and a give-back to SQS would count another without a run, so
// the store keeps it, its visibility extended, until a Reserve of its
// queue takes it again; Done gives back what is left.
type held struct {
	job      poller.Job
	extended time.Time // its visibility was last set then
}

// New returns a Store on cfg.Client.
func New(cfg Config) *Store {
	s := &Store{c: cfg.Client, log: cfg.Logger, arrived: make(chan struct{}, 1)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, q := range cfg.Queues {
		s.queues = append(s.queues, queue{Queue: q, fifo: strings.HasSuffix(q.URL, ".fifo")})
	}
	s.polling = make([]bool, len(s.queues))
	s.held = make([][]held, len(s.queues))
	return s
}

// Name names the backend.
func (s *Store) Name() string { return "SQS" }

// Calls' time limits: an endpoint that does not answer is an outage, not
// a poller stuck in a call. A long poll waits up to longPoll on the
// server.
const (
	callTimeout = 10 * time.Second
	longPoll    = 20 * time.Second
)

// Open reads each queue's visibility timeout (its jobs' lease) and
// whether it is a FIFO queue; a queue that does not exist is an error
// naming its URL.
func (s *Store) Open(ctx context.Context) error {
	s.mu.Lock()
	s.closing = false
	s.mu.Unlock()
	for i := range s.queues {
		q := &s.queues[i]
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		out, err := s.c.GetQueueAttributes(cctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(q.URL),
			AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameVisibilityTimeout, types.QueueAttributeNameFifoQueue}})
		cancel()
		if err != nil {
			return fmt.Errorf("read SQS queue %s (%s): %w", q.Name, q.URL, s.classify(err))
		}
		v, _ := strconv.Atoi(out.Attributes[string(types.QueueAttributeNameVisibilityTimeout)])
		q.visibility = time.Duration(v) * time.Second
		q.fifo = q.fifo || out.Attributes[string(types.QueueAttributeNameFifoQueue)] == "true"
	}
	return nil
}

// Check opens the store and describes each queue as it found it, for
// kqueue check.
func (s *Store) Check(ctx context.Context) ([]string, error) {
	if err := s.Open(ctx); err != nil {
		return nil, err
	}
	var out []string
	for _, q := range s.queues {
		kind := "standard"
		if q.fifo {
			kind = "FIFO: one message per receive, a group's next after the previous is settled"
		}
		out = append(out, fmt.Sprintf("sqs queue %s (%s): reachable, visibility timeout %s (a running job's is extended), %s", q.Name, q.URL, q.visibility, kind))
	}
	return out, nil
}

// LeaseFor is queue q's visibility timeout: how long a received job is
// its receiver's before SQS hands it out again (poller.Leases). Zero
// until Open has read it.
func (s *Store) LeaseFor(q int) time.Duration { return s.queues[q].visibility }

// Reserve applies acks, then takes up to n messages of queue q: those
// the store holds first, then as many receives of up to 10 as it takes
// (of 1 on a FIFO queue, so that a group's later message never runs
// beside an earlier one). The receives count each message's attempt.
//
// A queue has one receive out at a time: while a long poll of it is out
// (it answers at once when there is a message), Reserve receives nothing
// there. SQS keeps a FIFO group's order across concurrent receives, but
// not every SQS-compatible server does: moto (LocalStack's SQS, and the
// tests' server) can hand a long poll a group's next message while a
// receive beside it takes the one before.
func (s *Store) Reserve(ctx context.Context, acks []poller.Ack, q, n int, now, until time.Time) (poller.Reserved, error) {
	var r poller.Reserved
	if r.Acked = s.Ack(ctx, acks); r.Acked != nil && poller.IsUnreachable(r.Acked) {
		return r, r.Acked
	}
	s.extendHeld(ctx)
	qu := &s.queues[q]
	s.mu.Lock()
	polling := s.polling[q]
	s.mu.Unlock()
	r.Jobs = s.takeHeld(q, n)
	r.Receiving = polling
	for !polling && len(r.Jobs) < n {
		max := min(n-len(r.Jobs), 10)
		if qu.fifo {
			max = 1
		}
		ms, err := s.receive(ctx, q, max, 0)
		if err != nil && len(r.Jobs) == 0 {
			return r, err
		}
		if err != nil {
			break // what was received runs (its receives counted); the next reserve meets the error
		}
		for _, m := range ms {
			r.Jobs = append(r.Jobs, s.job(q, m))
		}
		if len(ms) < max {
			break
		}
	}
	r.Taken = len(r.Jobs)
	return r, nil
}

// receive receives up to max messages of queue q, waiting up to wait for
// one.
func (s *Store) receive(ctx context.Context, q, max int, wait time.Duration) ([]types.Message, error) {
	qu := &s.queues[q]
	cctx, cancel := context.WithTimeout(ctx, callTimeout+wait)
	defer cancel()
	var opts []func(*sqs.Options)
	if wait == 0 {
		opts = append(opts, func(o *sqs.Options) { o.APIOptions = append(o.APIOptions, noWait) })
	}
	out, err := s.c.ReceiveMessage(cctx, &sqs.ReceiveMessageInput{
		QueueUrl:            aws.String(qu.URL),
		MaxNumberOfMessages: int32(max),
		WaitTimeSeconds:     int32(wait / time.Second),
		// Both names of the attribute: the deprecated one is Laravel's,
		// and what some SQS-compatible servers know.
		AttributeNames:              []types.QueueAttributeName{"ApproximateReceiveCount"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount},
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("receive from SQS queue %s: %w", qu.Name, s.classify(err))
	}
	return out.Messages, nil
}

// noWait writes a receive's WaitTimeSeconds of 0 into the request: the
// SDK leaves a zero out, and the queue's own ReceiveMessageWaitTimeSeconds
// (which AWS recommends setting) would then make the poller's receive a
// long poll, holding up its loop.
func noWait(stack *middleware.Stack) error {
	return stack.Serialize.Insert(middleware.SerializeMiddlewareFunc("kqueueNoWait",
		func(ctx context.Context, in middleware.SerializeInput, next middleware.SerializeHandler) (middleware.SerializeOutput, middleware.Metadata, error) {
			req, ok := in.Request.(*smithyhttp.Request)
			if !ok || req.GetStream() == nil {
				return next.HandleSerialize(ctx, in)
			}
			body, err := io.ReadAll(req.GetStream())
			if err != nil {
				return middleware.SerializeOutput{}, middleware.Metadata{}, err
			}
			if !bytes.Contains(body, []byte(`"WaitTimeSeconds"`)) && bytes.HasPrefix(body, []byte("{")) {
				sep := ","
				if bytes.Equal(bytes.TrimSpace(body[1:]), []byte("}")) {
					sep = ""
				}
				body = append([]byte(`{"WaitTimeSeconds":0`+sep), body[1:]...)
			}
			if req, err = req.SetStream(bytes.NewReader(body)); err != nil {
				return middleware.SerializeOutput{}, middleware.Metadata{}, err
			}
			req.ContentLength = int64(len(body))
			in.Request = req
			return next.HandleSerialize(ctx, in)
		}), "OperationSerializer", middleware.After)
}

// job is a received message as the poller hands it on.
func (s *Store) job(q int, m types.Message) poller.Job {
	receives, err := strconv.ParseInt(m.Attributes["ApproximateReceiveCount"], 10, 64)
	if err != nil || receives < 1 {
		receives = 1 // not said: this receive is the one known
	}
	msg := &protocol.SQSMessage{ID: aws.ToString(m.MessageId), Receipt: aws.ToString(m.ReceiptHandle), Receives: receives, QueueURL: s.queues[q].URL}
	return poller.Job{Queue: q, Payload: aws.ToString(m.Body), Handle: msg.Receipt, SQS: msg}
}

// Ack applies acks: deletes in DeleteMessageBatch calls, releases as
// visibility changes to the release's delay, ten to a call, each queue's
// in order. A job given back (it never ran) the store holds (see held);
// a charge is nothing here: SQS counted the attempt at the receive. An
// entry SQS refuses (its receipt handle lapsed: the message was received
// again elsewhere) is logged and dropped.
func (s *Store) Ack(ctx context.Context, acks []poller.Ack) error {
	if len(acks) == 0 {
		return nil
	}
	now := time.Now()
	type batch struct {
		deletes []types.DeleteMessageBatchRequestEntry
		changes []types.ChangeMessageVisibilityBatchRequestEntry
	}
	byQueue := map[int]*batch{}
	for i, a := range acks {
		if a.Kind == poller.AckCharge {
			continue
		}
		b := byQueue[a.Job.Queue]
		if b == nil {
			b = &batch{}
			byQueue[a.Job.Queue] = b
		}
		id := aws.String(strconv.Itoa(i))
		switch a.Kind {
		case poller.AckDelete:
			b.deletes = append(b.deletes, types.DeleteMessageBatchRequestEntry{Id: id, ReceiptHandle: aws.String(a.Job.Handle)})
		case poller.AckRelease:
			// Laravel's release($delay): VisibilityTimeout = the delay.
			b.changes = append(b.changes, types.ChangeMessageVisibilityBatchRequestEntry{Id: id, ReceiptHandle: aws.String(a.Job.Handle),
				VisibilityTimeout: seconds(a.ReleaseAt.Sub(now))})
		case poller.AckGiveBack:
			s.hold(a.Job)
		}
	}
	for q, b := range byQueue {
		url := aws.String(s.queues[q].URL)
		for part := range chunks(b.deletes) {
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			out, err := s.c.DeleteMessageBatch(cctx, &sqs.DeleteMessageBatchInput{QueueUrl: url, Entries: part})
			cancel()
			if err != nil {
				return fmt.Errorf("delete jobs from SQS queue %s: %w", s.queues[q].Name, s.classify(err))
			}
			s.refused("delete", q, out.Failed)
		}
		failed, err := s.setVisibility(ctx, q, b.changes)
		if err != nil {
			return fmt.Errorf("release jobs on SQS queue %s: %w", s.queues[q].Name, err)
		}
		s.refused("release", q, failed)
	}
	return nil
}

// setVisibility changes the visibility of messages of queue q, ten to a
// call, and returns the entries SQS refused.
func (s *Store) setVisibility(ctx context.Context, q int, entries []types.ChangeMessageVisibilityBatchRequestEntry) ([]types.BatchResultErrorEntry, error) {
	var failed []types.BatchResultErrorEntry
	for part := range chunks(entries) {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		out, err := s.c.ChangeMessageVisibilityBatch(cctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(s.queues[q].URL), Entries: part})
		cancel()
		if err != nil {
			return failed, s.classify(err)
		}
		failed = append(failed, out.Failed...)
	}
	return failed, nil
}

// refused logs a batch's refused entries.
func (s *Store) refused(what string, q int, failed []types.BatchResultErrorEntry) {
	for _, f := range failed {
		s.log.Warn("SQS refused to "+what+" a job: its receipt handle has lapsed (the message was received again after its visibility timeout)",
			"queue", s.queues[q].Name, "code", aws.ToString(f.Code), "error", aws.ToString(f.Message))
	}
}

// seconds is d as a visibility timeout: whole seconds, 0 to 12 hours.
func seconds(d time.Duration) int32 {
	return int32(min(max((d+time.Second-1)/time.Second, 0), maxVisibility/time.Second))
}

// maxVisibility is the longest visibility timeout SQS takes.
const maxVisibility = 12 * time.Hour

// chunks yields entries ten at a time, SQS's batch size.
func chunks[E any](entries []E) func(func([]E) bool) {
	return func(yield func([]E) bool) {
		for len(entries) > 0 {
			n := min(len(entries), 10)
			if !yield(entries[:n]) {
				return
			}
			entries = entries[n:]
		}
	}
}

// Extend sets the running jobs' visibility timeout to their lease from
// now, so that a job running longer than its queue's visibility timeout
// is never received again meanwhile (up to SQS's limit: 12 hours from
// the receive); and the held messages' too. A job whose message is gone
// is left alone.
func (s *Store) Extend(ctx context.Context, leases []poller.Lease) error {
	s.extendHeld(ctx)
	return s.extend(ctx, leases)
}

// extend sets leases' visibility to their Until (0 when past).
func (s *Store) extend(ctx context.Context, leases []poller.Lease) error {
	now := time.Now()
	byQueue := map[int][]types.ChangeMessageVisibilityBatchRequestEntry{}
	for i, l := range leases {
		byQueue[l.Job.Queue] = append(byQueue[l.Job.Queue], types.ChangeMessageVisibilityBatchRequestEntry{
			Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(l.Job.Handle), VisibilityTimeout: seconds(l.Until.Sub(now))})
	}
	for q, entries := range byQueue {
		if _, err := s.setVisibility(ctx, q, entries); err != nil {
			return fmt.Errorf("extend jobs' visibility on SQS queue %s: %w", s.queues[q].Name, err)
		}
	}
	return nil
}

// Quarantine sets a message that cannot run aside: SQS has no other
// place for it, so it stays on its queue, invisible for 11 hours (SQS
// allows 12 from the receive, just now; a redrive policy's
// maxReceiveCount moves it to the dead-letter queue).
func (s *Store) Quarantine(ctx context.Context, j poller.Job, why error) {
	q := s.queues[j.Queue]
	s.log.Error("quarantined a malformed job: its message stays on the queue, invisible for 11 hours", "queue", q.Name,
		"message_id", j.SQS.ID, "error", why, "entry", poller.Preview(j.Payload))
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if _, err := s.c.ChangeMessageVisibility(cctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(q.URL),
		ReceiptHandle: aws.String(j.Handle), VisibilityTimeout: int32((maxVisibility - time.Hour) / time.Second)}); err != nil {
		s.log.Error("quarantine failed; the message is received again after its visibility timeout", "queue", q.Name, "error", s.classify(err))
	}
}

// Recover checks that SQS answers. A receive whose reply was lost leaves
// its messages in flight; SQS hands them out again after their
// visibility timeout, as it would a crashed queue:work's.
func (s *Store) Recover(ctx context.Context) ([]poller.Job, error) {
	for q := range s.queues {
		if _, err := s.depth(ctx, q); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// Wait returns once a long poll has ended (true if it caught a message),
// or after within.
// It long-polls each queue the store holds nothing of (one message, as
// long as within, 1 to 20 s); a poll runs on past a Wait that ends early.
// A receive cut off (a kill) may still take a message, which would then
// count an attempt and stay invisible for its visibility timeout; so a
// stop waits for the polls (Done).
func (s *Store) Wait(ctx context.Context, within time.Duration) (bool, error) {
	s.extendHeld(ctx)
	s.mu.Lock()
	if s.fresh > 0 {
		s.fresh = 0
		s.mu.Unlock()
		return true, nil
	}
	err := s.pollErr
	s.pollErr = nil
	if err == nil && !s.closing {
		poll := min(max(within.Truncate(time.Second), time.Second), longPoll)
		for q := range s.queues {
			if !s.polling[q] && len(s.held[q]) == 0 {
				s.polling[q] = true
				s.polls.Add(1)
				go s.longPoll(q, poll)
			}
		}
	}
	s.mu.Unlock()
	if err != nil {
		return false, err
	}
	t := time.NewTimer(within)
	defer t.Stop()
	select {
	case <-s.arrived:
		s.mu.Lock()
		err, fresh := s.pollErr, s.fresh
		s.pollErr, s.fresh = nil, 0
		s.mu.Unlock()
		return fresh > 0, err
	case <-t.C:
	case <-ctx.Done():
	}
	return false, nil
}

// longPoll receives one message of queue q, waiting up to wait for it,
// and holds it for the next Reserve.
func (s *Store) longPoll(q int, wait time.Duration) {
	defer s.polls.Done()
	ms, err := s.receive(context.Background(), q, 1, wait)
	now := time.Now()
	s.mu.Lock()
	s.polling[q] = false
	for _, m := range ms {
		s.held[q] = append(s.held[q], held{s.job(q, m), now})
	}
	s.fresh += len(ms)
	if err != nil {
		s.pollErr = err
	}
	s.mu.Unlock()
	select { // even empty-handed: a Reserve skipped the queue meanwhile
	case s.arrived <- struct{}{}:
	default:
	}
}

// hold keeps a job the poller gave back, unrun, for its queue's next
// Reserve. Its visibility was last extended by the poller's lease, at
// most a third of the queue's visibility timeout ago.
func (s *Store) hold(j poller.Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held[j.Queue] = append(s.held[j.Queue], held{j, time.Now().Add(-s.queues[j.Queue].visibility / 3)})
}

// takeHeld takes up to n of the jobs held for queue q, oldest first.
func (s *Store) takeHeld(q, n int) []poller.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	n = min(n, len(s.held[q]))
	out := make([]poller.Job, 0, n)
	for _, h := range s.held[q][:n] {
		out = append(out, h.job)
	}
	s.held[q] = append(s.held[q][:0], s.held[q][n:]...)
	return out
}

// extendHeld sets the held messages' visibility timeout to their queue's
// again, once a third of it has passed since the last time.
func (s *Store) extendHeld(ctx context.Context) {
	now := time.Now()
	s.mu.Lock()
	var leases []poller.Lease
	for q := range s.held {
		v := s.queues[q].visibility
		for i := range s.held[q] {
			h := &s.held[q][i]
			if v > 0 && now.Sub(h.extended) >= v/3 {
				h.extended = now
				leases = append(leases, poller.Lease{Job: h.job, Until: now.Add(v)})
			}
		}
	}
	s.mu.Unlock()
	if len(leases) > 0 {
		if err := s.extend(ctx, leases); err != nil {
			s.log.Warn("could not extend held jobs' visibility", "jobs", len(leases), "error", err)
		}
	}
}

// HasWork reports whether the store holds a job, or any queue has visible
// messages.
func (s *Store) HasWork(ctx context.Context, now time.Time) (bool, error) {
	s.mu.Lock()
	for q := range s.queues {
		if len(s.held[q]) > 0 {
			s.mu.Unlock()
			return true, nil
		}
	}
	s.mu.Unlock()
	for q := range s.queues {
		d, err := s.depth(ctx, q)
		if err != nil {
			return false, err
		}
		if d.Ready > 0 {
			return true, nil
		}
	}
	return false, nil
}

// Depths reads each queue's approximate counts: visible, delayed, in
// flight.
func (s *Store) Depths(ctx context.Context) ([]poller.QueueDepth, error) {
	out := make([]poller.QueueDepth, 0, len(s.queues))
	for q := range s.queues {
		d, err := s.depth(ctx, q)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func (s *Store) depth(ctx context.Context, q int) (poller.QueueDepth, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	out, err := s.c.GetQueueAttributes(cctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(s.queues[q].URL),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesDelayed, types.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	if err != nil {
		return poller.QueueDepth{}, fmt.Errorf("read SQS queue %s: %w", s.queues[q].Name, s.classify(err))
	}
	n := func(k types.QueueAttributeName) int64 {
		v, _ := strconv.ParseInt(out.Attributes[string(k)], 10, 64)
		return v
	}
	return poller.QueueDepth{Name: s.queues[q].Name, Ready: n(types.QueueAttributeNameApproximateNumberOfMessages),
		Delayed: n(types.QueueAttributeNameApproximateNumberOfMessagesDelayed), Reserved: n(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)}, nil
}

// Done ends a dispatcher connection's run: no more long polls start; it
// waits for those out (a second at most, while ctx lasts), and gives back
// to their queues the messages it holds (visible at once, their receive
// counted: they run at their next receive).
func (s *Store) Done(ctx context.Context) {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	ended := make(chan struct{})
	go func() { s.polls.Wait(); close(ended) }()
	wait := time.NewTimer(longPollGrace)
	defer wait.Stop()
	select {
	case <-ended:
	case <-wait.C:
	case <-ctx.Done():
	}
	s.mu.Lock()
	all := s.held
	s.held = make([][]held, len(s.queues))
	s.fresh, s.pollErr = 0, nil
	s.mu.Unlock()
	now := time.Now()
	for q, hs := range all {
		var back []poller.Lease
		for _, h := range hs {
			back = append(back, poller.Lease{Job: h.job, Until: now}) // visible at once
		}
		if err := s.extend(context.WithoutCancel(ctx), back); err != nil {
			s.log.Warn("could not give back received jobs; SQS hands them out again after their visibility timeout", "queue", s.queues[q].Name, "jobs", len(back), "error", err)
		}
	}
}

// longPollGrace is how long Done waits for the long polls out: the
// poller's are of a second.
const longPollGrace = 1500 * time.Millisecond

// classify marks errors that mean SQS is away, or refuses this client
// (credentials, permissions), as poller.Unreachable: the poller tells
// the outage once and tries again every second. A queue that does not
// exist is a plain error, and so is a call cut off by a stop.
func (s *Store) classify(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist":
			return fmt.Errorf("the queue does not exist (create it, or check the connection's prefix, suffix and queue): %w", err)
		}
	}
	return poller.Unreachable(err)
}
