package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/connaudit/connaudit/bpf"
	"github.com/connaudit/connaudit/k8s"
	"github.com/connaudit/connaudit/k8s/cgroup"
	"github.com/connaudit/connaudit/process"
	"github.com/connaudit/connaudit/shipper"
	"github.com/connaudit/connaudit/shipper/spool"
	"github.com/connaudit/connaudit/trail"
)

// BenchmarkHandle is the agent's per-event path after the ring buffer, with
// the real lookups and no Kubernetes: cgroup and executable lookups, record
// encoding and the spool append (a write to the page cache).
func BenchmarkHandle(b *testing.B) {
	sp, _, err := spool.Open(b.TempDir(), spool.Options{FsyncInterval: 100 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	cgroups, err := cgroup.NewResolver(cgroup.ResolverOptions{})
	if err != nil {
		b.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	metrics := shipper.NewMetrics(prometheus.NewRegistry())
	attrs, err := shipper.AgentResource{Version: "bench", InstanceID: "i", HostName: "h"}.Attributes(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	enc := NewIdentityEncoder(attrs)
	p := &Pipeline{Trail: shipper.NewLedger(sp, enc.Node(), metrics, logger), Metrics: metrics, Log: logger,
		Clock: bpf.NewBootClock(), Executables: process.NewExecutables("/proc", 4096), Cgroups: cgroups, Identities: enc}

	comm, _ := os.ReadFile("/proc/self/comm")
	now := time.Now()
	boot := bootNs()
	ev := bpf.Event{StartNs: boot, EndNs: boot + 1000, CgroupID: 1, PID: uint32(os.Getpid()), TID: uint32(os.Getpid()),
		Outcome: bpf.Established, Local: netip.MustParseAddrPort("10.0.0.1:40000"), Peer: netip.MustParseAddrPort("10.0.0.2:443")}
	ev.SetComm(string(comm[:len(comm)-1]))

	// Drain the spool as the exporter would, so it never fills.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			batch, err := sp.Next(ctx, 4096, 0)
			if err != nil {
				return
			}
			sp.Ack(batch)
		}
	}()
	b.ReportAllocs()
	for b.Loop() {
		p.handle(&ev, now, false)
	}
}

// BenchmarkHandleEnriched is BenchmarkHandle with Kubernetes enrichment on:
// a real k8s.Enricher whose informers have listed 10,000 pods (one of them
// this node's, the connecting one) and 2,000 Services, a real cgroup of that
// pod's container, and a peer that is another pod, so that the record
// carries both ends' identity. The API is client-go's fake clientset: the
// real apiserver's figures are bench/'s.
func BenchmarkHandleEnriched(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Fatal("needs root: creates a pod's cgroup")
	}
	const node = "node-a"
	var objects []runtime.Object
	for i := range 10000 {
		objects = append(objects, benchPod(i, fmt.Sprintf("node-%d", i%100)))
	}
	src := benchPod(10000, node)
	objects = append(objects, src)
	for i := range 2000 {
		objects = append(objects, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("svc-%d", i), Namespace: fmt.Sprintf("team-%d", i%50), UID: types.UID(fmt.Sprintf("svc-%d", i))},
			Spec:       corev1.ServiceSpec{ClusterIP: fmt.Sprintf("10.96.%d.%d", i/250, i%250+1)},
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger := slog.New(slog.DiscardHandler)
	enricher := k8s.NewEnricher(k8s.Config{NodeName: node, DeletedPodGrace: 5 * time.Minute}, fakeAPI(fake.NewClientset(objects...)), logger)
	go enricher.Run(ctx)
	for deadline := time.Now().Add(time.Minute); !enricher.Synced(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("the enricher did not sync within a minute")
		}
	}

	cgroupID := benchCgroup(b, string(src.UID), src.Status.ContainerStatuses[0].ContainerID[len("containerd://"):])
	cgroups, err := cgroup.NewResolver(cgroup.ResolverOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if _, ok := cgroups.Cached(cgroupID); !ok {
		b.Fatal("the resolver's first walk did not find the pod's cgroup")
	}

	sp, _, err := spool.Open(b.TempDir(), spool.Options{FsyncInterval: 100 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	metrics := shipper.NewMetrics(prometheus.NewRegistry())
	attrs, err := shipper.AgentResource{Version: "bench", InstanceID: "i", HostName: "h"}.Attributes(ctx)
	if err != nil {
		b.Fatal(err)
	}
	enc := NewIdentityEncoder(attrs)
	sink := &countingTrail{Trail: shipper.NewLedger(sp, enc.Node(), metrics, logger)}
	p := &Pipeline{Trail: sink, Metrics: metrics, Log: logger, Clock: bpf.NewBootClock(),
		Executables: process.NewExecutables("/proc", 4096), Cgroups: cgroups, Kubernetes: enricher, Identities: enc,
		HoldTimeout: 2 * time.Second, HoldMax: 10000}

	comm, _ := os.ReadFile("/proc/self/comm")
	boot := bootNs()
	ev := bpf.Event{StartNs: boot, EndNs: boot + 1000, CgroupID: cgroupID, PID: uint32(os.Getpid()), TID: uint32(os.Getpid()),
		Outcome: bpf.Established, Local: netip.MustParseAddrPort("10.63.0.10:40000"), Peer: netip.MustParseAddrPort("10.64.0.42:8080")}
	ev.SetComm(string(comm[:len(comm)-1]))
	now := time.Now()
	p.handle(&ev, now, false)
	if sink.emitted != 1 || p.hold.len() != 0 {
		b.Fatalf("the event was held or dropped: emitted %d, held %d", sink.emitted, p.hold.len())
	}
	if w, st := enricher.Source(string(src.UID), "", now); st != k8s.SourceResolved || w == nil {
		b.Fatalf("the source pod did not resolve: %v", st)
	}
	if peer := enricher.Peer(ev.Peer.Addr(), now); peer.Kind != trail.PeerPod {
		b.Fatalf("the peer is %s, want a pod", peer.Kind)
	}

	go func() {
		for {
			batch, err := sp.Next(ctx, 4096, 0)
			if err != nil {
				return
			}
			sp.Ack(batch)
		}
	}()
	b.ReportAllocs()
	for b.Loop() {
		p.handle(&ev, now, false)
	}
}

// countingTrail counts records on their way to the real sink.
type countingTrail struct {
	Trail
	emitted int
}

func (c *countingTrail) Emit(r *shipper.Encoder) { c.emitted++; c.Trail.Emit(r) }

// benchPod is pod n of a realistic cluster: a Deployment's, with the usual
// labels, running with its IP and container.
func benchPod(n int, node string) *corev1.Pod {
	yes := true
	app := fmt.Sprintf("svc-%d", n/5)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-7c9d8f6b5-%05d", app, n), Namespace: fmt.Sprintf("team-%d", n%50), UID: types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012d", n)),
			Labels: map[string]string{"app": app, "pod-template-hash": "7c9d8f6b5", "app.kubernetes.io/part-of": "shop", "team": fmt.Sprintf("team-%d", n%50)},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: app + "-7c9d8f6b5",
				UID: types.UID(fmt.Sprintf("rs-%d", n/5)), Controller: &yes}},
		},
		Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: app,
			Containers: []corev1.Container{{Name: "app", Image: "registry.example/" + app + ":1.0"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning,
			PodIP:  fmt.Sprintf("10.%d.%d.%d", 64+n>>16, (n>>8)&255, n&255),
			PodIPs: []corev1.PodIP{{IP: fmt.Sprintf("10.%d.%d.%d", 64+n>>16, (n>>8)&255, n&255)}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "registry.example/" + app + ":1.0", Ready: true,
				ContainerID: fmt.Sprintf("containerd://%064x", n)}}},
	}
}

