package redis

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/kqueue/kqueue/poller"
	goredis "github.com/redis/go-redis/v9"
)

// historyKey is the STREAM of recent job runs, one entry per run (a
// poller.Record) with two fields: "r", the record but its payload, packed
// (packRecord), and "p", the payload. Two fields, not one per part of the
// record: a record costs Redis and the daemon a few arguments to parse,
// not some thirty, and Redis stores the two names once for all the
// entries. Trimmed to about the number kept as it grows; one key, so one
// Redis Cluster slot.
func (s *Store) historyKey() string { return s.prefix + "kqueue:jobs" }

// Record appends records to the history, in one round trip. The packed
// records share one buffer and the commands' arguments one array, both
// kept for the next call, and the arguments that are the same in every
// command are boxed once: a run's record costs a few allocations, not
// dozens.
func (s *Store) Record(ctx context.Context, recs []poller.Record, keep int) error {
	if len(recs) == 0 {
		return nil
	}
	b := &s.history
	b.mu.Lock()
	defer b.mu.Unlock()
	// The packed records first, all of them: the commands then point into
	// a buffer that no longer moves.
	b.buf, b.ends = b.buf[:0], b.ends[:0]
	for _, r := range recs {
		b.buf = packRecord(b.buf, r)
		b.ends = append(b.ends, len(b.buf))
	}
	// Each packed record as a string on buf's bytes, which do not change
	// until Exec has returned; the arguments point at these strings and
	// at the records' payloads (a string put in an interface is a copy of
	// its header on the heap).
	b.packed = b.packed[:0]
	start := 0
	for _, end := range b.ends {
		b.packed = append(b.packed, unsafe.String(&b.buf[start], end-start))
		start = end
	}
	pipe := s.rdb.Pipeline()
	var key, maxLen any = s.historyKey(), strconv.Itoa(keep)
	args := b.args[:0]
	for i := range recs {
		at := len(args)
		args = append(args, "XADD", key)
		if i == len(recs)-1 {
			// Trimmed once a batch, by its last: the bound is loose
			// anyway (~: whole nodes of the stream go), and three
			// arguments fewer for every other record.
			args = append(args, "MAXLEN", "~", maxLen)
		}
		args = append(args, "*", "r", &b.packed[i])
		if recs[i].Payload != "" {
			args = append(args, "p", &recs[i].Payload)
		}
		pipe.Do(ctx, args[at:len(args):len(args)]...)
	}
	_, err := pipe.Exec(ctx)
	clear(args) // no hold on the payloads
	b.args = args[:0]
	clear(b.packed)
	return s.classify(err)
}

// recordBuf is what Record writes its commands from; the commands are
// done with it when Exec returns.
type recordBuf struct {
	mu     sync.Mutex
	buf    []byte   // the packed records, one after the other
	ends   []int    // where each ends in buf
	packed []string // each packed record, on buf's bytes
	args   []any    // the commands' arguments, one after the other
}

// packRecord appends r but its payload to b as its parts, each its length
// in decimal, a colon and its bytes, in this order:
//
//	uuid name queue host instance attempt outcome failed ("1" or "")
//	reason ended duration wait memory cpu strategy tags output
//
// Times are Unix milliseconds, durations microseconds, tags joined by a
// line feed, numbers in decimal ("" for 0). Nothing is escaped: a part's
// length says where it ends, whatever bytes it holds.
func packRecord(b []byte, r poller.Record) []byte {
	str := func(x string) {
		b = strconv.AppendInt(b, int64(len(x)), 10)
		b = append(b, ':')
		b = append(b, x...)
	}
	num := func(n int64) {
		if n == 0 {
			b = append(b, "0:"...)
			return
		}
		var d [20]byte
		x := strconv.AppendInt(d[:0], n, 10)
		b = strconv.AppendInt(b, int64(len(x)), 10)
		b = append(b, ':')
		b = append(b, x...)
	}
	str(r.UUID)
	str(r.Name)
	str(r.Queue)
	str(r.Host)
	str(r.Instance)
	num(int64(r.Attempt))
	str(r.Outcome)
	if r.Failed {
		str("1")
	} else {
		str("")
	}
	str(r.Reason)
	num(r.Ended.UnixMilli())
	num(r.Duration.Microseconds())
	num(r.Wait.Microseconds())
	num(int64(r.Memory))
	num(r.CPU.Microseconds())
	str(r.Strategy)
	str(strings.Join(r.Tags, "\n")) // no tags (the rule): no allocation
	str(r.Output)
	return b
}

