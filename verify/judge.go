package verify

import (
	"fmt"
	"slices"

	"github.com/connaudit/connaudit/trail"
	"github.com/connaudit/connaudit/trail/chain"
	"github.com/connaudit/connaudit/trail/checkpoint"
)

// judge verifies one instance. It takes the instance's records in seq
// order, one run of seqs at a time (feed), and keeps only what spans runs:
// the chain's state, the holes, the loss records, the last recentMax
// records and the checks that wait for the end (finish). So verify holds
// one run of an instance's records, not the instance.
type judge struct {
	opt      Options
	node, id string
	in       *instance

	started bool
	expect  uint64     // the seq after the last one judged
	prev    chain.Link // the chain value of the last record kept
	have    bool       // prev can be trusted
	holes   []seqRange // ascending
	breaks  []seqBreak // where the chain was taken up again after a hole
	losses  []lossRange
	final   uint64 // the largest final seq a stop record states
	sealed  uint64 // the largest seq any checkpoint names
	links   []startLink

	// Checkpoints: the chain head since the last valid one (the anchor),
	// folded over the records kept since, and the last records kept, for a
	// checkpoint that seals less than everything before it.
	anchored   bool
	anchor     chain.Link
	anchorSeq  uint64
	running    chain.Link // anchor, folded over the leaves of the records kept after anchorSeq
	runningOK  bool       // running covers every such record (false once one left recent before the anchor reached it)
	recent     []kept     // the last records kept (recentMax to twice that), ascending
	trimmed    kept       // the newest record dropped from recent (seq 0: none)
	unsealed   *kept      // the first record after SealedThrough that a checkpoint should seal
	deferred   []deferredHead
	run        []chosen // the records kept in this feed, for reclassify
	runFinding int      // index of the first finding of this feed

	findings []Finding
	proof    Proof
}

// kept is what the judge remembers of a record it kept (one per seq).
type kept struct {
	seq        uint64
	nanos      int64
	leaf       chain.Link
	claimed    chain.Link
	chained    bool
	sealable   bool       // not a checkpoint or stop record: a checkpoint must seal it
	runningOut chain.Link // running after this record
}

// chosen is the copy kept of a seq, as reclassify needs it.
type chosen struct {
	seq     uint64
	claimed chain.Link
	chained bool
}

// recentMax bounds recent: a checkpoint seals the records just before it
// (the agent's seal every seq up to its own), so only a layout no agent
// writes reaches further back.
const recentMax = 1024

type seqRange struct{ first, last uint64 }

// seqBreak is a record after a hole whose chain value does not follow the
// record before the hole; explainHoles decides what it means.
type seqBreak struct {
	seq  uint64
	hole seqRange
}

// deferredHead is a checkpoint whose sealed seqs hold a hole: whether the
// chain skips the hole (the spool refused those seqs) is known only once
// every loss record was read.
type deferredHead struct {
	cpSeq, from, last, anchorFirst uint64
	anchored, foldOK, claimedOK    bool
	fold, claimed, head            chain.Link
}

func newJudge(opt Options, node, id string, in *instance) *judge {
	return &judge{opt: opt, node: node, id: id, in: in, proof: Proof{Node: node, Instance: id}}
}

func (j *judge) find(first, last uint64, kind Kind, format string, args ...any) {
	j.findings = append(j.findings, Finding{Node: j.node, Instance: j.id, First: first, Last: last, Kind: kind,
		Detail: fmt.Sprintf(format, args...)})
}

// feed judges the seqs of in's grouped entries from index from up to (not
// including) index to. The group at index to, if any, is the next seq's
// copies, which picking a copy looks at.
func (j *judge) feed(from, to int) {
	in := j.in
	j.run, j.runFinding = j.run[:0], len(j.findings)
	for i := from; i < to; i++ {
		var next []entry
		if i+1 < len(in.seqs) && in.seqs[i+1] == in.seqs[i]+1 {
			next = in.at(i + 1)
		}
		j.step(in.seqs[i], in.at(i), next)
	}
	j.reclassify()
}

// verifies reports whether e matches the chain after prev.
func verifies(prev chain.Link, e *entry) bool {
	return e.chained && e.claimed == chain.Next(prev, e.leaf)
}

