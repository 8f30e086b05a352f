// Package node installs connaudit on a real single-node Kubernetes cluster
// (internal/kubenode) as a user does: it builds the images, loads them into
// the node's containerd, applies k8s/deploy through an overlay that changes
// only the image tags, waits for the agent, the collector and VictoriaLogs
// to become Ready as the manifests define them, and then runs the
// tcpconnect walkthrough: pod mypod fetches from two hosts outside the
// cluster, one by a name the cluster DNS answers, and `kubectl connaudit
// query --podname mypod` shows every attempt with the pod's identity. The
// node enforces NetworkPolicies (kube-router): the advised policy blocks what
// mypod never did, `advise check` says so before and after it is applied,
// and k8s/deploy's own policies keep pods away from VictoriaLogs and the
// gateway.
//
// It needs root, `make k8s-bins node-bins` and Debian's runc,
// containernetworking-plugins, iptables, conntrack and ipset (.ci/run
// installs them). It takes the whole host's networking for a few minutes: run it
// under flock /tmp/connaudit-heavy.lock.
package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connaudit/connaudit/internal/kubenode"
	"github.com/connaudit/connaudit/internal/teststack"
)

const (
	// The tag `make image` gives the images here; the overlay points the
	// base's images at it, as a user's overlay points them at a release.
	imageTag     = "e2e-node"
	nettoolImage = "connaudit.test/nettool:e2e"
	serverPort   = "8080"
)

