package shipper

import (
	"bytes"
	"crypto/ed25519"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"

	"github.com/connaudit/connaudit/bpf"
	"github.com/connaudit/connaudit/trail"
	"github.com/connaudit/connaudit/trail/checkpoint"
)

func testEvent() bpf.Event {
	ev := bpf.Event{
		StartNs: 1, EndNs: 2, CgroupID: 77, PID: 4242, TID: 4243, PPID: 1, UID: 1000, GID: 100,
		MntNS: 4026531841, NetNS: 4026531840, Outcome: bpf.Established,
		Local: netip.MustParseAddrPort("127.0.0.1:40000"),
		Peer:  netip.MustParseAddrPort("127.0.0.1:8080"),
	}
	ev.SetComm("curl")
	return ev
}

func attrMap(attrs []attribute.KeyValue) map[string]attribute.Value {
	m := map[string]attribute.Value{}
	for _, kv := range attrs {
		m[string(kv.Key)] = kv.Value
	}
	return m
}

func TestConnectRecordRoundTrip(t *testing.T) {
	resource := NewResource(map[attribute.Key]attribute.Value{"service.name": attribute.StringValue("connaudit")})

	ev := testEvent()
	start := time.Unix(1700000000, 123456789)
	end := start.Add(210 * time.Microsecond)
	observed := end.Add(time.Millisecond)
	var b ConnectBuilder
	payload := appendSeq(b.Build(&ev, start, end, observed, &Source{Resource: resource, ContainerID: "abc", ExecutablePath: "/usr/bin/curl"}).Payload(), 7)

	var r Record
	if err := Decode(payload, &r); err != nil {
		t.Fatal(err)
	}
	if r.Seq != 7 || !r.Timestamp.Equal(start) || !r.Observed.Equal(observed) || r.Severity != log.SeverityInfo || r.EventName != string(trail.EventConnect) {
		t.Fatalf("header: %+v", r)
	}
	if r.Body != "curl (pid 4242) -> 127.0.0.1:8080 established in 0.21 ms" {
		t.Errorf("body %q", r.Body)
	}
	if len(r.Resource) != 1 || r.Resource[0] != attribute.String("service.name", "connaudit") {
		t.Errorf("resource %v, want service.name=connaudit", r.Resource)
	}
	a := attrMap(r.Attrs)
	for k, want := range map[string]attribute.Value{
		"network.transport":          attribute.StringValue("tcp"),
		"network.type":               attribute.StringValue("ipv4"),
		"network.local.address":      attribute.StringValue("127.0.0.1"),
		"network.local.port":         attribute.Int64Value(40000),
		"network.peer.address":       attribute.StringValue("127.0.0.1"),
		"network.peer.port":          attribute.Int64Value(8080),
		"server.address":             attribute.StringValue("127.0.0.1"),
		"server.port":                attribute.Int64Value(8080),
		"connaudit.outcome":          attribute.StringValue("established"),
		"connaudit.connect.duration": attribute.Float64Value(0.00021),
		"process.pid":                attribute.Int64Value(4242),
		"process.parent_pid":         attribute.Int64Value(1),
		"thread.id":                  attribute.Int64Value(4243),
		"process.executable.name":    attribute.StringValue("curl"),
		"process.executable.path":    attribute.StringValue("/usr/bin/curl"),
		"process.user.id":            attribute.Int64Value(1000),
		"container.id":               attribute.StringValue("abc"),
		"connaudit.netns":            attribute.Int64Value(4026531840),
	} {
		if got, ok := a[k]; !ok || got != want {
			t.Errorf("%s = %v, want %v", k, got.Emit(), want.Emit())
		}
	}
	if _, ok := a["error.type"]; ok {
		t.Error("error.type set on an established connection")
	}
}

func TestFailedConnectRecord(t *testing.T) {
	ev := testEvent()
	ev.Outcome, ev.Errno = bpf.Refused, syscall.ECONNREFUSED
	ev.Peer = netip.MustParseAddrPort("[2001:db8::1]:443")
	var b ConnectBuilder
	start := time.Now()
	var r Record
	if err := Decode(b.Build(&ev, start, start.Add(1500*time.Microsecond), start, &Source{}).Payload(), &r); err != nil {
		t.Fatal(err)
	}
	a := attrMap(r.Attrs)
	if r.Severity != log.SeverityWarn || a["error.type"].AsString() != "ECONNREFUSED" || a["network.type"].AsString() != "ipv6" {
		t.Errorf("severity %v error.type %q network.type %q", r.Severity, a["error.type"].AsString(), a["network.type"].AsString())
	}
	if r.Body != "curl (pid 4242) -> [2001:db8::1]:443 refused (ECONNREFUSED) after 1.50 ms" {
		t.Errorf("body %q", r.Body)
	}
	ev.Outcome, ev.Errno = bpf.Aborted, 0
	if err := Decode(b.Build(&ev, start, start, start, &Source{}).Payload(), &r); err != nil {
		t.Fatal(err)
	}
	if got := attrMap(r.Attrs)["error.type"].AsString(); got != "aborted" {
		t.Errorf("aborted error.type %q", got)
	}
}

