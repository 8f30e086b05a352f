package advise

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/connaudit/connaudit/trail"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var (
	t0 = time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	t1 = t0.Add(7 * 24 * time.Hour)
)

const ns = "shop"

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// myPod is the walkthrough's bare pod.
var myPod = Source{Kind: trail.SourcePod, Namespace: "default", Pod: "mypod", Labels: map[string]string{"run": "mypod"},
	Node: "node-a", Address: addr("198.51.100.2")}

var webPod = Source{Kind: trail.SourcePod, Namespace: ns, Pod: "web-5d4f8b7c9-x7k2p", WorkloadKind: "deployment", WorkloadName: "web",
	Labels: map[string]string{"app": "web", "tier": "frontend", "pod-template-hash": "5d4f8b7c9"}, Node: "node-a", Address: addr("198.51.100.2")}

func flow(src Source, dst Destination, outcome string, count int64, first time.Time) Flow {
	return Flow{Source: src, Destination: dst, Outcome: outcome, Count: count, First: first, Last: first.Add(time.Hour)}
}

func external(ip string, port uint16) Destination {
	return Destination{Kind: trail.PeerExternal, Address: addr(ip), Port: port}
}

func history(flows ...Flow) History {
	return History{From: t0, To: t1, Query: `event_name:="tcp.connect"`, Flows: flows}
}

func generate(t *testing.T, h History, opts Options) (*Advice, string) {
	t.Helper()
	a, err := Generate(context.Background(), h, opts)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Render(&buf, a.Policies); err != nil {
		t.Fatal(err)
	}
	return a, buf.String()
}

func objects(a *Advice) []*networkingv1.NetworkPolicy {
	var out []*networkingv1.NetworkPolicy
	for _, p := range a.Policies {
		out = append(out, p.NetworkPolicy)
	}
	return out
}

func asEndpoint(s Source) endpoint {
	if s.Kind == trail.SourcePod && !s.HostNetwork {
		return endpoint{namespace: s.Namespace, labels: s.Labels, ip: s.Address}
	}
	return endpoint{ip: s.Address}
}

func outside(ip string) endpoint { return endpoint{ip: addr(ip)} }

func mustContain(t *testing.T, text string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("output lacks %q:\n%s", w, text)
		}
	}
}

// The tcpconnect walkthrough from history: two established connections to
// one host, a timed-out one to another.
func TestWalkthrough(t *testing.T) {
	h := history(
		flow(myPod, external("203.0.113.5", 80), "established", 3, t0.Add(time.Hour)),
		flow(myPod, external("203.0.113.5", 443), "established", 3, t0.Add(time.Hour)),
		flow(myPod, external("203.0.113.6", 80), "timeout", 1, t0.Add(2*time.Hour)),
	)
	a, text := generate(t, h, Options{Namespace: "default", Selector: labels.SelectorFromSet(labels.Set{"run": "mypod"})})
	if len(a.Policies) != 1 || a.Policies[0].NetworkPolicy.Name != "mypod-connaudit" {
		t.Fatalf("want one policy mypod-connaudit:\n%s", text)
	}
	np := a.Policies[0].NetworkPolicy
	if got := np.Spec.PodSelector.MatchLabels; len(got) != 1 || got["run"] != "mypod" {
		t.Errorf("podSelector %v, want run=mypod", got)
	}
	ps := objects(a)
	src := asEndpoint(myPod)
	for _, tc := range []struct {
		ip   string
		port int
		want bool
	}{
		{"203.0.113.5", 80, true}, {"203.0.113.5", 443, true},
		{"203.0.113.6", 80, false}, {"203.0.113.5", 22, false}, {"203.0.113.7", 443, false},
	} {
		if got := allowed(t, ps, src, outside(tc.ip), tc.port); got != tc.want {
			t.Errorf("%s:%d allowed = %v, want %v\n%s", tc.ip, tc.port, got, tc.want, text)
		}
	}
	mustContain(t, text,
		"# egress: timeout 1 time to 203.0.113.6:80, not allowed",
		"cidr: 203.0.113.5/32",
		"# TCP 80: established 3 times, first 2026-11-24T10:00:00Z, last 2026-11-24T11:00:00Z",
		"connaudit.io/window: 2026-11-24T09:00:00Z/2026-12-01T09:00:00Z",
		"connaudit.io/trail-gaps: none",
		"k8s-app: kube-dns",
	)
	if strings.Contains(text, "creationTimestamp") {
		t.Errorf("output has creationTimestamp:\n%s", text)
	}
}

