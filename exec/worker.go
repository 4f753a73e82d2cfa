package exec

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	osexec "os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kqueue/kqueue/cgroup"
	"github.com/kqueue/kqueue/internal/cut"
	"github.com/kqueue/kqueue/internal/rawio"
	"github.com/kqueue/kqueue/protocol"
)

// worker is one long-lived PHP process running worker.php with the app
// booted. It serves one request at a time.
type worker struct {
	cmd      *osexec.Cmd
	pid      int
	req      io.WriteCloser // fd 3 in PHP (or a forked child's socket): requests
	msgs     chan message   // from fd 4; closed at EOF
	exited   chan struct{}
	state    *os.ProcessState
	booted   time.Time
	jobs     atomic.Int64 // jobs run; read by the pool's status too
	busy     atomic.Bool  // running a job now
	quitting atomic.Bool  // told to finish the job it runs and start no other (its poller is gone)
	version  string       // Laravel's
	app      []byte       // appconfig.php's answer, when it was asked to describe the app (see startPoolWorker)

	wbuf    []byte     // request buffer, reused
	pending []byte     // requests queued, not yet written (see queue)
	writing chan error // a large request being written; nil when none
	statm   *os.File   // /proc/PID/statm, kept open
	lastRSS int64      // as read at rssAt
	rssAt   time.Time

	closeOnce sync.Once
	group     cgroup.Group // an isolated worker's cgroup, killed with it
	template  atomic.Bool  // forks children that share its output

	current atomic.Pointer[jobLog] // the job running now: its log fields and output
	tail    tail                   // the last lines of output, for errors

	// A pool worker says "began" on fd 5, not fd 4: the number of the run
	// (1 for the first job handed to it, …) on a line, which the daemon
	// reads only when it needs to know (see readBegan) — not a wake-up of
	// the daemon per job. Nil for the others.
	beganR *os.File
	// beganAt is the same number in shared memory (fd 6), where
	// worker.php stores it instead when PHP can map it (FFI): not a
	// system call per job. Nil when it could not be made.
	beganAt *rawio.Counter
	runs    uint64 // runs handed to it
	begun   uint64 // the last run it said began, as read
	digits  uint64 // a number read in part
	// nap is how long its answers may wait to be read together (ns; 0:
	// read each at once): set while it holds enough quick jobs beyond the
	// one it runs that PHP goes on without the daemon meanwhile (see
	// jobRun.napFor). A wake-up of the daemon for each answer costs it
	// more than the rest of the job's work.
	nap atomic.Int64
}

// message is one line from worker.php on fd 4.
type message struct {
	Op        string         `json:"op"`
	Pid       int            `json:"pid"`
	Laravel   string         `json:"laravel"`
	Deleted   bool           `json:"deleted"`
	Released  bool           `json:"released"`
	ReleaseAt *int64         `json:"release_at"`
	Failed    bool           `json:"failed"`
	Error     string         `json:"error"`
	Defaults  map[string]any `json:"defaults"`
	// Declined says why PHP did not run the job it was handed: the app
	// is down for maintenance, its queue paused, a Looping listener said
	// no. It goes back as it was.
	Declined string `json:"declined"`
	// Tags are the job's own tags() (null unless its class has them).
	Tags []string `json:"tags"`
	// Us is how long the job ran in PHP, in µs, from its request to its
	// answer: its duration (the daemon may read the answer late, see
	// worker.nap).
	Us int64 `json:"us"`
	// App is the app's queue configuration, in a ready worker.php was
	// asked for it: appconfig.php's answer.
	App json.RawMessage `json:"app"`
}

// errBoot wraps every failure to boot a worker.
var errBoot = errors.New("boot php worker")

// startWorker starts worker.php and waits until the app has booted.
func startWorker(ctx context.Context, cfg *Config, script string, log *slog.Logger, phpArgs ...string) (*worker, error) {
	return launch(ctx, cfg, script, log, false, false, phpArgs...)
}

