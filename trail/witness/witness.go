// Package witness is the content of a node's witness: the record, kept
// outside the log store (in a coordination.k8s.io/v1 Lease in the agent's
// namespace), of which agent instance runs on the node, the Ed25519 key its
// start record carries, its latest signed checkpoint, and the final
// checkpoints of the instances before it. `connaudit verify` holds the trail
// against it: a store administrator who deletes a tail, a whole instance, or
// rewrites an instance under a key of their own, must also rewrite the
// witness, which only the node's agent may write.
package witness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/connaudit/connaudit/trail/chain"
	"github.com/connaudit/connaudit/trail/checkpoint"
)

// NamePrefix begins the name of every witness Lease; the rest is the node's
// name. The ValidatingAdmissionPolicy of k8s/deploy matches on it.
const NamePrefix = "connaudit-witness-"

// Annotation holds the witness (JSON) on the Lease.
const Annotation = "connaudit.io/witness"

// LabelNode names the node on the Lease, for selectors.
const LabelNode = "connaudit.io/node"

// MaxHistory is how many earlier instances a witness remembers.
const MaxHistory = 16

// Version of the encoding in Annotation.
const Version = 1

// Checkpoint is one signed checkpoint, as the trail's connaudit.checkpoint
// record states it, with the time the agent wrote it.
type Checkpoint struct {
	First     uint64    `json:"seq_first"`
	Last      uint64    `json:"seq_last"`
	Count     uint64    `json:"count"`
	Head      string    `json:"head"` // chain.Link.String()
	Signature string    `json:"signature"`
	Time      time.Time `json:"time"`
}

// Instance is one agent instance as the witness knows it.
type Instance struct {
	ID        string        `json:"instance"`
	Key       string        `json:"key"` // base64 Ed25519 public key, as the start record carries it
	Started   time.Time     `json:"started"`
	Heartbeat time.Duration `json:"heartbeat"`
	// Latest is its newest witnessed checkpoint; of an instance in History,
	// its final one (or the last the witness got before it died).
	Latest *Checkpoint `json:"checkpoint,omitempty"`
}

// Witness is what a node's Lease holds.
type Witness struct {
	Version int        `json:"version"`
	Node    string     `json:"node"`
	Current Instance   `json:"current"`
	History []Instance `json:"history,omitempty"` // newest first, at most MaxHistory
}

// LeaseName is the name of node's witness Lease.
func LeaseName(node string) (string, error) {
	if node == "" {
		return "", errors.New("witness: no node name")
	}
	name := NamePrefix + node
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return "", fmt.Errorf("witness: Lease name %q for node %q: %s", name, node, strings.Join(errs, "; "))
	}
	return name, nil
}

// Begin makes id the current instance: the one before it, if any, moves to
// the head of the history (the oldest falls off past MaxHistory).
func (w *Witness) Begin(node string, in Instance) {
	w.Version, w.Node = Version, node
	if w.Current.ID != "" && w.Current.ID != in.ID {
		w.History = append([]Instance{w.Current}, w.History...)
		if len(w.History) > MaxHistory {
			w.History = w.History[:MaxHistory]
		}
	}
	w.Current = in
}

// Instances are the current instance and the history, newest first.
func (w *Witness) Instances() []Instance {
	out := make([]Instance, 0, 1+len(w.History))
	if w.Current.ID != "" {
		out = append(out, w.Current)
	}
	return append(out, w.History...)
}

// Checked returns the checkpoint as package checkpoint signs it, with its
// signature verified against in's key: a witness entry whose signature does
// not verify is no evidence of anything.
func (in Instance) Checked() (checkpoint.Checkpoint, error) {
	if in.Latest == nil {
		return checkpoint.Checkpoint{}, errors.New("no checkpoint witnessed")
	}
	head, err := chain.Parse(in.Latest.Head)
	if err != nil {
		return checkpoint.Checkpoint{}, fmt.Errorf("witnessed chain head: %w", err)
	}
	c := checkpoint.Checkpoint{Instance: in.ID, First: in.Latest.First, Last: in.Latest.Last, Count: in.Latest.Count, Head: head}
	if err := checkpoint.Verify(in.Key, in.Latest.Signature, c); err != nil {
		return c, fmt.Errorf("witnessed checkpoint of instance %s: %w", in.ID, err)
	}
	return c, nil
}

// ApplyTo writes w onto l: the annotation, the node label, and the Lease's
// own fields for `kubectl get lease` (holderIdentity the current instance,
// acquireTime its start, renewTime its latest checkpoint).
func (w *Witness) ApplyTo(l *coordinationv1.Lease) error {
	b, err := json.Marshal(w)
	if err != nil {
		return err
	}
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Annotations[Annotation] = string(b)
	if l.Labels == nil {
		l.Labels = map[string]string{}
	}
	l.Labels[LabelNode] = w.Node
	l.Labels["app.kubernetes.io/name"] = "connaudit-agent"
	id := w.Current.ID
	l.Spec.HolderIdentity = &id
	if !w.Current.Started.IsZero() {
		l.Spec.AcquireTime = &metav1.MicroTime{Time: w.Current.Started}
	}
	if c := w.Current.Latest; c != nil {
		l.Spec.RenewTime = &metav1.MicroTime{Time: c.Time}
	}
	if hb := w.Current.Heartbeat; hb > 0 {
		s := int32(max(1, (3*hb+time.Second-1)/time.Second))
		l.Spec.LeaseDurationSeconds = &s
	}
	return nil
}

// FromLease reads the witness a Lease holds.
func FromLease(l *coordinationv1.Lease) (Witness, error) {
	var w Witness
	s, ok := l.Annotations[Annotation]
	if !ok {
		return w, fmt.Errorf("Lease %s/%s has no %s annotation", l.Namespace, l.Name, Annotation)
	}
	if err := json.Unmarshal([]byte(s), &w); err != nil {
		return w, fmt.Errorf("Lease %s/%s: annotation %s: %w", l.Namespace, l.Name, Annotation, err)
	}
	if w.Version != Version {
		return w, fmt.Errorf("Lease %s/%s: witness version %d, this connaudit reads %d", l.Namespace, l.Name, w.Version, Version)
	}
	if want := NamePrefix + w.Node; l.Name != want {
		return w, fmt.Errorf("Lease %s/%s names node %q: a witness of another node's name", l.Namespace, l.Name, w.Node)
	}
	return w, nil
}

// Lister lists the Leases of the witnesses' namespace (*k8s.Leases).
type Lister interface {
	List(ctx context.Context, selector string) (*coordinationv1.LeaseList, error)
}

// Read returns the witnesses of the given nodes (every node's when empty)
// that the namespace holds. A Lease that is not a readable witness is an
// error naming it: it was written by something other than an agent.
func Read(ctx context.Context, l Lister, nodes []string) ([]Witness, error) {
	list, err := l.List(ctx, LabelNode)
	if err != nil {
		return nil, err
	}
	var out []Witness
	var errs []error
	for i := range list.Items {
		lease := &list.Items[i]
		if !strings.HasPrefix(lease.Name, NamePrefix) {
			continue
		}
		if len(nodes) > 0 && !slices.Contains(nodes, strings.TrimPrefix(lease.Name, NamePrefix)) {
			continue
		}
		w, err := FromLease(lease)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, w)
	}
	return out, errors.Join(errs...)
}
