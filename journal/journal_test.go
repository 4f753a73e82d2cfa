package journal

import (
	"encoding/binary"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// parse decodes one native-protocol datagram.
func parse(t *testing.T, d []byte) map[string]string {
	t.Helper()
	fields := map[string]string{}
	for len(d) > 0 {
		nl := strings.IndexByte(string(d), '\n')
		if nl < 0 {
			t.Fatalf("unterminated field in %q", d)
		}
		line := string(d[:nl])
		d = d[nl+1:]
		if name, value, ok := strings.Cut(line, "="); ok {
			fields[name] = value
			continue
		}
		n := binary.LittleEndian.Uint64(d[:8])
		fields[line] = string(d[8 : 8+n])
		d = d[8+n+1:]
	}
	return fields
}

func TestHandler(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "journal.sock")
	srv, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	h, err := NewHandler(path, "kqueue", slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(h).With("component", "poller")
	log.Warn("job failed", "queue", "default", "job_uuid", "u-1", "job_name", "App\\Jobs\\X",
		"attempt", 2, "strategy", "inline", "outcome", "failed", "duration", 1500*time.Microsecond,
		"peak_memory", 1024, "scope", "s", "error", "boom\nPRIORITY=0")
	log.Debug("not sent")
	log.Info("hello")

	buf := make([]byte, 65536)
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := srv.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	got := parse(t, buf[:n])
	want := map[string]string{
		"MESSAGE": "job failed: boom\nPRIORITY=0", "PRIORITY": "4", "SYSLOG_IDENTIFIER": "kqueue", "COMPONENT": "poller",
		"QUEUE": "default", "JOB_UUID": "u-1", "JOB_NAME": `App\Jobs\X`, "ATTEMPT": "2", "STRATEGY": "inline",
		"OUTCOME": "failed", "DURATION_MS": "1.500", "PEAK_MEMORY": "1024", "SCOPE": "s",
		"ERROR": "boom\nPRIORITY=0",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	n, _ = srv.Read(buf)
	if next := parse(t, buf[:n]); next["MESSAGE"] != "hello" || next["PRIORITY"] != "6" {
		t.Errorf("second entry %v: the debug one must not be sent", next)
	}
}

func TestFieldName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"job_uuid": "JOB_UUID", "a.b-c": "A_B_C", "_x": "X", "9lives": "LIVES", "é": "FIELD"} {
		if got := fieldName(in); got != want {
			t.Errorf("fieldName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestHandlerNames checks the field names of keys that are not names
// already, of groups (WithGroup's and a group value's) and of a
// LogValuer's value.
func TestHandlerNames(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "journal.sock")
	srv, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	h, err := NewHandler(path, "kqueue", slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	slog.New(h).WithGroup("req").With("id", 7).Info("m", "a.b-c", "x", "_under", "u", "9lives", uint64(9), slog.Group("g", "k", "v"), "lazy", lazy{})

	buf := make([]byte, 65536)
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := srv.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	got := parse(t, buf[:n])
	want := map[string]string{"MESSAGE": "m", "REQ_ID": "7", "REQ_A_B_C": "x", "REQ__UNDER": "u", "REQ_9LIVES": "9", "REQ_G_K": "v", "REQ_LAZY": "resolved"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q (entry %q)", k, got[k], v, got)
		}
	}
}

type lazy struct{}

func (lazy) LogValue() slog.Value { return slog.StringValue("resolved") }

func TestAppendName(t *testing.T) {
	t.Parallel()
	for _, key := range []string{"job_uuid", "Queue", "a.b-c", "_x", "9lives", "é", "x9_", "Z", "_", "a b"} {
		if got, want := string(appendName([]byte("A="), "", key)), "A="+fieldName(key); got != want {
			t.Errorf("appendName(%q) = %q, want %q", key, got, want)
		}
	}
}
