package shipper

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	sdklog "go.opentelemetry.io/otel/sdk/log"

	"github.com/connaudit/connaudit/shipper/spool"
)

// sizeLimitedExporter refuses any request of more than max records, as a
// collector refuses a message above its size limit.
type sizeLimitedExporter struct {
	mu   sync.Mutex
	max  int
	seqs []int64
}

func (e *sizeLimitedExporter) Export(_ context.Context, records []sdklog.Record) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(records) > e.max {
		return errors.New("rpc error: code = ResourceExhausted desc = grpc: received message larger than max")
	}
	for _, r := range records {
		r.WalkAttributes(func(kv attribute.KeyValue) bool {
			if kv.Key == "connaudit.seq" {
				e.seqs = append(e.seqs, kv.Value.AsInt64())
			}
			return true
		})
	}
	return nil
}
func (e *sizeLimitedExporter) Shutdown(context.Context) error   { return nil }
func (e *sizeLimitedExporter) ForceFlush(context.Context) error { return nil }

func (e *sizeLimitedExporter) exported() []int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]int64(nil), e.seqs...)
}

// A batch the collector keeps refusing is split until it passes; every
// record is delivered, in order, once.
func TestExportShrinksARefusedBatch(t *testing.T) {
	sp, _, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := NewMetrics(prometheus.NewRegistry())
	sh := New(sp, nil, m, logger)
	const n = 100
	ev := testEvent()
	var b ConnectBuilder
	for i := 0; i < n; i++ {
		sh.Emit(b.Build(&ev, time.Now(), time.Now(), time.Now(), &Source{}))
	}

	exp := &sizeLimitedExporter{max: 7}
	x := NewExporter(ExportConfig{BatchRecords: 64, MaxBackoff: time.Millisecond}, sp, exp, sh, m, logger)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for len(exp.exported()) < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := exp.exported()
	if len(got) != n {
		t.Fatalf("%d of %d records exported", len(got), n)
	}
	for i, seq := range got {
		if seq != int64(i+1) {
			t.Fatalf("record %d has seq %d: want every record once, in order", i, seq)
		}
	}
}
