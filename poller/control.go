package poller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kqueue/kqueue/cgroup"
	"github.com/kqueue/kqueue/internal/unixsock"
)

// ServeControl answers `kqueue status` on the unix socket at path, one
// JSON Snapshot per connection, until stop is called.
func (p *Poller) ServeControl(ctx context.Context, path string) (stop func(), err error) {
	ln, err := unixsock.Listen(path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	refused := func(who string) {
		p.log.Warn("control socket: refused a connection from a process outside root, kqueue's user and its group", "peer", who)
	}
	// Answered while stopping too (a drain is when status helps most),
	// until stop.
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := unixsock.Accept(ln, refused)
			if err != nil {
				return
			}
			p.answerControl(ctx, c)
		}
	}()
	return func() { cancel(); ln.Close(); <-done; os.Remove(path) }, nil
}

// answerControl writes one snapshot, or why there is none, to c.
func (p *Poller) answerControl(ctx context.Context, c net.Conn) {
	defer c.Close()
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	s, err := p.Snapshot(qctx)
	cancel()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err != nil {
		json.NewEncoder(c).Encode(map[string]string{"error": err.Error()})
		return
	}
	json.NewEncoder(c).Encode(s)
}

// ErrNotRunning: no instance answers at the control socket.
var ErrNotRunning = errors.New("not running (or not reachable)")

// ReadStatus asks the instance whose control socket is at path for its
// snapshot, as JSON.
func ReadStatus(ctx context.Context, path string) ([]byte, error) {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := d.DialContext(dctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotRunning, err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	raw, err := io.ReadAll(c)
	if err != nil {
		return nil, fmt.Errorf("read status: %w", err)
	}
	var e struct{ Error string }
	if json.Unmarshal(raw, &e) == nil && e.Error != "" {
		return nil, fmt.Errorf("status: %s", e.Error)
	}
	return raw, nil
}

// WriteText writes the snapshot as `kqueue status` shows it.
func (s Snapshot) WriteText(out io.Writer) {
	fmt.Fprintf(out, "kqueue %s — %s\n\n", s.Instance, s.Stats)
	if s.Declining != "" {
		fmt.Fprintf(out, "paused: %s\n\n", s.Declining)
	}
	if s.QueuesError != "" {
		fmt.Fprintf(out, "queue depths unavailable: %s\n", s.QueuesError)
	}
	table(out, "QUEUE\tREADY\tDELAYED\tRESERVED\tWAIT", len(s.Queues), func(i int) string {
		q := s.Queues[i]
		wait := q.Wait.Round(time.Second).String()
		if q.WaitAlert {
			wait += fmt.Sprintf(" (over its alert_wait of %s)", q.AlertWait)
		}
		return fmt.Sprintf("%s\t%d\t%d\t%d\t%s", q.Name, q.Ready, q.Delayed, q.Reserved, wait)
	})
	fmt.Fprintf(out, "\nRUNNING (%d)\n", len(s.Running))
	if len(s.Running) > 0 {
		table(out, "AGE\tQUEUE\tATTEMPT\tJOB\tUUID", len(s.Running), func(i int) string {
			r := s.Running[i]
			return fmt.Sprintf("%s\t%s\t%d\t%s\t%s", r.Age.Round(time.Second), r.Queue, r.Attempt, r.Name, r.UUID)
		})
	}
	fmt.Fprintf(out, "\nWORKERS (%d)\n", len(s.Workers))
	if sc := s.Scale; sc != nil && sc.Max > sc.Min {
		fmt.Fprintf(out, "scaling: %d to %d workers, keeping %d", sc.Min, sc.Max, sc.Target)
		if sc.Decision != "" {
			fmt.Fprintf(out, "; last: %s", sc.Decision)
		}
		fmt.Fprintln(out)
	}
	if len(s.Workers) > 0 {
		table(out, "PID\tSTATE\tJOBS\tMEMORY\tAGE", len(s.Workers), func(i int) string {
			w := s.Workers[i]
			return fmt.Sprintf("%d\t%s\t%d\t%s\t%s", w.PID, w.State, w.Jobs, cgroup.FormatBytes(int64(w.RSS)), w.Age.Round(time.Second))
		})
	}
	if len(s.Recycles) > 0 {
		var rs []string
		for reason, n := range s.Recycles {
			rs = append(rs, fmt.Sprintf("%s %d", reason, n))
		}
		sort.Strings(rs)
		fmt.Fprintf(out, "replaced: %s\n", strings.Join(rs, ", "))
	}
	fmt.Fprintf(out, "\nRECENT FAILURES (%d)\n", len(s.Failures))
	for _, f := range s.Failures {
		fmt.Fprintf(out, "%s  %s  %s  %s  %s\n  %s\n", f.At.UTC().Format(time.RFC3339), f.Queue, f.Result, f.Name, f.UUID, strings.SplitN(f.Reason, "\n", 2)[0])
	}
}

// table writes a header and n rows, aligned.
func table(out io.Writer, header string, n int, row func(int) string) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, header)
	for i := range n {
		fmt.Fprintln(w, row(i))
	}
	w.Flush()
}
