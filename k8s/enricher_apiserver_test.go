package k8s

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/connaudit/connaudit/internal/kubetest"
	"github.com/connaudit/connaudit/trail"
)

// These tests run the enricher against a real kube-apiserver and etcd. No
// kubelet or controller runs: the tests create Pods bound to a node and write
// their status as the kubelet would, and create the ReplicaSets and Jobs that
// controllers would.

const (
	testNode    = "node-a"
	serviceCIDR = "203.0.113.0/24"
	syncTimeout = 30 * time.Second
	// The informers retry with a backoff of up to 30s, so recovering from an
	// outage may take that long after the API server is back.
	recoverTimeout = 90 * time.Second
)

// api wraps a clientset with the object builders of these tests.
type api struct {
	t  *testing.T
	cs kubernetes.Interface
}

func (a api) ctx() context.Context { return a.t.Context() }

func (a api) namespace(name string) {
	a.t.Helper()
	if _, err := a.cs.CoreV1().Namespaces().Create(a.ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		a.t.Fatalf("create namespace %s: %v", name, err)
	}
}

func (a api) node(name string, addrs ...corev1.NodeAddress) *corev1.Node {
	a.t.Helper()
	n, err := a.cs.CoreV1().Nodes().Create(a.ctx(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		a.t.Fatalf("create node %s: %v", name, err)
	}
	n.Status.Addresses = addrs
	if n, err = a.cs.CoreV1().Nodes().UpdateStatus(a.ctx(), n, metav1.UpdateOptions{}); err != nil {
		a.t.Fatalf("update node %s status: %v", name, err)
	}
	return n
}

// pod creates pod and then writes its status, as the scheduler and the
// kubelet would.
func (a api) pod(pod *corev1.Pod, status corev1.PodStatus) *corev1.Pod {
	a.t.Helper()
	if len(pod.Spec.Containers) == 0 {
		pod.Spec.Containers = []corev1.Container{{Name: "main", Image: "registry.example/main:1"}}
	}
	p, err := a.cs.CoreV1().Pods(pod.Namespace).Create(a.ctx(), pod, metav1.CreateOptions{})
	if err != nil {
		a.t.Fatalf("create pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	if status.Phase == "" {
		status.Phase = corev1.PodRunning
	}
	p.Status = status
	if p, err = a.cs.CoreV1().Pods(p.Namespace).UpdateStatus(a.ctx(), p, metav1.UpdateOptions{}); err != nil {
		a.t.Fatalf("update pod %s/%s status: %v", pod.Namespace, pod.Name, err)
	}
	return p
}

func (a api) deletePod(p *corev1.Pod) {
	a.t.Helper()
	// Grace 0: no kubelet will confirm the containers stopped.
	if err := a.cs.CoreV1().Pods(p.Namespace).Delete(a.ctx(), p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))}); err != nil {
		a.t.Fatalf("delete pod %s/%s: %v", p.Namespace, p.Name, err)
	}
}

func running(name, id, image string) corev1.ContainerStatus {
	return corev1.ContainerStatus{
		Name: name, ContainerID: id, Image: image, ImageID: image + "@sha256:00", Ready: true,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
	}
}

func podIPs(ips ...string) []corev1.PodIP {
	out := make([]corev1.PodIP, len(ips))
	for i, ip := range ips {
		out[i] = corev1.PodIP{IP: ip}
	}
	return out
}

func controllerRef(apiVersion, kind, name string, uid types.UID) []metav1.OwnerReference {
	return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: ptr(true)}}
}

// runEnricher runs an enricher on the API server of rc until the test ends.
func runEnricher(t *testing.T, cfg Config, rc *rest.Config) (*Enricher, *logRecorder) {
	t.Helper()
	api, err := NewAPI(rc)
	if err != nil {
		t.Fatal(err)
	}
	rec := &logRecorder{t: t}
	e := NewEnricher(cfg, api, slog.New(rec))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("enricher log:\n%s", rec.dump())
		}
	})
	return e, rec
}

func waitSynced(t *testing.T, e *Enricher, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "caches synced", func() (bool, string) { return e.Synced(), "not synced" })
}

