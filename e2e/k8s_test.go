package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/connaudit/connaudit/internal/kubetest"
	"github.com/connaudit/connaudit/internal/netnstest"
	"github.com/connaudit/connaudit/internal/teststack"
	"github.com/connaudit/connaudit/k8s/cgroup"
)

// Test hosts in the server namespace, registered in the API as a pod, a
// Service and a node. 203.0.113.1 belongs to the kubernetes Service.
var (
	dbPodIP      = netip.MustParseAddr("203.0.113.50")
	apiClusterIP = netip.MustParseAddr("203.0.113.60")
	peerNodeIP   = netip.MustParseAddr("203.0.113.70")
)

const (
	testNode = "test-node" // teststack.StartAgent's CONNAUDIT_NODE_NAME
	ns       = "shop"
)

// kubeWorld is a real API server holding a Deployment's pod on this node,
// whose container is a real cgroup and a network namespace.
type kubeWorld struct {
	cluster  *kubetest.Cluster
	client   kubernetes.Interface
	hosts    *netnstest.Hosts
	pod      *corev1.Pod
	cgroup   string // the container's cgroup directory
	replicas string // the ReplicaSet's name
}

func randomHex(n int) string {
	b := make([]byte, n/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newKubeWorld(t *testing.T) *kubeWorld {
	t.Helper()
	w := &kubeWorld{cluster: kubetest.Start(t, kubetest.Options{ServiceCIDR: "203.0.113.0/24"})}
	w.client = w.cluster.Client()
	w.hosts = netnstest.New(t)
	for _, a := range []netip.Addr{dbPodIP, apiClusterIP, peerNodeIP} {
		w.hosts.AddHost(t, a)
	}
	for _, port := range []int{5432, 80, 10250} {
		w.hosts.Server.Listen(t, "tcp4", fmt.Sprintf("0.0.0.0:%d", port))
	}

	ctx := t.Context()
	c := w.client
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}))
	for name, ip := range map[string]netip.Addr{testNode: netip.MustParseAddr("198.51.100.3"), "peer-node": peerNodeIP} {
		node, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		must(node, err)
		node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip.String()}}
		must(c.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}))
	}

	dep, err := c.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/web:1.0"}}},
			},
		},
	}, metav1.CreateOptions{})
	must(dep, err)
	hash := "5d4f8b7c9"
	w.replicas = "web-" + hash
	rs, err := c.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: w.replicas, OwnerReferences: []metav1.OwnerReference{owner("apps/v1", "Deployment", dep.Name, dep.UID)}},
		Spec: appsv1.ReplicaSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: dep.Spec.Template,
		},
	}, metav1.CreateOptions{})
	must(rs, err)

	containerID := randomHex(64)
	w.pod = createPod(t, c, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:            w.replicas + "-x7k2p",
			Labels:          map[string]string{"app": "web", "tier": "frontend", "pod-template-hash": hash},
			OwnerReferences: []metav1.OwnerReference{owner("apps/v1", "ReplicaSet", rs.Name, rs.UID)},
		},
		Spec: corev1.PodSpec{NodeName: testNode, ServiceAccountName: "web-sa",
			Containers: []corev1.Container{{Name: "app", Image: "registry.example/web:1.0"}}},
	}, netnstest.ClientV4, map[string]string{"app": "containerd://" + containerID})

	createPod(t, c, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "db-0", Labels: map[string]string{"app": "db"},
			OwnerReferences: []metav1.OwnerReference{owner("apps/v1", "StatefulSet", "db", types.UID(randomHex(32)))}},
		Spec: corev1.PodSpec{NodeName: "peer-node", Containers: []corev1.Container{{Name: "postgres", Image: "postgres:17"}}},
	}, dbPodIP, nil)

	must(c.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "api"},
		Spec:       corev1.ServiceSpec{ClusterIP: apiClusterIP.String(), Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{}))

	w.cgroup = podCgroup(t, string(w.pod.UID), containerID)
	return w
}

func owner(apiVersion, kind, name string, uid types.UID) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: &yes}
}

// createPod creates a running pod with its IP and container ids, as a kubelet would report them.
func createPod(t *testing.T, c kubernetes.Interface, pod *corev1.Pod, ip netip.Addr, containerIDs map[string]string) *corev1.Pod {
	t.Helper()
	ctx := t.Context()
	pod.Namespace = ns
	created, err := c.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status.Phase = corev1.PodRunning
	created.Status.PodIP = ip.String()
	created.Status.PodIPs = []corev1.PodIP{{IP: ip.String()}}
	for _, ctr := range created.Spec.Containers {
		created.Status.ContainerStatuses = append(created.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: ctr.Name, Image: ctr.Image, ContainerID: containerIDs[ctr.Name], Ready: true,
		})
	}
	updated, err := c.CoreV1().Pods(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return updated
}

