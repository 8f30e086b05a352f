package shipper

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/attribute"

	"github.com/connaudit/connaudit/shipper/spool"
	"github.com/connaudit/connaudit/trail"
)

// When the spool is full, records are dropped, counted, and their seq range is
// reported by the first record the spool accepts again.
func TestSpoolFullIsReportedWithItsSeqRange(t *testing.T) {
	sp, _, err := spool.Open(t.TempDir(), spool.Options{MaxBytes: 16 << 10, SegmentBytes: 2 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	sh := NewLedger(sp, nil, NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))

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
	if loss.EventName != string(trail.EventLoss) || a["connaudit.lost.reason"].AsString() != string(trail.LossSpoolFull) ||
		uint64(a["connaudit.lost.count"].AsInt64()) != lastDropped-firstDropped+1 ||
		uint64(a["connaudit.lost.seq.first"].AsInt64()) != firstDropped ||
		uint64(a["connaudit.lost.seq.last"].AsInt64()) != lastDropped {
		t.Fatalf("loss record %s %v; want %d..%d", loss.EventName, loss.Attrs, firstDropped, lastDropped)
	}
	if loss.Seq != lastDropped+1 || next.Seq != lastDropped+2 {
		t.Fatalf("seq of loss %d and next %d, want %d and %d", loss.Seq, next.Seq, lastDropped+1, lastDropped+2)
	}
}

// fullSpool returns a ledger whose spool refuses every record, and a func
// that empties the spool.
func fullSpool(t *testing.T, m *Metrics) (*spool.Spool, *Ledger, func()) {
	t.Helper()
	sp, _, err := spool.Open(t.TempDir(), spool.Options{MaxBytes: 16 << 10, SegmentBytes: 2 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	l := NewLedger(sp, nil, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	// The smallest record there is: once it is refused, every report is.
	var tiny Encoder
	for i := 0; sp.Stats().Records == int64(i) && i < 100000; i++ {
		tiny.Reset(trail.EventAgentStop, time.Now(), time.Now(), 0, nil, nil)
		l.Emit(tiny.Finish())
	}
	empty := func() {
		for sp.Stats().Records > 0 {
			batch, err := sp.Next(context.Background(), 1000, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := sp.Ack(batch); err != nil {
				t.Fatal(err)
			}
		}
	}
	return sp, l, empty
}

func spooledEvents(t *testing.T, sp *spool.Spool) []Record {
	t.Helper()
	batch, err := sp.Next(context.Background(), 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]Record, len(batch.Records))
	for i, p := range batch.Records {
		if err := Decode(p, &out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// A loss given to the ledger while the spool is full is written as soon as
// the spool takes records again, after the report of what the spool refused,
// and counted once in the metrics.
func TestLossRefusedByTheSpoolIsWrittenOnceItTakesRecords(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	sp, l, empty := fullSpool(t, m)
	l.Lose(Loss{Reason: trail.LossRingBuffer, Count: 4, Detail: "replaced capture"})
	l.Degrade(Degraded{Reason: trail.DegradedHandshakeMap, Count: 2})
	if l.Settled() {
		t.Fatal("settled while the spool refused the reports")
	}
	empty()
	var b ConnectBuilder
	ev := testEvent()
	l.Emit(b.Build(&ev, time.Now(), time.Now(), time.Now(), &Source{}))
	if !l.Settled() {
		t.Fatal("not settled once the spool took records again")
	}
	recs := spooledEvents(t, sp)
	var got []string
	for _, r := range recs {
		a := attrMap(r.Attrs)
		switch r.EventName {
		case string(trail.EventLoss):
			got = append(got, a[string(trail.KeyLostReason)].AsString())
		case string(trail.EventDegraded):
			got = append(got, a[string(trail.KeyDegradedReason)].AsString())
		default:
			got = append(got, r.EventName)
		}
	}
	want := []string{"spool_full", "ring_buffer", "handshake_map", "tcp.connect"}
	if !slices.Equal(got, want) {
		t.Fatalf("spooled %v, want %v", got, want)
	}
	if n := testutil.ToFloat64(m.Lost.WithLabelValues(string(trail.LossRingBuffer))); n != 4 {
		t.Errorf("ring_buffer lost metric %v, want 4", n)
	}
	if n := testutil.ToFloat64(m.Degraded.WithLabelValues(string(trail.DegradedHandshakeMap))); n != 2 {
		t.Errorf("handshake_map degraded metric %v, want 2", n)
	}
}

// TryLose leaves a refused count to its caller: nothing is written or counted later.
func TestTryLoseRefusedLeavesTheCountToItsCaller(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	sp, l, empty := fullSpool(t, m)
	if l.TryLose(Loss{Reason: trail.LossRingBuffer, Count: 3}) {
		t.Fatal("TryLose reported success on a full spool")
	}
	empty()
	if !l.TryLose(Loss{Reason: trail.LossRingBuffer, Count: 5}) {
		t.Fatal("TryLose refused on an empty spool")
	}
	if n := testutil.ToFloat64(m.Lost.WithLabelValues(string(trail.LossRingBuffer))); n != 5 {
		t.Errorf("ring_buffer lost metric %v, want 5: the refused offer is not counted", n)
	}
	var counts []int64
	for _, r := range spooledEvents(t, sp) {
		if a := attrMap(r.Attrs); a[string(trail.KeyLostReason)].AsString() == string(trail.LossRingBuffer) {
			counts = append(counts, a[string(trail.KeyLostCount)].AsInt64())
		}
	}
	if !slices.Equal(counts, []int64{5}) {
		t.Fatalf("ring_buffer loss records %v, want one of 5", counts)
	}
}

// Every loss and degraded reason is exported from the start, at zero, so
// that an alert on a rate sees its first increase.
func TestMetricsStartWithEveryReason(t *testing.T) {
	reg := prometheus.NewRegistry()
	NewMetrics(reg)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string][]string{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "reason" {
					labels[f.GetName()] = append(labels[f.GetName()], lp.GetValue())
				}
			}
		}
	}
	for _, r := range trail.LossReasons {
		if !slices.Contains(labels["connaudit_records_lost_total"], string(r)) {
			t.Errorf("connaudit_records_lost_total{reason=%q} is not exported at start", r)
		}
	}
	for _, r := range trail.DegradedReasons {
		if !slices.Contains(labels["connaudit_records_degraded_total"], string(r)) {
			t.Errorf("connaudit_records_degraded_total{reason=%q} is not exported at start", r)
		}
	}
}

// A record the SDK never handed to the processor has no payload: it is lost
// with its seq, counted, and named by a loss record, never spooled empty.
func TestRecordWithoutPayloadIsALoss(t *testing.T) {
	sp, sh := spooledShipper(t, 0)
	var e Encoder
	e.Reset(trail.EventConnect, time.Now(), time.Now(), 0, []byte("never finished"), nil)
	sh.Emit(&e)
	sh.EmitAgentEvent(trail.EventAgentStop, "stopped", time.Now(), 0, nil) // settles what is owed

	batch, err := sp.Next(context.Background(), 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	var loss map[string]attribute.Value
	for _, p := range batch.Records {
		var r Record
		if err := Decode(p, &r); err != nil {
			t.Fatal(err)
		}
		events = append(events, r.EventName)
		if r.EventName == string(trail.EventLoss) {
			loss = attrMap(r.Attrs)
		}
	}
	if !slices.Equal(events, []string{string(trail.EventLoss), string(trail.EventAgentStop)}) {
		t.Fatalf("spooled %v, want the loss record and the stop record", events)
	}
	if loss["connaudit.lost.seq.first"].AsInt64() != 1 || loss["connaudit.lost.seq.last"].AsInt64() != 1 || loss["connaudit.lost.reason"].AsString() != string(trail.LossSpoolError) {
		t.Fatalf("loss record %v: want seq 1, spool_error", loss)
	}
	if n := testutil.ToFloat64(sh.metrics.Lost.WithLabelValues(string(trail.LossSpoolError))); n != 1 {
		t.Fatalf("counted %v lost, want 1", n)
	}
}