// benchCgroup creates the kubelet's cgroup of a besteffort containerd
// container, removed when the benchmark ends, and returns its id.
func benchCgroup(b *testing.B, podUID, containerID string) uint64 {
	root, err := cgroup.FindV2Mount()
	if err != nil {
		b.Fatal(err)
	}
	path := root
	for _, d := range []string{"kubepods.slice", "kubepods-besteffort.slice",
		"kubepods-besteffort-pod" + strings.ReplaceAll(podUID, "-", "_") + ".slice", "cri-containerd-" + containerID + ".scope"} {
		path = filepath.Join(path, d)
		if err := os.Mkdir(path, 0o755); err != nil && !os.IsExist(err) {
			b.Fatal(err)
		}
		created := path
		b.Cleanup(func() { _ = os.Remove(created) })
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		b.Fatal(err)
	}
	return st.Ino
}

// fakeAPI is the enricher's API read from client-go's fake clientset.
func fakeAPI(cs *fake.Clientset) k8s.API {
	return k8s.API{
		Pods:        fakeListWatch(cs, cs.CoreV1().Pods("")),
		Services:    fakeListWatch(cs, cs.CoreV1().Services("")),
		Nodes:       fakeListWatch(cs, cs.CoreV1().Nodes()),
		ReplicaSets: fakeListWatch(cs, cs.AppsV1().ReplicaSets("")),
		Jobs:        fakeListWatch(cs, cs.BatchV1().Jobs("")),
	}
}

// fakeListWatch lists and watches through a typed client of cs, and tells the
// informer that cs cannot stream the initial list in a watch.
func fakeListWatch[L runtime.Object](cs *fake.Clientset, c interface {
	List(context.Context, metav1.ListOptions) (L, error)
	Watch(context.Context, metav1.ListOptions) (watch.Interface, error)
}) cache.ListerWatcher {
	return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc:  func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return c.List(ctx, o) },
		WatchFuncWithContext: c.Watch,
	}, cs)
}
