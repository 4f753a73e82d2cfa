package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kqueue/kqueue/config"
	"github.com/kqueue/kqueue/exec"
	"github.com/kqueue/kqueue/internal/unixsock"
	"github.com/kqueue/kqueue/poller"
	"github.com/kqueue/kqueue/web"
)

// webIdleExit is how long a socket-activated console waits with no
// connection open (a page open keeps its live updates' one) before it
// exits; systemd starts it again on the next visit.
const webIdleExit = 5 * time.Minute

// Web serves the console (kqueue web): on the socket systemd passed, or on
// [web] listen. It reads the app's queue configuration itself (one PHP
// run, as the app's user), then the store; actions go through the app.
func Web(ctx context.Context, cfg *config.Config, log *slog.Logger, opts Options) error {
	log = log.With("component", "web")
	if _, err := exec.ReadApp(ctx, cfg); err != nil {
		return err
	}
	access := web.Access{UserHeader: cfg.Web.UserHeader, Operators: cfg.Web.Operators, LocalRole: web.Role(cfg.Web.LocalRole)}
	if cfg.Web.Tokens != "" {
		tokens, err := web.ReadTokens(cfg.Web.Tokens)
		if err != nil {
			return err
		}
		access.Tokens = tokens
	}
	ln, activated, err := webListener(cfg.Web.Listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	if !web.Local(ln.Addr()) && access.Open() {
		return fmt.Errorf("the console would serve %s, which other hosts reach, to anyone: set [web] tokens or user_header in %s (or listen on loopback or a unix socket)", ln.Addr(), cfg.File)
	}
	store, closeStore, err := openStore(ctx, cfg, pollerQueues(cfg), log)
	if err != nil {
		return err
	}
	defer closeStore()
	roster, _ := store.(poller.Roster)
	hist, _ := store.(poller.History)
	tallies, _ := store.(poller.Tallies)
	if cfg.Web.History < 0 {
		hist = nil
	}
	ec := exec.FromConfig(cfg, nil)
	srv, err := web.New(web.Config{
		Name: cfg.Name, Connection: cfg.Laravel.Connection, Store: store, Roster: roster, History: hist, Keep: cfg.Web.History, Tallies: tallies, Access: access, Logger: log,
		Laravel: func(ctx context.Context, req []byte) ([]byte, error) { return exec.Console(ctx, ec, req) },
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	log.Info("console serving", "listen", ln.Addr().String(), "version", opts.Version, "access", describe(access, cfg.Web))

	var open atomic.Int64
	// Live pages' streams end with the server: their requests' contexts
	// are this one's, cancelled before the shutdown.
	base, endStreams := context.WithCancel(context.WithoutCancel(ctx))
	defer endStreams()
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext: func(net.Listener) context.Context { return base },
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				open.Add(1)
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		}}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	var idle <-chan time.Time
	if activated {
		t := time.NewTicker(webIdleExit / 5)
		defer t.Stop()
		idle = t.C
	}
	var idleSince time.Time
	for {
		select {
		case err := <-served:
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return err
		case <-ctx.Done():
			endStreams()
			return shutdown(hs)
		case <-idle:
			if open.Load() > 0 {
				idleSince = time.Time{}
				continue
			}
			if idleSince.IsZero() {
				idleSince = time.Now()
			} else if time.Since(idleSince) >= webIdleExit {
				log.Info("console idle: exiting until the next visit")
				endStreams()
				return shutdown(hs)
			}
		}
	}
}

func shutdown(hs *http.Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	hs.Shutdown(ctx)
	return nil
}

// webListener is the socket systemd passed (activated), else one on
// listen: "unix:PATH" or a TCP address.
func webListener(listen string) (net.Listener, bool, error) {
	ln, err := unixsock.Inherited()
	if err != nil || ln != nil {
		return ln, ln != nil, err
	}
	if path, ok := strings.CutPrefix(listen, "unix:"); ok {
		os.Remove(path) // a socket left by a console that was killed
		ln, err := net.Listen("unix", path)
		return ln, false, err
	}
	ln, err = net.Listen("tcp", listen)
	if err != nil {
		return nil, false, fmt.Errorf("web.listen: %w", err)
	}
	return ln, false, nil
}

// describe says who the console lets in, for its start-up line.
func describe(a web.Access, w config.Web) string {
	var how []string
	if len(a.Tokens) > 0 {
		how = append(how, fmt.Sprintf("%d tokens from %s", len(a.Tokens), w.Tokens))
	}
	if a.UserHeader != "" {
		how = append(how, fmt.Sprintf("the proxy's %s header (%d operators)", a.UserHeader, len(a.Operators)))
	}
	if len(how) == 0 {
		return "anyone who reaches the socket, as " + w.LocalRole
	}
	return strings.Join(how, ", ")
}
