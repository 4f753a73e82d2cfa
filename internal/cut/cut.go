// Package cut shortens text without cutting a character in two: errors
// and output lines of megabytes kept or logged by their head.
package cut

import "unicode/utf8"

// Head is s, or its first n bytes (whole characters) and "…".
func Head(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return Whole(s[:n]) + "…"
}

// Whole is s, the head of a longer text, less a last character it cut
// short.
func Whole(s string) string {
	for i := len(s) - 1; i >= 0 && i >= len(s)-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			if !utf8.FullRuneInString(s[i:]) {
				return s[:i]
			}
			break
		}
	}
	return s
}
