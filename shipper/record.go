package shipper

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/connaudit/connaudit/trail"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"
)

// A record is encoded once, on the hot path, and decoded only for export.
// The encoding is the spool's payload, so it must stay readable by later
// versions: bump recordVersion and keep decoding the old one.
//
//	version   u8
//	seq       u64 little endian (fixed offset: Emit stamps it)
//	timestamp i64 little endian, unix nanoseconds
//	observed  i64 little endian, unix nanoseconds
//	severity  u8
//	event     str
//	body      str
//	resource  str (an encoded attribute list; records that share it share an OTLP resource)
//	attrs     attribute list, to the end of the payload
//
// str is a uvarint length and bytes. An attribute list is a sequence of
// (key str, kind u8, value) with value str, zigzag varint, float64 bits or bool byte.
const (
	recordVersion = 1
	seqOffset     = 1
	headerSize    = 1 + 8 + 8 + 8 + 1
)

const (
	kindString = 1
	kindInt    = 2
	kindFloat  = 3
	kindBool   = 4
)

// AttrList encodes a list of attributes without allocating once its buffer has grown.
type AttrList struct{ buf []byte }

// Bytes is the encoding; valid until the next change.
func (e *AttrList) Bytes() []byte { return e.buf }

// Reset empties the list.
func (e *AttrList) Reset() { e.buf = e.buf[:0] }

// Encoder builds one record: a header, then its attributes.
type Encoder struct{ AttrList }

// Reset starts a record. The resource is an encoded AttrList; Emit stamps the
// sequence number.
func (e *Encoder) Reset(event trail.Event, ts, observed time.Time, sev log.Severity, body, resource []byte) {
	e.buf = append(e.buf[:0], recordVersion)
	e.buf = binary.LittleEndian.AppendUint64(e.buf, 0)
	e.buf = binary.LittleEndian.AppendUint64(e.buf, uint64(ts.UnixNano()))
	e.buf = binary.LittleEndian.AppendUint64(e.buf, uint64(observed.UnixNano()))
	e.buf = append(e.buf, byte(sev))
	e.buf = appendText(e.buf, string(event))
	e.buf = appendTextBytes(e.buf, body)
	e.buf = appendBytes(e.buf, resource)
}

func (e *AttrList) String(key trail.Key, v string) {
	e.buf = appendText(e.buf, string(key))
	e.buf = append(e.buf, kindString)
	e.buf = appendText(e.buf, v)
}

// StringBytes is String for a value held in a byte slice.
func (e *AttrList) StringBytes(key trail.Key, v []byte) {
	e.buf = appendText(e.buf, string(key))
	e.buf = append(e.buf, kindString)
	e.buf = appendTextBytes(e.buf, v)
}

func (e *AttrList) Int(key trail.Key, v int64) {
	e.buf = appendText(e.buf, string(key))
	e.buf = append(e.buf, kindInt)
	e.buf = binary.AppendVarint(e.buf, v)
}

func (e *AttrList) Float(key trail.Key, v float64) {
	e.buf = appendText(e.buf, string(key))
	e.buf = append(e.buf, kindFloat)
	e.buf = binary.LittleEndian.AppendUint64(e.buf, math.Float64bits(v))
}

func (e *AttrList) Bool(key trail.Key, v bool) {
	e.buf = appendText(e.buf, string(key))
	e.buf = append(e.buf, kindBool)
	b := byte(0)
	if v {
		b = 1
	}
	e.buf = append(e.buf, b)
}

// Raw appends an already encoded attribute list.
func (e *AttrList) Raw(attrs []byte) { e.buf = append(e.buf, attrs...) }

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// Record is a decoded record, ready to become an OTLP log record.
type Record struct {
	Seq       uint64
	Timestamp time.Time
	Observed  time.Time
	Severity  log.Severity
	EventName string
	Body      string
	Resource  []byte // encoded attribute list; aliases the payload
	Attrs     []attribute.KeyValue
}

var errTruncated = errors.New("truncated record")

// Decode parses a payload. Attrs is appended to r.Attrs[:0] to reuse its storage.
func Decode(payload []byte, r *Record) error { return decodeRecord(payload, r, nil) }

