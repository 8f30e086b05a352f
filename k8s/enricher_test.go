package k8s

import (
	"net/netip"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/connaudit/connaudit/trail"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
)

// These tests feed the handlers directly; enricher_apiserver_test.go runs the
// same paths against a real API server.

// clock is a settable time source for the enricher.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestSourceAttributes(t *testing.T) {
	e := newTestEnricher(t, Config{NodeName: "node-a"})
	pod := genPod(7, "node-a")
	pod.Spec.ServiceAccountName = "web"
	pod.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox@sha256:0123"}}
	pod.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "init", ContainerID: "cri-o://" + hexID(100)}}
	pod.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "debian:13"}}}
	pod.Status.EphemeralContainerStatuses = []corev1.ContainerStatus{{Name: "debug", ContainerID: "docker://" + hexID(101)}}
	pod.Status.ContainerStatuses[0].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ContainerID: "containerd://" + hexID(102)}
	feedNodePod(t, e, pod)
	now := time.Now()

	base := map[string]string{
		"k8s.namespace.name":                 "ns7",
		"k8s.pod.name":                       pod.Name,
		"k8s.pod.uid":                        string(pod.UID),
		"k8s.pod.label.app":                  "app7",
		"k8s.pod.label.pod-template-hash":    "7d9f8c6b5",
		"k8s.pod.label.tier":                 "backend",
		"k8s.replicaset.name":                "app7-7d9f8c6b5",
		"connaudit.k8s.service_account.name": "web",
	}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		name, cid string
		want      map[string]string
	}{
		{"container", hexID(14), with(map[string]string{
			"k8s.container.name": "app", "container.id": hexID(14),
			"container.image.name": "registry.example/app", "container.image.tags": `["1.2.3"]`})},
		{"previous instance", hexID(102), with(map[string]string{
			"k8s.container.name": "app", "container.id": hexID(102),
			"container.image.name": "registry.example/app", "container.image.tags": `["1.2.3"]`})},
		{"init container", hexID(100), with(map[string]string{
			"k8s.container.name": "init", "container.id": hexID(100), "container.image.name": "busybox"})},
		{"ephemeral container", hexID(101), with(map[string]string{
			"k8s.container.name": "debug", "container.id": hexID(101),
			"container.image.name": "debian", "container.image.tags": `["13"]`})},
		{"pod only", "", base},
		// A container that started before the kubelet reported it: the
		// caller may wait for its name, or use the pod with its id.
		{"container not in status", hexID(999), with(map[string]string{"container.id": hexID(999)})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, st := e.Source(string(pod.UID), tc.cid, now)
			wantSt := SourceResolved
			if tc.name == "container not in status" {
				wantSt = SourceContainerPending
			}
			if st != wantSt {
				t.Fatalf("status %v, want %v", st, wantSt)
			}
			if d := diffAttrs(attrMap(t, w.Attrs), tc.want); d != "" {
				t.Errorf("attributes:%s", d)
			}
			if w.Owner != (Owner{Kind: "replicaset", Name: "app7-7d9f8c6b5", ReplicaSet: "app7-7d9f8c6b5"}) {
				t.Errorf("owner %+v", w.Owner)
			}
			// A second lookup returns the same snapshot.
			if w2, _ := e.Source(string(pod.UID), tc.cid, now); w2 != w {
				t.Errorf("second lookup returned another snapshot")
			}
		})
	}

	if w, st := e.Source("", hexID(14), now); st != SourceHost || w != nil {
		t.Errorf("no pod UID: %v %v, want host", w, st)
	}
	// Never run: the cache has not synced.
	if _, st := e.Source(string(podUID(12345)), "", now); st != SourceUnavailable {
		t.Errorf("unknown pod before sync: %v, want unavailable", st)
	}
	e.inf.nodePods.synced.Store(true)
	if _, st := e.Source(string(podUID(12345)), "", now); st != SourcePending {
		t.Errorf("unknown pod after sync: %v, want pending", st)
	}
	e.health.down.Store(true)
	if _, st := e.Source(string(podUID(12345)), "", now); st != SourceUnavailable {
		t.Errorf("unknown pod while the API server is unreachable: %v, want unavailable", st)
	}
}