func TestEnricherAgainstAPIServer(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{ServiceCIDR: serviceCIDR})
	a := api{t: t, cs: c.Client()}
	ctx := t.Context()

	a.namespace("shop")
	a.namespace("kube-system-test")
	nodeA := a.node(testNode,
		corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "198.51.100.2"},
		corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "2001:db8::2"},
		corev1.NodeAddress{Type: corev1.NodeHostName, Address: testNode})
	a.node("node-b", corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "198.51.100.3"})

	// A Deployment, its ReplicaSet and a pod of it on this node.
	webLabels := map[string]string{"app": "web", "pod-template-hash": "5d8f9c7b6"}
	template := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: webLabels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/web:1.4"}}},
	}
	dep, err := a.cs.AppsV1().Deployments("shop").Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: template},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	rs, err := a.cs.AppsV1().ReplicaSets("shop").Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web-5d8f9c7b6", Namespace: "shop", Labels: webLabels,
			OwnerReferences: controllerRef("apps/v1", "Deployment", dep.Name, dep.UID)},
		Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: webLabels}, Template: template},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create replicaset: %v", err)
	}
	webApp := "containerd://" + hexID(1)
	webInit := "containerd://" + hexID(2)
	web := a.pod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-5d8f9c7b6-x7k2p", Namespace: "shop", Labels: webLabels,
			OwnerReferences: controllerRef("apps/v1", "ReplicaSet", rs.Name, rs.UID)},
		Spec: corev1.PodSpec{
			NodeName: testNode, ServiceAccountName: "web",
			InitContainers: []corev1.Container{{Name: "migrate", Image: "registry.example/migrate:7"}},
			Containers:     []corev1.Container{{Name: "app", Image: "registry.example/web:1.4"}},
		},
	}, corev1.PodStatus{
		PodIPs: podIPs("198.51.100.10", "2001:db8::10"),
		PodIP:  "198.51.100.10",
		InitContainerStatuses: []corev1.ContainerStatus{{Name: "migrate", ContainerID: webInit, Image: "registry.example/migrate:7", ImageID: "x",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}}}},
		ContainerStatuses: []corev1.ContainerStatus{running("app", webApp, "registry.example/web:1.4")},
	})
	// An ephemeral debug container, added as kubectl debug does.
	web.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
		Name: "debugger", Image: "registry.example/debug:1", TerminationMessagePolicy: corev1.TerminationMessageReadFile, ImagePullPolicy: corev1.PullIfNotPresent}}}
	if web, err = a.cs.CoreV1().Pods("shop").UpdateEphemeralContainers(ctx, web.Name, web, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("add ephemeral container: %v", err)
	}
	webDebug := "containerd://" + hexID(3)
	web.Status.EphemeralContainerStatuses = []corev1.ContainerStatus{running("debugger", webDebug, "registry.example/debug:1")}
	if web, err = a.cs.CoreV1().Pods("shop").UpdateStatus(ctx, web, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update ephemeral container status: %v", err)
	}

	// A hostNetwork DaemonSet pod, a static pod's mirror pod, and a CronJob's
	// pod on this node.
	agentID := "containerd://" + hexID(4)
	agent := a.pod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "agent-q4z9n", Namespace: "shop", Labels: map[string]string{"app": "agent"},
			OwnerReferences: controllerRef("apps/v1", "DaemonSet", "agent", "11111111-1111-4111-8111-111111111111")},
		Spec: corev1.PodSpec{NodeName: testNode, HostNetwork: true, Containers: []corev1.Container{{Name: "agent", Image: "registry.example/agent:3"}}},
	}, corev1.PodStatus{PodIPs: podIPs("198.51.100.2"), PodIP: "198.51.100.2",
		ContainerStatuses: []corev1.ContainerStatus{running("agent", agentID, "registry.example/agent:3")}})

	const staticHash = "6f1e2d3c4b5a69788796a5b4c3d2e1f0"
	staticID := "cri-o://" + hexID(5)
	static := a.pod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "proxy-" + testNode, Namespace: "kube-system-test", Labels: map[string]string{"component": "proxy"},
			Annotations: map[string]string{
				"kubernetes.io/config.mirror": staticHash, "kubernetes.io/config.hash": staticHash, "kubernetes.io/config.source": "file",
			},
			OwnerReferences: controllerRef("v1", "Node", testNode, nodeA.UID)},
		Spec: corev1.PodSpec{NodeName: testNode, Containers: []corev1.Container{{Name: "proxy", Image: "registry.example/proxy:1.37"}}},
	}, corev1.PodStatus{PodIPs: podIPs("198.51.100.40"), PodIP: "198.51.100.40",
		ContainerStatuses: []corev1.ContainerStatus{running("proxy", staticID, "registry.example/proxy:1.37")}})

	job, err := a.cs.BatchV1().Jobs("shop").Create(ctx, &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "report-29000000", Namespace: "shop",
			OwnerReferences: controllerRef("batch/v1", "CronJob", "report", "22222222-2222-4222-8222-222222222222")},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "report", Image: "registry.example/report:1"}}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create job: %v", err)
	}
	reportID := "containerd://" + hexID(6)
	report := a.pod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "report-29000000-m8w3d", Namespace: "shop", Labels: map[string]string{"job-name": job.Name},
			OwnerReferences: controllerRef("batch/v1", "Job", job.Name, job.UID)},
		Spec: corev1.PodSpec{NodeName: testNode, RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "report", Image: "registry.example/report:1"}}},
	}, corev1.PodStatus{PodIPs: podIPs("198.51.100.30"), PodIP: "198.51.100.30",
		ContainerStatuses: []corev1.ContainerStatus{running("report", reportID, "registry.example/report:1")}})

	// A StatefulSet's pod on another node: a peer only.
	db := a.pod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "db-0", Namespace: "shop", Labels: map[string]string{"app": "db"},
			OwnerReferences: controllerRef("apps/v1", "StatefulSet", "db", "33333333-3333-4333-8333-333333333333")},
		Spec: corev1.PodSpec{NodeName: "node-b"},
	}, corev1.PodStatus{PodIPs: podIPs("198.51.100.20"), PodIP: "198.51.100.20"})

	// Services: a ClusterIP one with an external IP, a LoadBalancer, a headless one.
	if _, err := a.cs.CoreV1().Services("shop").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: corev1.ServiceSpec{ClusterIP: "203.0.113.20", Selector: map[string]string{"app": "web"}, ExternalIPs: []string{"198.51.100.200"},
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create service: %v", err)
	}
	lb, err := a.cs.CoreV1().Services("shop").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: "shop"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "203.0.113.21", Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Port: 443, Protocol: corev1.ProtocolTCP}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create load balancer service: %v", err)
	}
	lb.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.201", IPMode: ptr(corev1.LoadBalancerIPModeVIP)}}
	if _, err := a.cs.CoreV1().Services("shop").UpdateStatus(ctx, lb, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update load balancer status: %v", err)
	}
	if _, err := a.cs.CoreV1().Services("shop").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop"},
		Spec:       corev1.ServiceSpec{ClusterIP: "None", Selector: map[string]string{"app": "db"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create headless service: %v", err)
	}

	e, rec := runEnricher(t, Config{Mode: ModeOn, NodeName: testNode, HoldTimeout: 2 * time.Second, DeletedPodGrace: 5 * time.Minute}, c.Config())
	// A second enricher with a short grace period, to see deleted pods go.
	const shortGrace = 3 * time.Second
	eShort, _ := runEnricher(t, Config{Mode: ModeOn, NodeName: testNode, DeletedPodGrace: shortGrace}, c.Config())
	waitSynced(t, e, syncTimeout)
	waitSynced(t, eShort, syncTimeout)
	if n := rec.count(slog.LevelWarn, ""); n != 0 {
		t.Errorf("%d warnings with a healthy API server:\n%s", n, rec.dump())
	}

	t.Run("source", func(t *testing.T) {
		now := time.Now()
		webBase := map[string]string{
			"k8s.namespace.name": "shop", "k8s.pod.name": web.Name, "k8s.pod.uid": string(web.UID),
			"k8s.pod.label.app": "web", "k8s.pod.label.pod-template-hash": "5d8f9c7b6",
			"k8s.deployment.name": "web", "k8s.replicaset.name": "web-5d8f9c7b6",
			"connaudit.k8s.service_account.name": "web",
		}
		with := func(base, extra map[string]string) map[string]string {
			m := map[string]string{}
			for _, src := range []map[string]string{base, extra} {
				for k, v := range src {
					m[k] = v
				}
			}
			return m
		}
		for _, tc := range []struct {
			name, uid, cid string
			want           map[string]string
		}{
			{"container", string(web.UID), trimRuntime(webApp), with(webBase, map[string]string{
				"k8s.container.name": "app", "container.id": hexID(1),
				"container.image.name": "registry.example/web", "container.image.tags": `["1.4"]`})},
			{"init container", string(web.UID), trimRuntime(webInit), with(webBase, map[string]string{
				"k8s.container.name": "migrate", "container.id": hexID(2),
				"container.image.name": "registry.example/migrate", "container.image.tags": `["7"]`})},
			{"ephemeral container", string(web.UID), trimRuntime(webDebug), with(webBase, map[string]string{
				"k8s.container.name": "debugger", "container.id": hexID(3),
				"container.image.name": "registry.example/debug", "container.image.tags": `["1"]`})},
			{"pod without container", string(web.UID), "", webBase},
			{"container not in status yet", string(web.UID), hexID(77), with(webBase, map[string]string{"container.id": hexID(77)})},
			{"hostNetwork pod", string(agent.UID), trimRuntime(agentID), map[string]string{
				"k8s.namespace.name": "shop", "k8s.pod.name": agent.Name, "k8s.pod.uid": string(agent.UID),
				"k8s.container.name": "agent", "container.id": hexID(4),
				"container.image.name": "registry.example/agent", "container.image.tags": `["3"]`,
				"k8s.pod.label.app": "agent", "k8s.daemonset.name": "agent",
				"connaudit.host_network": "true"}}, // no ServiceAccount: its admission plugin is off
			{"static pod by its hash", staticHash, trimRuntime(staticID), map[string]string{
				"k8s.namespace.name": "kube-system-test", "k8s.pod.name": static.Name, "k8s.pod.uid": string(static.UID),
				"k8s.container.name": "proxy", "container.id": hexID(5),
				"container.image.name": "registry.example/proxy", "container.image.tags": `["1.37"]`,
				"k8s.pod.label.component": "proxy"}},
			{"cronjob pod", string(report.UID), trimRuntime(reportID), map[string]string{
				"k8s.namespace.name": "shop", "k8s.pod.name": report.Name, "k8s.pod.uid": string(report.UID),
				"k8s.container.name": "report", "container.id": hexID(6),
				"container.image.name": "registry.example/report", "container.image.tags": `["1"]`,
				"k8s.pod.label.job-name": job.Name, "k8s.job.name": job.Name, "k8s.cronjob.name": "report"}},
		} {
			w, st := e.Source(tc.uid, tc.cid, now)
			wantSt := SourceResolved
			if tc.name == "container not in status yet" {
				wantSt = SourceContainerPending // the pod, while the caller may wait for the name
			}
			if st != wantSt {
				t.Errorf("%s: status %v, want %v", tc.name, st, wantSt)
				continue
			}
			if d := diffAttrs(attrMap(t, w.Attrs), tc.want); d != "" {
				t.Errorf("%s: attributes:%s", tc.name, d)
			}
		}
		if w, _ := e.Source(string(agent.UID), "", now); !w.HostNetwork || w.Owner.Kind != "daemonset" {
			t.Errorf("hostNetwork pod: %+v", w)
		}
		if w, st := e.Source("", "", now); st != SourceHost || w != nil {
			t.Errorf("host process: %v, %v", w, st)
		}
		if _, st := e.Source("99999999-9999-4999-8999-999999999999", hexID(99), now); st != SourcePending {
			t.Errorf("unknown pod with a synced cache: %v, want pending", st)
		}
	})

	t.Run("peer", func(t *testing.T) {
		now := time.Now()
		webPeer := map[string]string{
			"connaudit.peer.kind": "pod", "connaudit.peer.k8s.namespace.name": "shop", "connaudit.peer.k8s.pod.name": web.Name,
			"connaudit.peer.k8s.workload.kind": "deployment", "connaudit.peer.k8s.workload.name": "web",
			"connaudit.peer.k8s.pod.label.app": "web", "connaudit.peer.k8s.pod.label.pod-template-hash": "5d8f9c7b6",
		}
		service := func(name string) map[string]string {
			return map[string]string{"connaudit.peer.kind": "service", "connaudit.peer.k8s.namespace.name": "shop", "connaudit.peer.k8s.service.name": name}
		}
		nodeAPeer := map[string]string{"connaudit.peer.kind": "node", "connaudit.peer.k8s.node.name": testNode}
		for _, tc := range []struct {
			addr string
			want map[string]string
		}{
			{"198.51.100.10", webPeer},
			{"2001:db8::10", webPeer},
			{"198.51.100.20", map[string]string{
				"connaudit.peer.kind": "pod", "connaudit.peer.k8s.namespace.name": "shop", "connaudit.peer.k8s.pod.name": "db-0",
				"connaudit.peer.k8s.workload.kind": "statefulset", "connaudit.peer.k8s.workload.name": "db",
				"connaudit.peer.k8s.pod.label.app": "db"}},
			{"198.51.100.30", map[string]string{
				"connaudit.peer.kind": "pod", "connaudit.peer.k8s.namespace.name": "shop", "connaudit.peer.k8s.pod.name": report.Name,
				"connaudit.peer.k8s.workload.kind": "cronjob", "connaudit.peer.k8s.workload.name": "report",
				"connaudit.peer.k8s.pod.label.job-name": job.Name}},
			{"198.51.100.40", map[string]string{
				"connaudit.peer.kind": "pod", "connaudit.peer.k8s.namespace.name": "kube-system-test", "connaudit.peer.k8s.pod.name": static.Name,
				"connaudit.peer.k8s.pod.label.component": "proxy"}},
			{"203.0.113.20", service("web")},
			{"198.51.100.200", service("web")},
			{"203.0.113.21", service("edge")},
			{"198.51.100.201", service("edge")},
			{"198.51.100.2", nodeAPeer}, // also the hostNetwork pod's IP
			{"2001:db8::2", nodeAPeer},
			{"198.51.100.3", map[string]string{"connaudit.peer.kind": "node", "connaudit.peer.k8s.node.name": "node-b"}},
			{"127.0.0.1", map[string]string{"connaudit.peer.kind": "loopback"}},
			{"::1", map[string]string{"connaudit.peer.kind": "loopback"}},
			{"198.51.100.99", map[string]string{"connaudit.peer.kind": "external"}},
		} {
			p := e.Peer(netip.MustParseAddr(tc.addr), now)
			if d := diffAttrs(attrMap(t, p.Attrs), tc.want); d != "" {
				t.Errorf("Peer(%s):%s", tc.addr, d)
			}
		}
		if p := e.Peer(netip.MustParseAddr("198.51.100.10"), now); p.WorkloadKind != "deployment" || p.WorkloadName != "web" || p.Namespace != "shop" {
			t.Errorf("pod peer fields: %+v", p)
		}
		// The cluster-wide cache holds peerPods (280 bytes each), not Pods
		// (1,240 bytes each before any field is set), however the informer
		// received them (streamed or listed).
		for _, obj := range e.inf.pods.informer.GetStore().List() {
			if _, ok := obj.(*peerPod); !ok {
				t.Errorf("the cluster-wide pod cache holds a %T", obj)
			}
		}
	})

	t.Run("label change", func(t *testing.T) {
		before, _ := e.Source(string(web.UID), hexID(1), time.Now())
		p, err := a.cs.CoreV1().Pods("shop").Get(ctx, web.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Labels["release"] = "canary"
		if _, err := a.cs.CoreV1().Pods("shop").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("update labels: %v", err)
		}
		waitFor(t, syncTimeout, "label change in Source", func() (bool, string) {
			w, _ := e.Source(string(web.UID), hexID(1), time.Now())
			return attrMap(t, w.Attrs)["k8s.pod.label.release"] == "canary", "labels " + mapString(w.Labels)
		})
		after, _ := e.Source(string(web.UID), hexID(1), time.Now())
		if after == before {
			t.Errorf("the snapshot kept its pointer across a label change")
		}
		if before.Labels["release"] != "" {
			t.Errorf("the old snapshot changed")
		}
		waitFor(t, syncTimeout, "label change in Peer", func() (bool, string) {
			peer := e.Peer(netip.MustParseAddr("198.51.100.10"), time.Now())
			return attrMap(t, peer.Attrs)["connaudit.peer.k8s.pod.label.release"] == "canary", "labels " + mapString(peer.Labels)
		})
	})

	t.Run("deleted pod", func(t *testing.T) {
		uid, cid := string(report.UID), hexID(6)
		a.deletePod(report)
		// An event far in the future tells whether the deletion was seen:
		// a live pod resolves then, a deleted one not.
		for _, en := range []*Enricher{e, eShort} {
			waitFor(t, syncTimeout, "deletion seen", func() (bool, string) {
				_, st := en.Source(uid, cid, time.Now().Add(time.Hour))
				return st != SourceResolved, "still live"
			})
		}
		if w, st := e.Source(uid, cid, time.Now()); st != SourceResolved || w.PodName != report.Name {
			t.Errorf("deleted pod within its grace period: %v, %v", w, st)
		}
		if p := e.Peer(netip.MustParseAddr("198.51.100.30"), time.Now().Add(-shortGrace)); p.Name != report.Name {
			t.Errorf("deleted pod's IP before the deletion: %s %s", p.Kind, p.Name)
		}
		// With the short grace period it resolves a while, then no more.
		beforePurge := time.Now().Add(-time.Second)
		waitFor(t, 4*shortGrace, "deleted pod forgotten", func() (bool, string) {
			_, st := eShort.Source(uid, cid, time.Now())
			return st == SourcePending, "status " + st.String()
		})
		waitFor(t, 4*shortGrace, "deleted pod's IP forgotten", func() (bool, string) {
			p := eShort.Peer(netip.MustParseAddr("198.51.100.30"), beforePurge)
			return p.Kind == trail.PeerExternal, string(p.Kind) + " " + p.Name
		})
	})

	t.Run("IP reuse", func(t *testing.T) {
		ip := netip.MustParseAddr("198.51.100.20")
		whileDB := time.Now()
		a.deletePod(db)
		waitFor(t, syncTimeout, "IP released", func() (bool, string) {
			p := e.Peer(ip, time.Now())
			return p.Kind == trail.PeerExternal, string(p.Kind) + " " + p.Name
		})
		cache := a.pod(&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "cache-0", Namespace: "shop", Labels: map[string]string{"app": "cache"},
				OwnerReferences: controllerRef("apps/v1", "StatefulSet", "cache", "44444444-4444-4444-8444-444444444444")},
			Spec: corev1.PodSpec{NodeName: "node-b"},
		}, corev1.PodStatus{PodIPs: podIPs("198.51.100.20"), PodIP: "198.51.100.20"})
		waitFor(t, syncTimeout, "IP taken by the new pod", func() (bool, string) {
			p := e.Peer(ip, time.Now())
			return p.Name == cache.Name, string(p.Kind) + " " + p.Name
		})
		if p := e.Peer(ip, whileDB); p.Name != "db-0" || p.WorkloadName != "db" {
			t.Errorf("event while db-0 held the IP: %s %s", p.Kind, p.Name)
		}
		if p := e.Peer(ip, time.Now()); p.Name != "cache-0" || p.WorkloadName != "cache" {
			t.Errorf("event now: %s %s", p.Kind, p.Name)
		}
	})
}

