// Package backend is the read side of the connaudit trail: the filter a
// command asks with, the records and aggregates a store answers with, and the
// Backend interface that every store (VictoriaLogs today, see
// backend/victorialogs) implements. Commands depend on this package only, so
// that another store can be added without touching them.
//
// A Backend answers in terms of the record schema of README.md ("Record
// schema"): field names are the OTLP attribute names (resource and record
// attributes alike, e.g. "k8s.pod.name", "network.peer.port"), values are
// text as stored. Duplicates from at-least-once delivery (the same
// service.instance.id and connaudit.seq) are removed by the Backend in every
// answer: Records yields each record once, Summary and Coverage count it once.
//
// The coverage a store answers with, and the gap logic of the trail (what
// counts as a hole, which loss record explains it, which node went
// unwatched), are store-independent and live in package trail/coverage; the
// dedup key is trail.RecordKey.
package backend

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/connaudit/connaudit/trail"
	"github.com/connaudit/connaudit/trail/coverage"
	"k8s.io/apimachinery/pkg/labels"
)

// Backend is a store of the trail.
type Backend interface {
	// Records streams the tcp.connect records that match f, oldest first. With
	// limit > 0 it yields the newest limit records (still oldest first), and
	// Records.Truncated tells whether older ones matched too.
	Records(ctx context.Context, f Filter, limit int) (Records, error)
	// Follow streams tcp.connect records that match f as they arrive (f's
	// time range is ignored), until ctx ends or the stream fails.
	Follow(ctx context.Context, f Filter) (Records, error)
	// Summary aggregates the tcp.connect records that match f by source
	// workload × destination × port × outcome, biggest count first.
	Summary(ctx context.Context, f Filter) ([]SummaryRow, error)
	// Coverage tells which agent instances watched which nodes in
	// [from, to): their lifetimes, record counts, loss records and seq holes.
	// With nodes non-empty, exactly those nodes are reported, each even when
	// nothing of it is stored.
	Coverage(ctx context.Context, from, to time.Time, nodes []string) (*coverage.Coverage, error)
}

// ErrUnreachable wraps the error of a Backend that could not be reached at
// all, as opposed to one that answered with an error.
var ErrUnreachable = errors.New("backend unreachable")

// Filter selects tcp.connect records. Within one field the values are
// alternatives (any of them matches); fields are combined with AND. An empty
// field does not filter.
type Filter struct {
	From, To time.Time // [From, To); both required by Records and Summary

	// The connecting side. Namespaces, Pods, Nodes, Containers and Workloads
	// are resource attributes, so a store can skip whole streams.
	Namespaces []string
	Pods       []string
	Containers []string
	Nodes      []string
	Workloads  []Workload
	// Selector is a Kubernetes label selector on the source pod's labels
	// (k8s.pod.label.<key>), with Kubernetes' semantics: `key!=v` and
	// `key notin (...)` also match a record without the label. nil or
	// labels.Everything() does not filter.
	Selector labels.Selector
	// HostOnly keeps host processes only: processes in no pod.
	HostOnly bool
	Comms    []string // process.executable.name
	PIDs     []int    // process.pid
	UIDs     []int    // process.user.id

	// The destination.
	Dst      []netip.Prefix // network.peer.address within any of them
	DstPorts []int          // network.peer.port
	// DstNames are names the application asked DNS for (server.address),
	// lower case without a final dot: "api.example.com" exactly, or
	// "*.example.com" for any name below example.com.
	DstNames       []string
	PeerNamespaces []string
	PeerPods       []string
	PeerServices   []string
	PeerWorkloads  []Workload
	PeerKinds      []string // pod, service, node, loopback, external, unknown

	// Outcomes are connaudit.outcome values; OutcomeFailed stands for every
	// outcome but established.
	Outcomes []string
}

// OutcomeFailed in Filter.Outcomes matches every outcome but established.
const OutcomeFailed = "failed"

// Workload is an owner of pods, as the records name it: Kind is one of
// WorkloadKinds, lower case.
type Workload struct {
	Kind string
	Name string
}

func (w Workload) String() string { return w.Kind + "/" + w.Name }

