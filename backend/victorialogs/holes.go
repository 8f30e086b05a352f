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
	"github.com/connaudit/connaudit/trail/coverage"
)

// Finding an instance's missing sequence numbers without listing them all.
//
// VictoriaLogs counts the distinct seqs of the instance per bucket of seqs
// (`stats by ("connaudit.seq":w) count_uniq("connaudit.seq")`); a bucket
// whose count is its width holds every seq, one with none is missing whole,
// and only a bucket in between is split again, until it is short enough to
// list. count_uniq counts a replayed duplicate once, so duplicates cannot
// make up for a hole. Client memory is a few buckets per level and one
// listed range, whatever the window; a count_uniq query spans at most
// scanSpan seqs, which bounds VictoriaLogs' set of them too.
// (Variables, so that tests can make small instances take the paths of
// large ones.)
var (
	// scanFanout is how many buckets one count query splits its range into.
	scanFanout int64 = 64
	// scanList is the longest range that is listed rather than counted.
	scanList int64 = 4096
	// scanSpan is the most seqs one count_uniq query covers.
	scanSpan int64 = 1 << 22
)

// neighbourBatch is how many seqs one query asks the times of.
const neighbourBatch = 512

// seqScan finds the seqs absent from ranges of one instance's records that
// match filter.
type seqScan struct {
	b      *Backend
	filter string // the instance, and the time range if any
	emit   func(coverage.SeqRange)
	// bounds, when not empty, holds every seq that filter matches (the
	// instance's MinSeq and MaxSeq in the window), so that a count of all
	// of it needs no seq range filter: VictoriaLogs checks one row by row,
	// even in a block that lies inside the range, and holds the values.
	bounds coverage.SeqRange
}

// seqs is the filter of the records with a seq in [lo, hi].
func (s *seqScan) seqs(lo, hi int64) string {
	if s.bounds.Len() > 0 && lo <= s.bounds.First && hi >= s.bounds.Last {
		return quote(backend.FieldSeq) + ":*"
	}
	return seqRange(lo, hi)
}

func (s *seqScan) query(extra string) string {
	return s.filter + " " + extra
}

// absent emits, in ascending order, the runs of [lo, hi] with no record.
func (s *seqScan) absent(ctx context.Context, lo, hi int64) error {
	switch span := hi - lo + 1; {
	case span <= scanList:
		return s.list(ctx, []coverage.SeqRange{{First: lo, Last: hi}})
	case span <= scanSpan:
		return s.buckets(ctx, lo, hi, true)
	default:
		return s.buckets(ctx, lo, hi, false)
	}
}