// startPoolWorker starts a pool's worker: one that says "began" on fd 5.
// With describe, it also says, once booted, what appconfig.php would
// (worker.app): the pool's first workers do, so that reading the app's
// queue configuration costs no PHP run (and boot) of its own.
func startPoolWorker(ctx context.Context, cfg *Config, script string, log *slog.Logger, describe bool) (*worker, error) {
	return launch(ctx, cfg, script, log, true, describe)
}

// launch starts worker.php, with fd 5 and fd 6 for "began" when
// lazyBegan, and waits until the app has booted.
func launch(ctx context.Context, cfg *Config, script string, log *slog.Logger, lazyBegan, describe bool, phpArgs ...string) (*worker, error) {
	var beganR, beganW, beganFile *os.File
	var beganAt *rawio.Counter
	if lazyBegan {
		var err error
		// Read only when the daemon needs to know: a pipe its poller does
		// not watch, or each "began" would wake it.
		if beganR, beganW, err = rawio.UnpolledPipe(); err != nil {
			return nil, fmt.Errorf("%w: %v", errBoot, err)
		}
		defer beganW.Close()
		// The pipe stays, for a PHP without FFI.
		if beganAt, beganFile, err = rawio.NewCounter(); err == nil {
			defer beganFile.Close()
		}
	}
	closeBegan := func() {
		if beganR != nil {
			beganR.Close()
		}
	}
	reqR, reqW, err := os.Pipe()
	if err != nil {
		closeBegan()
		return nil, fmt.Errorf("%w: %v", errBoot, err)
	}
	// Answers: a pipe that wakes the daemon only while it waits for one
	// (see worker.nap).
	resR, resW, err := rawio.NewQuietPipe()
	if err != nil {
		closeBegan()
		reqR.Close()
		reqW.Close()
		return nil, fmt.Errorf("%w: %v", errBoot, err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		closeBegan()
		reqR.Close()
		reqW.Close()
		resR.Close()
		resW.Close()
		return nil, fmt.Errorf("%w: %v", errBoot, err)
	}

	cmd := osexec.Command(cfg.PHP, append(phpArgs, script)...)
	cmd.Dir = cfg.AppPath
	cmd.Env = cfg.env()
	cmd.Stdout = outW
	cmd.Stderr = outW
	cmd.ExtraFiles = []*os.File{reqR, resW} // fd 3, fd 4
	if lazyBegan {
		cmd.ExtraFiles = append(cmd.ExtraFiles, beganW) // fd 5
		cmd.Env = append(cmd.Env, "KQUEUE_BEGAN_FD=5")
		if beganAt != nil {
			cmd.ExtraFiles = append(cmd.ExtraFiles, beganFile) // fd 6
			cmd.Env = append(cmd.Env, "KQUEUE_BEGAN_MAP_FD=6")
		}
	}
	if describe {
		cmd.Env = append(cmd.Env, "KQUEUE_DESCRIBE_APP=1")
	}
	if cfg.Nice > 0 {
		cmd.Env = append(cmd.Env, "KQUEUE_NICE="+strconv.Itoa(cfg.Nice)) // worker.php lowers its priority
	}
	// Its own process group: a terminal's ^C does not reach it, and a kill
	// takes the job's children with it. SIGTERM when the dispatcher dies:
	// worker.php then finishes the job it has begun (within the job's
	// timeout) and starts no other.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cfg.User, Pdeathsig: syscall.SIGTERM}
	err = cmd.Start()
	reqR.Close()
	resW.Close()
	outW.Close()
	if err != nil {
		closeBegan()
		reqW.Close()
		resR.Close()
		outR.Close()
		return nil, fmt.Errorf("%w: start %s: %v", errBoot, cfg.PHP, err)
	}

	// Requests go with raw system calls (see rawio); SyscallConn cannot
	// fail on a pipe os.Pipe made.
	req, _ := rawio.NewPipe(reqW)
	w := &worker{
		cmd:     cmd,
		pid:     cmd.Process.Pid,
		req:     req,
		msgs:    make(chan message, 64),
		exited:  make(chan struct{}),
		booted:  time.Now(),
		beganR:  beganR,
		beganAt: beganAt,
	}
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); w.readMessages(resR, log) }()
	go func() { defer readers.Done(); w.forwardOutput(outR, log) }()
	go w.reap(&readers, resR, outR)
	if err := w.awaitBoot(ctx, cfg); err != nil {
		return nil, err
	}
	return w, nil
}

