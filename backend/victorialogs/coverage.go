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
)

type instanceKey struct{ node, id string }

// Coverage implements backend.Backend with at most three aggregating queries
// and one listing of sequence numbers per instance whose counts do not add up.
func (b *Backend) Coverage(ctx context.Context, from, to time.Time, nodes []string) (*backend.Coverage, error) {
	c := &backend.Coverage{From: from, To: to, AsOf: time.Now()}
	byKey := map[instanceKey]*backend.Instance{}
	get := func(row map[string]string) *backend.Instance {
		k := instanceKey{row[backend.FieldNode], row[backend.FieldServiceInstanceID]}
		in := byKey[k]
		if in == nil {
			in = &backend.Instance{Node: k.node, ID: k.id}
			byKey[k] = in
		}
		return in
	}
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
		in := get(row)
		switch row[backend.FieldEventName] {
		case backend.EventAgentStart:
			if in.Started.IsZero() || t.Before(in.Started) {
				in.Started, in.Resumed = t, row[backend.FieldResumed] == "true"
				if hb, err := strconv.ParseFloat(row[backend.FieldHeartbeat], 64); err == nil && hb > 0 {
					in.Heartbeat = time.Duration(hb * float64(time.Second))
				}
			}
		case backend.EventAgentStop:
			if t.After(in.Stopped) {
				in.Stopped = t
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read agent starts and stops: %w", err)
	}

	window := nodeFilter + timeRange(from, to) + " " + quote(backend.FieldSeq) + ":*"
	stats := window + " | stats by (" + quoteAll([]string{backend.FieldNode, backend.FieldServiceInstanceID}) + ") count_uniq(" + quote(backend.FieldSeq) +
		") as records, min(" + quote(backend.FieldSeq) + ") as minseq, max(" + quote(backend.FieldSeq) + ") as maxseq, min(_time) as first, max(_time) as last"
	err = b.rows(ctx, stats, func(row map[string]string) error {
		in := get(row)
		var errs [5]error
		in.Records, errs[0] = strconv.ParseInt(row["records"], 10, 64)
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

	losses := nodeFilter + quote(backend.FieldEventName) + ":=" + quote(backend.EventLoss) + " " + timeRange(from, to)
	seenLoss := map[instanceKey]map[int64]bool{}
	err = b.rows(ctx, losses, func(row map[string]string) error {
		l, err := lossOf(row)
		if err != nil {
			return err
		}
		in := get(row)
		k := instanceKey{in.Node, in.ID}
		if seenLoss[k] == nil {
			seenLoss[k] = map[int64]bool{}
		}
		if !seenLoss[k][l.Seq] { // a replayed duplicate
			seenLoss[k][l.Seq] = true
			in.Losses = append(in.Losses, l)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read loss records: %w", err)
	}

	nodeSet := map[string]bool{}
	for _, n := range nodes {
		nodeSet[n] = true
	}
	for k, in := range byKey {
		if len(nodes) == 0 {
			nodeSet[k.node] = true
		}
		// An instance that stopped before the window, or never sent a record
		// in it and was followed by another, says nothing of the window.
		if in.Records == 0 && !in.Stopped.IsZero() && in.Stopped.Before(from) {
			continue
		}
		if in.Started.After(to) {
			continue
		}
		slices.SortFunc(in.Losses, func(a, b backend.Loss) int { return a.Time.Compare(b.Time) })
		if err := b.findMissing(ctx, from, to, in); err != nil {
			return nil, err
		}
		c.Instances = append(c.Instances, *in)
	}
	for n := range nodeSet {
		c.Nodes = append(c.Nodes, n)
	}
	slices.Sort(c.Nodes)
	slices.SortFunc(c.Instances, func(a, b backend.Instance) int {
		if a.Node != b.Node {
			if a.Node < b.Node {
				return -1
			}
			return 1
		}
		return a.Started.Compare(b.Started)
	})
	return c, nil
}

// findMissing fills in.Missing. When the loss records' seq ranges account
// for exactly the numbers absent from [MinSeq, MaxSeq], those ranges are the
// holes; otherwise the instance's sequence numbers are listed to find them.
func (b *Backend) findMissing(ctx context.Context, from, to time.Time, in *backend.Instance) error {
	if in.Records == 0 {
		return nil
	}
	absent := in.MaxSeq - in.MinSeq + 1 - in.Records
	if absent == 0 {
		return nil
	}
	var explained int64
	for _, l := range in.Losses {
		lo, hi := max(l.Seqs.First, in.MinSeq), min(l.Seqs.Last, in.MaxSeq)
		if l.Seqs.Len() > 0 && hi >= lo {
			explained += hi - lo + 1
		}
	}
	if explained == absent {
		for _, l := range in.Losses {
			if l.Seqs.Len() > 0 {
				in.Missing = append(in.Missing, backend.Hole{Seqs: l.Seqs, After: l.First, Before: l.Last})
			}
		}
		return nil
	}
	type seqAt struct {
		seq int64
		at  time.Time
	}
	var seqs []seqAt
	err := b.rows(ctx, instanceQuery(in, timeRange(from, to)), func(row map[string]string) error {
		if n, err := strconv.ParseInt(row[backend.FieldSeq], 10, 64); err == nil {
			t, _ := time.Parse(time.RFC3339Nano, row["_time"])
			seqs = append(seqs, seqAt{n, t})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list the sequence numbers of agent instance %s: %w", in.ID, err)
	}
	slices.SortFunc(seqs, func(a, b seqAt) int { return cmp.Compare(a.seq, b.seq) })
	var holes []backend.Hole
	for i := 1; i < len(seqs); i++ {
		if seqs[i].seq > seqs[i-1].seq+1 {
			holes = append(holes, backend.Hole{
				Seqs:  backend.SeqRange{First: seqs[i-1].seq + 1, Last: seqs[i].seq - 1},
				After: seqs[i-1].at, Before: seqs[i].at,
			})
		}
	}
	if len(holes) == 0 {
		return nil
	}
	// Records are timestamped when the kernel saw the connect, numbered when
	// the agent read them: one drained from the pinned capture at a restart
	// is older than the start record before it in seq. Such a record is
	// outside the window, not missing.
	var inHoles []string
	for _, h := range holes {
		inHoles = append(inHoles, quote(backend.FieldSeq)+":range["+strconv.FormatInt(h.Seqs.First, 10)+", "+strconv.FormatInt(h.Seqs.Last, 10)+"]")
	}
	present := map[int64]bool{}
	err = b.rows(ctx, instanceQuery(in, "("+strings.Join(inHoles, " or ")+")"), func(row map[string]string) error {
		if n, err := strconv.ParseInt(row[backend.FieldSeq], 10, 64); err == nil {
			present[n] = true
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("look for agent instance %s's missing sequence numbers outside the window: %w", in.ID, err)
	}
	for _, h := range holes {
		for _, r := range absentRuns(h.Seqs, present) {
			in.Missing = append(in.Missing, backend.Hole{Seqs: r, After: h.After, Before: h.Before})
		}
	}
	return nil
}

// instanceQuery is the LogsQL query of the sequence numbers of in's records
// that match filter.
func instanceQuery(in *backend.Instance, filter string) string {
	q := &query{}
	q.in(backend.FieldNode, []string{in.Node})
	q.add(quote(backend.FieldServiceInstanceID) + ":=" + quote(in.ID))
	q.add(filter)
	return q.String() + " | fields _time, " + quote(backend.FieldSeq)
}

// absentRuns returns the runs of numbers in r that are not in present.
func absentRuns(r backend.SeqRange, present map[int64]bool) []backend.SeqRange {
	var out []backend.SeqRange
	for n := r.First; n <= r.Last; n++ {
		if present[n] {
			continue
		}
		if len(out) > 0 && out[len(out)-1].Last == n-1 {
			out[len(out)-1].Last = n
		} else {
			out = append(out, backend.SeqRange{First: n, Last: n})
		}
	}
	return out
}

func lossOf(row map[string]string) (backend.Loss, error) {
	var l backend.Loss
	var err error
	if l.Time, err = time.Parse(time.RFC3339Nano, row["_time"]); err != nil {
		return l, fmt.Errorf("loss record with a bad _time: %v", row)
	}
	num := func(field string) int64 {
		n, _ := strconv.ParseInt(row[field], 10, 64)
		return n
	}
	tm := func(field string) time.Time {
		t, _ := time.Parse(time.RFC3339Nano, row[field])
		return t
	}
	l.Seq = num(backend.FieldSeq)
	l.Count = num(backend.FieldLostCount)
	l.Bytes = num(backend.FieldLostBytes)
	l.Reason = row[backend.FieldLostReason]
	l.First, l.Last = tm(backend.FieldLostTimeMin), tm(backend.FieldLostTimeMax)
	l.Seqs = backend.SeqRange{First: num(backend.FieldLostSeqMin), Last: num(backend.FieldLostSeqMax)}
	return l, nil
}
