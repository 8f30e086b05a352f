package history

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/connaudit/connaudit/backend"
	"github.com/connaudit/connaudit/trail"
	"github.com/connaudit/connaudit/trail/coverage"
)

// fakeBackend answers Flows by the filter's direction and Coverage with one
// loss; the real VictoriaLogs backend is exercised by e2e/advise_test.go.
type fakeBackend struct {
	backend.Backend
	out, in []backend.FlowRow
	filters []backend.Filter
}

func (f *fakeBackend) Flows(_ context.Context, fl backend.Filter) ([]backend.FlowRow, error) {
	f.filters = append(f.filters, fl)
	if len(fl.PeerNamespaces) > 0 {
		return f.in, nil
	}
	return f.out, nil
}

func (f *fakeBackend) Coverage(_ context.Context, from, to time.Time, _ []string) (*coverage.Coverage, error) {
	return &coverage.Coverage{From: from, To: to, Nodes: []string{"node-a"}, Instances: []coverage.Instance{{
		Node: "node-a", ID: "i-1", Started: from.Add(-time.Hour), FirstSeen: from, LastSeen: to,
		Losses: []coverage.Loss{{Time: from.Add(time.Minute), Count: 5, Reason: "ring_buffer"}},
	}}}, nil
}

func row(fields map[string]string) backend.FlowRow {
	t0 := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	return backend.FlowRow{Record: backend.Record{Fields: fields}, Count: 3, First: t0, Last: t0.Add(time.Hour)}
}

func TestLoad(t *testing.T) {
	sameNS := row(map[string]string{
		"k8s.namespace.name": "shop", "k8s.pod.name": "web-1", "k8s.deployment.name": "web", "k8s.replicaset.name": "web-5d",
		"k8s.pod.label.app": "web", "connaudit.source.kind": "pod", "network.local.address": "198.51.100.2",
		"connaudit.peer.kind": "pod", "connaudit.peer.k8s.namespace.name": "shop", "connaudit.peer.k8s.pod.name": "db-0",
		"connaudit.peer.k8s.workload.kind": "statefulset", "connaudit.peer.k8s.workload.name": "db", "connaudit.peer.k8s.pod.label.app": "db",
		"network.peer.address": "203.0.113.50", "network.peer.port": "5432", "connaudit.outcome": "established",
	})
	unenriched := row(map[string]string{
		"k8s.node.name": "node-a", "network.local.address": "::ffff:198.51.100.3",
		"connaudit.peer.kind": "pod", "connaudit.peer.k8s.namespace.name": "shop", "connaudit.peer.k8s.pod.name": "db-0",
		"network.peer.address": "::ffff:203.0.113.50", "network.peer.port": "5432", "connaudit.outcome": "refused",
	})
	b := &fakeBackend{out: []backend.FlowRow{sameNS}, in: []backend.FlowRow{sameNS, unenriched}}
	from := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	h, err := Load(context.Background(), b, Selection{From: from, To: from.Add(24 * time.Hour), Namespaces: []string{"shop"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.filters) != 2 || !slices.Equal(b.filters[0].Namespaces, []string{"shop"}) || !slices.Equal(b.filters[1].PeerNamespaces, []string{"shop"}) {
		t.Errorf("filters %+v: want flows from shop, then flows into shop", b.filters)
	}
	if len(h.Flows) != 2 {
		t.Fatalf("%d flows, want the same-namespace flow once and the unenriched one: %+v", len(h.Flows), h.Flows)
	}
	web := h.Flows[0]
	if web.Source.WorkloadKind != "deployment" || web.Source.WorkloadName != "web" || web.Source.Labels["app"] != "web" ||
		web.Destination.WorkloadKind != "statefulset" || web.Destination.Labels["app"] != "db" || web.Destination.Port != 5432 || web.Count != 3 {
		t.Errorf("flow %+v", web)
	}
	host := h.Flows[1]
	if host.Source.Kind != trail.SourceUnknown || host.Source.Address.String() != "198.51.100.3" || host.Destination.Address.String() != "203.0.113.50" {
		t.Errorf("an unenriched record's source %+v, destination %+v: want an unknown source with IPv4 addresses", host.Source, host.Destination)
	}
	if len(h.Gaps) != 1 || h.Gaps[0].Count != 5 || h.Gaps[0].Reason != "ring_buffer" || h.Gaps[0].Node != "node-a" {
		t.Errorf("gaps %+v, want the loss", h.Gaps)
	}
}

func TestLoadNeedsAFlowAggregator(t *testing.T) {
	var b struct{ backend.Backend }
	if _, err := Load(context.Background(), b, Selection{}); err == nil {
		t.Error("a backend without Flows was accepted")
	}
}
