package coverage

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)

func at(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

func TestGapsCompleteTrail(t *testing.T) {
	c := &Coverage{From: at(0), To: at(60), Nodes: []string{"n1"}, Instances: []Instance{
		{Node: "n1", ID: "a", Started: at(-10), FirstSeen: at(1), LastSeen: at(59), Records: 100, MinSeq: 5, MaxSeq: 104},
	}}
	if g := Gaps(c); len(g) != 0 {
		t.Fatalf("gaps of a complete trail: %+v", g)
	}
}

func TestGapsLossExplainsHole(t *testing.T) {
	c := &Coverage{From: at(0), To: at(60), Nodes: []string{"n1"}, Instances: []Instance{{
		Node: "n1", ID: "a", Started: at(0), FirstSeen: at(0), LastSeen: at(50), MinSeq: 1, MaxSeq: 100,
		Missing: []Hole{{Seqs: SeqRange{10, 19}, After: at(5), Before: at(6)}, {Seqs: SeqRange{40, 41}, After: at(20), Before: at(21)}},
		Losses:  []Loss{{Time: at(7), Seq: 30, Count: 10, Reason: "spool_full", First: at(5), Last: at(6), Seqs: SeqRange{10, 19}}},
	}}}
	g := Gaps(c)
	if len(g) != 2 {
		t.Fatalf("want the loss and one unexplained hole, got %+v", g)
	}
	if g[0].Kind != GapLoss || g[0].Count != 10 || !g[0].From.Equal(at(5)) {
		t.Errorf("loss gap: %+v", g[0])
	}
	if g[1].Kind != GapSeqHole || g[1].Count != 2 || !g[1].From.Equal(at(20)) || !g[1].To.Equal(at(21)) {
		t.Errorf("hole gap: %+v", g[1])
	}
}

func TestGapsPartlyExplainedHole(t *testing.T) {
	in := Instance{Missing: []Hole{{Seqs: SeqRange{10, 30}}}, Losses: []Loss{{Seqs: SeqRange{15, 20}}}}
	got := unexplained(in)
	if len(got) != 2 || got[0].Seqs != (SeqRange{10, 14}) || got[1].Seqs != (SeqRange{21, 30}) {
		t.Fatalf("unexplained = %+v", got)
	}
}

func TestGapsCoverage(t *testing.T) {
	for _, tc := range []struct {
		name      string
		instances []Instance
		want      [][2]int // uncovered spans in minutes
	}{
		{"no agent", nil, [][2]int{{0, 60}}},
		{"started late", []Instance{{ID: "a", Started: at(10), LastSeen: at(20)}}, [][2]int{{0, 10}}},
		{"stopped early", []Instance{{ID: "a", Started: at(-5), Stopped: at(40)}}, [][2]int{{40, 60}}},
		{"clean restart", []Instance{{ID: "a", Started: at(-5), Stopped: at(30)}, {ID: "b", Started: at(31)}}, [][2]int{{30, 31}}},
		{"restart resuming pinned capture", []Instance{{ID: "a", Started: at(-5), Stopped: at(30)}, {ID: "b", Started: at(31), Resumed: true}}, nil},
		{"crash without resume", []Instance{{ID: "a", Started: at(-5), LastSeen: at(20)}, {ID: "b", Started: at(25)}}, [][2]int{{20, 25}}},
		{"crash resumed", []Instance{{ID: "a", Started: at(-5), LastSeen: at(20)}, {ID: "b", Started: at(25), Resumed: true}}, nil},
		{"idle, heartbeats", []Instance{{ID: "a", Started: at(-5), LastSeen: at(59), Heartbeat: time.Minute / 2}}, nil},
		{"heartbeats stopped", []Instance{{ID: "a", Started: at(-5), LastSeen: at(40), Heartbeat: time.Minute}}, [][2]int{{42, 60}}},
		{"silent since before the window", []Instance{{ID: "a", Started: at(-30), Heartbeat: time.Minute}}, [][2]int{{0, 60}}},
		{"heartbeats stopped, next not resumed", []Instance{{ID: "a", Started: at(-5), LastSeen: at(20), Heartbeat: time.Minute}, {ID: "b", Started: at(25)}}, [][2]int{{22, 25}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range tc.instances {
				tc.instances[i].Node = "n1"
			}
			c := &Coverage{From: at(0), To: at(60), Nodes: []string{"n1"}, Instances: tc.instances}
			g := Gaps(c)
			if len(g) != len(tc.want) {
				t.Fatalf("gaps %+v, want spans %v", g, tc.want)
			}
			for i, w := range tc.want {
				if g[i].Kind != GapUncovered || !g[i].From.Equal(at(w[0])) || !g[i].To.Equal(at(w[1])) {
					t.Errorf("gap %d = %+v, want uncovered %v", i, g[i], w)
				}
			}
		})
	}
}

// A window that ends after the store was read: an instance whose heartbeat
// is not overdue yet is alive as far as anyone can tell.
func TestGapsHeartbeatNotYetOverdue(t *testing.T) {
	c := &Coverage{From: at(0), To: at(60), AsOf: at(30), Nodes: []string{"n1"}, Instances: []Instance{
		{Node: "n1", ID: "a", Started: at(-5), LastSeen: at(29), Heartbeat: time.Minute},
	}}
	if g := Gaps(c); len(g) != 0 {
		t.Fatalf("gaps: %+v", g)
	}
	c.AsOf = at(35)
	if g := Gaps(c); len(g) != 1 || !g[0].From.Equal(at(31)) {
		t.Fatalf("gaps once overdue: %+v", g)
	}
}

// The reason of a gap between two instances says whether the first stopped.
func TestGapsReasonBetweenInstances(t *testing.T) {
	for _, tc := range []struct {
		name      string
		instances []Instance
		want      string
	}{
		{"stopped, next started later", []Instance{{ID: "a", Started: at(-5), Stopped: at(30)}, {ID: "b", Started: at(31)}},
			"the agent stopped and the next one started later, without resuming its capture"},
		{"crashed, next not resumed", []Instance{{ID: "a", Started: at(-5), LastSeen: at(20)}, {ID: "b", Started: at(25)}},
			"the agent ended without a stop record and the next one did not resume its capture"},
	} {
		c := &Coverage{From: at(0), To: at(60), Nodes: []string{"n1"}, Instances: tc.instances}
		for i := range c.Instances {
			c.Instances[i].Node = "n1"
		}
		g := Gaps(c)
		if len(g) != 1 || g[0].Reason != tc.want {
			t.Errorf("%s: gaps %+v, want one: %s", tc.name, g, tc.want)
		}
	}
}