// continued reports whether a copy of the next seq (next) takes the chain
// on from e.
func continued(e *entry, next []entry) bool {
	for k := range next {
		if verifies(e.claimed, &next[k]) {
			return true
		}
	}
	return false
}

// pick chooses among copies: one the next record continues from, else the first.
func pick(cands []*entry, next []entry) *entry {
	for _, c := range cands {
		if continued(c, next) {
			return c
		}
	}
	return cands[0]
}

// distinct drops identical copies (replays) of a seq.
func (j *judge) distinct(copies []entry) []*entry {
	var out []*entry
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

// step chooses one copy of seq s, checks it against the chain and notes
// what the checks at the end need of it.
func (j *judge) step(s uint64, copies, next []entry) {
	if !j.started {
		j.started = true
		j.proof.FirstSeq, j.expect = s, s
		j.anchor, j.running, j.runningOK = chain.Genesis, chain.Genesis, true
		if s == 1 {
			j.prev, j.have, j.anchored = chain.Genesis, true, true
			j.proof.FromStart = true
		}
	}
	j.proof.LastSeq = s
	j.proof.Records++
	hole := s > j.expect
	if hole {
		j.holes = append(j.holes, seqRange{j.expect, s - 1})
	}
	ds := j.distinct(copies)
	var good, chained []*entry
	for _, c := range ds {
		if c.chained {
			chained = append(chained, c)
			if j.have && verifies(j.prev, c) {
				good = append(good, c)
			}
		}
	}
	var e *entry
	switch {
	case len(good) > 0:
		e = pick(good, next)
	case len(chained) == 0:
		e = ds[0]
		j.find(s, s, Unsigned, "the record carries no %s", trail.KeyChain)
	case !j.have:
		// The window's first record, or the first after an unsigned one:
		// the chain is taken up from its value.
		e = pick(chained, next)
		j.proof.Unbound++
	case hole:
		// The chain may break where records were lost after they were
		// chained; explainHoles decides.
		e = pick(chained, next)
		j.breaks = append(j.breaks, seqBreak{s, seqRange{j.expect, s - 1}})
	default:
		e = pick(chained, next)
		j.find(s, s, Altered, "the record does not match the chain after seq %d: it was changed, or seq %d was replaced by a record with a recomputed chain value", s-1, s-1)
	}
	for _, c := range ds {
		if c != e {
			j.find(s, s, Inserted, "a second, different record with seq %d (%s at %s) does not match the chain", s, c.event(), c.time().UTC().Format("2006-01-02T15:04:05.000Z07:00"))
		}
	}
	j.prev, j.have = e.claimed, e.chained
	if j.have && len(good) == 0 && !continued(e, next) {
		// Neither this record nor its chain value can be trusted: take
		// the chain up again from the next record.
		j.have = false
	}
	j.expect = s + 1
	if t := e.time(); t.After(j.proof.Newest) {
		j.proof.Newest = t
	}
	for i := range copies {
		if p := copies[i].prev; p != nil {
			j.links = append(j.links, startLink{node: j.node, id: j.id, seq: s, prev: *p})
			break
		}
	}
	switch trail.Event(e.event()) {
	case trail.EventAgentStart:
		j.started1(s, e)
	case trail.EventAgentStop:
		j.proof.Stopped = true
	case trail.EventLoss:
		if e.lossF > 0 && e.lossL >= e.lossF {
			j.losses = append(j.losses, lossRange{seqRange{e.lossF, e.lossL}, e.lossReason})
			j.proof.Lost += e.lossL - e.lossF + 1
		}
	}
	j.final = max(j.final, e.final)
	if e.cp != nil {
		j.sealed = max(j.sealed, e.cp.last)
		j.checkpoint(s, e)
	}
	k := kept{seq: s, nanos: e.nanos, leaf: e.leaf, claimed: e.claimed, chained: e.chained, sealable: e.cp == nil && e.final == 0}
	j.keep(k)
	j.run = append(j.run, chosen{s, e.claimed, e.chained})
}

// started1 checks a start record.
func (j *judge) started1(s uint64, e *entry) {
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
	if j.proof.FirstSeq > 1 && !j.proof.FromStart {
		j.find(1, j.proof.FirstSeq-1, Deleted, "the start record (seq %d) is here but seqs before the first record are missing", s)
		j.proof.FromStart = true
	}
}

// keep folds a kept record into the running head and remembers it.
func (j *judge) keep(k kept) {
	j.running = chain.Next(j.running, k.leaf)
	k.runningOut = j.running
	if len(j.recent) == 2*recentMax {
		j.trimmed = j.recent[recentMax-1]
		j.recent = append(j.recent[:0], j.recent[recentMax:]...)
	}
	j.recent = append(j.recent, k)
	if j.unsealed == nil && k.sealable && k.seq > j.proof.SealedThrough {
		u := k
		j.unsealed = &u
	}
}

// lastKept is the newest record kept with a seq at most s.
func (j *judge) lastKept(s uint64) (kept, bool) {
	i, _ := slices.BinarySearchFunc(j.recent, s+1, func(k kept, t uint64) int { return cmpU(k.seq, t) })
	if i > 0 {
		return j.recent[i-1], true
	}
	if j.trimmed.seq != 0 && j.trimmed.seq <= s {
		return j.trimmed, true
	}
	return kept{}, false
}

// reclassify names an altered record of this feed that carries the chain
// value of another record of this feed: a record moved to another seq. A
// record moved further than one feed (Request.ReadSeqs) stays altered.
func (j *judge) reclassify() {
	want := map[chain.Link][]uint64{}
	claimedAt := func(s uint64) (chain.Link, bool) {
		i, ok := slices.BinarySearchFunc(j.run, s, func(k chosen, t uint64) int { return cmpU(k.seq, t) })
		if !ok || !j.run[i].chained {
			return chain.Link{}, false
		}
		return j.run[i].claimed, true
	}
	for _, f := range j.findings[j.runFinding:] {
		if f.Kind == Altered && f.First == f.Last {
			if c, ok := claimedAt(f.First); ok {
				want[c] = nil
			}
		}
	}
	if len(want) == 0 {
		return
	}
	for _, k := range j.run {
		if at, ok := want[k.claimed]; ok && k.chained {
			want[k.claimed] = append(at, k.seq)
		}
	}
	for i := range j.findings[j.runFinding:] {
		f := &j.findings[j.runFinding+i]
		if f.Kind != Altered || f.First != f.Last {
			continue
		}
		c, ok := claimedAt(f.First)
		if !ok {
			continue
		}
		for _, t := range want[c] {
			if t != f.First {
				f.Kind = Reordered
				f.Detail = fmt.Sprintf("the record carries the chain value of seq %d: it was moved from there", t)
				break
			}
		}
	}
}

// checkpoint verifies a checkpoint's signature and the head it seals. The
// head of a valid checkpoint is recomputed from the leaves of the records
// since the previous valid one, starting at that one's signed head: a
// forger who recomputed the chain values after changing a record is caught
// here, in the one range where the change is.
func (j *judge) checkpoint(s uint64, e *entry) {
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
		j.find(s, s, Unsigned, "checkpoint of seqs %d-%d: %v", cp.first, cp.last, err)
		return
	}
	j.proof.Checkpoints++
	if w, ok := j.opt.Witnessed[j.id]; ok && w.Checkpoint.Last == cp.last && w.Checkpoint.First == cp.first {
		if w.Checkpoint.Head == cp.head {
			j.proof.WitnessedSeq = cp.last
		} else {
			j.proof.witnessMismatch = true
			j.find(s, s, Altered, "the checkpoint of seqs %d-%d seals chain head %s, but the witness of node %s holds %s for it", cp.first, cp.last, cp.head, w.Node, w.Checkpoint.Head)
		}
	}
	if cp.last < j.proof.FirstSeq || cp.last < j.anchorSeq {
		return // seals nothing in the window
	}
	// The records it seals are those kept before it, up to cp.last.
	upTo := min(cp.last, s-1)
	d := deferredHead{cpSeq: s, from: max(j.anchorSeq+1, j.proof.FirstSeq), last: cp.last, anchorFirst: j.anchorSeq + 1,
		anchored: j.anchored, head: cp.head}
	k, ok := j.lastKept(upTo)
	if ok {
		d.claimed, d.claimedOK = k.claimed, true
	}
	switch {
	case !j.runningOK:
	case ok && k.seq > j.anchorSeq:
		d.fold, d.foldOK = k.runningOut, true
	default:
		d.fold, d.foldOK = j.anchor, true // nothing kept since the anchor
	}
	if j.holeIn(d.anchorFirst, cp.last) {
		j.deferred = append(j.deferred, d)
	} else {
		j.compareHead(d, false)
	}
	j.proof.SealedThrough = cp.last
	j.anchor, j.anchorSeq, j.anchored = cp.head, cp.last, true
	j.refold()
}