// reap waits for the process, kills what it left in its process group,
// then lets its output drain (readers, reading resR and outR), and closes
// w.exited. A child that left the group (setsid) may still hold the pipes:
// those are cut after a moment.
func (w *worker) reap(readers *sync.WaitGroup, resR, outR io.Closer) {
	rawio.AwaitExit(w.pid) // then Wait does not hold the daemon's P
	w.cmd.Wait()
	w.state = w.cmd.ProcessState
	syscall.Kill(-w.pid, syscall.SIGKILL)
	drained := make(chan struct{})
	go func() { readers.Wait(); close(drained) }()
	if w.template.Load() {
		// Its forked children share its output and may still run:
		// the readers go on until the last of them is gone.
		close(w.exited)
		return
	}
	t := time.NewTimer(200 * time.Millisecond)
	select {
	case <-drained:
	case <-t.C:
		resR.Close()
		outR.Close()
		<-drained
	}
	t.Stop()
	close(w.exited)
}

// awaitBoot waits until the app has booted in w, within cfg.BootTimeout.
// When it returns an error, w is gone.
func (w *worker) awaitBoot(ctx context.Context, cfg *Config) error {
	timer := time.NewTimer(cfg.BootTimeout)
	defer timer.Stop()
	select {
	case m, ok := <-w.msgs:
		switch {
		case ok && m.Op == "ready":
			w.version, w.app = m.Laravel, m.App
			return nil
		case ok && m.Op == "boot-failed":
			w.kill()
			return fmt.Errorf("%w: Laravel app at %s did not boot: %s", errBoot, cfg.AppPath, m.Error)
		}
		<-w.exited
		w.release()
		return fmt.Errorf("%w: %s exited during boot (%s)%s", errBoot, cfg.PHP, exitText(w.state), w.tail.suffix())
	case <-timer.C:
		w.kill()
		return fmt.Errorf("%w: Laravel app at %s did not boot within %s%s", errBoot, cfg.AppPath, cfg.BootTimeout, w.tail.suffix())
	case <-ctx.Done():
		w.kill()
		return ctx.Err()
	}
}

// doneOK begins worker.php's answer for a job that deleted itself without
// an error — the common case, recognised without decoding it (see
// doneOKTook); began is its word that a job is about to run (Laravel's
// JobProcessing).
var (
	doneOK = []byte(`{"op":"done","deleted":true,"released":false,"release_at":null,"failed":false,"error":null,"us":`)
	began  = []byte(`{"op":"began"}` + "\n")
)

// doneOKTook reports whether line is doneOK, and the job's duration it
// ends with (µs, then "}\n").
func doneOKTook(line []byte) (us int64, ok bool) {
	rest, ok := bytes.CutPrefix(line, doneOK)
	if !ok {
		return 0, false
	}
	if rest, ok = bytes.CutSuffix(rest, []byte("}\n")); !ok || len(rest) == 0 || len(rest) > 15 {
		return 0, false
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			return 0, false
		}
		us = us*10 + int64(c-'0')
	}
	return us, true
}

// decodeMessage reads an answer that is not one of the common ones
// readMessages knows by heart. (A function of its own: only here does a
// message escape to the heap, for json.Unmarshal.)
func decodeMessage(line []byte) message {
	var m message
	if err := json.Unmarshal(line, &m); err != nil {
		return message{Op: "malformed", Error: err.Error()}
	}
	return m
}

