package poller

import "testing"

// Weighted order visits every queue once per round, heavier ones first more
// often.
func TestWeightedOrder(t *testing.T) {
	t.Parallel()
	p := New(Config{Queues: []Queue{{Name: "a", Weight: 8}, {Name: "b", Weight: 1}, {Name: "c", Weight: 1}}})
	first := map[int]int{}
	for range 2000 {
		o := p.order()
		if len(o) != 3 || o[0] == o[1] || o[1] == o[2] || o[0] == o[2] {
			t.Fatalf("order %v is not a permutation", o)
		}
		first[o[0]]++
	}
	if first[0] < 1200 || first[1] == 0 || first[2] == 0 {
		t.Errorf("first picks %v: want a (weight 8) about 80%%, b and c sometimes", first)
	}
}
