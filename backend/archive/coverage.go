package archive

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/connaudit/connaudit/backend"
	"github.com/connaudit/connaudit/trail"
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
	cb := coverage.NewBuilder(from, to, nodes, time.Now())

	// Starts and stops of every agent up to the window's end.
	for _, r := range b.window(time.Unix(0, 0), to) {
		if inNodes(r, nodes) {
			cb.Lifecycle(trail.Event(r.Get(backend.FieldEventName)), r.Time, r.Attr)
		}
	}

	// The records of the window that carry a seq, and its loss records.
	wins := map[instanceKey]*instanceWindow{}
	for _, r := range b.window(from, to) {
		if !inNodes(r, nodes) || r.Get(backend.FieldSeq) == "" {
			continue
		}
		seq, err := strconv.ParseInt(r.Get(backend.FieldSeq), 10, 64)
		if err != nil {
			continue // not a seq: no agent wrote it
		}
		in := cb.Instance(r.Get(backend.FieldNode), r.Get(backend.FieldServiceInstanceID))
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
		in.Records = int64(len(w.at))
		if r.Get(backend.FieldEventName) == backend.EventLoss {
			cb.Loss(r.Time, r.Attr)
		}
	}

	c, _ := cb.Coverage(func(in *coverage.Instance) error {
		if w := wins[instanceKey{in.Node, in.ID}]; w != nil {
			in.Missing = b.missing(in, w)
		}
		return nil
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
