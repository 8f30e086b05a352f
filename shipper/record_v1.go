package shipper

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"

	"github.com/connaudit/connaudit/shipper/otlp"
	"github.com/connaudit/connaudit/trail"
)

// Version 1 of the spool payload, which agents before encode-once wrote: a
// compact encoding, decoded at export. It is read only to drain a spool
// such an agent left (convertV1).
//
//	version   u8 (1)
//	seq       u64 little endian
//	timestamp i64 little endian, unix nanoseconds
//	observed  i64 little endian, unix nanoseconds
//	severity  u8
//	event     str
//	body      str
//	resource  str (an attribute list)
//	attrs     attribute list, to the end of the payload
//
// str is a uvarint length and bytes. An attribute list is a sequence of
// (key str, kind u8, value) with value str, zigzag varint, float64 bits or
// bool byte. The ledger added connaudit.chain as the last attribute; the
// exporter added connaudit.seq.
const (
	v1Version    = 1
	v1HeaderSize = 1 + 8 + 8 + 8 + 1
)

const (
	v1String = 1
	v1Int    = 2
	v1Float  = 3
	v1Bool   = 4
)

var errTruncated = errors.New("truncated record")

// decodeV1 parses a version 1 payload. Its seq is in r.Seq, not among
// its attributes.
func decodeV1(payload []byte, r *Record) error {
	if len(payload) < v1HeaderSize {
		return errTruncated
	}
	le := binary.LittleEndian
	*r = Record{
		Seq:       le.Uint64(payload[seqOffset:]),
		Timestamp: time.Unix(0, int64(le.Uint64(payload[9:]))),
		Observed:  time.Unix(0, int64(le.Uint64(payload[17:]))),
		Severity:  log.Severity(payload[25]),
	}
	d := v1Decoder{b: payload[v1HeaderSize:]}
	r.EventName, r.Body = d.str(), d.str()
	res := d.bytes()
	if d.err != nil {
		return d.err
	}
	var err error
	if r.Resource, err = (&v1Decoder{b: res}).attrs(nil); err != nil {
		return fmt.Errorf("resource: %w", err)
	}
	if r.Attrs, err = d.attrs(nil); err != nil {
		return err
	}
	return nil
}

type v1Decoder struct {
	b   []byte
	err error
}

func (d *v1Decoder) attrs(dst []attribute.KeyValue) ([]attribute.KeyValue, error) {
	for len(d.b) > 0 && d.err == nil {
		key := d.str()
		switch kind := d.byte(); kind {
		case v1String:
			dst = append(dst, attribute.String(key, d.str()))
		case v1Int:
			dst = append(dst, attribute.Int64(key, d.varint()))
		case v1Float:
			dst = append(dst, attribute.Float64(key, math.Float64frombits(d.u64())))
		case v1Bool:
			dst = append(dst, attribute.Bool(key, d.byte() != 0))
		default:
			if d.err == nil {
				d.err = fmt.Errorf("attribute %q: unknown kind %d", key, kind)
			}
		}
	}
	return dst, d.err
}

func (d *v1Decoder) bytes() []byte {
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
func (d *v1Decoder) str() string { return text(string(d.bytes())) }

func (d *v1Decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *v1Decoder) varint() int64 {
	v, w := binary.Varint(d.b)
	if w <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[w:]
	return v
}

func (d *v1Decoder) u64() uint64 {
	if len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *v1Decoder) fail() {
	if d.err == nil {
		d.err = errTruncated
	}
	d.b = nil
}

// v1Converter emits version 1 payloads again, through the SDK, as version 2
// ones with the same content and seq: a spool an older agent left drains
// after an upgrade, with its records' chain values intact.
type v1Converter struct {
	enc       Encoder
	rec       Record
	resources map[string]*Resource
}

// convert returns p as a version 2 payload of its own.
func (c *v1Converter) convert(p []byte) ([]byte, error) {
	r := &c.rec
	if err := decodeV1(p, r); err != nil {
		return nil, err
	}
	key := string(otlp.AppendResource(nil, r.Resource))
	res, ok := c.resources[key]
	if !ok {
		if c.resources == nil || len(c.resources) >= 1024 {
			c.resources = make(map[string]*Resource)
		}
		res = newResource(r.Resource)
		c.resources[key] = res
	}
	c.enc.Reset(trail.Event(r.EventName), r.Timestamp, r.Observed, r.Severity, []byte(r.Body), res)
	c.enc.Append(r.Attrs...)
	return appendSeq(bytes.Clone(c.enc.Finish().Payload()), r.Seq), nil
}
