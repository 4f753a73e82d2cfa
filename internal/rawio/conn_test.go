package rawio

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// connPair is a Unix socket connection, its client end a Conn.
func connPair(t *testing.T) (client net.Conn, server net.Conn) {
	t.Helper()
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	client = NewConn(c)
	if _, ok := client.(*Conn); !ok {
		t.Fatalf("NewConn of a Unix socket is a %T", client)
	}
	return client, s
}

// A Conn reads and writes as the connection it wraps does: all of a
// write, what has come on a read, the read deadline, io.EOF at the end.
func TestConnReadsAndWrites(t *testing.T) {
	c, s := connPair(t)
	big := make([]byte, 1<<20) // more than the socket holds: the write waits
	go func() {
		c.Write(big)
		c.Write([]byte("end"))
	}()
	got, err := io.ReadFull(s, make([]byte, len(big)+3))
	if err != nil || got != len(big)+3 {
		t.Fatalf("read %d bytes: %v", got, err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err = c.Read(make([]byte, 8))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("a read past its deadline: %v, want a timeout", err)
	}
	c.SetReadDeadline(time.Time{})
	s.Write([]byte("hi"))
	b := make([]byte, 8)
	if n, err := c.Read(b); err != nil || string(b[:n]) != "hi" {
		t.Fatalf("read %q, %v", b[:n], err)
	}
	s.Close()
	if _, err := c.Read(b); err != io.EOF {
		t.Fatalf("a read after the peer closed: %v, want io.EOF", err)
	}
}

// go-redis's health check of a pooled connection, through SyscallConn,
// finds an idle connection healthy, and one that holds bytes nobody asked
// for, or that the server closed, not.
func TestConnHealthCheck(t *testing.T) {
	c, s := connPair(t)
	check := func() error {
		rc, err := c.(*Conn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		return rc.Read(func(uintptr) bool { t.Error("the check called its callback"); return true })
	}
	if err := check(); err != nil {
		t.Fatalf("an idle connection: %v", err)
	}
	s.Write([]byte("x"))
	waitReadable(t, c)
	if err := check(); !errors.Is(err, errUnexpected) {
		t.Fatalf("a connection holding a byte: %v", err)
	}
	if b := make([]byte, 1); mustRead(t, c, b) != "x" {
		t.Fatal("the check took the byte it peeked at")
	}
	s.Close()
	waitReadable(t, c)
	if err := check(); err != io.EOF {
		t.Fatalf("a connection the server closed: %v, want io.EOF", err)
	}
}

// waitReadable waits until c has something to read (or its end).
func waitReadable(t *testing.T, c net.Conn) {
	t.Helper()
	rc := c.(*Conn).rc
	if err := rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, errno := peek(fd, b[:])
		return n > 0 || errno == 0
	}); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, c net.Conn, b []byte) string {
	t.Helper()
	n, err := c.Read(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(b[:n])
}

// A /proc file reads the same through ReadAt as through os.
func TestReadAt(t *testing.T) {
	f, err := os.Open("/proc/self/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want, _ := os.ReadFile("/proc/self/cmdline")
	b := make([]byte, 4096)
	n, err := ReadAt(f, b, 0)
	if err != nil || string(b[:n]) != string(want) {
		t.Fatalf("ReadAt: %q, %v; want %q", b[:n], err, want)
	}
	if n, err := ReadAt(f, b, int64(len(want))); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt at the end: %d, %v", n, err)
	}
}