// refold starts the running head again at a new anchor, over the records
// kept after it.
func (j *judge) refold() {
	j.running = j.anchor
	j.runningOK = j.trimmed.seq <= j.anchorSeq
	from, _ := slices.BinarySearchFunc(j.recent, j.anchorSeq+1, func(k kept, t uint64) int { return cmpU(k.seq, t) })
	for i := from; i < len(j.recent); i++ {
		j.running = chain.Next(j.running, j.recent[i].leaf)
		j.recent[i].runningOut = j.running
	}
	if j.unsealed != nil && j.unsealed.seq <= j.anchorSeq {
		j.unsealed = nil
		for _, k := range j.recent[from:] {
			if k.sealable {
				u := k
				j.unsealed = &u
				break
			}
		}
	}
}

// compareHead reports a checkpoint whose sealed records do not match its
// head; broken says the sealed seqs hold a hole the chain does not skip, so
// the head cannot be recomputed from the leaves.
func (j *judge) compareHead(d deferredHead, broken bool) {
	var head chain.Link
	var ok bool
	switch {
	case d.anchored && !broken && d.foldOK:
		head, ok = d.fold, true
	case d.claimedOK:
		// Not anchored (the window starts mid-instance), or records are
		// missing: compare with the chain value the records carry.
		head, ok = d.claimed, true
	}
	if ok && head != d.head {
		j.find(d.from, d.last, Altered, "the records do not match the chain head the checkpoint at seq %d signed", d.cpSeq)
	}
}

