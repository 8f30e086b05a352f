package verify

import (
	"fmt"
	"slices"

	"github.com/connaudit/connaudit/trail"
	"github.com/connaudit/connaudit/trail/chain"
	"github.com/connaudit/connaudit/trail/checkpoint"
)

// judge verifies one instance.
type judge struct {
	opt      Options
	node, id string
	in       *instance

	seqs     []uint64
	chosen   []*entry // the kept copy of seqs[i]
	holes    []seqRange
	breaks   []int // indexes into seqs where the chain was taken up again after a hole
	findings []Finding
	proof    Proof
}

type seqRange struct{ first, last uint64 }

func (j *judge) find(first, last uint64, kind Kind, format string, args ...any) {
	j.findings = append(j.findings, Finding{Node: j.node, Instance: j.id, First: first, Last: last, Kind: kind,
		Detail: fmt.Sprintf(format, args...)})
}

func (j *judge) run() {
	j.in.group()
	j.seqs = j.in.seqs
	j.proof = Proof{Node: j.node, Instance: j.id, FirstSeq: j.seqs[0], LastSeq: j.seqs[len(j.seqs)-1], Records: len(j.seqs)}
	j.walk()
	j.reclassify()
	lost := j.explainHoles()
	j.checkEnds(lost)
	j.checkCheckpoints(func(first, last uint64) bool {
		// Whether seqs first..last hold a hole the chain does not skip.
		for _, h := range j.holes {
			if h.last < first || h.first > last {
				continue
			}
			for x := h.first; x <= h.last; x++ {
				if !refusedRange(lost, x) {
					return true
				}
			}
		}
		return false
	})
	slices.SortFunc(j.findings, func(a, b Finding) int {
		if a.First != b.First {
			return compareU(a.First, b.First)
		}
		return compareU(a.Last, b.Last)
	})
}

func compareU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// distinct drops identical copies (replays) of the i-th seq.
func (j *judge) distinct(i int) []*entry {
	var out []*entry
	copies := j.in.at(i)
	for i := range copies {
		dup := false
		for _, o := range out {
			if o.leaf == copies[i].leaf && o.claimed == copies[i].claimed && o.chained == copies[i].chained {
				dup = true
				break
			}
		}
		if dup {
			j.proof.Duplicates++
			continue
		}
		out = append(out, &copies[i])
	}
	return out
}

// verifies reports whether e matches the chain after prev.
func verifies(prev chain.Link, e *entry) bool {
	return e.chained && e.claimed == chain.Next(prev, e.leaf)
}

// continued reports whether a copy of the record at index i+1 (when it is
// the very next seq) takes the chain on from e.
func (j *judge) continued(i int, e *entry) bool {
	if i+1 >= len(j.seqs) || j.seqs[i+1] != j.seqs[i]+1 {
		return false
	}
	next := j.in.at(i + 1)
	for k := range next {
		if verifies(e.claimed, &next[k]) {
			return true
		}
	}
	return false
}

// pick chooses among copies: one the next record continues from, else the first.
func (j *judge) pick(i int, cands []*entry) *entry {
	for _, c := range cands {
		if j.continued(i, c) {
			return c
		}
	}
	return cands[0]
}

