package deploy

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/connaudit/connaudit/caps"
	"github.com/connaudit/connaudit/internal/kubetest"
	"github.com/connaudit/connaudit/internal/netnstest"
	"github.com/connaudit/connaudit/internal/teststack"
	"github.com/connaudit/connaudit/k8s/cgroup"

	"github.com/connaudit/connaudit/internal/ports"
)

// podAgent is the agent binary started the way the DaemonSet's container
// runs: exactly the capabilities the DaemonSet adds (bounding, permitted and
// effective; inheritable and ambient empty, as containerd sets them), no new
// privileges, in a private mount namespace where the host's /proc is a
// read-only bind mount at <dir>/host/proc, the cgroup filesystem a read-only
// one at <dir>/host/sys/fs/cgroup, the host's bpffs at <dir>/host/sys/fs/bpf
// (each where the DaemonSet mounts it, under dir), a sysfs of its own,
// read-only, at /sys (so /sys/fs/bpf is no bpffs) with tracefs read-only on
// it, and the ServiceAccount token where a pod has it (in-cluster
// configuration).
type podAgent struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	addr   string
	dir    string
	done   chan struct{}
}

type podAgentOptions struct {
	capabilities []string // as the DaemonSet names them: BPF, PERFMON, ...
	env          []string // added after the DaemonSet's environment
	apiServer    string   // host:port; with token and ca, the in-cluster configuration
	token, ca    string
	nodeName     string
	hostBPF      string // the host's /sys/fs/bpf: a directory of the bpffs (or not, to test that error)
}

func startPodAgent(t *testing.T, opts podAgentOptions) *podAgent {
	t.Helper()
	ds := render(t, "k8s/deploy").daemonSet(t, "connaudit-agent")
	ctr := ds.Spec.Template.Spec.Containers[0]
	dir := t.TempDir()
	a := &podAgent{stderr: &bytes.Buffer{}, addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), dir: dir, done: make(chan struct{})}

	// The DaemonSet's environment, with the host paths moved under dir and
	// the downward API values filled in.
	mounted := map[string]string{ // the DaemonSet's path -> where the test mounts it
		"/host/proc":               dir + "/host/proc",
		"/host/sys/fs/cgroup":      dir + "/host/sys/fs/cgroup",
		"/var/lib/connaudit/spool": dir + "/spool",
		// The projected token for the gateway; this test's collector is
		// the dev one, which does not review it (auth_test.go does).
		"/var/run/secrets/connaudit/token": dir + "/gateway-token/token",
		// The gateway's CA, not published (this test's collector is the
		// dev one, over http): an optional ConfigMap volume, mounted empty.
		"/var/run/connaudit/gateway-ca/ca.crt": dir + "/gateway-ca/ca.crt",
	}
	bpfMount := hostPathMount(t, ds.Spec.Template.Spec, "/sys/fs/bpf")
	env := []string{"PATH=/usr/bin:/bin"}
	for _, e := range ctr.Env {
		v := e.Value
		switch {
		case e.Name == "CONNAUDIT_NODE_NAME":
			v = opts.nodeName
		case e.Name == "CONNAUDIT_WITNESS_NAMESPACE":
			v = namespace // metadata.namespace
		case e.Name == "GOMEMLIMIT":
			v = strconv.FormatInt(ctr.Resources.Limits.Memory().Value(), 10)
		case e.Name == "CONNAUDIT_LISTEN_ADDR":
			v = a.addr // the pod's 0.0.0.0 would be the host's here
		case strings.HasPrefix(v, bpfMount+"/"):
			v = dir + v
		case mounted[v] != "":
			v = mounted[v]
		case e.ValueFrom != nil:
			t.Fatalf("DaemonSet env %s comes from %v, which this test does not fill in", e.Name, e.ValueFrom)
		}
		env = append(env, e.Name+"="+v)
	}
	env = append(env, "KUBERNETES_SERVICE_HOST="+strings.Split(opts.apiServer, ":")[0], "KUBERNETES_SERVICE_PORT="+strings.Split(opts.apiServer, ":")[1])
	env = append(env, opts.env...)
	for _, p := range []string{"host/proc", "host/sys/fs/cgroup", bpfMount, "sa", "gateway-token", "gateway-ca"} {
		must(t, os.MkdirAll(filepath.Join(dir, p), 0o755), "mkdir")
	}
	// As a kubelet's hostPath DirectoryOrCreate makes it.
	must(t, os.Mkdir(filepath.Join(dir, "spool"), 0o755), "mkdir spool")
	writeFile(t, dir+"/sa", "token", opts.token)
	writeFile(t, dir+"/sa", "ca.crt", opts.ca)
	writeFile(t, dir+"/sa", "namespace", namespace)
	writeFile(t, dir+"/gateway-token", "token", opts.token)

	v2, err := cgroup.FindV2Mount()
	must(t, err, "find cgroup v2")
	cgroupFS := v2
	if filepath.Base(v2) == "unified" {
		cgroupFS = filepath.Dir(v2) // the whole hybrid hierarchy, as the hostPath /sys/fs/cgroup
	}
	var capSet []string
	for _, c := range opts.capabilities {
		capSet = append(capSet, "+"+strings.ToLower(c))
	}
	script := strings.Join([]string{
		"set -e",
		// hostPath /proc, read-only.
		fmt.Sprintf("mount --bind -o ro /proc %s/host/proc", dir),
		// hostPath /sys/fs/cgroup, read-only all the way down.
		fmt.Sprintf("mount --rbind %s %s/host/sys/fs/cgroup", cgroupFS, dir),
		fmt.Sprintf("findmnt -R -l -n -o TARGET %s/host/sys/fs/cgroup | while read m; do mount -o remount,bind,ro \"$m\"; done", dir),
		// hostPath /sys/fs/bpf, where the DaemonSet mounts it.
		fmt.Sprintf("mount --bind %s %s%s", opts.hostBPF, dir, bpfMount),
		// The container's own sysfs, read-only: its /sys/fs/bpf is no bpffs.
		// (A container has a sysfs of its network namespace; here, in the
		// host's, the same sysfs mounted again on a tmpfs has none of the
		// host's mounts on it.)
		"mount -t tmpfs tmpfs /sys",
		"mount -t sysfs -o ro sysfs /sys",
		// hostPath /sys/kernel/tracing, read-only, on a directory sysfs has.
		"mount -t tracefs -o ro tracefs /sys/kernel/tracing",
		// The ServiceAccount volume of a pod.
		"mount -t tmpfs -o mode=0755 tmpfs /run",
		"mkdir -p /run/secrets/kubernetes.io/serviceaccount",
		fmt.Sprintf("mount --bind -o ro %s/sa /run/secrets/kubernetes.io/serviceaccount", dir),
		// The image's entrypoint with the container's arguments (none).
		fmt.Sprintf("exec setpriv --no-new-privs --inh-caps=-all --ambient-caps=-all --bounding-set=-all,%s -- %s %s",
			strings.Join(capSet, ","), teststack.Binary(t, "connaudit-agent"), strings.Join(ctr.Args, " ")),
	}, "\n")
	a.cmd = exec.Command("unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script)
	a.cmd.Env = env
	a.cmd.Stdout = os.Stderr
	a.cmd.Stderr = a.stderr
	must(t, a.cmd.Start(), "start the agent")
	go func() { _ = a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		a.stop()
		if t.Failed() {
			t.Logf("agent stderr:\n%s", a.stderr.String())
		}
	})
	return a
}

