package otlp

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/trace"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// collect is a processor that keeps what it is given.
type collect struct {
	mu   sync.Mutex
	recs []sdklog.Record
}

func (c *collect) OnEmit(_ context.Context, r *sdklog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = append(c.recs, r.Clone())
	return nil
}
func (*collect) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }
func (*collect) Shutdown(context.Context) error                         { return nil }
func (*collect) ForceFlush(context.Context) error                       { return nil }

const (
	testScope   = "github.com/connaudit/connaudit"
	testVersion = "v1.2.3"
)

// variedRecords are records of every value type, from two resources (one of
// them empty), interleaved, under one scope as connaudit's records are,
// with bodies around the lengths where a varint grows.
func variedRecords(t *testing.T) []sdklog.Record {
	t.Helper()
	c := &collect{}
	pod := resource.NewSchemaless(attribute.String("k8s.pod.name", "web-0"), attribute.StringSlice("container.image.tags", []string{"1.4", "latest"}),
		attribute.Int("connaudit.pid", 42))
	loggers := []log.Logger{
		sdklog.NewLoggerProvider(sdklog.WithProcessor(c), sdklog.WithResource(pod)).Logger(testScope, log.WithInstrumentationVersion(testVersion)),
		sdklog.NewLoggerProvider(sdklog.WithProcessor(c), sdklog.WithResource(resource.Empty())).Logger(testScope, log.WithInstrumentationVersion(testVersion)),
	}
	at := time.Date(2026, 12, 1, 12, 0, 0, 123456789, time.UTC)
	bodies := []attribute.Value{attribute.StringValue("curl (pid 1) -> 203.0.113.80:443 established"), {}, attribute.Int64Value(-7),
		attribute.MapValue(attribute.String("nested", "yes"), attribute.Slice("list", attribute.IntValue(1), attribute.BoolValue(false)))}
	for _, n := range []int{1, 127, 128, 16383, 16384, 300000} {
		bodies = append(bodies, attribute.StringValue(strings.Repeat("x", n)))
	}
	for i := range 2 * len(bodies) {
		var r log.Record
		r.SetTimestamp(at.Add(time.Duration(i) * time.Millisecond))
		if i%3 != 0 {
			r.SetObservedTimestamp(at.Add(time.Second))
		}
		r.SetSeverity(log.Severity(i % 26))
		r.SetSeverityText([]string{"", "INFO", "WARN"}[i%3])
		r.SetEventName([]string{"tcp.connect", "", "connaudit.loss"}[i%3])
		r.SetBody(bodies[i%len(bodies)])
		r.AddAttributes(
			attribute.String("network.peer.address", "203.0.113.80"),
			attribute.Int("network.peer.port", 443+i),
			attribute.Int("negative", -1<<40),
			attribute.Float64("connaudit.connect.duration", 0.000038*float64(i)),
			attribute.Bool("connaudit.retry", i%2 == 0),
			attribute.String(strings.Repeat("k", 130), strings.Repeat("v", 20000)), // lengths of two and three varint bytes
			attribute.ByteSlice("raw", []byte{0, 1, 0xff}),
			attribute.String("empty", ""),
			attribute.KeyValue{Key: "nothing"},
			attribute.Slice("process.command_args", attribute.StringValue("curl"), attribute.StringValue("-s")),
			attribute.Int64Slice("ints", []int64{1, -2}), attribute.BoolSlice("bools", []bool{true}), attribute.Float64Slice("floats", []float64{0.5}),
			attribute.Map("peer", attribute.String("k8s.pod.name", "db-0"), attribute.Int64("n", 1<<40)),
		)
		loggers[i%len(loggers)].Emit(context.Background(), r)
	}
	// A trace context, as a record emitted within a span carries it.
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5}, TraceFlags: trace.FlagsSampled})
	var r log.Record
	r.SetBody(attribute.StringValue("in a span"))
	loggers[0].Emit(trace.ContextWithSpanContext(context.Background(), sc), r)
	return c.recs
}

