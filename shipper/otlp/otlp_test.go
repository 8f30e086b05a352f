package otlp

import (
	"compress/gzip"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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

// variedRecords are records of every value type, from two resources (one of
// them empty) and three scopes, interleaved.
func variedRecords(t *testing.T) []sdklog.Record {
	t.Helper()
	c := &collect{}
	pod := resource.NewWithAttributes("https://opentelemetry.io/schemas/1.26.0",
		attribute.String("k8s.pod.name", "web-0"), attribute.StringSlice("container.image.tags", []string{"1.4", "latest"}),
		attribute.Int("connaudit.pid", 42))
	providers := []*sdklog.LoggerProvider{
		sdklog.NewLoggerProvider(sdklog.WithProcessor(c), sdklog.WithResource(pod)),
		sdklog.NewLoggerProvider(sdklog.WithProcessor(c), sdklog.WithResource(resource.Empty())),
	}
	loggers := []log.Logger{
		providers[0].Logger("github.com/connaudit/connaudit", log.WithInstrumentationVersion("v1.2.3"),
			log.WithSchemaURL("https://example.com/schema"), log.WithInstrumentationAttributes(attribute.Bool("scope.flag", true))),
		providers[1].Logger("github.com/connaudit/connaudit"),
		providers[0].Logger(""),
	}
	at := time.Date(2026, 12, 1, 12, 0, 0, 123456789, time.UTC)
	bodies := []attribute.Value{attribute.StringValue("curl (pid 1) -> 203.0.113.80:443 established"), {}, attribute.Int64Value(-7),
		attribute.MapValue(attribute.String("nested", "yes"), attribute.Slice("list", attribute.IntValue(1), attribute.BoolValue(false)))}
	for i := range 12 {
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
			attribute.Float64("connaudit.connect.duration", 0.000038*float64(i)),
			attribute.Bool("connaudit.retry", i%2 == 0),
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

func TestEncodeDecodesAsTheSDKExporterSends(t *testing.T) {
	recs := variedRecords(t)
	want := reference(t, recs)
	var e Encoder
	for round := range 2 { // the second Encode reuses the first one's buffers
		got := decode(t, e.Encode(recs))
		sortResources(got)
		sortResources(want)
		if !proto.Equal(got, want) {
			t.Fatalf("round %d: our encoding decodes as\n%s\nthe SDK's as\n%s", round, prototext.Format(got), prototext.Format(want))
		}
	}
	if len(want.ResourceLogs) != 2 || len(want.ResourceLogs[0].ScopeLogs)+len(want.ResourceLogs[1].ScopeLogs) != 3 {
		t.Fatalf("the records should span 2 resources and 3 scopes: %s", prototext.Format(want))
	}
	if got := decode(t, e.Encode(recs[:1])); len(got.ResourceLogs) != 1 || len(got.ResourceLogs[0].ScopeLogs[0].LogRecords) != 1 {
		t.Fatalf("a smaller batch after a larger one: %s", prototext.Format(got))
	}
}

func TestEncodeGroupsInOrderOfFirstAppearance(t *testing.T) {
	recs := variedRecords(t)
	got := decode(t, new(Encoder).Encode(recs))
	var names []string
	for _, rl := range got.ResourceLogs {
		for _, sl := range rl.ScopeLogs {
			for _, lr := range sl.LogRecords {
				names = append(names, lr.GetBody().String())
			}
		}
	}
	if len(names) != len(recs) {
		t.Fatalf("%d records sent of %d", len(names), len(recs))
	}
	first := got.ResourceLogs[0].ScopeLogs[0]
	if first.GetScope().GetVersion() != "v1.2.3" || first.LogRecords[0].GetTimeUnixNano() != uint64(recs[0].Timestamp().UnixNano()) {
		t.Fatalf("the first group should be the first record's: %s", prototext.Format(first))
	}
}

func TestEncodeLongRecords(t *testing.T) {
	// Lengths of one, two and three varint bytes, around the boundaries.
	for _, n := range []int{0, 1, 100, 127, 128, 16383, 16384, 300000} {
		c := &collect{}
		p := sdklog.NewLoggerProvider(sdklog.WithProcessor(c))
		var r log.Record
		r.SetBody(attribute.StringValue(strings.Repeat("x", n)))
		p.Logger("l").Emit(context.Background(), r)
		got := decode(t, new(Encoder).Encode(c.recs))
		if body := got.ResourceLogs[0].ScopeLogs[0].LogRecords[0].GetBody().GetStringValue(); len(body) != n {
			t.Fatalf("a body of %d bytes came back with %d", n, len(body))
		}
	}
}

func TestEncodeAllocatesNothingOnceWarm(t *testing.T) {
	// Scalar values, as connaudit's records have: the attribute API copies
	// slices out of a value.
	c := &collect{}
	res := resource.NewSchemaless(attribute.String("k8s.pod.name", "web-0"), attribute.Int("n", 1))
	p := sdklog.NewLoggerProvider(sdklog.WithProcessor(c), sdklog.WithResource(res))
	for i := range 100 {
		var r log.Record
		r.SetTimestamp(time.Now())
		r.SetBody(attribute.StringValue("a connect"))
		r.AddAttributes(attribute.String("network.peer.address", "203.0.113.80"), attribute.Int("network.peer.port", i),
			attribute.Float64("connaudit.connect.duration", 0.5), attribute.Bool("b", true))
		p.Logger(fmt.Sprint("scope", i%2)).Emit(context.Background(), r)
	}
	var e Encoder
	e.Encode(c.recs)
	if n := testing.AllocsPerRun(20, func() { e.Encode(c.recs) }); n != 0 {
		t.Fatalf("Encode allocates %v times per batch once its buffers have grown", n)
	}
}

func TestEncodeRepairsInvalidUTF8(t *testing.T) {
	c := &collect{}
	p := sdklog.NewLoggerProvider(sdklog.WithProcessor(c))
	var r log.Record
	r.AddAttributes(attribute.String("process.executable.name", "ok\xffok"))
	p.Logger("l").Emit(context.Background(), r)
	got := decode(t, new(Encoder).Encode(c.recs))
	if v := got.ResourceLogs[0].ScopeLogs[0].LogRecords[0].Attributes[0].GetValue().GetStringValue(); v != "ok\uFFFDok" {
		t.Fatalf("sent %q", v)
	}
}

// The request reaches the collector as it was given, compressed unless
// compression is off, with the configured headers.
func TestSendPostsWhatTheCollectorExpects(t *testing.T) {
	want, req := testRequest(t)
	for _, compression := range []string{"gzip", "none"} {
		t.Run(compression, func(t *testing.T) {
			var got *http.Request
			var body []byte
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got = r
				var in io.Reader = r.Body
				if r.Header.Get("Content-Encoding") == "gzip" {
					zr, err := gzip.NewReader(r.Body)
					if err != nil {
						t.Errorf("the body is not gzip: %v", err)
						return
					}
					in = zr
				}
				body, _ = io.ReadAll(in)
			}))
			defer srv.Close()
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL+"/prefix/")
			t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20abc,x-tenant = shop ")
			t.Setenv("OTEL_EXPORTER_OTLP_COMPRESSION", compression)
			cfg, err := ConfigFromEnv()
			if err != nil {
				t.Fatal(err)
			}
			cfg.UserAgent = "connaudit/test"
			x := New(cfg)
			if err := x.Send(t.Context(), req); err != nil {
				t.Fatal(err)
			}
			wantEncoding := map[string]string{"gzip": "gzip", "none": ""}[compression]
			if got.URL.Path != "/prefix/v1/logs" || got.Header.Get("Content-Type") != "application/x-protobuf" ||
				got.Header.Get("Content-Encoding") != wantEncoding || got.Header.Get("Authorization") != "Bearer abc" ||
				got.Header.Get("X-Tenant") != "shop" || got.Header.Get("User-Agent") != "connaudit/test" {
				t.Fatalf("request %s %v", got.URL, got.Header)
			}
			if sent := decode(t, body); !proto.Equal(sent, want) {
				t.Fatalf("the request body decodes as\n%s", prototext.Format(sent))
			}
		})
	}
}

