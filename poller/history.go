package poller

import (
	"context"
	"time"
)

// Record is one run of a job, as the console's job history keeps it.
type Record struct {
	ID       string        `json:"-"` // the store's, in the order it was written
	UUID     string        `json:"uuid"`
	Name     string        `json:"name"`
	Queue    string        `json:"queue"`
	Host     string        `json:"host"`
	Instance string        `json:"instance"`
	Attempt  int           `json:"attempt"`
	Outcome  string        `json:"outcome"` // done, failed, released, kept, timeout, …
	Failed   bool          `json:"failed,omitempty"`
	Reason   string        `json:"reason,omitempty"`
	Ended    time.Time     `json:"ended"`
	Duration time.Duration `json:"duration"`
	// Wait is from when the job was pushed to when it started (Laravel 11
	// and later stamp a payload with its push time); 0 when unknown.
	Wait     time.Duration `json:"wait,omitempty"`
	Memory   uint64        `json:"memory,omitempty"`
	CPU      time.Duration `json:"cpu,omitempty"`
	Strategy string        `json:"strategy,omitempty"`
	Tags     []string      `json:"tags,omitempty"`
	Output   string        `json:"output,omitempty"`
	// Payload is the job's payload as it was on the queue, its first
	// KeepPayload bytes.
	Payload string `json:"payload"`
}

// KeepPayload bounds the payload a record keeps.
const KeepPayload = 8 << 10

// KeepReason bounds the error a record keeps (the journal has up to 4 MiB
// of it, failed_jobs all): a run of jobs failing with errors that quote
// megabytes of SQL would otherwise fill Redis with the history.
const KeepReason = 8 << 10

// History is a store that keeps the recent runs of jobs beside the
// queues (Redis), for the console.
type History interface {
	// Record appends records, keeping about the last keep.
	Record(ctx context.Context, recs []Record, keep int) error
	// Records reads up to n records written after the one with ID after
	// ("": from the oldest kept), oldest first.
	Records(ctx context.Context, after string, n int) ([]Record, error)
	// RecordsBefore reads up to n records written before the one with ID
	// before ("": from the newest), newest first.
	RecordsBefore(ctx context.Context, before string, n int) ([]Record, error)
}