func TestPodToPod(t *testing.T) {
	db := Destination{Kind: trail.PeerPod, Namespace: ns, Name: "db-0", WorkloadKind: "statefulset", WorkloadName: "db",
		Labels:  map[string]string{"app": "db", "statefulset.kubernetes.io/pod-name": "db-0", "controller-revision-hash": "db-7f"},
		Address: addr("203.0.113.50"), Port: 5432}
	pay := Destination{Kind: trail.PeerPod, Namespace: "payments", Name: "pay-6c-abcde", WorkloadKind: "deployment", WorkloadName: "pay",
		Labels: map[string]string{"app": "pay", "pod-template-hash": "6c"}, Address: addr("203.0.113.51"), Port: 8443}
	h := history(
		flow(webPod, db, "established", 10, t0),
		flow(webPod, pay, "established", 2, t0),
		flow(webPod, Destination{Kind: trail.PeerPod, Namespace: ns, Name: "db-0", WorkloadKind: "statefulset", WorkloadName: "db",
			Labels: db.Labels, Address: db.Address, Port: 22}, "refused", 4, t0),
	)
	a, text := generate(t, h, Options{Namespace: ns})
	var names []string
	for _, p := range a.Policies {
		names = append(names, p.NetworkPolicy.Name)
	}
	// web as source, db as destination (same namespace); pay is elsewhere.
	if !slices.Equal(names, []string{"web-connaudit", "db-connaudit"}) {
		t.Fatalf("policies %v, want web-connaudit and db-connaudit\n%s", names, text)
	}
	web := a.Policies[0].NetworkPolicy
	if got := web.Spec.PodSelector.MatchLabels; got["pod-template-hash"] != "" || got["app"] != "web" {
		t.Errorf("web podSelector %v keeps an unstable label or lacks app=web", got)
	}
	ps := objects(a)
	src := asEndpoint(webPod)
	dbEnd := endpoint{namespace: ns, labels: db.Labels, ip: db.Address}
	payEnd := endpoint{namespace: "payments", labels: pay.Labels, ip: pay.Address}
	payElsewhere := endpoint{namespace: "other", labels: pay.Labels, ip: pay.Address}
	for _, tc := range []struct {
		what string
		dst  endpoint
		port int
		want bool
	}{
		{"db", dbEnd, 5432, true},
		{"db's other pod of the next revision", endpoint{namespace: ns, labels: map[string]string{"app": "db", "controller-revision-hash": "db-8a"}, ip: addr("203.0.113.52")}, 5432, true},
		{"db on the refused port", dbEnd, 22, false},
		{"pay in payments", payEnd, 8443, true},
		{"pay's labels in another namespace", payElsewhere, 8443, false},
		{"pay's address outside any pod", outside("203.0.113.51"), 8443, false},
	} {
		if got := allowed(t, ps, src, tc.dst, tc.port); got != tc.want {
			t.Errorf("%s:%d allowed = %v, want %v\n%s", tc.what, tc.port, got, tc.want, text)
		}
	}
	// Ingress of db: from web only.
	other := endpoint{namespace: ns, labels: map[string]string{"app": "other"}, ip: addr("198.51.100.9")}
	if allowed(t, ps, other, dbEnd, 5432) {
		t.Errorf("db admits a pod that never connected to it\n%s", text)
	}
	mustContain(t, text, "kubernetes.io/metadata.name: payments", "# egress: refused 4 times to pod shop/db-0 (203.0.113.50:22)",
		"# ingress: refused 4 times from pod shop/web-5d4f8b7c9-x7k2p")
}

type fakeCluster struct {
	services map[string]*Service
	nodes    map[string][]netip.Addr
}

