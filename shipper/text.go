package shipper

import (
	"strings"
	"unicode/utf8"
)

// MaxTextBytes bounds every string a record carries (keys, values, body):
// whatever the kernel, the API server or the environment hands the agent,
// a record stays small and valid.
const MaxTextBytes = 4096

const replacementChar = "\uFFFD"

// SanitizeText returns s as valid UTF-8 (invalid bytes become U+FFFD) of at
// most MaxTextBytes bytes.
func SanitizeText(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, replacementChar)
	}
	if len(s) <= MaxTextBytes {
		return s
	}
	cut := MaxTextBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