// podCgroup creates the kubelet's systemd-driver cgroup of a besteffort
// containerd container and removes it when the test ends.
func podCgroup(t *testing.T, podUID, containerID string) string {
	t.Helper()
	root, err := cgroup.FindV2Mount()
	if err != nil {
		t.Fatal(err)
	}
	uid := strings.ReplaceAll(podUID, "-", "_")
	dirs := []string{
		"kubepods.slice",
		"kubepods-besteffort.slice",
		"kubepods-besteffort-pod" + uid + ".slice",
		"cri-containerd-" + containerID + ".scope",
	}
	path := root
	for _, d := range dirs {
		path = filepath.Join(path, d)
		if err := os.Mkdir(path, 0o755); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
		created := path
		t.Cleanup(func() { _ = os.Remove(created) }) // leaf first: cleanups run in reverse
	}
	return path
}

// connectFromPod runs bash in the pod's cgroup and network namespace, and
// connects to each address in turn.
func (w *kubeWorld) connectFromPod(t *testing.T, addrs ...netip.AddrPort) {
	t.Helper()
	dir, err := os.Open(w.cgroup)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	var script []string
	for i, a := range addrs {
		script = append(script, fmt.Sprintf("exec %d<>/dev/tcp/%s/%d", i+3, a.Addr(), a.Port()))
	}
	cmd := w.hosts.Client.Command("/bin/bash", "-c", strings.Join(script, "; "))
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("connect from the pod: %v: %s", err, out)
	}
}

func startKubeAgent(t *testing.T, w *kubeWorld, env ...string) *stack {
	t.Helper()
	return startStack(t, append([]string{
		"CONNAUDIT_KUBERNETES=on",
		"KUBECONFIG=" + w.cluster.Kubeconfig(),
		"CONNAUDIT_K8S_DELETED_POD_GRACE=5m",
	}, env...)...)
}

func assertFields(t *testing.T, what string, row map[string]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if row[k] != v {
			t.Errorf("%s: %s = %q, want %q", what, k, row[k], v)
		}
	}
}

// waitForRecord repeats connect until a record matching query appears.
func waitForRecord(t *testing.T, vl *teststack.VictoriaLogs, query string, connect func()) map[string]string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		connect()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		rows, err := vl.Query(ctx, query)
		cancel()
		if err == nil && len(rows) > 0 {
			return rows[0]
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("no record matches %s within a minute", query)
	return nil
}