func (w *worker) readMessages(r io.ReadCloser, log *slog.Logger) {
	defer close(w.msgs)
	defer r.Close()
	br := bufio.NewReaderSize(r, 16<<10)
	var timer *rawio.Timer // made at the first nap
	defer func() {
		if timer != nil {
			timer.Close()
		}
	}()
	for {
		if d := w.nap.Load(); d > 0 && br.Buffered() == 0 {
			// Let more answers come before reading them all at once.
			if timer == nil {
				timer, _ = rawio.NewTimer()
			}
			if timer != nil {
				timer.Sleep(time.Duration(d))
			}
		}
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long line (an error text): read the rest of it, after
			// its head, which the reads of the rest overwrite in br.
			head := slices.Clone(line)
			var rest []byte
			rest, err = br.ReadBytes('\n')
			line = append(head, rest...)
		}
		if len(line) > 0 {
			var m message
			if us, ok := doneOKTook(line); ok {
				m = message{Op: "done", Deleted: true, Us: us}
			} else if bytes.Equal(line, began) {
				m = message{Op: "began"}
			} else {
				m = decodeMessage(line)
			}
			w.msgs <- m
		}
		if err != nil {
			return
		}
	}
}

// forwardOutput logs the PHP process's stdout and stderr line by line, with
// the fields of the job running at the time. A line longer than
// maxOutputLine is logged cut, with its length; the reading goes on (were
// it to stop, PHP's next write would fail, and the worker with it).
func (w *worker) forwardOutput(r *os.File, log *slog.Logger) {
	defer r.Close()
	br := bufio.NewReaderSize(r, maxOutputLine)
	for {
		b, err := br.ReadSlice('\n')
		some := len(b) > 0
		var line string
		if errors.Is(err, bufio.ErrBufferFull) {
			line, err = longLine(br, string(b))
		} else {
			line = string(bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r")))
		}
		if some {
			w.tail.add(line)
			if j := w.current.Load(); j != nil {
				j.add(line)
				log.Info(line, append([]any{"pid", w.pid}, j.fields()...)...)
			} else {
				log.Info(line, "pid", w.pid)
			}
		}
		if err != nil {
			return
		}
	}
}

// maxOutputLine bounds a line of PHP's output as logged.
const maxOutputLine = 64 << 10

// longLine reads the rest of a line whose first maxOutputLine bytes are
// head: the line as logged, cut if it is longer, with its length.
func longLine(br *bufio.Reader, head string) (string, error) {
	n, last := len(head), [2]byte{0, head[len(head)-1]} // the line's length so far, its last two bytes
	var err error = bufio.ErrBufferFull
	for errors.Is(err, bufio.ErrBufferFull) {
		var b []byte
		b, err = br.ReadSlice('\n')
		n += len(b)
		for _, c := range b[max(0, len(b)-2):] {
			last = [2]byte{last[1], c}
		}
	}
	if last[1] == '\n' {
		n--
		if last[0] == '\r' {
			n--
		}
	}
	if n <= len(head) {
		return head[:n], err // no longer than the buffer after all, but for its line break
	}
	return fmt.Sprintf("%s… (cut: a line of %d bytes)", cut.Whole(head), n), err
}

// request is one job handed to worker.php.
type request struct {
	Op     string `json:"op"`
	Queue  string `json:"queue"`
	Len    int    `json:"len"`
	Kind   string `json:"kind,omitempty"`
	Reason string `json:"reason,omitempty"`
	Class  string `json:"class,omitempty"`
	Socket string `json:"socket,omitempty"`
	// Timeout is the job's timeout in seconds (0: none), for worker.php to
	// enforce itself should the dispatcher die while the job runs.
	Timeout int `json:"timeout,omitempty"`
	// Row is the job's database row (Laravel's database queue), for
	// worker.php's DatabaseJob.
	Row *protocol.Row `json:"row,omitempty"`
	// SQS is the job's SQS message, for worker.php's SqsJob.
	SQS *protocol.SQSMessage `json:"sqs,omitempty"`
}

// appendHeader appends req as JSON: a job to run on a queue with a plain
// name (every job, nearly) without encoding/json.
func (req request) appendHeader(b []byte) []byte {
	if req.Op != "run" || req.Kind != "" || req.Reason != "" || req.Class != "" || req.Socket != "" || req.Row != nil || req.SQS != nil || !plainJSON(req.Queue) {
		hdr, _ := json.Marshal(req)
		return append(b, hdr...)
	}
	b = append(b, `{"op":"run","queue":"`...)
	b = append(b, req.Queue...)
	b = append(b, `","len":`...)
	b = strconv.AppendInt(b, int64(req.Len), 10)
	if req.Timeout > 0 {
		b = append(b, `,"timeout":`...)
		b = strconv.AppendInt(b, int64(req.Timeout), 10)
	}
	return append(b, '}')
}

// plainJSON reports whether s is its own JSON string body: printable
// ASCII without a quote or a backslash.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// reply is how a request ended.
type reply struct {
	msg      message       // valid when ok
	ok       bool          // worker.php answered
	timedOut bool          // the deadline passed and the worker was killed
	stopped  bool          // a hard stop killed the worker
	exit     string        // how the process ended, when it did
	elapsed  time.Duration // from request to answer
	restart  bool          // queue:restart was seen meanwhile
	began    bool          // the job said it began (JobProcessing)
}

// pipeRoom is how many bytes of requests may wait unread in a worker's
// request pipe and still be written from the caller's goroutine: half of
// what a Linux pipe holds by default, so such a write never blocks.
const pipeRoom = 32 << 10

// queue adds a request to those written together at the next flush: the
// pool hands a worker the jobs it takes at once in one write, not a write
// (and a wake-up of PHP) each. ahead is as for send, the queued requests
// among them. One that does not fit the pipe's room is sent after the
// queued ones.
func (w *worker) queue(req request, body []byte, ahead int) (int, error) {
	req.Len = len(body)
	start := len(w.pending)
	w.pending = append(req.appendHeader(w.pending), '\n')
	n := len(w.pending) - start + len(body)
	if ahead+n <= pipeRoom {
		w.pending = append(w.pending, body...)
		return n, nil
	}
	w.pending = w.pending[:start]
	if err := w.flush(); err != nil {
		return n, err
	}
	return w.send(req, body, ahead)
}

// flush writes the queued requests.
func (w *worker) flush() error {
	if len(w.pending) == 0 {
		return nil
	}
	_, err := w.req.Write(w.pending)
	w.pending = w.pending[:0]
	if cap(w.pending) > pipeRoom {
		w.pending = nil // don't keep a large request's buffer
	}
	return err
}

// send writes one request: a JSON header line, then the body. ahead is how
// many bytes of earlier requests the worker may not have read yet (those
// handed to it beyond the one it runs). A request that fits the pipe's room
// is written at once; a larger one in the background, so that a deadline
// still holds while PHP is slow to read it — w.writing then reports the end
// of that write, and no other request may be sent before.
func (w *worker) send(req request, body []byte, ahead int) (int, error) {
	req.Len = len(body)
	w.wbuf = append(req.appendHeader(w.wbuf[:0]), '\n')
	n := len(w.wbuf) + len(body)
	if ahead+n <= pipeRoom {
		w.wbuf = append(w.wbuf, body...)
		_, err := w.req.Write(w.wbuf)
		return n, err
	}
	buf := append(append(make([]byte, 0, n), w.wbuf...), body...)
	done := make(chan error, 1)
	w.writing = done
	go func() {
		_, err := w.req.Write(buf)
		done <- err
	}()
	return n, nil
}

// do sends one request and waits for its answer, the deadline (zero: none)
// or a hard stop. When it returns without an answer the worker is dead.
//
// onBegan, when set, is told when the job it runs says it began.
func (w *worker) do(req request, body []byte, deadline time.Time, hardStop <-chan struct{}, onBegan func()) reply {
	start := time.Now()
	var r reply
	if _, err := w.send(req, body, 0); err != nil {
		w.kill() // below, its messages end
	}
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timeout = t.C
	}
	for {
		select {
		case m, ok := <-w.msgs:
			if !ok {
				<-w.exited
				w.release()
				r.exit = exitText(w.state)
				r.elapsed = time.Since(start)
				return r
			}
			if m.Op == "restart" {
				r.restart = true
				continue
			}
			if m.Op == "began" {
				r.began = true
				if onBegan != nil {
					onBegan()
				}
				continue
			}
			if m.Op != "done" {
				// A worker that breaks the protocol cannot be trusted.
				w.kill()
				r.exit = "it broke the protocol (" + m.Op + ": " + m.Error + ")"
				r.elapsed = time.Since(start)
				return r
			}
			r.msg, r.ok, r.elapsed = m, true, time.Since(start)
			return r
		case err := <-w.writing:
			w.writing = nil
			if err != nil {
				w.kill()
			}
		case <-timeout:
			w.kill()
			r.timedOut = true
			r.elapsed = time.Since(start)
			r.exit = exitText(w.state)
			return r
		case <-hardStop:
			w.kill()
			r.stopped = true
			r.elapsed = time.Since(start)
			return r
		}
	}
}

