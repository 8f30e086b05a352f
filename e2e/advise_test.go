package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mattfenwick/cyclonus/pkg/matcher"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/connaudit/connaudit/advise/check"
	"github.com/connaudit/connaudit/advise/history"
	"github.com/connaudit/connaudit/backend/victorialogs"
	"github.com/connaudit/connaudit/internal/kubetest"
	"github.com/connaudit/connaudit/internal/netnstest"
	"github.com/connaudit/connaudit/internal/teststack"
)

// The generated policies are judged by cyclonus' matcher, an evaluator that
// advise does not use (advise check uses kube-network-policies).
func judge(t *testing.T, policies []*networkingv1.NetworkPolicy, src, dst *matcher.TrafficPeer, port int, portName string) bool {
	t.Helper()
	tr := &matcher.Traffic{Source: src, Destination: dst, ResolvedPort: port, ResolvedPortName: portName, Protocol: corev1.ProtocolTCP}
	return matcher.BuildNetworkPolicies(false, policies).IsTrafficAllowed(tr).IsAllowed()
}

func podPeer(namespace string, labels map[string]string, ip netip.Addr) *matcher.TrafficPeer {
	return &matcher.TrafficPeer{IP: ip.String(), Internal: &matcher.InternalPeer{PodLabels: labels, Namespace: namespace,
		NamespaceLabels: map[string]string{"kubernetes.io/metadata.name": namespace}}}
}

func hostPeer(ip netip.Addr) *matcher.TrafficPeer { return &matcher.TrafficPeer{IP: ip.String()} }

// connaudit runs bin/connaudit and returns its stdout, stderr and exit error.
func connaudit(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, teststack.Binary(t, "connaudit"), args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), "KUBECONFIG=/nonexistent")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// connectFrom runs bash in cgroup (a pod's container; "" for a host process)
// inside the client namespace, and connects once to addr, whatever the
// outcome.
func connectFrom(t *testing.T, hosts *netnstest.Hosts, cgroupDir string, addr netip.AddrPort) {
	t.Helper()
	cmd := hosts.Client.Command("/bin/bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%d", addr.Addr(), addr.Port()))
	if cgroupDir != "" {
		dir, err := os.Open(cgroupDir)
		if err != nil {
			t.Fatal(err)
		}
		defer dir.Close()
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	}
	_ = cmd.Run() // a refused or timed-out connect fails bash: that is the point
}

