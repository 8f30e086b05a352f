package victorialogs

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/connaudit/connaudit/backend"
	"github.com/connaudit/connaudit/trail"
	"github.com/connaudit/connaudit/trail/coverage"
)

type instanceKey struct{ node, id string }

// Coverage implements backend.Backend with three aggregating queries, and
// for each instance whose counts do not add up a few counts per bucket of
// sequence numbers (see scanMissing).
func (b *Backend) Coverage(ctx context.Context, from, to time.Time, nodes []string) (*coverage.Coverage, error) {
	cb := coverage.NewBuilder(from, to, nodes, time.Now())
	nodeFilter := ""
	if len(nodes) > 0 {
		q := &query{}
		q.in(backend.FieldNode, nodes)
		nodeFilter = q.String() + " "
	}

	// Starts and stops of every agent up to the window's end: an instance that
	// started long ago may still be watching.
	lifecycle := nodeFilter + quote(backend.FieldEventName) + ":in(" + quoteAll([]string{backend.EventAgentStart, backend.EventAgentStop}) + ") " +
		timeRange(time.Unix(0, 0), to) + " | fields _time, " + quoteAll([]string{backend.FieldEventName, backend.FieldNode, backend.FieldServiceInstanceID, backend.FieldResumed, backend.FieldHeartbeat})
	err := b.rows(ctx, lifecycle, func(row map[string]string) error {
		t, err := time.Parse(time.RFC3339Nano, row["_time"])
		if err != nil {
			return fmt.Errorf("agent lifecycle row with a bad _time: %v", row)
		}
		cb.Lifecycle(trail.Event(row[backend.FieldEventName]), t, attrs(row))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read agent starts and stops: %w", err)
	}

	window := nodeFilter + timeRange(from, to) + " " + quote(backend.FieldSeq) + ":*"
	byInstance := "by (" + quoteAll([]string{backend.FieldNode, backend.FieldServiceInstanceID}) + ")"
	stats := window + " | stats " + byInstance + " count() as rows, min(" + quote(backend.FieldSeq) + ") as minseq, max(" +
		quote(backend.FieldSeq) + ") as maxseq, min(_time) as first, max(_time) as last"
	rows := map[instanceKey]int64{}
	err = b.rows(ctx, stats, func(row map[string]string) error {
		in := cb.Instance(row[backend.FieldNode], row[backend.FieldServiceInstanceID])
		var errs [5]error
		rows[instanceKey{in.Node, in.ID}], errs[0] = strconv.ParseInt(row["rows"], 10, 64)
		in.MinSeq, errs[1] = strconv.ParseInt(row["minseq"], 10, 64)
		in.MaxSeq, errs[2] = strconv.ParseInt(row["maxseq"], 10, 64)
		in.FirstSeen, errs[3] = time.Parse(time.RFC3339Nano, row["first"])
		in.LastSeen, errs[4] = time.Parse(time.RFC3339Nano, row["last"])
		for _, err := range errs {
			if err != nil {
				return fmt.Errorf("agent instance row %v: %w", row, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count the agents' records: %w", err)
	}
	scanned, err := b.countDistinct(ctx, from, to, window, byInstance, rows, cb)
	if err != nil {
		return nil, fmt.Errorf("count the agents' distinct records: %w", err)
	}

	losses := nodeFilter + quote(backend.FieldEventName) + ":=" + quote(backend.EventLoss) + " " + timeRange(from, to)
	err = b.rows(ctx, losses, func(row map[string]string) error {
		t, err := time.Parse(time.RFC3339Nano, row["_time"])
		if err != nil {
			return fmt.Errorf("loss record with a bad _time: %v", row)
		}
		cb.Loss(t, attrs(row))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read loss records: %w", err)
	}

	// An instance that stopped before the window, or started after it, says
	// nothing of it (coverage.Builder.Coverage).
	return cb.Coverage(func(in *coverage.Instance) error {
		var inWindow *runs
		if rs, ok := scanned[instanceKey{in.Node, in.ID}]; ok {
			inWindow = &rs
		}
		return b.findMissing(ctx, from, to, in, inWindow)
	})
}

// attrs is a row's attributes as package trail reads them.
func attrs(row map[string]string) func(trail.Key) string {
	return func(k trail.Key) string { return row[string(k)] }
}

// countDistinct sets the Records of the instances of rows (their records in
// window, duplicates included) to their distinct seqs. count_uniq holds the
// seqs it counted, in VictoriaLogs, so no query counts more than scanSpan
// records: the instances with fewer are counted together, up to that many
// records per query. One with more is scanned for the seqs of its range
// that no record in the window holds (seqScan.absent, which counts distinct
// seqs scanSpan at a time): its distinct records are its range less those,
// and they are returned by instance, so that findMissing does not read its
// records a second time.
func (b *Backend) countDistinct(ctx context.Context, from, to time.Time, window, byInstance string, rows map[instanceKey]int64, cb *coverage.Builder) (map[instanceKey]runs, error) {
	keys := make([]instanceKey, 0, len(rows))
	for k := range rows {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b instanceKey) int { return cmp.Or(cmp.Compare(a.node, b.node), cmp.Compare(a.id, b.id)) })
	var batch []string
	var batchRows int64
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		q := window + " " + quote(backend.FieldServiceInstanceID) + ":in(" + quoteAll(batch) + ") | stats " + byInstance +
			" count_uniq(" + quote(backend.FieldSeq) + ") as records"
		batch, batchRows = batch[:0], 0
		return b.rows(ctx, q, func(row map[string]string) error {
			in := cb.Lookup(row[backend.FieldNode], row[backend.FieldServiceInstanceID])
			if in == nil {
				return nil // an instance id on a node the first count did not see
			}
			n, err := strconv.ParseInt(row["records"], 10, 64)
			if err != nil {
				return fmt.Errorf("agent instance row %v: %w", row, err)
			}
			in.Records = n
			return nil
		})
	}
	scanned := map[instanceKey]runs{}
	for _, k := range keys {
		in := cb.Lookup(k.node, k.id)
		if n := rows[k]; n <= scanSpan {
			if batchRows+n > scanSpan {
				if err := flush(); err != nil {
					return nil, err
				}
			}
			batch = append(batch, k.id)
			batchRows += n
			continue
		}
		var inWindow runs
		s := &seqScan{b: b, filter: instanceFilter(in, timeRange(from, to)), emit: inWindow.add, bounds: coverage.SeqRange{First: in.MinSeq, Last: in.MaxSeq}}
		if err := s.absent(ctx, in.MinSeq, in.MaxSeq); err != nil {
			return nil, err
		}
		in.Records = in.MaxSeq - in.MinSeq + 1 - inWindow.seqs()
		scanned[k] = inWindow
	}
	return scanned, flush()
}

// findMissing fills in.Missing. When the loss records' seq ranges account
// for exactly the numbers absent from [MinSeq, MaxSeq], those ranges are the
// holes; otherwise VictoriaLogs counts the instance's sequence numbers per
// bucket to find them (scanMissing), without listing them all, unless
// inWindow already holds what that count finds (countDistinct).
func (b *Backend) findMissing(ctx context.Context, from, to time.Time, in *coverage.Instance, inWindow *runs) error {
	if in.Records == 0 {
		return nil
	}
	absent := in.MaxSeq - in.MinSeq + 1 - in.Records
	if absent == 0 {
		return nil
	}
	// The loss records' ranges within [MinSeq, MaxSeq], merged: two loss
	// records may name the same seqs.
	var named []coverage.SeqRange
	for _, l := range in.Losses {
		lo, hi := max(l.Seqs.First, in.MinSeq), min(l.Seqs.Last, in.MaxSeq)
		if l.Seqs.Len() > 0 && hi >= lo {
			named = append(named, coverage.SeqRange{First: lo, Last: hi})
		}
	}
	slices.SortFunc(named, func(a, b coverage.SeqRange) int { return cmp.Compare(a.First, b.First) })
	var merged runs
	var explained int64
	for _, r := range named {
		merged.add(r)
	}
	for _, r := range merged {
		explained += r.Len()
	}
	// As many seqs named as absent are the absent ones only when no record
	// of the window holds a named seq: a loss record may name seqs that
	// were delivered after all (or be forged) while others are missing.
	if explained == absent && explained > 0 && len(merged) <= neighbourBatch {
		ok, err := b.noneIn(ctx, from, to, in, merged)
		if err != nil {
			return fmt.Errorf("count the records of agent instance %s within its loss records' ranges: %w", in.ID, err)
		}
		if !ok {
			return b.scanMissing(ctx, from, to, in, inWindow)
		}
		for _, l := range in.Losses {
			if l.Seqs.Len() > 0 {
				in.Missing = append(in.Missing, coverage.Hole{Seqs: l.Seqs, After: l.First, Before: l.Last})
			}
		}
		return nil
	}
	return b.scanMissing(ctx, from, to, in, inWindow)
}

// noneIn reports whether no record of in in the window holds a seq of rs.
func (b *Backend) noneIn(ctx context.Context, from, to time.Time, in *coverage.Instance, rs []coverage.SeqRange) (bool, error) {
	var terms []string
	for _, r := range rs {
		terms = append(terms, seqRange(r.First, r.Last))
	}
	var n int64
	q := instanceFilter(in, timeRange(from, to)) + " (" + strings.Join(terms, " or ") + ") | stats count() as n"
	err := b.rows(ctx, q, func(row map[string]string) error {
		c, err := strconv.ParseInt(row["n"], 10, 64)
		n += c
		return err
	})
	return n == 0, err
}
