package poller

import (
	"context"
	"fmt"
	"testing"

	"github.com/kqueue/kqueue/internal/testenv"
)

// A store call cut short by its context (kqueue stopping) is no outage:
// nothing is logged, but the next reserve still recovers, as its reply may
// be lost. A store that is away is one, told once.
func TestOutageIgnoresACancelledCall(t *testing.T) {
	logs := testenv.NewLogs()
	o := &outage{log: logs.Logger(), store: "PostgreSQL"}
	o.begin(Unreachable(fmt.Errorf("reserve from jobs: timeout: context already done: %w", context.Canceled)))
	if o.down() || !o.recover || logs.Count("is unreachable") != 0 {
		t.Errorf("after a cancelled call: down %v, recover %v, log:\n%s", o.down(), o.recover, logs.String())
	}
	o.begin(Unreachable(fmt.Errorf("write: broken pipe")))
	o.begin(Unreachable(fmt.Errorf("write: broken pipe")))
	if !o.down() || logs.Count("is unreachable") != 1 {
		t.Errorf("after the store went away: down %v, log:\n%s", o.down(), logs.String())
	}
}
