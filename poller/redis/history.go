package redis

import (
	"context"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kqueue/kqueue/poller"
	goredis "github.com/redis/go-redis/v9"
)

// historyKey is the STREAM of recent job runs: one entry per Record call,
// a batch of runs, in one field, "b": each run packed (packRecord) and its
// payload as one part more. One entry per batch, not per run: Redis adds
// one entry of a few hundred runs for about what it costs to add one, and
// the daemon writes two arguments, not seven per run (the history was a
// seventh of the daemon's instructions per no-op job, and of Redis' CPU).
// A run's ID is its entry's and how many runs follow it there, "ms-seq.k"
// (counted from the end, the ID of an entry's last run says that reading
// on from it starts at the next entry). Entries of the earlier forms hold
// one run each, whose ID is the entry's: packed in "r", its payload in
// "p"; and before that one field per part. Trimmed to about the number
// kept (see recordBuf); one key, so one Redis Cluster slot.
func (s *Store) historyKey() string { return s.prefix + "kqueue:jobs" }

// Record appends records to the history as one entry, in one round trip,
// and trims the history to about keep runs.
func (s *Store) Record(ctx context.Context, recs []poller.Record, keep int) error {
	if len(recs) == 0 {
		return nil
	}
	b := &s.history
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = b.buf[:0]
	for _, r := range recs {
		b.buf = packRecord(b.buf, r)
		b.buf = appendPart(b.buf, r.Payload)
	}
	trim := b.trimAt(keep)
	id, err := s.addRuns(ctx, trim, b.buf)
	var refused goredis.Error
	if trim[0] == "MINID" && errors.As(err, &refused) && !unreachable(err) {
		// A server before Redis 6.2 reads MINID as an entry ID, and
		// refuses it. If the same entry with the stream trimmed by a
		// number of entries is taken, so are the next ones.
		b.noMinID = true
		if id, err = s.addRuns(ctx, b.trimAt(keep), b.buf); err != nil {
			b.noMinID = false
		}
	}
	if err != nil {
		return s.classify(err)
	}
	b.added(id, len(recs), keep)
	return nil
}

// addRuns adds one entry of runs, the stream trimmed as trim says, and
// returns its ID.
func (s *Store) addRuns(ctx context.Context, trim []any, runs []byte) (string, error) {
	args := make([]any, 0, 9)
	args = append(append(append(args, "XADD", s.historyKey()), trim...), "*", "b", runs)
	return s.rdb.Do(ctx, args...).Text()
}

// recordBuf is what Record writes its entries from, and the window that
// trims the history: the entries this store has added, oldest first, as
// few as hold keep runs. Once it holds keep, each XADD trims the stream
// to its first entry (MINID ~), the window as it was before that XADD.
// With one daemon writing, that keeps the last keep runs and up to two
// batches more (and, as ~ says, whole nodes of the stream); with
// several, each trims to its own window, so the stream keeps the runs of
// the last keep of the busiest one, and the others' of the same span.
// Until then (a daemon that has just started) the stream keeps keep
// entries (MAXLEN ~), each of one run at least. On a server before Redis
// 6.2 (no MINID) it keeps as many entries as the window and the new one
// (MAXLEN ~), which with several daemons keeps fewer runs.
type recordBuf struct {
	mu      sync.Mutex
	buf     []byte // the entry's runs
	window  []added
	runs    int  // runs in window
	noMinID bool // the server refused MINID
}

// added is an entry a recorder added: its ID and how many runs it holds.
type added struct {
	id   string
	runs int
}

// trimAt is the XADD arguments that trim the history to b's window.
func (b *recordBuf) trimAt(keep int) []any {
	switch {
	case b.runs < keep || len(b.window) == 0:
		return []any{"MAXLEN", "~", keep}
	case b.noMinID:
		return []any{"MAXLEN", "~", len(b.window) + 1}
	}
	return []any{"MINID", "~", b.window[0].id}
}

