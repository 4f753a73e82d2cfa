package exec

import "github.com/kqueue/kqueue/protocol"

// recycleCrash is why a worker that died, or whose job's process died, is
// replaced (see pool.recycled).
const recycleCrash = "crash"

// recycleReason is why the worker that ran a job lost to f is replaced.
func recycleReason(f protocol.Failure) string {
	if f == protocol.FailTimeout {
		return f.String()
	}
	return recycleCrash
}
