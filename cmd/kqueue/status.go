package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kqueue/kqueue/cgroup"
	"github.com/kqueue/kqueue/config"
	"github.com/kqueue/kqueue/poller"
)

// serveControl answers `kqueue status` on the control socket until ctx is
// done: one JSON snapshot per connection.
func serveControl(ctx context.Context, cfg *config.Config, p *poller.Poller, log *slog.Logger) (stop func(), err error) {
	path := cfg.Control.Socket
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if ok, who := peerAllowed(c); !ok {
				log.Warn("control socket: refused a connection from a process outside root, kqueue's user and its group", "peer", who)
				c.Close()
				continue
			}
			qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			s, err := p.Snapshot(qctx)
			cancel()
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if err != nil {
				json.NewEncoder(c).Encode(map[string]string{"error": err.Error()})
			} else {
				json.NewEncoder(c).Encode(s)
			}
			c.Close()
		}
	}()
	return func() { ln.Close(); <-done; os.Remove(path) }, nil
}

// status prints a running instance's state, read from its control socket.
func status(ctx context.Context, cfg *config.Config, stdout io.Writer, asJSON bool) error {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := d.DialContext(dctx, "unix", cfg.Control.Socket)
	if err != nil {
		return fmt.Errorf("kqueue %s is not running (or not reachable): %w", cfg.Name, err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	raw, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("read status: %w", err)
	}
	var e struct{ Error string }
	if json.Unmarshal(raw, &e) == nil && e.Error != "" {
		return fmt.Errorf("status: %s", e.Error)
	}
	if asJSON {
		_, err := stdout.Write(raw)
		return err
	}
	var s poller.Snapshot
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("read status: %w", err)
	}
	fmt.Fprintf(stdout, "kqueue %s — %s\n\n", s.Instance, s.Stats)
	if s.QueuesError != "" {
		fmt.Fprintf(stdout, "queue depths unavailable: %s\n", s.QueuesError)
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "QUEUE\tREADY\tDELAYED\tRESERVED")
	for _, q := range s.Queues {
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\n", q.Name, q.Ready, q.Delayed, q.Reserved)
	}
	w.Flush()
	fmt.Fprintf(stdout, "\nRUNNING (%d)\n", len(s.Running))
	if len(s.Running) > 0 {
		w = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "AGE\tQUEUE\tATTEMPT\tJOB\tUUID")
		for _, r := range s.Running {
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", r.Age.Round(time.Second), r.Queue, r.Attempt, r.Name, r.UUID)
		}
		w.Flush()
	}
	fmt.Fprintf(stdout, "\nWORKERS (%d)\n", len(s.Workers))
	if len(s.Workers) > 0 {
		w = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "PID\tSTATE\tJOBS\tMEMORY\tAGE")
		for _, p := range s.Workers {
			fmt.Fprintf(w, "%d\t%s\t%d\t%s\t%s\n", p.PID, p.State, p.Jobs, cgroup.FormatBytes(int64(p.RSS)), p.Age.Round(time.Second))
		}
		w.Flush()
	}
	if len(s.Recycles) > 0 {
		var rs []string
		for reason, n := range s.Recycles {
			rs = append(rs, fmt.Sprintf("%s %d", reason, n))
		}
		sort.Strings(rs)
		fmt.Fprintf(stdout, "replaced: %s\n", strings.Join(rs, ", "))
	}
	fmt.Fprintf(stdout, "\nRECENT FAILURES (%d)\n", len(s.Failures))
	for _, f := range s.Failures {
		fmt.Fprintf(stdout, "%s  %s  %s  %s  %s\n  %s\n", f.At.UTC().Format(time.RFC3339), f.Queue, f.Result, f.Name, f.UUID, strings.SplitN(f.Reason, "\n", 2)[0])
	}
	return nil
}