// walk chooses one copy per seq and checks each against the chain.
func (j *judge) walk() {
	var prev chain.Link
	have := false
	if j.seqs[0] == 1 {
		prev, have = chain.Genesis, true
		j.proof.FromStart = true
	}
	expect := j.seqs[0]
	for i, s := range j.seqs {
		hole := s > expect
		if hole {
			j.holes = append(j.holes, seqRange{expect, s - 1})
		}
		copies := j.distinct(i)
		var good, chained []*entry
		for _, c := range copies {
			if c.chained {
				chained = append(chained, c)
				if have && verifies(prev, c) {
					good = append(good, c)
				}
			}
		}
		var e *entry
		switch {
		case len(good) > 0:
			e = j.pick(i, good)
		case len(chained) == 0:
			e = copies[0]
			j.find(s, s, Unsigned, "the record carries no %s", trail.KeyChain)
		case !have:
			// The window's first record, or the first after an unsigned one:
			// the chain is taken up from its value.
			e = j.pick(i, chained)
			j.proof.Unbound++
		case hole:
			// The chain may break where records were lost after they were
			// chained; explainHoles decides.
			e = j.pick(i, chained)
			j.breaks = append(j.breaks, i)
		default:
			e = j.pick(i, chained)
			j.find(s, s, Altered, "the record does not match the chain after seq %d: it was changed, or seq %d was replaced by a record with a recomputed chain value", s-1, s-1)
		}
		for _, c := range copies {
			if c != e {
				j.find(s, s, Inserted, "a second, different record with seq %d (%s at %s) does not match the chain", s, c.event(), c.time().UTC().Format("2006-01-02T15:04:05.000Z07:00"))
			}
		}
		j.chosen = append(j.chosen, e)
		prev, have = e.claimed, e.chained
		if have && len(good) == 0 && !j.continued(i, e) {
			// Neither this record nor its chain value can be trusted: take
			// the chain up again from the next record.
			have = false
		}
		expect = s + 1
		if t := e.time(); t.After(j.proof.Newest) {
			j.proof.Newest = t
		}
		switch trail.Event(e.event()) {
		case trail.EventAgentStart:
			if e.key != "" && !slices.Contains(j.in.keys, e.key) {
				j.in.keys = append(j.in.keys, e.key)
			}
			if t := j.opt.TrustedKey; t != "" && e.key != t {
				j.find(s, s, Unsigned, "the start record's key %.60q is not the trusted key", e.key)
			}
			if w, ok := j.opt.Witnessed[j.id]; ok && e.key != w.Key {
				j.find(s, s, Unsigned, "the start record's key %.60q is not the key %.60q that the witness of node %s holds for this instance: the instance was rewritten under another key", e.key, w.Key, w.Node)
			}
			if e.heartbeat > 0 {
				j.in.heartbeat = e.heartbeat
			}
			if e.prev != nil {
				j.proof.Previous = e.prev.instance
			}
		case trail.EventAgentStop:
			j.proof.Stopped = true
		}
	}
}

// reclassify names an altered record that carries another seq's chain
// value: a record moved to another seq. Only the chain values of altered
// records are looked for, so that memory does not grow with the instance.
func (j *judge) reclassify() {
	want := map[chain.Link][]uint64{}
	for _, f := range j.findings {
		if f.Kind != Altered || f.First != f.Last {
			continue
		}
		k, _ := slices.BinarySearch(j.seqs, f.First)
		if k < len(j.seqs) && j.seqs[k] == f.First && j.chosen[k].chained {
			want[j.chosen[k].claimed] = nil
		}
	}
	if len(want) == 0 {
		return
	}
	for i, e := range j.chosen {
		if at, ok := want[e.claimed]; ok && e.chained {
			want[e.claimed] = append(at, j.seqs[i])
		}
	}
	for i := range j.findings {
		f := &j.findings[i]
		if f.Kind != Altered || f.First != f.Last {
			continue
		}
		k, _ := slices.BinarySearch(j.seqs, f.First)
		if k < len(j.seqs) && j.seqs[k] == f.First {
			for _, t := range want[j.chosen[k].claimed] {
				if t != f.First {
					f.Kind = Reordered
					f.Detail = fmt.Sprintf("the record carries the chain value of seq %d: it was moved from there", t)
					break
				}
			}
		}
	}
}

// lossRange is a loss record's named seqs.
type lossRange struct {
	seqRange
	reason string
}

// refusedBySpool are loss reasons whose seqs the chain skips: the ledger
// never spooled them. Seqs lost for other reasons were chained first.
var refusedBySpool = map[string]bool{string(trail.LossSpoolFull): true, string(trail.LossSpoolError): true}

func refusedRange(losses []lossRange, s uint64) bool {
	for _, l := range losses {
		if s >= l.first && s <= l.last && refusedBySpool[l.reason] {
			return true
		}
	}
	return false
}

