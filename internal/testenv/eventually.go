package testenv

import (
	"runtime"
	"testing"
	"time"
)

// Eventually checks cond every few milliseconds until it holds, failing the
// test after timeout with what it was waiting for. It is the tests' one
// way to wait for a state that no event announces (Redis contents, a
// process's files); where an event exists, wait for the event.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond) // the polling interval, not a wait for an event
	}
}

// Never checks, for as long as within, that cond does not come to hold:
// for the few tests that must show something does not happen while a
// window is open (no event says "it did not").
func Never(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); {
		if cond() {
			t.Fatal(what)
		}
		runtime.Gosched()
	}
}
