package poller

import (
	"maps"
	"testing"
	"time"
)

// A run counts once among its class's runs, once more for each of failed
// and released when it was, and once in each histogram it has a value
// for; named for the store, each count reads back as what it counts.
func TestRecordCount(t *testing.T) {
	t.Parallel()
	counts := map[TallyKey]int64{}
	Record{Queue: "default", Name: `App\Jobs\Noop`, Outcome: "done", Duration: 3 * time.Millisecond}.Count(counts)
	Record{Queue: "default", Name: `App\Jobs\Noop`, Outcome: "done", Duration: 4 * time.Millisecond, Memory: 20 << 20}.Count(counts)
	Record{Queue: "high", Name: `App\Jobs\Flaky`, Outcome: "released", Failed: true, Duration: 2 * time.Second, Wait: time.Second}.Count(counts)
	named := map[string]int64{}
	for k, n := range counts {
		named[k.Field()] = n
	}
	want := map[string]int64{
		TallyField("default", `App\Jobs\Noop`, StatRuns, -1):   2,
		TallyField("default", `App\Jobs\Noop`, StatRuntime, 2): 2, // both ≤ 5 ms
		TallyField("default", `App\Jobs\Noop`, StatMemory, 1):  1, // ≤ 32 MiB
		TallyField("high", `App\Jobs\Flaky`, StatRuns, -1):     1,
		TallyField("high", `App\Jobs\Flaky`, StatFailed, -1):   1,
		TallyField("high", `App\Jobs\Flaky`, StatReleased, -1): 1,
		TallyField("high", `App\Jobs\Flaky`, StatRuntime, 10):  1, // ≤ 2 s
		TallyField("high", `App\Jobs\Flaky`, StatWait, 9):      1, // ≤ 1 s
	}
	if !maps.Equal(named, want) {
		t.Errorf("counted %v\nwant %v", named, want)
	}
	for f := range named {
		q, class, stat, b, ok := ParseTallyField(f)
		if !ok || TallyField(q, class, stat, b) != f {
			t.Errorf("%q does not read back", f)
		}
	}
}