func TestSourceOwnersAndUpdates(t *testing.T) {
	e := newTestEnricher(t, Config{NodeName: "node-a"})
	pod := genPod(3, "node-a")
	feedNodePod(t, e, pod)
	cid := hexID(6)
	w1, _ := e.Source(string(pod.UID), cid, time.Now())
	if w1.Owner.Kind != "replicaset" {
		t.Fatalf("owner before the ReplicaSet is known: %+v", w1.Owner)
	}

	// A status update that changes nothing we use keeps the snapshot.
	pod.Status.ContainerStatuses[0].RestartCount = 1
	feedNodePod(t, e, pod)
	if w, _ := e.Source(string(pod.UID), cid, time.Now()); w != w1 {
		t.Errorf("an irrelevant update replaced the snapshot")
	}

	// The ReplicaSet arrives: the pod now names its Deployment.
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "app3-7d9f8c6b5", Namespace: "ns3",
		OwnerReferences: []metav1.OwnerReference{{Kind: "Deployment", Name: "app3", Controller: ptr(true)}}}}
	slim, _ := slimOwned(rs)
	if err := e.inf.replicaSets.informer.GetStore().Add(slim); err != nil {
		t.Fatal(err)
	}
	if err := e.inf.nodePods.informer.GetIndexer().Add(mustSlim(t, slimNodePod, pod)); err != nil {
		t.Fatal(err)
	}
	e.onOwner("ReplicaSet", slim)
	w2, _ := e.Source(string(pod.UID), cid, time.Now())
	if w2 == w1 {
		t.Fatal("the ReplicaSet's arrival did not rebuild the pod")
	}
	if d := diffAttrs(attrMap(t, w2.Attrs), map[string]string{
		"k8s.namespace.name": "ns3", "k8s.pod.name": pod.Name, "k8s.pod.uid": string(pod.UID),
		"k8s.container.name": "app", "container.id": cid, "container.image.name": "registry.example/app", "container.image.tags": `["1.2.3"]`,
		"k8s.pod.label.app": "app3", "k8s.pod.label.pod-template-hash": "7d9f8c6b5", "k8s.pod.label.tier": "backend",
		"k8s.replicaset.name": "app3-7d9f8c6b5", "k8s.deployment.name": "app3",
		"connaudit.k8s.service_account.name": "default",
	}); d != "" {
		t.Errorf("attributes:%s", d)
	}

	// A label change makes a new snapshot with the new labels.
	pod.Labels = map[string]string{"app": "app3", "version": "2"}
	feedNodePod(t, e, pod)
	w3, _ := e.Source(string(pod.UID), cid, time.Now())
	if w3 == w2 || w3.Labels["version"] != "2" || attrMap(t, w3.Attrs)["k8s.pod.label.version"] != "2" {
		t.Errorf("label change not seen: %v", w3.Labels)
	}
	if _, ok := attrMap(t, w3.Attrs)["k8s.pod.label.tier"]; ok {
		t.Errorf("removed label still present")
	}
}

func mustSlim(t testing.TB, f func(any) (any, error), obj any) any {
	t.Helper()
	s, err := f(obj)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestOwnerKinds(t *testing.T) {
	jobs := &fakeStore{objs: map[string]any{
		"ns/nightly-29000000": &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "nightly-29000000", Namespace: "ns",
			OwnerReferences: []metav1.OwnerReference{{Kind: "CronJob", Name: "nightly", Controller: ptr(true)}}}},
	}}
	o := owners{jobs: jobs}
	for _, tc := range []struct {
		kind, name string
		want       Owner
		attrs      map[string]string
	}{
		{"StatefulSet", "db", Owner{Kind: "statefulset", Name: "db"}, map[string]string{"k8s.statefulset.name": "db"}},
		{"DaemonSet", "agent", Owner{Kind: "daemonset", Name: "agent"}, map[string]string{"k8s.daemonset.name": "agent"}},
		{"Job", "once", Owner{Kind: "job", Name: "once", Job: "once"}, map[string]string{"k8s.job.name": "once"}},
		{"Job", "nightly-29000000", Owner{Kind: "cronjob", Name: "nightly", Job: "nightly-29000000"},
			map[string]string{"k8s.job.name": "nightly-29000000", "k8s.cronjob.name": "nightly"}},
		{"ReplicaSet", "web-1", Owner{Kind: "replicaset", Name: "web-1", ReplicaSet: "web-1"}, map[string]string{"k8s.replicaset.name": "web-1"}},
		{"Node", "node-a", Owner{}, map[string]string{}},
		{"Rollout", "canary", Owner{Kind: "rollout", Name: "canary"}, map[string]string{}},
	} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns",
			OwnerReferences: []metav1.OwnerReference{{Kind: tc.kind, Name: tc.name, Controller: ptr(true)}}}}
		got := o.resolve(&pod.ObjectMeta)
		if got != tc.want {
			t.Errorf("%s %s: %+v, want %+v", tc.kind, tc.name, got, tc.want)
		}
		attrs := got.attrs(nil)
		sortAttrs(attrs)
		if d := diffAttrs(attrMap(t, attrs), tc.attrs); d != "" {
			t.Errorf("%s %s attributes:%s", tc.kind, tc.name, d)
		}
	}
}

