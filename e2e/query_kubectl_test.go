package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/connaudit/connaudit/internal/kubetest"
	"github.com/connaudit/connaudit/internal/netnstest"
	"github.com/connaudit/connaudit/internal/recordgen"
	"github.com/connaudit/connaudit/internal/teststack"
)

// The API server refuses to proxy to a loopback address, so VictoriaLogs
// gets a test-host address: it runs in its own network namespace, joined to
// this one by a veth that carries only this /30.
const (
	vlHostAddr = "198.51.100.246"
	vlHostPeer = "198.51.100.245" // this namespace's end
	vlHostPort = 9428
)

// startVictoriaLogsInNetns runs bin/victoria-logs on vlHostAddr:9428 in a new
// network namespace and returns its URL.
func startVictoriaLogsInNetns(t *testing.T) string {
	t.Helper()
	id := fmt.Sprintf("%d", os.Getpid()%100000)
	ns, veth, peer := "ca-vlq-"+id, "caq"+id, "caqp"+id
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", ns).Run()
		_ = exec.Command("ip", "link", "del", veth).Run()
	})
	for _, s := range [][]string{
		{"ip", "netns", "add", ns},
		{"ip", "link", "add", veth, "type", "veth", "peer", "name", peer, "netns", ns},
		{"ip", "addr", "add", vlHostPeer + "/30", "dev", veth},
		{"ip", "link", "set", veth, "up"},
		{"ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"},
		{"ip", "netns", "exec", ns, "ip", "addr", "add", vlHostAddr + "/30", "dev", peer},
		{"ip", "netns", "exec", ns, "ip", "link", "set", peer, "up"},
	} {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	logPath := filepath.Join(t.TempDir(), "victoria-logs.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := netnstest.NS{Name: ns}.Command(teststack.Binary(t, "victoria-logs"),
		"-storageDataPath="+t.TempDir(), fmt.Sprintf("-httpListenAddr=%s:%d", vlHostAddr, vlHostPort),
		"-retentionPeriod=100y", "-loggerLevel=WARN")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			t.Logf("victoria-logs in %s:\n%s", ns, out)
		}
	})
	url := fmt.Sprintf("http://%s:%d", vlHostAddr, vlHostPort)
	if !pollUntil(30*time.Second, func() bool {
		resp, err := http.Get(url + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}) {
		t.Fatalf("VictoriaLogs at %s not healthy after 30s", url)
	}
	return url
}

// registerVictoriaLogs creates the Service of connaudit's manifests,
// connaudit/victorialogs port http 9428, with its pod and EndpointSlice at
// the test host (no controller runs to make them).
func registerVictoriaLogs(t *testing.T, cluster *kubetest.Cluster) {
	t.Helper()
	ctx, c := t.Context(), cluster.Client()
	const ns, name = "connaudit", "victorialogs"
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}))
	must(c.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: vlHostPort, Protocol: corev1.ProtocolTCP}}},
	}, metav1.CreateOptions{}))
	// The service proxy only goes to endpoints that are pods holding the address.
	pod, err := c.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-0", Labels: map[string]string{"app.kubernetes.io/name": name}},
		Spec:       corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: name, Image: "victoriametrics/victoria-logs"}}},
	}, metav1.CreateOptions{})
	must(pod, err)
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP = vlHostAddr
	pod.Status.PodIPs = []corev1.PodIP{{IP: vlHostAddr}}
	must(c.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}))
	must(c.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{vlHostAddr}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod.Name, UID: pod.UID}}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(vlHostPort)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}, metav1.CreateOptions{}))
}