// reference is what the SDK's otlploghttp exporter sends for recs.
func reference(t *testing.T, recs []sdklog.Record) *collogspb.ExportLogsServiceRequest {
	t.Helper()
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ = io.ReadAll(r.Body)
	}))
	defer srv.Close()
	exp, err := otlploghttp.New(t.Context(), otlploghttp.WithEndpointURL(srv.URL+"/v1/logs"), otlploghttp.WithRetry(otlploghttp.RetryConfig{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := exp.Export(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	var req collogspb.ExportLogsServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		t.Fatal(err)
	}
	return &req
}

func decode(t *testing.T, wire []byte) *collogspb.ExportLogsServiceRequest {
	t.Helper()
	var req collogspb.ExportLogsServiceRequest
	if err := proto.Unmarshal(wire, &req); err != nil {
		t.Fatalf("our encoding does not decode: %v", err)
	}
	return &req
}

// sortResources orders resource_logs, which otlploghttp emits in map order.
func sortResources(req *collogspb.ExportLogsServiceRequest) {
	slices.SortFunc(req.ResourceLogs, func(a, b *logspb.ResourceLogs) int {
		return strings.Compare(prototext.Format(a.GetResource()), prototext.Format(b.GetResource()))
	})
}

// encodeEach encodes each record on its own, as the agent spools it, and
// frames them into one request, as its export loop does.
func encodeEach(recs []sdklog.Record, f *Framer) []byte {
	var e RecordEncoder
	f.Reset()
	for i := range recs {
		res := AppendResource(nil, recs[i].Resource().Attributes())
		f.Add(res, e.Append(nil, &recs[i]))
	}
	return f.Bytes()
}

func TestFramedRecordsDecodeAsTheSDKExporterSends(t *testing.T) {
	recs := variedRecords(t)
	want := reference(t, recs)
	sortResources(want)
	f := &Framer{Scope: testScope, Version: testVersion}
	for round := range 2 { // the second request reuses the first one's buffers
		got := decode(t, encodeEach(recs, f))
		sortResources(got)
		if !proto.Equal(got, want) {
			t.Fatalf("round %d: our encoding decodes as\n%.3000s\nthe SDK's as\n%.3000s", round, prototext.Format(got), prototext.Format(want))
		}
	}
	if len(want.ResourceLogs) != 2 {
		t.Fatalf("the records should span 2 resources: %.2000s", prototext.Format(want))
	}
	if got := decode(t, encodeEach(recs[:1], f)); len(got.ResourceLogs) != 1 || len(got.ResourceLogs[0].ScopeLogs[0].LogRecords) != 1 {
		t.Fatalf("a smaller request after a larger one: %s", prototext.Format(got))
	}
}

func TestFramerGroupsByResourceInOrderOfFirstAppearance(t *testing.T) {
	recs := variedRecords(t)
	got := decode(t, encodeEach(recs, &Framer{Scope: testScope}))
	var times []uint64
	for _, rl := range got.ResourceLogs {
		for _, lr := range rl.ScopeLogs[0].LogRecords {
			times = append(times, lr.GetTimeUnixNano())
		}
	}
	if len(times) != len(recs) || len(got.ResourceLogs) != 2 {
		t.Fatalf("%d records in %d resource groups, of %d", len(times), len(got.ResourceLogs), len(recs))
	}
	if len(got.ResourceLogs[0].GetResource().GetAttributes()) != 3 || times[0] != uint64(recs[0].Timestamp().UnixNano()) {
		t.Fatalf("the first group should be the first record's: %.1000s", prototext.Format(got.ResourceLogs[0]))
	}
}

// What RecordEncoder writes, ReadLogRecord and ReadResource read back, for
// the scalar values connaudit's records hold; an attribute appended after
// the record is read as one of its own.
func TestReadReadsWhatWasWritten(t *testing.T) {
	c := &collect{}
	res := []attribute.KeyValue{attribute.String("k8s.pod.name", "web-0"), attribute.Int("n", 1)}
	p := sdklog.NewLoggerProvider(sdklog.WithProcessor(c), sdklog.WithResource(resource.NewSchemaless(res...)))
	at := time.Unix(1700000000, 42)
	var r log.Record
	r.SetTimestamp(at)
	r.SetObservedTimestamp(at.Add(time.Second))
	r.SetSeverity(log.SeverityWarn)
	r.SetSeverityText("WARN")
	r.SetEventName("tcp.connect")
	r.SetBody(attribute.StringValue("a connect"))
	attrs := []attribute.KeyValue{attribute.String("network.peer.address", "203.0.113.80"), attribute.Int("network.peer.port", -443),
		attribute.Float64("connaudit.connect.duration", 0.5), attribute.Bool("b", true)}
	r.AddAttributes(attrs...)
	p.Logger(testScope).Emit(context.Background(), r)
	var e RecordEncoder
	b := e.Append(nil, &c.recs[0])
	b = AppendAttribute(b, attribute.Int64("connaudit.seq", 7))
	attrs = append(attrs, attribute.Int64("connaudit.seq", 7))

	var h LogRecordHead
	var got []attribute.KeyValue
	if err := ReadLogRecord(b, &h, func(k []byte, v Value) error {
		got = append(got, asKeyValue(k, v))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if h.Time != uint64(at.UnixNano()) || h.Observed != uint64(at.Add(time.Second).UnixNano()) || h.Severity != int64(log.SeverityWarn) ||
		string(h.SeverityText) != "WARN" || string(h.EventName) != "tcp.connect" || h.Body.Kind != KindString || string(h.Body.Str) != "a connect" {
		t.Fatalf("head %+v", h)
	}
	if !slices.Equal(got, attrs) {
		t.Fatalf("attributes %v, want %v", got, attrs)
	}
	got = got[:0]
	if err := ReadResource(AppendResource(nil, res), func(k []byte, v Value) error {
		got = append(got, asKeyValue(k, v))
		return nil
	}); err != nil || !slices.Equal(got, res) {
		t.Fatalf("resource %v (%v), want %v", got, err, res)
	}
}

func asKeyValue(k []byte, v Value) attribute.KeyValue {
	switch v.Kind {
	case KindInt:
		return attribute.Int64(string(k), v.Int)
	case KindDouble:
		return attribute.Float64(string(k), v.Double)
	case KindBool:
		return attribute.Bool(string(k), v.Bool)
	default:
		return attribute.String(string(k), string(v.Str))
	}
}

func TestRecordEncoderAllocatesNothingOnceWarm(t *testing.T) {
	c := &collect{}
	p := sdklog.NewLoggerProvider(sdklog.WithProcessor(c))
	var r log.Record
	r.SetTimestamp(time.Now())
	r.SetBody(attribute.StringValue("a connect"))
	r.AddAttributes(attribute.String("network.peer.address", "203.0.113.80"), attribute.Int("network.peer.port", 443),
		attribute.Float64("connaudit.connect.duration", 0.5), attribute.Bool("b", true))
	p.Logger(testScope).Emit(context.Background(), r)
	var e RecordEncoder
	buf := e.Append(nil, &c.recs[0])
	if n := testing.AllocsPerRun(20, func() { buf = e.Append(buf[:0], &c.recs[0]) }); n != 0 {
		t.Fatalf("Append allocates %v times per record once the buffer has grown", n)
	}
}

func TestEncodeRepairsInvalidUTF8(t *testing.T) {
	c := &collect{}
	p := sdklog.NewLoggerProvider(sdklog.WithProcessor(c))
	var r log.Record
	r.AddAttributes(attribute.String("process.executable.name", "ok\xffok"))
	p.Logger("l").Emit(context.Background(), r)
	got := decode(t, encodeEach(c.recs, &Framer{}))
	if v := got.ResourceLogs[0].ScopeLogs[0].LogRecords[0].Attributes[0].GetValue().GetStringValue(); v != "ok\uFFFDok" {
		t.Fatalf("sent %q", v)
	}
}

// Whatever bytes a spool hands back, reading them returns an error or
// fields, never a panic.
func FuzzReadLogRecord(f *testing.F) {
	var e RecordEncoder
	c := &collect{}
	p := sdklog.NewLoggerProvider(sdklog.WithProcessor(c))
	var r log.Record
	r.SetBody(attribute.StringValue("a connect"))
	r.AddAttributes(attribute.String("k", "v"), attribute.Int("n", 1), attribute.Float64("f", 0.5), attribute.Bool("b", true))
	p.Logger("l").Emit(context.Background(), r)
	f.Add(e.Append(nil, &c.recs[0]))
	f.Add([]byte{0x32, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		var h LogRecordHead
		_ = ReadLogRecord(b, &h, func([]byte, Value) error { return nil })
		_ = ReadResource(b, func([]byte, Value) error { return nil })
	})
}