// fakeStore is the part of a cache.Store that owners use.
type fakeStore struct {
	cache.Store // nil: other methods panic
	objs        map[string]any
}

func (s *fakeStore) GetByKey(key string) (any, bool, error) {
	o, ok := s.objs[key]
	return o, ok, nil
}

func TestStaticPod(t *testing.T) {
	e := newTestEnricher(t, Config{NodeName: "node-a"})
	const hash = "0f3b5c7d9e1a2b4c6d8e0f1a3b5c7d9e"
	mirror := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "etcd-node-a", Namespace: "kube-system", UID: podUID(1),
			Labels:          map[string]string{"component": "etcd"},
			Annotations:     map[string]string{mirrorAnnotation: hash, "kubernetes.io/config.source": "file"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: "node-a", Controller: ptr(true)}}},
		Spec:   corev1.PodSpec{NodeName: "node-a", HostNetwork: true, Containers: []corev1.Container{{Name: "etcd", Image: "registry.k8s.io/etcd:3.6.4-0"}}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "etcd", ContainerID: "containerd://" + hexID(1)}}},
	}
	feedNodePod(t, e, mirror)
	now := time.Now()
	// The cgroup path carries the hash, not the mirror pod's UID.
	for _, cid := range []string{hexID(1), "", hexID(2)} {
		w, st := e.Source(hash, cid, now)
		wantSt := SourceResolved
		if cid == hexID(2) { // not in the mirror pod's status (yet)
			wantSt = SourceContainerPending
		}
		if st != wantSt || w.PodName != "etcd-node-a" || !w.HostNetwork {
			t.Fatalf("Source(hash, %q) = %+v, %v", cid, w, st)
		}
		m := attrMap(t, w.Attrs)
		if m["connaudit.host_network"] != "true" || m["k8s.pod.uid"] != string(podUID(1)) {
			t.Errorf("Source(hash, %q) attributes %v", cid, m)
		}
	}

	// The kubelet recreates a deleted mirror pod with a new UID and the same
	// hash: the hash follows the new one, and purging the old keeps it.
	e.src.remove(string(podUID(1)), now)
	mirror2 := mirror.DeepCopy()
	mirror2.UID = podUID(2)
	feedNodePod(t, e, mirror2)
	e.src.purge(now.Add(time.Hour))
	if w, st := e.Source(hash, "", now.Add(time.Hour)); st != SourceResolved || w.PodUID != string(podUID(2)) {
		t.Errorf("after the mirror pod was recreated: %+v, %v", w, st)
	}
}

