package notify

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listen is a real unixgram socket standing in for systemd's.
func listen(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

func read(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestMessages(t *testing.T) {
	c := listen(t)
	t.Setenv("WATCHDOG_USEC", "10000000")
	n := New()
	if n.WatchdogInterval() != 5*time.Second {
		t.Errorf("watchdog interval %s, want half of 10s", n.WatchdogInterval())
	}
	steps := []struct {
		send func() error
		want string
	}{
		{func() error { return n.Ready("0 running") }, "READY=1\nSTATUS=0 running"},
		{func() error { return n.Status("2 running, 10 done") }, "STATUS=2 running, 10 done"},
		{n.Watchdog, "WATCHDOG=1"},
		{n.Reloading, "RELOADING=1\nMONOTONIC_USEC="},
		{func() error { return n.Stopping("draining 2 jobs") }, "STOPPING=1\nSTATUS=draining 2 jobs"},
		{func() error { return n.ExtendTimeout(30 * time.Second) }, "EXTEND_TIMEOUT_USEC=30000000"},
	}
	for _, s := range steps {
		if err := s.send(); err != nil {
			t.Fatal(err)
		}
		if got := read(t, c); !strings.HasPrefix(got, s.want) {
			t.Errorf("got %q, want %q", got, s.want)
		}
	}
}

func TestWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := New()
	if err := n.Ready("x"); err != nil {
		t.Errorf("Ready without $NOTIFY_SOCKET: %v", err)
	}
	if n.WatchdogInterval() != 0 {
		t.Errorf("watchdog without systemd: %s", n.WatchdogInterval())
	}
}
