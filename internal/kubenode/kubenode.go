// Package kubenode starts and stops a real single-node Kubernetes cluster on
// this host: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
// containerd with runc, a kubelet (cgroupfs driver), a CNI bridge,
// kube-proxy, CoreDNS and kube-router as the NetworkPolicy controller, plus two "outside" test hosts in network
// namespaces. Its components run detached with their state under one
// directory, so `make node-up` can leave the node running and Down (`make
// node-down`, or a test's cleanup) removes everything it made from that
// directory alone: processes, containers, mounts, cgroups, iptables chains,
// ipsets, interfaces, namespaces and the sysctls it changed.
//
// Binaries: bin/k8s (`make k8s-bins`), bin/node (`make node-bins`), and
// Debian's runc and containernetworking-plugins.
package kubenode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/keyutil"

	"github.com/connaudit/connaudit/internal/ports"
)

// DefaultDir is where the node keeps its state unless Options.Dir says
// otherwise. One fixed place, so that `make node-down` also cleans up after
// a test that was killed.
const DefaultDir = "/var/lib/connaudit-node"

const apiPort = 6443

// Options configures Up.
type Options struct {
	// Dir is the state directory; default DefaultDir. Up first removes
	// whatever a previous node left there.
	Dir string
	// K8sBinDir holds etcd and kube-apiserver; NodeBinDir holds kubelet,
	// kube-controller-manager, kube-scheduler, kube-proxy, containerd,
	// containerd-shim-runc-v2, ctr, coredns and kube-router.
	K8sBinDir, NodeBinDir string
	// PauseImage is an OCI archive of the sandbox image (`make node-images`).
	PauseImage string
	// Timeout bounds the whole start; default 4 minutes.
	Timeout time.Duration
	// Logf, when set, reports progress.
	Logf func(format string, args ...any)
}

// Node is a running node.
type Node struct {
	dir    string
	opts   Options
	client kubernetes.Interface
}

// state is what Down needs besides the pid files.
type state struct {
	NodeBinDir string
	// Made are host paths outside Dir that did not exist before Up and
	// that the installed workloads may create (the agent's pins and spool).
	Made []string
}

// hostPathsOfWorkloads are created on the host by what the tests install
// (k8s/deploy's agent): removed at Down unless they existed before Up.
// Paths the components write whatever they are told: the shims' sockets
// (/run/containerd/s), libcni's result cache, the kubelet's device-plugin
// directory and its /var/log/containers links.
var hostPathsOfWorkloads = []string{"/sys/fs/bpf/connaudit", "/var/lib/connaudit",
	"/run/containerd", "/var/lib/cni", "/var/lib/kubelet", "/var/log/containers"}

