package otlp

import (
	"math"

	"go.opentelemetry.io/otel/attribute"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"google.golang.org/protobuf/encoding/protowire"
)

// RecordEncoder writes one SDK log record as the content of an OTLP
// LogRecord message: the bytes a request frames as they are (Framer). It is
// not safe for concurrent use.
type RecordEncoder struct {
	buf  []byte
	walk func(attribute.KeyValue) bool // e.appendAttribute, made once: no closure per record
}

func (e *RecordEncoder) appendAttribute(kv attribute.KeyValue) bool {
	e.buf = AppendAttribute(e.buf, kv)
	return true
}

// Append appends r's LogRecord fields to b. Its resource and scope are not
// part of it: the request that frames it carries them.
func (e *RecordEncoder) Append(b []byte, r *sdklog.Record) []byte {
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
	if e.walk == nil {
		e.walk = e.appendAttribute
	}
	e.buf = b
	r.WalkAttributes(e.walk)
	b, e.buf = e.buf, nil
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
	return appendString(b, logEventName, r.EventName())
}

// AppendAttribute appends kv as one more attribute of an encoded LogRecord:
// protobuf lets a repeated field's elements follow any other field.
func AppendAttribute(b []byte, kv attribute.KeyValue) []byte {
	return appendKeyValue(b, logAttributes, kv)
}

// AppendStringAttribute is AppendAttribute for a string attribute whose
// value, valid UTF-8, is held in bytes.
func AppendStringAttribute(b []byte, key string, value []byte) []byte {
	var kv, v int
	b, kv = openMessage(b, logAttributes)
	b = appendString(b, keyValueKey, key)
	b, v = openMessage(b, keyValueValue)
	b = protowire.AppendTag(b, anyString, protowire.BytesType)
	b = protowire.AppendBytes(b, value)
	b = closeMessage(b, v)
	return closeMessage(b, kv)
}

// AppendResource appends attrs as the content of an OTLP Resource message.
func AppendResource(b []byte, attrs []attribute.KeyValue) []byte {
	for _, kv := range attrs {
		b = appendKeyValue(b, resourceAttributes, kv)
	}
	return b
}

// Framer frames encoded LogRecords into one ExportLogsServiceRequest,
// grouped by resource in order of first appearance, under one scope. It
// copies bytes and decodes nothing. It is not safe for concurrent use.
type Framer struct {
	Scope   string // instrumentation scope name
	Version string // and version

	buf    []byte
	groups []frameGroup
	byRes  map[string]int
}

type frameGroup struct {
	resource []byte
	records  [][]byte
}

// Reset starts a request.
func (f *Framer) Reset() {
	for i := range f.groups {
		f.groups[i] = frameGroup{records: f.groups[i].records[:0]}
	}
	f.groups = f.groups[:0]
	clear(f.byRes)
}

// Add adds a record (LogRecord content) of the resource (Resource content).
// Both must stay unchanged until Bytes.
func (f *Framer) Add(resource, record []byte) {
	if f.byRes == nil {
		f.byRes = make(map[string]int)
	}
	last := len(f.groups) - 1
	if last < 0 || string(f.groups[last].resource) != string(resource) {
		var ok bool
		if last, ok = f.byRes[string(resource)]; !ok {
			last = len(f.groups)
			f.byRes[string(resource)] = last
			if last < cap(f.groups) {
				f.groups = f.groups[:last+1]
				f.groups[last].resource = resource
			} else {
				f.groups = append(f.groups, frameGroup{resource: resource})
			}
		}
	}
	f.groups[last].records = append(f.groups[last].records, record)
}

// Bytes is the request of the records added since Reset; valid until the
// next Bytes.
func (f *Framer) Bytes() []byte {
	b := f.buf[:0]
	for i := range f.groups {
		g := &f.groups[i]
		var rl int
		b, rl = openMessage(b, requestResourceLogs)
		if len(g.resource) > 0 {
			b = protowire.AppendTag(b, resourceLogsResource, protowire.BytesType)
			b = protowire.AppendBytes(b, g.resource)
		}
		var sl int
		b, sl = openMessage(b, resourceLogsScopeLogs)
		if f.Scope != "" || f.Version != "" {
			var s int
			b, s = openMessage(b, scopeLogsScope)
			b = appendString(b, scopeName, f.Scope)
			b = appendString(b, scopeVersion, f.Version)
			b = closeMessage(b, s)
		}
		for _, r := range g.records {
			b = protowire.AppendTag(b, scopeLogsLogRecords, protowire.BytesType)
			b = protowire.AppendBytes(b, r)
		}
		b = closeMessage(b, sl)
		b = closeMessage(b, rl)
	}
	f.buf = b
	return b
}