// explainHoles reports every hole no loss record explains, every break of
// the chain that a loss does not explain, and every record at a seq a loss
// record names. It returns the loss ranges.
func (j *judge) explainHoles() []lossRange {
	var losses []lossRange
	for _, e := range j.chosen {
		if trail.Event(e.event()) == trail.EventLoss && e.lossF > 0 && e.lossL >= e.lossF {
			losses = append(losses, lossRange{seqRange{e.lossF, e.lossL}, e.lossReason})
			j.proof.Lost += e.lossL - e.lossF + 1
		}
	}
	covered := func(s uint64) (lossRange, bool) {
		for _, l := range losses {
			if s >= l.first && s <= l.last {
				return l, true
			}
		}
		return lossRange{}, false
	}
	for _, h := range j.holes {
		// Report the runs of the hole that no loss names.
		start := uint64(0)
		for s := h.first; s <= h.last+1; s++ {
			_, ok := covered(s)
			if s <= h.last && !ok {
				if start == 0 {
					start = s
				}
				continue
			}
			if start != 0 {
				j.find(start, s-1, Deleted, "no record and no loss record for these seqs")
				start = 0
			}
		}
	}
	for _, i := range j.breaks {
		s := j.seqs[i]
		h := seqRange{j.seqs[i-1] + 1, s - 1}
		explained, chainedLoss := true, false
		for x := h.first; x <= h.last; x++ {
			l, ok := covered(x)
			if !ok {
				explained = false
				break
			}
			if !refusedBySpool[l.reason] {
				chainedLoss = true
			}
		}
		switch {
		case !explained:
			// Reported as deleted already; the records after it cannot be bound.
			j.proof.Unbound++
		case chainedLoss:
			j.proof.Unbound++
		default:
			j.find(s, s, Altered, "the record does not continue the chain across seqs %d-%d, which the spool refused", h.first, h.last)
		}
	}
	for i, s := range j.seqs {
		if l, ok := covered(s); ok {
			j.find(s, s, Inserted, "a %s record at a seq a loss record (%s) names as lost", j.chosen[i].event(), l.reason)
		}
	}
	return losses
}

// checkEnds reports seqs missing before the first record of an instance
// whose start is in the window, and after the last one when the stop record
// or a checkpoint names later seqs.
func (j *judge) checkEnds(losses []lossRange) {
	explained := func(s uint64) bool {
		for _, l := range losses {
			if s >= l.first && s <= l.last {
				return true
			}
		}
		return false
	}
	last := j.seqs[len(j.seqs)-1]
	var final, sealed uint64
	for i, e := range j.chosen {
		if trail.Event(e.event()) == trail.EventAgentStart && j.seqs[0] > 1 && !j.proof.FromStart {
			j.find(1, j.seqs[0]-1, Deleted, "the start record (seq %d) is here but seqs before the first record are missing", j.seqs[i])
			j.proof.FromStart = true
		}
		if e.final > 0 {
			final = max(final, e.final)
		}
		if e.cp != nil {
			sealed = max(sealed, e.cp.last)
		}
	}
	if final > 0 {
		for i, s := range j.seqs {
			if s > final {
				j.find(s, s, Inserted, "a %s record after the final seq %d the stop record states", j.chosen[i].event(), final)
			}
		}
	}
	if want := max(final, sealed); want > last {
		first := last + 1
		for first <= want && explained(first) {
			first++
		}
		if first <= want {
			j.find(first, want, Deleted, "the instance's own records name seqs up to %d, the trail ends at %d", want, last)
		}
	}
}

