// Package chain is the hash chain of an agent instance's records: the
// canonical form of one record and the link that binds it to the one before.
// The agent computes it from the record it encodes and a verifier from the
// record a backend gives back, so the canonical form is defined over text as
// VictoriaLogs returns it: every value a string, resource and record
// attributes in one flat map, empty values dropped.
//
//	leaf  = SHA-256(canonical(record))
//	link  = SHA-256(previous link ‖ leaf)     (the first record's previous link is Genesis)
//
// canonical(record) is the event name, the timestamp in nanoseconds, the
// severity number and the body, then every attribute but connaudit.chain
// sorted by key (then value), each item as a uvarint length and bytes.
// Values are rendered by Normalize, which folds the ways VictoriaLogs may
// re-render a number.
package chain

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strconv"
)

// Size is the length of a link in bytes.
const Size = sha256.Size

// Link is a leaf hash or a chain value.
type Link [Size]byte

// Genesis is the link before an instance's first record.
var Genesis Link

// String is the link in lower-case hex, as records carry it.
func (l Link) String() string { return hex.EncodeToString(l[:]) }

// AppendText appends the hex form.
func (l Link) AppendText(b []byte) []byte { return hex.AppendEncode(b, l[:]) }

// Parse reads a link in the form String writes.
func Parse(s string) (Link, error) {
	var l Link
	if len(s) != 2*Size {
		return l, fmt.Errorf("chain value %.80q: want %d hex digits", s, 2*Size)
	}
	if _, err := hex.Decode(l[:], []byte(s)); err != nil {
		return l, fmt.Errorf("chain value %.80q: %w", s, err)
	}
	return l, nil
}

// Next is the link of a record whose canonical form hashes to leaf, after prev.
func Next(prev, leaf Link) Link {
	var b [2 * Size]byte
	copy(b[:Size], prev[:])
	copy(b[Size:], leaf[:])
	return sha256.Sum256(b[:])
}

// Canon builds the canonical form of one record. The zero value is ready;
// reuse one Canon for many records so that its buffers stop growing.
type Canon struct {
	head  []byte
	attrs []byte
	spans []span
	out   []byte
	num   []byte
	keys  []byte // the record's keys, in the order they were added
	// The order the last sorted record's keys sorted into (indexes into
	// spans), and those keys: the records of one builder repeat their keys
	// in the same order, so the next record with the same keys is put in
	// order without a sort. lastKeys is empty when the last record had a
	// key twice, whose order then depends on the values.
	lastKeys  []byte
	lastOrder []int
}

// span is one attribute in attrs: its length-prefixed key is attrs[start:key],
// its length-prefixed value attrs[key:end].
type span struct{ start, key, end int }

// Reset starts a record. An empty body is treated as absent, as VictoriaLogs
// stores it.
func (c *Canon) Reset(event string, unixNano int64, severity int64, body string) {
	c.head = appendItem(c.head[:0], event)
	c.num = strconv.AppendInt(c.num[:0], unixNano, 10)
	c.head = appendItem(c.head, c.num)
	c.num = strconv.AppendInt(c.num[:0], severity, 10)
	c.head = appendItem(c.head, c.num)
	c.head = appendItem(c.head, body)
	c.attrs = c.attrs[:0]
	c.spans = c.spans[:0]
}

// String adds a string attribute; an empty value is left out (VictoriaLogs
// drops empty fields).
func (c *Canon) String(key string, v string) { addAttr(c, key, v) }

// Bytes is String for a key and value held in byte slices.
func (c *Canon) Bytes(key []byte, v []byte) { addAttr(c, key, v) }

// Int adds an integer attribute.
func (c *Canon) Int(key string, v int64) {
	c.num = strconv.AppendInt(c.num[:0], v, 10)
	addRaw(c, key, c.num)
}

// Bool adds a boolean attribute.
func (c *Canon) Bool(key string, v bool) {
	c.num = strconv.AppendBool(c.num[:0], v)
	addRaw(c, key, c.num)
}

// Float adds a double attribute, rendered as VictoriaLogs renders it on
// ingest ('f', shortest) and then normalized.
func (c *Canon) Float(key string, v float64) {
	c.num = strconv.AppendFloat(c.num[:0], v, 'f', -1, 64)
	if len(c.num) <= maxNumberLen && bytes.IndexByte(c.num, '.') >= 0 {
		// Normalize(shortest 'f') without a parse: shortest 'f' reads back as v.
		c.num = strconv.AppendFloat(c.num[:0], v, 'g', floatDigits, 64)
	}
	addRaw(c, key, c.num)
}

func addAttr[K, V ~string | ~[]byte](c *Canon, key K, v V) {
	if len(v) == 0 {
		return
	}
	start := len(c.attrs)
	c.attrs = appendItem(c.attrs, key)
	k := len(c.attrs)
	c.attrs = appendNormalized(c.attrs, v)
	c.spans = append(c.spans, span{start, k, len(c.attrs)})
}