func (c fakeCluster) Service(_ context.Context, namespace, name string) (*Service, error) {
	return c.services[namespace+"/"+name], nil
}

func (c fakeCluster) NodeAddresses(_ context.Context, node string) ([]netip.Addr, error) {
	return c.nodes[node], nil
}

func (fakeCluster) Source() string { return "the test's cluster" }

func TestServiceTargetPorts(t *testing.T) {
	cluster := fakeCluster{services: map[string]*Service{
		ns + "/api": {Namespace: ns, Name: "api", Selector: map[string]string{"app": "api"},
			Ports: []ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
		ns + "/grpc": {Namespace: ns, Name: "grpc", Selector: map[string]string{"app": "grpc"},
			Ports: []ServicePort{{Name: "grpc", Port: 443, TargetPort: intstr.FromString("grpc-port")}}},
		ns + "/legacy": {Namespace: ns, Name: "legacy", Ports: []ServicePort{{Name: "db", Port: 3306}},
			Endpoints: []netip.Addr{addr("203.0.113.90"), addr("2001:db8:2::90")}, EndpointPorts: map[string]int32{"db": 13306}},
	}}
	svc := func(name, ip string, port uint16) Destination {
		return Destination{Kind: trail.PeerService, Namespace: ns, Name: name, Address: addr(ip), Port: port}
	}
	h := history(
		flow(webPod, svc("api", "203.0.113.60", 80), "established", 5, t0),
		flow(webPod, svc("grpc", "203.0.113.61", 443), "established", 5, t0),
		flow(webPod, svc("legacy", "203.0.113.62", 3306), "established", 5, t0),
	)
	a, text := generate(t, h, Options{Namespace: ns, Workload: "deploy/web", Cluster: cluster})
	if len(a.Policies) != 1 {
		t.Fatalf("want one policy:\n%s", text)
	}
	ps := objects(a)
	src := asEndpoint(webPod)
	apiPod := endpoint{namespace: ns, labels: map[string]string{"app": "api"}, ip: addr("198.51.100.30")}
	grpcPod := endpoint{namespace: ns, labels: map[string]string{"app": "grpc"}, ports: map[string]int32{"grpc-port": 9443}, ip: addr("198.51.100.31")}
	for _, tc := range []struct {
		what string
		dst  endpoint
		port int
		want bool
	}{
		{"api pod on the target port", apiPod, 8080, true},
		{"api pod on the Service port", apiPod, 80, false},
		{"api's cluster IP", outside("203.0.113.60"), 80, false},
		{"grpc pod on its named target port", grpcPod, 9443, true},
		{"grpc pod on the Service port", grpcPod, 443, false},
		{"legacy endpoint on the endpoint port", outside("203.0.113.90"), 13306, true},
		{"legacy IPv6 endpoint", outside("2001:db8:2::90"), 13306, true},
		{"legacy endpoint on the Service port", outside("203.0.113.90"), 3306, false},
	} {
		if got := allowed(t, ps, src, tc.dst, tc.port); got != tc.want {
			t.Errorf("%s:%d allowed = %v, want %v\n%s", tc.what, tc.port, got, tc.want, text)
		}
	}
	mustContain(t, text, "port: grpc-port", "port: 8080", "cidr: 2001:db8:2::90/128",
		"Service port 80 -> target port 8080, taken from the test's cluster", "has no selector: its endpoints as ipBlocks")
}

func TestIPv6AndAggregation(t *testing.T) {
	h := history(
		flow(webPod, external("2001:db8:2::5", 443), "established", 2, t0),
		flow(webPod, external("2001:db8:2::6", 443), "established", 2, t0),
		flow(webPod, external("203.0.113.5", 443), "established", 1, t0),
		flow(webPod, external("203.0.113.9", 443), "established", 1, t0),
	)
	a, text := generate(t, h, Options{Namespace: ns, NoDNS: true})
	mustContain(t, text, "cidr: 2001:db8:2::5/128", "cidr: 2001:db8:2::6/128", "cidr: 203.0.113.5/32")
	if strings.Contains(text, "kube-dns") {
		t.Errorf("--no-dns still allows kube-dns:\n%s", text)
	}
	src := asEndpoint(webPod)
	if !allowed(t, objects(a), src, outside("2001:db8:2::5"), 443) || allowed(t, objects(a), src, outside("2001:db8:2::7"), 443) {
		t.Errorf("/128 rules wrong:\n%s", text)
	}

	a, text = generate(t, h, Options{Namespace: ns, NoDNS: true, AggregateV4: 24, AggregateV6: 64})
	mustContain(t, text, "cidr: 2001:db8:2::/64", "cidr: 203.0.113.0/24",
		"which admits 18446744073709551614 addresses never observed", "which admits 254 addresses never observed")
	if n := len(a.Policies[0].NetworkPolicy.Spec.Egress); n != 2 {
		t.Errorf("%d egress rules, want one per widened prefix:\n%s", n, text)
	}
	if !allowed(t, objects(a), src, outside("2001:db8:2::7"), 443) || allowed(t, objects(a), src, outside("2001:db8:3::7"), 443) {
		t.Errorf("/64 rule wrong:\n%s", text)
	}
}

// An ipBlock's evidence names the DNS names the application asked for.
func TestIPBlockEvidenceNamesTheHost(t *testing.T) {
	named := func(ip, name string) Destination {
		d := external(ip, 443)
		d.DNSName = name
		return d
	}
	h := history(
		flow(webPod, named("203.0.113.80", "api.example.com"), "established", 3, t0),
		flow(webPod, named("203.0.113.80", "api-eu.example.com"), "established", 1, t0),
		flow(webPod, external("203.0.113.81", 443), "established", 1, t0),
	)
	_, text := generate(t, h, Options{Namespace: ns, NoDNS: true, AggregateV4: 24})
	mustContain(t, text, "observed 203.0.113.80 = api-eu.example.com or api.example.com, 203.0.113.81;")

	// Whether the cluster DNS gave the name, or a resolver the pod chose.
	fromCluster, fromOwn := named("203.0.113.80", "api.example.com"), named("203.0.113.80", "api.github.com")
	fromCluster.DNSResolver, fromCluster.DNSFrom = "10.96.0.10", DNSFromCluster
	fromOwn.DNSResolver, fromOwn.DNSFrom = "198.51.100.53", DNSFromOther
	h = history(flow(webPod, fromCluster, "established", 1, t0), flow(webPod, fromOwn, "established", 1, t0))
	_, text = generate(t, h, Options{Namespace: ns, NoDNS: true})
	mustContain(t, text, "observed 203.0.113.80 = api.example.com (cluster DNS) or api.github.com (from resolver 198.51.100.53, not the cluster DNS)")
}

// Sources outside any pod's network reach a pod from their node's address.
func TestHostSourcesIngress(t *testing.T) {
	dbDst := Destination{Kind: trail.PeerPod, Namespace: ns, Name: "db-0", WorkloadKind: "statefulset", WorkloadName: "db",
		Labels: map[string]string{"app": "db"}, Address: addr("203.0.113.50"), Port: 5432}
	hostNet := Source{Kind: trail.SourcePod, Namespace: "kube-system", Pod: "node-exporter-abcde", WorkloadKind: "daemonset", WorkloadName: "node-exporter",
		Labels: map[string]string{"app": "node-exporter"}, HostNetwork: true, Node: "node-b", Address: addr("198.51.100.3")}
	host := Source{Kind: trail.SourceHost, Node: "node-c"} // failed before binding: no local address
	cluster := fakeCluster{nodes: map[string][]netip.Addr{"node-c": {addr("198.51.100.4"), addr("2001:db8:1::4")}}}
	h := history(
		flow(hostNet, dbDst, "established", 7, t0),
		flow(host, dbDst, "established", 1, t0),
	)
	a, text := generate(t, h, Options{Namespace: ns, Cluster: cluster})
	if len(a.Policies) != 1 || a.Policies[0].NetworkPolicy.Name != "db-connaudit" {
		t.Fatalf("want db-connaudit only:\n%s", text)
	}
	ps := objects(a)
	db := endpoint{namespace: ns, labels: dbDst.Labels, ip: dbDst.Address}
	for _, tc := range []struct {
		src  endpoint
		want bool
	}{
		{outside("198.51.100.3"), true}, {outside("198.51.100.4"), true}, {outside("2001:db8:1::4"), true},
		{outside("198.51.100.5"), false},
		{endpoint{namespace: "kube-system", labels: hostNet.Labels, ip: addr("198.51.100.77")}, false},
	} {
		if got := allowed(t, ps, tc.src, db, 5432); got != tc.want {
			t.Errorf("from %v allowed = %v, want %v\n%s", tc.src, got, tc.want, text)
		}
	}
	mustContain(t, text, "from hostNetwork pod kube-system/node-exporter-abcde on node node-b, by its source address",
		"from a host process on node node-c, by the node's addresses (the test's cluster)")

	// The hostNetwork DaemonSet itself gets no policy, with a warning.
	a, _ = generate(t, h, Options{Namespace: "kube-system"})
	if len(a.Policies) != 0 || !slices.ContainsFunc(a.Warnings, func(w string) bool { return strings.Contains(w, "uses the host network") }) {
		t.Errorf("hostNetwork workload: policies %d, warnings %v", len(a.Policies), a.Warnings)
	}
}

func TestGapsAreAnnotated(t *testing.T) {
	h := history(flow(myPod, external("203.0.113.5", 80), "established", 3, t0))
	h.Gaps = []Gap{{Node: "node-a", Instance: "i-1", Reason: "ring_buffer", Count: 12, First: t0.Add(time.Hour), Last: t0.Add(2 * time.Hour)}}
	a, text := generate(t, h, Options{Namespace: "default"})
	mustContain(t, text, "connaudit.io/trail-gaps: '1: 12 records lost (ring_buffer) on node node-a, 2026-11-24T10:00:00Z to 2026-11-24T11:00:00Z'",
		"# WARNING: the trail had 1 gap(s) in the window")
	if len(a.Warnings) != 1 || !strings.Contains(a.Warnings[0], "may be incomplete") {
		t.Errorf("warnings %v", a.Warnings)
	}
}

func TestUnknownPeerKindDegrades(t *testing.T) {
	h := history(flow(myPod, Destination{Kind: "gateway", Address: addr("203.0.113.8"), Port: 9000}, "established", 1, t0))
	a, text := generate(t, h, Options{Namespace: "default"})
	mustContain(t, text, "cidr: 203.0.113.8/32", `peer kind "gateway" is not known`)
	if !allowed(t, objects(a), asEndpoint(myPod), outside("203.0.113.8"), 9000) {
		t.Errorf("unknown peer not allowed:\n%s", text)
	}
}

func TestNoHistory(t *testing.T) {
	h := history(flow(myPod, external("203.0.113.5", 80), "established", 3, t0))
	_, err := Generate(context.Background(), h, Options{Namespace: "shop"})
	if !errors.Is(err, ErrNoHistory) || !strings.Contains(err.Error(), `namespace "shop"`) {
		t.Fatalf("err = %v, want ErrNoHistory naming the namespace", err)
	}
	a, text := generate(t, h, Options{Namespace: "shop", AllowEmpty: true, Selector: labels.SelectorFromSet(labels.Set{"app": "x"})})
	if len(a.Policies) != 1 || a.Policies[0].NetworkPolicy.Spec.PodSelector.MatchLabels["app"] != "x" {
		t.Errorf("--allow-empty policy:\n%s", text)
	}
}

func TestDeterministic(t *testing.T) {
	var flows []Flow
	for i := range 40 {
		ip := netip.AddrFrom4([4]byte{203, 0, 113, byte(i % 7)})
		flows = append(flows, flow(webPod, Destination{Kind: trail.PeerExternal, Address: ip, Port: uint16(80 + i%3)}, "established", int64(i), t0.Add(time.Duration(i)*time.Minute)))
		flows = append(flows, flow(myPod, Destination{Kind: trail.PeerExternal, Address: ip, Port: 443}, "timeout", 1, t0))
	}
	_, want := generate(t, history(flows...), Options{Namespace: ns})
	for range 5 {
		rand.Shuffle(len(flows), func(i, j int) { flows[i], flows[j] = flows[j], flows[i] })
		if _, got := generate(t, history(flows...), Options{Namespace: ns}); got != want {
			t.Fatalf("output depends on the order of the flows:\n%s\n---- vs ----\n%s", got, want)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{}, "-n"},
		{Options{Namespace: ns, Workload: "web"}, "--workload"},
		{Options{Namespace: ns, AggregateV4: 33}, "--aggregate-cidr"},
		{Options{Namespace: ns, PolicyTypes: []networkingv1.PolicyType{"sideways"}}, "--policy-types"},
	} {
		if err := tc.opts.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want one naming %s", tc.opts, err, tc.want)
		}
	}
}

