package redis

import "strings"

// keys are the Redis keys of one Laravel queue, prefix included. Every key
// kqueue touches is built here.
type keys struct {
	queue      string // LIST of ready payloads
	delayed    string // ZSET payload → due time
	reserved   string // ZSET reserved copy → reservation expiry
	notify     string // LIST of "1" tokens, one per ready job
	quarantine string // LIST of entries that are not Laravel payloads (kqueue's own)
	receipt    string // LIST: one poller's last reserve, for a reply lost in an outage (kqueue's own)
}

func keysFor(prefix, name string) keys {
	q := prefix + "queues:" + name
	return keys{
		queue:      q,
		delayed:    q + ":delayed",
		reserved:   q + ":reserved",
		notify:     q + ":notify",
		quarantine: q + ":kqueue-quarantine",
	}
}

// withReceipt names the receipt key of one poller (token) on these keys.
func (k keys) withReceipt(token string) keys {
	k.receipt = k.queue + ":kqueue-receipt:" + token
	return k
}

// hashTag is the part of key that Redis Cluster hashes to choose its slot:
// the first "{…}" with something inside, else the whole key. Keys with the
// same hash tag share a slot.
func hashTag(key string) string {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if end := strings.IndexByte(key[open+1:], '}'); end > 0 {
			return key[open+1 : open+1+end]
		}
	}
	return key
}