// WorkloadKinds are the owner kinds a record can name (trail.OwnerPrecedence),
// each with the source resource attribute that carries its name.
var WorkloadKinds = func() map[string]string {
	m := map[string]string{}
	for _, k := range trail.OwnerPrecedence {
		m[string(k)] = string(k.ResourceKey())
	}
	return m
}()

// SourceWorkload is the workload that owns the record's source pod, by
// trail.OwnerPrecedence; false for a pod without an owner or a host process.
func (r Record) SourceWorkload() (Workload, bool) {
	kind, name, ok := trail.SourceWorkload(r.Attr)
	return Workload{Kind: string(kind), Name: name}, ok
}

// PeerName is the name of the record's peer pod, Service or node; "" for a
// peer that only its address names.
func (r Record) PeerName() string {
	if k := trail.PeerKind(r.Get(FieldPeerKind)).NameKey(); k != "" {
		return r.Get(string(k))
	}
	return ""
}

// Records is a stream of records, used like sql.Rows:
//
//	defer rs.Close()
//	for rs.Next() { r := rs.Record() ... }
//	if err := rs.Err(); err != nil { ... }
type Records interface {
	Next() bool
	Record() Record
	// Err is the error that ended the stream, nil at its normal end.
	Err() error
	// Truncated reports, once Next returned false, whether a limit cut
	// the result.
	Truncated() bool
	Close() error
}

// SliceRecords is Records over records already in memory.
type SliceRecords struct {
	Rows []Record
	Cut  bool // what Truncated reports
	next int
}

func (s *SliceRecords) Next() bool {
	if s.next >= len(s.Rows) {
		return false
	}
	s.next++
	return true
}

func (s *SliceRecords) Record() Record  { return s.Rows[s.next-1] }
func (s *SliceRecords) Err() error      { return nil }
func (s *SliceRecords) Truncated() bool { return s.Cut }
func (s *SliceRecords) Close() error    { return nil }

// Record is one stored record: its timestamp, its body, and every other
// field by name (see the package doc), as text.
type Record struct {
	Time   time.Time
	Body   string
	Fields map[string]string
}

// Get returns a field's value, "" when absent.
func (r Record) Get(name string) string { return r.Fields[name] }

// Attr returns the value of an attribute of the record schema, "" when
// absent: Get for the typed readers of package trail.
func (r Record) Attr(k trail.Key) string { return r.Fields[string(k)] }

// Labels returns the source pod's labels (the k8s.pod.label.<key> fields);
// a label with an empty value is absent, as a store keeps it.
func (r Record) Labels() labels.Set {
	set := labels.Set{}
	for k, v := range r.Fields {
		if key, ok := cutPrefix(k, FieldPodLabelPrefix); ok && v != "" {
			set[key] = v
		}
	}
	return set
}

// PeerLabels returns the peer pod's labels (connaudit.peer.k8s.pod.label.<key>).
func (r Record) PeerLabels() labels.Set {
	set := labels.Set{}
	for k, v := range r.Fields {
		if key, ok := cutPrefix(k, FieldPeerPodLabelPrefix); ok && v != "" {
			set[key] = v
		}
	}
	return set
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) > len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):], true
	}
	return "", false
}

// SummaryRow is one group of Backend.Summary: connects from one source
// workload to one destination port with one outcome.
type SummaryRow struct {
	Source      Source
	Peer        Peer
	Port        int
	Outcome     string
	Count       int64 // distinct records (duplicates counted once)
	First, Last time.Time
}

// Source is who connected: a workload in a namespace, a pod without an owner
// (Workload kind "pod"), or a host process (Host true, Workload kind
// "process" with the executable name, Node set).
type Source struct {
	Namespace string
	Workload  Workload
	Host      bool
	Node      string
}

// Peer is the destination's identity: Kind is connaudit.peer.kind; Name is
// kind/name: the workload ("deployment/db", or "pod/x" for a pod without
// one), "service/x" or "node/x", with Namespace set for pods and services;
// Address is set instead for loopback, external and unknown peers.
type Peer struct {
	Kind      string
	Namespace string
	Name      string
	Address   string
}
