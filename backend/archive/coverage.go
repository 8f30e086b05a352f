package archive

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/connaudit/connaudit/backend"
	"github.com/connaudit/connaudit/trail/coverage"
)

type instanceKey struct{ node, id string }

// instanceWindow is what the window holds of one instance: its distinct
// seqs, and the time of each.
type instanceWindow struct {
	at map[int64]time.Time
}

// Coverage implements backend.Backend, answering as the VictoriaLogs backend
// does: the instances with a start or stop record before to, or a record
// with a connaudit.seq in [from, to), on the given nodes; their records
// counted once each; the loss records of the window; and the seqs within
// [MinSeq, MaxSeq] that no record of the instance holds, at any time.
func (b *Backend) Coverage(ctx context.Context, from, to time.Time, nodes []string) (*coverage.Coverage, error) {
	c := &coverage.Coverage{From: from, To: to, AsOf: time.Now()}
	byKey := map[instanceKey]*coverage.Instance{}
	get := func(r backend.Record) *coverage.Instance {
		k := instanceKey{r.Get(backend.FieldNode), r.Get(backend.FieldServiceInstanceID)}
		in := byKey[k]
		if in == nil {
			in = &coverage.Instance{Node: k.node, ID: k.id}
			byKey[k] = in
		}
		return in
	}

	// Starts and stops of every agent up to the window's end.
	for _, r := range b.window(time.Unix(0, 0), to) {
		if !inNodes(r, nodes) {
			continue
		}
		switch r.Get(backend.FieldEventName) {
		case backend.EventAgentStart:
			in := get(r)
			if in.Started.IsZero() || r.Time.Before(in.Started) {
				in.Started, in.Resumed = r.Time, r.Get(backend.FieldResumed) == "true"
				if hb, err := strconv.ParseFloat(r.Get(backend.FieldHeartbeat), 64); err == nil && hb > 0 {
					in.Heartbeat = time.Duration(hb * float64(time.Second))
				}
			}
		case backend.EventAgentStop:
			in := get(r)
			if r.Time.After(in.Stopped) {
				in.Stopped = r.Time
			}
		}
	}

	// The records of the window that carry a seq, and its loss records.
	wins := map[instanceKey]*instanceWindow{}
	seenLoss := map[instanceKey]map[int64]bool{}
	for _, r := range b.window(from, to) {
		if !inNodes(r, nodes) || r.Get(backend.FieldSeq) == "" {
			continue
		}
		seq, err := strconv.ParseInt(r.Get(backend.FieldSeq), 10, 64)
		if err != nil {
			continue // not a seq: no agent wrote it
		}
		in := get(r)
		k := instanceKey{in.Node, in.ID}
		w := wins[k]
		if w == nil {
			w = &instanceWindow{at: map[int64]time.Time{}}
			wins[k] = w
			in.MinSeq, in.MaxSeq, in.FirstSeen = seq, seq, r.Time
		}
		if _, ok := w.at[seq]; !ok {
			w.at[seq] = r.Time
		}
		in.MinSeq, in.MaxSeq = min(in.MinSeq, seq), max(in.MaxSeq, seq)
		in.LastSeen = r.Time
		if r.Get(backend.FieldEventName) == backend.EventLoss {
			if seenLoss[k] == nil {
				seenLoss[k] = map[int64]bool{}
			}
			l := lossOf(r)
			if !seenLoss[k][l.Seq] { // a replayed duplicate
				seenLoss[k][l.Seq] = true
				in.Losses = append(in.Losses, l)
			}
		}
	}

	nodeSet := map[string]bool{}
	for _, n := range nodes {
		nodeSet[n] = true
	}
	for k, in := range byKey {
		if len(nodes) == 0 {
			nodeSet[k.node] = true
		}
		if w := wins[k]; w != nil {
			in.Records = int64(len(w.at))
		}
		// An instance that stopped before the window says nothing of it.
		if in.Records == 0 && !in.Stopped.IsZero() && in.Stopped.Before(from) {
			continue
		}
		if in.Started.After(to) {
			continue
		}
		slices.SortFunc(in.Losses, func(a, b coverage.Loss) int { return a.Time.Compare(b.Time) })
		if w := wins[k]; w != nil {
			in.Missing = b.missing(in, w)
		}
		c.Instances = append(c.Instances, *in)
	}
	for n := range nodeSet {
		c.Nodes = append(c.Nodes, n)
	}
	slices.Sort(c.Nodes)
	slices.SortFunc(c.Instances, func(a, b coverage.Instance) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), a.Started.Compare(b.Started))
	})
	return c, ctx.Err()
}

// missing returns the runs of [in.MinSeq, in.MaxSeq] with no record of the
// instance in the window, less the seqs it holds at other times (a record
// drained from the pinned capture at a restart is older than its seq): each
// with the times of the window's records just before and after it.
func (b *Backend) missing(in *coverage.Instance, w *instanceWindow) []coverage.Hole {
	if in.MaxSeq-in.MinSeq+1 == int64(len(w.at)) {
		return nil
	}
	var anyTime []int64
	for _, r := range b.recs {
		if r.Get(backend.FieldServiceInstanceID) != in.ID || r.Get(backend.FieldNode) != in.Node {
			continue
		}
		if s, err := strconv.ParseInt(r.Get(backend.FieldSeq), 10, 64); err == nil {
			anyTime = append(anyTime, s)
		}
	}
	slices.Sort(anyTime)
	anyTime = slices.Compact(anyTime)
	present := make([]int64, 0, len(w.at))
	for s := range w.at {
		present = append(present, s)
	}
	slices.Sort(present)
	var holes []coverage.Hole
	for i := 1; i < len(present); i++ {
		lo, hi := present[i-1]+1, present[i]-1
		if lo > hi {
			continue
		}
		// Of the run lo..hi, the parts no record holds at any time.
		at, _ := slices.BinarySearch(anyTime, lo)
		next := lo
		for ; at < len(anyTime) && anyTime[at] <= hi; at++ {
			if anyTime[at] > next {
				holes = append(holes, coverage.Hole{Seqs: coverage.SeqRange{First: next, Last: anyTime[at] - 1}, After: w.at[lo-1], Before: w.at[hi+1]})
			}
			next = anyTime[at] + 1
		}
		if next <= hi {
			holes = append(holes, coverage.Hole{Seqs: coverage.SeqRange{First: next, Last: hi}, After: w.at[lo-1], Before: w.at[hi+1]})
		}
	}
	return holes
}

func lossOf(r backend.Record) coverage.Loss {
	num := func(field string) int64 {
		n, _ := strconv.ParseInt(r.Get(field), 10, 64)
		return n
	}
	tm := func(field string) time.Time {
		t, _ := time.Parse(time.RFC3339Nano, r.Get(field))
		return t
	}
	return coverage.Loss{
		Time: r.Time, Seq: num(backend.FieldSeq), Count: num(backend.FieldLostCount), Bytes: num(backend.FieldLostBytes),
		Reason: r.Get(backend.FieldLostReason),
		First:  tm(backend.FieldLostTimeMin), Last: tm(backend.FieldLostTimeMax),
		Seqs: coverage.SeqRange{First: num(backend.FieldLostSeqMin), Last: num(backend.FieldLostSeqMax)},
	}
}
