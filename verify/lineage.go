package verify

import (
	"fmt"
	"time"

	"github.com/connaudit/connaudit/trail"
	"github.com/connaudit/connaudit/trail/chain"
)

// Lineage: every start record names the instance that ran on the node
// before it, with that instance's last spooled seq and chain value. So an
// instance deleted whole, or the tail of one that a later instance names,
// is found. The newest instance of a node, which nobody names, must have
// stopped, or written a record (a heartbeat at least) shortly before the
// window's end.

// Predecessor is a record outside the window that a start record in it
// names: the caller fetches it from the store and gives it to AddOutside.
type Predecessor struct {
	Instance string
	Seq      uint64
}

// startLink is one start record's link to the instance before it.
type startLink struct {
	node, id string // the instance whose start record it is
	seq      uint64 // of that start record
	prev     prevLink
}

func (v *Verifier) links() []startLink {
	var out []startLink
	for k, in := range v.instances {
		out = append(out, in.startLinks(k)...)
	}
	return out
}

// startLinks are the links of in's start records.
func (in *instance) startLinks(k instanceKey) []startLink {
	if in.judged {
		return in.links
	}
	var out []startLink
	in.group()
	for i, s := range in.seqs {
		for _, e := range in.at(i) {
			if e.prev != nil {
				out = append(out, startLink{node: k.node, id: k.id, seq: s, prev: *e.prev})
				break
			}
		}
	}
	return out
}

// Predecessors are the records named by start records in the window that
// are not in it themselves.
func (v *Verifier) Predecessors() []Predecessor {
	var out []Predecessor
	for _, l := range v.links() {
		if in := v.instances[instanceKey{l.node, l.prev.instance}]; in != nil && len(in.copies(l.prev.seq)) > 0 {
			continue
		}
		out = append(out, Predecessor{l.prev.instance, l.prev.seq})
	}
	return out
}

// lineage checks every start record's link, and the silence of every
// instance that no later instance names; it runs after the instances were
// judged.
func (v *Verifier) lineage(r *Report) []Finding {
	var fs []Finding
	named := map[instanceKey]bool{}
	for _, l := range v.links() {
		pk := instanceKey{l.node, l.prev.instance}
		named[pk] = true
		var claimed []chain.Link
		var lastSeq uint64
		if in := v.instances[pk]; in != nil {
			for _, e := range in.copies(l.prev.seq) {
				if e.chained {
					claimed = append(claimed, e.claimed)
				}
			}
			lastSeq = in.lastSeq()
		}
		claimed = append(claimed, v.outside[outsideKey{l.prev.instance, l.prev.seq}]...)
		f := Finding{Node: l.node, Instance: l.prev.instance, First: l.prev.seq, Last: l.prev.seq}
		switch {
		case len(claimed) == 0 && lastSeq > 0 && lastSeq < l.prev.seq:
			f.First, f.Kind = lastSeq+1, Deleted
			f.Detail = fmt.Sprintf("the trail of this instance ends at seq %d, but the start record (seq %d) of instance %s, the next on the node, says it spooled seq %d", lastSeq, l.seq, l.id, l.prev.seq)
		case len(claimed) == 0:
			f.Kind = Deleted
			f.Detail = fmt.Sprintf("no record of this instance at seq %d, which the start record (seq %d) of instance %s, the next on the node, names as its last spooled: the instance, or its tail, was deleted", l.prev.seq, l.seq, l.id)
		case !l.prev.chainOK || !containsLink(claimed, l.prev.chain):
			f.Kind = Altered
			f.Detail = fmt.Sprintf("the record does not carry the chain value that the start record (seq %d) of instance %s, the next on the node, names", l.seq, l.id)
		default:
			continue
		}
		fs = append(fs, f)
	}
	if v.opt.Until.IsZero() || v.opt.SilenceFactor <= 0 {
		return fs
	}
	for _, p := range r.Instances {
		k := instanceKey{p.Node, p.Instance}
		hb := v.instances[k].heartbeat
		if p.Stopped || named[k] || hb <= 0 {
			continue
		}
		limit := time.Duration(v.opt.SilenceFactor)*hb + v.opt.SilenceSlack
		if silent := v.opt.Until.Sub(p.Newest); silent > limit {
			fs = append(fs, Finding{Node: p.Node, Instance: p.Instance, First: p.LastSeq + 1, Last: p.LastSeq + 1, Kind: Truncated,
				Detail: fmt.Sprintf("nothing after seq %d (%s) for %s, to the window's end or now: no %s record, no later instance names this one, and it promised a heartbeat every %s; its tail was deleted, or it died and no agent followed it",
					p.LastSeq, p.Newest.UTC().Format(time.RFC3339), silent.Round(time.Second), trail.EventAgentStop, hb)})
		}
	}
	return fs
}

func containsLink(ls []chain.Link, l chain.Link) bool {
	for _, x := range ls {
		if x == l {
			return true
		}
	}
	return false
}
