package poller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Acknowledgements wait for the next reserve to carry them, up to
// maxUnacked of them, and no longer than maxAckDelay: each one not yet in
// the store is a job that runs again if this process dies. maxAckDelay is
// the bound that matters; maxUnacked only cuts a round trip short when
// many jobs end at once.
const (
	maxUnacked  = 32
	maxAckDelay = 5 * time.Millisecond
)

// errStoreAway: a flush or reserve not tried, the store being away.
var errStoreAway = errors.New("the store is unreachable")

// acks are the acknowledgements not yet in the store, oldest first. Each
// stays until the store has it: a round trip that fails (the store away) is
// replayed on a later one. Replaying a delete or a release is safe: a
// delete again removes nothing, and a release puts the job back only if
// it removed the reservation (a job reserved again since, by queue:work,
// has another reservation). Give-backs and charges are not replayed (see
// dropUnsure).
type acks struct {
	pending []pendingAck
	since   time.Time // when the oldest was queued
	sending []Ack     // what out returned last: its array is reused
}

type pendingAck struct {
	Ack
	job *running // AckCharge: moot once the job is settled
}

// add queues a for the next round trip.
func (a *acks) add(ack Ack, job *running) {
	if len(a.pending) == 0 {
		a.since = time.Now()
	}
	a.pending = append(a.pending, pendingAck{ack, job})
}

// due reports whether the acknowledgements may wait no longer for a
// reserve to carry them.
func (a *acks) due() bool {
	return len(a.pending) >= maxUnacked || (len(a.pending) > 0 && time.Since(a.since) >= maxAckDelay)
}

// out is what to send: every pending acknowledgement, but for the charges
// of jobs settled since (their settlement finds their reservation as it
// was). A job whose charge it sends is marked charging: from then on its
// reservation may be the charged copy.
func (a *acks) out() []Ack {
	out := a.sending[:0]
	for _, pa := range a.pending {
		if pa.Kind == AckCharge {
			if pa.job.settled {
				continue
			}
			pa.job.charging = true
		}
		out = append(out, pa.Ack)
	}
	a.sending = out
	return out
}

// sent drops the first n acknowledgements when the store took them (err
// nil); otherwise it keeps them for the next round trip, but for the
// give-backs and charges, and reports how many give-backs it dropped.
//
// Each of those is sent once. Replayed after a reply that was lost, either
// could act on the reservation another consumer has made of the same job
// since (a reservation that is the original payload is the same, byte for
// byte, whoever made it): a give-back would run it twice, a charge count
// an attempt of theirs. A give-back the store did not take leaves its job
// reserved as it was: it comes back after retry_after, attempts not
// counted; a charge not taken leaves a job that ran uncounted, and its
// settlement names both forms of its reservation.
func (a *acks) sent(n int, err error) (droppedGiveBacks int) {
	if err == nil {
		// Those queued since go to the front, so the array is reused.
		rest := copy(a.pending, a.pending[n:])
		clear(a.pending[rest:]) // no hold on settled jobs
		a.pending = a.pending[:rest]
		return 0
	}
	kept := make([]pendingAck, 0, len(a.pending))
	for i, pa := range a.pending {
		switch {
		case i >= n || pa.Kind == AckDelete || pa.Kind == AckRelease:
			kept = append(kept, pa)
		case pa.Kind == AckGiveBack:
			droppedGiveBacks++
		}
	}
	a.pending = kept
	return droppedGiveBacks
}

// queueAck queues an acknowledgement; job is the running job for a charge.
func (p *Poller) queueAck(kind AckKind, r *running, releaseAt time.Time) {
	p.acks.add(Ack{Kind: kind, Job: r.job, ReleaseAt: releaseAt, Charged: r.charging}, r)
}

// flush sends the queued acknowledgements in one round trip.
func (p *Poller) flush(ctx context.Context) error {
	if len(p.acks.pending) == 0 {
		return nil
	}
	if !p.outage.mayTry() {
		return errStoreAway
	}
	return p.sendAcks(ctx)
}

// sendAcks sends the queued acknowledgements now.
func (p *Poller) sendAcks(ctx context.Context) error {
	if len(p.acks.pending) == 0 {
		return nil
	}
	n := len(p.acks.pending)
	err := p.store.Ack(ctx, p.acks.out())
	p.acked(n, err)
	if err == nil {
		p.outage.end() // the store answered
	}
	return err
}

// acked notes the fate of the first n acknowledgements.
func (p *Poller) acked(n int, err error) {
	if err != nil {
		p.outage.begin(err)
	}
	if dropped := p.acks.sent(n, err); dropped > 0 {
		p.log.Warn("could not give back jobs that never ran; they come back after retry_after, attempts not counted", "jobs", dropped)
	}
}

// outage is the store's availability as the poller has seen it. An
// outage is told once, when it begins and when it ends; while it lasts,
// the store is tried once a second, not on every turn of the loop: each
// try may wait out a timeout, and the loop must stay free to answer
// `kqueue status` in between.
type outage struct {
	log     *slog.Logger
	store   string    // its name, for messages
	since   time.Time // when it stopped answering; zero while it answers
	lastTry time.Time // the last try to reach it while it is away
	recover bool      // it was away: Store.Recover before the next reserve
}

func (o *outage) down() bool { return !o.since.IsZero() }

// lasted is how long the store has not answered; 0 while it does.
func (o *outage) lasted() time.Duration {
	if !o.down() {
		return 0
	}
	return max(time.Since(o.since), time.Millisecond)
}

// begin notes an error; one that says the store is away starts an outage
// (other errors, a script's, are not one). A call cut short by its context
// (kqueue stopping, a dispatcher gone) says nothing of the store: its
// reply may be lost all the same, so the next reserve recovers first, but
// no outage begins.
func (o *outage) begin(err error) {
	if !IsUnreachable(err) {
		return
	}
	o.recover = true
	if errors.Is(err, context.Canceled) {
		return
	}
	if !o.down() {
		o.since = time.Now()
		o.log.Error(fmt.Sprintf("%s is unreachable; retrying every second, outcomes are kept until it is back", o.store), "error", err)
	}
}

// end notes that the store answered again.
func (o *outage) end() {
	if o.down() {
		o.log.Info(o.store+" is reachable again", "outage", time.Since(o.since).Round(time.Millisecond))
		o.since = time.Time{}
	}
}

// mayTry reports whether to try the store now: always while it answers,
// once a second while it is away.
func (o *outage) mayTry() bool {
	if o.down() && time.Since(o.lastTry) < time.Second {
		return false
	}
	o.lastTry = time.Now()
	return true
}
