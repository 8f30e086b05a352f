package shipper

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/connaudit/connaudit/bpf"
	"github.com/connaudit/connaudit/trail"
)

var schemaTypes = map[attribute.Type]trail.Type{
	attribute.STRING: trail.TypeString, attribute.INT64: trail.TypeInt,
	attribute.FLOAT64: trail.TypeDouble, attribute.BOOL: trail.TypeBool,
}

func declared(key string) (trail.Attribute, bool) {
	for _, a := range trail.ConnectAttributes {
		if string(a.Key) == key || a.Prefix && strings.HasPrefix(key, string(a.Key)) {
			return a, true
		}
	}
	return trail.Attribute{}, false
}

// Every attribute the connect builder writes is in trail.ConnectAttributes
// (and so in README's table), with the type the schema gives it.
func TestConnectRecordFollowsTheSchema(t *testing.T) {
	established, refused, lost := testEvent(), testEvent(), testEvent()
	refused.Outcome, refused.Errno = bpf.Refused, syscall.ECONNREFUSED
	lost.IdentityLost = true
	src := &Source{ContainerID: "c0ffee", ExecutablePath: "/usr/bin/curl", ServerName: "api.example.com"}
	for _, ev := range []bpf.Event{established, refused, lost} {
		var b ConnectBuilder
		var r Record
		if err := Decode(b.Build(&ev, time.Now(), time.Now(), time.Now(), src).Payload(), &r); err != nil {
			t.Fatal(err)
		}
		if r.EventName != string(trail.EventConnect) {
			t.Fatalf("event %q, want %s", r.EventName, trail.EventConnect)
		}
		for _, kv := range r.Attrs {
			a, ok := declared(string(kv.Key))
			if !ok {
				t.Errorf("%s is written but not in trail.ConnectAttributes", kv.Key)
				continue
			}
			if got := schemaTypes[kv.Value.Type()]; got != a.Type {
				t.Errorf("%s is written as %s, the schema says %s", kv.Key, got, a.Type)
			}
		}
	}
}
