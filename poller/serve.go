package poller

import (
	"context"
	"errors"
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
	var dialer net.Dialer
	logged := false
	for ctx.Err() == nil {
		p.waiting("connecting to the dispatcher")
		c, err := dialer.DialContext(ctx, "unix", socket)
		if err != nil {
			if !logged {
				p.log.Warn("dispatcher not reachable yet; retrying", "socket", socket, "error", err)
				logged = true
			}
			pause(ctx, reconnectPause)
			continue
		}
		logged = false
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
