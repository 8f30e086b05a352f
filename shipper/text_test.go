package shipper

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/connaudit/connaudit/trail"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"
)

// Whatever bytes a record is built from, it decodes to valid, bounded UTF-8.
func TestRecordTextIsValidAndBounded(t *testing.T) {
	long := strings.Repeat("é", MaxTextBytes) // 2 bytes a rune: cut mid-rune unless done right
	res := EncodeAttrs(map[attribute.Key]attribute.Value{
		"team":                 attribute.StringValue("\xff"),
		"k8s.pod.label.x\xfe":  attribute.StringValue("ok"),
		"container.image.name": attribute.StringValue(long),
	})
	var e Encoder
	e.Reset(trail.EventConnect, time.Now(), time.Now(), log.SeverityInfo, []byte("curl\xc3 -> x"), res)
	e.String("process.executable.path", "/bin/\xff\xfe")
	e.StringBytes("k8s.pod.label.app", []byte("web\x80"))

	var r Record
	if err := Decode(e.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	resAttrs, err := DecodeAttrs(r.Resource, nil)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what, s string) {
		t.Helper()
		if !utf8.ValidString(s) || len(s) > MaxTextBytes {
			t.Errorf("%s: %d bytes, valid UTF-8 %v: %q", what, len(s), utf8.ValidString(s), s[:min(len(s), 40)])
		}
	}
	check("body", r.Body)
	for _, kv := range append(resAttrs, r.Attrs...) {
		check("key", string(kv.Key))
		check(string(kv.Key), kv.Value.AsString())
	}
	got := attrMap(resAttrs)
	if v := got["team"].AsString(); v != "\uFFFD" {
		t.Errorf("team = %q, want U+FFFD", v)
	}
	if v := got["container.image.name"].AsString(); !strings.HasPrefix(long, v) || len(v) < MaxTextBytes-1 {
		t.Errorf("long value cut to %d bytes, not a prefix of at most %d", len(v), MaxTextBytes)
	}
}

// A spool written before strings were sanitized still drains: decoding makes
// them valid, so the record can be marshalled.
func TestDecodeSanitizesOldPayloads(t *testing.T) {
	var l AttrList
	l.buf = appendBytes(l.buf, []byte("team"))
	l.buf = append(l.buf, kindString)
	l.buf = appendBytes(l.buf, []byte("\xff"))
	var e Encoder
	e.Reset(trail.EventConnect, time.Now(), time.Now(), log.SeverityInfo, []byte("body"), l.Bytes())
	var r Record
	if err := Decode(e.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	attrs, err := DecodeAttrs(r.Resource, nil)
	if err != nil || len(attrs) != 1 || attrs[0].Value.AsString() != "\uFFFD" {
		t.Fatalf("decoded %v, %v: want team=U+FFFD", attrs, err)
	}
}

func BenchmarkAppendText(b *testing.B) {
	buf := make([]byte, 0, 64)
	for b.Loop() {
		buf = appendText(buf[:0], "k8s.pod.label.app.kubernetes.io/name")
	}
}