// Up starts the node and waits until it is Ready, its default
// ServiceAccount exists, CoreDNS answers and kube-router enforces
// NetworkPolicies.
func Up(opts Options) (_ *Node, err error) {
	if opts.Dir == "" {
		opts.Dir = DefaultDir
	}
	if opts.Timeout == 0 {
		opts.Timeout = 4 * time.Minute
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	for _, p := range []*string{&opts.Dir, &opts.K8sBinDir, &opts.NodeBinDir, &opts.PauseImage} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return nil, err
		}
		*p = abs
	}
	if err := checkBins(opts); err != nil {
		return nil, err
	}
	if err := Down(opts.Dir); err != nil {
		return nil, fmt.Errorf("clean up a previous node: %w", err)
	}
	n := &Node{dir: opts.Dir, opts: opts}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w (logs in %s)", err, filepath.Join(n.dir, "logs"))
		}
	}()
	for _, d := range []string{"logs", "pids", "cni/net.d", "cni/ipam", "pod-logs", "containerd", "kubelet", "etcd", "certs", "volumes"} {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	st := state{NodeBinDir: opts.NodeBinDir}
	for _, p := range hostPathsOfWorkloads {
		if _, err := os.Stat(p); os.IsNotExist(err) {
			st.Made = append(st.Made, p)
		}
	}
	b, _ := json.Marshal(st)
	if err := os.WriteFile(filepath.Join(n.dir, "state.json"), b, 0o644); err != nil {
		return nil, err
	}
	if err := saveSysctls(n.dir); err != nil {
		return nil, err
	}
	if err := setUpNetwork(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	defer cancel()
	if err := n.startControlPlane(ctx); err != nil {
		return nil, err
	}
	if err := n.startNode(ctx); err != nil {
		return nil, err
	}
	return n, nil
}

func checkBins(o Options) error {
	var missing []string
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if !executable(filepath.Join(o.K8sBinDir, b)) {
			missing = append(missing, filepath.Join(o.K8sBinDir, b)+" (make k8s-bins)")
		}
	}
	for _, b := range []string{"kubelet", "kube-controller-manager", "kube-scheduler", "kube-proxy", "containerd", "containerd-shim-runc-v2", "ctr", "coredns", "kube-router"} {
		if !executable(filepath.Join(o.NodeBinDir, b)) {
			missing = append(missing, filepath.Join(o.NodeBinDir, b)+" (make node-bins)")
		}
	}
	for _, b := range []string{"/usr/sbin/runc (apt-get install runc)", "/usr/lib/cni/bridge (apt-get install containernetworking-plugins)", "/usr/sbin/iptables (apt-get install iptables)", "/usr/sbin/conntrack (apt-get install conntrack)", "/usr/sbin/ipset (apt-get install ipset)"} {
		if p, _, _ := strings.Cut(b, " "); !executable(p) {
			missing = append(missing, b)
		}
	}
	if _, err := os.Stat(o.PauseImage); err != nil {
		missing = append(missing, o.PauseImage+" (make node-images)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("kubenode: missing %s", strings.Join(missing, ", "))
	}
	return nil
}

func executable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// Kubeconfig is a cluster-admin kubeconfig for the node's API server.
func (n *Node) Kubeconfig() string { return filepath.Join(n.dir, "kubeconfig") }

// ContainerdSocket is the node's containerd socket (for ctr --address).
func (n *Node) ContainerdSocket() string {
	return filepath.Join(n.dir, "containerd", "containerd.sock")
}

// Client is a cluster-admin clientset.
func (n *Node) Client() kubernetes.Interface { return n.client }

// LogDir holds each component's log, and pod-logs the containers' logs.
func (n *Node) LogDir() string { return filepath.Join(n.dir, "logs") }

// PodLogDir holds the containers' logs (kubelet's podLogsDir).
func (n *Node) PodLogDir() string { return filepath.Join(n.dir, "pod-logs") }

// ImportImage loads an OCI archive into the node's containerd, where the
// kubelet finds it (namespace k8s.io).
func (n *Node) ImportImage(archive string) error {
	return run(filepath.Join(n.opts.NodeBinDir, "ctr"), "--address", n.ContainerdSocket(), "-n", "k8s.io",
		"images", "import", "--local", archive)
}

// Exec runs cmd in the running container id (ctr task exec), as kubectl
// exec would (the node's kubelet serves no exec), and returns its output.
func (n *Node) Exec(id string, cmd ...string) (string, error) {
	execID := "exec-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	args := append([]string{"--address", n.ContainerdSocket(), "-n", "k8s.io", "task", "exec", "--exec-id", execID, id}, cmd...)
	out, err := exec.Command(filepath.Join(n.opts.NodeBinDir, "ctr"), args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr task exec %s: %w", id, err)
	}
	return string(out), nil
}

func (n *Node) startControlPlane(ctx context.Context) error {
	p, err := ports.Free()
	if err != nil {
		return err
	}
	p2, err := ports.Free()
	if err != nil {
		return err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(p)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(p2)
	n.opts.Logf("kubenode: starting etcd")
	if err := n.startDetached("etcd", filepath.Join(n.opts.K8sBinDir, "etcd"), []string{
		"--name=node", "--data-dir=" + filepath.Join(n.dir, "etcd"),
		"--listen-client-urls=" + etcdURL, "--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=node=" + peerURL, "--unsafe-no-fsync", "--log-level=warn",
	}, nil); err != nil {
		return err
	}
	if err := waitFor(ctx, "etcd", func() error { return dial("127.0.0.1:" + strconv.Itoa(p)) }); err != nil {
		return err
	}

	tokenBytes := make([]byte, 16)
	if _, err := rand.Read(tokenBytes); err != nil {
		return err
	}
	token := hex.EncodeToString(tokenBytes)
	saKey := filepath.Join(n.dir, "certs", "sa.key")
	key, err := keyutil.MakeEllipticPrivateKeyPEM()
	if err != nil {
		return err
	}
	if err := os.WriteFile(saKey, key, 0o600); err != nil {
		return err
	}
	tokens := filepath.Join(n.dir, "certs", "tokens.csv")
	if err := os.WriteFile(tokens, []byte(token+",node-admin,node-admin,system:masters\n"), 0o600); err != nil {
		return err
	}
	certDir := filepath.Join(n.dir, "certs", "apiserver")
	ca := filepath.Join(certDir, "apiserver.crt")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["connaudit-node"] = &clientcmdapi.Cluster{Server: "https://" + NodeIP + ":" + strconv.Itoa(apiPort), CertificateAuthority: ca}
	kc.AuthInfos["connaudit-node"] = &clientcmdapi.AuthInfo{Token: token}
	kc.Contexts["connaudit-node"] = &clientcmdapi.Context{Cluster: "connaudit-node", AuthInfo: "connaudit-node"}
	kc.CurrentContext = "connaudit-node"
	if err := clientcmd.WriteToFile(*kc, n.Kubeconfig()); err != nil {
		return err
	}

	n.opts.Logf("kubenode: starting kube-apiserver")
	if err := n.startDetached("kube-apiserver", filepath.Join(n.opts.K8sBinDir, "kube-apiserver"), []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=" + NodeIP, "--advertise-address=" + NodeIP, "--secure-port=" + strconv.Itoa(apiPort),
		"--cert-dir=" + certDir,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + saKey, "--service-account-signing-key-file=" + saKey,
		"--token-auth-file=" + tokens,
		"--authorization-mode=Node,RBAC",
		"--service-cluster-ip-range=" + ServiceCIDR,
	}, nil); err != nil {
		return err
	}
	if err := waitFor(ctx, "kube-apiserver", func() error {
		if _, err := os.Stat(ca); err != nil {
			return err
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", n.Kubeconfig())
		if err != nil {
			return err
		}
		n.client, err = kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		_, err = n.client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	}); err != nil {
		return err
	}

	n.opts.Logf("kubenode: starting kube-controller-manager and kube-scheduler")
	if err := n.startDetached("kube-controller-manager", filepath.Join(n.opts.NodeBinDir, "kube-controller-manager"), []string{
		"--kubeconfig=" + n.Kubeconfig(), "--authentication-kubeconfig=" + n.Kubeconfig(), "--authorization-kubeconfig=" + n.Kubeconfig(),
		"--bind-address=127.0.0.1", "--secure-port=0", "--leader-elect=false",
		"--service-account-private-key-file=" + saKey, "--root-ca-file=" + ca,
		"--use-service-account-credentials=false",
		"--service-cluster-ip-range=" + ServiceCIDR,
	}, nil); err != nil {
		return err
	}
	return n.startDetached("kube-scheduler", filepath.Join(n.opts.NodeBinDir, "kube-scheduler"), []string{
		"--kubeconfig=" + n.Kubeconfig(), "--authentication-kubeconfig=" + n.Kubeconfig(), "--authorization-kubeconfig=" + n.Kubeconfig(),
		"--bind-address=127.0.0.1", "--secure-port=0", "--leader-elect=false",
	}, nil)
}

func (n *Node) startNode(ctx context.Context) error {
	files := map[string]string{
		"containerd/config.toml":          n.containerdConfig(),
		"cni/net.d/10-connaudit.conflist": n.cniConfig(),
		"kubelet/config.yaml":             n.kubeletConfig(),
		"kube-proxy.yaml":                 n.kubeProxyConfig(),
		"Corefile":                        n.corefile(),
		"resolv.conf":                     "nameserver " + NodeIP + "\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(n.dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	n.opts.Logf("kubenode: starting containerd")
	// The shim must come first on containerd's PATH.
	if err := n.startDetached("containerd", filepath.Join(n.opts.NodeBinDir, "containerd"),
		[]string{"--config", filepath.Join(n.dir, "containerd", "config.toml")},
		[]string{"PATH=" + n.opts.NodeBinDir + ":" + os.Getenv("PATH")}); err != nil {
		return err
	}
	if err := waitFor(ctx, "containerd", func() error {
		return run(filepath.Join(n.opts.NodeBinDir, "ctr"), "--address", n.ContainerdSocket(), "version")
	}); err != nil {
		return err
	}
	if err := n.ImportImage(n.opts.PauseImage); err != nil {
		return err
	}

	if err := n.makeClusterDNSService(ctx); err != nil {
		return err
	}
	n.opts.Logf("kubenode: starting kubelet, kube-proxy and CoreDNS")
	if err := n.startDetached("kubelet", filepath.Join(n.opts.NodeBinDir, "kubelet"), []string{
		"--config=" + filepath.Join(n.dir, "kubelet", "config.yaml"),
		"--kubeconfig=" + n.Kubeconfig(),
		"--root-dir=" + filepath.Join(n.dir, "kubelet"),
		"--cert-dir=" + filepath.Join(n.dir, "kubelet", "pki"),
		"--node-ip=" + NodeIP,
		"--hostname-override=" + NodeName,
	}, nil); err != nil {
		return err
	}
	if err := n.startDetached("kube-proxy", filepath.Join(n.opts.NodeBinDir, "kube-proxy"),
		[]string{"--config=" + filepath.Join(n.dir, "kube-proxy.yaml")}, nil); err != nil {
		return err
	}
	if err := n.startDetached("coredns", filepath.Join(n.opts.NodeBinDir, "coredns"),
		[]string{"-conf", filepath.Join(n.dir, "Corefile")}, nil); err != nil {
		return err
	}
	if err := waitFor(ctx, "node Ready", func() error {
		node, err := n.client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return errors.New("not Ready")
	}); err != nil {
		return err
	}
	if err := n.startNetworkPolicyController(ctx); err != nil {
		return err
	}
	if err := waitFor(ctx, "default ServiceAccount", func() error {
		_, err := n.client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		return err
	}
	for _, server := range []string{NodeIP, ClusterDNSIP} { // CoreDNS, then through kube-proxy
		if err := waitFor(ctx, "CoreDNS at "+server, func() error {
			r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "udp", server+":53")
			}}
			_, err := r.LookupHost(ctx, "kubernetes.default.svc.cluster.local")
			return err
		}); err != nil {
			return err
		}
	}
	return n.makeVolumes(ctx)
}

// makeClusterDNSService makes the Service kube-system/kube-dns, as every
// distribution has it, in front of CoreDNS on the node: a Service without a
// selector and its EndpointSlice.
func (n *Node) makeClusterDNSService(ctx context.Context) error {
	ports := []corev1.ServicePort{{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53}, {Name: "dns-tcp", Protocol: corev1.ProtocolTCP, Port: 53}}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: metav1.NamespaceSystem, Labels: map[string]string{"k8s-app": "kube-dns"}},
		Spec:       corev1.ServiceSpec{ClusterIP: ClusterDNSIP, Ports: ports},
	}
	if _, err := n.client.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create Service kube-system/kube-dns: %w", err)
	}
	udp, tcp, port := corev1.ProtocolUDP, corev1.ProtocolTCP, int32(53)
	ready := true
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns-node", Namespace: svc.Namespace,
			Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: "kubenode"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{NodeIP}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports: []discoveryv1.EndpointPort{{Name: &ports[0].Name, Protocol: &udp, Port: &port},
			{Name: &ports[1].Name, Protocol: &tcp, Port: &port}},
	}
	if _, err := n.client.DiscoveryV1().EndpointSlices(svc.Namespace).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create the EndpointSlice of kube-system/kube-dns: %w", err)
	}
	return nil
}

