package kube

import (
	"bytes"
	"net/netip"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/connaudit/connaudit/advise"
	"github.com/connaudit/connaudit/advise/check"
	"github.com/connaudit/connaudit/internal/kubetest"
	"github.com/connaudit/connaudit/trail"
)

var t0 = time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// world is a real API server holding the objects the advisor asks about.
func world(t *testing.T) (kubernetes.Interface, Cluster) {
	c := kubetest.Start(t, kubetest.Options{}).Client()
	ctx := t.Context()
	for _, ns := range []string{"shop", "payments"} {
		must[*corev1.Namespace](t)(c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}))
	}
	node := must[*corev1.Node](t)(c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-c"}}, metav1.CreateOptions{}))
	node.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeHostName, Address: "node-c"},
		{Type: corev1.NodeInternalIP, Address: "2001:db8:1::4"},
		{Type: corev1.NodeInternalIP, Address: "198.51.100.4"},
		{Type: corev1.NodeExternalIP, Address: "203.0.113.200"},
	}
	must[*corev1.Node](t)(c.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}))
	must[*corev1.Service](t)(c.CoreV1().Services("shop").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "api"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "api"}, Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromString("http")},
			{Name: "admin", Port: 9000, TargetPort: intstr.FromInt32(19000)},
		}},
	}, metav1.CreateOptions{}))
	must[*corev1.Service](t)(c.CoreV1().Services("shop").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "legacy"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "db", Port: 3306}}},
	}, metav1.CreateOptions{}))
	must[*discoveryv1.EndpointSlice](t)(c.DiscoveryV1().EndpointSlices("shop").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "legacy-1", Labels: map[string]string{discoveryv1.LabelServiceName: "legacy"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"203.0.113.91"}}, {Addresses: []string{"203.0.113.90"}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("db"), Port: ptr.To[int32](13306), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}, metav1.CreateOptions{}))
	pod := must[*corev1.Pod](t)(c.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "api-0", Labels: map[string]string{"app": "api", "tier": "be"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "api", Image: "registry.example/api:1",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
	}, metav1.CreateOptions{}))
	pod.Status.Phase, pod.Status.PodIP = corev1.PodRunning, "198.51.100.30"
	pod.Status.PodIPs = []corev1.PodIP{{IP: "198.51.100.30"}}
	must[*corev1.Pod](t)(c.CoreV1().Pods("shop").UpdateStatus(ctx, pod, metav1.UpdateOptions{}))
	return c, Cluster{Client: c}
}

func TestClusterAnswersFromTheAPIServer(t *testing.T) {
	_, cl := world(t)
	ctx := t.Context()
	api := must[*advise.Service](t)(cl.Service(ctx, "shop", "api"))
	if _, target, ok := api.Backend(80); !ok || target != intstr.FromString("http") {
		t.Errorf("api port 80 -> %v, %v; want the named target port http", target, ok)
	}
	if _, target, ok := api.Backend(9000); !ok || target != intstr.FromInt32(19000) {
		t.Errorf("api port 9000 -> %v, %v; want 19000", target, ok)
	}
	legacy := must[*advise.Service](t)(cl.Service(ctx, "shop", "legacy"))
	if len(legacy.Selector) != 0 || !slices.Equal(legacy.Endpoints, []netip.Addr{netip.MustParseAddr("203.0.113.90"), netip.MustParseAddr("203.0.113.91")}) ||
		legacy.EndpointPorts["db"] != 13306 {
		t.Errorf("legacy: %+v", legacy)
	}
	if s := must[*advise.Service](t)(cl.Service(ctx, "shop", "missing")); s != nil {
		t.Errorf("a missing Service resolved to %+v", s)
	}
	addrs := must[[]netip.Addr](t)(cl.NodeAddresses(ctx, "node-c"))
	if !slices.Equal(addrs, []netip.Addr{netip.MustParseAddr("198.51.100.4"), netip.MustParseAddr("2001:db8:1::4")}) {
		t.Errorf("node-c addresses %v, want its internal IPs", addrs)
	}
	// A Deployment's pod is named by its Deployment, through its ReplicaSet.
	yes := true
	rs := must[*appsv1.ReplicaSet](t)(cl.Client.AppsV1().ReplicaSets("shop").Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "search-6f", OwnerReferences: []metav1.OwnerReference{
			{APIVersion: "apps/v1", Kind: "Deployment", Name: "search", UID: "0b9d7e2a-5c4f-4a1e-8f3d-7c6b5a4e3d2f", Controller: &yes}}},
		Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "search"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "search"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "search", Image: "registry.example/search:1"}}}}},
	}, metav1.CreateOptions{}))
	search := must[*corev1.Pod](t)(cl.Client.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "search-6f-x7k2p", Labels: map[string]string{"app": "search", "pod-template-hash": "6f"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: &yes}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "search", Image: "registry.example/search:1"}}},
	}, metav1.CreateOptions{}))
	search.Status.Phase = corev1.PodRunning
	must[*corev1.Pod](t)(cl.Client.CoreV1().Pods("shop").UpdateStatus(ctx, search, metav1.UpdateOptions{}))
	if got := must[[]advise.Pod](t)(cl.Pods(ctx, "shop", map[string]string{"app": "search"})); len(got) != 1 ||
		got[0].WorkloadKind != "deployment" || got[0].WorkloadName != "search" {
		t.Errorf("search pods %+v, want one of deployment search", got)
	}

	pods := must[[]advise.Pod](t)(cl.Pods(ctx, "shop", map[string]string{"app": "api"}))
	if len(pods) != 1 || pods[0].Ports["http"] != 8080 || pods[0].IP.String() != "198.51.100.30" || pods[0].Name != "api-0" || pods[0].WorkloadKind != "" {
		t.Errorf("api pods %+v", pods)
	}
}

