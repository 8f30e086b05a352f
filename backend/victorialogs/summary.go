package victorialogs

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/connaudit/connaudit/backend"
	"github.com/connaudit/connaudit/trail"
)

// Computed fields of the summary query: the source pod only for a pod
// without an owner, the node and comm only for a host process, the peer
// address only for a peer with no Kubernetes identity, the peer pod only for
// a peer pod without a workload.
const (
	sumSrcPod  = "connaudit_sum_src_pod"
	sumSrcNode = "connaudit_sum_src_node"
	sumSrcComm = "connaudit_sum_src_comm"
	sumPeerIP  = "connaudit_sum_peer_ip"
	sumPeerPod = "connaudit_sum_peer_pod"
	sumWlKind  = "connaudit_sum_src_workload_kind"
	sumWlName  = "connaudit_sum_src_workload_name"
	sumCount   = "connaudit_sum_count"
	sumFirst   = "connaudit_sum_first"
	sumLast    = "connaudit_sum_last"
)

// sourceOwners are the owner attributes in the order that names a source
// workload: a Deployment over its ReplicaSet, a CronJob over its Job.
var sourceOwners = backend.SourceOwners

func summaryQuery(f backend.Filter) string {
	var owned []string
	for _, kind := range sourceOwners {
		owned = append(owned, quote(backend.WorkloadKinds[kind])+":*")
	}
	copyUnless := func(from, to, unless string) string {
		return " | format " + quote("<"+from+">") + " as " + quote(to) + " | format if (" + unless + `) "" as ` + quote(to)
	}
	hasPod := quote(backend.FieldPodUID) + ":* or " + quote(backend.FieldPod) + ":*"
	q := connectQuery(f) + " " + timeRange(f.From, f.To)
	q += copyUnless(backend.FieldPod, sumSrcPod, strings.Join(owned, " or "))
	q += copyUnless(backend.FieldNode, sumSrcNode, hasPod)
	q += copyUnless(backend.FieldComm, sumSrcComm, hasPod)
	q += copyUnless(backend.FieldDstAddr, sumPeerIP, quote(backend.FieldPeerKind)+`:in("pod", "service", "node")`)
	q += copyUnless(backend.FieldPeerPod, sumPeerPod, quote(backend.FieldPeerWorkloadName)+":*")
	// The source workload, by precedence: the owners are set from the
	// lowest to the highest, each over the one before. Grouped by every
	// owner field instead, a Deployment would be one row per ReplicaSet.
	for i := len(sourceOwners) - 1; i >= 0; i-- {
		field := backend.WorkloadKinds[sourceOwners[i]]
		q += " | format if (" + quote(field) + ":*) " + quote(sourceOwners[i]) + " as " + quote(sumWlKind) +
			" | format if (" + quote(field) + ":*) " + quote("<"+field+">") + " as " + quote(sumWlName)
	}
	by := []string{backend.FieldNamespace, sumSrcPod, sumSrcNode, sumSrcComm, sumWlKind, sumWlName}
	by = append(by, backend.FieldPeerKind, backend.FieldPeerNamespace, backend.FieldPeerWorkloadKind, backend.FieldPeerWorkloadName,
		sumPeerPod, backend.FieldPeerService, backend.FieldPeerNode, sumPeerIP, backend.FieldDstPort, backend.FieldOutcome)
	q += " | stats by (" + quoteAll(by) + ") count_uniq(" + quote(backend.FieldServiceInstanceID) + ", " + quote(backend.FieldSeq) + ") as " + sumCount +
		", min(_time) as " + sumFirst + ", max(_time) as " + sumLast
	return q
}

// Summary implements backend.Backend. A label selector with gt or lt cannot
// be said in LogsQL and is refused: Summary aggregates in VictoriaLogs.
func (b *Backend) Summary(ctx context.Context, f backend.Filter) ([]backend.SummaryRow, error) {
	if err := serverSideSelector(f); err != nil {
		return nil, err
	}
	var out []backend.SummaryRow
	err := b.rows(ctx, summaryQuery(f), func(row map[string]string) error {
		r, err := summaryRow(row)
		if err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("summarize: %w", err)
	}
	slices.SortStableFunc(out, func(a, b backend.SummaryRow) int {
		if a.Count != b.Count {
			return int(b.Count - a.Count)
		}
		return a.First.Compare(b.First)
	})
	return out, nil
}

func summaryRow(row map[string]string) (backend.SummaryRow, error) {
	var r backend.SummaryRow
	var err error
	if r.Count, err = strconv.ParseInt(row[sumCount], 10, 64); err != nil {
		return r, fmt.Errorf("summary row with a bad count: %v", row)
	}
	if r.First, err = time.Parse(time.RFC3339Nano, row[sumFirst]); err != nil {
		return r, fmt.Errorf("summary row with a bad first time: %v", row)
	}
	if r.Last, err = time.Parse(time.RFC3339Nano, row[sumLast]); err != nil {
		return r, fmt.Errorf("summary row with a bad last time: %v", row)
	}
	r.Port, _ = strconv.Atoi(row[backend.FieldDstPort])
	r.Outcome = row[backend.FieldOutcome]

	r.Source.Namespace = row[backend.FieldNamespace]
	if name := row[sumWlName]; name != "" {
		r.Source.Workload = backend.Workload{Kind: row[sumWlKind], Name: name}
	} else {
		if pod := row[sumSrcPod]; pod != "" {
			r.Source.Workload = backend.Workload{Kind: "pod", Name: pod}
		} else {
			r.Source.Host = true
			r.Source.Node = row[sumSrcNode]
			r.Source.Workload = backend.Workload{Kind: "process", Name: row[sumSrcComm]}
		}
	}

	r.Peer.Kind = row[backend.FieldPeerKind]
	switch r.Peer.Kind {
	case string(trail.PeerPod):
		r.Peer.Namespace = row[backend.FieldPeerNamespace]
		if name := row[backend.FieldPeerWorkloadName]; name != "" {
			r.Peer.Name = row[backend.FieldPeerWorkloadKind] + "/" + name
		} else {
			r.Peer.Name = "pod/" + row[sumPeerPod]
		}
	case string(trail.PeerService):
		r.Peer.Namespace = row[backend.FieldPeerNamespace]
		r.Peer.Name = "service/" + row[backend.FieldPeerService]
	case string(trail.PeerNode):
		r.Peer.Name = "node/" + row[backend.FieldPeerNode]
	default:
		r.Peer.Address = row[sumPeerIP]
	}
	return r, nil
}

// serverSideSelector refuses a selector that LogsQL cannot say.
func serverSideSelector(f backend.Filter) error {
	if f.Selector == nil {
		return nil
	}
	reqs, _ := f.Selector.Requirements()
	for _, r := range reqs {
		if op := string(r.Operator()); op == "gt" || op == "lt" {
			return fmt.Errorf("label selector %q: the summary is computed in VictoriaLogs, which cannot compare label values as numbers (%s); use =, !=, in, notin, exists", r.String(), op)
		}
	}
	return nil
}
