package check

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/connaudit/connaudit/advise"
	"github.com/connaudit/connaudit/trail"
)

var t0 = time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)

var myPod = advise.Source{Kind: trail.SourcePod, Namespace: "default", Pod: "mypod", Labels: map[string]string{"run": "mypod"},
	Node: "node-a", Address: netip.MustParseAddr("198.51.100.2")}

func flow(src advise.Source, dst advise.Destination, outcome string) advise.Flow {
	return advise.Flow{Source: src, Destination: dst, Outcome: outcome, Count: 2, First: t0, Last: t0.Add(time.Minute)}
}

func external(ip string, port uint16) advise.Destination {
	return advise.Destination{Kind: trail.PeerExternal, Address: netip.MustParseAddr(ip), Port: port}
}

func load(t *testing.T, text string) []*networkingv1.NetworkPolicy {
	t.Helper()
	ps, _, err := Load([]string{"-"}, strings.NewReader(text), "default")
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// The walkthrough's last step, over history: the advice of the walkthrough
// denies only the timed-out attempt.
func TestWalkthroughAdviceDeniesOnlyTheFailedAttempt(t *testing.T) {
	flows := []advise.Flow{
		flow(myPod, external("203.0.113.5", 80), "established"),
		flow(myPod, external("203.0.113.5", 443), "established"),
		flow(myPod, external("203.0.113.6", 80), "timeout"),
	}
	h := advise.History{From: t0, To: t0.Add(time.Hour), Flows: flows}
	a, err := advise.Generate(context.Background(), h, advise.Options{Namespace: "default", Selector: labels.SelectorFromSet(labels.Set{"run": "mypod"})})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := advise.Render(&buf, a.Policies); err != nil {
		t.Fatal(err)
	}
	res, err := Check(context.Background(), load(t, buf.String()), flows, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Flows != 3 || len(res.Denied) != 1 || res.DeniedEstablished() != 0 {
		t.Fatalf("replayed %d, denied %+v; want 3 replayed and only the timeout denied", res.Flows, res.Denied)
	}
	d := res.Denied[0]
	if d.Flow.Destination.Address.String() != "203.0.113.6" || d.Flow.Outcome != "timeout" ||
		strings.Join(d.Directions, ",") != "egress" || strings.Join(d.Policies, ",") != "default/mypod-connaudit" {
		t.Errorf("denial %+v", d)
	}
}

func TestDeniedEstablishedAndIngress(t *testing.T) {
	policies := load(t, `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-ingress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: web}}
    ports:
    - port: 5432
`)
	if got := policies[0].Spec.PolicyTypes; len(got) != 1 || got[0] != networkingv1.PolicyTypeIngress {
		t.Errorf("defaulted policyTypes %v, want [Ingress]", got)
	}
	if p := policies[0].Spec.Ingress[0].Ports[0].Protocol; p == nil || *p != corev1.ProtocolTCP {
		t.Errorf("defaulted protocol %v, want TCP", p)
	}
	web := advise.Source{Kind: trail.SourcePod, Namespace: "shop", Pod: "web-1", Labels: map[string]string{"app": "web"}}
	batch := advise.Source{Kind: trail.SourcePod, Namespace: "shop", Pod: "batch-1", Labels: map[string]string{"app": "batch"}}
	db := advise.Destination{Kind: trail.PeerPod, Namespace: "shop", Name: "db-0", Labels: map[string]string{"app": "db"},
		Address: netip.MustParseAddr("203.0.113.50"), Port: 5432}
	res, err := Check(context.Background(), policies, []advise.Flow{flow(web, db, "established"), flow(batch, db, "established")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Denied) != 1 || res.Denied[0].Flow.Source.Pod != "batch-1" || res.DeniedEstablished() != 1 ||
		strings.Join(res.Denied[0].Directions, ",") != "ingress" {
		t.Errorf("denied %+v, want batch's established connection, by ingress", res.Denied)
	}
}

type cluster struct {
	services map[string]*advise.Service
	pods     []advise.Pod
}

func (c cluster) Service(_ context.Context, ns, name string) (*advise.Service, error) {
	return c.services[ns+"/"+name], nil
}
func (cluster) NodeAddresses(context.Context, string) ([]netip.Addr, error) { return nil, nil }
func (cluster) Source() string                                              { return "test" }
func (c cluster) Pods(context.Context, string, map[string]string) ([]advise.Pod, error) {
	return c.pods, nil
}

// A connection to a Service is replayed to its pods on the target port,
// named or numbered.
func TestServiceReplayedToItsPods(t *testing.T) {
	c := cluster{
		services: map[string]*advise.Service{"shop/api": {Namespace: "shop", Name: "api", Selector: map[string]string{"app": "api"},
			Ports: []advise.ServicePort{{Port: 80, TargetPort: intstr.FromString("http")}}}},
		pods: []advise.Pod{{Labels: map[string]string{"app": "api", "tier": "be"}, IP: netip.MustParseAddr("198.51.100.30"), Ports: map[string]int32{"http": 8080}}},
	}
	web := advise.Source{Kind: trail.SourcePod, Namespace: "shop", Pod: "web-1", Labels: map[string]string{"app": "web"}}
	api := advise.Destination{Kind: trail.PeerService, Namespace: "shop", Name: "api", Address: netip.MustParseAddr("203.0.113.60"), Port: 80}
	for _, tc := range []struct {
		name, egressPort, ingressPort string
		denied                        bool
	}{
		{"named target port", "http", "http", false},
		{"numbered target port", "8080", "8080", false},
		{"Service port", "80", "8080", true},
		{"ingress of the pod on the Service port", "8080", "80", true},
	} {
		policies := load(t, `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {matchLabels: {app: api}}}]
    ports: [{port: `+tc.egressPort+`}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api, namespace: shop}
spec:
  podSelector: {matchLabels: {tier: be}}
  ingress:
  - ports: [{port: `+tc.ingressPort+`}]
`)
		res, err := Check(context.Background(), policies, []advise.Flow{flow(web, api, "established")}, c)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(res.Denied) == 1; got != tc.denied {
			t.Errorf("%s: denied %+v, want denied=%v", tc.name, res.Denied, tc.denied)
		}
	}
}

// An evaluator panic is reported with the policy that caused it.
func TestEvaluatorPanicNamesThePolicy(t *testing.T) {
	policies := load(t, `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: fine}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress: [{ports: [{port: 80}]}]
`)
	// Not defaulted: the evaluator dereferences a port's protocol.
	bad := policies[0].DeepCopy()
	bad.Name = "undefaulted"
	bad.Spec.Egress[0].Ports[0].Protocol = nil
	policies = append(policies, bad)
	_, err := Check(context.Background(), policies, []advise.Flow{flow(myPod, external("203.0.113.5", 443), "established")}, nil)
	var ee *EvaluatorError
	if !errors.As(err, &ee) || ee.Policy != "default/undefaulted" {
		t.Fatalf("err = %v, want an EvaluatorError naming default/undefaulted", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", `# a comment only
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a}
spec: {podSelector: {}, egress: [{}]}
---
apiVersion: v1
kind: Service
metadata: {name: svc}
`)
	write("b.json", `{"apiVersion": "v1", "kind": "List", "items": [
	  {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "b", "namespace": "other"}, "spec": {"podSelector": {}}}]}`)
	write("notes.txt", "ignored")
	ps, skipped, err := Load([]string{dir}, nil, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[0].Namespace+"/"+ps[0].Name != "shop/a" || ps[1].Namespace+"/"+ps[1].Name != "other/b" {
		t.Fatalf("loaded %v", ps)
	}
	if got := ps[0].Spec.PolicyTypes; len(got) != 2 {
		t.Errorf("policyTypes of a policy with egress rules defaulted to %v, want Ingress and Egress", got)
	}
	if len(skipped) != 1 || !strings.Contains(skipped[0], "a.yaml: document 3: v1 Service is not a NetworkPolicy") {
		t.Errorf("skipped %v", skipped)
	}

	for _, tc := range []struct{ text, want string }{
		{`{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: x}, spec: {podSelector: {}, egress: [{to: [{ipBlock: {cidr: 10.0.0.0/33}}]}]}}`,
			"stdin: document 1: NetworkPolicy default/x: spec.egress[0].to[0].ipBlock.cidr"},
		{`{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: x}, spec: {podSelectr: {}}}`, `unknown field "podSelectr"`},
		{`{apiVersion: networking.k8s.io/v1beta1, kind: NetworkPolicy, metadata: {name: x}}`, "want networking.k8s.io/v1"},
		{`{apiVersion: v1, kind: ConfigMap, metadata: {name: x}}`, "no NetworkPolicy in -"},
	} {
		_, _, err := Load([]string{"-"}, strings.NewReader(tc.text), "default")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.text, err, tc.want)
		}
	}
}
