package journal

import (
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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

// fakeJournald listens where a Handler sends, as journald's socket does:
// the handler, and the socket to read its entries from.
func fakeJournald(t testing.TB) (*Handler, *net.UnixConn) {
	path := filepath.Join(t.TempDir(), "journal.sock")
	srv, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	h, err := NewHandler(path, "kqueue", slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	return h, srv
}

// nextEntry reads the next datagram's entry.
func nextEntry(t *testing.T, srv *net.UnixConn) map[string]string {
	t.Helper()
	buf := make([]byte, 65536)
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := srv.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return parse(t, buf[:n])
}

func TestHandler(t *testing.T) {
	t.Parallel()
	h, srv := fakeJournald(t)
	log := slog.New(h).With("component", "poller")
	log.Warn("job failed", "queue", "default", "job_uuid", "u-1", "job_name", "App\\Jobs\\X",
		"attempt", 2, "strategy", "inline", "outcome", "failed", "duration", 1500*time.Microsecond,
		"peak_memory", 1024, "scope", "s", "error", "boom\nPRIORITY=0")
	log.Debug("not sent")
	log.Info("hello")

	got := nextEntry(t, srv)
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
	if next := nextEntry(t, srv); next["MESSAGE"] != "hello" || next["PRIORITY"] != "6" {
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
	h, srv := fakeJournald(t)
	slog.New(h).WithGroup("req").With("id", 7).Info("m", "a.b-c", "x", "_under", "u", "9lives", uint64(9), slog.Group("g", "k", "v"), "lazy", lazy{})

	got := nextEntry(t, srv)
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

// logLargeFailure logs through h a job's failure whose error (an exception
// quoting a bulk insert's SQL, 5.6 MB) is larger than a datagram may be,
// on a socket whose send buffer is smaller still, whatever the host's
// default; it returns the error.
func logLargeFailure(h *Handler) string {
	h.conn.SetWriteBuffer(64 << 10)
	sql := "QueryException: insert into rows values " + strings.Repeat("(1, 'a row'), ", 400_000)
	slog.New(h).Warn("job failed", "job_uuid", "u-1", "error", sql)
	return sql
}

// TestHandlerSendsALargeEntryInAFile logs a failure whose error is larger
// than a datagram may be: the entry comes as a sealed memory file, whole
// but for the error's cuts (its head in MESSAGE, 4 MiB in ERROR).
func TestHandlerSendsALargeEntryInAFile(t *testing.T) {
	t.Parallel()
	h, srv := fakeJournald(t)
	sql := logLargeFailure(h)

	buf, oob := make([]byte, 65536), make([]byte, 1024)
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, oobn, _, _, err := srv.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("a datagram of %d bytes, want none but the file", n)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages %v, %v", msgs, err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		t.Fatalf("passed fds %v, %v", fds, err)
	}
	f := os.NewFile(uintptr(fds[0]), "entry")
	defer f.Close()
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if want := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE; err != nil || seals&want != want {
		t.Errorf("seals %#x (%v), want %#x: journald takes sealed files only", seals, err, want)
	}
	entry, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<30)) // journald reads it from the start, as here
	if err != nil {
		t.Fatal(err)
	}
	got := parse(t, entry)
	if got["ERROR"] != sql[:maxValue]+"…" || got["MESSAGE"] != "job failed: "+sql[:inMessage]+"…" || got["JOB_UUID"] != "u-1" || got["PRIORITY"] != "4" {
		t.Errorf("entry of %d bytes: fields %d, JOB_UUID %q, PRIORITY %q, ERROR of %d bytes, MESSAGE of %d", len(entry), len(got), got["JOB_UUID"], got["PRIORITY"], len(got["ERROR"]), len(got["MESSAGE"]))
	}
}

// Without a memory file (a sandbox refusing memfd_create), the large
// entry goes as a datagram of each value's head: the job's line is kept.
func TestHandlerCutsALargeEntryWithoutAFile(t *testing.T) {
	t.Parallel()
	h, srv := fakeJournald(t)
	h.memfd = func(string, int) (int, error) { return -1, unix.EPERM }
	sql := logLargeFailure(h)

	got := nextEntry(t, srv)
	if got["ERROR"] != sql[:inDatagram]+"…" || got["MESSAGE"] != "job failed: "+sql[:inMessage]+"…" || got["JOB_UUID"] != "u-1" {
		t.Errorf("fields %d, JOB_UUID %q, ERROR of %d bytes, MESSAGE of %d", len(got), got["JOB_UUID"], len(got["ERROR"]), len(got["MESSAGE"]))
	}
}