func TestDeletedPodGrace(t *testing.T) {
	e := newTestEnricher(t, Config{NodeName: "node-a", DeletedPodGrace: time.Minute})
	pod := genPod(1, "node-a")
	feedNodePod(t, e, pod)
	deleted := time.Now()
	e.src.remove(string(pod.UID), deleted)
	for _, tc := range []struct {
		at   time.Time
		want bool
	}{
		{deleted.Add(-time.Second), true},
		{deleted.Add(59 * time.Second), true},
		{deleted.Add(time.Minute), false},
	} {
		_, st := e.Source(string(pod.UID), hexID(2), tc.at)
		if (st == SourceResolved) != tc.want {
			t.Errorf("event %v after deletion: %v", tc.at.Sub(deleted), st)
		}
	}
	e.src.purge(deleted.Add(30 * time.Second))
	if _, st := e.Source(string(pod.UID), "", deleted.Add(30*time.Second)); st != SourceResolved {
		t.Errorf("purged within the grace period")
	}
	e.src.purge(deleted.Add(time.Minute))
	if len(e.src.entries) != 0 || e.src.byUID.len() != 0 || e.src.byContainer.len() != 0 {
		t.Errorf("purge left %d entries, %d UIDs, %d containers", len(e.src.entries), e.src.byUID.len(), e.src.byContainer.len())
	}

	// Deleted pods are bounded.
	for i := range maxDeletedPods + 10 {
		p := genPod(1000+i, "node-a")
		feedNodePod(t, e, p)
		e.src.remove(string(p.UID), deleted.Add(time.Duration(i)))
	}
	if len(e.src.entries) != maxDeletedPods {
		t.Errorf("%d deleted pods kept, want %d", len(e.src.entries), maxDeletedPods)
	}
	if _, st := e.Source(string(podUID(1000)), "", deleted); st == SourceResolved {
		t.Errorf("the oldest deleted pod beyond the bound still resolves")
	}
}

func TestPeerClassification(t *testing.T) {
	e := newTestEnricher(t, Config{NodeName: "node-a"})
	now := time.Now()
	if p := e.Peer(netip.MustParseAddr("198.51.100.7"), now); p.Kind != trail.PeerUnknown {
		t.Errorf("before sync: %s, want unknown", p.Kind)
	}
	pod := genPod(5, "node-b")
	pod.Status.PodIPs = []corev1.PodIP{{IP: "198.51.100.5"}, {IP: "2001:db8::5"}}
	feedClusterPod(t, e, pod, true)
	hostPod := genPod(6, "node-b")
	hostPod.Spec.HostNetwork = true
	hostPod.Status.PodIPs = []corev1.PodIP{{IP: "198.51.100.2"}}
	feedClusterPod(t, e, hostPod, true)
	feedNode(t, e, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-b", UID: "node-b"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "198.51.100.2"},
			{Type: corev1.NodeExternalIP, Address: "203.0.113.200"},
			{Type: corev1.NodeHostName, Address: "node-b"},
		}}}, true)
	feedService(t, e, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "svc-web"},
		Spec: corev1.ServiceSpec{ClusterIP: "203.0.113.20", ClusterIPs: []string{"203.0.113.20"},
			ExternalIPs: []string{"203.0.113.200"}},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "203.0.113.201"}, {Hostname: "lb.example"}}}},
	}, true)
	feedService(t, e, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "headless", Namespace: "shop", UID: "svc-headless"},
		Spec: corev1.ServiceSpec{ClusterIP: "None", ClusterIPs: []string{"None"}}}, true)
	e.peersSynced.Store(true)

	podAttrs := map[string]string{
		"connaudit.peer.kind": "pod", "connaudit.peer.k8s.namespace.name": "ns5", "connaudit.peer.k8s.pod.name": pod.Name,
		"connaudit.peer.k8s.workload.kind": "replicaset", "connaudit.peer.k8s.workload.name": "app5-7d9f8c6b5",
		"connaudit.peer.k8s.pod.label.app": "app5", "connaudit.peer.k8s.pod.label.pod-template-hash": "7d9f8c6b5",
		"connaudit.peer.k8s.pod.label.tier": "backend",
	}
	svcAttrs := map[string]string{"connaudit.peer.kind": "service", "connaudit.peer.k8s.namespace.name": "shop", "connaudit.peer.k8s.service.name": "web"}
	nodeAttrs := map[string]string{"connaudit.peer.kind": "node", "connaudit.peer.k8s.node.name": "node-b"}
	for _, tc := range []struct {
		addr  string
		attrs map[string]string
	}{
		{"198.51.100.5", podAttrs},
		{"2001:db8::5", podAttrs},
		{"::ffff:198.51.100.5", podAttrs},
		{"203.0.113.20", svcAttrs},
		{"203.0.113.200", svcAttrs}, // a Service's external IP wins over the node's own
		{"203.0.113.201", svcAttrs},
		{"198.51.100.2", nodeAttrs}, // the hostNetwork pod does not claim its node's IP
		{"127.0.0.1", map[string]string{"connaudit.peer.kind": "loopback"}},
		{"127.8.9.10", map[string]string{"connaudit.peer.kind": "loopback"}},
		{"::1", map[string]string{"connaudit.peer.kind": "loopback"}},
		{"::ffff:127.0.0.1", map[string]string{"connaudit.peer.kind": "loopback"}},
		{"198.51.100.99", map[string]string{"connaudit.peer.kind": "external"}},
		{"2001:db8::99", map[string]string{"connaudit.peer.kind": "external"}},
	} {
		p := e.Peer(netip.MustParseAddr(tc.addr), now)
		if d := diffAttrs(attrMap(t, p.Attrs), tc.attrs); d != "" {
			t.Errorf("Peer(%s):%s", tc.addr, d)
		}
		if string(p.Kind) != tc.attrs["connaudit.peer.kind"] {
			t.Errorf("Peer(%s).Kind = %s", tc.addr, p.Kind)
		}
	}
	p := e.Peer(netip.MustParseAddr("198.51.100.5"), now)
	if p.Namespace != "ns5" || p.Name != pod.Name || p.WorkloadKind != "replicaset" || p.Labels["app"] != "app5" {
		t.Errorf("pod peer fields: %+v", p)
	}
	if e.Peer(netip.MustParseAddr("198.51.100.99"), now) != externalPeer {
		t.Errorf("external peers are not shared")
	}

	// A pod that has finished releases its address, although its status
	// still lists it.
	pod.Status.Phase = corev1.PodSucceeded
	feedClusterPod(t, e, pod, false)
	if p := e.Peer(netip.MustParseAddr("198.51.100.5"), time.Now().Add(time.Millisecond)); p.Kind != trail.PeerExternal {
		t.Errorf("finished pod still holds its IP: %s", p.Kind)
	}
}

