package coverage

import (
	"cmp"
	"slices"
	"strconv"
	"time"

	"github.com/connaudit/connaudit/trail"
)

// Builder assembles the Coverage of a window from what a store reads of it,
// by one set of rules whichever way the store reads: the agents' start and
// stop records up to the window's end (Lifecycle), each instance's records
// in the window (Instance, whose counts and seqs the store fills), its loss
// records (Loss), and its seq holes (the missing function of Coverage).
type Builder struct {
	c        *Coverage
	nodes    []string
	byKey    map[instanceKey]*Instance
	seenLoss map[instanceKey]map[int64]bool
}

type instanceKey struct{ node, id string }

// NewBuilder starts the Coverage of [from, to) on nodes (every node when
// empty), read at asOf (see Coverage.AsOf).
func NewBuilder(from, to time.Time, nodes []string, asOf time.Time) *Builder {
	return &Builder{
		c:        &Coverage{From: from, To: to, AsOf: asOf},
		nodes:    nodes,
		byKey:    map[instanceKey]*Instance{},
		seenLoss: map[instanceKey]map[int64]bool{},
	}
}

// Instance returns the agent instance id on node, adding it the first time.
func (b *Builder) Instance(node, id string) *Instance {
	k := instanceKey{node, id}
	in := b.byKey[k]
	if in == nil {
		in = &Instance{Node: node, ID: id}
		b.byKey[k] = in
	}
	return in
}

// Lookup returns the agent instance id on node, nil if none was added.
func (b *Builder) Lookup(node, id string) *Instance { return b.byKey[instanceKey{node, id}] }

// of is the instance that wrote the record whose attributes get returns.
func (b *Builder) of(get func(trail.Key) string) *Instance {
	return b.Instance(get(trail.KeyK8sNodeName), get(trail.KeyServiceInstanceID))
}

// Lifecycle takes in a connaudit.agent.start or connaudit.agent.stop record
// of time t, whose attributes get returns: an instance's earliest start
// record gives its Started, Resumed and Heartbeat, its latest stop record
// its Stopped. A record of another event is ignored.
func (b *Builder) Lifecycle(event trail.Event, t time.Time, get func(trail.Key) string) {
	switch event {
	case trail.EventAgentStart:
		in := b.of(get)
		if in.Started.IsZero() || t.Before(in.Started) {
			in.Started, in.Resumed = t, get(trail.KeyCaptureResumed) == "true"
			if hb, err := strconv.ParseFloat(get(trail.KeyHeartbeat), 64); err == nil && hb > 0 {
				in.Heartbeat = time.Duration(hb * float64(time.Second))
			}
		}
	case trail.EventAgentStop:
		in := b.of(get)
		if t.After(in.Stopped) {
			in.Stopped = t
		}
	}
}

// Loss takes in a connaudit.loss record of time t, whose attributes get
// returns, once per instance and seq: a replayed copy is dropped.
func (b *Builder) Loss(t time.Time, get func(trail.Key) string) {
	l := LossOf(t, get)
	in := b.of(get)
	k := instanceKey{in.Node, in.ID}
	if b.seenLoss[k] == nil {
		b.seenLoss[k] = map[int64]bool{}
	}
	if !b.seenLoss[k][l.Seq] {
		b.seenLoss[k][l.Seq] = true
		in.Losses = append(in.Losses, l)
	}
}

// LossOf is the Loss that a connaudit.loss record of time t states, its
// attributes as get returns them; an absent or malformed number or time is
// zero.
func LossOf(t time.Time, get func(trail.Key) string) Loss {
	num := func(k trail.Key) int64 {
		n, _ := strconv.ParseInt(get(k), 10, 64)
		return n
	}
	tm := func(k trail.Key) time.Time {
		t, _ := time.Parse(time.RFC3339Nano, get(k))
		return t
	}
	return Loss{
		Time: t, Seq: num(trail.KeySeq), Count: num(trail.KeyLostCount), Bytes: num(trail.KeyLostBytes),
		Reason: get(trail.KeyLostReason),
		First:  tm(trail.KeyLostTimeFirst), Last: tm(trail.KeyLostTimeLast),
		Seqs: SeqRange{First: num(trail.KeyLostSeqFirst), Last: num(trail.KeyLostSeqLast)},
	}
}

// Coverage ends the assembly. It keeps the instances that say something of
// the window: not one that stopped before it with no record in it, nor one
// that started after it. For each kept instance, its losses in time order,
// it calls missing (when not nil) to fill Instance.Missing, and stops at
// its first error. Coverage.Nodes are the nodes asked for, else every node
// of an instance taken in; instances are in node order, then by start.
func (b *Builder) Coverage(missing func(*Instance) error) (*Coverage, error) {
	c := b.c
	nodeSet := map[string]bool{}
	for _, n := range b.nodes {
		nodeSet[n] = true
	}
	for k, in := range b.byKey {
		if len(b.nodes) == 0 {
			nodeSet[k.node] = true
		}
		if in.Records == 0 && !in.Stopped.IsZero() && in.Stopped.Before(c.From) {
			continue
		}
		if in.Started.After(c.To) {
			continue
		}
		slices.SortFunc(in.Losses, func(a, b Loss) int { return a.Time.Compare(b.Time) })
		if missing != nil {
			if err := missing(in); err != nil {
				return nil, err
			}
		}
		c.Instances = append(c.Instances, *in)
	}
	for n := range nodeSet {
		c.Nodes = append(c.Nodes, n)
	}
	slices.Sort(c.Nodes)
	slices.SortFunc(c.Instances, func(a, b Instance) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), a.Started.Compare(b.Started))
	})
	return c, nil
}
