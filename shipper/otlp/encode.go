// Package otlp exports SDK log records as OTLP/HTTP protobuf, configured by
// the standard OTEL_EXPORTER_OTLP_* variables like the SDK's otlploghttp.
// Unlike otlploghttp it writes the wire format straight from the records,
// into buffers it reuses, with no intermediate protobuf structs: at the
// agent's rates that transform and reflective marshalling were most of the
// agent's CPU.
package otlp

import (
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
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

// Encoder writes ExportLogsServiceRequest messages. Its buffers are reused
// from one Encode to the next; it is not safe for concurrent use.
type Encoder struct {
	buf       []byte
	walk      func(attribute.KeyValue) bool // e.appendAttribute
	resources []resourceGroup
	byRes     map[*resource.Resource]int
}

// appendAttribute is the WalkAttributes callback of log records; a method
// value made once, it writes to buf without allocating a closure per record.
func (e *Encoder) appendAttribute(kv attribute.KeyValue) bool {
	e.buf = appendKeyValue(e.buf, logAttributes, kv)
	return true
}

type resourceGroup struct {
	res    *resource.Resource
	scopes []scopeGroup
}

type scopeGroup struct {
	scope instrumentation.Scope
	recs  []int
}

// Encode returns recs as the protobuf encoding of one
// ExportLogsServiceRequest, grouped by resource and scope in order of first
// appearance. The result is valid until the next Encode. Strings that are not
// valid UTF-8 are sent with U+FFFD in place of the bad bytes, as protobuf
// requires valid strings.
func (e *Encoder) Encode(recs []sdklog.Record) []byte {
	e.group(recs)
	b := e.buf[:0]
	for i := range e.resources {
		g := &e.resources[i]
		var rl int
		b, rl = openMessage(b, requestResourceLogs)
		if g.res.Len() > 0 {
			var r int
			b, r = openMessage(b, resourceLogsResource)
			for it := g.res.Iter(); it.Next(); {
				b = appendKeyValue(b, resourceAttributes, it.Attribute())
			}
			b = closeMessage(b, r)
		}
		for j := range g.scopes {
			s := &g.scopes[j]
			var sl int
			b, sl = openMessage(b, resourceLogsScopeLogs)
			if s.scope != (instrumentation.Scope{}) {
				b = appendScope(b, s.scope)
			}
			for _, k := range s.recs {
				b = e.appendLogRecord(b, &recs[k])
			}
			b = appendString(b, scopeLogsSchemaURL, s.scope.SchemaURL)
			b = closeMessage(b, sl)
		}
		b = appendString(b, resourceLogsSchemaURL, g.res.SchemaURL())
		b = closeMessage(b, rl)
	}
	e.buf = b
	return b
}

// group sorts recs' indices by resource and scope.
func (e *Encoder) group(recs []sdklog.Record) {
	for i := range e.resources {
		e.resources[i] = resourceGroup{scopes: e.resources[i].scopes[:0]}
	}
	e.resources = e.resources[:0]
	if e.byRes == nil {
		e.byRes = make(map[*resource.Resource]int)
	}
	clear(e.byRes)
	last := -1
	for k := range recs {
		res := recs[k].Resource()
		if last < 0 || e.resources[last].res != res {
			var ok bool
			if last, ok = e.byRes[res]; !ok {
				last = len(e.resources)
				e.byRes[res] = last
				if last < cap(e.resources) {
					e.resources = e.resources[:last+1]
					e.resources[last].res = res
				} else {
					e.resources = append(e.resources, resourceGroup{res: res})
				}
			}
		}
		g := &e.resources[last]
		scope := recs[k].InstrumentationScope()
		j := 0
		for j < len(g.scopes) && g.scopes[j].scope != scope {
			j++
		}
		if j == len(g.scopes) {
			if j < cap(g.scopes) {
				g.scopes = g.scopes[:j+1]
				g.scopes[j].scope, g.scopes[j].recs = scope, g.scopes[j].recs[:0]
			} else {
				g.scopes = append(g.scopes, scopeGroup{scope: scope})
			}
		}
		g.scopes[j].recs = append(g.scopes[j].recs, k)
	}
}

func appendScope(b []byte, s instrumentation.Scope) []byte {
	var start int
	b, start = openMessage(b, scopeLogsScope)
	b = appendString(b, scopeName, s.Name)
	b = appendString(b, scopeVersion, s.Version)
	for it := s.Attributes.Iter(); it.Next(); {
		b = appendKeyValue(b, scopeAttributes, it.Attribute())
	}
	return closeMessage(b, start)
}

func (e *Encoder) appendLogRecord(b []byte, r *sdklog.Record) []byte {
	var start int
	b, start = openMessage(b, scopeLogsLogRecords)
	if t := unixNano(r.Timestamp()); t != 0 {
		b = protowire.AppendTag(b, logTime, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, t)
	}
	if n := severityNumber(int(r.Severity())); n != 0 {
		b = protowire.AppendTag(b, logSeverityNumber, protowire.VarintType)
		b = protowire.AppendVarint(b, n)
	}
	b = appendString(b, logSeverityText, r.SeverityText())
	b = appendValue(b, logBody, r.Body())
	e.buf = b
	if e.walk == nil {
		e.walk = e.appendAttribute
	}
	r.WalkAttributes(e.walk)
	b = e.buf
	if n := r.DroppedAttributes(); n > 0 {
		b = protowire.AppendTag(b, logDroppedAttributes, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(min(n, math.MaxUint32)))
	}
	if f := r.TraceFlags(); f != 0 {
		b = protowire.AppendTag(b, logFlags, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, uint32(f))
	}
	if id := r.TraceID(); id.IsValid() {
		b = protowire.AppendTag(b, logTraceID, protowire.BytesType)
		b = protowire.AppendBytes(b, id[:])
	}
	if id := r.SpanID(); id.IsValid() {
		b = protowire.AppendTag(b, logSpanID, protowire.BytesType)
		b = protowire.AppendBytes(b, id[:])
	}
	if t := unixNano(r.ObservedTimestamp()); t != 0 {
		b = protowire.AppendTag(b, logObservedTime, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, t)
	}
	b = appendString(b, logEventName, r.EventName())
	return closeMessage(b, start)
}

// appendKeyValue writes kv as a KeyValue message in field num.
func appendKeyValue(b []byte, num protowire.Number, kv attribute.KeyValue) []byte {
	var start int
	b, start = openMessage(b, num)
	b = appendString(b, keyValueKey, string(kv.Key))
	b = appendValue(b, keyValueValue, kv.Value)
	return closeMessage(b, start)
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
	case attribute.INT64:
		b = protowire.AppendTag(b, anyInt, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(v.AsInt64()))
	case attribute.BOOL:
		b = protowire.AppendTag(b, anyBool, protowire.VarintType)
		b = protowire.AppendVarint(b, protowire.EncodeBool(v.AsBool()))
	case attribute.FLOAT64:
		b = protowire.AppendTag(b, anyDouble, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(v.AsFloat64()))
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
