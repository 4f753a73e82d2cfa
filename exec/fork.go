package exec

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// forker is the fast path of isolated jobs: a template PHP process that has
// booted Laravel forks one child per job, so isolation costs a fork, not a
// boot. Each child drops the template's connections, connects to the
// forker's socket and says its pid; the dispatcher moves it into the job's
// cgroup and only then hands it the job.
type forker struct {
	cfg    *settings
	script string
	log    *slog.Logger
	socket string
	ln     net.Listener

	mu   sync.Mutex // one fork at a time
	tmpl *worker

	connMu  sync.Mutex
	waiting map[int]chan net.Conn // pid → the fork waiting for its child
	early   map[int]net.Conn      // children that called before fork returned
	done    chan struct{}
}

func newForker(cfg *settings, script, dir string, log *slog.Logger) (*forker, error) {
	sock := filepath.Join(dir, "fork.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("fork socket: %w", err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("fork socket: %w", err)
	}
	f := &forker{cfg: cfg, script: script, log: log, socket: sock, ln: ln,
		waiting: map[int]chan net.Conn{}, early: map[int]net.Conn{}, done: make(chan struct{})}
	if err := f.own(cfg.get().User); err != nil {
		ln.Close()
		return nil, err
	}
	go f.accept()
	return f, nil
}

// own gives the socket to the user the children run as (u; nil: kqueue's
// own): they must reach it. A reload may change [app] user, so each new
// template's children get the socket of their user.
func (f *forker) own(u *syscall.Credential) error {
	uid, gid := os.Geteuid(), os.Getegid()
	if u != nil {
		uid, gid = int(u.Uid), int(u.Gid)
	}
	if err := os.Chown(f.socket, uid, gid); err != nil {
		return fmt.Errorf("fork socket: %w", err)
	}
	return nil
}

// accept takes children's connections and routes them by the pid each
// announces.
func (f *forker) accept() {
	defer close(f.done)
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, err := readLine(c)
			c.SetReadDeadline(time.Time{})
			var m message
			if err != nil || json.Unmarshal(line, &m) != nil || m.Op != "ready" || m.Pid <= 0 {
				c.Close()
				return
			}
			f.connMu.Lock()
			defer f.connMu.Unlock()
			if ch, ok := f.waiting[m.Pid]; ok {
				delete(f.waiting, m.Pid)
				ch <- c
				return
			}
			f.early[m.Pid] = c
		}()
	}
}

// readLine reads one line byte by byte, so nothing after it is consumed.
func readLine(c net.Conn) ([]byte, error) {
	var line []byte
	var b [1]byte
	for len(line) < 4096 {
		if _, err := c.Read(b[:]); err != nil {
			return nil, err
		}
		if b[0] == '\n' {
			return line, nil
		}
		line = append(line, b[0])
	}
	return nil, fmt.Errorf("line too long")
}

// fork returns a worker for one job: a fresh copy of the booted template.
func (f *forker) fork() (*worker, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for attempt := 0; ; attempt++ {
		if f.tmpl == nil {
			cfg := f.cfg.get()
			if err := f.own(cfg.User); err != nil {
				return nil, err
			}
			// With OPcache on, the code a child compiles (its job's class,
			// the queue's own on a first job) lands in memory its siblings
			// share: each fork after the first starts warm (~5 ms less).
			t, err := startWorker(context.Background(), cfg, f.script, f.log, "-d", "opcache.enable_cli=1")
			if err != nil {
				return nil, err
			}
			t.template.Store(true)
			f.tmpl = t
		}
		r := f.tmpl.do(request{Op: "fork", Socket: f.socket}, nil, time.Now().Add(10*time.Second), nil, nil)
		if !r.ok || r.msg.Pid <= 0 {
			f.retire()
			if attempt == 0 {
				continue
			}
			return nil, fmt.Errorf("fork a php worker: the template %s", cmp.Or(r.exit, "did not fork"))
		}
		pid := r.msg.Pid
		if r.restart && attempt == 0 {
			// queue:restart: this child has the old code. Start over.
			f.discard(pid)
			f.retire()
			continue
		}
		c, err := f.await(pid)
		if err != nil {
			f.discard(pid)
			return nil, err
		}
		return connWorker(c, pid, f.log), nil
	}
}

// await waits for child pid to connect.
func (f *forker) await(pid int) (net.Conn, error) {
	f.connMu.Lock()
	if c, ok := f.early[pid]; ok {
		delete(f.early, pid)
		f.connMu.Unlock()
		return c, nil
	}
	ch := make(chan net.Conn, 1)
	f.waiting[pid] = ch
	f.connMu.Unlock()
	select {
	case c := <-ch:
		return c, nil
	case <-time.After(10 * time.Second):
		f.connMu.Lock()
		delete(f.waiting, pid)
		f.connMu.Unlock()
		return nil, fmt.Errorf("forked php worker %d did not connect within 10s", pid)
	}
}

// discard kills a child that will not run a job (it may not lead its own
// process group yet) and drops its connection.
func (f *forker) discard(pid int) {
	syscall.Kill(pid, syscall.SIGKILL)
	killGroup(pid)
	f.connMu.Lock()
	defer f.connMu.Unlock()
	delete(f.waiting, pid)
	if c, ok := f.early[pid]; ok {
		c.Close()
		delete(f.early, pid)
	}
}

func (f *forker) retire() {
	if f.tmpl != nil {
		f.tmpl.stop(f.cfg.get().StopGrace, "")
		f.tmpl = nil
	}
}

// roll replaces the template: the next fork boots the new code.
func (f *forker) roll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.retire()
}

// close stops the template and the socket.
func (f *forker) close() {
	f.mu.Lock()
	f.retire()
	f.mu.Unlock()
	f.ln.Close()
	<-f.done
	f.connMu.Lock()
	for _, c := range f.early {
		c.Close()
	}
	f.connMu.Unlock()
}

// connWorker is a worker that speaks over a socket: a forked child.
func connWorker(c net.Conn, pid int, log *slog.Logger) *worker {
	w := &worker{
		pid:    pid,
		req:    c,
		msgs:   make(chan message, 4),
		exited: make(chan struct{}),
		booted: time.Now(),
	}
	// The socket alone does not tell of the child's death: processes the
	// job started may hold it open. A pidfd does.
	if pidfd, err := unix.PidfdOpen(pid, 0); err == nil {
		go func() {
			defer unix.Close(pidfd)
			fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
			for {
				if _, err := unix.Poll(fds, -1); err != unix.EINTR {
					break
				}
			}
			c.Close()
		}()
	}
	go func() {
		w.readMessages(c, log)
		// The socket closed: the child is gone, or going. Make sure.
		killGroup(pid)
		close(w.exited)
	}()
	return w
}
