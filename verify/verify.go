// Package verify proves an agent instance's trail untouched, or names what
// was changed: it walks each instance's records in seq order through the
// hash chain (package trail/chain), explains holes with the instance's own
// loss records, and checks every checkpoint's signature (package
// trail/checkpoint) and the chain head it seals. It reads records as a
// backend gives them back, every value a string, one at a time, an instance
// a run of seqs at a time, and holds about 100 bytes of each record of a run.
package verify

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/connaudit/connaudit/trail"
	"github.com/connaudit/connaudit/trail/chain"
)

// Kind is what is wrong with a range of records.
type Kind string

const (
	// Deleted: seqs are missing and no loss record of the instance names them.
	Deleted Kind = "deleted"
	// Altered: a record does not match the chain, or the records do not
	// match the chain head a signed checkpoint sealed.
	Altered Kind = "altered"
	// Inserted: a record the agent did not write in that place: a second,
	// different record with a seq, a seq a loss record names as lost, or a
	// seq after the instance's final one.
	Inserted Kind = "inserted"
	// Reordered: a record that matches the chain at another seq than its own.
	Reordered Kind = "reordered"
	// Unsigned: a record without a chain value, a checkpoint whose
	// signature does not verify with the instance's key (or without a key to
	// verify it with), or records that no checkpoint sealed though the
	// agent would have written one since.
	Unsigned Kind = "unsigned"
	// Truncated: an instance went silent before the window's end, with no
	// stop record and no later instance naming it.
	Truncated Kind = "truncated"
)

// Finding is one thing wrong, over seqs First..Last of one instance.
type Finding struct {
	Node     string `json:"node"`
	Instance string `json:"instance"`
	First    uint64 `json:"seq_first"`
	Last     uint64 `json:"seq_last"`
	Kind     Kind   `json:"kind"`
	Detail   string `json:"detail"`
}

func (f Finding) String() string {
	r := fmt.Sprint(f.First)
	if f.Last != f.First {
		r += "-" + fmt.Sprint(f.Last)
	}
	return fmt.Sprintf("%s %s seq %s: %s: %s", f.Node, f.Instance, r, f.Kind, f.Detail)
}

// Proof is what was shown of one instance.
type Proof struct {
	Node          string    `json:"node"`
	Instance      string    `json:"instance"`
	FirstSeq      uint64    `json:"seq_first"`
	LastSeq       uint64    `json:"seq_last"`
	Records       int       `json:"records"`
	Duplicates    int       `json:"duplicates"`
	Lost          uint64    `json:"lost"` // seqs a verified loss record names
	Checkpoints   int       `json:"checkpoints"`
	SealedThrough uint64    `json:"sealed_through"` // the last seq a valid checkpoint sealed
	Unbound       int       `json:"unbound"`        // records whose own content the chain cannot bind (see README)
	FromStart     bool      `json:"from_start"`     // the window holds the instance's first record
	Stopped       bool      `json:"stopped"`        // its stop record is in the window
	Newest        time.Time `json:"newest"`
	Previous      string    `json:"previous,omitempty"` // the instance its start record names as the one before it on the node
	// WitnessedSeq is the last seq of the checkpoint the node's witness
	// holds for the instance, when the trail has that checkpoint, validly
	// signed, with the same chain head (0: none found).
	WitnessedSeq uint64 `json:"witnessed_seq,omitempty"`

	witnessMismatch bool // the trail has the witnessed checkpoint's seq range with another head
}

// Report is the verdict on a window.
type Report struct {
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	Verified  bool      `json:"verified"`
	Instances []Proof   `json:"instances"`
	Findings  []Finding `json:"findings"`
	// Witness says which nodes' witnesses the proof used, or why none.
	Witness *WitnessReport `json:"witness,omitempty"`
}

// OK reports whether nothing was found wrong.
func (r *Report) OK() bool { return len(r.Findings) == 0 }