// hostPathMount returns where spec mounts the hostPath volume of hostPath.
func hostPathMount(t *testing.T, spec corev1.PodSpec, hostPath string) string {
	t.Helper()
	for _, v := range spec.Volumes {
		if v.HostPath == nil || v.HostPath.Path != hostPath {
			continue
		}
		for _, m := range spec.Containers[0].VolumeMounts {
			if m.Name == v.Name {
				return m.MountPath
			}
		}
	}
	t.Fatalf("the DaemonSet mounts no hostPath %s", hostPath)
	return ""
}

func (a *podAgent) stop() {
	select {
	case <-a.done:
		return
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
}

// waitReady waits for /readyz, failing early if the agent exits.
func (a *podAgent) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-a.done:
			t.Fatalf("the agent exited: %v\n%s", a.cmd.ProcessState, a.stderr.String())
		default:
		}
		resp, err := http.Get("http://" + a.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the agent is not ready after a minute:\n%s", a.stderr.String())
}

// capabilityMask is the capability set as /proc/<pid>/status shows it.
func capabilityMask(t *testing.T, names []string) uint64 {
	t.Helper()
	bits := map[string]int{"BPF": 39, "PERFMON": 38, "SYS_PTRACE": 19, "SYS_ADMIN": 21, "NET_ADMIN": 12}
	var m uint64
	for _, n := range names {
		b, ok := bits[n]
		if !ok {
			t.Fatalf("capability %s: unknown to the test", n)
		}
		m |= 1 << b
	}
	return m
}

