package poller

import (
	"log/slog"
	"time"
)

// doneLog keeps the entries of jobs that simply succeeded within
// Config.DonePerSecond. Past it in a second, a job's entry is a debug
// one, and one info entry once the second is over says how many jobs it
// left out. journald keeps so many info messages of a service in 30 s
// and drops the rest of the 30 s — kqueue's other info messages with
// them, and "job done" entries at random; under the limit, the journal's
// info level stays whole and says what it left out.
type doneLog struct {
	limit  int   // 0: none
	second int64 // the second counted, in Unix time
	logged int   // info entries in it
	held   int   // debug ones in it
}

// take reports whether a job done at now gets an info entry.
func (d *doneLog) take(now time.Time, log *slog.Logger) bool {
	if d.limit <= 0 {
		return true
	}
	if s := now.Unix(); s != d.second {
		d.tell(log)
		d.second, d.logged = s, 0
	}
	if d.logged < d.limit {
		d.logged++
		return true
	}
	d.held++
	return false
}

// tick tells what a second that is over left out (the main loop calls it
// about once a second, so the count comes without another job).
func (d *doneLog) tick(now time.Time, log *slog.Logger) {
	if d.held > 0 && now.Unix() != d.second {
		d.tell(log)
	}
}

// tell logs how many jobs' entries were debug ones, if any.
func (d *doneLog) tell(log *slog.Logger) {
	if d.held > 0 {
		log.Info("jobs done beyond [log] jobs_done_per_second", "count", d.held, "per_second", d.limit)
		d.held = 0
	}
}
