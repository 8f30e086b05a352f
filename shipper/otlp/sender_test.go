package otlp

import (
	"testing"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"
)

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func connect(port int64) *logspb.LogRecord {
	return &logspb.LogRecord{TimeUnixNano: 1796126400123456789 + uint64(port), SeverityNumber: logspb.SeverityNumber_SEVERITY_NUMBER_INFO,
		EventName: "tcp.connect", Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "curl -> 203.0.113.80"}},
		Attributes: []*commonpb.KeyValue{str("network.peer.address", "203.0.113.80"),
			{Key: "network.peer.port", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: port}}}}}
}

// testRequest is an encoded request of four records from two pods, one of
// them with records in two scopes.
func testRequest(t *testing.T) (*collogspb.ExportLogsServiceRequest, []byte) {
	t.Helper()
	scope := &commonpb.InstrumentationScope{Name: "github.com/connaudit/connaudit", Version: "v1.2.3"}
	req := &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{
		{Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("k8s.pod.name", "web-0"), str("k8s.namespace.name", "shop")}},
			SchemaUrl: "https://opentelemetry.io/schemas/1.26.0",
			ScopeLogs: []*logspb.ScopeLogs{
				{Scope: scope, LogRecords: []*logspb.LogRecord{connect(443), connect(444)}},
				{Scope: &commonpb.InstrumentationScope{Name: "other"}, LogRecords: []*logspb.LogRecord{connect(445)}},
			}},
		{Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("k8s.pod.name", "db-0")}},
			ScopeLogs: []*logspb.ScopeLogs{{Scope: scope, LogRecords: []*logspb.LogRecord{connect(5432)}}}},
	}}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return req, b
}