// decodeRecord is Decode, taking the strings that repeat from record to
// record (keys, enum values, names) from in when it is not nil.
func decodeRecord(payload []byte, r *Record, in *interner) error {
	if len(payload) < headerSize {
		return errTruncated
	}
	if payload[0] != recordVersion {
		return fmt.Errorf("record version %d is not supported by this agent (it reads version %d)", payload[0], recordVersion)
	}
	le := binary.LittleEndian
	r.Seq = le.Uint64(payload[seqOffset:])
	r.Timestamp = time.Unix(0, int64(le.Uint64(payload[9:])))
	r.Observed = time.Unix(0, int64(le.Uint64(payload[17:])))
	r.Severity = log.Severity(payload[25])
	d := decoder{b: payload[headerSize:], in: in}
	r.EventName = d.shortStr()
	r.Body = d.str()
	r.Resource = d.bytes()
	if d.err != nil {
		return d.err
	}
	var err error
	r.Attrs, err = d.attrs(r.Attrs[:0])
	return err
}

// DecodeAttrs appends the attributes of an encoded list to dst.
func DecodeAttrs(b []byte, dst []attribute.KeyValue) ([]attribute.KeyValue, error) {
	d := decoder{b: b}
	return d.attrs(dst)
}

func (d *decoder) attrs(dst []attribute.KeyValue) ([]attribute.KeyValue, error) {
	for len(d.b) > 0 && d.err == nil {
		key := d.shortStr()
		kind := d.byte()
		switch kind {
		case kindString:
			dst = append(dst, attribute.String(key, d.shortStr()))
		case kindInt:
			dst = append(dst, attribute.Int64(key, d.varint()))
		case kindFloat:
			dst = append(dst, attribute.Float64(key, math.Float64frombits(d.u64())))
		case kindBool:
			dst = append(dst, attribute.Bool(key, d.byte() != 0))
		default:
			if d.err == nil {
				d.err = fmt.Errorf("attribute %q: unknown kind %d", key, kind)
			}
		}
	}
	return dst, d.err
}

type decoder struct {
	b   []byte
	err error
	in  *interner // may be nil
}

// interner hands out one string per distinct short byte string, so that
// decoding a batch does not allocate the same keys and values again for
// every record. It holds at most internMax strings and starts over when full.
type interner struct{ strs map[string]string }

const (
	internMax = 4096
	internLen = 64 // longer strings (bodies, most paths) rarely repeat
)

func (in *interner) str(b []byte) string {
	if s, ok := in.strs[string(b)]; ok {
		return s
	}
	s := string(b)
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, replacementChar)
	}
	if in.strs == nil || len(in.strs) >= internMax {
		in.strs = make(map[string]string, 256)
	}
	in.strs[string(b)] = s
	return s
}

// shortStr is str for a string that is likely to repeat.
func (d *decoder) shortStr() string {
	if d.in == nil {
		return d.str()
	}
	b := d.bytes()
	if len(b) > internLen {
		return validString(b)
	}
	return d.in.str(b)
}

func (d *decoder) bytes() []byte {
	n, w := binary.Uvarint(d.b)
	if w <= 0 || n > uint64(len(d.b)-w) {
		d.fail()
		return nil
	}
	v := d.b[w : w+int(n)]
	d.b = d.b[w+int(n):]
	return v
}

// str decodes a string, made valid UTF-8: a spool written by an agent that
// did not sanitize must still drain, and protobuf refuses invalid UTF-8.
func (d *decoder) str() string { return validString(d.bytes()) }

func validString(b []byte) string {
	if !utf8.Valid(b) {
		return strings.ToValidUTF8(string(b), replacementChar)
	}
	return string(b)
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) varint() int64 {
	v, w := binary.Varint(d.b)
	if w <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[w:]
	return v
}

func (d *decoder) u64() uint64 {
	if len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errTruncated
	}
	d.b = nil
}

func stampSeq(payload []byte, seq uint64) {
	binary.LittleEndian.PutUint64(payload[seqOffset:], seq)
}

// payloadSeq is the seq Emit stamped, at a fixed offset in every version; 0
// when the payload is too short to hold one.
func payloadSeq(payload []byte) uint64 {
	if len(payload) < seqOffset+8 {
		return 0
	}
	return binary.LittleEndian.Uint64(payload[seqOffset:])
}

// recordObserved is when the agent read the record's event; the zero time
// when the payload is not a record this version reads.
func recordObserved(payload []byte) time.Time {
	if len(payload) < headerSize || payload[0] != recordVersion {
		return time.Time{}
	}
	return time.Unix(0, int64(binary.LittleEndian.Uint64(payload[17:])))
}

func recordTime(payload []byte) time.Time {
	return time.Unix(0, int64(binary.LittleEndian.Uint64(payload[seqOffset+8:])))
}
