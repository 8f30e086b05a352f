package shipper

import (
	"encoding/binary"
	"strings"
	"unicode/utf8"
)

// MaxTextBytes bounds every string a record carries (keys, values, body):
// whatever the kernel, the API server or the environment hands the agent,
// a record stays small and valid.
const MaxTextBytes = 4096

const replacementChar = "\uFFFD"

// appendText appends s as a length-prefixed string, made valid UTF-8 and cut
// to MaxTextBytes on a rune boundary. OTLP's protobuf encoding refuses invalid
// UTF-8, so one bad byte would otherwise make a whole batch unexportable.
func appendText(b []byte, s string) []byte {
	if len(s) <= MaxTextBytes && utf8.ValidString(s) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		return append(b, s...)
	}
	return appendSanitized(b, s)
}

// appendTextBytes is appendText for a value held in a byte slice.
func appendTextBytes(b, v []byte) []byte {
	if len(v) <= MaxTextBytes && utf8.Valid(v) {
		return appendBytes(b, v)
	}
	return appendSanitized(b, string(v))
}

func appendSanitized(b []byte, s string) []byte {
	s = SanitizeText(s)
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

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
