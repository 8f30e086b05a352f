package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connaudit/connaudit/backend/archive"
	"github.com/connaudit/connaudit/backend/backendtest"
	"github.com/connaudit/connaudit/backend/victorialogs"
	"github.com/connaudit/connaudit/internal/kubetest"
	"github.com/connaudit/connaudit/internal/recordgen"
	"github.com/connaudit/connaudit/internal/teststack"
)

// conformanceStore is VictoriaLogs holding backendtest's trail, as one
// collector configuration ingested it.
type conformanceStore struct {
	vl *teststack.VictoriaLogs
}

// ingestConformance posts backendtest.Batches through the collector that
// start starts in front of a new VictoriaLogs, each node's records with its
// agent's token when token is set, and waits until all are stored.
func ingestConformance(t *testing.T, start func(vlURL string) *teststack.Collector, token func(node string) string) *conformanceStore {
	t.Helper()
	vl := teststack.StartVictoriaLogs(t)
	col := start(vl.URL())
	for _, batch := range backendtest.Batches() {
		byNode := map[string][]recordgen.Record{}
		var nodes []string
		for _, r := range batch {
			n := recordgen.Node(r)
			if byNode[n] == nil {
				nodes = append(nodes, n)
			}
			byNode[n] = append(byNode[n], r)
		}
		for _, n := range nodes {
			tok := ""
			if token != nil {
				tok = token(n)
			}
			if err := recordgen.PostWith(t.Context(), col.HTTPClient(), col.HTTPEndpoint()+"/v1/logs", tok, byNode[n]); err != nil {
				t.Fatal(err)
			}
		}
	}
	vl.WaitFor(t, `*`, backendtest.Count(), time.Minute)
	return &conformanceStore{vl: vl}
}

func (s *conformanceStore) backend(t *testing.T) *victorialogs.Backend {
	t.Helper()
	b, err := victorialogs.New(victorialogs.Config{URL: s.vl.URL()})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// exportWindow spans every record of backendtest's trail.
var exportWindow = []string{"--from", backendtest.T0.Add(-time.Hour).Format(time.RFC3339), "--to", backendtest.Gap[1].Add(time.Hour).Format(time.RFC3339)}

// export runs `connaudit export` of the whole trail into a file.
func (s *conformanceStore) export(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "trail.jsonl")
	res := runConnaudit(t, nil, append([]string{"export", "--server", s.vl.URL(), "-f", path}, exportWindow...)...)
	if res.code != 0 || !strings.Contains(res.stderr, "exported ") {
		t.Fatalf("connaudit export: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	return path
}

// The same questions, the same answers: VictoriaLogs fed through the dev
// collector configuration (every resource attribute a stream field) and
// through the shipped gateway configuration (six stream fields, agents
// authenticated by the API server), and the archive backend over
// `connaudit export` of each.
func TestBackendConformance(t *testing.T) {
	if _, err := os.Stat(gatewayConfig); err != nil {
		t.Fatal(err)
	}
	cluster := kubetest.Start(t, kubetest.Options{})
	auth := teststack.NewGatewayAuth(t, cluster)
	dev := ingestConformance(t, func(vlURL string) *teststack.Collector { return teststack.StartCollector(t, vlURL) }, nil)
	gw := ingestConformance(t, func(vlURL string) *teststack.Collector {
		return teststack.StartGateway(t, vlURL, []string{gatewayConfig}, auth.Env...)
	}, func(node string) string {
		token, err := os.ReadFile(auth.AgentToken(node))
		if err != nil {
			t.Fatal(err)
		}
		return string(token)
	})

	t.Run("victorialogs-dev", func(t *testing.T) { backendtest.Run(t, dev.backend(t)) })
	t.Run("victorialogs-gateway", func(t *testing.T) { backendtest.Run(t, gw.backend(t)) })
	archives := map[string]string{}
	for name, s := range map[string]*conformanceStore{"dev": dev, "gateway": gw} {
		path := s.export(t)
		archives[name] = path
		t.Run("archive-of-"+name+"-export", func(t *testing.T) {
			b, err := archive.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			if b.Len() != backendtest.Count() {
				t.Errorf("the export holds %d records, want %d", b.Len(), backendtest.Count())
			}
			backendtest.Run(t, b)
		})
	}

	// advise asks the API server for the Services the records name.
	createAdvisedServices(t, cluster)
	kube := []string{"--kubeconfig", cluster.Kubeconfig()}
	denyEgress := filepath.Join(t.TempDir(), "deny-egress.yaml")
	if err := os.WriteFile(denyEgress, []byte(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: shop}
spec:
  podSelector: {}
  policyTypes: [Egress]
`), 0o644); err != nil {
		t.Fatal(err)
	}

	// The commands answer alike from the server and from its export.
	window := []string{"--from", backendtest.Main[0].Format(time.RFC3339), "--to", backendtest.Main[1].Format(time.RFC3339)}
	gapWindow := []string{"--from", backendtest.Gap[0].Format(time.RFC3339), "--to", backendtest.Gap[1].Format(time.RFC3339)}
	for _, tc := range []struct {
		args   []string
		window []string
		want   string
	}{
		{[]string{"query", "-A", "-o", "json"}, window, `"k8s.pod.name":"web-6e7a9-x3"`},
		{[]string{"query", "-A", "-l", "app=web", "--outcome", "failed", "-o", "wide", "--limit", "1"}, window, "ECONNRESET"},
		{[]string{"query", "--summary"}, window, "shop/deployment/web"},
		{[]string{"query", "--strict", "-o", "csv"}, gapWindow, "seq_hole"},
		{[]string{"coverage", "-o", "json"}, gapWindow, "ct-d1"},
		{[]string{"coverage"}, window, "ct-b2"},
		{[]string{"verify", "-o", "json"}, gapWindow, "ct-c1"},
		{[]string{"advise", "networkpolicy", "-n", "shop", kube[0], kube[1]}, window, "name: web-connaudit"},
		{[]string{"advise", "check", "-f", denyEgress, kube[0], kube[1]}, window, "egress of shop/deny-egress"},
	} {
		server := runConnaudit(t, nil, append(append(append([]string{}, tc.args...), "--server", dev.vl.URL()), tc.window...)...)
		offline := runConnaudit(t, nil, append(append(append([]string{}, tc.args...), "--archive", archives["dev"]), tc.window...)...)
		server.stdout = strings.ReplaceAll(server.stdout, dev.vl.URL(), "SOURCE")
		server.stderr = strings.ReplaceAll(server.stderr, dev.vl.URL(), "SOURCE")
		if server != offline {
			t.Errorf("%q: answers differ\n--- --server: exit %d\n%s%s\n--- --archive: exit %d\n%s%s", tc.args,
				server.code, server.stdout, server.stderr, offline.code, offline.stdout, offline.stderr)
		}
		if !strings.Contains(offline.stdout+offline.stderr, tc.want) {
			t.Errorf("%q --archive lacks %q:\n%s%s", tc.args, tc.want, offline.stdout, offline.stderr)
		}
	}
}
