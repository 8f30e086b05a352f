// Package termsafe escapes what a terminal would obey rather than print:
// values read from the trail (pod names, labels, DNS names, reasons) are
// written by whoever produced them, and a table must not let one of them
// move the cursor, clear lines, retitle the window or reorder text.
package termsafe

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// String returns s with control characters (C0, DEL, C1), bidirectional
// overrides and invalid UTF-8 escaped as Go escapes them (\x1b, \u202e),
// and s itself, unallocated, when there is nothing to escape.
func String(s string) string {
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if unsafe(r, size) {
			break
		}
		i += size
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if unsafe(r, size) {
			if r == utf8.RuneError && size == 1 {
				b.WriteString(`\x`)
				b.WriteString(strconv.FormatUint(uint64(s[i])|0x100, 16)[1:])
			} else {
				q := strconv.QuoteRuneToASCII(r)
				b.WriteString(q[1 : len(q)-1])
			}
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func unsafe(r rune, size int) bool {
	switch {
	case r == utf8.RuneError && size == 1:
		return true
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
		return true
	}
	return false
}
