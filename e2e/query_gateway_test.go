package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/connaudit/connaudit/internal/kubetest"
	"github.com/connaudit/connaudit/internal/teststack"
)

// gatewayConfig is the shipped gateway's collector configuration, the file
// k8s/deploy puts in its ConfigMap, used as is: only its listen addresses,
// queue directory, VictoriaLogs URL and API server are set, through the
// environment variables it reads.
const gatewayConfig = "../k8s/deploy/base/collector-config.yaml"

// The read side gives the same answers whatever resource attributes the
// collector makes VictoriaLogs stream fields: the query fixture ingested
// through otel-collector/config.yaml (every resource attribute a stream
// field) and through the shipped gateway configuration (VL-Stream-Fields
// names six; event_name, workloads and pod labels are ordinary fields), then
// query, --summary, coverage, advise networkpolicy and advise check asked the
// same questions of both.
func TestReadSideWhateverTheStreamFields(t *testing.T) {
	if _, err := os.Stat(gatewayConfig); err != nil {
		t.Fatal(err)
	}
	// advise asks the API server for the Services the records name; the
	// gateway asks it whether each node's agent is who it says.
	cluster := kubetest.Start(t, kubetest.Options{})
	auth := teststack.NewGatewayAuth(t, cluster)
	dev := startQueryFixture(t)
	gw := startQueryFixtureVia(t, func(vlURL string) *teststack.Collector {
		return teststack.StartGateway(t, vlURL, []string{gatewayConfig}, auth.Env...)
	}, func(node string) string {
		token, err := os.ReadFile(auth.AgentToken(node))
		if err != nil {
			t.Fatal(err)
		}
		return string(token)
	})

	// The two trails are stored differently: the gateway's streams hold
	// neither event_name nor workloads nor labels.
	for _, tc := range []struct {
		f               *qFixture
		streamHasLabels bool
	}{{dev, true}, {gw, false}} {
		rows, err := tc.f.vl.Query(t.Context(), `k8s.pod.name:="web-5d4f8-x1" network.local.port:=40001`)
		if err != nil || len(rows) != 1 {
			t.Fatalf("the fixture's first record: %v, %d rows", err, len(rows))
		}
		stream := rows[0]["_stream"]
		if got := strings.Contains(stream, "k8s.pod.label.app") && strings.Contains(stream, "k8s.deployment.name"); got != tc.streamHasLabels {
			t.Fatalf("stream %s: holds labels and workload = %v, want %v", stream, got, tc.streamHasLabels)
		}
		if !tc.streamHasLabels && (strings.Contains(stream, "event_name") || !strings.Contains(stream, `k8s.namespace.name="shop"`)) {
			t.Fatalf("the gateway's stream %s is not the six VL-Stream-Fields", stream)
		}
	}

	createAdvisedServices(t, cluster)
	kube := []string{"--kubeconfig", cluster.Kubeconfig()}

	dir := t.TempDir()
	denyEgress := filepath.Join(dir, "deny-egress.yaml")
	if err := os.WriteFile(denyEgress, []byte(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: shop}
spec:
  podSelector: {}
  policyTypes: [Egress]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	gapWindow := []string{"--from", qT0.Add(2 * time.Hour).Format(time.RFC3339), "--to", qT0.Add(2*time.Hour + time.Minute).Format(time.RFC3339)}
	for _, tc := range []struct {
		args   []string
		window []string
		want   []string // in stdout+stderr, so that "the same" is not "both empty"
	}{
		{[]string{"query", "-A", "-o", "json"}, qMainWindow, []string{`"network.local.port":40001`, `"network.local.port":40010`}},
		{[]string{"query", "-n", "shop", "-l", "app=web", "-o", "wide"}, qMainWindow, []string{"web-5d4f8-x2", "deployment/web"}},
		{[]string{"query", "-A", "-l", "app in (web,db),tier!=frontend", "-o", "csv"}, qMainWindow, []string{"db-0"}},
		{[]string{"query", "-A", "-l", "team", "-o", "csv"}, qMainWindow, []string{"pay-7c9-x"}},
		{[]string{"query", "-n", "shop", "--workload", "deployment/web", "-o", "csv"}, qMainWindow, []string{"web-5d4f8-x1", "web-5d4f8-x2"}},
		{[]string{"query", "-A", "--workload", "sts/db", "--workload", "pod/lone", "-o", "csv"}, qMainWindow, []string{"db-0", "lone"}},
		{[]string{"query", "--host", "--node", "node-b", "-o", "csv"}, qMainWindow, []string{"curl"}},
		{[]string{"query", "-A", "-c", "postgres", "--outcome", "established"}, qMainWindow, []string{"db-0"}},
		{[]string{"query", "--summary"}, qMainWindow, []string{"shop/deployment/web", "billing/pod/lone"}},
		{[]string{"query", "--summary", "-n", "shop", "-l", "app=web", "-o", "json"}, qMainWindow, []string{`"count":`}},
		{[]string{"query", "--strict"}, gapWindow, []string{"loss: spool_full", "seq_hole", "the trail has gaps: 3"}},
		{[]string{"coverage"}, qMainWindow, []string{"node-a", "node-b", "inst-b1"}},
		{[]string{"coverage", "-o", "json"}, gapWindow, []string{`"spool_full"`, "inst-c1"}},
		{[]string{"advise", "networkpolicy", "-n", "shop", kube[0], kube[1]}, qMainWindow, []string{"name: web-connaudit", "name: db-connaudit", "cidr: 2001:db8::53/128"}},
		{[]string{"advise", "networkpolicy", "-n", "shop", "-l", "app=web", "--policy-types", "egress", kube[0], kube[1]}, qMainWindow, []string{"name: web-connaudit", "port: 5432"}},
		{[]string{"advise", "check", "-f", denyEgress, kube[0], kube[1]}, qMainWindow, []string{"egress of shop/deny-egress", "shop/statefulset/db", "6 of 6 flows", "3 of them had been established"}},
	} {
		var res [2]runResult
		for i, f := range []*qFixture{dev, gw} {
			args := append(append(append([]string{}, tc.args...), "--server", f.vl.URL()), tc.window...)
			res[i] = runConnaudit(t, nil, args...)
			res[i].stdout = strings.ReplaceAll(res[i].stdout, f.vl.URL(), "SERVER")
			res[i].stderr = strings.ReplaceAll(res[i].stderr, f.vl.URL(), "SERVER")
		}
		if res[0] != res[1] {
			t.Errorf("%q: answers differ\n--- every resource attribute a stream field: exit %d\n%s%s\n--- the gateway's VL-Stream-Fields: exit %d\n%s%s",
				tc.args, res[0].code, res[0].stdout, res[0].stderr, res[1].code, res[1].stdout, res[1].stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(res[1].stdout+res[1].stderr, w) {
				t.Errorf("%q behind the gateway lacks %q:\n%s%s", tc.args, w, res[1].stdout, res[1].stderr)
			}
		}
	}
	t.Run("follow", func(t *testing.T) { testQueryFollow(t, gw) })
}

// createAdvisedServices creates the Services that advise looks up for the
// generated trail's peers: shop/api and billing/gateway.
func createAdvisedServices(t *testing.T, cluster *kubetest.Cluster) {
	t.Helper()
	for _, svc := range []struct{ ns, name, app string }{{"shop", "api", "api"}, {"billing", "gateway", "gateway"}} {
		c := cluster.Client()
		if _, err := c.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: svc.ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.CoreV1().Services(svc.ns).Create(t.Context(), &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: svc.name},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": svc.app},
				Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}
