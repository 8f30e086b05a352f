package victorialogs

import (
	"encoding/json"
	"unicode/utf16"
	"unicode/utf8"
)

// decodeRow decodes one of VictoriaLogs' JSON lines, a flat object whose
// values are all strings, into row, as json.Unmarshal would. A line of any
// other shape goes to json.Unmarshal, so the result (and every error) is
// json's; the fast path only spares reading 300,000 rows through reflection.
// keys interns field names across rows.
func decodeRow(line []byte, row map[string]string, keys map[string]string) error {
	var buf []byte
	if !decodeFlat(line, row, keys, &buf) {
		clear(row)
		return json.Unmarshal(line, &row)
	}
	return nil
}

// decodeFlat is the fast path: false when line is not a flat object of
// plain strings, with row then partly filled.
func decodeFlat(line []byte, row map[string]string, keys map[string]string, buf *[]byte) bool {
	i := skipSpace(line, 0)
	if i >= len(line) || line[i] != '{' {
		return false
	}
	i = skipSpace(line, i+1)
	if i < len(line) && line[i] == '}' {
		return skipSpace(line, i+1) == len(line)
	}
	for {
		k, next, ok := scanString(line, i, buf)
		if !ok {
			return false
		}
		key, interned := keys[string(k)] // before the value reuses buf
		if !interned {
			key = string(k)
			if len(keys) < 4096 {
				keys[key] = key
			}
		}
		i = skipSpace(line, next)
		if i >= len(line) || line[i] != ':' {
			return false
		}
		v, next, ok := scanString(line, skipSpace(line, i+1), buf)
		if !ok {
			return false
		}
		row[key] = string(v)
		i = skipSpace(line, next)
		if i >= len(line) {
			return false
		}
		switch line[i] {
		case ',':
			i = skipSpace(line, i+1)
		case '}':
			return skipSpace(line, i+1) == len(line)
		default:
			return false
		}
	}
}

// scanString returns the contents of the JSON string at line[i:], and the
// index after its closing quote; not ok for a string that is not valid JSON
// or not valid UTF-8. Escaped contents are unescaped into *buf.
func scanString(line []byte, i int, buf *[]byte) (s []byte, next int, ok bool) {
	if i >= len(line) || line[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(line); j++ {
		switch c := line[j]; {
		case c == '"':
			s = line[i+1 : j]
			return s, j + 1, utf8.Valid(s)
		case c == '\\':
			return unescape(line, i+1, j, buf)
		case c < 0x20:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// unescape continues scanString from the first backslash at line[j], with
// line[start:j] plain, as encoding/json unquotes: a lone or mismatched
// surrogate becomes U+FFFD.
func unescape(line []byte, start, j int, buf *[]byte) (s []byte, next int, ok bool) {
	b := append((*buf)[:0], line[start:j]...)
	for j < len(line) {
		c := line[j]
		switch {
		case c == '"':
			*buf = b
			return b, j + 1, utf8.Valid(b)
		case c < 0x20:
			return nil, 0, false
		case c != '\\':
			b = append(b, c)
			j++
			continue
		}
		if j+1 >= len(line) {
			return nil, 0, false
		}
		switch e := line[j+1]; e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := hex4(line, j+2)
			if !ok {
				return nil, 0, false
			}
			j += 6
			if utf16.IsSurrogate(r) {
				r2, ok := rune(0), false
				if j+1 < len(line) && line[j] == '\\' && line[j+1] == 'u' {
					r2, ok = hex4(line, j+2)
				}
				if dec := utf16.DecodeRune(r, r2); ok && dec != utf8.RuneError {
					r = dec
					j += 6
				} else {
					r = utf8.RuneError
				}
			}
			b = utf8.AppendRune(b, r)
			continue
		default:
			return nil, 0, false
		}
		j += 2
	}
	return nil, 0, false
}

func hex4(line []byte, i int) (rune, bool) {
	if i+4 > len(line) {
		return 0, false
	}
	var r rune
	for _, c := range line[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

func skipSpace(line []byte, i int) int {
	for i < len(line) && (line[i] == ' ' || line[i] == '\t' || line[i] == '\n' || line[i] == '\r') {
		i++
	}
	return i
}
