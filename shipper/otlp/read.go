package otlp

import (
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

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

// ReadLogRecord reads the content of an encoded LogRecord into h and calls
// attr, unless nil, for each attribute, in order. It allocates nothing.
func ReadLogRecord(b []byte, h *LogRecordHead, attr func(key []byte, v Value) error) error {
	*h = LogRecordHead{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		switch {
		case num == logTime && typ == protowire.Fixed64Type:
			h.Time, n = protowire.ConsumeFixed64(b)
		case num == logObservedTime && typ == protowire.Fixed64Type:
			h.Observed, n = protowire.ConsumeFixed64(b)
		case num == logSeverityNumber && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			h.Severity = int64(v)
		case num == logSeverityText && typ == protowire.BytesType:
			h.SeverityText, n = protowire.ConsumeBytes(b)
		case num == logEventName && typ == protowire.BytesType:
			h.EventName, n = protowire.ConsumeBytes(b)
		case num == logBody && typ == protowire.BytesType:
			var m []byte
			if m, n = protowire.ConsumeBytes(b); n >= 0 {
				if err := readValue(m, &h.Body); err != nil {
					return fmt.Errorf("body: %w", err)
				}
			}
		case num == logAttributes && typ == protowire.BytesType && attr != nil:
			var m []byte
			if m, n = protowire.ConsumeBytes(b); n >= 0 {
				if err := readKeyValue(m, attr); err != nil {
					return err
				}
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
	}
	return nil
}

// ReadResource calls attr for each attribute of an encoded Resource's content.
func ReadResource(b []byte, attr func(key []byte, v Value) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		if num == resourceAttributes && typ == protowire.BytesType {
			var m []byte
			if m, n = protowire.ConsumeBytes(b); n >= 0 {
				if err := readKeyValue(m, attr); err != nil {
					return fmt.Errorf("resource: %w", err)
				}
			}
		} else {
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
	}
	return nil
}

func readKeyValue(b []byte, attr func(key []byte, v Value) error) error {
	var key []byte
	var v Value
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		switch {
		case num == keyValueKey && typ == protowire.BytesType:
			key, n = protowire.ConsumeBytes(b)
		case num == keyValueValue && typ == protowire.BytesType:
			var m []byte
			if m, n = protowire.ConsumeBytes(b); n >= 0 {
				if err := readValue(m, &v); err != nil {
					return fmt.Errorf("attribute %q: %w", key, err)
				}
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
	}
	return attr(key, v)
}

func readValue(b []byte, v *Value) error {
	*v = Value{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		switch {
		case num == anyString && typ == protowire.BytesType:
			v.Kind = KindString
			v.Str, n = protowire.ConsumeBytes(b)
		case num == anyInt && typ == protowire.VarintType:
			var x uint64
			x, n = protowire.ConsumeVarint(b)
			v.Kind, v.Int = KindInt, int64(x)
		case num == anyDouble && typ == protowire.Fixed64Type:
			var x uint64
			x, n = protowire.ConsumeFixed64(b)
			v.Kind, v.Double = KindDouble, math.Float64frombits(x)
		case num == anyBool && typ == protowire.VarintType:
			var x uint64
			x, n = protowire.ConsumeVarint(b)
			v.Kind, v.Bool = KindBool, x != 0
		default:
			v.Kind = KindOther
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
	}
	return nil
}
