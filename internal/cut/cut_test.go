package cut

import "testing"

func TestHead(t *testing.T) {
	for _, c := range []struct {
		s    string
		n    int
		want string
	}{
		{"abc", 3, "abc"},
		{"abcd", 3, "abc…"},
		{"aé", 2, "a…"},   // é is 2 bytes: not cut in two
		{"aéb", 3, "aé…"}, // whole
		{"a€b", 3, "a…"},  // € is 3 bytes
		{"a€b", 4, "a€…"},
		{"a\xffbc", 2, "a\xff…"}, // not UTF-8: bytes as they are
		{"", 0, ""},
		{"é", 0, "…"},
	} {
		if got := Head(c.s, c.n); got != c.want {
			t.Errorf("Head(%q, %d) = %q, want %q", c.s, c.n, got, c.want)
		}
	}
}
