// Package coverage is the trail's completeness, as README.md states it
// ("Record schema", "Delivery guarantees"): the model of what a store knows
// about the agents of a time window (Coverage: each agent instance's
// lifetime, records, seq range, loss records and seq holes), the one way
// every store assembles it from the records it reads (Builder), and the
// rules that find the gaps in it (Gaps). The rules are store-independent: a
// store (backend/victorialogs, backend/archive) only reads.
//
// Like trail, it depends on nothing of connaudit's but trail.
package coverage

import (
	"slices"
	"time"
)

// Coverage is what a store knows about the agents in a time window.
type Coverage struct {
	From, To time.Time
	// AsOf is when the store was read: an instance whose heartbeat is not
	// yet overdue then is taken as alive to the window's end. Zero: To.
	AsOf      time.Time
	Instances []Instance
	// Nodes lists the nodes to account for, in name order: the ones asked
	// for, else every node named by a record of the window or by an agent's
	// start or stop before it.
	Nodes []string
}

// AddNodes makes c account for nodes too (the cluster's, which the trail
// may not name at all: a node whose agent never ran), unless asked names
// the nodes of the question. Every command that reports gaps adds the same
// nodes, so that they agree about one window.
func (c *Coverage) AddNodes(asked, nodes []string) {
	if len(asked) > 0 {
		return
	}
	for _, n := range nodes {
		if !slices.Contains(c.Nodes, n) {
			c.Nodes = append(c.Nodes, n)
		}
	}
	slices.Sort(c.Nodes)
}

// Instance is one agent instance (one service.instance.id) on one node.
type Instance struct {
	Node string
	ID   string
	// Started is the time of its connaudit.agent.start record, zero if none
	// is stored; Resumed is that record's connaudit.capture.resumed (capture
	// went on from the previous agent: no connect was missed in between).
	Started time.Time
	Resumed bool
	// Stopped is the time of its connaudit.agent.stop record, zero if none.
	Stopped time.Time
	// Heartbeat is the interval its start record promises a record at
	// least once in (connaudit.heartbeat.interval); zero for an agent that
	// promises none.
	Heartbeat time.Duration
	// FirstSeen and LastSeen are its first and last record in the window.
	FirstSeen, LastSeen time.Time
	// Records counts its distinct records in the window; MinSeq and MaxSeq
	// are the smallest and largest connaudit.seq among them.
	Records        int64
	MinSeq, MaxSeq int64
	// Losses are its connaudit.loss records in the window.
	Losses []Loss
	// Missing are the seq ranges within [MinSeq, MaxSeq] with no stored
	// record, whether a loss record explains them or not (see Gaps).
	Missing []Hole
}

// Loss is one connaudit.loss record.
type Loss struct {
	Time        time.Time
	Seq         int64
	Count       int64
	Bytes       int64
	Reason      string
	First, Last time.Time // connaudit.lost.time.first/.last, zero if unknown
	Seqs        SeqRange  // connaudit.lost.seq.first/.last, zero if none
}

// SeqRange is an inclusive range of connaudit.seq; the zero value is empty.
type SeqRange struct{ First, Last int64 }

// Len is the number of sequence numbers in the range.
func (r SeqRange) Len() int64 {
	if r.First == 0 || r.Last < r.First {
		return 0
	}
	return r.Last - r.First + 1
}

// Hole is a range of missing sequence numbers, with the times of the stored
// records just before and after it (zero when not known).
type Hole struct {
	Seqs          SeqRange
	After, Before time.Time
}