// Every scenario's policies are accepted by the real API server: a server
// dry run, then a real create, and they read back as generated.
func TestAPIServerAcceptsTheAdvice(t *testing.T) {
	c, cl := world(t)
	ctx := t.Context()
	web := advise.Source{Kind: trail.SourcePod, Namespace: "shop", Pod: "web-5d4f8b7c9-x7k2p", WorkloadKind: "deployment", WorkloadName: "web",
		Labels: map[string]string{"app": "web", "pod-template-hash": "5d4f8b7c9"}, Node: "node-a", Address: netip.MustParseAddr("198.51.100.2")}
	hostNet := advise.Source{Kind: trail.SourcePod, Namespace: "kube-system", Pod: "exporter-x", WorkloadKind: "daemonset", WorkloadName: "exporter",
		Labels: map[string]string{"app": "exporter"}, HostNetwork: true, Node: "node-b", Address: netip.MustParseAddr("198.51.100.3")}
	host := advise.Source{Kind: trail.SourceHost, Node: "node-c"}
	db := advise.Destination{Kind: trail.PeerPod, Namespace: "shop", Name: "db-0", WorkloadKind: "statefulset", WorkloadName: "db",
		Labels: map[string]string{"app": "db", "statefulset.kubernetes.io/pod-name": "db-0"}, Address: netip.MustParseAddr("203.0.113.50"), Port: 5432}
	pay := advise.Destination{Kind: trail.PeerPod, Namespace: "payments", Name: "pay-1", WorkloadKind: "deployment", WorkloadName: "pay",
		Labels: map[string]string{"app": "pay"}, Address: netip.MustParseAddr("203.0.113.51"), Port: 8443}
	svc := func(name string, port uint16) advise.Destination {
		return advise.Destination{Kind: trail.PeerService, Namespace: "shop", Name: name, Address: netip.MustParseAddr("203.0.113.60"), Port: port}
	}
	ext := func(ip string, port uint16) advise.Destination {
		return advise.Destination{Kind: trail.PeerExternal, Address: netip.MustParseAddr(ip), Port: port}
	}
	flow := func(s advise.Source, d advise.Destination, outcome string) advise.Flow {
		return advise.Flow{Source: s, Destination: d, Outcome: outcome, Count: 3, First: t0, Last: t0.Add(time.Hour)}
	}
	h := advise.History{From: t0, To: t0.Add(24 * time.Hour), Query: "connaudit advise networkpolicy -n shop", Flows: []advise.Flow{
		flow(web, db, "established"), flow(web, pay, "established"), flow(web, svc("api", 80), "established"),
		flow(web, svc("api", 9000), "established"), flow(web, svc("legacy", 3306), "established"),
		flow(web, svc("gone", 443), "established"), flow(web, ext("2001:db8:2::5", 443), "established"),
		flow(web, ext("203.0.113.5", 80), "established"), flow(web, ext("203.0.113.6", 80), "timeout"),
		flow(web, advise.Destination{Kind: "gateway", Address: netip.MustParseAddr("203.0.113.8"), Port: 9000}, "established"),
		flow(hostNet, db, "established"), flow(host, db, "established"),
	}, Gaps: []advise.Gap{{Node: "node-a", Reason: "loss: ring_buffer", Count: 4, First: t0, Last: t0.Add(time.Minute)}}}

	for _, opts := range []advise.Options{
		{Namespace: "shop", Cluster: cl},
		{Namespace: "shop", Cluster: cl, AggregateV4: 24, AggregateV6: 64, NoDNS: true},
	} {
		a, err := advise.Generate(ctx, h, opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Policies) != 3 {
			t.Fatalf("%d policies, want web's, db's and api-0's (a backend of Service api)", len(a.Policies))
		}
		var buf bytes.Buffer
		if err := advise.Render(&buf, a.Policies); err != nil {
			t.Fatal(err)
		}
		// What is applied is the YAML, not the objects.
		parsed, _, err := check.Load([]string{"-"}, &buf, "")
		if err != nil {
			t.Fatal(err)
		}
		for i, np := range parsed {
			api := c.NetworkingV1().NetworkPolicies(np.Namespace)
			if _, err := api.Create(ctx, np.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
				t.Fatalf("server dry run of %s: %v\n%s", np.Name, err, buf.String())
			}
			created, err := api.Create(ctx, np.DeepCopy(), metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("create %s: %v", np.Name, err)
			}
			if !apiequality.Semantic.DeepEqual(created.Spec, a.Policies[i].NetworkPolicy.Spec) {
				t.Errorf("%s reads back as\n%+v\nwant\n%+v", np.Name, created.Spec, a.Policies[i].NetworkPolicy.Spec)
			}
			if created.Annotations[advise.AnnotationTrailGaps] == "none" {
				t.Errorf("%s: the loss record is not in the annotations: %v", np.Name, created.Annotations)
			}
			if err := api.Delete(ctx, np.Name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
}
