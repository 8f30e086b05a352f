package shipper

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"

	"github.com/connaudit/connaudit/dns"
	"github.com/connaudit/connaudit/shipper/otlp"
	"github.com/connaudit/connaudit/shipper/spool"
	"github.com/connaudit/connaudit/trail"
	"github.com/connaudit/connaudit/trail/chain"
)

// payloadLink is the chain value after prev of a stamped payload, computed
// from its OTLP bytes as a verifier computes it from a stored record: from
// what the record sends, not from the values it was built from.
func payloadLink(t testing.TB, prev chain.Link, payload []byte) chain.Link {
	t.Helper()
	res, rec, err := splitPayload(payload)
	if err != nil {
		t.Fatal(err)
	}
	var h otlp.LogRecordHead
	if err := otlp.ReadLogRecord(rec, &h, nil); err != nil {
		t.Fatal(err)
	}
	var c chain.Canon
	c.Reset(string(h.EventName), int64(h.Time), h.Severity, string(h.Body.Str))
	add := func(k []byte, v otlp.Value) error {
		key := string(k)
		switch v.Kind {
		case otlp.KindString:
			if key != string(trail.KeyChain) {
				c.String(key, string(v.Str))
			}
		case otlp.KindInt:
			c.Int(key, v.Int)
		case otlp.KindDouble:
			c.Float(key, v.Double)
		case otlp.KindBool:
			c.Bool(key, v.Bool)
		default:
			t.Fatalf("attribute %s: kind %d", key, v.Kind)
		}
		return nil
	}
	if err := otlp.ReadResource(res, add); err != nil {
		t.Fatal(err)
	}
	if err := otlp.ReadLogRecord(rec, &h, add); err != nil {
		t.Fatal(err)
	}
	return chain.Next(prev, c.Leaf())
}

// The ledger chains a record from the values it was built from, without
// parsing what it encoded. Every record it spools, of every kind, must
// carry the chain value that its own OTLP bytes hash to.
func TestCanonOfValuesIsCanonOfBytes(t *testing.T) {
	sp, _, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	agentRes := NewResource(map[attribute.Key]attribute.Value{
		"service.name": attribute.StringValue("connaudit"), "service.instance.id": attribute.StringValue("i-1"),
		"host.arch": attribute.StringValue("amd64"), "team": attribute.StringValue("a\xffb"),
		"container.image.tags": attribute.StringSliceValue([]string{"1.4", "latest"}), "n": attribute.IntValue(3),
	})
	l := NewLedger(sp, agentRes, NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	_, key, _ := ed25519.GenerateKey(nil)
	l.EnableCheckpoints(CheckpointConfig{Instance: "i-1", Key: key, Records: 3})
	l.EmitAgentEvent(trail.EventAgentStart, "started", time.Now(), log.SeverityInfo, func(a *AttrList) { a.Float(trail.KeyHeartbeat, 10) })
	for i, p := range realisticBatch(7) {
		var r Record
		if err := Decode(p, &r); err != nil {
			t.Fatal(err)
		}
		var e Encoder
		e.Reset(trail.Event(r.EventName), r.Timestamp, r.Observed, r.Severity, []byte(r.Body), newResource(r.Resource))
		for _, kv := range r.Attrs {
			if kv.Key != attribute.Key(trail.KeySeq) {
				e.Append(kv)
			}
		}
		e.Float(trail.KeyConnectDuration, 0.1*float64(i)) // a double that prints with a fraction
		e.Bool(trail.KeyHostNetwork, i%2 == 0)
		l.Emit(e.Finish())
	}
	var d DNSAnswerBuilder
	l.Emit(d.Build(&DNSAnswer{Answer: &dns.Answer{Question: "api.example.com", Addrs: []dns.Addr{{IP: netip.MustParseAddr("203.0.113.80"), TTL: 30}}},
		Received: time.Now(), Observed: time.Now(), Resolver: "198.51.100.53:53", Resource: agentRes}))
	l.Lose(Loss{Reason: trail.LossRejected, Count: 2, FirstSeq: 3, LastSeq: 4, Detail: "refused"})
	l.EmitAgentEvent(trail.EventAgentStop, "stopped", time.Now(), log.SeverityInfo, nil)

	batch, err := sp.Next(context.Background(), 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	prev := chain.Genesis
	events := map[string]int{}
	for _, p := range batch.Records {
		var r Record
		if err := Decode(p, &r); err != nil {
			t.Fatal(err)
		}
		events[r.EventName]++
		want := payloadLink(t, prev, p)
		got := attrMap(r.Attrs)[string(trail.KeyChain)].AsString()
		if got != want.String() {
			t.Fatalf("seq %d (%s): carries chain value %s, its bytes hash to %s", r.Seq, r.EventName, got, want)
		}
		prev = want
	}
	for _, ev := range []trail.Event{trail.EventAgentStart, trail.EventConnect, trail.EventCheckpoint, trail.EventDNSAnswer, trail.EventLoss, trail.EventAgentStop} {
		if events[string(ev)] == 0 {
			t.Errorf("no %s record among %v", ev, events)
		}
	}
	if !bytes.Equal(prev[:], l.chain.head[:]) {
		t.Errorf("the ledger's head %s is not the last record's chain value %s", l.chain.head, prev)
	}
}
