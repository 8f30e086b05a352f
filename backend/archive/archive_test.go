package archive

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connaudit/connaudit/backend"
	"github.com/connaudit/connaudit/trail/coverage"
)

var t0 = time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)

func write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOpenErrorsNameFileAndLine(t *testing.T) {
	good := `{"_time":"2026-11-24T14:00:01Z","_msg":"m","event_name":"tcp.connect"}`
	for _, tc := range []struct{ content, want string }{
		{good + "\n{not json\n", "bad.jsonl, line 2: not a JSON object"},
		{good + "\n\n" + `{"_msg":"m","event_name":"tcp.connect"}`, `bad.jsonl, line 3: no "_time"`},
		{`{"_time":"yesterday","event_name":"tcp.connect"}`, `bad.jsonl, line 1: field "_time"`},
		{`{"_time":"2026-11-24T14:00:01Z"}`, `bad.jsonl, line 1: no "event_name" field`},
		{`{"_time":"2026-11-24T14:00:01Z","event_name":"tcp.connect","x":{"y":1}}`, `bad.jsonl, line 1: field "x"`},
		{`[1,2]`, "bad.jsonl, line 1: not a JSON object"},
		{good + " " + good, "bad.jsonl, line 1: more than one JSON value"},
	} {
		_, err := Open(write(t, "bad.jsonl", tc.content))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one with %q", tc.content, err, tc.want)
		}
	}
	_, err := Open(filepath.Join(t.TempDir(), "missing.jsonl"))
	if err == nil || !strings.Contains(err.Error(), "missing.jsonl") {
		t.Errorf("a missing file: %v", err)
	}
	if _, err := Open(); err == nil {
		t.Error("no file: no error")
	}
}

// Both export's lines and query -o json's read as the same record.
func TestOpenReadsExportAndQueryJSON(t *testing.T) {
	export := `{"_time":"2026-11-24T14:00:01.000000001Z","_msg":"curl -> 1.0.0.1:443","event_name":"tcp.connect","network.peer.port":"443","connaudit.seq":"2","service.instance.id":"i1","_stream":"{}","_stream_id":"x"}`
	query := `{"time":"2026-11-24T14:00:01.000000001Z","body":"curl -> 1.0.0.1:443","event_name":"tcp.connect","network.peer.port":443,"connaudit.seq":2,"service.instance.id":"i1","connaudit.host_network":false}`
	for _, line := range []string{export, query} {
		b, err := Open(write(t, "a.jsonl", line+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		rs, err := b.Records(context.Background(), backend.Filter{From: t0, To: t0.Add(time.Minute), DstPorts: []int{443}}, 0)
		if err != nil || !rs.Next() {
			t.Fatalf("%s: no record (%v)", line, err)
		}
		r := rs.Record()
		if !r.Time.Equal(t0.Add(time.Second+1)) || r.Body != "curl -> 1.0.0.1:443" || r.Get("connaudit.seq") != "2" || r.Get("_stream") != "" {
			t.Errorf("%s: read as %+v", line, r)
		}
	}
}

func connect(sec int, instance, seq string, kv ...string) backend.Record {
	r := backend.Record{Time: t0.Add(time.Duration(sec) * time.Second), Fields: map[string]string{
		backend.FieldEventName: backend.EventConnect, backend.FieldServiceInstanceID: instance, backend.FieldSeq: seq,
		backend.FieldNode: "node-a", backend.FieldOutcome: "established"}}
	for i := 0; i < len(kv); i += 2 {
		r.Fields[kv[i]] = kv[i+1]
	}
	return r
}

func TestRecordsDedupAndLimit(t *testing.T) {
	b := New([]backend.Record{connect(3, "i1", "3"), connect(1, "i1", "1"), connect(1, "i1", "1"), connect(2, "i1", "2"), connect(2, "i2", "2")})
	f := backend.Filter{From: t0, To: t0.Add(time.Minute)}
	names := func(limit int) (out []string, cut bool) {
		rs, err := b.Records(context.Background(), f, limit)
		if err != nil {
			t.Fatal(err)
		}
		for rs.Next() {
			r := rs.Record()
			out = append(out, r.Get(backend.FieldServiceInstanceID)+"/"+r.Get(backend.FieldSeq))
		}
		return out, rs.Truncated()
	}
	if got, cut := names(0); strings.Join(got, " ") != "i1/1 i1/2 i2/2 i1/3" || cut {
		t.Errorf("all: %v, cut %v", got, cut)
	}
	if got, cut := names(2); strings.Join(got, " ") != "i2/2 i1/3" || !cut {
		t.Errorf("newest 2: %v, cut %v", got, cut)
	}
	if got, cut := names(4); len(got) != 4 || cut {
		t.Errorf("limit 4 of 4: %v, cut %v", got, cut)
	}
	if _, err := b.Follow(context.Background(), f); err == nil {
		t.Error("Follow on an archive: no error")
	}
}

func TestCoverageHoles(t *testing.T) {
	start := connect(0, "i1", "1")
	start.Fields[backend.FieldEventName] = backend.EventAgentStart
	loss := connect(5, "i1", "5", backend.FieldLostCount, "1", backend.FieldLostReason, "spool_full", backend.FieldLostSeqMin, "4", backend.FieldLostSeqMax, "4")
	loss.Fields[backend.FieldEventName] = backend.EventLoss
	// seq 7 is outside the window (drained after a restart): not missing.
	b := New([]backend.Record{start, connect(1, "i1", "2"), connect(2, "i1", "3"), loss, loss, connect(6, "i1", "6"),
		connect(-30, "i1", "7"), connect(8, "i1", "9"), connect(9, "i1", "12")})
	c, err := b.Coverage(context.Background(), t0, t0.Add(time.Minute), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Instances) != 1 || len(c.Nodes) != 1 {
		t.Fatalf("coverage %+v", c)
	}
	in := c.Instances[0]
	if in.Records != 7 || in.MinSeq != 1 || in.MaxSeq != 12 || len(in.Losses) != 1 || !in.Started.Equal(t0) {
		t.Errorf("instance %+v", in)
	}
	var got []string
	for _, h := range in.Missing {
		got = append(got, fmt.Sprintf("%d..%d", h.Seqs.First, h.Seqs.Last))
	}
	if strings.Join(got, " ") != "4..4 8..8 10..11" {
		t.Errorf("missing %v", got)
	}
	var gaps []string
	for _, g := range coverage.Gaps(c) {
		gaps = append(gaps, string(g.Kind)+":"+g.Reason)
	}
	if len(gaps) != 3 || !strings.HasPrefix(gaps[0], "loss:spool_full") || !strings.Contains(gaps[1], "8..8") || !strings.Contains(gaps[2], "10..11") {
		t.Errorf("gaps %q", gaps)
	}
}