// makeVolumes plays a local-path provisioner: two PersistentVolumes without
// a storage class, for claims that name none (as k8s/deploy's do). Like
// local-path-provisioner, the directories are mode 0777, since fsGroup does
// not apply to hostPath volumes.
func (n *Node) makeVolumes(ctx context.Context) error {
	for i := 1; i <= 2; i++ {
		name := "local-" + strconv.Itoa(i)
		dir := filepath.Join(n.dir, "volumes", name)
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return err
		}
		if err := os.Chmod(dir, 0o777); err != nil {
			return err
		}
		pv := &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("100Gi")},
				AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
				PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir}},
			},
		}
		if _, err := n.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create PersistentVolume %s: %w", name, err)
		}
	}
	return nil
}

func dial(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
	}
	return err
}

// waitFor polls check every 500ms until it succeeds or ctx ends.
func waitFor(ctx context.Context, what string, check func() error) error {
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubenode: wait for %s: %v", what, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// components in the order Down stops them: the kubelet first, so it
// restarts nothing, containerd after the containers are gone, etcd last.
var components = []string{"kubelet", "kube-router", "kube-proxy", "coredns", "kube-scheduler", "kube-controller-manager"}

// LastLogDir is where Down leaves the logs of the node that ran in dir.
func LastLogDir(dir string) string { return filepath.Clean(dir) + "-last-logs" }

// Down removes everything a node made under dir and on the host. It is safe
// to call when no node runs, and after a node whose starter was killed.
// What it removes on the host is named as only this package names things.
func Down(dir string) error {
	var errs []error
	var st state
	if b, err := os.ReadFile(filepath.Join(dir, "state.json")); err == nil {
		if err := json.Unmarshal(b, &st); err != nil {
			errs = append(errs, fmt.Errorf("state.json: %w", err))
		}
	}
	for _, c := range components {
		if err := stopRecorded(dir, c, 20*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, killContainers()...)
	if st.NodeBinDir != "" {
		shim := filepath.Join(st.NodeBinDir, "containerd-shim-runc-v2")
		if resolved, err := filepath.EvalSymlinks(shim); err == nil {
			shim = resolved
		}
		for _, pid := range pidsOfExe(shim) {
			stopPid(pid, shim, 5*time.Second)
		}
	}
	for _, c := range []string{"containerd", "kube-apiserver", "etcd"} {
		if err := stopRecorded(dir, c, 20*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, unmountUnder(dir)...)
	errs = append(errs, removeCgroups()...)
	errs = append(errs, tearDownNetwork()...)
	if err := restoreSysctls(dir); err != nil {
		errs = append(errs, err)
	}
	for _, p := range st.Made {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		// The logs outlive the node, for a look after a failure.
		_ = os.RemoveAll(LastLogDir(dir))
		_ = os.Rename(filepath.Join(dir, "logs"), LastLogDir(dir))
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// killContainers kills every process in the kubelet's pod cgroups
// ("kubepods" in each hierarchy, cgroupfs driver), bounded.
func killContainers() []error {
	for i := 0; i < 50; i++ {
		pids := kubepodsPids()
		if len(pids) == 0 {
			return nil
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return []error{fmt.Errorf("kubenode: processes left in kubepods cgroups: %v", kubepodsPids())}
}

func kubepodsRoots() []string {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods")
	if _, err := os.Stat("/sys/fs/cgroup/kubepods"); err == nil {
		roots = append(roots, "/sys/fs/cgroup/kubepods")
	}
	return roots
}

func kubepodsPids() []int {
	seen := map[int]bool{}
	var pids []int
	for _, root := range kubepodsRoots() {
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			b, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
					seen[pid] = true
					pids = append(pids, pid)
				}
			}
			return nil
		})
	}
	return pids
}

// removeCgroups removes the kubepods trees, deepest first.
func removeCgroups() []error {
	var errs []error
	for _, root := range kubepodsRoots() {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("rmdir %s: %w", dirs[i], err))
			}
		}
	}
	return errs
}

// unmountUnder unmounts every mount point under dir, deepest first
// (volumes, container root filesystems, sandbox /dev/shm, netns files).
func unmountUnder(dir string) []error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return []error{err}
	}
	var errs []error
	for i := 0; i < 5; i++ {
		b, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			return []error{err}
		}
		var mounts []string
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) > 4 && (f[4] == abs || strings.HasPrefix(f[4], abs+"/")) {
				mounts = append(mounts, unescapeMount(f[4]))
			}
		}
		if len(mounts) == 0 {
			return nil
		}
		errs = nil
		for j := len(mounts) - 1; j >= 0; j-- {
			if err := syscall.Unmount(mounts[j], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", mounts[j], err))
			}
		}
	}
	return errs
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}
