// Package swar tests the eight bytes of a 64-bit word at once, for
// scanners that look for a few byte values among long runs of others.
// Each function sets the high bit of the bytes of w that match (w read
// little-endian: its first byte lowest). A borrow may also mark bytes
// after the first match, never the first, and no byte when none matches:
// enough to tell whether any matches, and which one first.
package swar

const ones, highs = 0x0101010101010101, 0x8080808080808080

// Equal marks the bytes of w that are c.
func Equal(w uint64, c byte) uint64 {
	x := w ^ ones*uint64(c)
	return (x - ones) &^ x & highs
}

// Below marks the bytes of w under n, which is at most 0x80.
func Below(w uint64, n byte) uint64 {
	return (w - ones*uint64(n)) &^ w & highs
}

// High marks the bytes of w from 0x80 up.
func High(w uint64) uint64 { return w & highs }