func procCaps(t *testing.T, pid int) map[string]uint64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	must(t, err, "read the agent's status")
	got := map[string]uint64{}
	for line := range strings.SplitSeq(string(data), "\n") {
		for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs"} {
			if v, ok := strings.CutPrefix(line, k+":"); ok {
				n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
				must(t, err, "parse %s", line)
				got[k] = n
			}
		}
	}
	return got
}

// daemonSetCaps are the capabilities the DaemonSet adds.
func daemonSetCaps(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, c := range render(t, "k8s/deploy").daemonSet(t, "connaudit-agent").Spec.Template.Spec.Containers[0].SecurityContext.Capabilities.Add {
		names = append(names, string(c))
	}
	return names
}

// agentCluster is a real API server with k8s/deploy applied, a node, and a
// pod on it whose container is a real cgroup; and a token of the agent's
// ServiceAccount from the TokenRequest API.
type agentCluster struct {
	cluster  *kubetest.Cluster
	pod      *corev1.Pod
	cgroup   string
	token    string
	ca       string
	nodeName string
}

func newAgentCluster(t *testing.T) *agentCluster {
	t.Helper()
	c := kubetest.Start(t, kubetest.Options{})
	applyAll(t, c)
	ctx := t.Context()
	client := c.Client()
	w := &agentCluster{cluster: c, nodeName: "deploy-node"}
	_, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: w.nodeName}}, metav1.CreateOptions{})
	must(t, err, "create node")
	_, err = client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{})
	must(t, err, "create namespace")
	containerID := strings.Repeat("ab12", 16)
	pod, err := client.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: w.nodeName, Containers: []corev1.Container{{Name: "app", Image: "registry.example/web:1.0",
			SecurityContext: &corev1.SecurityContext{RunAsUser: ptr.To[int64](65534)}}}},
	}, metav1.CreateOptions{})
	must(t, err, "create pod")
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP, pod.Status.PodIPs = "198.51.100.40", []corev1.PodIP{{IP: "198.51.100.40"}}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", Image: "registry.example/web:1.0", ContainerID: "containerd://" + containerID, Ready: true}}
	w.pod, err = client.CoreV1().Pods("shop").UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	must(t, err, "update pod status")
	w.cgroup = podCgroup(t, string(w.pod.UID), containerID)

	// The agent's own pod on the node: its token is bound to it, as the
	// kubelet projects it, so the API server knows the agent's node (the
	// witness policy needs that).
	agentPod, err := client.CoreV1().Pods(namespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "connaudit-agent-" + w.nodeName},
		Spec: corev1.PodSpec{NodeName: w.nodeName, ServiceAccountName: "connaudit-agent",
			Containers: []corev1.Container{{Name: "agent", Image: "registry.example/connaudit:1"}}},
	}, metav1.CreateOptions{})
	must(t, err, "create the agent's pod")
	tr, err := client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, "connaudit-agent", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600),
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: agentPod.Name, UID: agentPod.UID}},
	}, metav1.CreateOptions{})
	must(t, err, "TokenRequest for connaudit-agent")
	w.token = tr.Status.Token
	ca, err := os.ReadFile(c.Config().CAFile)
	must(t, err, "read the API server's CA")
	w.ca = string(ca)
	return w
}

func (w *agentCluster) apiServer() string {
	return strings.TrimPrefix(w.cluster.Config().Host, "https://")
}

// podCgroup makes the kubelet's systemd-driver cgroup of a besteffort
// containerd container, removed when the test ends.
func podCgroup(t *testing.T, podUID, containerID string) string {
	t.Helper()
	path, err := cgroup.FindV2Mount()
	must(t, err, "find cgroup v2")
	for _, d := range []string{"kubepods.slice", "kubepods-besteffort.slice",
		"kubepods-besteffort-pod" + strings.ReplaceAll(podUID, "-", "_") + ".slice", "cri-containerd-" + containerID + ".scope"} {
		path = filepath.Join(path, d)
		if err := os.Mkdir(path, 0o755); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
		created := path
		t.Cleanup(func() { _ = os.Remove(created) })
	}
	return path
}