// addRaw adds a value that is already in normal form.
func addRaw[K ~string | ~[]byte](c *Canon, key K, v []byte) {
	start := len(c.attrs)
	c.attrs = appendItem(c.attrs, key)
	k := len(c.attrs)
	c.attrs = appendItem(c.attrs, v)
	c.spans = append(c.spans, span{start, k, len(c.attrs)})
}

// Fragment is attributes in canonical form, built once and added to many
// records: those of one resource, say.
type Fragment struct {
	attrs []byte
	spans []span
}

// Fragment is the attributes added since Reset, as a Fragment of their own.
func (c *Canon) Fragment() Fragment {
	return Fragment{attrs: bytes.Clone(c.attrs), spans: slices.Clone(c.spans)}
}

// Add adds a fragment's attributes.
func (c *Canon) Add(f Fragment) {
	base := len(c.attrs)
	c.attrs = append(c.attrs, f.attrs...)
	for _, s := range f.spans {
		c.spans = append(c.spans, span{s.start + base, s.key + base, s.end + base})
	}
}

// Leaf is the hash of the canonical form of the record built since Reset.
func (c *Canon) Leaf() Link {
	c.keys = c.keys[:0]
	for _, s := range c.spans {
		c.keys = append(c.keys, c.attrs[s.start:s.key]...)
	}
	if len(c.lastOrder) != len(c.spans) || !bytes.Equal(c.keys, c.lastKeys) {
		c.sortKeys()
	}
	c.out = append(c.out[:0], c.head...)
	for _, i := range c.lastOrder {
		s := c.spans[i]
		c.out = append(c.out, c.attrs[s.start:s.end]...)
	}
	return sha256.Sum256(c.out)
}

// sortKeys sets lastOrder to the order of spans by key, then value, and
// remembers the keys it holds for, unless a key repeats.
func (c *Canon) sortKeys() {
	key := func(i int) []byte { return c.attrs[c.spans[i].start:c.spans[i].key] }
	c.lastOrder = c.lastOrder[:0]
	for i := range c.spans {
		c.lastOrder = append(c.lastOrder, i)
	}
	slices.SortFunc(c.lastOrder, func(a, b int) int {
		if r := bytes.Compare(key(a), key(b)); r != 0 {
			return r
		}
		return bytes.Compare(c.attrs[c.spans[a].key:c.spans[a].end], c.attrs[c.spans[b].key:c.spans[b].end])
	})
	c.lastKeys = append(c.lastKeys[:0], c.keys...)
	for i := 1; i < len(c.lastOrder); i++ {
		if bytes.Equal(key(c.lastOrder[i-1]), key(c.lastOrder[i])) {
			c.lastKeys = c.lastKeys[:0] // matches no record that has a key
			return
		}
	}
}

// Canonical is the canonical form Leaf hashed, for diagnostics; valid until
// the next Reset.
func (c *Canon) Canonical() []byte { return c.out }

func appendItem[V ~string | ~[]byte](b []byte, v V) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// floatDigits is how many significant digits a decimal fraction keeps in
// the canonical form. VictoriaLogs may store a column of decimals as
// float64 parsed with a few ulps of error and print it back with all its
// digits ("0.30000000000000004" comes back as "0.3"); twelve digits absorb
// that, and every double the agent writes (seconds with nanosecond
// precision, below 1000 s) has at most twelve, so none sits on a rounding
// boundary.
const floatDigits = 12

// maxNumberLen is the longest text VictoriaLogs parses as a number.
const maxNumberLen = len("-18_446_744_073_709_551_615")

// appendNormalized appends v as an item, in normal form: text VictoriaLogs
// may store as a number (digits, '_' separators, an optional '-' and at most
// one '.') loses its separators, and a decimal fraction is rounded to
// floatDigits significant digits; any other text is unchanged.
func appendNormalized[V ~string | ~[]byte](b []byte, v V) []byte {
	var tmp [maxNumberLen + 32]byte
	if dot, ok := numeric(v); ok {
		return appendItem(b, normalizeNumber(tmp[:0], v, dot))
	}
	return appendItem(b, v)
}

// numeric reports whether v has the shape of a number VictoriaLogs may
// re-render, and where its dot is (-1 for none).
func numeric[V ~string | ~[]byte](v V) (dot int, ok bool) {
	if len(v) == 0 || len(v) > maxNumberLen {
		return 0, false
	}
	i := 0
	if v[0] == '-' {
		i = 1
	}
	dot, digits := -1, 0
	for ; i < len(v); i++ {
		switch ch := v[i]; {
		case ch >= '0' && ch <= '9':
			digits++
		case ch == '_':
		case ch == '.' && dot < 0:
			dot = i
		default:
			return 0, false
		}
	}
	return dot, digits > 0
}

func normalizeNumber[V ~string | ~[]byte](dst []byte, v V, dot int) []byte {
	for i := 0; i < len(v); i++ {
		if v[i] != '_' {
			dst = append(dst, v[i])
		}
	}
	if dot < 0 {
		return dst
	}
	f, err := strconv.ParseFloat(string(dst), 64)
	if err != nil || math.IsInf(f, 0) {
		return dst
	}
	return strconv.AppendFloat(dst[:0], f, 'g', floatDigits, 64)
}
