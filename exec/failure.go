package exec

// failureKind is why a job ended without PHP answering for it: Laravel's
// failure rules then run for it in another process (see orphan).
type failureKind uint8

const (
	failTimeout   failureKind = iota + 1 // it ran past its timeout and was killed
	failCrash                            // its process died under it
	failOOM                              // the kernel killed it over its memory limit
	failIsolation                        // kqueue could not start it inside its limits
)

// String is the kind as worker.php's fail request names it.
func (k failureKind) String() string {
	switch k {
	case failTimeout:
		return "timeout"
	case failCrash:
		return "crash"
	case failOOM:
		return "oom"
	case failIsolation:
		return "isolation"
	}
	return "unknown"
}

// result is the outcome's Result for the log and metrics.
func (k failureKind) result() string {
	switch k {
	case failCrash:
		return "crashed"
	case failIsolation:
		return "isolation-failed"
	}
	return k.String()
}

// recycleReason is why the worker that ran the job was replaced.
func (k failureKind) recycleReason() string {
	if k == failTimeout {
		return k.String()
	}
	return failCrash.String()
}