// killGroup kills a process group.
func killGroup(pid int) { syscall.Kill(-pid, syscall.SIGKILL) }

// kill ends the worker and everything it started, and waits for it.
func (w *worker) kill() {
	killGroup(w.pid)
	if w.group != nil {
		w.group.Kill() // its processes that left the process group too
	}
	<-w.exited
	w.release()
}

// stop ends an idle worker: EOF on its request pipe, then a kill if it does
// not leave in time.
func (w *worker) stop(grace time.Duration, reason string) {
	if reason != "" {
		// For the WorkerStopping event PHP fires as it goes; a worker that
		// does not read it exits all the same at EOF.
		w.req.Write([]byte(`{"op":"stop","len":0,"reason":"` + reason + `"}` + "\n"))
	}
	w.req.Close()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-w.exited:
		w.release()
	case <-t.C:
		w.kill()
	}
}

// release closes the files the daemon holds for a worker that is gone,
// once it has read the last of what it said began.
func (w *worker) release() {
	w.closeOnce.Do(func() {
		w.readBegan()
		if w.beganR != nil {
			w.beganR.Close()
		}
		w.req.Close()
		if w.statm != nil {
			w.statm.Close()
		}
	})
}

// readBegan reads what a pool worker said began since the last call,
// without waiting: w.begun is then the last run it began. It is read when
// the daemon needs to know (a job running a while, a worker that died or
// must stop) and every so often to keep the pipe from filling up.
func (w *worker) readBegan() {
	w.readBeganPipe()
	if w.beganAt != nil {
		w.begun = max(w.begun, w.beganAt.Load())
	}
}