// TestKubectlPlugin: `make install` puts bin/connaudit, its
// kubectl-connaudit link and its kubectl completion helper (and
// bin/connaudit-agent) into PREFIX; the real kubectl finds the plugin on
// the PATH, and `kubectl connaudit query` reaches VictoriaLogs through the
// API server's service proxy with the kubeconfig's credentials, with no
// --server and no port-forward.
func TestKubectlPlugin(t *testing.T) {
	vlURL := startVictoriaLogsInNetns(t)
	col := teststack.StartCollector(t, vlURL)
	cluster := kubetest.Start(t, kubetest.Options{})
	registerVictoriaLogs(t, cluster)
	for _, node := range []string{"node-a", "node-z"} { // node-z runs no agent
		if _, err := cluster.Client().CoreV1().Nodes().Create(t.Context(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	t0 := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	ag := recordgen.NewAgent("node-a", "inst-kubectl")
	pod := &recordgen.Pod{Namespace: "default", Name: "mypod", UID: "uid-mypod", Container: "app", Labels: map[string]string{"app": "my"}}
	recs := []recordgen.Record{ag.Start(t0, false)}
	for i := range 3 {
		recs = append(recs, ag.Connect(t0.Add(time.Duration(i+1)*time.Second), recordgen.Source{Pod: pod, Comm: "curl", PID: 42},
			recordgen.Conn{SrcAddr: "10.0.0.7", SrcPort: 42000 + i, DstAddr: "1.0.0.1", DstPort: 443, Outcome: "established", Duration: 0.002,
				Peer: recordgen.Attrs("connaudit.peer.kind", "external")}))
	}
	if err := recordgen.Post(t.Context(), col.HTTPEndpoint()+"/v1/logs", recs); err != nil {
		t.Fatal(err)
	}

	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	prefix := t.TempDir()
	// -o: install the binaries the tests run; do not rebuild them.
	if out, err := exec.Command("make", "-C", root, "-o", "bin/connaudit", "-o", "bin/connaudit-agent", "install", "PREFIX="+prefix).CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	if out, err := exec.Command(filepath.Join(prefix, "bin", "connaudit-agent"), "--version").Output(); err != nil || !strings.HasPrefix(string(out), "connaudit-agent ") {
		t.Fatalf("make install: connaudit-agent --version: %q, %v", out, err)
	}
	if target, err := os.Readlink(filepath.Join(prefix, "bin", "kubectl-connaudit")); err != nil || target != "connaudit" {
		t.Fatalf("make install: kubectl-connaudit link: %q, %v", target, err)
	}

	kubectl := func(args ...string) runResult {
		t.Helper()
		cmd := exec.Command("/usr/bin/kubectl", args...)
		cmd.Env = []string{"PATH=" + filepath.Join(prefix, "bin") + ":/usr/bin:/bin", "HOME=" + t.TempDir(), "KUBECONFIG=" + cluster.Kubeconfig()}
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("kubectl %q: %v", args, err)
		}
		return runResult{stdout.String(), stderr.String(), code}
	}

	if res := kubectl("plugin", "list"); !strings.Contains(res.stdout, filepath.Join(prefix, "bin", "kubectl-connaudit")) {
		t.Errorf("kubectl plugin list does not show the plugin: %q %q", res.stdout, res.stderr)
	}
	// kubectl completes the plugin's command line through kubectl_complete-connaudit.
	if res := kubectl("__complete", "connaudit", "query", "-o", ""); !strings.Contains(res.stdout, "wide\n") || !strings.Contains(res.stdout, "csv\n") {
		t.Errorf("kubectl __complete connaudit query -o: %q %q", res.stdout, res.stderr)
	}
	if res := kubectl("connaudit", "query", "--help"); !strings.Contains(res.stdout, "kubectl connaudit query mypod") {
		t.Errorf("kubectl connaudit query --help does not name itself kubectl connaudit: %s", res.stdout)
	}

	// The default namespace of the kubeconfig context is "default", where mypod is.
	var res runResult
	if !pollUntil(time.Minute, func() bool {
		res = kubectl("connaudit", "query", "--podname", "mypod", "--since", "1h", "-o", "wide")
		return res.code == 0 && strings.Count(res.stdout, "mypod") == 3
	}) {
		t.Fatalf("kubectl connaudit query --podname mypod: exit %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	t.Logf("kubectl connaudit query --podname mypod:\n%s", res.stdout)
	// The API server's nodes are checked too: node-z never ran an agent, and
	// node-a's agent started 10 minutes into the hour.
	lines := strings.Split(strings.TrimSpace(res.stderr), "\n")
	for _, want := range [][]string{
		{"node node-a, ", " to " + t0.UTC().Format("2006-01-02T15:04:05.000000Z") + ", no agent (uncovered: no agent instance watched the node)"},
		{"node node-z, ", ", no agent (uncovered: no agent instance watched the node)"},
	} {
		found := false
		for _, l := range lines {
			found = found || (strings.Contains(l, want[0]) && strings.HasSuffix(l, want[1]))
		}
		if !found {
			t.Errorf("gap report through the plugin lacks %q ... %q: %q", want[0], want[1], res.stderr)
		}
	}
	if n := strings.Count(res.stderr, "gap here"); n != 2 {
		t.Errorf("gap report through the plugin: %d gaps, want node-a's and node-z's: %q", n, res.stderr)
	}

	// --follow streams through the service proxy too.
	follow := exec.Command("/usr/bin/kubectl", "connaudit", "query", "--podname", "mypod", "-f", "-o", "json")
	follow.Env = []string{"PATH=" + filepath.Join(prefix, "bin") + ":/usr/bin:/bin", "HOME=" + t.TempDir(), "KUBECONFIG=" + cluster.Kubeconfig()}
	out := &syncWriter{w: &strings.Builder{}}
	var followErr strings.Builder
	follow.Stdout, follow.Stderr = out, &followErr
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer follow.Process.Kill()
	for i := 0; !strings.Contains(out.String(), `"network.local.port":42100`); i++ {
		if i == 90 {
			t.Fatalf("kubectl connaudit query -f printed nothing new in 90 s: %q, stderr %q", out.String(), followErr.String())
		}
		if i < 10 {
			live := ag.Connect(time.Now(), recordgen.Source{Pod: pod, Comm: "curl", PID: 42},
				recordgen.Conn{SrcAddr: "10.0.0.7", SrcPort: 42100, DstAddr: "1.0.0.1", DstPort: 443, Outcome: "established"})
			if err := recordgen.Post(t.Context(), col.HTTPEndpoint()+"/v1/logs", []recordgen.Record{live}); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Second)
	}
	_ = follow.Process.Signal(syscall.SIGINT)
	_ = follow.Wait()

	// advise reports the same gaps as query, the cluster's nodes included
	// (node-z ran no agent), so that the two agree about one window.
	res = kubectl("connaudit", "advise", "networkpolicy", "-n", "default", "--since", "1h")
	if res.code != 0 || !strings.Contains(res.stdout+res.stderr, "node node-z") {
		t.Errorf("kubectl connaudit advise networkpolicy: exit %d; its gaps lack node-z, which query reports\nstdout %s\nstderr %s", res.code, res.stdout, res.stderr)
	}

	res = kubectl("connaudit", "coverage", "--since", "1h", "-o", "json")
	if res.code != 0 || !strings.Contains(res.stdout, `"nodes":["node-a","node-z"]`) || !strings.Contains(res.stdout, `"instance":"inst-kubectl"`) {
		t.Errorf("kubectl connaudit coverage: exit %d\nstdout %s\nstderr %s", res.code, res.stdout, res.stderr)
	}

	// Reading is authorized by RBAC on the service proxy: a user without
	// the connaudit-reader bindings is told which permission is missing;
	// with them (k8s/deploy/base/reader-rbac.yaml, bound as README says),
	// the same query answers, nodes included.
	res = kubectl("connaudit", "query", "--podname", "mypod", "--since", "1h", "--as", "alice")
	if res.code == 0 || !strings.Contains(res.stderr, `cannot get resource "services/proxy"`) || !strings.Contains(res.stderr, "--role=connaudit-reader") {
		t.Errorf("query as a user without the reader role: exit %d, stderr %q; want a refusal naming services/proxy and the role", res.code, res.stderr)
	}
	for _, args := range [][]string{
		{"apply", "-f", filepath.Join(root, "k8s/deploy/base/reader-rbac.yaml")},
		{"create", "rolebinding", "alice-connaudit-reader", "-n", "connaudit", "--role=connaudit-reader", "--user=alice"},
		{"create", "clusterrolebinding", "alice-connaudit-reader", "--clusterrole=connaudit-reader", "--user=alice"},
	} {
		if res := kubectl(args...); res.code != 0 {
			t.Fatalf("kubectl %q: %s", args, res.stderr)
		}
	}
	res = kubectl("connaudit", "query", "--podname", "mypod", "--since", "1h", "--as", "alice")
	if res.code != 0 || strings.Count(res.stdout, "mypod") < 3 || strings.Contains(res.stderr, "cannot list the cluster's nodes") || !strings.Contains(res.stderr, "node node-z") {
		t.Errorf("query as a user with the reader role: exit %d\nstdout %s\nstderr %s", res.code, res.stdout, res.stderr)
	}

	res = kubectl("connaudit", "query", "--backend-service", "connaudit/nothere:9428")
	if res.code == 0 || !strings.Contains(res.stderr, "connaudit/nothere:9428") || !strings.Contains(res.stderr, "--server") {
		t.Errorf("a missing Service: exit %d, stderr %q; want an error naming the service and --server", res.code, res.stderr)
	}
}