func TestPeerIPReuse(t *testing.T) {
	e := newTestEnricher(t, Config{NodeName: "node-a", DeletedPodGrace: time.Minute})
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	e.now = clk.now
	e.peersSynced.Store(true)
	ip := netip.MustParseAddr("198.51.100.10")
	podAt := func(at time.Time) string { return e.Peer(ip, at).Name }

	a := genPod(1, "node-b")
	a.Status.PodIPs = []corev1.PodIP{{IP: ip.String()}}
	feedClusterPod(t, e, a, true) // held since before the agent looked
	t0 := clk.t
	clk.t = t0.Add(10 * time.Second)
	e.peers.remove(string(a.UID), clk.now())

	b := genPod(2, "node-b")
	b.Status.PodIPs = []corev1.PodIP{{IP: ip.String()}}
	clk.t = t0.Add(12 * time.Second)
	feedClusterPod(t, e, b, false)
	tB := clk.t

	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{t0.Add(-time.Hour), a.Name},
		{t0.Add(9 * time.Second), a.Name},
		{t0.Add(10 * time.Second), ""},            // released, nobody yet
		{tB.Add(-500 * time.Millisecond), b.Name}, // seen a little late
		{tB, b.Name},
		{tB.Add(time.Hour), b.Name},
	} {
		got := podAt(tc.at)
		if tc.want == "" && e.Peer(ip, tc.at).Kind != trail.PeerExternal || tc.want != "" && got != tc.want {
			t.Errorf("at t0%+v: %q (%s), want %q", tc.at.Sub(t0), got, e.Peer(ip, tc.at).Kind, tc.want)
		}
	}

	// Labels change: the current holder's snapshot is replaced, the former
	// holder's kept.
	b.Labels = map[string]string{"app": "b2"}
	clk.t = t0.Add(20 * time.Second)
	feedClusterPod(t, e, b, false)
	if p := e.Peer(ip, clk.t); p.Labels["app"] != "b2" {
		t.Errorf("label change not seen: %v", p.Labels)
	}
	if p := e.Peer(ip, tB); p.Labels["app"] != "b2" {
		t.Errorf("the holder's tenure restarted on a label change: %v", p.Labels)
	}

	// Released holders are purged after the grace period, and bounded.
	e.peers.purge(t0.Add(10*time.Second + time.Minute))
	if got := e.Peer(ip, t0); got.Kind != trail.PeerExternal {
		t.Errorf("former holder not purged: %s %s", got.Kind, got.Name)
	}
	for i := range maxReleasedHolders + 3 {
		p := genPod(100+i, "node-b")
		p.Status.PodIPs = []corev1.PodIP{{IP: "198.51.100.11"}}
		clk.t = clk.t.Add(time.Second)
		feedClusterPod(t, e, p, false)
		clk.t = clk.t.Add(time.Second)
		e.peers.remove(string(p.UID), clk.now())
	}
	if hs, _ := e.peers.byIP.get(netip.MustParseAddr("198.51.100.11")); len(hs) != maxReleasedHolders {
		t.Errorf("%d holders kept, want %d", len(hs), maxReleasedHolders)
	}
}

