package sqs_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/kqueue/kqueue/internal/testenv"
)

// TestEmulator shows that the tests' SQS server keeps the semantics the
// store relies on, before any test trusts it: receive counts, visibility
// timeouts (expiring, changed, reset to 0), batch deletes, long polling,
// and FIFO message groups held while a message of theirs is in flight.
// (Deduplication ids: the store never sends, so it relies on none.)
func TestEmulator(t *testing.T) {
	t.Parallel()
	s := testenv.StartSQS(t)
	ctx := context.Background()
	c := s.Client
	receive := func(url string, n int32, wait int32) []types.Message {
		t.Helper()
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: n, WaitTimeSeconds: wait,
			AttributeNames: []types.QueueAttributeName{"ApproximateReceiveCount"}}) // deprecated; as Laravel asks for it
		if err != nil {
			t.Fatal(err)
		}
		return out.Messages
	}
	count := func(m types.Message) string { return m.Attributes["ApproximateReceiveCount"] }

	t.Run("receive counts and visibility", func(t *testing.T) {
		url := s.CreateQueue(t, "counts", map[string]string{"VisibilityTimeout": "1"})
		if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("a")}); err != nil {
			t.Fatal(err)
		}
		got := receive(url, 10, 0)
		if len(got) != 1 || count(got[0]) != "1" {
			t.Fatalf("first receive: %v", got)
		}
		if again := receive(url, 10, 0); len(again) != 0 {
			t.Fatalf("received while in flight: %v", again)
		}
		// The visibility timeout (1 s) lapses: a long poll sees it again.
		got = receive(url, 10, 5)
		if len(got) != 1 || count(got[0]) != "2" {
			t.Fatalf("after the visibility timeout: %v", got)
		}
		// Changed to 0: visible at once, counted again.
		if _, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(url), ReceiptHandle: got[0].ReceiptHandle}); err != nil {
			t.Fatal(err)
		}
		got = receive(url, 10, 0)
		if len(got) != 1 || count(got[0]) != "3" {
			t.Fatalf("after a change to 0: %v", got)
		}
		// Extended to 30 s: not seen for 2 s.
		if _, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(url), ReceiptHandle: got[0].ReceiptHandle, VisibilityTimeout: 30}); err != nil {
			t.Fatal(err)
		}
		if again := receive(url, 10, 2); len(again) != 0 {
			t.Fatalf("received within an extended visibility: %v", again)
		}
		out, err := c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url),
			Entries: []types.DeleteMessageBatchRequestEntry{{Id: aws.String("0"), ReceiptHandle: got[0].ReceiptHandle}}})
		if err != nil || len(out.Successful) != 1 {
			t.Fatalf("batch delete: %v %+v", err, out)
		}
		if n := s.Left(t, url); n != 0 {
			t.Fatalf("%d messages left after the delete", n)
		}
	})

	t.Run("long polling", func(t *testing.T) {
		url := s.CreateQueue(t, "long", nil)
		done := make(chan []types.Message)
		go func() {
			out, _ := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 20})
			done <- out.Messages
		}()
		start := time.Now()
		if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("b")}); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-done:
			if len(got) != 1 {
				t.Fatalf("long poll got %v", got)
			}
			t.Logf("a long poll returned %v after the send", time.Since(start))
		case <-time.After(15 * time.Second):
			t.Fatal("a long poll did not return the message sent meanwhile")
		}
	})

	t.Run("FIFO groups", func(t *testing.T) {
		url := s.CreateQueue(t, "groups.fifo", map[string]string{"ContentBasedDeduplication": "false"})
		for i, g := range []string{"a", "a", "b"} {
			if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(g + string(rune('0'+i))),
				MessageGroupId: aws.String(g), MessageDeduplicationId: aws.String(g + string(rune('0'+i)))}); err != nil {
				t.Fatal(err)
			}
		}
		first := receive(url, 1, 0)
		if len(first) != 1 || *first[0].Body != "a0" {
			t.Fatalf("first of the FIFO queue: %v", first)
		}
		// a0 in flight: a1 waits behind it; b2 may go.
		next := receive(url, 10, 0)
		if len(next) != 1 || *next[0].Body != "b2" {
			t.Fatalf("with a0 in flight, got %v, want b2 only", bodies(next))
		}
		if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: first[0].ReceiptHandle}); err != nil {
			t.Fatal(err)
		}
		last := receive(url, 10, 0)
		if len(last) != 1 || *last[0].Body != "a1" {
			t.Fatalf("after a0's delete, got %v, want a1", bodies(last))
		}
	})
}

func bodies(ms []types.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, *m.Body)
	}
	return out
}
