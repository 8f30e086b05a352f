package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/connaudit/connaudit/internal/kubetest"
	"github.com/connaudit/connaudit/k8s/cgroup"
)

const (
	benchNode = "test-node" // teststack.StartAgent's CONNAUDIT_NODE_NAME
	loadNS    = "shop"
)

// cluster is a real API server holding a cluster's worth of pods and
// Services, and the load generator's own pod on this node, whose container
// is a real cgroup: every connect of the load is enriched as a pod's.
type cluster struct {
	api      *kubetest.Cluster
	cgroup   string // the load generator container's cgroup directory
	pods     int
	services int
}

func randomHex(n int) string {
	b := make([]byte, n/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newCluster fills the API server with pods pods over 100 nodes and 50
// namespaces, and services Services. 10.96.0.0/16 holds the Service IPs;
// nothing connects to any of these addresses.
func newCluster(t *testing.T, pods, services int) *cluster {
	t.Helper()
	c := &cluster{api: kubetest.Start(t, kubetest.Options{ServiceCIDR: "10.96.0.0/16"}), pods: pods, services: services}
	cfg := c.api.Config()
	cfg.QPS, cfg.Burst = -1, 0 // no client-side rate limit while filling
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	const namespaces, nodes = 50, 100
	for i := range namespaces {
		must(t)(client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("team-%d", i)}}, metav1.CreateOptions{}))
	}
	must(t)(client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: loadNS}}, metav1.CreateOptions{}))
	parallel(t, nodes, func(i int) error {
		name := fmt.Sprintf("node-%d", i)
		if i == 0 {
			name = benchNode
		}
		n, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("10.0.%d.%d", i/250, i%250+1)}}
		_, err = client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	parallel(t, pods, func(i int) error {
		ns := fmt.Sprintf("team-%d", i%namespaces)
		app := fmt.Sprintf("svc-%d", i/5)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: fmt.Sprintf("%s-7c9d8f6b5-%05d", app, i), Namespace: ns,
				Labels: map[string]string{"app": app, "pod-template-hash": "7c9d8f6b5", "app.kubernetes.io/part-of": "shop", "team": ns},
			},
			Spec: corev1.PodSpec{NodeName: fmt.Sprintf("node-%d", i%nodes+1),
				Containers: []corev1.Container{{Name: "app", Image: "registry.example/" + app + ":1.0"}}},
		}
		ip := fmt.Sprintf("10.%d.%d.%d", 64+i>>16, (i>>8)&255, i&255)
		return createRunningPod(ctx, client, pod, ip, map[string]string{"app": "containerd://" + randomHex(64)})
	})
	parallel(t, services, func(i int) error {
		_, err := client.CoreV1().Services(fmt.Sprintf("team-%d", i%namespaces)).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("svc-%d", i)},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": fmt.Sprintf("svc-%d", i)},
				Ports: []corev1.ServicePort{{Port: 80}}},
		}, metav1.CreateOptions{})
		return err
	})
	c.cgroup = c.loadPod(t, client)
	return c
}

// loadPod creates the load generator's pod: a Deployment's, with the labels
// and owners a real one has, and its container's cgroup.
func (c *cluster) loadPod(t *testing.T, client kubernetes.Interface) string {
	ctx := t.Context()
	labels := map[string]string{"app": "web", "tier": "frontend", "app.kubernetes.io/name": "web",
		"app.kubernetes.io/version": "1.4.2", "team": "payments"}
	dep, err := client.AppsV1().Deployments(loadNS).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/web:1.4.2"}}}},
		},
	}, metav1.CreateOptions{})
	must(t)(dep, err)
	hash := "5d4f8b7c9"
	rs, err := client.AppsV1().ReplicaSets(loadNS).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web-" + hash, OwnerReferences: []metav1.OwnerReference{owner("apps/v1", "Deployment", dep.Name, string(dep.UID))}},
		Spec:       appsv1.ReplicaSetSpec{Selector: dep.Spec.Selector, Template: dep.Spec.Template},
	}, metav1.CreateOptions{})
	must(t)(rs, err)
	podLabels := map[string]string{"pod-template-hash": hash}
	for k, v := range labels {
		podLabels[k] = v
	}
	containerID := randomHex(64)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: rs.Name + "-x7k2p", Namespace: loadNS, Labels: podLabels,
			OwnerReferences: []metav1.OwnerReference{owner("apps/v1", "ReplicaSet", rs.Name, string(rs.UID))}},
		Spec: corev1.PodSpec{NodeName: benchNode, ServiceAccountName: "web",
			Containers: []corev1.Container{{Name: "app", Image: "registry.example/web:1.4.2"}}},
	}
	if err := createRunningPod(ctx, client, pod, "10.63.0.10", map[string]string{"app": "containerd://" + containerID}); err != nil {
		t.Fatal(err)
	}
	created, err := client.CoreV1().Pods(loadNS).Get(ctx, pod.Name, metav1.GetOptions{})
	must(t)(created, err)
	return podCgroup(t, string(created.UID), containerID)
}

func owner(apiVersion, kind, name, uid string) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: types.UID(uid), Controller: &yes}
}

// createRunningPod creates pod and writes the status a kubelet would: running, with its IP and containers.
func createRunningPod(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod, ip string, containerIDs map[string]string) error {
	created, err := client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	created.Status.Phase = corev1.PodRunning
	created.Status.PodIP = ip
	created.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	for _, ctr := range created.Spec.Containers {
		created.Status.ContainerStatuses = append(created.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: ctr.Name, Image: ctr.Image, ContainerID: containerIDs[ctr.Name], Ready: true,
		})
	}
	if _, err := client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("write status of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// podCgroup creates the kubelet's systemd-driver cgroup of a besteffort
// containerd container and removes it when the test ends.
func podCgroup(t *testing.T, podUID, containerID string) string {
	t.Helper()
	root, err := cgroup.FindV2Mount()
	if err != nil {
		t.Fatal(err)
	}
	path := root
	for _, d := range []string{
		"kubepods.slice",
		"kubepods-besteffort.slice",
		"kubepods-besteffort-pod" + strings.ReplaceAll(podUID, "-", "_") + ".slice",
		"cri-containerd-" + containerID + ".scope",
	} {
		path = filepath.Join(path, d)
		if err := os.Mkdir(path, 0o755); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
		created := path
		t.Cleanup(func() { _ = os.Remove(created) }) // leaf first: cleanups run in reverse
	}
	return path
}

// parallel runs f(0..n-1) on 16 goroutines and fails the test at the first error.
func parallel(t *testing.T, n int, f func(i int) error) {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}

// must(t)(v, err) fails the test on err.
func must(t *testing.T) func(any, error) {
	return func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}
