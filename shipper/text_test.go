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
	res := NewResource(map[attribute.Key]attribute.Value{
		"team":                 attribute.StringValue("\xff"),
		"k8s.pod.label.x\xfe":  attribute.StringValue("ok"),
		"container.image.name": attribute.StringValue(long),
	})
	var e Encoder
	e.Reset(trail.EventConnect, time.Now(), time.Now(), log.SeverityInfo, []byte("curl\xc3 -> x"), res)
	e.String("process.executable.path", "/bin/\xff\xfe")
	e.StringBytes("k8s.pod.label.app", []byte("web\x80"))

	var r Record
	if err := Decode(e.Finish().Payload(), &r); err != nil {
		t.Fatal(err)
	}
	resAttrs := r.Resource
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

// A spool written before strings were sanitized, in the spool's version 1
// format, still drains: converting it makes them valid, so the request can
// be marshalled.
func TestConvertSanitizesOldPayloads(t *testing.T) {
	badResource := []byte{4, 't', 'e', 'a', 'm', v1String, 1, 0xff} // team="\xff"
	var c v1Converter
	p, err := c.convert(v1Payload(9, time.Now(), trail.EventConnect, "body\xfe", badResource, nil))
	if err != nil {
		t.Fatal(err)
	}
	var r Record
	if err := Decode(p, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Resource) != 1 || r.Resource[0].Value.AsString() != "\uFFFD" || r.Body != "body\uFFFD" || r.Seq != 9 {
		t.Fatalf("converted to resource %v, body %q, seq %d: want team=U+FFFD, body U+FFFD, seq 9", r.Resource, r.Body, r.Seq)
	}
}