func mapString(m map[string]string) string {
	var s []byte
	for k, v := range m {
		s = append(s, k+"="+v+" "...)
	}
	return string(s)
}

// TestEnricherAPIServerOutages starts the enricher while the API server is
// down, then stops the API server after the caches synced: capture is never
// blocked, lookups answer from the cache, and the enricher recovers by
// itself both times.
func TestEnricherAPIServerOutages(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{ServiceCIDR: serviceCIDR})
	a := api{t: t, cs: c.Client()}
	a.namespace("shop")
	first := a.pod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "first", Namespace: "shop", Labels: map[string]string{"app": "first"}},
		Spec:       corev1.PodSpec{NodeName: testNode},
	}, corev1.PodStatus{PodIPs: podIPs("198.51.100.50"), ContainerStatuses: []corev1.ContainerStatus{
		running("main", "containerd://"+hexID(50), "registry.example/main:1")}})
	firstIP := netip.MustParseAddr("198.51.100.50")

	c.StopAPIServer()
	e, rec := runEnricher(t, Config{Mode: ModeOn, NodeName: testNode, DeletedPodGrace: time.Minute}, c.Config())
	const unreachable, reachable = "API server unreachable", "API server reachable again"
	waitFor(t, syncTimeout, "outage warning", func() (bool, string) {
		return rec.count(slog.LevelWarn, unreachable) == 1, rec.dump()
	})
	if _, st := e.Source(string(first.UID), hexID(50), time.Now()); st != SourceUnavailable {
		t.Errorf("API server never reached: Source status %v, want unavailable", st)
	}
	if p := e.Peer(firstIP, time.Now()); p.Kind != trail.PeerUnknown {
		t.Errorf("API server never reached: peer %s, want unknown", p.Kind)
	}
	if e.Synced() {
		t.Errorf("synced without an API server")
	}

	c.StartAPIServer()
	waitFor(t, recoverTimeout, "resolved once the API server is up", func() (bool, string) {
		_, st := e.Source(string(first.UID), hexID(50), time.Now())
		return st == SourceResolved, "status " + st.String()
	})
	waitSynced(t, e, recoverTimeout)
	waitFor(t, recoverTimeout, "recovery logged", func() (bool, string) {
		return rec.count(slog.LevelInfo, reachable) == 1, rec.dump()
	})
	if p := e.Peer(firstIP, time.Now()); p.Kind != trail.PeerPod || p.Name != "first" {
		t.Errorf("after recovery: peer %s %s", p.Kind, p.Name)
	}

	// The API server goes away after the caches synced.
	c.StopAPIServer()
	waitFor(t, syncTimeout, "second outage warning", func() (bool, string) {
		return rec.count(slog.LevelWarn, unreachable) == 2, rec.dump()
	})
	if w, st := e.Source(string(first.UID), hexID(50), time.Now()); st != SourceResolved || w.PodName != "first" {
		t.Errorf("during the outage: %v, %v; want the cached pod", w, st)
	}
	if p := e.Peer(firstIP, time.Now()); p.Kind != trail.PeerPod {
		t.Errorf("during the outage: peer %s, want the cached pod", p.Kind)
	}
	if _, st := e.Source("99999999-9999-4999-8999-999999999999", "", time.Now()); st != SourceUnavailable {
		t.Errorf("unknown pod during the outage: %v, want unavailable (holding it would not help)", st)
	}

	c.StartAPIServer()
	second := a.pod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "second", Namespace: "shop"},
		Spec:       corev1.PodSpec{NodeName: testNode},
	}, corev1.PodStatus{PodIPs: podIPs("198.51.100.51"), ContainerStatuses: []corev1.ContainerStatus{
		running("main", "containerd://"+hexID(51), "registry.example/main:1")}})
	waitFor(t, recoverTimeout, "new pod resolved after the API server returned", func() (bool, string) {
		_, st := e.Source(string(second.UID), hexID(51), time.Now())
		return st == SourceResolved, "status " + st.String()
	})
	waitFor(t, recoverTimeout, "second recovery logged", func() (bool, string) {
		return rec.count(slog.LevelInfo, reachable) == 2, rec.dump()
	})
	if n := rec.count(slog.LevelWarn, unreachable); n != 2 {
		t.Errorf("%d outage warnings for two outages", n)
	}
}

// TestEnricherForbidden runs the enricher as a user without RBAC permissions:
// its warning says that the API server refuses it, and the API server's
// answer, decoded from its Status, names the verb and resource missing.
func TestEnricherForbidden(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{ServiceCIDR: serviceCIDR})
	rc := c.Config()
	const user = "system:serviceaccount:connaudit:no-rbac"
	rc.Impersonate = rest.ImpersonationConfig{UserName: user}
	_, rec := runEnricher(t, Config{Mode: ModeOn, NodeName: testNode, DeletedPodGrace: time.Minute}, rc)
	waitFor(t, syncTimeout, "forbidden warning", func() (bool, string) {
		return rec.count(slog.LevelWarn, "refuses the agent's requests (check its credentials and RBAC)") == 1, rec.dump()
	})
	log := rec.dump()
	if !strings.Contains(log, `User \"`+user+`\" cannot`) || !strings.Contains(log, `resource \"`) {
		t.Errorf("the warning does not name the user, verb and resource refused:\n%s", log)
	}
}