// added records an entry of runs added with ID id, and drops from the
// window the oldest entries that the others hold keep runs without. An ID
// not after the window's last (the stream made again on a server whose
// clock is behind) starts the window again: its IDs would trim the new
// entries.
func (b *recordBuf) added(id string, runs int, keep int) {
	if n := len(b.window); n > 0 && !idAfter(id, b.window[n-1].id) {
		b.window, b.runs = b.window[:0], 0
	}
	b.window = append(b.window, added{id, runs})
	b.runs += runs
	drop := 0
	for drop < len(b.window)-1 && b.runs-b.window[drop].runs >= keep {
		b.runs -= b.window[drop].runs
		drop++
	}
	if drop > 0 {
		b.window = append(b.window[:0], b.window[drop:]...)
	}
}

// idAfter reports whether the stream entry ID a comes after b.
func idAfter(a, b string) bool {
	am, as := entryID(a)
	bm, bs := entryID(b)
	return am > bm || am == bm && as > bs
}

// appendPart appends x to b as a part: its length in decimal, a colon and
// its bytes.
func appendPart(b []byte, x string) []byte {
	b = strconv.AppendInt(b, int64(len(x)), 10)
	b = append(b, ':')
	return append(b, x...)
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
	str := func(x string) { b = appendPart(b, x) }
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

// cutPart cuts the part appendPart wrote at the start of packed.
func cutPart(packed string) (x, rest string, ok bool) {
	n, rest, found := strings.Cut(packed, ":")
	l, err := strconv.Atoi(n)
	if !found || err != nil || l < 0 || l > len(rest) {
		return "", "", false
	}
	return rest[:l], rest[l:], true
}

// unpackRecord reads what packRecord wrote at the start of packed into r,
// and returns what follows it; false if it is not that.
func unpackRecord(packed string, r *poller.Record) (rest string, ok bool) {
	ok = true
	str := func() string {
		x, rest, good := cutPart(packed)
		ok = ok && good
		packed = rest
		return x
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
	return packed, ok
}

// Records reads up to n runs recorded after the one with ID after ("":
// from the oldest kept), oldest first.
func (s *Store) Records(ctx context.Context, after string, n int) ([]poller.Record, error) {
	if after == "" {
		return s.readRuns(ctx, "-", nil, false, n)
	}
	entry, later := cutRunID(after)
	if later == 0 {
		return s.readRuns(ctx, nextID(entry), nil, false, n) // nothing of its entry after it
	}
	return s.readRuns(ctx, entry, func(runs int) (int, int) { return max(runs-later, 0), runs }, false, n)
}

// RecordsBefore reads up to n runs recorded before the one with ID before
// ("": from the newest), newest first.
func (s *Store) RecordsBefore(ctx context.Context, before string, n int) ([]poller.Record, error) {
	if before == "" {
		return s.readRuns(ctx, "+", nil, true, n)
	}
	entry, later := cutRunID(before)
	return s.readRuns(ctx, entry, func(runs int) (int, int) { return 0, max(runs-later-1, 0) }, true, n)
}

// readRuns reads up to n runs, entry after entry from the entry at on,
// oldest first, or with back newest first. Of the entry at itself it
// keeps the runs [lo, hi) that wanted says, given how many it holds (nil:
// all).
func (s *Store) readRuns(ctx context.Context, at string, wanted func(runs int) (lo, hi int), back bool, n int) ([]poller.Record, error) {
	if n <= 0 {
		return nil, nil
	}
	var out []poller.Record
	var read reading
	for count := 1; len(out) < n; {
		var batch []goredis.XMessage
		var err error
		if back {
			batch, err = s.rdb.XRevRangeN(ctx, s.historyKey(), at, "-", int64(count)).Result()
		} else {
			batch, err = s.rdb.XRangeN(ctx, s.historyKey(), at, "+", int64(count)).Result()
		}
		if err != nil {
			return nil, s.classify(err)
		}
		for _, e := range batch {
			from := len(out)
			out = appendRuns(out, e)
			read.entry(len(out) - from)
			if e.ID == at && wanted != nil {
				lo, hi := wanted(len(out) - from)
				out = append(out[:from], out[from+lo:from+hi]...)
			}
			if back {
				slices.Reverse(out[from:])
			}
		}
		if len(batch) < count {
			break
		}
		last := batch[len(batch)-1].ID
		if at, wanted = nextID(last), nil; back {
			at = prevID(last)
		}
		if at == "" {
			break // the first ID there can be
		}
		count = read.next(n - len(out))
	}
	return out[:min(len(out), n)], nil
}

// reading sizes the reads of runs: one entry first, then as many as
// should hold the runs still wanted, by the runs per entry read so far —
// but no more than twice the entries read so far, nor maxEntries: entries
// of a few runs (a quiet spell) may be followed by entries of hundreds.
type reading struct {
	entries, runs int // read so far
}

// maxEntries bounds one read: at most 64 batches of runs (up to 512 each).
const maxEntries = 64

// entry counts an entry read and the runs it held.
func (r *reading) entry(runs int) { r.entries, r.runs = r.entries+1, r.runs+runs }

// next is how many entries to read for want runs more.
func (r *reading) next(want int) int {
	return min(max(want*r.entries/max(r.runs, 1), 1), want, 2*r.entries, maxEntries)
}

// cutRunID cuts a run's ID into its entry's ID and how many runs follow it
// in the entry (0 for an entry of one run, whose ID is the entry's).
func cutRunID(id string) (entry string, later int) {
	entry, place, found := strings.Cut(id, ".")
	if !found {
		return id, 0
	}
	later, _ = strconv.Atoi(place)
	return entry, max(later, 0)
}

// appendRuns appends the runs of a stream entry to out: a batch of runs
// (Record), or one run of an earlier form — packed, or one field per part,
// named by a letter:
//
//	u uuid  n name  q queue  h host  i instance  a attempt  o outcome
//	f failed ("1")  e reason  t ended  d duration  w wait  m memory
//	c cpu  s strategy  g tags  x output  p payload
//
// Runs that do not unpack (not kqueue's) read as one run, its outcome
// "unreadable".
func appendRuns(out []poller.Record, e goredis.XMessage) []poller.Record {
	str := func(k string) string {
		x, _ := e.Values[k].(string)
		return x
	}
	if packed, ok := e.Values["b"].(string); ok {
		from := len(out)
		for packed != "" {
			var r poller.Record
			rest, ok := unpackRecord(packed, &r)
			if ok {
				r.Payload, rest, ok = cutPart(rest)
			}
			if !ok {
				out = append(out, poller.Record{Outcome: "unreadable"})
				break
			}
			out = append(out, r)
			packed = rest
		}
		// The runs' IDs, in one string.
		runs := out[from:]
		var ids strings.Builder
		ends := make([]int, len(runs))
		for i := range runs {
			ids.WriteString(e.ID)
			ids.WriteByte('.')
			ids.WriteString(strconv.Itoa(len(runs) - 1 - i))
			ends[i] = ids.Len()
		}
		all, start := ids.String(), 0
		for i, end := range ends {
			runs[i].ID, start = all[start:end], end
		}
		return out
	}
	r := poller.Record{ID: e.ID, Payload: str("p")}
	if packed, ok := e.Values["r"].(string); ok {
		if rest, ok := unpackRecord(packed, &r); !ok || rest != "" {
			r = poller.Record{ID: e.ID, Outcome: "unreadable"}
		}
		return append(out, r)
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
	return append(out, r)
}

// entryID is a stream entry ID's two numbers, "ms-seq".
func entryID(id string) (ms, seq uint64) {
	m, q, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseUint(m, 10, 64)
	seq, _ = strconv.ParseUint(q, 10, 64)
	return ms, seq
}

// formatID is the stream entry ID of ms and seq.
func formatID(ms, seq uint64) string {
	return strconv.FormatUint(ms, 10) + "-" + strconv.FormatUint(seq, 10)
}

// nextID is the stream entry ID right after id: XRANGE's start past id,
// on servers before 6.2 too (no exclusive ranges there).
func nextID(id string) string {
	ms, seq := entryID(id)
	return formatID(ms, seq+1)
}

// prevID is the stream entry ID right before id, or "" if there is none.
func prevID(id string) string {
	switch ms, seq := entryID(id); {
	case seq > 0:
		return formatID(ms, seq-1)
	case ms > 0:
		return formatID(ms-1, math.MaxUint64)
	}
	return ""
}
