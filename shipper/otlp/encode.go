// Package otlp writes SDK log records in the OTLP protobuf wire format, one
// record at a time and straight into buffers it reuses (RecordEncoder),
// frames encoded records into export requests without decoding them
// (Framer), and sends those over OTLP/HTTP or OTLP/gRPC, configured by the
// standard OTEL_EXPORTER_OTLP_* variables. At the agent's rates, the SDK
// exporters' intermediate structs and reflective marshalling were most of
// its CPU.
package otlp

import (
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of opentelemetry-proto's collector/logs/v1, logs/v1,
// resource/v1 and common/v1 messages.
const (
	requestResourceLogs = 1

	resourceLogsResource  = 1
	resourceLogsScopeLogs = 2
	resourceLogsSchemaURL = 3

	resourceAttributes = 1

	scopeLogsScope      = 1
	scopeLogsLogRecords = 2
	scopeLogsSchemaURL  = 3

	scopeName       = 1
	scopeVersion    = 2
	scopeAttributes = 3

	logTime              = 1
	logSeverityNumber    = 2
	logSeverityText      = 3
	logBody              = 5
	logAttributes        = 6
	logDroppedAttributes = 7
	logFlags             = 8
	logTraceID           = 9
	logSpanID            = 10
	logObservedTime      = 11
	logEventName         = 12

	keyValueKey   = 1
	keyValueValue = 2

	anyString = 1
	anyBool   = 2
	anyInt    = 3
	anyDouble = 4
	anyArray  = 5
	anyKVList = 6
	anyBytes  = 7

	listValues = 1 // of ArrayValue and KeyValueList
)

// lengthSlot is the room left for a nested message's length before its
// size is known: five bytes hold any length up to 4 GiB.
const lengthSlot = 5

// appendKeyValue writes kv as a KeyValue message in field num.
func appendKeyValue(b []byte, num protowire.Number, kv attribute.KeyValue) []byte {
	if b, ok := appendScalarKeyValue(b, num, kv); ok {
		return b
	}
	var start int
	b, start = openMessage(b, num)
	b = appendString(b, keyValueKey, string(kv.Key))
	b = appendValue(b, keyValueValue, kv.Value)
	return closeMessage(b, start)
}

// appendScalarKeyValue writes kv, when its key and value are valid scalars,
// as every attribute of connaudit's records is, with the lengths of both
// nested messages computed first: nothing is moved into place afterwards.
func appendScalarKeyValue(b []byte, num protowire.Number, kv attribute.KeyValue) ([]byte, bool) {
	key := string(kv.Key)
	v := kv.Value
	var anySize int
	switch v.Type() {
	case attribute.STRING:
		if !utf8.ValidString(v.AsString()) {
			return b, false
		}
		anySize = 1 + protowire.SizeBytes(len(v.AsString()))
	case attribute.INT64:
		anySize = 1 + protowire.SizeVarint(uint64(v.AsInt64()))
	case attribute.BOOL:
		anySize = 2
	case attribute.FLOAT64:
		anySize = 1 + 8
	default:
		return b, false
	}
	if !utf8.ValidString(key) {
		return b, false
	}
	size := 1 + protowire.SizeBytes(anySize)
	if key != "" {
		size += 1 + protowire.SizeBytes(len(key))
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	if key != "" {
		b = protowire.AppendTag(b, keyValueKey, protowire.BytesType)
		b = protowire.AppendString(b, key)
	}
	b = protowire.AppendTag(b, keyValueValue, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(anySize))
	return appendScalar(b, v), true
}

// appendScalar writes the content of an AnyValue holding a string (valid
// UTF-8), integer, boolean or double.
func appendScalar(b []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.STRING:
		b = protowire.AppendTag(b, anyString, protowire.BytesType)
		b = protowire.AppendString(b, v.AsString())
	case attribute.INT64:
		b = protowire.AppendTag(b, anyInt, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(v.AsInt64()))
	case attribute.BOOL:
		b = protowire.AppendTag(b, anyBool, protowire.VarintType)
		b = protowire.AppendVarint(b, protowire.EncodeBool(v.AsBool()))
	case attribute.FLOAT64:
		b = protowire.AppendTag(b, anyDouble, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(v.AsFloat64()))
	}
	return b
}

// appendValue writes v as an AnyValue message in field num. An empty value is
// an AnyValue with no value set, as the SDK's exporters send it.
func appendValue(b []byte, num protowire.Number, v attribute.Value) []byte {
	var start int
	b, start = openMessage(b, num)
	switch v.Type() {
	case attribute.STRING:
		b = protowire.AppendTag(b, anyString, protowire.BytesType)
		b = appendValidString(b, v.AsString())
	case attribute.INT64, attribute.BOOL, attribute.FLOAT64:
		b = appendScalar(b, v)
	case attribute.BYTESLICE:
		b = protowire.AppendTag(b, anyBytes, protowire.BytesType)
		b = protowire.AppendBytes(b, v.AsByteSlice())
	case attribute.STRINGSLICE:
		b = appendArray(b, v.AsStringSlice(), attribute.StringValue)
	case attribute.INT64SLICE:
		b = appendArray(b, v.AsInt64Slice(), attribute.Int64Value)
	case attribute.BOOLSLICE:
		b = appendArray(b, v.AsBoolSlice(), attribute.BoolValue)
	case attribute.FLOAT64SLICE:
		b = appendArray(b, v.AsFloat64Slice(), attribute.Float64Value)
	case attribute.SLICE:
		b = appendArray(b, v.AsSlice(), func(e attribute.Value) attribute.Value { return e })
	case attribute.MAP:
		var l int
		b, l = openMessage(b, anyKVList)
		for _, kv := range v.AsMap() {
			b = appendKeyValue(b, listValues, kv)
		}
		b = closeMessage(b, l)
	case attribute.EMPTY:
	default:
		b = protowire.AppendTag(b, anyString, protowire.BytesType)
		b = protowire.AppendString(b, "INVALID")
	}
	return closeMessage(b, start)
}

// appendArray writes vals as the ArrayValue of an AnyValue.
func appendArray[T any](b []byte, vals []T, value func(T) attribute.Value) []byte {
	b, start := openMessage(b, anyArray)
	for _, v := range vals {
		b = appendValue(b, listValues, value(v))
	}
	return closeMessage(b, start)
}

// appendString writes a non-empty string field; proto3 leaves empty ones out.
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return appendValidString(b, s)
}