func TestSendReportsWhatTheCollectorSaid(t *testing.T) {
	_, req := testRequest(t)
	for _, c := range []struct {
		name       string
		status     int
		ctype      string
		body       []byte
		permanent  bool
		rejected   int64
		retryAfter string
		wait       time.Duration // at least this, within a minute
		busy       bool
	}{
		{name: "accepted", status: 200},
		{name: "accepted, empty protobuf answer", status: 200, ctype: "application/x-protobuf", body: mustMarshal(&collogspb.ExportLogsServiceResponse{})},
		{name: "partial success", status: 200, ctype: "application/x-protobuf", rejected: 3,
			body: mustMarshal(&collogspb.ExportLogsServiceResponse{PartialSuccess: &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: 3, ErrorMessage: "too old"}})},
		{name: "malformed", status: 400, body: []byte("bad record"), permanent: true},
		{name: "too large", status: 413, permanent: true},
		{name: "queue full", status: 503, body: []byte("sending queue is full"), busy: true},
		{name: "throttled", status: 429, retryAfter: "2", wait: 2 * time.Second, busy: true},
		{name: "forbidden", status: 403},
		{name: "throttled until", status: 503, busy: true, retryAfter: time.Now().Add(time.Hour).UTC().Format(http.TimeFormat), wait: time.Hour},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if c.ctype != "" {
					w.Header().Set("Content-Type", c.ctype)
				}
				if c.retryAfter != "" {
					w.Header().Set("Retry-After", c.retryAfter)
				}
				w.WriteHeader(c.status)
				w.Write(c.body)
			}))
			defer srv.Close()
			x := New(Config{URL: srv.URL + "/v1/logs", Timeout: time.Second})
			err := x.Send(t.Context(), req)
			var partial *PartialSuccessError
			var status *StatusError
			switch {
			case c.status == 200 && c.rejected == 0:
				if err != nil {
					t.Fatal(err)
				}
			case c.rejected > 0:
				if !errors.As(err, &partial) || partial.Rejected != c.rejected || !strings.Contains(err.Error(), "(3 logs rejected)") {
					t.Fatalf("err %v, want a partial success of %d", err, c.rejected)
				}
			default:
				if !errors.As(err, &status) || status.Code != c.status || IsPermanent(err) != c.permanent || IsBusy(err) != c.busy {
					t.Fatalf("err %v: want status %d, permanent %v, busy %v", err, c.status, c.permanent, c.busy)
				}
				if d := RetryAfter(err); d > c.wait || d < c.wait-time.Minute || (c.wait == 0) != (d == 0) {
					t.Fatalf("Retry-After %q read as %s, want %s", c.retryAfter, d, c.wait)
				}
				if len(c.body) > 0 && !strings.Contains(err.Error(), string(c.body)) {
					t.Fatalf("err %v does not quote the collector's answer", err)
				}
			}
		})
	}
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func TestConfigFromEnv(t *testing.T) {
	for _, c := range []struct {
		env     map[string]string
		url     string
		gzip    bool
		timeout time.Duration
		err     string
	}{
		{env: nil, url: "http://localhost:4318/v1/logs", gzip: true, timeout: 10 * time.Second},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://col:4318"}, url: "https://col:4318/v1/logs", gzip: true, timeout: 10 * time.Second},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://b:2/custom"},
			url: "http://b:2/custom", gzip: true, timeout: 10 * time.Second},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://b:2"}, url: "http://b:2/", gzip: true, timeout: 10 * time.Second},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip", "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION": "none", "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": "2500"},
			url: "http://localhost:4318/v1/logs", timeout: 2500 * time.Millisecond},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "127.0.0.1:4318"}, err: "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, err: "use gzip or none"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "10s"}, err: "milliseconds"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "novalue"}, err: "OTEL_EXPORTER_OTLP_HEADERS"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent/ca.pem"}, err: "OTEL_EXPORTER_OTLP_CERTIFICATE"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_CLIENT_KEY": "/tmp/key.pem"}, err: "set both or neither"},
	} {
		for _, name := range []string{"ENDPOINT", "COMPRESSION", "TIMEOUT", "HEADERS", "CERTIFICATE", "CLIENT_CERTIFICATE", "CLIENT_KEY"} {
			t.Setenv("OTEL_EXPORTER_OTLP_"+name, "")
			t.Setenv("OTEL_EXPORTER_OTLP_LOGS_"+name, "")
		}
		for k, v := range c.env {
			t.Setenv(k, v)
		}
		cfg, err := ConfigFromEnv()
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: err %v, want one naming %q", c.env, err, c.err)
			}
			continue
		}
		if err != nil || cfg.URL != c.url || cfg.Gzip != c.gzip || cfg.Timeout != c.timeout {
			t.Errorf("%v: %+v, %v; want %s gzip=%v timeout=%s", c.env, cfg, err, c.url, c.gzip, c.timeout)
		}
	}
}

func TestCertificateWithoutPEM(t *testing.T) {
	path := t.TempDir() + "/ca.pem"
	if err := os.WriteFile(path, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", path)
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("err %v", err)
	}
}

func TestSendTrustsTheConfiguredCertificate(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ErrorLog = stdlog.New(io.Discard, "", 0) // the refused handshake
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	_, req := testRequest(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	cfg, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if err := New(cfg).Send(t.Context(), req); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("an unknown server certificate was accepted: %v", err)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", ca)
	if cfg, err = ConfigFromEnv(); err != nil {
		t.Fatal(err)
	}
	if err := New(cfg).Send(t.Context(), req); err != nil {
		t.Fatalf("with OTEL_EXPORTER_OTLP_CERTIFICATE: %v", err)
	}
}