// unpackRecord reads what packRecord wrote into r; false if it is not that.
func unpackRecord(packed string, r *poller.Record) bool {
	ok := true
	str := func() string {
		n, rest, found := strings.Cut(packed, ":")
		l, err := strconv.Atoi(n)
		if !found || err != nil || l < 0 || l > len(rest) {
			ok = false
			packed = ""
			return ""
		}
		packed = rest[l:]
		return rest[:l]
	}
	num := func() int64 {
		x := str()
		if x == "" {
			return 0
		}
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			ok = false
		}
		return n
	}
	r.UUID, r.Name, r.Queue, r.Host, r.Instance = str(), str(), str(), str(), str()
	r.Attempt = int(num())
	r.Outcome = str()
	r.Failed = str() == "1"
	r.Reason = str()
	r.Ended = time.UnixMilli(num())
	r.Duration = time.Duration(num()) * time.Microsecond
	r.Wait = time.Duration(num()) * time.Microsecond
	r.Memory = uint64(num())
	r.CPU = time.Duration(num()) * time.Microsecond
	r.Strategy = str()
	if g := str(); g != "" {
		r.Tags = strings.Split(g, "\n")
	}
	r.Output = str()
	return ok && packed == ""
}

// Records reads up to n records after the entry after, oldest first.
func (s *Store) Records(ctx context.Context, after string, n int) ([]poller.Record, error) {
	start := "-"
	if after != "" {
		start = nextID(after)
	}
	entries, err := s.rdb.XRangeN(ctx, s.historyKey(), start, "+", int64(n)).Result()
	if err != nil {
		return nil, s.classify(err)
	}
	return records(entries), nil
}

// RecordsBefore reads up to n records before the entry before, newest
// first.
func (s *Store) RecordsBefore(ctx context.Context, before string, n int) ([]poller.Record, error) {
	end := "+"
	if before != "" {
		end = prevID(before)
		if end == "" {
			return nil, nil // before is the first ID there can be
		}
	}
	entries, err := s.rdb.XRevRangeN(ctx, s.historyKey(), end, "-", int64(n)).Result()
	if err != nil {
		return nil, s.classify(err)
	}
	return records(entries), nil
}

// records decodes stream entries: packed ones (Record), and those written
// before, one field per part, named by a letter:
//
//	u uuid  n name  q queue  h host  i instance  a attempt  o outcome
//	f failed ("1")  e reason  t ended  d duration  w wait  m memory
//	c cpu  s strategy  g tags  x output  p payload
//
// A packed record that does not unpack (not kqueue's) reads as its ID
// alone, its outcome "unreadable".
func records(entries []goredis.XMessage) []poller.Record {
	out := make([]poller.Record, 0, len(entries))
	for _, e := range entries {
		str := func(k string) string {
			x, _ := e.Values[k].(string)
			return x
		}
		r := poller.Record{ID: e.ID, Payload: str("p")}
		if packed, ok := e.Values["r"].(string); ok {
			if !unpackRecord(packed, &r) {
				r = poller.Record{ID: e.ID, Outcome: "unreadable"}
			}
			out = append(out, r)
			continue
		}
		num := func(k string) int64 {
			n, _ := strconv.ParseInt(str(k), 10, 64)
			return n
		}
		r.UUID, r.Name, r.Queue, r.Host, r.Instance = str("u"), str("n"), str("q"), str("h"), str("i")
		r.Attempt, r.Outcome, r.Failed, r.Reason = int(num("a")), str("o"), str("f") == "1", str("e")
		r.Ended, r.Duration = time.UnixMilli(num("t")), time.Duration(num("d"))*time.Microsecond
		r.Wait, r.Memory = time.Duration(num("w"))*time.Microsecond, uint64(num("m"))
		r.CPU, r.Strategy, r.Output = time.Duration(num("c"))*time.Microsecond, str("s"), str("x")
		if g := str("g"); g != "" {
			r.Tags = strings.Split(g, "\n")
		}
		out = append(out, r)
	}
	return out
}

// nextID is the stream entry ID right after id ("ms-seq"): XRANGE's start
// past id, on servers before 6.2 too (no exclusive ranges there).
func nextID(id string) string {
	ms, seq, _ := strings.Cut(id, "-")
	n, _ := strconv.ParseUint(seq, 10, 64)
	return ms + "-" + strconv.FormatUint(n+1, 10)
}

// prevID is the stream entry ID right before id, or "" if there is none.
func prevID(id string) string {
	ms, seq, _ := strings.Cut(id, "-")
	n, _ := strconv.ParseUint(seq, 10, 64)
	if n > 0 {
		return ms + "-" + strconv.FormatUint(n-1, 10)
	}
	m, _ := strconv.ParseUint(ms, 10, 64)
	if m == 0 {
		return ""
	}
	return strconv.FormatUint(m-1, 10) + "-18446744073709551615"
}
