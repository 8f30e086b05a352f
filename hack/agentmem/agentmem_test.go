// Package agentmem measures the idle memory of agent binaries side by side,
// with Kubernetes enrichment on (against a real kube-apiserver holding
// AGENTMEM_PODS pods on the agent's node and AGENTMEM_SERVICES Services) and
// off. AGENTMEM_BINARIES lists the binaries, name=path, comma-separated; they
// run one at a time, alternating, AGENTMEM_ROUNDS times. Needs root.
//
//	AGENTMEM_BINARIES=before=/tmp/before,after=bin/connaudit-agent \
//	  go test -run '^$' -bench IdleMemory -benchtime 1x -v -timeout 30m ./hack/agentmem/
//
// It is a benchmark, so that `go test ./...` does not run it.
package agentmem

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/connaudit/connaudit/internal/kubetest"
	"github.com/connaudit/connaudit/internal/procmem"
)

const node = "node-a"

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func BenchmarkIdleMemory(b *testing.B) {
	var t testing.TB = b
	spec := os.Getenv("AGENTMEM_BINARIES")
	if spec == "" {
		t.Fatal("set AGENTMEM_BINARIES=name=path,... to the agent binaries to compare")
	}
	type binary struct{ name, path string }
	var bins []binary
	for _, b := range strings.Split(spec, ",") {
		name, path, _ := strings.Cut(b, "=")
		abs, err := filepath.Abs(path)
		if err != nil {
			t.Fatal(err)
		}
		bins = append(bins, binary{name, abs})
	}
	pods, services, rounds := envInt("AGENTMEM_PODS", 2000), envInt("AGENTMEM_SERVICES", 500), envInt("AGENTMEM_ROUNDS", 2)
	settle := 15 * time.Second

	c := kubetest.Start(t, kubetest.Options{ServiceCIDR: "2001:db8:5::/112"})
	populate(t, c.Client(), pods, services)

	for round := range rounds {
		for _, mode := range []string{"on", "off"} {
			for _, b := range bins {
				m := runAgent(t, b.path, mode, c.Kubeconfig(), settle)
				t.Logf("round %d enrichment %-3s %-7s VmRSS %6.1f MiB  VmHWM %6.1f MiB  RssAnon %6.1f MiB  binary pages %5.1f MiB  (synced after %v)",
					round, mode, b.name, mib(m.RSS), mib(m.Peak), mib(m.Anon), mib(m.Binary), m.synced.Round(time.Millisecond))
			}
		}
	}
}

// populate creates the node, pods pods on it with their status written, and
// services Services, eight requests at a time.
func populate(t testing.TB, cs kubernetes.Interface, pods, services int) {
	ctx := t.Context()
	start := time.Now()
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const namespaces = 20
	for i := range namespaces {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("team-%d", i)}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	base := netip.MustParseAddr("2001:db8:1::")
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range 8 {
		wg.Go(func() {
			for i := range work {
				if err := create(t, cs, i, pods, base); err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
				}
			}
		})
	}
	for i := range pods + services {
		work <- i
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	t.Logf("created %d pods on %s and %d Services in %v", pods, node, services, time.Since(start).Round(time.Second))
}

func create(t testing.TB, cs kubernetes.Interface, i, pods int, base netip.Addr) error {
	ctx := t.Context()
	if i >= pods {
		n := i - pods
		_, err := cs.CoreV1().Services(fmt.Sprintf("team-%d", n%20)).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("svc-%d", n), Labels: map[string]string{"app": fmt.Sprintf("app-%d", n)}},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": fmt.Sprintf("app-%d", n)},
				Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
		}, metav1.CreateOptions{})
		return err
	}
	ip := base
	for range i + 1 {
		ip = ip.Next()
	}
	app := fmt.Sprintf("app-%d", i%500)
	p, err := cs.CoreV1().Pods(fmt.Sprintf("team-%d", i%20)).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", app, i),
			Labels: map[string]string{"app": app, "pod-template-hash": "7c9d8f6b5", "app.kubernetes.io/part-of": "shop"}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "registry.example/" + app + ":1.0",
			Env: []corev1.EnvVar{{Name: "A", Value: "1"}}, Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip.String(), PodIPs: []corev1.PodIP{{IP: ip.String()}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "registry.example/" + app + ":1.0", Ready: true,
			ContainerID: fmt.Sprintf("containerd://%064x", i),
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}}}
	_, err = cs.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	return err
}

type sample struct {
	procmem.Usage
	synced time.Duration
}

// runAgent starts bin, waits until its caches synced (enrichment on) or it
// captures (off), lets it settle, samples its memory and stops it.
func runAgent(t testing.TB, bin, mode, kubeconfig string, settle time.Duration) sample {
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "CONNAUDIT_OUTPUT=console", "CONNAUDIT_SPOOL_DIR="+t.TempDir(),
		"CONNAUDIT_BPF_PIN_DIR=", "CONNAUDIT_LISTEN_ADDR=", "CONNAUDIT_KUBERNETES="+mode,
		"CONNAUDIT_NODE_NAME="+node, "KUBECONFIG="+kubeconfig)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	want := "capturing TCP connect attempts"
	if mode == "on" {
		want = "Kubernetes caches synced"
	}
	found := make(chan time.Duration, 1)
	var log strings.Builder
	var logMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			logMu.Lock()
			log.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			if strings.Contains(sc.Text(), want) {
				select {
				case found <- time.Since(start):
				default:
				}
			}
		}
	}()
	var synced time.Duration
	select {
	case synced = <-found:
	case <-time.After(2 * time.Minute):
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("%s: no %q within 2 minutes:\n%s", bin, want, log.String())
	}
	time.Sleep(settle)
	u, err := procmem.Read(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return sample{Usage: u, synced: synced}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
