package victorialogs_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/connaudit/connaudit/backend/victorialogs"
	"github.com/connaudit/connaudit/internal/recordgen"
	"github.com/connaudit/connaudit/internal/teststack"
	"github.com/connaudit/connaudit/trail"
)

// TestInstanceTrailReadsInRuns reads instances from a real VictoriaLogs a
// few seqs at a time: every record comes once (duplicates as stored), each
// run's seqs above the runs' before it, a hole wider than a run and a
// forged seq beyond 2^53 cost a few reads, not one per run of seqs.
func TestInstanceTrailReadsInRuns(t *testing.T) {
	cases := []holeCase{
		{name: "plain", n: 1000, dup: []int64{5, 400, 999}},
		{name: "hole", n: 2000, drop: seqs(300, 1799)},
		{name: "far", n: 500, far: 1<<60 + 3},
	}
	vl := teststack.StartVictoriaLogs(t)
	load(t, vl, cases)
	const runSeqs = 100
	b, err := victorialogs.New(victorialogs.Config{URL: vl.URL(), TrailRunSeqs: runSeqs})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			seen := map[uint64]int{}
			var runs [][2]uint64 // smallest and largest seq of each run
			cur := [2]uint64{^uint64(0), 0}
			each := func(row map[string]string) error {
				s, err := strconv.ParseUint(row[string(trail.KeySeq)], 10, 64)
				if err != nil {
					return fmt.Errorf("row without a seq: %v", row)
				}
				seen[s]++
				cur = [2]uint64{min(cur[0], s), max(cur[1], s)}
				return nil
			}
			endOfRun := func() {
				runs = append(runs, cur)
				cur = [2]uint64{^uint64(0), 0}
			}
			err := b.InstanceTrail(context.Background(), holesT0, holesT0.Add(time.Hour), nil, "instance-"+c.name, each, endOfRun)
			if err != nil {
				t.Fatal(err)
			}
			want := map[uint64]int{}
			for s := int64(1); s <= c.n; s++ {
				if !in(c.drop, s) {
					want[uint64(s)] = 1
				}
			}
			for _, s := range c.dup {
				want[uint64(s)]++
			}
			if c.far > 0 {
				want[uint64(c.far)] = 1
			}
			if fmt.Sprint(seen) != fmt.Sprint(want) {
				t.Fatalf("read %d distinct seqs, want %d; differences: %v", len(seen), len(want), diffCounts(seen, want))
			}
			var prev uint64
			nonEmpty := 0
			for _, r := range runs {
				if r[1] == 0 {
					continue // a run that found nothing
				}
				nonEmpty++
				if r[0] <= prev {
					t.Errorf("run %v after a run that reached seq %d", r, prev)
				}
				prev = r[1]
			}
			distinct := uint64(len(want))
			if c.far > 0 {
				distinct-- // read in a run of its own
			}
			if minRuns := int((distinct + runSeqs - 1) / runSeqs); nonEmpty < minRuns || len(runs) > 2*minRuns+70 {
				t.Errorf("%d runs (%d with records) for %d seqs, %d at a time: %v", len(runs), nonEmpty, len(want), runSeqs, runs)
			}
		})
	}
}

// A record whose seq is no number is read too (verify names it), whether
// VictoriaLogs' smallest or largest seq is that value or a number.
func TestInstanceTrailReadsStraySeqs(t *testing.T) {
	vl := teststack.StartVictoriaLogs(t)
	src := recordgen.Source{Comm: "curl", PID: 7, UID: 1000}
	conn := recordgen.Conn{SrcAddr: "10.0.0.1", SrcPort: 40000, DstAddr: "198.51.100.7", DstPort: 443, Outcome: "established", Duration: 0.001}
	strays := []string{"x1", "2a", "1e2"}
	var recs []recordgen.Record
	for _, stray := range strays {
		a := recordgen.NewAgent("node-"+stray, "instance-"+stray)
		recs = append(recs, a.Start(seqTime(1), false))
		for a.Seq < 300 {
			recs = append(recs, a.Connect(seqTime(a.Seq+1), src, conn))
		}
		r := a.Connect(seqTime(301), src, conn)
		for i := range r.Attrs {
			if r.Attrs[i].Key == trail.KeySeq {
				r.Attrs[i].Value = stray
			}
		}
		recs = append(recs, r)
	}
	if err := recordgen.Post(context.Background(), vl.URL()+"/insert/opentelemetry/v1/logs", recs); err != nil {
		t.Fatal(err)
	}
	vl.WaitFor(t, "*", len(recs), time.Minute)
	b, err := victorialogs.New(victorialogs.Config{URL: vl.URL(), TrailRunSeqs: 50})
	if err != nil {
		t.Fatal(err)
	}
	for _, stray := range strays {
		n, found, runs := 0, 0, 0
		err = b.InstanceTrail(context.Background(), holesT0, holesT0.Add(time.Hour), nil, "instance-"+stray, func(row map[string]string) error {
			n++
			if row[string(trail.KeySeq)] == stray {
				found++
			}
			return nil
		}, func() { runs++ })
		if err != nil || n != 301 || found != 1 {
			t.Errorf("seq %q: read %d records in %d runs, %d with that seq (err %v); want 301, one", stray, n, runs, found, err)
		}
		t.Logf("seq %q: %d runs", stray, runs)
	}
}

func diffCounts(got, want map[uint64]int) []string {
	var out []string
	for s, n := range want {
		if got[s] != n {
			out = append(out, fmt.Sprintf("seq %d: %d, want %d", s, got[s], n))
		}
	}
	for s, n := range got {
		if _, ok := want[s]; !ok {
			out = append(out, fmt.Sprintf("seq %d: %d, want none", s, n))
		}
	}
	if len(out) > 10 {
		out = out[:10]
	}
	return out
}