func TestInstallOnRealNode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("e2e/node needs root: it runs a kubelet, containerd and iptables")
	}
	root := teststack.RepoRoot(t)
	bin := filepath.Join(root, "bin")
	start := time.Now()

	// The images, as README "Install on a cluster" builds them.
	runCmd(t, root, nil, "make", "-C", root, "build", "image", "image-victorialogs", "node-images", "VERSION="+imageTag)
	nettool := buildNettool(t, root)
	t.Logf("images built in %v", time.Since(start).Round(time.Second))

	n, err := kubenode.Up(kubenode.Options{
		K8sBinDir:  k8sBinDir(root),
		NodeBinDir: filepath.Join(bin, "node"),
		PauseImage: filepath.Join(bin, "images", "pause.tar"),
		Logf:       t.Logf,
	})
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(t, kubenode.DefaultDir)
		}
		if err := kubenode.Down(kubenode.DefaultDir); err != nil {
			t.Errorf("kubenode.Down: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("node up after %v", time.Since(start).Round(time.Second))
	for _, img := range []string{"connaudit.tar", "otelcol-connaudit.tar", "victoria-logs.tar"} {
		if err := n.ImportImage(filepath.Join(bin, "images", img)); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.ImportImage(nettool.image); err != nil {
		t.Fatal(err)
	}

	kubectl := kubectlRunner(t, root, n.Kubeconfig())

	// A user's overlay: the base, with the images at the tag built above.
	overlay := t.TempDir()
	// A user's overlay: the images' tag, and the API server's address in
	// the policy that admits its service proxy to VictoriaLogs, as README.md
	// says.
	writeOverlay := func(tag string) {
		writeFile(t, filepath.Join(overlay, "kustomization.yaml"), fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - %s
images:
  - name: ghcr.io/connaudit/connaudit
    newTag: %[2]s
  - name: ghcr.io/connaudit/otelcol-connaudit
    newTag: %[2]s
patches:
  - target: {kind: NetworkPolicy, name: victorialogs-api-server}
    patch: |-
      - op: replace
        path: /spec/ingress/0/from/0/ipBlock/cidr
        value: %[3]s/32
`, relPath(t, overlay, filepath.Join(root, "k8s", "deploy")), tag, kubenode.NodeIP))
	}
	writeOverlay(imageTag)
	kubectl.must("apply", "-k", overlay)
	if cidr := kubectl.must("-n", "connaudit", "get", "networkpolicy", "victorialogs-api-server", "-o", "jsonpath={.spec.ingress[0].from[0].ipBlock.cidr}"); strings.TrimSpace(cidr) != kubenode.NodeIP+"/32" {
		t.Errorf("victorialogs-api-server admits %q, want the API server's %s/32", cidr, kubenode.NodeIP)
	}
	for _, w := range []string{"daemonset/connaudit-agent", "statefulset/connaudit-collector", "statefulset/victorialogs"} {
		kubectl.must("-n", "connaudit", "rollout", "status", w, "--timeout=240s")
	}
	t.Logf("connaudit Ready after %v", time.Since(start).Round(time.Second))
	checkAgentAsDefined(t, n, kubectl)
	// From here on the node has had a Ready agent: coverage must be whole.
	coveredFrom := time.Now().UTC().Add(time.Second).Format(time.RFC3339)

	// The outside hosts, each with an HTTP server.
	for _, o := range kubenode.Outsides {
		startServer(t, nettool.binary, o, serverPort)
	}

	// The walkthrough: kubectl run labels the pod run=mypod.
	const rounds = 3
	urls := []string{
		"http://" + kubenode.Outsides[0].Name + ":" + serverPort + "/",
		"http://" + kubenode.Outsides[1].Addr + ":" + serverPort + "/",
	}
	kubectl.must(append([]string{"run", "mypod", "--image=" + nettoolImage, "--image-pull-policy=Never", "--restart=Never",
		"--", "get", fmt.Sprint(rounds)}, urls...)...)
	attempts := waitForAttempts(t, n, "mypod", rounds*len(urls))
	t.Logf("mypod made %d attempts", len(attempts))

	plugin := installPlugin(t, root)
	var out string
	if !poll(3*time.Minute, 3*time.Second, func() bool {
		out = kubectl.withPlugin(plugin).must("connaudit", "query", "--podname", "mypod", "--since", "30m", "-o", "json")
		return allAttemptsIn(out, "mypod", attempts, clusterDNS) == nil
	}) {
		t.Fatalf("kubectl connaudit query --podname mypod: %v\noutput:\n%s", allAttemptsIn(out, "mypod", attempts, clusterDNS), out)
	}
	t.Logf("kubectl connaudit query --podname mypod -o wide:\n%s",
		kubectl.withPlugin(plugin).must("connaudit", "query", "--podname", "mypod", "--since", "30m", "-o", "wide"))

	// A pod that asks the node's resolver instead (dnsPolicy: Default): its
	// names are marked as not the cluster DNS's.
	kubectl.must("run", "ownresolver", "--image="+nettoolImage, "--image-pull-policy=Never", "--restart=Never",
		`--overrides={"spec":{"dnsPolicy":"Default"}}`, "--", "get", "1", urls[0])
	own := waitForAttempts(t, n, "ownresolver", 1)
	if !poll(3*time.Minute, 3*time.Second, func() bool {
		out = kubectl.withPlugin(plugin).must("connaudit", "query", "--podname", "ownresolver", "--since", "30m", "-o", "json")
		return allAttemptsIn(out, "ownresolver", own, nodeDNS) == nil
	}) {
		t.Fatalf("kubectl connaudit query --podname ownresolver: %v\noutput:\n%s", allAttemptsIn(out, "ownresolver", own, nodeDNS), out)
	}
	wide := kubectl.withPlugin(plugin).must("connaudit", "query", "--podname", "ownresolver", "--since", "30m", "-o", "wide")
	if want := kubenode.Outsides[0].Name + " (from resolver " + kubenode.NodeIP + ", not the cluster DNS)"; !strings.Contains(wide, want) {
		t.Errorf("query -o wide of a name from the node's resolver lacks %q:\n%s", want, wide)
	}

	// The advised policy for mypod allows exactly the two outside hosts on
	// the server port; advise check, the API server and kube-router take it
	// from there (netpol_test.go).
	policy := kubectl.withPlugin(plugin).must("connaudit", "advise", "networkpolicy", "-l", "run=mypod", "--since", "30m")
	for _, o := range kubenode.Outsides {
		if !strings.Contains(policy, o.Addr+"/32") {
			t.Errorf("advised policy lacks %s/32:\n%s", o.Addr, policy)
		}
	}
	startServer(t, nettool.binary, kubenode.Outsides[0], otherPort)
	enforceAdvisedPolicy(t, n, kubectl.withPlugin(plugin), policy)
	shippedPoliciesEnforced(t, n, kubectl.withPlugin(plugin))
	hostNetworkForgerRefused(t, n, kubectl.withPlugin(plugin))
	shippedPoliciesAgreeWithTrail(t, kubectl.withPlugin(plugin), coveredFrom)
	t.Logf("NetworkPolicies enforced after %v", time.Since(start).Round(time.Second))
	if out, errOut, err := kubectl.withPlugin(plugin).run("", "connaudit", "coverage", "--strict", "--since", coveredFrom); err != nil {
		t.Errorf("kubectl connaudit coverage --strict: %v\n%s%s", err, out, errOut)
	}

	w := walk{t: t, n: n, kubectl: kubectl.withPlugin(plugin), url: urls[1], coveredFrom: coveredFrom}

	// An upgrade: new agent and gateway images, rolled out by applying the
	// overlay with their tag, while a pod connects once a second.
	const upgradeTag = imageTag + "-2"
	runCmd(t, root, nil, "make", "-C", root, "image", "VERSION="+upgradeTag)
	for _, img := range []string{"connaudit.tar", "otelcol-connaudit.tar"} {
		if err := n.ImportImage(filepath.Join(bin, "images", img)); err != nil {
			t.Fatal(err)
		}
	}
	w.survives("loader", func() {
		writeOverlay(upgradeTag)
		kubectl.must("apply", "-k", overlay)
		for _, r := range []string{"daemonset/connaudit-agent", "statefulset/connaudit-collector"} {
			kubectl.must("-n", "connaudit", "rollout", "status", r, "--timeout=180s")
		}
	})

	// The agent's pod and then the gateway's pod deleted under load.
	w.survives("loader2", func() {
		for _, name := range []string{"connaudit-agent", "connaudit-collector"} {
			sel := "app.kubernetes.io/name=" + name
			before := podUIDs(t, n, sel)
			kubectl.must("-n", "connaudit", "delete", "pod", "-l", sel, "--timeout=120s")
			// kubectl wait fails when nothing matches yet: first wait for
			// the controller's replacement.
			var after []string
			if !poll(time.Minute, 500*time.Millisecond, func() bool {
				after = podUIDs(t, n, sel)
				return len(after) == 1 && after[0] != before[0]
			}) {
				t.Fatalf("%s: pods %v before the deletion, %v after: want one new pod", name, before, after)
			}
			kubectl.must("-n", "connaudit", "wait", "pod", "-l", sel, "--for=condition=Ready", "--timeout=180s")
		}
	})
	verifiedWithWitness(t, w.kubectl)
	t.Logf("whole run: %v", time.Since(start).Round(time.Second))
}

// verifiedWithWitness checks that the install's whole trail verifies against
// the node's witness: each agent pod, the rollout's and the deletion's
// included, wrote the Lease through the policy that admits only a token
// bound to a pod on this node, and those that stopped are witnessed up to
// their final checkpoint.
func verifiedWithWitness(t *testing.T, kubectl kubectlCmd) {
	t.Helper()
	out, errOut, err := kubectl.run("", "connaudit", "verify", "--since", "2h", "-o", "json")
	var rep struct {
		Verified  bool `json:"verified"`
		Instances []struct {
			Instance     string `json:"instance"`
			Stopped      bool   `json:"stopped"`
			WitnessedSeq uint64 `json:"witnessed_seq"`
		} `json:"instances"`
		Witness struct {
			Nodes   []string `json:"nodes"`
			Missing string   `json:"missing"`
		} `json:"witness"`
	}
	if jerr := json.Unmarshal([]byte(out), &rep); err != nil || jerr != nil || !rep.Verified ||
		len(rep.Witness.Nodes) != 1 || rep.Witness.Nodes[0] != kubenode.NodeName {
		t.Fatalf("kubectl connaudit verify --since 2h: %v %v, want verified against the witness of %s:\n%s%s", err, jerr, kubenode.NodeName, out, errOut)
	}
	stopped, witnessed := 0, 0
	for _, ins := range rep.Instances {
		if ins.Stopped {
			stopped++
			if ins.WitnessedSeq > 0 {
				witnessed++
			}
		}
	}
	// The first agent, the rollout's and the deleted one stopped at least.
	if stopped < 2 || witnessed != stopped {
		t.Fatalf("%d instances stopped, %d of them witnessed up to their final checkpoint; want at least 2, all witnessed:\n%s", stopped, witnessed, out)
	}
	t.Logf("kubectl connaudit verify: %d instances, %d stopped and witnessed to their final checkpoint", len(rep.Instances), witnessed)
}

// attempt is one ATTEMPT line of mypod's log.
type attempt struct {
	url, localAddr, localPort, result string
}

// local is "-" when the connect failed.
var attemptRE = regexp.MustCompile(`ATTEMPT (\S+) local=(?:-|(\S+):(\d+)) result=(.*)$`)

// waitForAttempts reads pod's log (its one container has the pod's name,
// as kubectl run makes it) on the node until it printed DONE, and checks
// that every fetch got 200 OK.
func waitForAttempts(t *testing.T, n *kubenode.Node, pod string, want int) []attempt {
	t.Helper()
	atts := readAttempts(t, n, pod, want)
	for _, a := range atts {
		if !strings.Contains(a.result, "200 OK") {
			t.Fatalf("%s's fetch of %s failed (%s): the outside hosts must answer", pod, a.url, a.result)
		}
	}
	return atts
}

// readAttempts reads pod's log on the node until it printed DONE, and
// returns its want attempts.
func readAttempts(t *testing.T, n *kubenode.Node, pod string, want int) []attempt {
	t.Helper()
	var atts []attempt
	var log string
	ok := poll(2*time.Minute, time.Second, func() bool {
		files, _ := filepath.Glob(filepath.Join(n.PodLogDir(), "default_"+pod+"_*", pod, "*.log"))
		if len(files) == 0 {
			return false
		}
		b, err := os.ReadFile(files[0])
		if err != nil {
			return false
		}
		log = string(b)
		return strings.Contains(log, "DONE")
	})
	if !ok {
		t.Fatalf("%s did not finish its attempts in 2 minutes; its log:\n%s", pod, log)
	}
	atts = parseAttempts(log)
	if len(atts) != want {
		t.Fatalf("%s logged %d attempts, want %d:\n%s", pod, len(atts), want, log)
	}
	return atts
}

// allAttemptsIn checks that each attempt is in the query's JSON lines with
// mypod's identity, its peer, and the name it asked for.
// dnsAnswers is who answered a pod's lookups: the cluster DNS's Service, or
// the node's resolver.
type dnsAnswers struct{ resolver, cluster string }

var (
	clusterDNS = dnsAnswers{kubenode.ClusterDNSIP, "true"}
	nodeDNS    = dnsAnswers{kubenode.NodeIP, "false"}
)

func allAttemptsIn(out, pod string, atts []attempt, dns dnsAnswers) error {
	recs := map[string]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) != nil {
			continue
		}
		recs[fmt.Sprint(r["network.local.port"])] = r
	}
	for _, a := range atts {
		r, ok := recs[a.localPort]
		if !ok {
			return fmt.Errorf("no record of %s from local port %s", a.url, a.localPort)
		}
		host, _, _ := strings.Cut(strings.TrimPrefix(a.url, "http://"), ":")
		want := map[string]string{
			"k8s.pod.name":          pod,
			"k8s.namespace.name":    "default",
			"k8s.pod.label.run":     pod,
			"k8s.container.name":    pod, // kubectl run names the container after the pod
			"network.local.address": a.localAddr,
			"network.peer.port":     serverPort,
			"server.address":        host,
		}
		for _, o := range kubenode.Outsides {
			if o.Name == host || o.Addr == host {
				want["network.peer.address"] = o.Addr
			}
			if o.Name == host {
				want["connaudit.dns.resolver"], want["connaudit.dns.cluster"] = dns.resolver, dns.cluster
			}
		}
		for k, v := range want {
			if got := fmt.Sprint(r[k]); got != v {
				return fmt.Errorf("record of %s from port %s: %s = %q, want %q (record %v)", a.url, a.localPort, k, got, v, r)
			}
		}
	}
	return nil
}

// checkAgentAsDefined checks the running agent against the DaemonSet: the
// pod's security context is the template's, and the agent process runs with
// exactly the listed capabilities, under a seccomp filter, not privileged.
func checkAgentAsDefined(t *testing.T, n *kubenode.Node, kubectl kubectlCmd) {
	t.Helper()
	pods, err := n.Client().CoreV1().Pods("connaudit").List(t.Context(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=connaudit-agent"})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("agent pods: %v, %v", pods, err)
	}
	pod := pods.Items[0]
	ds, err := n.Client().AppsV1().DaemonSets("connaudit").Get(t.Context(), "connaudit-agent", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantSC, _ := json.Marshal(ds.Spec.Template.Spec.Containers[0].SecurityContext)
	gotSC, _ := json.Marshal(pod.Spec.Containers[0].SecurityContext)
	if !bytes.Equal(wantSC, gotSC) {
		t.Errorf("agent pod's security context %s, DaemonSet's %s", gotSC, wantSC)
	}
	var cid string
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == "agent" {
			_, cid, _ = strings.Cut(cs.ContainerID, "://")
		}
	}
	// cgroupfs driver: kubepods[/QoS class]/pod<uid>/<container id>, in
	// the v2 hierarchy of this hybrid host or at the root of a pure one.
	var procs []string
	for _, pattern := range []string{"/sys/fs/cgroup/unified/kubepods/*/pod%s/%s/cgroup.procs", "/sys/fs/cgroup/unified/kubepods/pod%s/%s/cgroup.procs",
		"/sys/fs/cgroup/kubepods/*/pod%s/%s/cgroup.procs", "/sys/fs/cgroup/kubepods/pod%s/%s/cgroup.procs"} {
		m, _ := filepath.Glob(fmt.Sprintf(pattern, pod.UID, cid))
		procs = append(procs, m...)
	}
	if len(procs) != 1 {
		t.Fatalf("no cgroup of the agent container %s of pod %s", cid, pod.UID)
	}
	b, _ := os.ReadFile(procs[0])
	pid := strings.Fields(string(b))
	if len(pid) == 0 {
		t.Fatalf("agent container has no process")
	}
	status, err := os.ReadFile("/proc/" + pid[0] + "/status")
	if err != nil {
		t.Fatal(err)
	}
	// CAP_NET_ADMIN 12, CAP_SYS_PTRACE 19, CAP_PERFMON 38, CAP_BPF 39.
	const wantCaps = 1<<12 | 1<<19 | 1<<38 | 1<<39
	for _, want := range []string{fmt.Sprintf("CapEff:\t%016x", wantCaps), fmt.Sprintf("CapBnd:\t%016x", wantCaps),
		"Seccomp:\t2", "NoNewPrivs:\t1"} {
		if !strings.Contains(string(status), want+"\n") {
			t.Errorf("agent process %s: want %q in /proc/%s/status:\n%s", pid[0], want, pid[0], status)
		}
	}
	if pod.Status.QOSClass == "" || !podReady(&pod) {
		t.Errorf("agent pod not Ready: %+v", pod.Status.Conditions)
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// walk is what the disruption checks share.
type walk struct {
	t           *testing.T
	n           *kubenode.Node
	kubectl     kubectlCmd // with the plugin
	url         string
	coveredFrom string
}

// survives runs pod name, which fetches w.url once a second, calls disrupt
// while it does, and then checks that every attempt is in the trail with
// the pod's identity and that coverage --strict finds no gap.
func (w walk) survives(name string, disrupt func()) {
	t := w.t
	t.Helper()
	const rounds = 90
	w.kubectl.must("run", name, "--image="+nettoolImage, "--image-pull-policy=Never", "--restart=Never",
		"--", "get", fmt.Sprint(rounds), w.url)
	if !poll(time.Minute, 500*time.Millisecond, func() bool { return podLogHas(w.n, name, "ATTEMPT") }) {
		t.Fatalf("%s made no attempt in a minute", name)
	}
	began := time.Now()
	disrupt()
	t.Logf("%s: disruption took %v", name, time.Since(began).Round(time.Second))
	if podLogHas(w.n, name, "DONE") {
		t.Fatalf("%s finished before the disruption did: it was not under load", name)
	}
	atts := waitForAttempts(t, w.n, name, rounds)
	var out string
	if !poll(3*time.Minute, 3*time.Second, func() bool {
		out = w.kubectl.must("connaudit", "query", "--podname", name, "--since", "30m", "-o", "json")
		return allAttemptsIn(out, name, atts, clusterDNS) == nil
	}) {
		t.Fatalf("kubectl connaudit query --podname %s: %v\noutput:\n%s", name, allAttemptsIn(out, name, atts, clusterDNS), out)
	}
	if out, errOut, err := w.kubectl.run("", "connaudit", "coverage", "--strict", "--since", w.coveredFrom); err != nil {
		t.Errorf("after %s, kubectl connaudit coverage --strict: %v\n%s%s", name, err, out, errOut)
	}
}

// podUIDs lists the UIDs of the connaudit pods that sel selects.
func podUIDs(t *testing.T, n *kubenode.Node, sel string) []string {
	t.Helper()
	pods, err := n.Client().CoreV1().Pods("connaudit").List(t.Context(), metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		t.Fatal(err)
	}
	var uids []string
	for _, p := range pods.Items {
		uids = append(uids, string(p.UID))
	}
	return uids
}

// podLogHas reports whether the log of pod (in default) contains s.
func podLogHas(n *kubenode.Node, pod, s string) bool {
	files, _ := filepath.Glob(filepath.Join(n.PodLogDir(), "default_"+pod+"_*", pod, "*.log"))
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), s) {
			return true
		}
	}
	return false
}

type nettoolBuild struct{ binary, image string }

// buildNettool builds the test pod's client (and the outside hosts' server)
// and its image.
func buildNettool(t *testing.T, root string) nettoolBuild {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(root, "e2e", "node", "testdata", "nettool")
	runCmd(t, root, []string{"CGO_ENABLED=0"}, "go", "build", "-o", filepath.Join(dir, "nettool"), "./e2e/node/testdata/nettool")
	img := filepath.Join(dir, "nettool.tar")
	runCmd(t, root, nil, filepath.Join(root, "bin", "ociimage"), "-f", filepath.Join(src, "Dockerfile"), "-context", dir,
		"-target", "nettool", "-t", nettoolImage, "-o", img)
	return nettoolBuild{binary: filepath.Join(dir, "nettool"), image: img}
}

func startServer(t *testing.T, nettool string, o kubenode.Outside, port string) {
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", o.Netns, nettool, "serve", o.Addr+":"+port)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	})
}
