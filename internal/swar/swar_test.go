package swar

import (
	"encoding/binary"
	"math/bits"
	"testing"
)

// Against the bytes one by one: whether any matches, and the first.
func FuzzMatchesBytes(f *testing.F) {
	f.Add([]byte("abc\"defg"), byte('"'), byte(0x20))
	f.Add([]byte{0x00, 0x80, 0xff, 0x7f, 0x20, 0x21, 0x5c, 0x3d}, byte('\\'), byte(0x80))
	f.Fuzz(func(t *testing.T, b []byte, c, n byte) {
		if len(b) < 8 {
			return
		}
		n = n%0x80 + 1 // Below takes 1 to 0x80
		w := binary.LittleEndian.Uint64(b)
		for _, tc := range []struct {
			name  string
			mask  uint64
			match func(byte) bool
		}{
			{"Equal", Equal(w, c), func(x byte) bool { return x == c }},
			{"Below", Below(w, n), func(x byte) bool { return x < n }},
			{"High", High(w), func(x byte) bool { return x >= 0x80 }},
		} {
			first := -1
			for i, x := range b[:8] {
				if tc.match(x) {
					first = i
					break
				}
			}
			got := -1
			if tc.mask != 0 {
				got = bits.TrailingZeros64(tc.mask) / 8
			}
			if got != first {
				t.Fatalf("%s of % x (c %#x, n %#x): first match at %d, want %d", tc.name, b[:8], c, n, got, first)
			}
		}
	})
}
