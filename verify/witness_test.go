package verify_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/log"

	"github.com/connaudit/connaudit/shipper"
	"github.com/connaudit/connaudit/shipper/handoff"
	"github.com/connaudit/connaudit/shipper/spool"
	"github.com/connaudit/connaudit/trail"
	"github.com/connaudit/connaudit/trail/chain"
	"github.com/connaudit/connaudit/trail/checkpoint"
	"github.com/connaudit/connaudit/trail/witness"
	"github.com/connaudit/connaudit/verify"
)

// witnessedInstance has a real Ledger write one instance (start, n records,
// stop) with recent timestamps, checkpoints every 50 records, and tells a
// witness entry of every checkpoint, as the agent's witness writer is told.
func witnessedInstance(t *testing.T, id string, prev *handoff.State, n int, key ed25519.PrivateKey) ([]map[string]string, witness.Instance, handoff.State) {
	t.Helper()
	sp, _, err := spool.Open(t.TempDir(), spool.Options{MaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	res := shipper.NewResource(map[attribute.Key]attribute.Value{
		attribute.Key(trail.KeyServiceName):       attribute.StringValue("connaudit"),
		attribute.Key(trail.KeyServiceInstanceID): attribute.StringValue(id),
		attribute.Key(trail.KeyK8sNodeName):       attribute.StringValue("node-1"),
	})
	l := shipper.NewLedger(sp, res, shipper.NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if key == nil {
		_, key, _ = ed25519.GenerateKey(rand.Reader)
	}
	t0 := time.Now().Add(-time.Second)
	in := witness.Instance{ID: id, Key: checkpoint.EncodePublicKey(key.Public().(ed25519.PublicKey)), Started: t0, Heartbeat: 10 * time.Second}
	l.EnableCheckpoints(shipper.CheckpointConfig{Instance: id, Key: key, Records: 50,
		Witness: func(c checkpoint.Checkpoint, sig string, at time.Time) {
			in.Latest = &witness.Checkpoint{First: c.First, Last: c.Last, Count: c.Count, Head: c.Head.String(), Signature: sig, Time: at}
		}})
	l.EmitAgentEvent(trail.EventAgentStart, "started", t0, log.SeverityInfo, func(a *shipper.AttrList) {
		if prev != nil {
			a.String(trail.KeyPreviousInstance, prev.Instance)
			a.Int(trail.KeyPreviousSeq, int64(prev.Seq))
			a.String(trail.KeyPreviousChain, prev.Chain)
		}
		a.Float(trail.KeyHeartbeat, 10)
	})
	var enc shipper.Encoder
	for i := range n {
		ts := t0.Add(time.Duration(i) * time.Microsecond)
		enc.Reset(trail.EventConnect, ts, ts, log.SeverityInfo, []byte("curl -> 198.51.100.7:80 established"), res)
		enc.String(trail.KeyPeerAddress, "198.51.100.7")
		l.Emit(enc.Finish())
	}
	l.EmitAgentEvent(trail.EventAgentStop, "stopped", time.Now(), log.SeverityInfo, nil)
	seq, head := l.Head()
	rows := storedRows(t, sp)
	return rows, in, handoff.State{Instance: id, Seq: seq, Chain: head.String()}
}

// runWitnessed runs verify over rows with the witnesses ws (nil: none).
func runWitnessed(t *testing.T, rows []map[string]string, ws *verify.Witnesses) (*verify.Report, string) {
	t.Helper()
	window := map[string]bool{}
	for _, r := range rows {
		window[r[string(trail.KeyServiceInstanceID)]] = true
	}
	var out bytes.Buffer
	err := verify.Run(context.Background(), sliceSource{rows, window}, verify.Request{
		From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Minute), Format: "json", Witnesses: ws,
	}, &out)
	if err != nil && !errors.Is(err, verify.ErrFindings) {
		t.Fatal(err)
	}
	var rep verify.Report
	if err := jsonDecode(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	return &rep, out.String()
}

// witnessOf is node-1's witness after instances ran in order.
func witnessOf(ins ...witness.Instance) *verify.Witnesses {
	var w witness.Witness
	for _, in := range ins {
		w.Begin("node-1", in)
	}
	return &verify.Witnesses{Source: "test", List: []witness.Witness{w}}
}

func kinds(r *verify.Report) map[verify.Kind]int {
	m := map[verify.Kind]int{}
	for _, f := range r.Findings {
		m[f.Kind]++
	}
	return m
}

// Two instances on a node, the second naming the first, each stopped.
func TestWitnessUntouched(t *testing.T) {
	a, wa, ha := witnessedInstance(t, "instance-a", nil, 120, nil)
	b, wb, _ := witnessedInstance(t, "instance-b", &ha, 120, nil)
	rep, out := runWitnessed(t, append(a, b...), witnessOf(wa, wb))
	if !rep.OK() {
		t.Fatalf("untouched trail with its witness: %v\n%s", rep.Findings, out)
	}
	if rep.Witness == nil || len(rep.Witness.Nodes) != 1 || rep.Witness.Instances != 2 || rep.Witness.WeakerNote != "" {
		t.Errorf("witness report %+v; want node-1 with 2 instances, no weaker note", rep.Witness)
	}
	for _, p := range rep.Instances {
		if p.WitnessedSeq == 0 {
			t.Errorf("instance %s: the witnessed checkpoint was not found in the trail", p.Instance)
		}
	}
	// Without witnesses: verified too, but flagged as the weaker proof.
	rep, _ = runWitnessed(t, append(a, b...), &verify.Witnesses{Missing: "no kubeconfig context"})
	if !rep.OK() || rep.Witness.WeakerNote == "" || rep.Witness.Missing == "" {
		t.Errorf("without witness: ok %v, witness %+v; want verified and flagged weaker", rep.OK(), rep.Witness)
	}
}

// The newest instance's tail, with its last checkpoints and its stop
// record, is deleted: nothing in the trail names what is gone (the
// records are recent, so silence is no finding yet); the witness does.
func TestWitnessFindsDeletedTail(t *testing.T) {
	a, wa, ha := witnessedInstance(t, "instance-a", nil, 120, nil)
	b, wb, _ := witnessedInstance(t, "instance-b", &ha, 120, nil)
	cut := b[:60] // seqs 1..60: start, records, the checkpoint after 50
	rows := append(append([]map[string]string{}, a...), cut...)
	if rep, out := runWitnessed(t, rows, nil); !rep.OK() {
		t.Fatalf("the test's premise: the trail alone reveals the deleted tail: %v\n%s", rep.Findings, out)
	}
	rep, _ := runWitnessed(t, rows, witnessOf(wa, wb))
	k := kinds(rep)
	if k[verify.Deleted] != 1 || len(rep.Findings) != 1 {
		t.Fatalf("findings %v; want one deleted", rep.Findings)
	}
	f := rep.Findings[0]
	if f.Instance != "instance-b" || f.First != 61 || f.Last != wb.Latest.Last+1 || !strings.Contains(f.Detail, "the tail was deleted") {
		t.Errorf("finding %s; want instance-b seq 61-%d deleted tail", f, wb.Latest.Last+1)
	}
}

// A whole instance is deleted, and the next one does not name it (its
// node's spool, and so the handoff, was lost): the trail alone verifies;
// the witness's history names the deleted instance.
func TestWitnessFindsDeletedInstance(t *testing.T) {
	_, wa, _ := witnessedInstance(t, "instance-a", nil, 120, nil)
	b, wb, _ := witnessedInstance(t, "instance-b", nil, 120, nil)
	if rep, out := runWitnessed(t, b, nil); !rep.OK() {
		t.Fatalf("the test's premise: the trail alone reveals the deleted instance: %v\n%s", rep.Findings, out)
	}
	rep, _ := runWitnessed(t, b, witnessOf(wa, wb))
	if len(rep.Findings) != 1 || rep.Findings[0].Kind != verify.Deleted || rep.Findings[0].Instance != "instance-a" ||
		!strings.Contains(rep.Findings[0].Detail, "deleted whole") {
		t.Fatalf("findings %v; want instance-a deleted whole", rep.Findings)
	}
}

// The newest instance is rewritten, same id and records, under a forger's
// key: its own start record and checkpoints agree, so the trail alone
// verifies; the witness holds the agent's key.
func TestWitnessFindsSwappedKey(t *testing.T) {
	_, wa, _ := witnessedInstance(t, "instance-a", nil, 120, nil)
	forged, _, _ := witnessedInstance(t, "instance-a", nil, 120, nil) // another key
	if rep, out := runWitnessed(t, forged, nil); !rep.OK() {
		t.Fatalf("the test's premise: the trail alone reveals the forgery: %v\n%s", rep.Findings, out)
	}
	rep, _ := runWitnessed(t, forged, witnessOf(wa))
	k := kinds(rep)
	if k[verify.Unsigned] == 0 {
		t.Fatalf("findings %v; want unsigned (key not the witnessed one)", rep.Findings)
	}
	keyFound := false
	for _, f := range rep.Findings {
		if f.Kind == verify.Unsigned && strings.Contains(f.Detail, "not the key") && f.First == 1 {
			keyFound = true
		}
	}
	if !keyFound {
		t.Errorf("no finding names the start record's key as not the witnessed one: %v", rep.Findings)
	}
}

// An instance that the witness does not know, on a witnessed node, after
// the witness's horizon: inserted.
func TestWitnessFindsUnknownInstance(t *testing.T) {
	a, wa, _ := witnessedInstance(t, "instance-a", nil, 60, nil)
	x, _, _ := witnessedInstance(t, "instance-x", nil, 60, nil)
	rep, _ := runWitnessed(t, append(a, x...), witnessOf(wa))
	if len(rep.Findings) != 1 || rep.Findings[0].Kind != verify.Inserted || rep.Findings[0].Instance != "instance-x" {
		t.Fatalf("findings %v; want instance-x inserted", rep.Findings)
	}
}

// A witness entry whose checkpoint signature does not verify (written by
// someone other than the agent) is named, not trusted.
func TestWitnessForgedEntry(t *testing.T) {
	a, wa, _ := witnessedInstance(t, "instance-a", nil, 60, nil)
	bad := wa
	c := *wa.Latest
	c.Head = chain.Genesis.String()
	bad.Latest = &c
	rep, _ := runWitnessed(t, a, witnessOf(bad))
	if len(rep.Findings) != 1 || rep.Findings[0].Kind != verify.Unsigned || !strings.Contains(rep.Findings[0].Detail, "witness's own checkpoint") {
		t.Fatalf("findings %v; want the witness entry unsigned", rep.Findings)
	}
}

func jsonDecode(b []byte, v any) error { return json.Unmarshal(b, v) }
