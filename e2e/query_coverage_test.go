package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/connaudit/connaudit/trail"
)

// TestCoverageRealAgent: the real agent restarts (its successor resumes the
// pinned capture) and then loses records for real (the collector is down and
// the 1 MiB spool fills). `connaudit coverage` shows both instances, the
// resumed start, the loss records and no unexplained hole; --strict fails on
// the loss, and `connaudit query` reports it on stderr.
func TestCoverageRealAgent(t *testing.T) {
	s := startStack(t, "CONNAUDIT_SPOOL_MAX_BYTES=1048576", "CONNAUDIT_READY_EXPORT_FAILURE=10m")
	first := s.instance(t)
	startRow := s.vl.WaitFor(t, fmt.Sprintf(`event_name:="connaudit.agent.start" service.instance.id:=%q`, first), 1, arrivalTimeout)[0]
	target := newConnectTarget(t)
	target.connect(100)
	s.agent.Stop()
	s.agent.Start()
	second := otherInstance(t, s.vl, first)

	s.col.Stop()
	lostMetric := `connaudit_records_lost_total{reason="` + string(trail.LossSpoolFull) + `"}`
	for batch := 0; batch < 100 && metricsOf(t, s.agent)[lostMetric] == 0; batch++ {
		target.connect(500)
	}
	if metricsOf(t, s.agent)[lostMetric] == 0 {
		t.Fatal("the spool never refused a record")
	}
	target.connect(500) // dropped and counted while full
	s.col.Start()
	if !pollUntil(arrivalTimeout, func() bool {
		m := metricsOf(t, s.agent)
		return m["connaudit_records_exported_total"] >= m["connaudit_records_spooled_total"]
	}) {
		t.Fatal("the spool did not drain")
	}
	target.connect(100)
	lost := metricsOf(t, s.agent)[lostMetric]
	s.agent.Stop()
	stopRow := s.vl.WaitFor(t, fmt.Sprintf(`event_name:="connaudit.agent.stop" service.instance.id:=%q`, second), 1, arrivalTimeout)[0]
	// The collector delivers out of order: judge the trail once it is whole.
	finalTrail(t, s.vl, second, first)

	window := []string{"--from", startRow["_time"], "--to", stopRow["_time"], "--node", "test-node"}
	res := runConnaudit(t, nil, append([]string{"coverage", "--server", s.vl.URL(), "-o", "json"}, window...)...)
	if res.code != 0 {
		t.Fatalf("coverage: exit %d: %s", res.code, res.stderr)
	}
	var cov struct {
		Nodes     []string `json:"nodes"`
		Instances []struct {
			Node    string `json:"node"`
			ID      string `json:"instance"`
			Started string `json:"started"`
			Resumed bool   `json:"resumed"`
			Stopped string `json:"stopped"`
			Records int64  `json:"records"`
			MinSeq  int64  `json:"min_seq"`
			MaxSeq  int64  `json:"max_seq"`
			Losses  []struct {
				Count    int64  `json:"count"`
				Reason   string `json:"reason"`
				SeqFirst int64  `json:"seq_first"`
				SeqLast  int64  `json:"seq_last"`
			} `json:"losses"`
		} `json:"instances"`
		Gaps []struct {
			Kind  string `json:"kind"`
			Count int64  `json:"count"`
		} `json:"gaps"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &cov); err != nil {
		t.Fatalf("coverage -o json: %v: %s", err, res.stdout)
	}
	t.Logf("coverage:\n%s", res.stdout)
	if len(cov.Instances) != 2 || cov.Instances[0].ID != first || cov.Instances[1].ID != second {
		t.Fatalf("coverage instances: want %s then %s: %+v", first, second, cov.Instances)
	}
	a, b := cov.Instances[0], cov.Instances[1]
	if a.Resumed || a.Stopped == "" || len(a.Losses) != 0 || a.MinSeq != 1 || a.Records != a.MaxSeq {
		t.Errorf("first instance: want a clean start and stop with seq 1..n all stored: %+v", a)
	}
	if !b.Resumed || b.Started == "" {
		t.Errorf("second instance: want a start that resumed the pinned capture: %+v", b)
	}
	var lostCount, lostSeqs int64
	for _, l := range b.Losses {
		if l.Reason == string(trail.LossSpoolFull) {
			lostCount += l.Count
			lostSeqs += l.SeqLast - l.SeqFirst + 1
		}
	}
	if lostCount == 0 || float64(lostCount) != lost {
		t.Errorf("second instance: loss records count %d spool_full records, the agent's metrics %v", lostCount, lost)
	}
	if b.Records != b.MaxSeq-b.MinSeq+1-lostSeqs {
		t.Errorf("second instance: %d records for seq %d..%d with %d lost seqs: holes", b.Records, b.MinSeq, b.MaxSeq, lostSeqs)
	}
	for _, g := range cov.Gaps {
		if g.Kind != "loss" {
			t.Errorf("gap %+v: want only loss gaps (the restart resumed capture, every hole is explained)", g)
		}
	}
	if len(cov.Gaps) == 0 {
		t.Error("coverage reports no gap for the real loss")
	}

	// The losses are the agent's own, each named by a loss record the
	// chain binds: the trail verifies.
	if res := runConnaudit(t, nil, append([]string{"verify", "--server", s.vl.URL()}, window...)...); res.code != 0 {
		t.Errorf("verify of a trail with real, reported losses: exit %d:\n%s\n%s", res.code, res.stdout, res.stderr)
	}

	res = runConnaudit(t, nil, append([]string{"coverage", "--server", s.vl.URL(), "--strict"}, window...)...)
	if res.code != 3 || !strings.Contains(res.stdout, "2026") || !strings.Contains(res.stdout, "(resumed)") {
		t.Errorf("coverage --strict: exit %d, want 3 and a table with the resumed start:\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	res = runConnaudit(t, nil, append([]string{"query", "--server", s.vl.URL(), "--limit", "1", "--strict"}, window...)...)
	if res.code != 3 || !strings.Contains(res.stderr, "(loss: spool_full, agent instance "+second+")") {
		t.Errorf("query --strict over the loss: exit %d, stderr %q", res.code, res.stderr)
	}
}
