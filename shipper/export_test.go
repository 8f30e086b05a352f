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
	mu     sync.Mutex
	max    int
	seqs   []int64
	losses []string // connaudit.lost.reason of each loss record
}

func (e *sizeLimitedExporter) Export(_ context.Context, records []sdklog.Record) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(records) > e.max {
		return errors.New("rpc error: code = ResourceExhausted desc = grpc: received message larger than max")
	}
	for _, r := range records {
		r.WalkAttributes(func(kv attribute.KeyValue) bool {
			switch kv.Key {
			case "connaudit.seq":
				e.seqs = append(e.seqs, kv.Value.AsInt64())
			case "connaudit.lost.reason":
				e.losses = append(e.losses, kv.Value.AsString())
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

// A spooled record this version cannot read is skipped and reported once,
// however often its batch is retried.
func TestUndecodableRecordIsReportedOnce(t *testing.T) {
	sp, _, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := NewMetrics(prometheus.NewRegistry())
	sh := New(sp, nil, m, logger)
	ev := testEvent()
	var b ConnectBuilder
	for i := 0; i < 9; i++ {
		sh.Emit(b.Build(&ev, time.Now(), time.Now(), time.Now(), &Source{}))
	}
	future := append([]byte{recordVersion + 1}, make([]byte, headerSize)...)
	if err := sp.Append(future); err != nil {
		t.Fatal(err)
	}

	exp := &sizeLimitedExporter{max: 4} // the first batches are refused and split
	x := NewExporter(ExportConfig{BatchRecords: 64, MaxBackoff: time.Millisecond}, sp, exp, sh, m, logger)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for len(exp.exported()) < 10 && time.Now().Before(deadline) { // 9 records and the loss record
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // room for a duplicate report to show
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	exp.mu.Lock()
	defer exp.mu.Unlock()
	if len(exp.seqs) != 10 || len(exp.losses) != 1 || exp.losses[0] != LossUndecodable {
		t.Fatalf("exported seqs %v, loss reasons %v: want 10 records and one undecodable loss", exp.seqs, exp.losses)
	}
}