func TestTransformsAreSlimAndIdempotent(t *testing.T) {
	pod := genPod(1, "node-a")
	pod.Annotations[mirrorAnnotation] = "abc"
	pod.Spec.HostNetwork = true
	for name, f := range map[string]func(any) (any, error){"node": slimNodePod, "cluster": slimClusterPod} {
		once := mustSlim(t, f, pod.DeepCopy()).(runtime.Object)
		twice := mustSlim(t, f, once.DeepCopyObject())
		m, err := meta.Accessor(once)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if p, ok := once.(*corev1.Pod); len(m.GetManagedFields()) != 0 || ok && len(p.Spec.Containers) > 0 && len(p.Spec.Containers[0].Args) != 0 {
			t.Errorf("%s: managed fields or container args kept", name)
		}
		if _, ok := m.GetAnnotations()["kubectl.kubernetes.io/restartedAt"]; ok {
			t.Errorf("%s: annotation kept", name)
		}
		if refs := m.GetOwnerReferences(); len(refs) != 1 || refs[0].Name != "app1-7d9f8c6b5" {
			t.Errorf("%s: owner references %v", name, refs)
		}
		if !reflect.DeepEqual(once, twice) {
			t.Errorf("%s: transform not idempotent:\n%+v\n%+v", name, once, twice)
		}
	}
	// The cluster-wide informer keeps a peerPod: what classifies an address.
	cluster := mustSlim(t, slimClusterPod, pod.DeepCopy()).(*peerPod)
	want := &peerPod{ObjectMeta: slimMeta(&pod.ObjectMeta, true), HostNetwork: true, Phase: pod.Status.Phase, IPs: []string{pod.Status.PodIPs[0].IP}}
	if len(pod.Status.PodIPs) != 1 || !reflect.DeepEqual(cluster, want) || !reflect.DeepEqual(cluster.DeepCopyObject(), want) {
		t.Errorf("cluster pod:\n%+v\nwant\n%+v", cluster, want)
	}
	if size := unsafe.Sizeof(peerPod{}); size > 320 {
		t.Errorf("a peerPod takes %d bytes", size)
	}
	if slim := mustSlim(t, slimNodePod, pod.DeepCopy()).(*corev1.Pod); slim.Annotations[mirrorAnnotation] != "abc" {
		t.Errorf("mirror annotation dropped")
	}
}

func TestSplitImage(t *testing.T) {
	for _, tc := range []struct{ ref, name, tag string }{
		{"nginx", "nginx", ""},
		{"nginx:1.25", "nginx", "1.25"},
		{"registry:5000/team/app", "registry:5000/team/app", ""},
		{"registry:5000/team/app:v2@sha256:abcd", "registry:5000/team/app", "v2"},
		{"app@sha256:abcd", "app", ""},
		{"", "", ""},
	} {
		if name, tag := splitImage(tc.ref); name != tc.name || tag != tc.tag {
			t.Errorf("splitImage(%q) = %q, %q; want %q, %q", tc.ref, name, tag, tc.name, tc.tag)
		}
	}
}