// runningPod creates a running pod in namespace with its IP and container ids.
func runningPod(t *testing.T, c kubernetes.Interface, namespace string, pod *corev1.Pod, ip netip.Addr, containerIDs map[string]string) *corev1.Pod {
	t.Helper()
	created, err := c.CoreV1().Pods(namespace).Create(t.Context(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status.Phase = corev1.PodRunning
	created.Status.PodIP = ip.String()
	created.Status.PodIPs = []corev1.PodIP{{IP: ip.String()}}
	for _, ctr := range created.Spec.Containers {
		created.Status.ContainerStatuses = append(created.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: ctr.Name, Image: ctr.Image, ContainerID: containerIDs[ctr.Name], Ready: true})
	}
	updated, err := c.CoreV1().Pods(namespace).UpdateStatus(t.Context(), created, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return updated
}

// applyForReal has the API server accept the policies: a server dry run,
// then a real create.
func applyForReal(t *testing.T, c kubernetes.Interface, policies []*networkingv1.NetworkPolicy) {
	t.Helper()
	for _, np := range policies {
		api := c.NetworkingV1().NetworkPolicies(np.Namespace)
		if _, err := api.Create(t.Context(), np.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Fatalf("server dry run of %s/%s: %v", np.Namespace, np.Name, err)
		}
		if _, err := api.Create(t.Context(), np.DeepCopy(), metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s/%s: %v", np.Namespace, np.Name, err)
		}
	}
}

func parsePolicies(t *testing.T, yaml string) []*networkingv1.NetworkPolicy {
	t.Helper()
	ps, _, err := check.Load([]string{"-"}, strings.NewReader(yaml), "")
	if err != nil {
		t.Fatalf("the advice does not parse: %v\n%s", err, yaml)
	}
	return ps
}

// waitRows polls VictoriaLogs until logsql matches a row or timeout passes.
func waitRows(vl *teststack.VictoriaLogs, logsql string, timeout time.Duration) ([]map[string]string, error) {
	deadline := time.Now().Add(timeout)
	for {
		rows, err := vl.Query(context.Background(), logsql)
		if (err == nil && len(rows) > 0) || time.Now().After(deadline) {
			return rows, err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func window(from time.Time) []string {
	return []string{"--from", from.UTC().Format(time.RFC3339Nano), "--to", time.Now().Add(time.Minute).UTC().Format(time.RFC3339Nano)}
}

// The tcpconnect walkthrough, done from history with the real agent: pod
// mypod reaches an external host on 80 and 443 and times out on a second
// host; the advice allows exactly the first host on those ports, and advise
// check of that advice over the same history denies only the timeout.
func TestAdviseWalkthrough(t *testing.T) {
	cluster := kubetest.Start(t, kubetest.Options{})
	c := cluster.Client()
	hosts := netnstest.New(t)
	web := netip.MustParseAddr("203.0.113.5")
	hosts.AddHost(t, web)
	for _, port := range []int{80, 443} {
		hosts.Server.Listen(t, "tcp4", fmt.Sprintf("0.0.0.0:%d", port))
	}
	ctx := t.Context()
	if _, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: testNode}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	containerID := randomHex(64)
	pod := runningPod(t, c, "default", &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "mypod", Labels: map[string]string{"run": "mypod"}},
		Spec:       corev1.PodSpec{NodeName: testNode, Containers: []corev1.Container{{Name: "mypod", Image: "busybox"}}},
	}, netnstest.ClientV4, map[string]string{"mypod": "containerd://" + containerID})
	cg := podCgroup(t, string(pod.UID), containerID)

	s := startStack(t, "CONNAUDIT_KUBERNETES=on", "KUBECONFIG="+cluster.Kubeconfig())
	http, https, other := netip.AddrPortFrom(web, 80), netip.AddrPortFrom(web, 443), netip.AddrPortFrom(netnstest.BlackholeV4, 80)
	// The window starts once the agent's caches classify peers: before,
	// they are of kind unknown.
	waitForRecord(t, s.vl, `event_name:="tcp.connect" k8s.pod.name:="mypod" connaudit.peer.kind:="external"`, func() { connectFrom(t, hosts, cg, https) })
	from := time.Now()
	connectFrom(t, hosts, cg, http)
	connectFrom(t, hosts, cg, https)
	connectFrom(t, hosts, cg, other)
	if rows, err := waitRows(s.vl, fmt.Sprintf(`event_name:="tcp.connect" k8s.pod.name:="mypod" network.peer.address:=%q connaudit.outcome:="timeout"`, other.Addr()), time.Minute); err != nil || len(rows) == 0 {
		// What the trail holds for that address, whatever its outcome or identity.
		all, _ := s.vl.Query(ctx, fmt.Sprintf(`network.peer.address:=%q`, other.Addr()))
		t.Fatalf("no timed-out connect of mypod to %s (%v); the trail has for that address: %v", other.Addr(), err, all)
	}
	s.vl.WaitFor(t, fmt.Sprintf(`event_name:="tcp.connect" k8s.pod.name:="mypod" network.peer.port:=443`), 1, time.Minute)

	server := []string{"--server", s.vl.URL()}
	advice, stderr, err := connaudit(t, "", append(append([]string{"advise", "networkpolicy", "-n", "default", "-l", "run=mypod", "--policy-types", "egress"}, server...), window(from)...)...)
	if err != nil {
		t.Fatalf("advise networkpolicy: %v\n%s", err, stderr)
	}
	policies := parsePolicies(t, advice)
	if len(policies) != 1 || policies[0].Name != "mypod-connaudit" || policies[0].Spec.PodSelector.MatchLabels["run"] != "mypod" {
		t.Fatalf("want one policy mypod-connaudit selecting run=mypod:\n%s", advice)
	}
	for _, want := range []string{"cidr: 203.0.113.5/32", "- port: 80", "- port: 443",
		"# egress: timeout 1 time to 203.0.113.20:80, not allowed", "connaudit.io/trail-gaps: none"} {
		if !strings.Contains(advice, want) {
			t.Errorf("advice lacks %q:\n%s", want, advice)
		}
	}
	src := podPeer("default", pod.Labels, netnstest.ClientV4)
	for _, tc := range []struct {
		to   netip.AddrPort
		want bool
	}{
		{http, true}, {https, true}, {other, false},
		{netip.AddrPortFrom(web, 22), false}, {netip.AddrPortFrom(netnstest.BlackholeV4, 443), false},
	} {
		if got := judge(t, policies, src, hostPeer(tc.to.Addr()), int(tc.to.Port()), ""); got != tc.want {
			t.Errorf("%s allowed = %v, want %v", tc.to, got, tc.want)
		}
	}
	applyForReal(t, c, policies)

	// Nothing of the selection in the history: an error, and no deny-all
	// policy unless asked for.
	out, stderr, err := connaudit(t, "", append(append([]string{"advise", "networkpolicy", "-n", "default", "-l", "run=nobody"}, server...), window(from)...)...)
	if err == nil || out != "" || !strings.Contains(stderr, "no connections of the selection in the history") || !strings.Contains(stderr, "--allow-empty") {
		t.Errorf("advise without history: err %v, stdout %q, stderr %q", err, out, stderr)
	}
	out, _, err = connaudit(t, "", append(append([]string{"advise", "networkpolicy", "-n", "default", "-l", "run=nobody", "--allow-empty"}, server...), window(from)...)...)
	if err != nil || !strings.Contains(out, "run: nobody") {
		t.Errorf("advise --allow-empty: err %v\n%s", err, out)
	}

	// The retroactive last step of the walkthrough.
	dir := t.TempDir()
	file := filepath.Join(dir, "mypod-policy.yaml")
	if err := os.WriteFile(file, []byte(advice), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, err = connaudit(t, "", append(append([]string{"advise", "check", "-f", file}, server...), window(from)...)...)
	if err != nil {
		t.Fatalf("advise check of the advice: %v\n%s\n%s", err, out, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "default/pod/mypod") || !strings.Contains(lines[1], "203.0.113.20") ||
		!strings.Contains(lines[1], "timeout") || !strings.Contains(lines[2], "1 of 3 flows") || !strings.Contains(lines[2], "0 of them had been established") {
		t.Errorf("advise check should deny the timed-out attempt only:\n%s", out)
		b, _ := victorialogs.New(victorialogs.Config{URL: s.vl.URL()})
		h, err := history.Load(ctx, b, history.Selection{From: from, To: time.Now().Add(time.Minute), Namespaces: []string{"default"}})
		t.Logf("the flows of the window: %+v %v", h.Flows, err)
	}

	// A policy without 443 breaks what worked: check says so and fails.
	strict := strings.Replace(advice, "- port: 443\n", "- port: 8443\n", 1)
	out, _, err = connaudit(t, strict, append(append([]string{"advise", "check", "-f", "-"}, server...), window(from)...)...)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 4 || !strings.Contains(out, "established") || !strings.Contains(out, "1 of them had been established") {
		t.Errorf("check of a policy without 443: err %v\n%s", err, out)
	}
}

// Pod to pod in a namespace, to a Service on its named target port, to an
// IPv6 host, and a host process as the source of ingress; one loss record
// in the trail. Records by the real agent, and one loss record sent as OTLP
// through the collector.
func TestAdviseNamespace(t *testing.T) {
	w := newKubeWorld(t)
	ctx := t.Context()
	searchIP, searchPodIP, v6 := netip.MustParseAddr("203.0.113.61"), netip.MustParseAddr("203.0.113.52"), netip.MustParseAddr("2001:db8:2::5")
	for _, a := range []netip.Addr{searchIP, v6} {
		w.hosts.AddHost(t, a)
	}
	w.hosts.Server.Listen(t, "tcp6", "[::]:443")
	if _, err := w.client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "search"},
		Spec: corev1.ServiceSpec{ClusterIP: searchIP.String(), Selector: map[string]string{"app": "search"},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	search := createPod(t, w.client, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "search-0", Labels: map[string]string{"app": "search"}},
		Spec: corev1.PodSpec{NodeName: "peer-node", Containers: []corev1.Container{{Name: "search", Image: "registry.example/search:2",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
	}, searchPodIP, nil)

	// A hostNetwork DaemonSet's pod on this node, its container a real cgroup.
	exporterContainer := randomHex(64)
	exporter := createPod(t, w.client, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "exporter-q8v4z", Labels: map[string]string{"app": "exporter", "controller-revision-hash": "5f7c"},
			OwnerReferences: []metav1.OwnerReference{owner("apps/v1", "DaemonSet", "exporter", "4f3e2d1c-0b9a-4877-8665-544332211000")}},
		Spec: corev1.PodSpec{NodeName: testNode, HostNetwork: true, Containers: []corev1.Container{{Name: "exporter", Image: "registry.example/exporter:1"}}},
	}, netip.MustParseAddr("198.51.100.3"), map[string]string{"exporter": "containerd://" + exporterContainer})
	exporterCgroup := podCgroup(t, string(exporter.UID), exporterContainer)

	s := startKubeAgent(t, w)
	db := netip.AddrPortFrom(dbPodIP, 5432)
	waitForRecord(t, s.vl, fmt.Sprintf(`event_name:="tcp.connect" k8s.pod.name:=%q connaudit.peer.k8s.pod.name:="db-0"`, w.pod.Name),
		func() { connectFrom(t, w.hosts, w.cgroup, db) })
	from := time.Now() // the agent's caches have synced
	for _, a := range []netip.AddrPort{db, netip.AddrPortFrom(searchIP, 80), netip.AddrPortFrom(v6, 443)} {
		connectFrom(t, w.hosts, w.cgroup, a)
	}
	connectFrom(t, w.hosts, "", db) // a host process, from the node's address
	connectFrom(t, w.hosts, exporterCgroup, db)
	s.vl.WaitFor(t, `event_name:="tcp.connect" connaudit.source.kind:="host" connaudit.peer.k8s.pod.name:="db-0"`, 1, time.Minute)
	s.vl.WaitFor(t, `event_name:="tcp.connect" k8s.pod.name:="exporter-q8v4z" connaudit.host_network:="true" connaudit.peer.k8s.pod.name:="db-0"`, 1, time.Minute)
	s.vl.WaitFor(t, fmt.Sprintf(`event_name:="tcp.connect" k8s.pod.name:=%q network.peer.address:=%q`, w.pod.Name, v6), 1, time.Minute)
	s.vl.WaitFor(t, fmt.Sprintf(`event_name:="tcp.connect" k8s.pod.name:=%q connaudit.peer.k8s.service.name:="search"`, w.pod.Name), 1, time.Minute)
	sendLoss(t, s.col, 7)
	s.vl.WaitFor(t, `event_name:="connaudit.loss"`, 1, time.Minute)

	args := append([]string{"advise", "networkpolicy", "-n", ns, "--server", s.vl.URL(), "--kubeconfig", w.cluster.Kubeconfig()}, window(from)...)
	advice, stderr, err := connaudit(t, "", args...)
	if err != nil {
		t.Fatalf("advise networkpolicy: %v\n%s", err, stderr)
	}
	policies := parsePolicies(t, advice)
	var names []string
	for _, p := range policies {
		names = append(names, p.Name)
	}
	if strings.Join(names, ",") != "web-connaudit,search-0-connaudit,db-connaudit" {
		t.Fatalf("policies %v, want web-connaudit, search-0-connaudit (a backend of Service search) and db-connaudit:\n%s", names, advice)
	}
	for _, want := range []string{"port: http", "cidr: 2001:db8:2::5/128", "cidr: 198.51.100.2/32",
		"from a host process on node test-node, by its source address", "from hostNetwork pod shop/exporter-q8v4z on node test-node, by its source address", "Service port 80 -> target port http, taken from the API server at advice time",
		"7 records lost (ring_buffer) on node test-node", "# WARNING: the trail had"} {
		if !strings.Contains(advice, want) {
			t.Errorf("advice lacks %q:\n%s", want, advice)
		}
	}
	for _, want := range []string{"the trail has a gap, so the advice may be incomplete", "daemonset/exporter in namespace shop uses the host network"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	webPeer := podPeer(ns, w.pod.Labels, netnstest.ClientV4)
	dbPeer := podPeer(ns, map[string]string{"app": "db"}, dbPodIP)
	searchPeer := podPeer(ns, search.Labels, searchPodIP)
	for _, tc := range []struct {
		what     string
		src, dst *matcher.TrafficPeer
		port     int
		name     string
		want     bool
	}{
		{"web to db", webPeer, dbPeer, 5432, "", true},
		{"web to db on another port", webPeer, dbPeer, 22, "", false},
		{"web to search's pod on the named target port", webPeer, searchPeer, 8080, "http", true},
		{"web to search's pod on the Service port", webPeer, searchPeer, 80, "", false},
		{"db to search's pod", dbPeer, searchPeer, 8080, "http", false},
		{"web to the IPv6 host", webPeer, hostPeer(v6), 443, "", true},
		{"web to another IPv6 host", webPeer, hostPeer(netip.MustParseAddr("2001:db8:2::6")), 443, "", false},
		{"the host process to db", hostPeer(netnstest.ClientV4), dbPeer, 5432, "", true},
		{"another host to db", hostPeer(netip.MustParseAddr("198.51.100.9")), dbPeer, 5432, "", false},
		{"another pod to db", podPeer(ns, map[string]string{"app": "batch"}, netip.MustParseAddr("198.51.100.10")), dbPeer, 5432, "", false},
	} {
		if got := judge(t, policies, tc.src, tc.dst, tc.port, tc.name); got != tc.want {
			t.Errorf("%s: allowed = %v, want %v", tc.what, got, tc.want)
		}
	}
	applyForReal(t, w.client, policies)

	out, stderr, err := connaudit(t, advice, append([]string{"advise", "check", "-f", "-", "--server", s.vl.URL(), "--kubeconfig", w.cluster.Kubeconfig()}, window(from)...)...)
	if err != nil || !strings.Contains(out, "0 of them had been established") {
		t.Errorf("advise check of the namespace's advice: %v\n%s\n%s", err, out, stderr)
	}
}

// sendLoss sends one connaudit.loss record of the agent's node through the
// collector, as an agent instance that lost n ring buffer events would.
func sendLoss(t *testing.T, col *teststack.Collector, n int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	exp, err := otlploghttp.New(ctx, otlploghttp.WithEndpointURL(col.HTTPEndpoint()+"/v1/logs"), otlploghttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	defer exp.Shutdown(context.Background())
	res := resource.NewSchemaless(
		attribute.String("service.name", "connaudit"),
		attribute.String("service.instance.id", "lossy-"+randomHex(8)),
		attribute.String("k8s.node.name", testNode),
	)
	var c captured
	provider := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(&c))
	var r log.Record
	now := time.Now()
	r.SetTimestamp(now)
	r.SetEventName("connaudit.loss")
	r.SetSeverity(log.SeverityWarn)
	r.SetBody(attribute.StringValue(fmt.Sprintf("lost %d events", n)))
	r.AddAttributes(
		attribute.Int64("connaudit.seq", 1),
		attribute.Int64("connaudit.lost.count", n),
		attribute.String("connaudit.lost.reason", "ring_buffer"),
		attribute.String("connaudit.lost.time.first", now.Add(-time.Second).UTC().Format(time.RFC3339Nano)),
		attribute.String("connaudit.lost.time.last", now.UTC().Format(time.RFC3339Nano)),
	)
	provider.Logger("connaudit").Emit(ctx, r)
	if err := exp.Export(ctx, c.records); err != nil {
		t.Fatalf("export the loss record: %v", err)
	}
}

// captured keeps the records emitted to it, for the test to export itself.
type captured struct{ records []sdklog.Record }

func (c *captured) OnEmit(_ context.Context, r *sdklog.Record) error {
	c.records = append(c.records, r.Clone())
	return nil
}
func (c *captured) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }
func (c *captured) Shutdown(context.Context) error                         { return nil }
func (c *captured) ForceFlush(context.Context) error                       { return nil }
