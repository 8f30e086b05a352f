package victorialogs_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connaudit/connaudit/backend/victorialogs"
	"github.com/connaudit/connaudit/internal/recordgen"
	"github.com/connaudit/connaudit/internal/teststack"
	"github.com/connaudit/connaudit/trail/coverage"
	"github.com/connaudit/connaudit/verify"
)

// verify reads one instance at a time from VictoriaLogs.
var _ verify.InstanceSource = (*victorialogs.Backend)(nil)

var holesT0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// holeCase is one agent instance on its own node: n seqs, those in drop
// never stored, those in dup stored twice, those in early stored with a time
// before the window.
type holeCase struct {
	name  string
	n     int64
	drop  []coverage.SeqRange
	dup   []int64
	early []int64
	loss  *coverage.SeqRange // seqs a loss record (stored just after them) names
	far   int64              // a last record with this seq (forged), at the time of seq n+1
	want  []coverage.SeqRange
}

// recTime is when the record at seq s of c was seen.
func (c holeCase) recTime(s int64) time.Time {
	if c.far > 0 && s == c.far {
		return seqTime(c.n + 1)
	}
	return seqTime(s)
}

func seqs(rs ...int64) []coverage.SeqRange {
	var out []coverage.SeqRange
	for i := 0; i < len(rs); i += 2 {
		out = append(out, coverage.SeqRange{First: rs[i], Last: rs[i+1]})
	}
	return out
}

func in(rs []coverage.SeqRange, s int64) bool {
	for _, r := range rs {
		if s >= r.First && s <= r.Last {
			return true
		}
	}
	return false
}

// seqTime is when the record at seq was seen: one per millisecond.
func seqTime(seq int64) time.Time { return holesT0.Add(time.Duration(seq) * time.Millisecond) }