// Options bound how long a healthy agent goes without a checkpoint.
type Options struct {
	// MaxUnsealed is how far (in record time) a record may precede an
	// instance's newest record without a checkpoint sealing it.
	MaxUnsealed time.Duration
	// MaxUnsealedRecords is how many seqs may follow an unsealed record.
	MaxUnsealedRecords uint64
	// Until is the window's end. An instance that neither stopped nor was
	// named by a later one must have written a record within its heartbeat
	// (times SilenceFactor, plus SilenceSlack) before it; zero: not checked.
	Until         time.Time
	SilenceFactor int
	SilenceSlack  time.Duration
	// TrustedKey (base64, as start records carry it), when set, is the only
	// key checkpoints may be signed with.
	TrustedKey string
	// Witnessed are the instances that the nodes' witnesses name, by
	// instance id (see witness.go): an instance's checkpoints must be signed
	// with the key its witness holds, and its witnessed checkpoint must be
	// in the trail.
	Witnessed map[string]Witnessed
}

// DefaultOptions fit the agent's defaults (a checkpoint every 10 s and every
// 1,000 records) with room for delay.
var DefaultOptions = Options{MaxUnsealed: 30 * time.Second, MaxUnsealedRecords: 2000, SilenceFactor: 3, SilenceSlack: 30 * time.Second}

type instanceKey struct{ node, id string }

type instance struct {
	// entries are its records added and not judged yet; group sorts them
	// by seq (stably, so copies keep the order they came in) and indexes
	// them.
	entries []entry
	grouped bool
	seqs    []uint64 // distinct, ascending, once grouped
	starts  []int32  // entries[starts[i]:starts[i+1]] are the copies of seqs[i]
	j       *judge   // judges it, a run of seqs at a time
	// Once judged (Flush), the records are let go; what lineage needs of
	// them stays.
	judged    bool
	last      uint64        // its largest seq
	links     []startLink   // its start records' links to the instance before
	keys      []string      // public keys of start records
	heartbeat time.Duration // promised by its start record
}

// Verifier collects records and then judges them.
type Verifier struct {
	opt       Options
	instances map[instanceKey]*instance
	verdicts  []verdict // of the instances judged so far
	canon     canonicalizer
	outside   map[outsideKey][]chain.Link // chain values of records before the window, by instance and seq
}

// verdict is what judging one instance showed.
type verdict struct {
	key      instanceKey
	proof    Proof
	findings []Finding
}

type outsideKey struct {
	instance string
	seq      uint64
}

// New returns an empty Verifier.
func New(opt Options) *Verifier {
	return &Verifier{opt: opt, instances: map[instanceKey]*instance{}, outside: map[outsideKey][]chain.Link{}}
}

func (v *Verifier) instance(row map[string]string) (*instance, error) {
	id := row[string(trail.KeyServiceInstanceID)]
	if id == "" {
		return nil, fmt.Errorf("record without %s", trail.KeyServiceInstanceID)
	}
	node := row[string(trail.KeyK8sNodeName)]
	if node == "" {
		node = row[string(trail.KeyHostName)]
	}
	k := instanceKey{node, id}
	in := v.instances[k]
	if in == nil {
		in = &instance{}
		v.instances[k] = in
	}
	return in, nil
}

// Add takes one record of the window, as the backend returns it.
func (v *Verifier) Add(row map[string]string) error {
	in, err := v.instance(row)
	if err != nil {
		return err
	}
	if in.judged {
		return fmt.Errorf("instance %s: a record after the instance was judged", row[string(trail.KeyServiceInstanceID)])
	}
	e, err := v.canon.entry(row)
	if err != nil {
		return fmt.Errorf("instance %s: %w", row[string(trail.KeyServiceInstanceID)], err)
	}
	if in.j != nil && in.j.started && e.seq < in.j.expect {
		return fmt.Errorf("instance %s: a record with seq %d after seqs up to %d were judged (Advance)", row[string(trail.KeyServiceInstanceID)], e.seq, in.j.expect-1)
	}
	in.entries = append(in.entries, e)
	in.grouped = false
	return nil
}

// AddStart takes a start record from before the window, for its key only:
// the window's first checkpoints are signed with it.
func (v *Verifier) AddStart(row map[string]string) error {
	in, err := v.instance(row)
	if err != nil {
		return err
	}
	if k := row[string(trail.KeyAgentKey)]; k != "" && !slices.Contains(in.keys, k) {
		in.keys = append(in.keys, k)
	}
	if e, err := v.canon.entry(row); err == nil && e.heartbeat > 0 {
		in.heartbeat = e.heartbeat
	}
	return nil
}

