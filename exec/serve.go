package exec

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/kqueue/kqueue/internal/unixsock"
	"github.com/kqueue/kqueue/protocol"
)

// A Dispatcher's life: New, Start (the pool boots), then one of the
// Serve methods until ctx is done, which stops it in this order:
//
//  1. no more jobs are taken (a poller of its own stops reserving; one
//     across a socket hears capacity 0);
//  2. running jobs have Config.ShutdownTimeout to finish;
//  3. then HardStop: they are killed and released, queued ones given back;
//  4. the pool's workers exit.
//
// The poller waits for the outcomes of 2 and 3 (see poller.HardStopGrace).

// ServeConn serves the poller at the other end of conn — one in this
// process, which stops itself on ctx — until it closes the connection,
// then stops the pool.
func (d *Dispatcher) ServeConn(ctx context.Context, conn *protocol.Conn) error {
	timeout := d.cfg.get().ShutdownTimeout // as started: a reload changes it at the next start
	defer d.hardStopAfter(ctx, timeout)()
	err := d.Serve(context.WithoutCancel(ctx), conn)
	return errors.Join(err, d.shutdown(timeout))
}

// ListenOptions are how ServeListener runs.
type ListenOptions struct {
	// IdleExit ends ServeListener when a poller lets go for lack of work
	// (pool.idle_exit): the socket, held by systemd, starts it again.
	IdleExit bool
	// Watchdog, when set, is called every WatchdogEvery while the pool
	// can run jobs or is booting workers to (see Healthy).
	Watchdog      func()
	WatchdogEvery time.Duration
}

// ServeListener serves the pollers that connect at ln, one at a time,
// until ctx is done (the connection in hand drains) or, with IdleExit, a
// poller lets go for lack of work; then it stops the pool. Connections
// from processes outside root, kqueue's user and its group are refused.
func (d *Dispatcher) ServeListener(ctx context.Context, ln net.Listener, opts ListenOptions) error {
	timeout := d.cfg.get().ShutdownTimeout // as started: a reload changes it at the next start
	defer d.hardStopAfter(ctx, timeout)()
	if opts.Watchdog != nil && opts.WatchdogEvery > 0 {
		go d.pingWhileHealthy(ctx, opts.Watchdog, opts.WatchdogEvery)
	}
	stopAccept := context.AfterFunc(ctx, func() { ln.Close() })
	defer stopAccept()
	refused := func(who string) {
		d.log.Warn("dispatcher socket: refused a connection from a process outside root, kqueue's user and its group", "peer", who)
	}
	// Each connection in its own goroutine: a poller starting up gets the
	// app's configuration at once, even while another poller's session
	// drains; job sessions take turns.
	var one sync.Mutex
	var conns sync.WaitGroup
	idle := sync.OnceFunc(func() {
		// The poller let go after pool.idle_exit without work.
		d.log.Info("idle: exiting until the next job (pool.idle_exit)")
		ln.Close()
	})
	for {
		c, err := unixsock.Accept(ln, refused)
		if err != nil {
			break // closed: stopping, or idle
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			appOnly, err := d.serve(ctx, protocol.NewConn(c), &one)
			switch {
			case err != nil:
				d.log.Error("poller connection ended", "error", err)
			case !appOnly && ctx.Err() == nil && opts.IdleExit:
				idle()
			}
		}()
	}
	conns.Wait()
	return d.shutdown(timeout)
}

// pingWhileHealthy calls ping every interval while the pool is healthy,
// until ctx is done.
func (d *Dispatcher) pingWhileHealthy(ctx context.Context, ping func(), every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if d.Healthy() {
				ping()
			}
		}
	}
}

// hardStopAfter stops the running jobs hard once ctx has been done for
// timeout. The returned function disarms it.
func (d *Dispatcher) hardStopAfter(ctx context.Context, timeout time.Duration) (disarm func()) {
	var timer *time.Timer
	armed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		timer = time.AfterFunc(timeout, d.HardStop)
		close(armed)
	})
	return func() {
		if !stop() { // it ran, or is running
			<-armed
			timer.Stop()
		}
	}
}

// shutdown stops the pool, its running jobs (if any are left) given
// timeout.
func (d *Dispatcher) shutdown(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.Stop(ctx)
}
