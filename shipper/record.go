package shipper

import (
	"context"
	"encoding/binary"
	"fmt"
	"sort"
	"sync"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/connaudit/connaudit/shipper/otlp"
	"github.com/connaudit/connaudit/trail"
	"github.com/connaudit/connaudit/trail/chain"
)

// A record is emitted through the OpenTelemetry Logs SDK once, on the hot
// path, and its processor (spoolProcessor) encodes it as OTLP into the
// spool payload; export frames spooled payloads into requests without
// decoding them. The payload must stay readable by later versions: bump
// recordVersion and keep reading the old one (record_v1.go).
//
//	version   u8 (2)
//	seq       u64 little endian (fixed offset: the ledger stamps it)
//	timestamp i64 little endian, unix nanoseconds
//	observed  i64 little endian, unix nanoseconds
//	resource  uvarint length, then the content of an OTLP Resource message
//	record    the content of an OTLP LogRecord message, to the end
//
// The ledger appends connaudit.seq and connaudit.chain to the record as its
// last attributes.
const (
	recordVersion = 2
	seqOffset     = 1
	headerSize    = 1 + 8 + 8 + 8
)

// scopeName is the instrumentation scope of every record.
const scopeName = "github.com/connaudit/connaudit"

// AttrList builds a record's attributes. Every string is bounded and made
// valid UTF-8 (SanitizeText) as it is added.
type AttrList struct{ kvs []attribute.KeyValue }

// KeyValues are the attributes added since Reset; valid until the next change.
func (l *AttrList) KeyValues() []attribute.KeyValue { return l.kvs }

// Reset empties the list.
func (l *AttrList) Reset() { l.kvs = l.kvs[:0] }

func (l *AttrList) String(key trail.Key, v string) {
	l.kvs = append(l.kvs, attribute.String(string(key), text(v)))
}

// StringBytes is String for a value held in a byte slice.
func (l *AttrList) StringBytes(key trail.Key, v []byte) { l.String(key, string(v)) }

func (l *AttrList) Int(key trail.Key, v int64) {
	l.kvs = append(l.kvs, attribute.Int64(string(key), v))
}

func (l *AttrList) Float(key trail.Key, v float64) {
	l.kvs = append(l.kvs, attribute.Float64(string(key), v))
}

func (l *AttrList) Bool(key trail.Key, v bool) { l.kvs = append(l.kvs, attribute.Bool(string(key), v)) }

// Append adds attributes that an AttrList built (so already bounded and valid).
func (l *AttrList) Append(kvs ...attribute.KeyValue) { l.kvs = append(l.kvs, kvs...) }

// Value adds an attribute of any type under a key from outside (a label,
// say), both bounded and made valid; slices are written as their JSON-like
// text.
func (l *AttrList) Value(key string, v attribute.Value) {
	k := text(key)
	switch v.Type() {
	case attribute.BOOL:
		l.kvs = append(l.kvs, attribute.Bool(k, v.AsBool()))
	case attribute.INT64:
		l.kvs = append(l.kvs, attribute.Int64(k, v.AsInt64()))
	case attribute.FLOAT64:
		l.kvs = append(l.kvs, attribute.Float64(k, v.AsFloat64()))
	default:
		l.kvs = append(l.kvs, attribute.String(k, text(v.Emit())))
	}
}

// KeyValues is kvs as an AttrList adds them: bounded and valid, in order.
func KeyValues(kvs []attribute.KeyValue) []attribute.KeyValue {
	var l AttrList
	for _, kv := range kvs {
		l.Value(string(kv.Key), kv.Value)
	}
	return l.kvs
}

// Resource is the OTLP resource of records, with its encoding, its
// attributes' canonical form and the SDK LoggerProvider that emits its
// records, made on first use.
type Resource struct {
	attrs   []attribute.KeyValue
	encoded []byte // content of an OTLP Resource message
	canon   chain.Fragment
	once    sync.Once
	logger  log.Logger
}

// NewResource is the resource of a set of attributes, in key order, so that
// equal sets encode equally.
func NewResource(attrs map[attribute.Key]attribute.Value) *Resource {
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	var l AttrList
	for _, k := range keys {
		l.Value(k, attrs[attribute.Key(k)])
	}
	return newResource(l.kvs)
}

func newResource(kvs []attribute.KeyValue) *Resource {
	var c chain.Canon
	c.Reset("", 0, 0, "")
	for _, kv := range kvs {
		addCanon(&c, kv)
	}
	return &Resource{attrs: kvs, encoded: otlp.AppendResource(nil, kvs), canon: c.Fragment()}
}

