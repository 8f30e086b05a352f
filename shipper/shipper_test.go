package shipper

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/connaudit/connaudit/shipper/spool"
)

// When the spool is full, records are dropped, counted, and their seq range is
// reported by the first record the spool accepts again.
func TestSpoolFullIsReportedWithItsSeqRange(t *testing.T) {
	sp, _, err := spool.Open(t.TempDir(), spool.Options{MaxBytes: 16 << 10, SegmentBytes: 2 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	sh := New(sp, nil, NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))

	ev := testEvent()
	var b ConnectBuilder
	emitted := 0
	for sp.Stats().Records == int64(emitted) && emitted < 10000 {
		sh.Emit(b.Build(&ev, time.Now(), time.Now(), time.Now(), &Source{}))
		emitted++
	}
	accepted := int(sp.Stats().Records)
	const extra = 5
	for i := 0; i < extra; i++ {
		sh.Emit(b.Build(&ev, time.Now(), time.Now(), time.Now(), &Source{}))
	}
	firstDropped := uint64(accepted + 1)
	lastDropped := uint64(accepted + 1 + extra)

	// Drain everything, then one more record makes room for the loss report.
	for sp.Stats().Records > 0 {
		batch, err := sp.Next(context.Background(), 1000, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := sp.Ack(batch); err != nil {
			t.Fatal(err)
		}
	}
	sh.Emit(b.Build(&ev, time.Now(), time.Now(), time.Now(), &Source{}))

	batch, err := sp.Next(context.Background(), 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(batch.Records) != 2 {
		t.Fatalf("%d records after recovery, want the loss record and the new one", len(batch.Records))
	}
	var loss, next Record
	if err := Decode(batch.Records[0], &loss); err != nil {
		t.Fatal(err)
	}
	if err := Decode(batch.Records[1], &next); err != nil {
		t.Fatal(err)
	}
	a := attrMap(loss.Attrs)
	if loss.EventName != EventLoss || a["connaudit.lost.reason"].AsString() != LossSpoolFull ||
		uint64(a["connaudit.lost.count"].AsInt64()) != lastDropped-firstDropped+1 ||
		uint64(a["connaudit.lost.seq.first"].AsInt64()) != firstDropped ||
		uint64(a["connaudit.lost.seq.last"].AsInt64()) != lastDropped {
		t.Fatalf("loss record %s %v; want %d..%d", loss.EventName, loss.Attrs, firstDropped, lastDropped)
	}
	if loss.Seq != lastDropped+1 || next.Seq != lastDropped+2 {
		t.Fatalf("seq of loss %d and next %d, want %d and %d", loss.Seq, next.Seq, lastDropped+1, lastDropped+2)
	}
}
