package k8s

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// newTestEnricher makes an enricher whose informers are never run, so it
// has no API to read: tests feed its handlers directly, through the
// informers' transforms.
func newTestEnricher(t testing.TB, cfg Config) *Enricher {
	t.Helper()
	if cfg.DeletedPodGrace == 0 {
		cfg.DeletedPodGrace = 5 * time.Minute
	}
	return NewEnricher(cfg, API{}, slog.New(slog.DiscardHandler))
}

// The feed helpers run an object through its informer's transform and
// handler, as the informer would.

func feedNodePod(t testing.TB, e *Enricher, pod *corev1.Pod) {
	t.Helper()
	slim, err := slimNodePod(pod.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	e.onNodePod(slim)
}

func feedClusterPod(t testing.TB, e *Enricher, pod *corev1.Pod, initial bool) {
	t.Helper()
	slim, err := slimClusterPod(pod.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	e.peers.upsertPod(slim.(*peerPod), initial, e.now())
}

func feedService(t testing.TB, e *Enricher, svc *corev1.Service, initial bool) {
	t.Helper()
	slim, err := slimService(svc.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	e.peers.upsertService(slim.(*corev1.Service), initial, e.now())
}

func feedNode(t testing.TB, e *Enricher, node *corev1.Node, initial bool) {
	t.Helper()
	slim, err := slimNode(node.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	e.peers.upsertNode(slim.(*corev1.Node), initial, e.now())
}

// hexID returns a 64-hex-digit container id made from n.
func hexID(n int) string {
	return fmt.Sprintf("%064x", n+1)
}

// podUID returns a pod UID made from n.
func podUID(n int) types.UID {
	return types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012x", n))
}

// genPod makes pod n of a Deployment-owned ReplicaSet, with two containers
// and IPs derived from n.
func genPod(n int, node string) *corev1.Pod {
	rs := fmt.Sprintf("app%d-7d9f8c6b5", n%500)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-%05d", rs, n), Namespace: fmt.Sprintf("ns%d", n%50), UID: podUID(n),
			Labels:          map[string]string{"app": fmt.Sprintf("app%d", n%500), "pod-template-hash": "7d9f8c6b5", "tier": "backend"},
			Annotations:     map[string]string{"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs, UID: "rs-uid", Controller: ptr(true)}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate}},
		},
		Spec: corev1.PodSpec{
			NodeName:           node,
			ServiceAccountName: "default",
			Containers: []corev1.Container{
				{Name: "app", Image: "registry.example/app:1.2.3", Args: []string{"--serve"}},
				{Name: "sidecar", Image: "registry.example/proxy:2"},
			},
		},
		Status: corev1.PodStatus{
			Phase:  corev1.PodRunning,
			PodIPs: []corev1.PodIP{{IP: podIP(n).String()}},
			ContainerStatuses: []corev1.ContainerStatus{
				{Name: "app", ContainerID: "containerd://" + hexID(2*n), Image: "registry.example/app:1.2.3", Ready: true},
				{Name: "sidecar", ContainerID: "containerd://" + hexID(2*n+1), Image: "registry.example/proxy:2", Ready: true},
			},
		},
	}
}

func ptr[T any](v T) *T { return &v }

// attrMap turns attributes into a map of their emitted values, failing on
// duplicate keys and on unsorted input.
func attrMap(t testing.TB, attrs []attribute.KeyValue) map[string]string {
	t.Helper()
	m := make(map[string]string, len(attrs))
	for i, kv := range attrs {
		if i > 0 && string(attrs[i-1].Key) >= string(kv.Key) {
			t.Errorf("attributes not sorted by key, or duplicated: %q before %q", attrs[i-1].Key, kv.Key)
		}
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

func diffAttrs(got, want map[string]string) string {
	var b strings.Builder
	for k, v := range want {
		if g, ok := got[k]; !ok {
			fmt.Fprintf(&b, "\n  missing %s=%q", k, v)
		} else if g != v {
			fmt.Fprintf(&b, "\n  %s=%q, want %q", k, g, v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			fmt.Fprintf(&b, "\n  unexpected %s=%q", k, v)
		}
	}
	return b.String()
}

// logRecorder is a slog handler that keeps the records for assertions.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
	t       testing.TB
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec.Clone())
	return nil
}

// count returns how many records at level have a message containing s.
func (r *logRecorder) count(level slog.Level, s string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.records {
		if rec.Level == level && strings.Contains(rec.Message, s) {
			n++
		}
	}
	return n
}

func (r *logRecorder) dump() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b bytes.Buffer
	h := slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})
	for _, rec := range r.records {
		_ = h.Handle(context.Background(), rec)
	}
	return b.String()
}

// waitFor polls cond until it holds or timeout passes, then fails with what
// cond last said.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v: %s", what, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