// addCanon adds an attribute to a record's canonical form, typed as it is
// sent. An AttrList holds no other types.
func addCanon(c *chain.Canon, kv attribute.KeyValue) {
	switch kv.Value.Type() {
	case attribute.INT64:
		c.Int(string(kv.Key), kv.Value.AsInt64())
	case attribute.FLOAT64:
		c.Float(string(kv.Key), kv.Value.AsFloat64())
	case attribute.BOOL:
		c.Bool(string(kv.Key), kv.Value.AsBool())
	default:
		c.String(string(kv.Key), kv.Value.AsString())
	}
}

// Attributes are the resource's attributes.
func (r *Resource) Attributes() []attribute.KeyValue { return r.attrs }

func (r *Resource) sdkLogger() log.Logger {
	r.once.Do(func() {
		p := sdklog.NewLoggerProvider(
			sdklog.WithResource(resource.NewSchemaless(r.attrs...)),
			sdklog.WithProcessor(spoolProcessor{}),
			sdklog.WithAttributeCountLimit(-1),
			// Records are built with unique keys; the SDK's dedup would build a map per record.
			sdklog.WithAllowKeyDuplication(),
		)
		r.logger = p.Logger(scopeName)
	})
	return r.logger
}

// Encoder builds one record at a time: Reset, attributes, then Finish emits
// it through the SDK, which encodes its payload; the ledger then stamps its
// seq and chain value (Ledger.Emit).
type Encoder struct {
	AttrList
	event    trail.Event
	ts       time.Time
	observed time.Time
	sev      log.Severity
	body     []byte
	res      *Resource

	ctx     context.Context // carries the encoder to spoolProcessor
	record  otlp.RecordEncoder
	payload []byte
	canon   chain.Canon // of the payload, all but its seq
}

// noResource is the resource of records built with none.
var noResource = newResource(nil)

// Reset starts a record of res (nil: no resource attributes); the ledger
// stamps its sequence number.
func (e *Encoder) Reset(event trail.Event, ts, observed time.Time, sev log.Severity, body []byte, res *Resource) {
	if res == nil {
		res = noResource
	}
	e.AttrList.Reset()
	e.event, e.ts, e.observed, e.sev, e.res = event, ts, observed, sev, res
	e.body = append(e.body[:0], body...)
}

type encoderKey struct{}

// Finish emits the record through the SDK, which encodes it.
func (e *Encoder) Finish() *Encoder {
	if e.ctx == nil {
		e.ctx = context.WithValue(context.Background(), encoderKey{}, e)
	}
	var r log.Record
	r.SetEventName(string(e.event))
	r.SetTimestamp(e.ts)
	r.SetObservedTimestamp(e.observed)
	r.SetSeverity(e.sev)
	r.SetSeverityText(severityText(e.sev))
	r.SetBody(attribute.StringValue(text(string(e.body))))
	e.payload = e.payload[:0]
	e.res.sdkLogger().Emit(e.ctx, r)
	return e
}

// Payload is the record's spool payload once finished: stamped with its seq
// and chain value once the ledger has emitted it. Valid until the next Reset.
func (e *Encoder) Payload() []byte { return e.payload }

// spoolProcessor is the SDK processor that encodes each emitted record,
// once, into the payload of the Encoder that emitted it. The export loop
// exports the spool itself: the SDK's BatchProcessor would drop records
// silently.
type spoolProcessor struct{}

func (spoolProcessor) OnEmit(ctx context.Context, r *sdklog.Record) error {
	e, ok := ctx.Value(encoderKey{}).(*Encoder)
	if !ok {
		return fmt.Errorf("a record emitted outside shipper.Encoder: %q", r.EventName())
	}
	// The SDK record carries the attributes like any other; set here, they
	// are copied once rather than twice (log.Record, then the SDK's).
	r.SetAttributes(e.kvs...)
	b := append(e.payload[:0], recordVersion)
	b = binary.LittleEndian.AppendUint64(b, 0)
	b = binary.LittleEndian.AppendUint64(b, uint64(r.Timestamp().UnixNano()))
	b = binary.LittleEndian.AppendUint64(b, uint64(r.ObservedTimestamp().UnixNano()))
	b = protowire.AppendBytes(b, e.res.encoded)
	e.payload = e.record.Append(b, r)
	e.canonical(r.EventName(), r.Timestamp().UnixNano(), int64(r.Severity()), r.Body().AsString())
	return nil
}

