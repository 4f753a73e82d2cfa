package web

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/kqueue/kqueue/poller"
)

// batch is one of Laravel's job batches (job_batches), as the app's
// batch repository reads it.
type batch struct {
	ID           string   `json:"id"`
	Name         string   `json:"name"`
	Total        int      `json:"total"`
	Pending      int      `json:"pending"`
	Failed       int      `json:"failed"`
	Processed    int      `json:"processed"`
	Progress     int      `json:"progress"`
	FailedJobIDs []string `json:"failed_job_ids"`
	CreatedAt    *int64   `json:"created_at"`
	CancelledAt  *int64   `json:"cancelled_at"`
	FinishedAt   *int64   `json:"finished_at"`
}

// State says where the batch is: cancelled, finished, or running.
func (b batch) State() string {
	switch {
	case b.CancelledAt != nil:
		return "cancelled"
	case b.FinishedAt != nil:
		return "finished"
	}
	return "running"
}

// Created is when the batch was dispatched.
func (b batch) Created() string { return unixTime(b.CreatedAt) }

// Finished is when the batch finished, or "".
func (b batch) Finished() string { return unixTime(b.FinishedAt) }

func unixTime(t *int64) string {
	if t == nil {
		return ""
	}
	return time.Unix(*t, 0).UTC().Format("2006-01-02 15:04:05 MST")
}

// Batches is the batches page's data: the newest 50 (before Before).
type Batches struct {
	Batches []batch
	Older   string // Before for the next page
}

func (s *Server) batches(r *http.Request) (any, error) {
	var answer struct {
		Batches []batch `json:"batches"`
	}
	req := map[string]any{"op": "batches"}
	if before := r.URL.Query().Get("before"); before != "" {
		req["before"] = before
	}
	err := s.ask(r.Context(), req, &answer)
	out := Batches{Batches: answer.Batches}
	if len(out.Batches) == 50 {
		out.Older = out.Batches[49].ID
	}
	return out, err
}

// Batch is a batch's page: the batch, and its pending jobs found waiting
// in the queues.
type Batch struct {
	batch
	Waiting     []poller.WaitingJob
	WaitingNote string
}

// pendingFinder is a store that can look through its queues for the jobs
// whose payload holds a string (the Redis store: a batch's id).
type pendingFinder interface {
	Find(ctx context.Context, needle string, limit int) ([]poller.WaitingJob, int, error)
}

func (s *Server) batchPage(r *http.Request) (any, error) {
	var answer struct {
		Batch *batch `json:"batch"`
	}
	if err := s.ask(r.Context(), map[string]any{"op": "batch", "id": r.PathValue("id")}, &answer); err != nil {
		return nil, err
	}
	if answer.Batch == nil {
		return nil, errNotFound
	}
	out := Batch{batch: *answer.Batch}
	if f, ok := s.cfg.Store.(pendingFinder); ok && out.Pending > 0 {
		found, looked, err := f.Find(r.Context(), out.ID, 200)
		out.Waiting = found
		switch {
		case err != nil:
			out.WaitingNote = "the queues could not be read: " + err.Error()
		default:
			out.WaitingNote = fmt.Sprintf("Looked through the first %d jobs of each queue's ready, delayed and reserved jobs", looked)
		}
	}
	return out, nil
}

// cancelBatch is Batch::cancel(): its jobs still to run do nothing.
func (s *Server) cancelBatch(r *http.Request, who Who) (string, error) {
	id := r.PathValue("id")
	err := s.ask(r.Context(), map[string]any{"op": "cancel", "id": id}, nil)
	s.record("cancel-batch", who, err, "batch", id)
	return "batch cancelled", err
}

// retryBatch is queue:retry-batch: the batch's failed jobs pushed again.
func (s *Server) retryBatch(r *http.Request, who Who) (string, error) {
	id := r.PathValue("id")
	var answer struct{ Output string }
	err := s.ask(r.Context(), map[string]any{"op": "retry-batch", "id": id}, &answer)
	s.mu.Lock()
	s.failed = cached[[]failedJob]{}
	s.mu.Unlock()
	s.record("retry-batch", who, err, "batch", id)
	return "the batch's failed jobs were pushed back onto their queues", err
}