// AddOutside takes a record from outside the window that a start record in
// it names as the last of the instance before.
func (v *Verifier) AddOutside(row map[string]string) error {
	e, err := v.canon.entry(row)
	if err != nil {
		return err
	}
	k := outsideKey{row[string(trail.KeyServiceInstanceID)], e.seq}
	if e.chained {
		v.outside[k] = append(v.outside[k], e.claimed)
	}
	return nil
}

// group sorts and indexes the entries by seq.
func (in *instance) group() {
	if in.grouped {
		return
	}
	slices.SortStableFunc(in.entries, func(a, b entry) int { return cmp.Compare(a.seq, b.seq) })
	in.seqs, in.starts = in.seqs[:0], in.starts[:0]
	for i, e := range in.entries {
		if i == 0 || e.seq != in.entries[i-1].seq {
			in.seqs = append(in.seqs, e.seq)
			in.starts = append(in.starts, int32(i))
		}
	}
	in.starts = append(in.starts, int32(len(in.entries)))
	in.grouped = true
}

// at returns the copies of the i-th distinct seq; group first.
func (in *instance) at(i int) []entry { return in.entries[in.starts[i]:in.starts[i+1]] }

// copies returns the copies of seq s.
func (in *instance) copies(s uint64) []entry {
	in.group()
	if i, ok := slices.BinarySearch(in.seqs, s); ok {
		return in.at(i)
	}
	return nil
}

// lastSeq is its largest seq, 0 without records.
func (in *instance) lastSeq() uint64 {
	if in.judged {
		return in.last
	}
	in.group()
	if len(in.seqs) == 0 {
		return 0
	}
	return in.seqs[len(in.seqs)-1]
}

// Advance judges the records added so far but those of each instance's
// largest seq (the next seq's records decide which copy of a seq to keep),
// and lets go of them. The caller then adds only records with larger seqs:
// reading an instance a run of seqs at a time, it holds one run.
func (v *Verifier) Advance() {
	for k, in := range v.instances {
		if in.judged || len(in.entries) == 0 {
			continue
		}
		in.group()
		if len(in.seqs) < 2 {
			continue
		}
		j := v.judgeOf(k, in)
		n := len(in.seqs) - 1
		j.feed(0, n)
		in.entries = slices.Clone(in.at(n))
		in.seqs, in.starts, in.grouped = nil, nil, false
	}
}

func (v *Verifier) judgeOf(k instanceKey, in *instance) *judge {
	if in.j == nil {
		in.j = newJudge(v.opt, k.node, k.id, in)
	}
	return in.j
}

// Flush judges every instance added since the last Flush and lets go of
// its records, keeping its proof, its findings and what lineage needs: a
// caller that adds one instance at a time holds one instance's records, not
// the window's. No record of a flushed instance may be added after.
func (v *Verifier) Flush() { v.judgeAll(true) }

// judgeAll judges the instances not judged yet, and lets go of their
// records if release.
func (v *Verifier) judgeAll(release bool) {
	for k, in := range v.instances {
		if in.judged || len(in.entries) == 0 && in.j == nil {
			continue
		}
		j := v.judgeOf(k, in)
		in.group()
		j.feed(0, len(in.seqs))
		j.finish()
		v.verdicts = append(v.verdicts, verdict{k, j.proof, j.findings})
		in.links, in.last = j.links, j.proof.LastSeq
		in.judged, in.j = true, nil
		if release {
			in.entries, in.seqs, in.starts, in.grouped = nil, nil, nil, false
		}
	}
}

// Report judges every instance seen. The records of instances not flushed
// are still at hand for lineage; those of flushed ones that a start record
// names must have been given to AddOutside (see Predecessors).
func (v *Verifier) Report() *Report {
	v.judgeAll(false)
	slices.SortFunc(v.verdicts, func(a, b verdict) int {
		return cmp.Or(cmp.Compare(a.key.node, b.key.node), cmp.Compare(a.key.id, b.key.id))
	})
	r := &Report{}
	for _, vd := range v.verdicts {
		r.Instances = append(r.Instances, vd.proof)
		r.Findings = append(r.Findings, vd.findings...)
	}
	r.Findings = append(r.Findings, v.lineage(r)...)
	r.Verified = r.OK()
	return r
}
