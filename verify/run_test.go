package verify_test

import (
	"context"
	"errors"
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
