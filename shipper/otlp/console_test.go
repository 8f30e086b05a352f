package otlp

import (
	"bytes"
	"strings"
	"testing"

	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Each record is one JSON line holding its resource and scope.
func TestConsoleWritesOneLinePerRecord(t *testing.T) {
	want, req := testRequest(t)
	var out bytes.Buffer
	if err := NewConsole(&out).Send(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	i := 0
	for _, rl := range want.ResourceLogs {
		for _, sl := range rl.ScopeLogs {
			for _, lr := range sl.LogRecords {
				if i >= len(lines) {
					t.Fatalf("%d lines for more records:\n%s", len(lines), out.String())
				}
				var got logspb.ResourceLogs
				if err := protojson.Unmarshal([]byte(lines[i]), &got); err != nil {
					t.Fatalf("line %d: %v\n%s", i, err, lines[i])
				}
				one := &logspb.ResourceLogs{Resource: rl.Resource, SchemaUrl: rl.SchemaUrl, ScopeLogs: []*logspb.ScopeLogs{
					{Scope: sl.Scope, SchemaUrl: sl.SchemaUrl, LogRecords: []*logspb.LogRecord{lr}}}}
				if !proto.Equal(&got, one) {
					t.Errorf("line %d: %s", i, lines[i])
				}
				i++
			}
		}
	}
	if i != len(lines) {
		t.Errorf("%d lines for %d records:\n%s", len(lines), i, out.String())
	}
	// What a reader greps for, spaced the same whatever the build.
	if !strings.Contains(lines[0], `"eventName":"tcp.connect"`) || !strings.Contains(lines[0], `{"key":"k8s.pod.name","value":{"stringValue":"web-0"}}`) ||
		!strings.Contains(lines[3], `"stringValue":"db-0"`) {
		t.Errorf("the lines lack the event name or the pod:\n%s", out.String())
	}
}

func TestConsoleRefusesWhatDoesNotDecode(t *testing.T) {
	var out bytes.Buffer
	if err := NewConsole(&out).Send(t.Context(), []byte{0xff}); !IsPermanent(err) || out.Len() != 0 {
		t.Fatalf("err %v, wrote %q", err, out.String())
	}
}
