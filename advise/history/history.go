// Package history reads an advise.History from a backend: the flows from
// and to the selected namespaces, aggregated by the backend, and the gaps
// of the trail in the window.
package history

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/connaudit/connaudit/advise"
	"github.com/connaudit/connaudit/backend"
	"github.com/connaudit/connaudit/trail"
	"github.com/connaudit/connaudit/trail/coverage"
)

// Selection is what to read.
type Selection struct {
	From, To   time.Time
	Namespaces []string
	// Selector and Workloads narrow the connecting side; the accepting side
	// is every flow into the namespaces (the advisor picks its workloads).
	Selector  labels.Selector
	Workloads []backend.Workload
	// ClusterNodes are the nodes the cluster has (from its API server), whose
	// gaps count even when the trail names them nowhere, as query's do.
	ClusterNodes []string
}

// Load reads the flows that start in the selection's namespaces (with its
// selector and workloads) and those that end in them, and the trail's gaps.
func Load(ctx context.Context, b backend.Backend, sel Selection) (advise.History, error) {
	h := advise.History{From: sel.From, To: sel.To}
	agg, ok := b.(backend.FlowAggregator)
	if !ok {
		return h, fmt.Errorf("the backend %T cannot aggregate flows, which advise needs", b)
	}
	out := backend.Filter{From: sel.From, To: sel.To, Namespaces: sel.Namespaces, Selector: sel.Selector, Workloads: sel.Workloads}
	in := backend.Filter{From: sel.From, To: sel.To, PeerNamespaces: sel.Namespaces}
	seen := map[string]bool{}
	for _, f := range []backend.Filter{out, in} {
		rows, err := agg.Flows(ctx, f)
		if err != nil {
			return h, err
		}
		for _, r := range rows {
			// A flow within one namespace is in both answers.
			key := rowKey(r)
			if seen[key] {
				continue
			}
			seen[key] = true
			flow, err := toFlow(r)
			if err != nil {
				return h, err
			}
			h.Flows = append(h.Flows, flow)
		}
	}
	cov, err := b.Coverage(ctx, sel.From, sel.To, nil)
	if err != nil {
		return h, fmt.Errorf("check the trail for gaps: %w", err)
	}
	cov.AddNodes(nil, sel.ClusterNodes)
	for _, g := range coverage.Gaps(cov) {
		reason := g.Reason
		if g.Kind != coverage.GapLoss {
			reason = string(g.Kind) + ": " + g.Reason
		}
		h.Gaps = append(h.Gaps, advise.Gap{Node: g.Node, Instance: g.Instance, Reason: reason, Count: g.Count, First: g.From, Last: g.To})
	}
	return h, nil
}

func rowKey(r backend.FlowRow) string {
	keys := make([]string, 0, len(r.Fields))
	for k := range r.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(strconv.Quote(k))
		b.WriteByte('=')
		b.WriteString(strconv.Quote(r.Fields[k]))
		b.WriteByte(',')
	}
	return b.String()
}

func toFlow(r backend.FlowRow) (advise.Flow, error) {
	f := advise.Flow{Outcome: r.Get(backend.FieldOutcome), Count: r.Count, First: r.First, Last: r.Last}
	s := &f.Source
	s.Kind = trail.SourceKind(r.Get(backend.FieldSourceKind))
	s.Namespace = r.Get(backend.FieldNamespace)
	s.Pod = r.Get(backend.FieldPod)
	s.Node = r.Get(backend.FieldNode)
	s.HostNetwork = r.Get(backend.FieldHostNetwork) == "true"
	if s.Kind == "" {
		// An agent without Kubernetes enrichment cannot tell a container
		// from a host process.
		s.Kind = trail.SourceUnknown
	}
	if w, ok := r.SourceWorkload(); ok {
		s.WorkloadKind, s.WorkloadName = w.Kind, w.Name
	}
	s.Labels = r.Labels()
	var err error
	if s.Address, err = optionalAddr(r.Get(backend.FieldSrcAddr)); err != nil {
		return f, err
	}

	d := &f.Destination
	d.Kind = trail.PeerKind(r.Get(backend.FieldPeerKind))
	if d.Kind == "" {
		d.Kind = trail.PeerUnknown
	}
	d.Namespace = r.Get(backend.FieldPeerNamespace)
	d.Name = r.PeerName()
	d.WorkloadKind = r.Get(backend.FieldPeerWorkloadKind)
	d.WorkloadName = r.Get(backend.FieldPeerWorkloadName)
	d.Labels = r.PeerLabels()
	if d.Address, err = optionalAddr(r.Get(backend.FieldDstAddr)); err != nil {
		return f, err
	}
	if name := r.Get(backend.FieldDstName); name != "" && name != r.Get(backend.FieldDstAddr) {
		d.DNSName, d.DNSResolver = name, r.Get(backend.FieldDNSResolver)
		switch r.Get(backend.FieldDNSCluster) {
		case "true":
			d.DNSFrom = advise.DNSFromCluster
		case "false":
			d.DNSFrom = advise.DNSFromOther
		}
	}
	port, err := strconv.ParseUint(r.Get(backend.FieldDstPort), 10, 16)
	if err != nil {
		return f, fmt.Errorf("flow with a bad %s %q", backend.FieldDstPort, r.Get(backend.FieldDstPort))
	}
	d.Port = uint16(port)
	return f, nil
}

func optionalAddr(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return a, fmt.Errorf("flow with a bad address %q: %w", s, err)
	}
	return a.Unmap(), nil
}
