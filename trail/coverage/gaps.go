package coverage

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// The trail's completeness rule (README.md, "Record schema"): for one
// service.instance.id every connaudit.seq from 1 up is present, except ranges
// that a connaudit.loss record names; and every node is watched by some agent
// instance at every moment. Gaps applies it to a Coverage.

// GapKind says what kind of gap a Gap is.
type GapKind string

const (
	// GapLoss is a connaudit.loss record: the agent counted what it lost.
	GapLoss GapKind = "loss"
	// GapSeqHole is a range of connaudit.seq that no record and no loss
	// record accounts for.
	GapSeqHole GapKind = "seq_hole"
	// GapUncovered is a time span in which no agent instance is known to have
	// watched a node.
	GapUncovered GapKind = "uncovered"
)

// Gap is one place where the trail of the window may be incomplete.
type Gap struct {
	Kind     GapKind
	Node     string
	Instance string // empty for GapUncovered
	From, To time.Time
	Count    int64 // records lost; 0 when unknown (only bytes, or a time span)
	Reason   string
}

// Gaps lists the gaps of c, ordered by node, then time.
func Gaps(c *Coverage) []Gap {
	var gaps []Gap
	for _, in := range c.Instances {
		for _, l := range in.Losses {
			from, to := l.First, l.Last
			if from.IsZero() {
				from = l.Time
			}
			if to.IsZero() {
				to = l.Time
			}
			reason := l.Reason
			if l.Bytes > 0 {
				reason += ", " + strconv.FormatInt(l.Bytes, 10) + " spool bytes unreadable"
			}
			gaps = append(gaps, Gap{Kind: GapLoss, Node: in.Node, Instance: in.ID, From: from, To: to, Count: l.Count, Reason: reason})
		}
		for _, h := range unexplained(in) {
			gaps = append(gaps, Gap{Kind: GapSeqHole, Node: in.Node, Instance: in.ID, From: h.After, To: h.Before,
				Count: h.Seqs.Len(), Reason: "connaudit.seq " + strconv.FormatInt(h.Seqs.First, 10) + ".." + strconv.FormatInt(h.Seqs.Last, 10) + " missing, no loss record explains it"})
		}
	}
	for _, node := range c.Nodes {
		gaps = append(gaps, uncovered(c, node)...)
	}
	slices.SortStableFunc(gaps, func(a, b Gap) int {
		if n := strings.Compare(a.Node, b.Node); n != 0 {
			return n
		}
		return a.From.Compare(b.From)
	})
	return gaps
}

// unexplained returns the parts of in.Missing that none of its loss records
// names.
func unexplained(in Instance) []Hole {
	var out []Hole
	for _, h := range in.Missing {
		rest := []SeqRange{h.Seqs}
		for _, l := range in.Losses {
			if l.Seqs.Len() == 0 {
				continue
			}
			var next []SeqRange
			for _, r := range rest {
				next = append(next, subtract(r, l.Seqs)...)
			}
			rest = next
		}
		for _, r := range rest {
			out = append(out, Hole{Seqs: r, After: h.After, Before: h.Before})
		}
	}
	return out
}

// subtract returns r without the numbers in cut.
func subtract(r, cut SeqRange) []SeqRange {
	if cut.Last < r.First || cut.First > r.Last {
		return []SeqRange{r}
	}
	var out []SeqRange
	if cut.First > r.First {
		out = append(out, SeqRange{r.First, cut.First - 1})
	}
	if cut.Last < r.Last {
		out = append(out, SeqRange{cut.Last + 1, r.Last})
	}
	return out
}

// HeartbeatsMissed is how many heartbeat intervals an instance may go
// without a record before it counts as silent: one missed beat is allowed
// for export and ingestion delay.
const HeartbeatsMissed = 2

// InstanceSpan is the time an instance is known to have watched its node:
// from its start record (else its first record) to its stop record, else
// to the start of the next instance when that one resumed the pinned capture,
// else to its last record (an agent that ended without a stop record), and
// to the end of the window for the newest instance of a node that has not
// stopped. An instance that promised heartbeats (Instance.Heartbeat) and
// did not stop is known alive only up to HeartbeatsMissed intervals after
// its last record: its silence is a gap, whether its agent died or its
// records were deleted; until asOf has passed that point, it is taken as
// alive. next is the instance that started after it on the node, or nil.
func InstanceSpan(in Instance, next *Instance, windowEnd, asOf time.Time) (from, to time.Time) {
	from = in.Started
	if from.IsZero() {
		from = in.FirstSeen
	}
	switch {
	case next != nil && next.Resumed && !startOf(*next).IsZero():
		to = startOf(*next) // the kernel kept capturing while no agent ran
	case !in.Stopped.IsZero():
		to = in.Stopped
	case in.Heartbeat > 0:
		to = windowEnd
		silent := latest(in.LastSeen, from).Add(HeartbeatsMissed * in.Heartbeat)
		if next != nil || asOf.IsZero() || silent.Before(asOf) {
			to = minTime(silent, windowEnd)
		}
		if next != nil {
			to = minTime(to, startOf(*next))
		}
	case next != nil:
		to = latest(in.LastSeen, from)
	default:
		to = windowEnd
	}
	return from, to
}

func startOf(in Instance) time.Time {
	if !in.Started.IsZero() {
		return in.Started
	}
	return in.FirstSeen
}

// NodeInstances returns the instances of node in c, in the order they started.
func NodeInstances(c *Coverage, node string) []Instance {
	var ins []Instance
	for _, in := range c.Instances {
		if in.Node == node {
			ins = append(ins, in)
		}
	}
	slices.SortStableFunc(ins, func(a, b Instance) int { return startOf(a).Compare(startOf(b)) })
	return ins
}

// uncovered returns the spans of [c.From, c.To) in which no instance watched node.
func uncovered(c *Coverage, node string) []Gap {
	ins := NodeInstances(c, node)
	type span struct {
		from, to time.Time
		stopped  bool // its instance wrote a stop record
	}
	var spans []span
	for i, in := range ins {
		var next *Instance
		if i+1 < len(ins) {
			next = &ins[i+1]
		}
		from, to := InstanceSpan(in, next, c.To, c.AsOf)
		if !from.IsZero() {
			spans = append(spans, span{from, to, !in.Stopped.IsZero()})
		}
	}
	var gaps []Gap
	at := c.From
	prevStopped := false // the instance that watched up to at stopped
	add := func(to time.Time, reason string) {
		if to.After(at) {
			gaps = append(gaps, Gap{Kind: GapUncovered, Node: node, From: at, To: to, Reason: reason})
		}
	}
	for _, s := range spans {
		if s.from.After(at) {
			reason := "no agent instance watched the node"
			switch {
			case at.After(c.From) && prevStopped:
				reason = "the agent stopped and the next one started later, without resuming its capture"
			case at.After(c.From):
				reason = "the agent ended without a stop record and the next one did not resume its capture"
			}
			add(minTime(s.from, c.To), reason)
		}
		if s.to.After(at) {
			prevStopped = s.stopped
		}
		at = latest(at, s.to)
		if !at.Before(c.To) {
			return gaps
		}
	}
	switch {
	case len(spans) == 0:
		add(c.To, "no agent instance watched the node")
	case ins[len(ins)-1].Stopped.IsZero() && ins[len(ins)-1].Heartbeat > 0:
		add(c.To, "the agent's heartbeats stopped, with no stop record: it died or hung, or its records were deleted")
	default:
		add(c.To, "the agent stopped and no other instance started")
	}
	return gaps
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
