package verify

import (
	"fmt"
	"slices"
	"time"

	"github.com/connaudit/connaudit/trail/checkpoint"
	"github.com/connaudit/connaudit/trail/witness"
)

// The nodes' witnesses (package trail/witness) are held outside the log
// store, written only by each node's agent. Against them verify proves,
// without trusting the trail's own start records:
//
//   - each witnessed instance's checkpoints are signed with the key the
//     witness holds (a rewrite under a forger's key is found without
//     --public-key);
//   - the checkpoint the witness holds for an instance (its latest, or its
//     final one once a later instance took over) is in the trail, with the
//     same chain head, when its time falls in the window: so a deleted
//     tail, with its stop record, and a whole deleted instance are found;
//   - an instance on a witnessed node that the witness does not know, and
//     that ran while the witness kept its history, is inserted.

// Witnessed is one instance as its node's witness holds it, its checkpoint
// signature verified.
type Witnessed struct {
	Node          string
	Key           string
	Started       time.Time
	HasCheckpoint bool
	Checkpoint    checkpoint.Checkpoint
	Time          time.Time // of Checkpoint
}

// Witnesses are the witnesses read for a run, or why there are none.
type Witnesses struct {
	Source  string            // where they were read, e.g. "Leases in namespace connaudit of context kind-x"
	List    []witness.Witness // one per node
	Missing string            // why none were read; empty when List was read
	// Lag is how long after a witnessed checkpoint its records may still
	// be on their way to the store (the agent's spool, the gateway's
	// queue): a witnessed checkpoint younger than that at the window's end
	// is not required yet.
	Lag time.Duration
}

// DefaultWitnessLag is Witnesses.Lag by default.
const DefaultWitnessLag = time.Minute

// WitnessReport says what the witnesses contributed.
type WitnessReport struct {
	Source     string   `json:"source,omitempty"`
	Nodes      []string `json:"nodes,omitempty"`       // witnessed nodes
	Instances  int      `json:"instances"`             // witnessed instances
	Unwitness  []string `json:"unwitnessed,omitempty"` // nodes in the trail without a witness
	Missing    string   `json:"missing,omitempty"`     // why no witness was read
	WeakerNote string   `json:"weaker,omitempty"`
}

// weaker is what a proof without a witness rests on.
const weaker = "without a witness the proof rests on the trail's own start records (and --public-key): a store administrator who deletes a node's newest tail with its stop record, or rewrites an instance under a key of their own, is found only by the silence and lineage checks"

// witnessed indexes the witnesses by instance, verifying each entry's
// signature; an entry that does not verify is a finding of its own.
func (ws *Witnesses) witnessed() (map[string]Witnessed, []Finding) {
	out := map[string]Witnessed{}
	var fs []Finding
	for _, w := range ws.List {
		for _, in := range w.Instances() {
			wi := Witnessed{Node: w.Node, Key: in.Key, Started: in.Started}
			if in.Latest != nil {
				c, err := in.Checked()
				if err != nil {
					fs = append(fs, Finding{Node: w.Node, Instance: in.ID, First: in.Latest.Last, Last: in.Latest.Last, Kind: Unsigned,
						Detail: fmt.Sprintf("the witness's own checkpoint does not verify (%v): the witness was written by someone other than the agent", err)})
					continue
				}
				wi.HasCheckpoint, wi.Checkpoint, wi.Time = true, c, in.Latest.Time
			}
			out[in.ID] = wi
		}
	}
	return out, fs
}

// checkWitnesses holds the judged instances of r against the witnesses.
// until is the window's end (or now, if earlier).
func (ws *Witnesses) check(r *Report, wit map[string]Witnessed, from, until time.Time) []Finding {
	var fs []Finding
	proofs := map[string]*Proof{}
	for i := range r.Instances {
		proofs[r.Instances[i].Instance] = &r.Instances[i]
	}
	for _, w := range ws.List {
		for _, in := range w.Instances() {
			wi, ok := wit[in.ID]
			if !ok || !wi.HasCheckpoint || wi.Time.Before(from) || wi.Time.After(until.Add(-ws.Lag)) {
				continue
			}
			c := wi.Checkpoint
			at := wi.Time.UTC().Format(time.RFC3339)
			p := proofs[in.ID]
			switch {
			case p == nil:
				fs = append(fs, Finding{Node: w.Node, Instance: in.ID, First: max(c.First, 1), Last: c.Last + 1, Kind: Deleted,
					Detail: fmt.Sprintf("the witness of node %s holds this instance's checkpoint of seqs %d-%d at %s, inside the window, but the trail has no record of the instance: it was deleted whole (or is not yet in the store)", w.Node, c.First, c.Last, at)})
			case p.WitnessedSeq == c.Last || p.witnessMismatch:
				// Found, or already reported as altered.
			case p.LastSeq <= c.Last:
				fs = append(fs, Finding{Node: w.Node, Instance: in.ID, First: p.LastSeq + 1, Last: c.Last + 1, Kind: Deleted,
					Detail: fmt.Sprintf("the trail of this instance ends at seq %d, but the witness of node %s holds its checkpoint of seqs %d-%d at %s: the tail was deleted", p.LastSeq, w.Node, c.First, c.Last, at)})
			default:
				fs = append(fs, Finding{Node: w.Node, Instance: in.ID, First: c.Last + 1, Last: c.Last + 1, Kind: Deleted,
					Detail: fmt.Sprintf("the witness of node %s holds this instance's checkpoint of seqs %d-%d at %s, which is not in the trail with a valid signature", w.Node, c.First, c.Last, at)})
			}
		}
		// Instances the witness does not know, since the oldest it knows.
		ins := w.Instances()
		if len(ins) == 0 {
			continue
		}
		horizon := ins[len(ins)-1].Started
		for _, p := range r.Instances {
			if p.Node != w.Node || p.Newest.Before(horizon) {
				continue
			}
			if _, known := wit[p.Instance]; known || slices.ContainsFunc(ins, func(i witness.Instance) bool { return i.ID == p.Instance }) {
				continue
			}
			fs = append(fs, Finding{Node: p.Node, Instance: p.Instance, First: p.FirstSeq, Last: p.LastSeq, Kind: Inserted,
				Detail: fmt.Sprintf("the witness of node %s does not know this instance, though it ran after %s, since when the witness names every instance on the node: it was not written by the node's agent", w.Node, horizon.UTC().Format(time.RFC3339))})
		}
	}
	return fs
}

// report summarises the witnesses for r.
func (ws *Witnesses) report(r *Report, wit map[string]Witnessed) *WitnessReport {
	wr := &WitnessReport{Source: ws.Source, Instances: len(wit), Missing: ws.Missing}
	have := map[string]bool{}
	for _, w := range ws.List {
		have[w.Node] = true
		wr.Nodes = append(wr.Nodes, w.Node)
	}
	for _, p := range r.Instances {
		if !have[p.Node] && !slices.Contains(wr.Unwitness, p.Node) {
			wr.Unwitness = append(wr.Unwitness, p.Node)
		}
	}
	slices.Sort(wr.Nodes)
	slices.Sort(wr.Unwitness)
	if ws.Missing != "" || len(wr.Unwitness) > 0 {
		wr.WeakerNote = weaker
	}
	return wr
}
