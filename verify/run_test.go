package verify_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/connaudit/connaudit/trail"
	"github.com/connaudit/connaudit/verify"
)

// sliceSource is a store held in memory, whose window holds the records
// of the instances named in window.
type sliceSource struct {
	rows   []map[string]string
	window map[string]bool
}

func (s sliceSource) Trail(_ context.Context, _, _ time.Time, _ []string, each func(map[string]string) error) error {
	for _, r := range s.rows {
		if s.window[r[string(trail.KeyServiceInstanceID)]] {
			if err := each(r); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s sliceSource) InstanceRecords(_ context.Context, instance string, start bool, seq uint64, _ time.Time, each func(map[string]string) error) error {
	for _, r := range s.rows {
		if r[string(trail.KeyServiceInstanceID)] != instance {
			continue
		}
		if start && r["event_name"] == string(trail.EventAgentStart) || !start && seqOf(r) == seq {
			if err := each(r); err != nil {
				return err
			}
		}
	}
	return nil
}

// instanceSource is a sliceSource that gives one instance at a time, as
// VictoriaLogs does, in runs of runSeqs seqs (each run's records in the
// order they were stored), so that Run judges and lets go of each run.
type instanceSource struct {
	sliceSource
	runSeqs uint64
	listed  []string // the instances InstanceTrail was asked for, in order
	runs    int
}

func (s *instanceSource) Instances(_ context.Context, _, _ time.Time, _ []string) ([]string, error) {
	var ids []string
	for _, r := range s.rows {
		id := r[string(trail.KeyServiceInstanceID)]
		if s.window[id] && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

func (s *instanceSource) InstanceTrail(_ context.Context, _, _ time.Time, _ []string, instance string, each func(map[string]string) error, endOfRun func()) error {
	s.listed = append(s.listed, instance)
	if !s.window[instance] {
		return nil
	}
	var rows []map[string]string
	lo, hi := uint64(math.MaxUint64), uint64(0)
	for _, r := range s.rows {
		if r[string(trail.KeyServiceInstanceID)] == instance {
			rows = append(rows, r)
			lo, hi = min(lo, seqOf(r)), max(hi, seqOf(r))
		}
	}
	size := s.runSeqs
	if size == 0 {
		size = hi - lo + 1 // one run
	}
	for first := lo; first <= hi; first += size {
		for _, r := range rows {
			if seqOf(r) >= first && seqOf(r)-first < size {
				if err := each(r); err != nil {
					return err
				}
			}
		}
		endOfRun()
		s.runs++
	}
	return nil
}

// TestRunOneInstanceAtATime verifies a node's lineage of three instances
// read one at a time: each instance's records are let go once it is judged,
// so the record a later start record names is fetched again.
func TestRunOneInstanceAtATime(t *testing.T) {
	a, b, c := lineage(t)
	all := append(append(append([]map[string]string{}, a...), b...), c...)
	from, to := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC), time.Now().Add(time.Hour)
	window := map[string]bool{"instance-a": true, "instance-b": true, "instance-c": true}
	src := &instanceSource{sliceSource: sliceSource{all, window}}
	var out strings.Builder
	if err := verify.Run(t.Context(), src, verify.Request{From: from, To: to, Format: "table"}, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "Verified: 3 instance(s)") || !slices.Equal(src.listed, []string{"instance-a", "instance-b", "instance-c"}) {
		t.Errorf("read %v; report:\n%s", src.listed, out.String())
	}

	// Instance b's tail, the record instance c's start record names, and
	// its stop record deleted.
	var kept []map[string]string
	for _, r := range all {
		if !(r[string(trail.KeyServiceInstanceID)] == "instance-b" && seqOf(r) >= 45) {
			kept = append(kept, r)
		}
	}
	out.Reset()
	src = &instanceSource{sliceSource: sliceSource{kept, window}}
	err := verify.Run(t.Context(), src, verify.Request{From: from, To: to, Format: "json"}, &out)
	if !errors.Is(err, verify.ErrFindings) || !strings.Contains(out.String(), `"instance":"instance-b"`) || !strings.Contains(out.String(), `"kind":"deleted"`) {
		t.Errorf("err %v, report:\n%s", err, out.String())
	}
	// The same findings as from the whole window at once, whether each
	// instance comes whole or a few seqs at a time.
	var whole strings.Builder
	req := verify.Request{From: from, To: to, Format: "table"}
	_ = verify.Run(t.Context(), sliceSource{kept, window}, req, &whole)
	for _, size := range []uint64{0, 1, 4} {
		out.Reset()
		src := &instanceSource{sliceSource: sliceSource{kept, window}, runSeqs: size}
		_ = verify.Run(t.Context(), src, req, &out)
		if out.String() != whole.String() || (size == 1) != (src.runs > 100) {
			t.Errorf("one instance at a time, %d seqs a run (%d runs):\n%s\nthe whole window:\n%s", size, src.runs, out.String(), whole.String())
		}
	}
	t.Log(out.String())
}

func TestRunReadsWhatTheWindowNeeds(t *testing.T) {
	a, b, c := lineage(t)
	all := append(append(append([]map[string]string{}, a...), b...), c...)
	// The window holds instance c only: its predecessor's last record is
	// fetched from outside it.
	from, to := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC), time.Now().Add(time.Hour)
	only := map[string]bool{"instance-c": true}
	var out strings.Builder
	if err := verify.Run(t.Context(), sliceSource{all, only}, verify.Request{From: from, To: to, Format: "table"}, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "Verified: 1 instance(s)") || !strings.Contains(out.String(), "instance-c") {
		t.Errorf("report:\n%s", out.String())
	}

	// The same window without instance b's stop record.
	var kept []map[string]string
	for _, r := range all {
		if !(r[string(trail.KeyServiceInstanceID)] == "instance-b" && r["event_name"] == string(trail.EventAgentStop)) {
			kept = append(kept, r)
		}
	}
	out.Reset()
	err := verify.Run(t.Context(), sliceSource{kept, only}, verify.Request{From: from, To: to, Format: "table"}, &out)
	if !errors.Is(err, verify.ErrFindings) || !strings.Contains(out.String(), "NOT VERIFIED") || !strings.Contains(out.String(), "instance-b") {
		t.Errorf("err %v, report:\n%s", err, out.String())
	}
	t.Log(out.String())
}
