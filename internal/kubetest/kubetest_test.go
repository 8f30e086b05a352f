package kubetest

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func TestClusterObjects(t *testing.T) {
	c := Start(t, Options{})
	ctx := context.Background()
	cs := c.Client()

	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}

	// No kubelet runs: create the Pod bound to a node, then write its status
	// as the kubelet would.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "client", Namespace: ns.Name, Labels: map[string]string{"app": "client"}},
		Spec: corev1.PodSpec{
			NodeName:   "node-a",
			Containers: []corev1.Container{{Name: "main", Image: "example.invalid/client:1"}},
		},
	}
	pod, err = cs.CoreV1().Pods(ns.Name).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod: %v", err)
	}
	const containerID = "containerd://3f1d2a9e8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e"
	pod.Status = corev1.PodStatus{
		Phase:  corev1.PodRunning,
		PodIP:  "198.51.100.10",
		PodIPs: []corev1.PodIP{{IP: "198.51.100.10"}, {IP: "2001:db8::10"}},
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: "main", Image: "example.invalid/client:1", ImageID: "example.invalid/client@sha256:00",
			ContainerID: containerID, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
		}},
	}
	if _, err := cs.CoreV1().Pods(ns.Name).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update pod status: %v", err)
	}

	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "server", Namespace: ns.Name},
		Spec: corev1.ServiceSpec{
			ClusterIP: "203.0.113.20",
			Selector:  map[string]string{"app": "server"},
			Ports:     []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	if _, err := cs.CoreV1().Services(ns.Name).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create service: %v", err)
	}

	// Read back, through a client built from the kubeconfig file.
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig())
	if err != nil {
		t.Fatalf("load kubeconfig: %v", err)
	}
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := kc.CoreV1().Pods(ns.Name).Get(ctx, "client", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get pod: %v", err)
	}
	if got.Spec.NodeName != "node-a" || len(got.Status.PodIPs) != 2 || got.Status.PodIPs[1].IP != "2001:db8::10" ||
		len(got.Status.ContainerStatuses) != 1 || got.Status.ContainerStatuses[0].ContainerID != containerID {
		t.Errorf("pod read back = spec %+v status %+v", got.Spec, got.Status)
	}
	gotSvc, err := kc.CoreV1().Services(ns.Name).Get(ctx, "server", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get service: %v", err)
	}
	if gotSvc.Spec.ClusterIP != "203.0.113.20" {
		t.Errorf("service ClusterIP = %q, want 203.0.113.20", gotSvc.Spec.ClusterIP)
	}

	// Outside the service range is refused, which shows the flag took effect.
	bad := svc.DeepCopy()
	bad.Name, bad.Spec.ClusterIP = "outside", "198.51.100.20"
	if _, err := cs.CoreV1().Services(ns.Name).Create(ctx, bad, metav1.CreateOptions{}); err == nil {
		t.Error("create service with ClusterIP outside 203.0.113.0/24: want an error")
	}
}

func TestAPIServerRestart(t *testing.T) {
	c := Start(t, Options{})
	ctx := context.Background()
	cs := c.Client()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "before"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}

	start := time.Now()
	c.StopAPIServer()
	t.Logf("API server stopped in %v", time.Since(start))
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := cs.CoreV1().Namespaces().List(short, metav1.ListOptions{}); err == nil {
		t.Fatal("list namespaces with the API server stopped: want an error")
	}

	start = time.Now()
	c.StartAPIServer()
	t.Logf("API server ready again in %v", time.Since(start))
	// The same client works again: same port, certificate and token, and the
	// data survived in etcd.
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "before", metav1.GetOptions{}); err != nil {
		t.Fatalf("get namespace after restart: %v", err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "after"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace after restart: %v", err)
	}
}

// TestKubectlServerDryRun checks that the kubeconfig works for kubectl and that the API server admits a DaemonSet shaped like
// the agent's (added capabilities and hostPath volumes, not privileged), as manifest tests check with --dry-run=server.
func TestKubectlServerDryRun(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatal("kubectl is not on PATH: install it (this machine kind has /usr/bin/kubectl)")
	}
	c := Start(t, Options{})
	cmd := exec.Command(kubectl, "--kubeconfig", c.Kubeconfig(), "apply", "--dry-run=server", "-f", "-")
	cmd.Stdin = strings.NewReader(agentLikeDaemonSet)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "daemonset.apps/agent created (server dry run)") {
		t.Errorf("kubectl apply --dry-run=server said:\n%s", out)
	}
}

const agentLikeDaemonSet = `
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: default}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers:
      - name: agent
        image: example.invalid/agent:1
        securityContext:
          runAsUser: 0
          allowPrivilegeEscalation: false
          capabilities: {drop: [ALL], add: [BPF, PERFMON, SYS_PTRACE, NET_ADMIN]}
        volumeMounts: [{name: host-proc, mountPath: /host/proc, readOnly: true}]
      volumes: [{name: host-proc, hostPath: {path: /proc}}]
`