// load posts the cases' records straight to VictoriaLogs and waits until
// all are visible.
func load(t testing.TB, vl *teststack.VictoriaLogs, cases []holeCase) {
	t.Helper()
	var recs []recordgen.Record
	total := 0
	post := func(force bool) {
		if len(recs) == 0 || (!force && len(recs) < 20_000) {
			return
		}
		if err := recordgen.Post(context.Background(), vl.URL()+"/insert/opentelemetry/v1/logs", recs); err != nil {
			t.Fatal(err)
		}
		total += len(recs)
		recs = recs[:0]
	}
	src := recordgen.Source{Comm: "curl", PID: 7, UID: 1000}
	for _, c := range cases {
		a := recordgen.NewAgent("node-"+c.name, "instance-"+c.name)
		var pending []recordgen.Record // duplicates, posted in a later request as a replay is
		for a.Seq < c.n {
			next := a.Seq + 1
			var r recordgen.Record
			switch {
			case next == 1:
				r = a.Start(seqTime(1), false)
			case c.loss != nil && next == c.loss.First:
				a.Lose(c.loss.Len())
				r = a.Loss(seqTime(a.Seq+1), c.loss.Len(), "spool_full", c.loss.First, c.loss.Last, seqTime(c.loss.First), seqTime(c.loss.Last))
			default:
				r = a.Connect(seqTime(next), src, recordgen.Conn{SrcAddr: "10.0.0.1", SrcPort: 40000, DstAddr: "198.51.100.7", DstPort: 443,
					Outcome: "established", Duration: 0.001})
			}
			s := a.Seq
			if slices.Contains(c.early, s) {
				r.Time = holesT0.Add(-time.Minute)
			}
			if in(c.drop, s) {
				continue
			}
			recs = append(recs, r)
			if slices.Contains(c.dup, s) {
				pending = append(pending, r)
			}
			post(false)
		}
		if c.far > 0 {
			a.Seq = c.far - 1
			recs = append(recs, a.Connect(c.recTime(c.far), src, recordgen.Conn{SrcAddr: "10.0.0.1", SrcPort: 40000, DstAddr: "198.51.100.7", DstPort: 443,
				Outcome: "established", Duration: 0.001}))
		}
		recs = append(recs, pending...)
		post(true)
	}
	post(true)
	deadline := time.Now().Add(time.Minute)
	for {
		rows, err := vl.Query(context.Background(), "* | stats count() as n")
		if err == nil && len(rows) == 1 && rows[0]["n"] == strconv.Itoa(total) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("VictoriaLogs holds %v records, want %d (err %v)", rows, total, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// countingTransport counts the requests it makes.
type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

func coverageOf(t testing.TB, vl *teststack.VictoriaLogs, nodes ...string) *coverage.Coverage {
	t.Helper()
	c, _ := countedCoverage(t, vl, nodes...)
	return c
}

// countedCoverage is coverageOf, and how many queries it took.
func countedCoverage(t testing.TB, vl *teststack.VictoriaLogs, nodes ...string) (*coverage.Coverage, int64) {
	t.Helper()
	tr := &countingTransport{}
	b, err := victorialogs.New(victorialogs.Config{URL: vl.URL(), Client: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.Coverage(context.Background(), holesT0, holesT0.Add(time.Hour), nodes)
	if err != nil {
		t.Fatal(err)
	}
	return c, tr.n.Load()
}

func missing(in coverage.Instance) []coverage.SeqRange {
	var out []coverage.SeqRange
	for _, h := range in.Missing {
		out = append(out, h.Seqs)
	}
	return out
}

// TestCoverageFindsHoles checks the seq holes Coverage reports, with
// VictoriaLogs' bucket counts narrowed down to small lists, against a real
// VictoriaLogs.
func TestCoverageFindsHoles(t *testing.T) {
	cases := []holeCase{
		{name: "complete", n: 1000, dup: []int64{5, 6, 999}},
		{name: "start", n: 1000, drop: seqs(2, 5), want: seqs(2, 5)},
		{name: "middle", n: 1000, drop: seqs(500, 500), want: seqs(500, 500)},
		{name: "end", n: 1000, drop: seqs(999, 999), want: seqs(999, 999)},
		{name: "several", n: 1000, drop: seqs(10, 12, 100, 100, 257, 300, 700, 701, 998, 999), want: seqs(10, 12, 100, 100, 257, 300, 700, 701, 998, 999)},
		// A replayed duplicate in the same bucket as a hole must not fill it.
		{name: "duplicates", n: 1000, drop: seqs(50, 50, 640, 641), dup: []int64{51, 60, 61, 400, 642, 643}, want: seqs(50, 50, 640, 641)},
		// Whole buckets without a record, and a hole across bucket edges.
		{name: "wide", n: 20_000, drop: seqs(3000, 15_000, 16_383, 16_385), want: seqs(3000, 15_000, 16_383, 16_385)},
		// A record stored before the window is not missing; its neighbour is.
		{name: "outside", n: 1000, early: []int64{7, 300, 301}, drop: seqs(8, 8, 302, 302), want: seqs(8, 8, 302, 302)},
		// A forged record with a seq far beyond the others.
		{name: "forged", n: 1000, far: 1 << 50, want: seqs(1001, 1<<50-1)},
		// A loss record names 300-309; 600 is missing without one.
		{name: "loss", n: 1000, loss: &coverage.SeqRange{First: 300, Last: 309}, drop: seqs(600, 600), want: seqs(300, 309, 600, 600)},
	}
	vl := teststack.StartVictoriaLogs(t)
	load(t, vl, cases)
	for _, limits := range []struct{ fanout, span, list int64 }{{4, 64, 8}, {4, 1 << 22, 8}, {64, 1 << 22, 4096}} {
		t.Run(fmt.Sprintf("fanout%d-span%d-list%d", limits.fanout, limits.span, limits.list), func(t *testing.T) {
			defer victorialogs.SetScanLimits(limits.fanout, limits.span, limits.list)()
			c := coverageOf(t, vl)
			if len(c.Instances) != len(cases) {
				t.Fatalf("%d instances, want %d: %+v", len(c.Instances), len(cases), c.Instances)
			}
			for _, tc := range cases {
				i := slices.IndexFunc(c.Instances, func(in coverage.Instance) bool { return in.ID == "instance-"+tc.name })
				if i < 0 {
					t.Errorf("%s: instance not reported", tc.name)
					continue
				}
				inst := c.Instances[i]
				var stored int64
				for s := int64(1); s <= tc.n; s++ {
					if !in(tc.drop, s) && !slices.Contains(tc.early, s) && (tc.loss == nil || !in([]coverage.SeqRange{*tc.loss}, s)) {
						stored++
					}
				}
				if tc.far > 0 {
					stored++
				}
				if inst.Records != stored {
					t.Errorf("%s: %d records, want %d (duplicates once)", tc.name, inst.Records, stored)
				}
				if got := missing(inst); !slices.Equal(got, tc.want) {
					t.Errorf("%s: missing %v, want %v", tc.name, got, tc.want)
				}
				for _, h := range inst.Missing {
					if tc.loss != nil && h.Seqs == *tc.loss {
						continue // a loss record's times
					}
					// The records around the hole in the window.
					stored := func(s int64) bool { return !in(tc.drop, s) && !slices.Contains(tc.early, s) }
					a, z := h.Seqs.First-1, h.Seqs.Last+1
					for !stored(a) {
						a--
					}
					for !stored(z) {
						z++
					}
					after, before := tc.recTime(a), tc.recTime(z)
					if !h.After.Equal(after) || !h.Before.Equal(before) {
						t.Errorf("%s: hole %v between %v and %v, want the times of its neighbours %v and %v", tc.name, h.Seqs, h.After, h.Before, after, before)
					}
				}
			}
			// The forged seq costs a few queries per level of buckets, not
			// one per span of seqs up to it.
			if _, n := countedCoverage(t, vl, "node-forged"); n > 100 {
				t.Errorf("coverage of node-forged took %d queries", n)
			} else {
				t.Logf("coverage of node-forged took %d queries", n)
			}
			var holes []string
			for _, g := range coverage.Gaps(c) {
				if g.Kind == coverage.GapSeqHole && g.Instance == "instance-loss" {
					holes = append(holes, g.Reason)
				}
			}
			if want := []string{"connaudit.seq 600..600 missing, no loss record explains it"}; !slices.Equal(holes, want) {
				t.Errorf("seq holes of instance-loss: %q, want %q", holes, want)
			}
		})
	}
}

// TestCoverageFindsHoleInLargeInstance finds one missing seq, next to a
// replayed duplicate, among 120,000: counted in one count_uniq query, and
// as an instance too large for one (scanned a span at a time, the records
// read once for both its count and its hole).
func TestCoverageFindsHoleInLargeInstance(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 120,000 records")
	}
	vl := teststack.StartVictoriaLogs(t)
	load(t, vl, []holeCase{{name: "large", n: 120_000, drop: seqs(77_777, 77_777), dup: []int64{77_778, 100_000}}})
	for _, span := range []int64{1 << 22, 1 << 14} {
		t.Run(fmt.Sprintf("span%d", span), func(t *testing.T) {
			defer victorialogs.SetScanLimits(64, span, 4096)()
			c := coverageOf(t, vl, "node-large")
			if len(c.Instances) != 1 {
				t.Fatalf("instances %+v", c.Instances)
			}
			in := c.Instances[0]
			if in.Records != 120_000-1 || in.MinSeq != 1 || in.MaxSeq != 120_000 {
				t.Errorf("records %d, seqs %d..%d", in.Records, in.MinSeq, in.MaxSeq)
			}
			if got, want := missing(in), seqs(77_777, 77_777); !slices.Equal(got, want) {
				t.Errorf("missing %v, want %v", got, want)
			}
		})
	}
}