func TestKubernetesIdentityOnBothEnds(t *testing.T) {
	w := newKubeWorld(t)
	const deletedPodGrace = 15 * time.Second
	s := startKubeAgent(t, w, "CONNAUDIT_K8S_DELETED_POD_GRACE="+deletedPodGrace.String())
	pod := w.pod.Name
	db := netip.AddrPortFrom(dbPodIP, 5432)
	api := netip.AddrPortFrom(apiClusterIP, 80)
	node := netip.AddrPortFrom(peerNodeIP, 10250)
	w.connectFromPod(t, db, api, node)

	source := map[string]string{
		"k8s.namespace.name":      ns,
		"k8s.pod.name":            pod,
		"k8s.pod.uid":             string(w.pod.UID),
		"k8s.container.name":      "app",
		"container.id":            strings.TrimPrefix(w.pod.Status.ContainerStatuses[0].ContainerID, "containerd://"),
		"k8s.pod.label.app":       "web",
		"k8s.pod.label.tier":      "frontend",
		"k8s.replicaset.name":     w.replicas,
		"k8s.deployment.name":     "web",
		"k8s.node.name":           testNode,
		"connaudit.source.kind":   "pod",
		"process.executable.name": "bash",
	}
	for _, tc := range []struct {
		peer netip.AddrPort
		want map[string]string
	}{
		{db, map[string]string{"connaudit.peer.kind": "pod", "connaudit.peer.k8s.namespace.name": ns, "connaudit.peer.k8s.pod.name": "db-0",
			"connaudit.peer.k8s.workload.kind": "statefulset", "connaudit.peer.k8s.workload.name": "db", "connaudit.peer.k8s.pod.label.app": "db"}},
		{api, map[string]string{"connaudit.peer.kind": "service", "connaudit.peer.k8s.namespace.name": ns, "connaudit.peer.k8s.service.name": "api"}},
		{node, map[string]string{"connaudit.peer.kind": "node", "connaudit.peer.k8s.node.name": "peer-node"}},
	} {
		q := fmt.Sprintf(`event_name:="tcp.connect" k8s.pod.name:=%q network.peer.address:=%q network.peer.port:=%d`, pod, tc.peer.Addr(), tc.peer.Port())
		row := s.vl.WaitFor(t, q, 1, time.Minute)[0]
		assertFields(t, tc.peer.String(), row, source)
		assertFields(t, tc.peer.String(), row, tc.want)
		if !strings.Contains(row["_stream"], `k8s.pod.name="`+pod+`"`) {
			t.Errorf("the pod is not part of the record's resource (VictoriaLogs stream %s)", row["_stream"])
		}
	}

	// A host process: the node's resource, marked as host.
	local := listen(t, "tcp4", "127.0.0.1:0")
	hostConn, err := net.Dial("tcp4", local.String())
	if err != nil {
		t.Fatal(err)
	}
	hostConn.Close()
	host := s.vl.WaitFor(t, fmt.Sprintf(`event_name:="tcp.connect" network.peer.port:=%d`, local.Port), 1, time.Minute)[0]
	assertFields(t, "host process", host, map[string]string{"connaudit.source.kind": "host", "connaudit.peer.kind": "loopback", "k8s.node.name": testNode})
	if host["k8s.pod.name"] != "" {
		t.Errorf("host process carries pod %q", host["k8s.pod.name"])
	}

	// Labels are those of the event's time.
	ctx := t.Context()
	patch := []byte(`{"metadata":{"labels":{"tier":"backend"}}}`)
	if _, err := w.client.CoreV1().Pods(ns).Patch(ctx, pod, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForRecord(t, s.vl, fmt.Sprintf(`event_name:="tcp.connect" k8s.pod.name:=%q k8s.pod.label.tier:="backend"`, pod),
		func() { w.connectFromPod(t, db) })

	// A pod with 2,000 more labels: its connects still reach the trail (a
	// record of more than 1,000 fields would be dropped by VictoriaLogs with
	// a 200), with the first 64 labels in key order and the others counted.
	many := map[string]string{}
	for i := range 2000 {
		many[fmt.Sprintf("x%04d", i)] = "y"
	}
	manyPatch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": many}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.client.CoreV1().Pods(ns).Patch(ctx, pod, types.StrategicMergePatchType, manyPatch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	labelled := waitForRecord(t, s.vl, fmt.Sprintf(`event_name:="tcp.connect" k8s.pod.name:=%q connaudit.k8s.pod.labels.dropped:=1939`, pod),
		func() { w.connectFromPod(t, db) })
	assertFields(t, "pod with 2,003 labels", labelled, map[string]string{"k8s.pod.label.app": "web", "k8s.pod.label.x0060": "y",
		"k8s.pod.label.x0061": "", "connaudit.peer.k8s.pod.name": "db-0"})

	// A deleted pod still resolves within the grace period, and no longer
	// after it. Grace 0 removes it from the API server at once: with no
	// kubelet, a graceful deletion would leave it Terminating for ever.
	zero := int64(0)
	if err := w.client.CoreV1().Pods(ns).Delete(ctx, pod, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("pod still in the API server after a deletion with grace 0: %v", err)
	}
	deleted := time.Now()
	time.Sleep(time.Second) // let the agent's informer see the deletion before the connect
	w.connectFromPod(t, api)
	rows := s.vl.WaitFor(t, fmt.Sprintf(`event_name:="tcp.connect" k8s.pod.name:=%q network.peer.address:=%q`, pod, api.Addr()), 2, time.Minute)
	if len(rows) < 2 {
		t.Errorf("the connect after deletion did not resolve to the pod")
	}
	time.Sleep(time.Until(deleted.Add(deletedPodGrace + time.Second)))
	after := waitForRecord(t, s.vl, fmt.Sprintf(`event_name:="tcp.connect" k8s.pod.uid:=%q connaudit.k8s.enrichment:="pending_timeout" network.peer.address:=%q`, w.pod.UID, api.Addr()),
		func() { w.connectFromPod(t, api) })
	if after["k8s.pod.name"] != "" {
		t.Errorf("a connect after the grace period still resolves to the deleted pod: %v", after)
	}
}

