package poller

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/kqueue/kqueue/protocol"
)

// session is one Run: a dispatcher connection and the main loop's state.
type session struct {
	p      *Poller
	ctx    context.Context // done: stop
	bg     context.Context // for acknowledgements, which outlive a stop
	conn   *protocol.Conn
	events chan event
	waker  *waker

	lease, heartbeat *time.Ticker
	ackTimer         *time.Timer
	ackWait          <-chan time.Time // armed while acknowledgements wait to ride along
	done             <-chan struct{}  // ctx.Done(), until seen
	stopping         bool
	giveUp           <-chan time.Time // armed once stopping
	needPoll         bool             // the store may hold work we have not seen
	armed            bool             // the waker is waiting for us
	idleSince        time.Time        // since when nothing ran or was ready

	loopDone, readerDone chan struct{}
}

// event is something the main loop reacts to.
type event struct {
	msg  protocol.Message // from the dispatcher
	err  error            // the connection failed or closed
	wake bool             // the idle wait is over
}

// next is what the main loop does after filling the dispatcher's room.
type next uint8

const (
	wait  next = iota // wait for something to happen
	again             // fill again: a queue may hold more
	end               // Run returns
)

// open readies the store, shakes hands with the dispatcher and starts the
// connection's reader, the waker and the timers.
func (p *Poller) open(ctx context.Context, conn *protocol.Conn) (*session, error) {
	if len(p.queues) == 0 {
		conn.Close()
		return nil, fmt.Errorf("poller: no queues to consume")
	}
	if err := p.store.Open(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	if l, ok := p.store.(Leases); ok {
		for i := range p.queues {
			if d := l.LeaseFor(i); d > 0 {
				p.queues[i].RetryAfter = d
			}
		}
	}
	if err := p.handshake(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("handshake with dispatcher: %w", err)
	}
	s := &session{
		p: p, ctx: ctx, bg: context.WithoutCancel(ctx), conn: conn, done: ctx.Done(), needPoll: true,
		events: make(chan event, 256), loopDone: make(chan struct{}), readerDone: make(chan struct{}),
		lease:     time.NewTicker(p.leaseInterval()),
		heartbeat: time.NewTicker(p.cfg.HeartbeatEvery),
		ackTimer:  time.NewTimer(time.Hour),
	}
	s.ackTimer.Stop()
	go s.read()
	s.waker = newWaker(p.store, s.events)
	p.beat(false)
	return s, nil
}

// handshake trades Hello for Welcome, which says the dispatcher's capacity.
func (p *Poller) handshake(conn *protocol.Conn) error {
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	defer conn.SetDeadline(time.Time{})
	if err := conn.Send(protocol.Hello{Version: protocol.Version, Instance: p.cfg.Instance}); err != nil {
		return err
	}
	m, err := conn.Recv()
	if err != nil {
		return err
	}
	w, ok := m.(protocol.Welcome)
	if !ok {
		return fmt.Errorf("got message type %d, want welcome", m.Type())
	}
	if w.Version != protocol.Version {
		return fmt.Errorf("it speaks protocol version %d, this poller %d", w.Version, protocol.Version)
	}
	p.capacity = int(w.Capacity)
	return nil
}

// read passes the dispatcher's messages to the main loop.
func (s *session) read() {
	defer close(s.readerDone)
	for {
		m, err := s.conn.Recv()
		if o, ok := m.(protocol.Outcome); ok && o.Reason != "" {
			o.Reason = string([]byte(o.Reason)) // detach from the read buffer
			m = o
		}
		ev := event{msg: m, err: err}
		select {
		case s.events <- ev: // there is room, as a rule: no two-way select
		default:
			select {
			case s.events <- ev:
			case <-s.loopDone:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// close ends the session: the connection is closed and nothing stays in
// flight (a job whose outcome cannot come is left to retry_after).
func (s *session) close() {
	s.p.done.tell(s.p.log) // the last second's count, without waiting for it to end
	s.waker.stop()
	s.lease.Stop()
	s.heartbeat.Stop()
	s.ackTimer.Stop()
	// Half-close so the dispatcher reads EOF and closes its side; then the
	// reader ends. A dispatcher that does not answer is cut off.
	close(s.loopDone)
	s.conn.CloseWrite()
	select {
	case <-s.readerDone:
	case <-time.After(5 * time.Second):
	}
	s.conn.Close()
	<-s.readerDone
	clear(s.p.inflight)
	for i := range s.p.queues {
		s.p.queues[i].running = 0
	}
	ctx, cancel := context.WithTimeout(s.bg, 2*time.Second)
	defer cancel()
	s.p.store.Done(ctx)
}

// answerStatus answers a waiting `kqueue status` first: the rest of a turn
// may wait on the store.
func (s *session) answerStatus() {
	select {
	case reply := <-s.p.snapshots:
		reply <- s.p.snapshot(s.stopping)
	default:
	}
}

// finished is a stop's last step, nothing running any more: it reports
// whether every outcome is in the store, or the store stayed away until
// the stop gave up; otherwise it waits a second before the next try.
func (s *session) finished() bool {
	if s.p.flush(s.bg) == nil {
		return true
	}
	select {
	case <-s.giveUp:
		s.p.log.Warn(fmt.Sprintf("stopping: %s is unreachable; these jobs' outcomes are lost and they run again after retry_after", s.p.outage.store),
			"outcomes", len(s.p.acks.pending))
		return true
	case <-time.After(time.Second):
		return false
	}
}

// fill reserves jobs for the dispatcher's free room, when there is room
// and the queues may hold work; otherwise it sends the acknowledgements
// that are due.
func (s *session) fill() (next, error) {
	p := s.p
	free := p.capacity - len(p.inflight)
	switch {
	case s.stopping || !s.needPoll || free <= 0:
		p.flush(s.bg) // otherwise the acks ride along with the reserve
		return wait, nil
	case free < p.capacity/2 && len(p.inflight) > 0:
		// A deep dispatcher (short jobs) still has plenty queued: wait
		// until half of it has run, then reserve that many in one round
		// trip, with the acknowledgements riding along — unless they pile
		// up: each one not yet in the store is a job that runs again if
		// this process dies (maxAckDelay).
		if p.acks.due() {
			p.flush(s.bg)
		} else if len(p.acks.pending) > 0 && s.ackWait == nil {
			s.ackTimer.Reset(maxAckDelay - time.Since(p.acks.since))
			s.ackWait = s.ackTimer.C
		}
		return wait, nil
	}
	got, more, due, err := p.reserve(s.ctx, s.conn, free)
	switch {
	case err != nil && s.ctx.Err() != nil:
		s.needPoll = false // stopping: wait sees it
	case err != nil:
		if !p.outage.down() { // an outage is told once, by outage.begin
			p.log.Error("reserve failed", "error", err)
		}
		s.needPoll = false
		// Again in about a second, spread so that many pollers do not
		// come back to a recovering store at once.
		s.arm(time.Second+rand.N(500*time.Millisecond), false)
	case more:
		return again, nil // the queues may hold more: fill again while there is room
	default:
		s.needPoll = false
		return s.drained(got, due)
	}
	return wait, nil
}

// drained handles a reserve that found the queues drained: Run ends under
// StopWhenEmpty or after IdleExit; otherwise the waker is armed, up to
// when the next delayed job falls due.
func (s *session) drained(got int, due time.Time) (next, error) {
	p := s.p
	nothing := got == 0 && len(p.inflight) == 0 && !p.receiving
	if p.cfg.StopWhenEmpty && nothing {
		p.flush(s.bg)
		return end, nil
	}
	d := p.cfg.IdleWait
	if p.cfg.IdleExit > 0 && nothing {
		now := time.Now()
		if s.idleSince.IsZero() {
			s.idleSince = now
		}
		left := p.cfg.IdleExit - now.Sub(s.idleSince)
		if left <= 0 {
			p.flush(s.bg)
			return end, ErrIdle
		}
		d = min(d, left)
	} else {
		s.idleSince = time.Time{}
	}
	if !due.IsZero() {
		d = min(d, max(due.Sub(p.cfg.Now()), time.Millisecond))
	}
	if p.fleetHeld {
		// Jobs wait, held by the fleet's cap: their pushes' wake-ups are
		// in the store still, and would wake the waiter at once.
		s.arm(min(d, fleetPoll), false)
		return wait, nil
	}
	s.arm(d, true) // at the next push, or after d
	return wait, nil
}

// fleetPoll is how often a queue held by its fleet-wide cap is looked at.
const fleetPoll = 200 * time.Millisecond

// arm has the waker wake the loop after d, unless it is armed already.
func (s *session) arm(d time.Duration, block bool) {
	if !s.armed {
		s.armed = true
		s.waker.arm(d, block)
	}
}

// wait waits for the next thing to happen and handles it. It reports
// whether Run ends, and with what.
func (s *session) wait() (bool, error) {
	p := s.p
	if p.declined != nil {
		p.declined()
	}
	select {
	case ev := <-s.events:
		return s.take(ev)
	case <-s.ackWait:
		s.ackWait = nil // fill flushes what waited too long
	case <-s.lease.C:
		p.extendLeases(s.bg)
	case <-s.heartbeat.C:
		p.beat(s.stopping)
		p.done.tick(p.cfg.Now(), p.log)
		if d, ok := p.waits.lastDemand(); ok && !s.stopping {
			if err := s.conn.Send(d); err != nil {
				return true, p.connLost(err, s.stopping)
			}
		}
	case reply := <-p.snapshots:
		reply <- p.snapshot(s.stopping)
	case <-s.done:
		s.stop()
	case <-s.giveUp:
		p.flush(s.bg)
		p.log.Warn("stopping: running jobs did not finish in time; their reservations expire after retry_after",
			"running", len(p.inflight))
		return true, nil
	}
	return false, nil
}

// take handles ev and whatever else has arrived with it, so that what
// they settle is acknowledged in one round trip.
func (s *session) take(ev event) (bool, error) {
	p := s.p
	for {
		switch {
		case ev.wake:
			s.armed = false
			s.needPoll = true
		case ev.err != nil:
			p.flush(s.bg)
			return true, p.connLost(ev.err, s.stopping)
		default:
			// While the store is away only the retry timer polls: an
			// outcome must not start a reserve that waits out a timeout
			// and leaves the loop deaf meanwhile.
			if p.handle(ev.msg) && !p.outage.down() {
				s.needPoll = true
			}
		}
		select {
		case ev = <-s.events:
		default:
			return false, nil
		}
	}
}

// stop begins a stop: nothing more is reserved; the running jobs'
// outcomes are awaited until the dispatcher's own hard stop has had time
// to send them.
func (s *session) stop() {
	p := s.p
	s.done = nil
	s.stopping = true
	p.beat(true)
	s.giveUp = time.After(p.cfg.ShutdownTimeout + HardStopGrace)
	if len(p.inflight) > 0 {
		p.log.Info("stopping: waiting for running jobs", "running", len(p.inflight), "timeout", p.cfg.ShutdownTimeout)
	}
}
