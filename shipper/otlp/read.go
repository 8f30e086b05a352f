package otlp

import (
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Reading encoded records back, for tests and tools: the agent encodes its
// records once and never reads them.

// ValueKind is the kind of an AnyValue this package reads.
type ValueKind uint8

const (
	KindEmpty ValueKind = iota
	KindString
	KindInt
	KindDouble
	KindBool
	KindOther // bytes, arrays and maps: connaudit writes none
)

// Value is a scalar AnyValue as read from the wire; Str aliases the input.
type Value struct {
	Kind   ValueKind
	Str    []byte
	Int    int64
	Double float64
	Bool   bool
}

// LogRecordHead is what ReadLogRecord reads of a LogRecord besides its
// attributes. Byte slices alias the input.
type LogRecordHead struct {
	Time, Observed uint64 // unix nanoseconds
	Severity       int64
	SeverityText   []byte
	EventName      []byte
	Body           Value
}

var errMalformed = errors.New("malformed protobuf")

// field is one field of a message: a varint or fixed value in n, or the
// bytes of a length-delimited one in b.
type field struct {
	num protowire.Number
	typ protowire.Type
	n   uint64
	b   []byte
}

// eachField calls fn for each field of the message m, in order.
func eachField(m []byte, fn func(f field) error) error {
	for len(m) > 0 {
		num, typ, n := protowire.ConsumeTag(m)
		if n < 0 {
			return errMalformed
		}
		m = m[n:]
		f := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.n, n = protowire.ConsumeVarint(m)
		case protowire.Fixed64Type:
			f.n, n = protowire.ConsumeFixed64(m)
		case protowire.BytesType:
			f.b, n = protowire.ConsumeBytes(m)
		default:
			n = protowire.ConsumeFieldValue(num, typ, m)
		}
		if n < 0 {
			return errMalformed
		}
		m = m[n:]
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

// ReadLogRecord reads the content of an encoded LogRecord into h and calls
// attr, unless nil, for each attribute, in order.
func ReadLogRecord(b []byte, h *LogRecordHead, attr func(key []byte, v Value) error) error {
	*h = LogRecordHead{}
	return eachField(b, func(f field) error {
		switch {
		case f.num == logTime && f.typ == protowire.Fixed64Type:
			h.Time = f.n
		case f.num == logObservedTime && f.typ == protowire.Fixed64Type:
			h.Observed = f.n
		case f.num == logSeverityNumber && f.typ == protowire.VarintType:
			h.Severity = int64(f.n)
		case f.num == logSeverityText && f.typ == protowire.BytesType:
			h.SeverityText = f.b
		case f.num == logEventName && f.typ == protowire.BytesType:
			h.EventName = f.b
		case f.num == logBody && f.typ == protowire.BytesType:
			if err := readValue(f.b, &h.Body); err != nil {
				return fmt.Errorf("body: %w", err)
			}
		case f.num == logAttributes && f.typ == protowire.BytesType && attr != nil:
			return readKeyValue(f.b, attr)
		}
		return nil
	})
}

// ReadResource calls attr for each attribute of an encoded Resource's content.
func ReadResource(b []byte, attr func(key []byte, v Value) error) error {
	return eachField(b, func(f field) error {
		if f.num == resourceAttributes && f.typ == protowire.BytesType {
			if err := readKeyValue(f.b, attr); err != nil {
				return fmt.Errorf("resource: %w", err)
			}
		}
		return nil
	})
}

func readKeyValue(b []byte, attr func(key []byte, v Value) error) error {
	var key []byte
	var v Value
	err := eachField(b, func(f field) error {
		switch {
		case f.num == keyValueKey && f.typ == protowire.BytesType:
			key = f.b
		case f.num == keyValueValue && f.typ == protowire.BytesType:
			if err := readValue(f.b, &v); err != nil {
				return fmt.Errorf("attribute %q: %w", key, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return attr(key, v)
}

func readValue(b []byte, v *Value) error {
	*v = Value{}
	return eachField(b, func(f field) error {
		switch {
		case f.num == anyString && f.typ == protowire.BytesType:
			v.Kind, v.Str = KindString, f.b
		case f.num == anyInt && f.typ == protowire.VarintType:
			v.Kind, v.Int = KindInt, int64(f.n)
		case f.num == anyDouble && f.typ == protowire.Fixed64Type:
			v.Kind, v.Double = KindDouble, math.Float64frombits(f.n)
		case f.num == anyBool && f.typ == protowire.VarintType:
			v.Kind, v.Bool = KindBool, f.n != 0
		default:
			v.Kind = KindOther
		}
		return nil
	})
}