// The agent run as the DaemonSet runs it (capabilities, mounts, in-cluster
// ServiceAccount token) syncs its informers without a forbidden error,
// enriches a pod's connect, and reads the executable of a process of
// another user (uid 65534).
func TestAgentAsDaemonSet(t *testing.T) {
	w := newAgentCluster(t)
	vl := teststack.StartVictoriaLogs(t)
	col := teststack.StartCollector(t, vl.URL())
	hostBPF := fmt.Sprintf("/sys/fs/bpf/connaudit-deploytest-%d", os.Getpid())
	t.Cleanup(func() { os.RemoveAll(hostBPF) })
	must(t, os.Mkdir(hostBPF, 0o700), "make the test's part of the host's bpffs")

	capNames := daemonSetCaps(t)
	a := startPodAgent(t, podAgentOptions{
		capabilities: capNames, apiServer: w.apiServer(), token: w.token, ca: w.ca, nodeName: w.nodeName, hostBPF: hostBPF,
		env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + col.HTTPEndpoint(), "CONNAUDIT_EXPORT_MAX_BACKOFF=500ms", "CONNAUDIT_SPOOL_FSYNC_INTERVAL=10ms"},
	})
	a.waitReady(t)

	// Exactly the DaemonSet's capabilities, no more.
	want := capabilityMask(t, capNames)
	got := procCaps(t, a.cmd.Process.Pid)
	for set, mask := range map[string]uint64{"CapBnd": want, "CapPrm": want, "CapEff": want, "CapInh": 0, "CapAmb": 0, "NoNewPrivs": 1} {
		if got[set] != mask {
			t.Errorf("agent %s = %x; want %x (%v)", set, got[set], mask, capNames)
		}
	}

	// A process of the pod, running as another user, connects.
	listener := netnstest.Listen(t, "tcp4", "127.0.0.1:0")
	connectAsNobody := func() {
		dirFD, err := os.Open(w.cgroup)
		must(t, err, "open the pod's cgroup")
		defer dirFD.Close()
		cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
			"/bin/bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d; sleep 1; exit 0", listener.Port())) // bash (not exec'd into sleep) while the agent reads /proc
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dirFD.Fd())}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("connect as uid 65534 from the pod: %v: %s", err, out)
		}
	}
	row := waitForRow(t, vl, fmt.Sprintf(`event_name:="tcp.connect" network.peer.port:=%d k8s.pod.name:="web-0"`, listener.Port()), connectAsNobody)
	bash, err := filepath.EvalSymlinks("/bin/bash")
	must(t, err, "resolve /bin/bash")
	for k, v := range map[string]string{
		"k8s.namespace.name": "shop", "k8s.pod.uid": string(w.pod.UID), "k8s.container.name": "app", "k8s.node.name": w.nodeName,
		"connaudit.source.kind": "pod", "process.user.id": "65534", "process.executable.path": bash,
	} {
		if row[k] != v {
			t.Errorf("pod record: %s = %q; want %q", k, row[k], v)
		}
	}

	// Host processes: in the host's network namespace, and in another one.
	hostConn, err := net.Dial("tcp4", listener.String())
	must(t, err, "connect from the host")
	hostConn.Close()
	row = waitForRow(t, vl, fmt.Sprintf(`event_name:="tcp.connect" network.peer.port:=%d connaudit.source.kind:="host"`, listener.Port()), func() {})
	if row["connaudit.host_network"] != "true" {
		t.Errorf("host process in the host's network namespace: connaudit.host_network = %q; want true", row["connaudit.host_network"])
	}
	hosts := netnstest.New(t)
	server := hosts.Server.Listen(t, "tcp4", netnstest.ServerV4.String()+":0")
	if out, err := hosts.Client.Command("/bin/bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%d", server.Addr(), server.Port())).CombinedOutput(); err != nil {
		t.Fatalf("connect from another network namespace: %v: %s", err, out)
	}
	row = waitForRow(t, vl, fmt.Sprintf(`event_name:="tcp.connect" network.peer.port:=%d connaudit.source.kind:="host"`, server.Port()), func() {})
	if row["connaudit.host_network"] != "false" {
		t.Errorf("host process in another network namespace: connaudit.host_network = %q; want false", row["connaudit.host_network"])
	}

	// The informers synced, and nothing was forbidden.
	a.stop()
	log := a.stderr.String()
	if !strings.Contains(log, "Kubernetes caches synced") {
		t.Errorf("the agent never logged that its caches synced:\n%s", log)
	}
	if strings.Contains(strings.ToLower(log), "forbidden") {
		t.Errorf("the agent's log has a forbidden error:\n%s", log)
	}
	// The node's witness names the instance, with the key of its start
	// record and its final checkpoint, the one before its stop record.
	checkWitness(t, w, vl)

	// The capture is pinned in the agent's own directory of the host's bpffs.
	pins, err := filepath.Glob(filepath.Join(hostBPF, "connaudit", "v*-*", "link_*"))
	must(t, err, "list the pins")
	if len(pins) == 0 {
		entries, _ := filepath.Glob(filepath.Join(hostBPF, "*", "*"))
		t.Errorf("no pinned links under %s/connaudit: %v", hostBPF, entries)
	}
	// The spool, made 0755 by "the kubelet", is the agent's only.
	info, err := os.Stat(filepath.Join(a.dir, "spool"))
	must(t, err, "stat the spool")
	if info.Mode().Perm() != 0o700 {
		t.Errorf("spool directory mode %o; want 700", info.Mode().Perm())
	}
}

