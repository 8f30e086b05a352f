package backend

import (
	"context"
	"time"

	"github.com/connaudit/connaudit/trail"
)

// FlowAggregator is a Backend that also aggregates tcp.connect records with
// what a NetworkPolicy needs of both ends: the pod labels and the addresses,
// which Summary leaves out. connaudit advise reads the history through it.
type FlowAggregator interface {
	// Flows aggregates the tcp.connect records that match f by FlowFields
	// and the pod labels of both ends, counting each record once.
	Flows(ctx context.Context, f Filter) ([]FlowRow, error)
}

// FlowFields are the fields, besides the labels of both ends, that a FlowRow
// has one value of.
var FlowFields = []string{
	FieldNamespace, FieldPod, FieldNode, FieldSourceKind, FieldHostNetwork, FieldSrcAddr,
	string(trail.KeyK8sDeployment), string(trail.KeyK8sStatefulSet), string(trail.KeyK8sDaemonSet),
	string(trail.KeyK8sCronJob), string(trail.KeyK8sJob), string(trail.KeyK8sReplicaSet),
	FieldPeerKind, FieldPeerNamespace, FieldPeerPod, FieldPeerService, FieldPeerNode,
	FieldPeerWorkloadKind, FieldPeerWorkloadName, FieldDstAddr, FieldDstName, FieldDNSResolver, FieldDNSCluster, FieldDstPort, FieldOutcome,
}

// FlowRow is one group of Flows. Fields holds the group's values of
// FlowFields (a field absent from the records is absent here) and the labels
// of both ends under FieldPodLabelPrefix and FieldPeerPodLabelPrefix, so
// that Record's Get, Labels and PeerLabels read it the same way.
type FlowRow struct {
	Record
	Count       int64 // distinct records (duplicates counted once)
	First, Last time.Time
}
