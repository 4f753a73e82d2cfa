package rawio

import (
	"os/exec"
	"testing"
	"time"
)

// AwaitExit returns once the child has exited, and Wait then reaps it.
func TestAwaitExit(t *testing.T) {
	cmd := exec.Command("cat")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		AwaitExit(cmd.Process.Pid)
		close(exited)
	}()
	in.Close() // cat exits at the end of its input
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("AwaitExit did not return after the child exited")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}