// A process may name itself anything; the record must stay valid UTF-8.
func TestOddProcessNames(t *testing.T) {
	ev := testEvent()
	ev.SetComm("a\xff\x01b\nc\u00e9")
	var b ConnectBuilder
	var r Record
	if err := Decode(b.Build(&ev, time.Now(), time.Now(), time.Now(), &Source{}).Payload(), &r); err != nil {
		t.Fatal(err)
	}
	if got := attrMap(r.Attrs)["process.executable.name"].AsString(); got != "a\uFFFD\uFFFDb\uFFFDc\u00e9" {
		t.Errorf("name %q", got)
	}
}

func TestDecodeRejectsDamage(t *testing.T) {
	ev := testEvent()
	var b ConnectBuilder
	payload := b.Build(&ev, time.Now(), time.Now(), time.Now(), &Source{}).Payload()
	var r Record
	for n := 0; n < len(payload); n++ {
		if err := Decode(payload[:n], &r); err == nil && n < headerSize {
			t.Fatalf("decoded a %d-byte prefix", n)
		}
	}
	future := append([]byte(nil), payload...)
	future[0] = recordVersion + 1
	if err := Decode(future, &r); err == nil {
		t.Error("decoded a record of a newer version")
	}
}

func FuzzDecodeRecord(f *testing.F) {
	ev := testEvent()
	var b ConnectBuilder
	f.Add(bytes.Clone(b.Build(&ev, time.Now(), time.Now(), time.Now(), &Source{}).Payload()))
	f.Add([]byte{recordVersion})
	f.Fuzz(func(t *testing.T, payload []byte) {
		var r Record
		_ = Decode(payload, &r) // must not panic, whatever the bytes
	})
}

func BenchmarkBuildConnect(b *testing.B) {
	ev := testEvent()
	var cb ConnectBuilder
	src := &Source{Resource: NewResource(map[attribute.Key]attribute.Value{"service.name": attribute.StringValue("connaudit")}), ExecutablePath: "/usr/bin/curl"}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		cb.Build(&ev, now, now, now, src)
	}
}

// chainedConnect is a connect record of a pod, finished, as the chain
// benchmarks chain it.
func chainedConnect() *Encoder {
	ev := testEvent()
	cb := new(ConnectBuilder)
	res := NewResource(map[attribute.Key]attribute.Value{
		attribute.Key(trail.KeyServiceInstanceID): attribute.StringValue("i-1"),
		attribute.Key(trail.KeyK8sNodeName):       attribute.StringValue("node-1"),
		attribute.Key(trail.KeyK8sPodName):        attribute.StringValue("web-7d9f8-abcde"),
	})
	now := time.Now()
	return cb.Build(&ev, now, now, now, &Source{Resource: res, ExecutablePath: "/usr/bin/curl"})
}

// chainNext does what chaining adds to a finished record: its canonical
// form (built as the SDK processor builds it), its seq, and the two SHA-256
// of its chain value, which becomes l's head.
func chainNext(l *Ledger, e *Encoder, body string) {
	l.seq++
	e.canonical(string(e.event), e.ts.UnixNano(), int64(e.sev), body)
	e.canon.Int(string(trail.KeySeq), int64(l.seq))
	l.chain.head = l.chain.link(e)
}

// BenchmarkLedgerChain is what chaining adds to the ledger per connect
// record: its canonical form and two SHA-256.
func BenchmarkLedgerChain(b *testing.B) {
	e := chainedConnect()
	body := string(e.body)
	l := &Ledger{}
	b.ReportAllocs()
	for b.Loop() {
		chainNext(l, e, body)
	}
}

// BenchmarkChainAndCheckpointsAt5000PerSecond is what tamper evidence adds
// to the agent per connect record at the default checkpoint interval
// (CONNAUDIT_CHECKPOINT_RECORDS=1000): the record's chain value, and a
// thousandth of a signed checkpoint (its Ed25519 signature, its encoding
// and its own chain value). %core@5000/s is that cost at 5,000 connects a
// second, in percent of one core; at that rate the 10 s timer never fires
// first.
func BenchmarkChainAndCheckpointsAt5000PerSecond(b *testing.B) {
	e := chainedConnect()
	body := string(e.body)
	now := time.Now()
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	const every = 1000
	l := &Ledger{}
	first := uint64(1)
	var cp Encoder
	b.ReportAllocs()
	for b.Loop() {
		chainNext(l, e, body)
		if l.seq+1-first < every {
			continue
		}
		c := checkpoint.Checkpoint{Instance: "i-1", First: first, Last: l.seq, Count: every, Head: l.chain.head}
		cp.Reset(trail.EventCheckpoint, now, now, log.SeverityInfo, []byte("checkpoint"), e.res)
		cp.Int(trail.KeyCheckpointSeqFirst, int64(c.First))
		cp.Int(trail.KeyCheckpointSeqLast, int64(c.Last))
		cp.Int(trail.KeyCheckpointCount, int64(c.Count))
		cp.String(trail.KeyCheckpointHead, c.Head.String())
		cp.String(trail.KeyCheckpointSignature, checkpoint.Sign(key, c))
		chainNext(l, cp.Finish(), "checkpoint")
		first = l.seq + 1
	}
	perRecord := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(perRecord*5000/1e9*100, "%core@5000/s")
}