// readBeganPipe reads what fd 5 holds.
func (w *worker) readBeganPipe() {
	if w.beganR == nil {
		return
	}
	rc, err := w.beganR.SyscallConn()
	if err != nil {
		return
	}
	var buf [512]byte
	for {
		n, err := rawio.ReadNow(rc, buf[:])
		if err != nil || n <= 0 {
			return // closed, nothing to read (EAGAIN), or the end
		}
		for _, c := range buf[:n] {
			switch {
			case '0' <= c && c <= '9':
				w.digits = w.digits*10 + uint64(c-'0')
			case c == '\n':
				w.begun = max(w.begun, w.digits)
				w.digits = 0
			}
		}
		if n < len(buf) {
			return
		}
	}
}

// rssEvery is how often a busy worker's memory is read again: reading
// /proc after every short job would cost more than the job.
const rssEvery = 20 * time.Millisecond

// recentRSS is the worker's resident memory as of at most rssEvery ago.
func (w *worker) recentRSS() int64 {
	if now := time.Now(); now.Sub(w.rssAt) >= rssEvery {
		w.lastRSS, w.rssAt = w.rss(), now
	}
	return w.lastRSS
}

// rss is the worker's resident memory in bytes, read from /proc.
func (w *worker) rss() int64 {
	if w.statm == nil {
		f, err := os.Open("/proc/" + strconv.Itoa(w.pid) + "/statm")
		if err != nil {
			return 0
		}
		w.statm = f
	}
	return readRSS(w.statm)
}

