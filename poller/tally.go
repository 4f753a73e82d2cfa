package poller

import (
	"context"
	"strconv"
	"strings"
	"time"
)

// Tally is counts of job runs in one time bucket (a minute or an hour),
// by queue and class, for the console's numbers: throughput, failures,
// and histograms of runtime, wait and memory. Kept in bounded space: a
// minute's for two hours, an hour's for eight days.
type Tally struct {
	Start  time.Time        // the bucket's start
	Span   time.Duration    // time.Minute or time.Hour
	Counts map[string]int64 // by TallyField
}

// Tallies is a store that keeps tallies beside the queues (Redis).
type Tallies interface {
	// AddTallies adds the counts to their buckets.
	AddTallies(ctx context.Context, ts []Tally) error
	// ReadTallies reads the buckets of span from from to to.
	ReadTallies(ctx context.Context, span time.Duration, from, to time.Time) ([]Tally, error)
}

// TallyKeep is how long a bucket of each span is kept.
var TallyKeep = map[time.Duration]time.Duration{time.Minute: 2 * time.Hour, time.Hour: 8 * 24 * time.Hour}

// Stats counted per queue and class: runs, failed ones, released ones;
// and, by bucket (see Buckets), runtimes, waits and peak memory.
const (
	StatRuns     = "n"
	StatFailed   = "f"
	StatReleased = "r"
	StatRuntime  = "rt"
	StatWait     = "wt"
	StatMemory   = "mem"
)

// DurationBuckets are the upper bounds of the runtime and wait histograms;
// MemoryBuckets those of peak memory. A value above the last falls in a
// bucket of its own (index len).
var (
	DurationBuckets = []time.Duration{
		time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond,
		50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond,
		time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute, 5 * time.Minute,
	}
	MemoryBuckets = []uint64{16 << 20, 32 << 20, 64 << 20, 128 << 20, 256 << 20, 512 << 20, 1 << 30, 2 << 30}
)

// TallyField names one count: a stat of a queue's class, and its bucket
// for a histogram ("" otherwise).
func TallyField(queue, class, stat string, bucket int) string {
	f := queue + "\x1f" + class + "\x1f" + stat
	if bucket >= 0 {
		f += "\x1f" + strconv.Itoa(bucket)
	}
	return f
}

// ParseTallyField is TallyField's inverse; bucket is -1 for a plain count.
func ParseTallyField(f string) (queue, class, stat string, bucket int, ok bool) {
	parts := strings.Split(f, "\x1f")
	switch len(parts) {
	case 3:
		return parts[0], parts[1], parts[2], -1, true
	case 4:
		b, err := strconv.Atoi(parts[3])
		return parts[0], parts[1], parts[2], b, err == nil
	}
	return "", "", "", 0, false
}

// DurationBucket is d's bucket in DurationBuckets.
func DurationBucket(d time.Duration) int {
	for i, b := range DurationBuckets {
		if d <= b {
			return i
		}
	}
	return len(DurationBuckets)
}

// MemoryBucket is m's bucket in MemoryBuckets.
func MemoryBucket(m uint64) int {
	for i, b := range MemoryBuckets {
		if m <= b {
			return i
		}
	}
	return len(MemoryBuckets)
}

// TallyKey is one count of a tally, before it is named for the store
// (Field): counting a run builds no strings.
type TallyKey struct {
	Queue, Class, Stat string
	Bucket             int // -1: not a histogram's
}

// Field is k's name in a Tally's Counts.
func (k TallyKey) Field() string { return TallyField(k.Queue, k.Class, k.Stat, k.Bucket) }

// Count adds r's run to counts.
func (r Record) Count(counts map[TallyKey]int64) {
	k := TallyKey{Queue: r.Queue, Class: r.Name, Bucket: -1}
	count := func(stat string, bucket int) {
		k.Stat, k.Bucket = stat, bucket
		counts[k]++
	}
	count(StatRuns, -1)
	if r.Failed {
		count(StatFailed, -1)
	}
	if r.Outcome == "released" {
		count(StatReleased, -1)
	}
	count(StatRuntime, DurationBucket(r.Duration))
	if r.Wait > 0 {
		count(StatWait, DurationBucket(r.Wait))
	}
	if r.Memory > 0 {
		count(StatMemory, MemoryBucket(r.Memory))
	}
}