// checkCheckpoints verifies every checkpoint's signature and the head it
// seals, and reports records left unsealed too long. The head of a valid
// checkpoint is recomputed from the leaves of the records since the previous
// valid one, starting at that one's signed head: a forger who recomputed the
// chain values after changing a record is caught here, in the one range
// where the change is.
func (j *judge) checkCheckpoints(broken func(first, last uint64) bool) {
	anchored := j.seqs[0] == 1
	anchor, anchorSeq := chain.Genesis, uint64(0)
	for i, e := range j.chosen {
		if e.cp == nil {
			continue
		}
		cp := e.cp
		c := checkpoint.Checkpoint{Instance: j.id, First: cp.first, Last: cp.last, Count: cp.count, Head: cp.head}
		var err error
		switch {
		case !cp.headOK:
			err = fmt.Errorf("no valid %s", trail.KeyCheckpointHead)
		case j.opt.TrustedKey != "":
			err = checkpoint.Verify(j.opt.TrustedKey, cp.sig, c)
		case j.witnessKey() != "":
			if err = checkpoint.Verify(j.witnessKey(), cp.sig, c); err != nil {
				err = fmt.Errorf("%w with the key the node's witness holds for the instance", err)
			}
		case len(j.in.keys) == 0:
			err = fmt.Errorf("no start record with the instance's key (%s) in the trail", trail.KeyAgentKey)
		default:
			for _, k := range j.in.keys {
				if err = checkpoint.Verify(k, cp.sig, c); err == nil {
					break
				}
			}
		}
		if err != nil {
			j.find(e.seq, e.seq, Unsigned, "checkpoint of seqs %d-%d: %v", cp.first, cp.last, err)
			continue
		}
		j.proof.Checkpoints++
		if w, ok := j.opt.Witnessed[j.id]; ok && w.Checkpoint.Last == cp.last && w.Checkpoint.First == cp.first {
			if w.Checkpoint.Head == cp.head {
				j.proof.WitnessedSeq = cp.last
			} else {
				j.proof.witnessMismatch = true
				j.find(e.seq, e.seq, Altered, "the checkpoint of seqs %d-%d seals chain head %s, but the witness of node %s holds %s for it", cp.first, cp.last, cp.head, w.Node, w.Checkpoint.Head)
			}
		}
		if cp.last < j.seqs[0] || cp.last < anchorSeq {
			continue // seals nothing in the window
		}
		k, _ := slices.BinarySearch(j.seqs[:i], cp.last+1)
		var head chain.Link
		var ok bool
		switch {
		case anchored && !broken(anchorSeq+1, cp.last):
			head = anchor
			lo, _ := slices.BinarySearch(j.seqs, anchorSeq+1)
			for _, r := range j.chosen[lo:k] {
				head = chain.Next(head, r.leaf)
			}
			ok = true
		case k > 0:
			// Not anchored (the window starts mid-instance), or records
			// are missing: compare with the chain value the records carry.
			head, ok = j.chosen[k-1].claimed, true
		}
		from := max(anchorSeq+1, j.seqs[0])
		if ok && head != cp.head {
			j.find(from, cp.last, Altered, "the records do not match the chain head the checkpoint at seq %d signed", e.seq)
		}
		j.proof.SealedThrough = cp.last
		anchor, anchorSeq, anchored = cp.head, cp.last, true
	}
	// A checkpoint seals the records before it; what follows the last one
	// is unsealed, which is right only for the newest few seconds (and for
	// that checkpoint and the stop record themselves).
	lastSeq := j.seqs[len(j.seqs)-1]
	for i, s := range j.seqs {
		e := j.chosen[i]
		if s <= j.proof.SealedThrough || e.cp != nil || e.final > 0 {
			continue
		}
		maxUnsealed := j.opt.MaxUnsealed
		if hb := 3 * j.in.heartbeat; maxUnsealed > 0 && hb > maxUnsealed {
			maxUnsealed = hb // the instance promised checkpoints less often
		}
		tooOld := maxUnsealed > 0 && j.proof.Newest.Sub(e.time()) > maxUnsealed
		tooMany := j.opt.MaxUnsealedRecords > 0 && lastSeq-s > j.opt.MaxUnsealedRecords
		if tooOld || tooMany {
			j.find(s, lastSeq, Unsigned, "no valid checkpoint seals these records, though the instance wrote records %s later",
				j.proof.Newest.Sub(e.time()).Round(1e9))
		}
		return
	}
}

// witnessKey is the key the node's witness holds for the instance; empty
// when it has none.
func (j *judge) witnessKey() string { return j.opt.Witnessed[j.id].Key }
