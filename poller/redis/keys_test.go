package redis

import "testing"

// Under Redis Cluster a script runs only when every key it names is in one
// slot: every key kqueue builds for a queue with a hash tag, its own
// receipt and quarantine keys too, hashes like the queue's.
func TestKeysShareSlot(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ prefix, name, tag string }{
		{"laravel_database_", "{default}", "default"},
		{"", "{default}", "default"},
		{"laravel_database_", "emails{eu}", "eu"},
		{"{app}:", "default", "app"},
		{"{app}:", "{default}", "app"}, // only the first tag counts
		{"laravel_database_", "{default}:{x}", "default"},
	} {
		k := keysFor(tc.prefix, tc.name).withReceipt("host{1}-42-ab")
		for _, key := range []string{k.queue, k.delayed, k.reserved, k.notify, k.quarantine, k.receipt} {
			if got := hashTag(key); got != tc.tag {
				t.Errorf("prefix %q, queue %q: %s hashes %q, want %q", tc.prefix, tc.name, key, got, tc.tag)
			}
		}
	}
	for key, want := range map[string]string{
		"queues:default":        "queues:default",
		"queues:{}default":      "queues:{}default", // an empty tag hashes the whole key
		"queues:{default":       "queues:{default",
		"queues:{a}b}":          "a",
		"queues:}{a}":           "a",
		"queues:{default}:x{y}": "default",
	} {
		if got := hashTag(key); got != want {
			t.Errorf("hashTag(%q) = %q, want %q", key, got, want)
		}
	}
}