// Without any one of the DaemonSet's capabilities, the agent stops at start
// and names it; without CAP_NET_ADMIN it captures connects without DNS names,
// and says why.
func TestAgentNamesAMissingCapability(t *testing.T) {
	w := newAgentCluster(t)
	col := teststack.StartCollector(t, "http://127.0.0.1:1") // never reached
	all := daemonSetCaps(t)
	for _, missing := range all {
		t.Run(missing, func(t *testing.T) {
			hostBPF := fmt.Sprintf("/sys/fs/bpf/connaudit-deploytest-%d-%s", os.Getpid(), missing)
			t.Cleanup(func() { os.RemoveAll(hostBPF) })
			must(t, os.Mkdir(hostBPF, 0o700), "make the test's part of the host's bpffs")
			var fewer []string
			for _, c := range all {
				if c != missing {
					fewer = append(fewer, c)
				}
			}
			a := startPodAgent(t, podAgentOptions{
				capabilities: fewer, apiServer: w.apiServer(), token: w.token, ca: w.ca, nodeName: w.nodeName, hostBPF: hostBPF,
				env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + col.HTTPEndpoint()},
			})
			if "CAP_"+missing == caps.DNS.Name {
				// DNS names alone are lost: connect capture goes on.
				a.waitReady(t)
				a.stop()
				if msg := a.stderr.String(); !strings.Contains(msg, "DNS capture disabled") || !strings.Contains(msg, "missing capability CAP_NET_ADMIN (to ") {
					t.Errorf("without CAP_NET_ADMIN the agent said:\n%s", msg)
				}
				return
			}
			select {
			case <-a.done:
			case <-time.After(time.Minute):
				t.Fatal("the agent is still running after a minute without CAP_" + missing)
			}
			if a.cmd.ProcessState.Success() {
				t.Fatalf("the agent exited 0 without CAP_%s", missing)
			}
			if msg := a.stderr.String(); !strings.Contains(msg, "missing capability CAP_"+missing+" (to ") {
				t.Errorf("without CAP_%s the agent said:\n%s", missing, msg)
			}
		})
	}
	// The capabilities the agent checks are the ones the DaemonSet adds.
	if len(caps.Agent)+1 != len(all) {
		t.Errorf("the agent checks %d capabilities and CAP_NET_ADMIN for DNS, the DaemonSet adds %d", len(caps.Agent), len(all))
	}
}

// On a host without bpffs at /sys/fs/bpf, the kubelet's hostPath (type
// Directory) is sysfs's empty directory: the agent stops at start and says
// what is wrong and what to do, naming CONNAUDIT_BPF_PIN_DIR.
func TestAgentWithoutHostBPFFS(t *testing.T) {
	w := newAgentCluster(t)
	col := teststack.StartCollector(t, "http://127.0.0.1:1") // never reached
	a := startPodAgent(t, podAgentOptions{
		capabilities: daemonSetCaps(t), apiServer: w.apiServer(), token: w.token, ca: w.ca, nodeName: w.nodeName,
		hostBPF: t.TempDir(), // no bpffs
		env:     []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + col.HTTPEndpoint()},
	})
	select {
	case <-a.done:
	case <-time.After(time.Minute):
		t.Fatal("the agent is still running after a minute without bpffs")
	}
	if a.cmd.ProcessState.Success() {
		t.Fatal("the agent exited 0 without bpffs")
	}
	for _, want := range []string{"CONNAUDIT_BPF_PIN_DIR", "/host/sys/fs/bpf is not on a bpffs", "BPF_FS_MAGIC 0xcafe4a11", "mount -t bpf bpf /sys/fs/bpf"} {
		if !strings.Contains(a.stderr.String(), want) {
			t.Errorf("the agent's error lacks %q:\n%s", want, a.stderr.String())
		}
	}
}

// waitForRow repeats act until a record matching query arrives.
func waitForRow(t *testing.T, vl *teststack.VictoriaLogs, query string, act func()) map[string]string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		act()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		rows, err := vl.Query(ctx, query)
		cancel()
		if err == nil && len(rows) > 0 {
			return rows[0]
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("no record matches %s within a minute", query)
	return nil
}

func freePort(t *testing.T) int {
	t.Helper()
	port, err := ports.Free()
	must(t, err, "pick a free port")
	return port
}