// buckets counts the seqs of [lo, hi] per bucket and narrows into the
// buckets that are short. With distinct, a bucket's count is its distinct
// seqs; without, its records (a range longer than scanSpan is not counted
// distinct at once, to bound VictoriaLogs' memory): then only an empty
// bucket says anything, and a dense one is counted distinct scanSpan seqs
// at a time, while a sparse one (a forged seq far beyond the others, say)
// is split again.
func (s *seqScan) buckets(ctx context.Context, lo, hi int64, distinct bool) error {
	w, counts, err := s.countBuckets(ctx, lo, hi, distinct)
	if err != nil {
		return err
	}
	for k := floorTo(lo, w); k <= hi; k += w {
		a, z := max(k, lo), min(k+w-1, hi)
		var err error
		switch n := counts[k]; {
		case n == 0:
			s.emit(coverage.SeqRange{First: a, Last: z})
		case distinct && n >= z-a+1:
		case distinct, z-a+1 <= scanSpan:
			err = s.absent(ctx, a, z)
		case 2*n >= z-a+1: // dense
			for c := a; c <= z && err == nil; c += scanSpan {
				err = s.buckets(ctx, c, min(z, c+scanSpan-1), true)
			}
		default:
			err = s.buckets(ctx, a, z, false)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// floorTo is the largest multiple of w not above n, as VictoriaLogs floors
// a seq (a forged one may be negative) to its bucket.
func floorTo(n, w int64) int64 {
	f := n - n%w
	if f > n {
		f -= w
	}
	return f
}

// list emits the runs of rs (ascending, together at most scanList seqs)
// with no record, from one listing of their records.
func (s *seqScan) list(ctx context.Context, rs []coverage.SeqRange) error {
	var terms []string
	var total int64
	for _, r := range rs {
		terms = append(terms, seqRange(r.First, r.Last))
		total += r.Len()
	}
	present := make([]bool, total)
	offs := make([]int64, len(rs)) // where each range starts in present
	for i := 1; i < len(rs); i++ {
		offs[i] = offs[i-1] + rs[i-1].Len()
	}
	index := func(n int64) int64 {
		i, _ := slices.BinarySearchFunc(rs, n, func(r coverage.SeqRange, n int64) int { return cmp.Compare(r.Last, n) })
		if i < len(rs) && n >= rs[i].First {
			return offs[i] + n - rs[i].First
		}
		return -1
	}
	q := s.query("(" + strings.Join(terms, " or ") + ") | fields " + quote(backend.FieldSeq))
	err := s.b.rows(ctx, q, func(row map[string]string) error {
		if n, err := strconv.ParseInt(row[backend.FieldSeq], 10, 64); err == nil {
			if i := index(n); i >= 0 {
				present[i] = true
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	var off int64
	for _, r := range rs {
		start := int64(-1)
		for n := r.First; n <= r.Last+1; n++ {
			if n <= r.Last && !present[off+n-r.First] {
				if start < 0 {
					start = n
				}
				continue
			}
			if start >= 0 {
				s.emit(coverage.SeqRange{First: start, Last: n - 1})
				start = -1
			}
		}
		off += r.Len()
	}
	return nil
}

func seqRange(lo, hi int64) string {
	return quote(backend.FieldSeq) + ":range[" + strconv.FormatInt(lo, 10) + ", " + strconv.FormatInt(hi, 10) + "]"
}

// runs merges ascending runs that touch.
type runs []coverage.SeqRange

// seqs is how many seqs the runs hold.
func (rs runs) seqs() int64 {
	var n int64
	for _, r := range rs {
		n += r.Len()
	}
	return n
}

func (rs *runs) add(r coverage.SeqRange) {
	if n := len(*rs); n > 0 && (*rs)[n-1].Last+1 >= r.First {
		(*rs)[n-1].Last = max((*rs)[n-1].Last, r.Last)
		return
	}
	*rs = append(*rs, r)
}

// scanMissing finds in's missing seqs in [MinSeq, MaxSeq]: first the runs
// with no record in the window, then, of those, the seqs with no record at
// any time. Records are timestamped when the kernel saw the connect,
// numbered when the agent read them: one drained from the pinned capture at
// a restart is older than the start record before it in seq. Such a record
// is outside the window, not missing. The runs with no record in the
// window are scanned (counted per bucket) unless scanned says them.
func (b *Backend) scanMissing(ctx context.Context, from, to time.Time, in *coverage.Instance, scanned *runs) error {
	var inWindow runs
	if scanned != nil {
		inWindow = *scanned
	} else {
		win := &seqScan{b: b, filter: instanceFilter(in, timeRange(from, to)), emit: inWindow.add, bounds: coverage.SeqRange{First: in.MinSeq, Last: in.MaxSeq}}
		if err := win.absent(ctx, in.MinSeq, in.MaxSeq); err != nil {
			return fmt.Errorf("count the sequence numbers of agent instance %s: %w", in.ID, err)
		}
	}
	if len(inWindow) == 0 {
		return nil
	}
	at, err := b.neighbourTimes(ctx, from, to, in, inWindow)
	if err != nil {
		return fmt.Errorf("read the records around agent instance %s's missing sequence numbers: %w", in.ID, err)
	}
	// Of each in-window hole, the runs with no record at any time: long
	// holes are counted, short ones listed together, up to scanList seqs
	// per query. Runs of two holes never touch: a record lies between.
	var found runs
	anyTime := &seqScan{b: b, filter: instanceFilter(in, ""), emit: found.add}
	var batch []coverage.SeqRange
	var batchLen int64
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := anyTime.list(ctx, batch)
		batch, batchLen = batch[:0], 0
		return err
	}
	for _, r := range inWindow {
		var err error
		switch {
		case r.Len() > scanList:
			if err = flush(); err == nil {
				err = anyTime.absent(ctx, r.First, r.Last)
			}
		case batchLen+r.Len() > scanList:
			err = flush()
			fallthrough
		default:
			batch = append(batch, r)
			batchLen += r.Len()
		}
		if err != nil {
			return fmt.Errorf("look for agent instance %s's missing sequence numbers outside the window: %w", in.ID, err)
		}
	}
	if err := flush(); err != nil {
		return fmt.Errorf("look for agent instance %s's missing sequence numbers outside the window: %w", in.ID, err)
	}
	// Each run gets the times of the records around its in-window hole.
	h := 0
	for _, r := range found {
		for inWindow[h].Last < r.First {
			h++
		}
		in.Missing = append(in.Missing, coverage.Hole{Seqs: r, After: at[inWindow[h].First-1], Before: at[inWindow[h].Last+1]})
	}
	return nil
}

// neighbourTimes returns, by seq, the times of the records in the window
// just before and just after each run, which are in it.
func (b *Backend) neighbourTimes(ctx context.Context, from, to time.Time, in *coverage.Instance, rs runs) (map[int64]time.Time, error) {
	want := make([]string, 0, 2*len(rs))
	for _, r := range rs {
		want = append(want, strconv.FormatInt(r.First-1, 10), strconv.FormatInt(r.Last+1, 10))
	}
	at := make(map[int64]time.Time, len(want))
	for len(want) > 0 {
		n := min(len(want), neighbourBatch)
		q := instanceFilter(in, timeRange(from, to)) + " " + quote(backend.FieldSeq) + ":in(" + quoteAll(want[:n]) + ") | fields _time, " + quote(backend.FieldSeq)
		want = want[n:]
		err := b.rows(ctx, q, func(row map[string]string) error {
			s, err := strconv.ParseInt(row[backend.FieldSeq], 10, 64)
			if err != nil {
				return nil
			}
			if _, ok := at[s]; !ok {
				at[s], _ = time.Parse(time.RFC3339Nano, row["_time"])
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return at, nil
}

// instanceFilter is the LogsQL filter of in's records that match filter.
func instanceFilter(in *coverage.Instance, filter string) string {
	q := &query{}
	q.in(backend.FieldNode, []string{in.Node})
	q.add(quote(backend.FieldServiceInstanceID) + ":=" + quote(in.ID))
	if filter != "" {
		q.add(filter)
	}
	return q.String()
}

// countBuckets splits [lo, hi] into at most scanFanout buckets of w seqs
// (a power of two, aligned as VictoriaLogs rounds) and counts each bucket's
// records, or its distinct seqs with distinct; an empty bucket is absent.
func (s *seqScan) countBuckets(ctx context.Context, lo, hi int64, distinct bool) (w int64, counts map[int64]int64, err error) {
	w = 1
	for w*scanFanout < hi-lo+1 {
		w *= 2
	}
	seq := quote(backend.FieldSeq)
	count := "count()"
	if distinct {
		count = "count_uniq(" + seq + ")"
	}
	q := s.query(s.seqs(lo, hi) + " | stats by (" + seq + ":" + strconv.FormatInt(w, 10) + ") " + count + " as n")
	counts = make(map[int64]int64, scanFanout+1)
	err = s.b.rows(ctx, q, func(row map[string]string) error {
		k, err1 := strconv.ParseInt(row[backend.FieldSeq], 10, 64)
		n, err2 := strconv.ParseInt(row["n"], 10, 64)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("seq bucket row %v: want integers", row)
		}
		counts[k] = n
		return nil
	})
	return w, counts, err
}
