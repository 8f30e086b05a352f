package shipper

import (
	"encoding/binary"
	"math"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"

	"github.com/connaudit/connaudit/trail"
	"github.com/connaudit/connaudit/trail/chain"
)

// v1Payload is a record as agents before encode-once spooled it (spool
// payload version 1), with resource and attributes as version 1 attribute
// lists.
func v1Payload(seq uint64, at time.Time, event trail.Event, body string, resource, attrs []byte) []byte {
	le := binary.LittleEndian
	p := []byte{v1Version}
	p = le.AppendUint64(p, seq)
	p = le.AppendUint64(p, uint64(at.UnixNano()))
	p = le.AppendUint64(p, uint64(at.UnixNano()))
	p = append(p, byte(log.SeverityInfo))
	for _, s := range [][]byte{[]byte(event), []byte(body), resource} {
		p = binary.AppendUvarint(p, uint64(len(s)))
		p = append(p, s...)
	}
	return append(p, attrs...)
}

// v1Attrs encodes attributes as a version 1 attribute list.
func v1Attrs(kvs ...attribute.KeyValue) []byte {
	var b []byte
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	for _, kv := range kvs {
		str(string(kv.Key))
		switch kv.Value.Type() {
		case attribute.INT64:
			b = append(b, v1Int)
			b = binary.AppendVarint(b, kv.Value.AsInt64())
		case attribute.FLOAT64:
			b = append(b, v1Float)
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(kv.Value.AsFloat64()))
		case attribute.BOOL:
			b = append(b, v1Bool)
			if kv.Value.AsBool() {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
		default:
			b = append(b, v1String)
			str(kv.Value.Emit())
		}
	}
	return b
}

// A record an older agent spooled converts to the same record, attribute
// for attribute, with the seq it had and its chain value intact: the
// canonical form of the converted record is the one that agent hashed.
func TestV1RecordConvertsToTheSameRecord(t *testing.T) {
	at := time.Unix(1700000000, 5)
	res := []attribute.KeyValue{attribute.String("service.instance.id", "i-1"), attribute.String("k8s.node.name", "node-1")}
	attrs := []attribute.KeyValue{
		attribute.String("network.peer.address", "198.51.100.7"), attribute.Int64("network.peer.port", 443),
		attribute.Float64("connaudit.connect.duration", 0.00021), attribute.Bool("connaudit.identity.lost", true),
	}
	// The chain value that agent computed: the canonical form of the same
	// content, with its seq.
	var c chain.Canon
	c.Reset(string(trail.EventConnect), at.UnixNano(), int64(log.SeverityInfo), "curl -> 198.51.100.7:443")
	for _, kv := range res {
		c.String(string(kv.Key), kv.Value.AsString())
	}
	c.String("network.peer.address", "198.51.100.7")
	c.Int("network.peer.port", 443)
	c.Float("connaudit.connect.duration", 0.00021)
	c.Bool("connaudit.identity.lost", true)
	c.Int(string(trail.KeySeq), 41)
	want := chain.Next(chain.Link{}, c.Leaf())

	var conv v1Converter
	p, err := conv.convert(v1Payload(41, at, trail.EventConnect, "curl -> 198.51.100.7:443", v1Attrs(res...), v1Attrs(attrs...)))
	if err != nil {
		t.Fatal(err)
	}
	var r Record
	if err := Decode(p, &r); err != nil {
		t.Fatal(err)
	}
	if r.Seq != 41 || !r.Timestamp.Equal(at) || r.EventName != string(trail.EventConnect) || len(r.Resource) != 2 {
		t.Fatalf("converted %+v", r)
	}
	got := attrMap(r.Attrs)
	for _, kv := range append(attrs, attribute.Int64(string(trail.KeySeq), 41)) {
		if got[string(kv.Key)] != kv.Value {
			t.Errorf("%s = %v, want %v", kv.Key, got[string(kv.Key)].Emit(), kv.Value.Emit())
		}
	}
	if link := payloadLink(t, chain.Genesis, p); link != want {
		t.Errorf("chain value of the converted record %v, want the original's %v", link, want)
	}
}