// rssOf measures any process's resident memory (the status view, from
// another goroutine than the worker's own).
func rssOf(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	defer f.Close()
	return readRSS(f)
}

// readRSS reads resident memory from an open /proc/PID/statm.
func readRSS(statm *os.File) int64 {
	var buf [128]byte
	n, err := rawio.ReadAt(statm, buf[:], 0)
	if n == 0 && err != nil {
		return 0
	}
	f := bytes.Fields(buf[:n])
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(string(f[1]), 10, 64)
	return pages * int64(os.Getpagesize())
}

// exitText describes how a process ended.
func exitText(s *os.ProcessState) string {
	if s == nil {
		return "it ended without answering" // a forked child: its parent reaps it
	}
	if ws, ok := s.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "killed by signal " + signalName(ws.Signal())
	}
	return "exit code " + strconv.Itoa(s.ExitCode())
}

func signalName(sig syscall.Signal) string {
	names := map[syscall.Signal]string{
		syscall.SIGKILL: "SIGKILL", syscall.SIGSEGV: "SIGSEGV", syscall.SIGABRT: "SIGABRT",
		syscall.SIGTERM: "SIGTERM", syscall.SIGBUS: "SIGBUS", syscall.SIGILL: "SIGILL",
		syscall.SIGFPE: "SIGFPE", syscall.SIGINT: "SIGINT", syscall.SIGHUP: "SIGHUP",
	}
	if n, ok := names[sig]; ok {
		return n
	}
	return strconv.Itoa(int(sig))
}

// jobLog is one job's log fields and the output it wrote, kept for its
// record in the console: its last lines, up to keepOutput bytes.
type jobLog struct {
	t       *task
	extra   []any // fields beyond the task's own
	mu      sync.Mutex
	lines   []string
	size    int
	dropped int // earlier lines left out
}

// keepOutput bounds the output a job's record keeps.
const keepOutput = 4 << 10

// newJobLog is t's log; its lines are logged with t's fields and extra.
// (The fields are made when a line comes: most jobs write none.)
func newJobLog(t *task, extra ...any) *jobLog { return &jobLog{t: t, extra: extra} }

func (j *jobLog) fields() []any { return append(j.t.fields(), j.extra...) }

func (j *jobLog) add(line string) {
	if len(line) > keepOutput {
		line = cut.Head(line, keepOutput-len("…"))
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.lines = append(j.lines, line)
	j.size += len(line) + 1
	for j.size > keepOutput {
		j.size -= len(j.lines[0]) + 1
		j.lines = j.lines[1:]
		j.dropped++
	}
}

// output is what the job wrote so far, its lines joined. Lines it wrote
// just before it answered may still be on their way (the journal has
// them all).
func (j *jobLog) output() string {
	if j == nil {
		return ""
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	out := strings.Join(j.lines, "\n")
	if j.dropped > 0 {
		out = fmt.Sprintf("(%d earlier lines in the journal)\n", j.dropped) + out
	}
	return out
}

// tail keeps the last lines a worker printed.
type tail struct {
	mu    sync.Mutex
	lines []string
}

func (t *tail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	line = cut.Head(line, 500)
	t.lines = append(t.lines, line)
	if len(t.lines) > 5 {
		t.lines = t.lines[1:]
	}
}

// suffix is ": <last lines>" or "".
func (t *tail) suffix() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 0 {
		return ""
	}
	return ": " + strings.Join(t.lines, " | ")
}

// killCollect ends the worker as kill does and returns the answers it had
// written and the daemon had not read yet: the jobs it finished before it
// died. (Read while it dies, so that its reader never blocks on a full
// channel.)
func (w *worker) killCollect() []message {
	killGroup(w.pid)
	var got []message
	for m := range w.msgs {
		got = append(got, m)
	}
	w.kill() // what is left of it: processes outside its group, its files
	return got
}