// holeIn reports whether a hole overlaps seqs first..last.
func (j *judge) holeIn(first, last uint64) bool {
	for i := len(j.holes) - 1; i >= 0; i-- {
		h := j.holes[i]
		if h.last < first {
			return false
		}
		if h.first <= last {
			return true
		}
	}
	return false
}

// finish runs the checks that need every record: holes against the loss
// records, the instance's ends, the checkpoints left for then and the
// records no checkpoint sealed.
func (j *judge) finish() {
	if !j.started {
		return
	}
	j.explainHoles()
	j.checkEnds()
	refused := j.refusedLosses()
	for _, d := range j.deferred {
		j.compareHead(d, j.broken(d.anchorFirst, d.last, refused))
	}
	j.checkUnsealed()
	slices.SortStableFunc(j.findings, func(a, b Finding) int {
		if a.First != b.First {
			return cmpU(a.First, b.First)
		}
		return cmpU(a.Last, b.Last)
	})
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// lossRange is a loss record's named seqs.
type lossRange struct {
	seqRange
	reason string
}

// refusedBySpool are loss reasons whose seqs the chain skips: the ledger
// never spooled them. Seqs lost for other reasons were chained first.
var refusedBySpool = map[string]bool{string(trail.LossSpoolFull): true, string(trail.LossSpoolError): true}

// gaps calls each with the runs of seqs in r that no range of ls (sorted
// and merged: mergeLosses) covers. It works on ranges, never seq by seq: a
// forged seq far beyond the others leaves a hole of billions of seqs.
func gaps(r seqRange, ls []lossRange, each func(seqRange)) {
	at := r.first
	for _, l := range ls {
		if l.last < at {
			continue
		}
		if l.first > r.last {
			break
		}
		if l.first > at {
			each(seqRange{at, l.first - 1})
		}
		if l.last >= r.last {
			return
		}
		at = l.last + 1
	}
	each(seqRange{at, r.last})
}

// refusedLosses are the loss ranges whose seqs the chain skips, merged.
func (j *judge) refusedLosses() []lossRange {
	var out []lossRange
	for _, l := range j.losses {
		if refusedBySpool[l.reason] {
			out = append(out, l)
		}
	}
	return mergeLosses(out)
}

// broken reports whether seqs first..last hold a hole the chain does not
// skip: seqs no refusal by the spool explains.
func (j *judge) broken(first, last uint64, refused []lossRange) bool {
	found := false
	for _, h := range j.holes {
		if h.last < first || h.first > last {
			continue
		}
		gaps(seqRange{max(h.first, first), min(h.last, last)}, refused, func(seqRange) { found = true })
	}
	return found
}

// present calls each with the runs of seqs in first..last that have a record.
func (j *judge) present(first, last uint64, each func(first, last uint64)) {
	first, last = max(first, j.proof.FirstSeq), min(last, j.proof.LastSeq)
	if first > last {
		return
	}
	at := first
	for _, h := range j.holes {
		if h.last < at {
			continue
		}
		if h.first > last {
			break
		}
		if h.first > at {
			each(at, h.first-1)
		}
		at = h.last + 1
		if at > last {
			return
		}
	}
	each(at, last)
}

// explainHoles reports every hole no loss record explains, every break of
// the chain that a loss does not explain, and every record at a seq a loss
// record names.
func (j *judge) explainHoles() {
	all := mergeLosses(j.losses)
	for _, h := range j.holes {
		gaps(h, all, func(g seqRange) {
			j.find(g.first, g.last, Deleted, "no record and no loss record for these seqs")
		})
	}
	for _, b := range j.breaks {
		explained, chainedLoss := true, false
		gaps(b.hole, all, func(seqRange) { explained = false })
		for _, l := range j.losses {
			if l.first <= b.hole.last && l.last >= b.hole.first && !refusedBySpool[l.reason] {
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
			j.find(b.seq, b.seq, Altered, "the record does not continue the chain across seqs %d-%d, which the spool refused", b.hole.first, b.hole.last)
		}
	}
	for _, l := range all {
		j.present(l.first, l.last, func(first, last uint64) {
			j.find(first, last, Inserted, "records at seqs a loss record (%s) names as lost", l.reason)
		})
	}
}

// mergeLosses returns the loss ranges sorted and merged where they overlap,
// each with the reason of its first.
func mergeLosses(ls []lossRange) []lossRange {
	out := slices.Clone(ls)
	slices.SortFunc(out, func(a, b lossRange) int { return cmpU(a.first, b.first) })
	n := 0
	for _, l := range out {
		if n > 0 && l.first <= out[n-1].last {
			out[n-1].last = max(out[n-1].last, l.last)
			continue
		}
		out[n] = l
		n++
	}
	return out[:n]
}

// checkEnds reports records after the final seq the stop record states,
// and seqs missing after the last record when the stop record or a
// checkpoint names later ones.
func (j *judge) checkEnds() {
	last := j.proof.LastSeq
	if j.final > 0 && j.final < last {
		j.present(j.final+1, last, func(first, l uint64) {
			j.find(first, l, Inserted, "records after the final seq %d the stop record states", j.final)
		})
	}
	if want := max(j.final, j.sealed); want > last {
		first := uint64(0)
		gaps(seqRange{last + 1, want}, mergeLosses(j.losses), func(g seqRange) {
			if first == 0 {
				first = g.first
			}
		})
		if first != 0 {
			j.find(first, want, Deleted, "the instance's own records name seqs up to %d, the trail ends at %d", want, last)
		}
	}
}

// checkUnsealed reports records left unsealed too long: what follows the
// last valid checkpoint is unsealed, which is right only for the newest few
// seconds (and for that checkpoint and the stop record themselves).
func (j *judge) checkUnsealed() {
	u := j.unsealed
	if u == nil {
		return
	}
	lastSeq := j.proof.LastSeq
	maxUnsealed := j.opt.MaxUnsealed
	if hb := 3 * j.in.heartbeat; maxUnsealed > 0 && hb > maxUnsealed {
		maxUnsealed = hb // the instance promised checkpoints less often
	}
	age := j.proof.Newest.Sub(timeOf(u.nanos))
	tooOld := maxUnsealed > 0 && age > maxUnsealed
	tooMany := j.opt.MaxUnsealedRecords > 0 && lastSeq-u.seq > j.opt.MaxUnsealedRecords
	if tooOld || tooMany {
		j.find(u.seq, lastSeq, Unsigned, "no valid checkpoint seals these records, though the instance wrote records %s later", age.Round(1e9))
	}
}

// witnessKey is the key the node's witness holds for the instance; empty
// when it has none.
func (j *judge) witnessKey() string { return j.opt.Witnessed[j.id].Key }