// A failed attempt says whether the advice allows it anyway.
func TestFailedAttemptVerdict(t *testing.T) {
	h := history(
		flow(webPod, external("203.0.113.5", 443), "established", 9, t0),
		flow(webPod, external("203.0.113.5", 443), "refused", 1, t0),
		flow(webPod, external("203.0.113.7", 443), "timeout", 2, t0),
		flow(webPod, external("203.0.113.7", 25), "refused", 3, t0),
	)
	_, text := generate(t, h, Options{Namespace: ns, AggregateV4: 24})
	mustContain(t, text,
		"# egress: refused 1 time to 203.0.113.5:443, allowed by a rule below",
		"# egress: timeout 2 times to 203.0.113.7:443, allowed by a rule below",
		"# egress: refused 3 times to 203.0.113.7:25, not allowed")
}

type listingCluster struct {
	fakeCluster
	pods map[string][]Pod // by namespace
}

func (c listingCluster) Pods(_ context.Context, namespace string, selector map[string]string) ([]Pod, error) {
	var out []Pod
	for _, p := range c.pods[namespace] {
		if subsetOf(selector, p.Labels) {
			out = append(out, p)
		}
	}
	return out, nil
}

// A workload that the records reach only through a Service gets its ingress
// from the Service's clients, on the target port.
func TestIngressThroughAService(t *testing.T) {
	cluster := listingCluster{
		fakeCluster: fakeCluster{services: map[string]*Service{ns + "/api": {Namespace: ns, Name: "api", Selector: map[string]string{"app": "api"},
			Ports: []ServicePort{{Port: 80, TargetPort: intstr.FromString("http")}}}}},
		pods: map[string][]Pod{ns: {{Name: "api-7c-aaaaa", WorkloadKind: "deployment", WorkloadName: "api",
			Labels: map[string]string{"app": "api", "pod-template-hash": "7c"}, IP: addr("198.51.100.30"), Ports: map[string]int32{"http": 8080}}}},
	}
	api := Destination{Kind: trail.PeerService, Namespace: ns, Name: "api", Address: addr("203.0.113.60"), Port: 80}
	a, text := generate(t, history(flow(webPod, api, "established", 4, t0)), Options{Namespace: ns, Cluster: cluster})
	if len(a.Policies) != 2 || a.Policies[0].NetworkPolicy.Name != "api-connaudit" {
		t.Fatalf("want api-connaudit and web-connaudit:\n%s", text)
	}
	apiPod := endpoint{namespace: ns, labels: map[string]string{"app": "api", "pod-template-hash": "8d"}, ports: map[string]int32{"http": 8080}, ip: addr("198.51.100.31")}
	other := endpoint{namespace: ns, labels: map[string]string{"app": "batch"}, ip: addr("198.51.100.40")}
	if !allowed(t, objects(a), asEndpoint(webPod), apiPod, 8080) || allowed(t, objects(a), other, apiPod, 8080) {
		t.Errorf("api's ingress should admit web only, on the target port:\n%s", text)
	}
	mustContain(t, text, "# Its pod api-7c-aaaaa was found as a backend of Service shop/api (the test's cluster).",
		"through Service shop/api port 80 (target port http")
}