// Records keep flowing while the API server is away: unenriched and marked
// while it was never reached, enriched once it is back, and enriched from the
// caches when it goes away again. The agent never restarts for it.
func TestKubernetesAPIServerOutage(t *testing.T) {
	w := newKubeWorld(t)
	w.cluster.StopAPIServer()
	s := startKubeAgent(t, w)
	db := netip.AddrPortFrom(dbPodIP, 5432)

	row := waitForRecord(t, s.vl, fmt.Sprintf(`event_name:="tcp.connect" network.peer.address:=%q connaudit.k8s.enrichment:="unavailable"`, db.Addr()),
		func() { w.connectFromPod(t, db) })
	if row["k8s.pod.name"] != "" {
		t.Errorf("enriched while the API server was never reachable: %v", row)
	}
	assertFields(t, "unenriched", row, map[string]string{"k8s.node.name": testNode, "process.executable.name": "bash"})

	w.cluster.StartAPIServer()
	enriched := fmt.Sprintf(`event_name:="tcp.connect" network.peer.address:=%q k8s.pod.name:=%q connaudit.peer.k8s.pod.name:="db-0"`, db.Addr(), w.pod.Name)
	waitForRecord(t, s.vl, enriched, func() { w.connectFromPod(t, db) })

	// Once synced, an API server that goes away leaves the caches answering.
	w.cluster.StopAPIServer()
	before, err := s.vl.Query(t.Context(), enriched)
	if err != nil {
		t.Fatal(err)
	}
	w.connectFromPod(t, db)
	s.vl.WaitFor(t, enriched, len(before)+1, time.Minute)
	w.cluster.StartAPIServer()
	if !s.agent.Ready() {
		t.Error("agent not ready")
	}
}

// An event whose pod the agent's cache does not know yet waits for it, up
// to CONNAUDIT_K8S_HOLD_TIMEOUT; one whose pod never comes ships after it with
// what the cgroup told, marked.
func TestKubernetesEventWaitsForItsPod(t *testing.T) {
	w := newKubeWorld(t)
	s := startKubeAgent(t, w, "CONNAUDIT_K8S_HOLD_TIMEOUT=5s")
	db := netip.AddrPortFrom(dbPodIP, 5432)
	// The agent's caches are synced once a record of the known pod is enriched.
	waitForRecord(t, s.vl, fmt.Sprintf(`event_name:="tcp.connect" k8s.pod.name:=%q`, w.pod.Name), func() { w.connectFromPod(t, db) })

	late := &kubeWorld{hosts: w.hosts, client: w.client}
	lateUID := types.UID("6a1f4c9e-0d3b-4e8a-9b7c-2f5e8d1a3c4b")
	lateContainer := randomHex(64)
	late.cgroup = podCgroup(t, string(lateUID), lateContainer)
	late.connectFromPod(t, db) // no pod in the API has this UID or container
	row := s.vl.WaitFor(t, fmt.Sprintf(`event_name:="tcp.connect" k8s.pod.uid:=%q`, lateUID), 1, time.Minute)[0]
	assertFields(t, "never-known pod", row, map[string]string{
		"connaudit.k8s.enrichment": "pending_timeout", "connaudit.source.kind": "pod", "k8s.node.name": testNode,
	})
	if row["k8s.pod.name"] != "" {
		t.Errorf("resolved to pod %q", row["k8s.pod.name"])
	}

	// A pod that reaches the API within the hold time. The API server picks
	// its own UID, so here the container id is what resolves it.
	next := &kubeWorld{hosts: w.hosts, client: w.client}
	nextContainer := randomHex(64)
	nextUID := types.UID("0b9d7e2a-5c4f-4a1e-8f3d-7c6b5a4e3d2f")
	next.cgroup = podCgroup(t, string(nextUID), nextContainer)
	next.connectFromPod(t, db)
	created := createPod(t, w.client, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "next-pod", Labels: map[string]string{"app": "next"}},
		Spec:       corev1.PodSpec{NodeName: testNode, Containers: []corev1.Container{{Name: "main", Image: "registry.example/next:3"}}},
	}, netip.MustParseAddr("198.51.100.21"), map[string]string{"main": "containerd://" + nextContainer})
	row = s.vl.WaitFor(t, `event_name:="tcp.connect" k8s.pod.name:="next-pod"`, 1, time.Minute)[0]
	assertFields(t, "held then resolved", row, map[string]string{"k8s.pod.uid": string(created.UID), "k8s.container.name": "main", "k8s.pod.label.app": "next"})
	if row["connaudit.k8s.enrichment"] != "" {
		t.Errorf("marked %q though its pod arrived in time", row["connaudit.k8s.enrichment"])
	}
}
