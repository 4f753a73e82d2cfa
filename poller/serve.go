package poller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"time"

	"github.com/kqueue/kqueue/protocol"
)

// reconnectPause is how long Serve waits before it connects again to a
// dispatcher that went away or is not there yet: a failing one is not
// hammered.
const reconnectPause = 500 * time.Millisecond

// Serve runs the poller against the dispatcher listening at socket (the
// split units: kqueue@NAME and kqueue-dispatcher@NAME) until ctx is done,
// connecting again whenever the dispatcher goes away (restart, crash, its
// own idle exit). After IdleExit without work it lets the dispatcher go
// and waits for the next job before it connects, and so starts, it again.
func (p *Poller) Serve(ctx context.Context, socket string) error {
	for ctx.Err() == nil {
		c, err := dial(ctx, socket, p.log, p.cfg.Waiting)
		if err != nil {
			return nil // stopped
		}
		p.log.Info("connected to dispatcher", "socket", socket)
		err = p.Run(ctx, protocol.NewConn(c))
		switch {
		case ctx.Err() != nil:
			return nil // stopped
		case errors.Is(err, ErrIdle):
			p.log.Info("no work for pool.idle_exit: letting the dispatcher exit until the next job", "idle_exit", p.cfg.IdleExit)
			p.awaitWork(ctx)
		case errors.Is(err, ErrDispatcherGone):
			p.log.Info("dispatcher closed the connection; reconnecting")
			pause(ctx, reconnectPause)
		default:
			p.log.Error("dispatcher connection ended; reconnecting", "error", err)
			pause(ctx, reconnectPause)
		}
	}
	return nil
}

// dial connects to the dispatcher at socket, again every reconnectPause
// until it answers or ctx is done; waiting, when set, hears that it waits.
func dial(ctx context.Context, socket string, log *slog.Logger, waiting func(string)) (net.Conn, error) {
	var dialer net.Dialer
	logged := false
	for {
		if waiting != nil {
			waiting("connecting to the dispatcher")
		}
		c, err := dialer.DialContext(ctx, "unix", socket)
		if err == nil || ctx.Err() != nil {
			return c, err
		}
		if !logged {
			log.Warn("dispatcher not reachable yet; retrying", "socket", socket, "error", err)
			logged = true
		}
		pause(ctx, reconnectPause)
	}
}

// AskApp asks the dispatcher at socket for the app's queue configuration
// (exec.Dispatcher.App), waiting for it to be there: a poller runs no PHP
// of its own. A socket-activated dispatcher starts for it.
func AskApp(ctx context.Context, socket, instance string, log *slog.Logger, waiting func(string)) ([]byte, error) {
	c, err := dial(ctx, socket, log, waiting)
	if err != nil {
		return nil, err
	}
	conn := protocol.NewConn(c)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Minute)) // the app's boot is bounded by its own timeout
	if err := conn.Send(protocol.Hello{Version: protocol.Version, Instance: instance, AppOnly: true}); err != nil {
		return nil, fmt.Errorf("ask the dispatcher for the app's configuration: %w", err)
	}
	m, err := conn.Recv()
	if err != nil {
		return nil, fmt.Errorf("ask the dispatcher for the app's configuration: %w (its own log says why: journalctl -u kqueue-dispatcher@%s)", err, instance)
	}
	w, ok := m.(protocol.Welcome)
	switch {
	case !ok:
		return nil, fmt.Errorf("ask the dispatcher for the app's configuration: got message type %d, want welcome", m.Type())
	case w.Version != protocol.Version:
		return nil, fmt.Errorf("the dispatcher speaks protocol version %d, this poller %d: restart both (systemctl restart kqueue@%s)", w.Version, protocol.Version, instance)
	}
	var e struct{ Error string }
	if json.Unmarshal(w.App, &e) == nil && e.Error != "" {
		return nil, errors.New(e.Error)
	}
	return w.App, nil
}

// awaitWork waits, scaled to zero, until a job is there to run or ctx is
// done.
func (p *Poller) awaitWork(ctx context.Context) {
	debug.FreeOSMemory() // what the busy spell took, back to the host while idle
	for ctx.Err() == nil {
		p.waiting("idle: no dispatcher running (pool.idle_exit); waiting for a job")
		work, err := p.WaitForWork(ctx, time.Second)
		if err != nil && ctx.Err() == nil {
			p.log.Error("waiting for work", "error", err)
			pause(ctx, time.Second)
		}
		if work {
			return
		}
	}
}

// waiting tells Config.Waiting what the poller waits for.
func (p *Poller) waiting(status string) {
	if p.cfg.Waiting != nil {
		p.cfg.Waiting(status)
	}
}

// pause waits d, or until ctx is done.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