// canonical builds the canonical form of the record just encoded, from the
// values it was encoded from (TestCanonOfValuesIsCanonOfBytes holds the two
// together), so that chaining it parses nothing. Its seq is added by the
// ledger.
func (e *Encoder) canonical(event string, unixNano, severity int64, body string) {
	e.canon.Reset(event, unixNano, severity, body)
	e.canon.Add(e.res.canon)
	for _, kv := range e.kvs {
		addCanon(&e.canon, kv)
	}
}
func (spoolProcessor) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }
func (spoolProcessor) Shutdown(context.Context) error                         { return nil }
func (spoolProcessor) ForceFlush(context.Context) error                       { return nil }

func severityText(s log.Severity) string {
	switch {
	case s >= log.SeverityError:
		return "ERROR"
	case s >= log.SeverityWarn:
		return "WARN"
	default:
		return "INFO"
	}
}

// text is s bounded and valid (SanitizeText), without a copy when it already is.
func text(s string) string {
	if len(s) <= MaxTextBytes && utf8.ValidString(s) {
		return s
	}
	return SanitizeText(s)
}

// splitPayload is a version 2 payload's resource and record.
func splitPayload(p []byte) (res, rec []byte, err error) {
	if len(p) < headerSize {
		return nil, nil, errTruncated
	}
	if p[0] != recordVersion {
		return nil, nil, fmt.Errorf("record version %d is not supported by this agent (it reads versions %d and %d)", p[0], v1Version, recordVersion)
	}
	res, n := protowire.ConsumeBytes(p[headerSize:])
	if n < 0 {
		return nil, nil, errTruncated
	}
	return res, p[headerSize+n:], nil
}

// appendSeq stamps seq into a payload and appends it as the record's
// connaudit.seq attribute.
func appendSeq(payload []byte, seq uint64) []byte {
	binary.LittleEndian.PutUint64(payload[seqOffset:], seq)
	return otlp.AppendAttribute(payload, attribute.Int64(string(trail.KeySeq), int64(seq)))
}

// payloadSeq is the seq the ledger stamped, at a fixed offset in every
// version; 0 when the payload is too short to hold one.
func payloadSeq(payload []byte) uint64 {
	if len(payload) < seqOffset+8 {
		return 0
	}
	return binary.LittleEndian.Uint64(payload[seqOffset:])
}

// recordObserved is when the agent read the record's event; the zero time
// when the payload is not a record this version reads.
func recordObserved(payload []byte) time.Time {
	if len(payload) < headerSize || (payload[0] != recordVersion && payload[0] != v1Version) {
		return time.Time{}
	}
	return time.Unix(0, int64(binary.LittleEndian.Uint64(payload[17:])))
}

// Record is a decoded record, for tests and tools: the export loop never
// decodes one.
type Record struct {
	Seq       uint64
	Timestamp time.Time
	Observed  time.Time
	Severity  log.Severity
	EventName string
	Body      string
	Resource  []attribute.KeyValue
	Attrs     []attribute.KeyValue // connaudit.seq and connaudit.chain included when stamped
}

// Decode parses a payload of either version.
func Decode(payload []byte, r *Record) error {
	if len(payload) > 0 && payload[0] == v1Version {
		return decodeV1(payload, r)
	}
	res, rec, err := splitPayload(payload)
	if err != nil {
		return err
	}
	*r = Record{Seq: payloadSeq(payload)}
	if err := otlp.ReadResource(res, func(k []byte, v otlp.Value) error {
		r.Resource = append(r.Resource, keyValue(k, v))
		return nil
	}); err != nil {
		return err
	}
	var h otlp.LogRecordHead
	if err := otlp.ReadLogRecord(rec, &h, func(k []byte, v otlp.Value) error {
		r.Attrs = append(r.Attrs, keyValue(k, v))
		return nil
	}); err != nil {
		return err
	}
	r.Timestamp, r.Observed = time.Unix(0, int64(h.Time)), time.Unix(0, int64(h.Observed))
	r.Severity, r.EventName, r.Body = log.Severity(h.Severity), string(h.EventName), string(h.Body.Str)
	return nil
}

func keyValue(k []byte, v otlp.Value) attribute.KeyValue {
	switch v.Kind {
	case otlp.KindInt:
		return attribute.Int64(string(k), v.Int)
	case otlp.KindDouble:
		return attribute.Float64(string(k), v.Double)
	case otlp.KindBool:
		return attribute.Bool(string(k), v.Bool)
	default:
		return attribute.String(string(k), string(v.Str))
	}
}
