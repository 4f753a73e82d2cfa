package poller

// Inflight is how many jobs p holds in the dispatcher's hands.
func Inflight(p *Poller) int { return len(p.inflight) }

// OnDecline has f called each time p's main loop waits with nothing more
// to reserve: what it took in the turn before is in the store and sent.
func OnDecline(p *Poller, f func()) { p.declined = f }
