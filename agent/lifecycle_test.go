package agent

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"

	"github.com/connaudit/connaudit/bpf"
	"github.com/connaudit/connaudit/shipper"
	"github.com/connaudit/connaudit/shipper/spool"
	"github.com/connaudit/connaudit/trail"
)

// The ring-buffer loss of a replaced capture reaches the trail even when the
// spool is full at start: it is written once the spool takes records again.
func TestTakeoverLossSurvivesAFullSpoolAtStart(t *testing.T) {
	sp, _, err := spool.Open(t.TempDir(), spool.Options{MaxBytes: 16 << 10, SegmentBytes: 2 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	ledger := shipper.NewLedger(sp, nil, shipper.NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	var tiny shipper.Encoder
	for i := 0; sp.Stats().Records == int64(i); i++ {
		tiny.Reset(trail.EventAgentStop, time.Now(), time.Now(), 0, nil, nil)
		ledger.Emit(tiny.Finish())
	}

	ReportTakeovers(ledger, []bpf.Takeover{{Dir: "/sys/fs/bpf/connaudit/v1-old", Unreported: bpf.Counters{RingBufferLost: 9}}},
		slog.New(slog.NewTextHandler(io.Discard, nil)))

	for sp.Stats().Records > 0 {
		batch, err := sp.Next(context.Background(), 1000, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := sp.Ack(batch); err != nil {
			t.Fatal(err)
		}
	}
	ledger.EmitAgentEvent(trail.EventAgentStop, "stopped", time.Now(), 0, nil)
	batch, err := sp.Next(context.Background(), 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range batch.Records {
		var r shipper.Record
		if err := shipper.Decode(p, &r); err != nil {
			t.Fatal(err)
		}
		for _, kv := range r.Attrs {
			if kv.Key == attributeKey(trail.KeyLostReason) && kv.Value.AsString() == string(trail.LossRingBuffer) {
				found = true
				for _, c := range r.Attrs {
					if c.Key == attributeKey(trail.KeyLostCount) && c.Value.AsInt64() != 9 {
						t.Errorf("ring_buffer loss of %d, want 9", c.Value.AsInt64())
					}
				}
			}
		}
	}
	if !found {
		t.Fatal("the replaced capture's ring_buffer loss is not in the spool")
	}
}

func attributeKey(k trail.Key) attribute.Key { return attribute.Key(k) }
