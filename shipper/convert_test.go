package shipper

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
)

// The export loop reuses its decoding storage from record to record; every
// converted record must still keep attributes of its own.
func TestConvertKeepsEachRecordsAttributes(t *testing.T) {
	payloads := realisticBatch(300)
	x := NewExporter(ExportConfig{BatchRecords: 300}, nil, nil, nil, NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer x.providers.shutdown()
	x.convert(context.Background(), payloads)
	if len(x.out) != 300 {
		t.Fatalf("converted %d records, want 300", len(x.out))
	}
	for i, r := range x.out {
		var seq int64
		var local string
		n := 0
		r.WalkAttributes(func(kv attribute.KeyValue) bool {
			n++
			switch kv.Key {
			case "connaudit.seq":
				seq = kv.Value.AsInt64()
			case "network.local.port":
				local = kv.Value.Emit()
			}
			return true
		})
		var want Record
		if err := Decode(payloads[i], &want); err != nil {
			t.Fatal(err)
		}
		if seq != int64(i+1) || n != len(want.Attrs)+1 {
			t.Fatalf("record %d: seq %d with %d attributes, want seq %d with %d", i, seq, n, i+1, len(want.Attrs)+1)
		}
		for _, kv := range want.Attrs {
			if kv.Key == "network.local.port" && kv.Value.Emit() != local {
				t.Fatalf("record %d: local port %s, want %s", i, local, kv.Value.Emit())
			}
		}
		if r.Resource().Len() == 0 {
			t.Fatalf("record %d has no resource", i)
		}
	}
}

// Interned decoding gives the same record as plain decoding, invalid UTF-8
// included.
func TestInternedDecodeMatchesDecode(t *testing.T) {
	var in interner
	for i, p := range realisticBatch(50) {
		var a, b Record
		if err := Decode(p, &a); err != nil {
			t.Fatal(err)
		}
		if err := decodeRecord(p, &b, &in); err != nil {
			t.Fatal(err)
		}
		if len(a.Attrs) != len(b.Attrs) || a.EventName != b.EventName || a.Body != b.Body {
			t.Fatalf("record %d decodes differently", i)
		}
		for j := range a.Attrs {
			if a.Attrs[j] != b.Attrs[j] {
				t.Fatalf("record %d attribute %d: %v, interned %v", i, j, a.Attrs[j], b.Attrs[j])
			}
		}
	}
	if got := in.str([]byte("a\xffb")); got != "a\uFFFDb" {
		t.Fatalf("interned invalid UTF-8 = %q", got)
	}
}