func appendValidString(b []byte, s string) []byte {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return protowire.AppendString(b, s)
}

// openMessage starts a length-delimited field whose length closeMessage
// fills in, and returns where the field's content starts.
func openMessage(b []byte, num protowire.Number) ([]byte, int) {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = append(b, make([]byte, lengthSlot)...)
	return b, len(b)
}

// closeMessage writes the length of the content that starts at start into
// the slot before it, and moves the content up against the length.
func closeMessage(b []byte, start int) []byte {
	n := uint64(len(b) - start)
	slot := start - lengthSlot
	l := 0
	for ; n >= 0x80; n >>= 7 {
		b[slot+l] = byte(n) | 0x80
		l++
	}
	b[slot+l] = byte(n)
	l++
	copy(b[slot+l:], b[start:])
	return b[:len(b)-(lengthSlot-l)]
}

func unixNano(t time.Time) uint64 {
	if n := t.UnixNano(); n > 0 {
		return uint64(n)
	}
	return 0
}

// severityNumber is the OTLP SeverityNumber of an SDK severity: the same
// numbers, 1 (TRACE) to 24 (FATAL4); anything else is UNSPECIFIED.
func severityNumber(s int) uint64 {
	if s >= 1 && s <= 24 {
		return uint64(s)
	}
	return 0
}
