package node

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connaudit/connaudit/internal/kubenode"
)

// The node enforces NetworkPolicies with kube-router (internal/kubenode):
// kube-router REJECTs what no policy admits, with an ICMP port unreachable,
// so a blocked connect fails at once as refused (not a timeout, as where a
// plugin drops the SYN).
const (
	// otherPort is a port of the first outside host that mypod never used:
	// the advised policy does not admit it.
	otherPort = "8081"
	// exitWouldDeny is `advise check`'s status when the policies would have
	// denied established connections (README "advise check").
	exitWouldDeny = 4
)

// parseAttempts reads nettool's ATTEMPT lines.
func parseAttempts(log string) []attempt {
	var atts []attempt
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		if m := attemptRE.FindStringSubmatch(sc.Text()); m != nil {
			atts = append(atts, attempt{url: m[1], localAddr: m[2], localPort: m[3], result: m[4]})
		}
	}
	return atts
}

// refused reports whether a nettool result is a refused connect.
func refused(a attempt) bool { return strings.Contains(a.result, "connection refused") }

// blockedOutcome is the trail's outcome for a nettool result that a
// firewall stopped: refused where it REJECTs, as kube-router does, or
// timeout where the SYN is dropped; "" when the result is neither.
func blockedOutcome(a attempt) string {
	switch {
	case refused(a):
		return "refused"
	case strings.Contains(a.result, "i/o timeout"):
		return "timeout"
	}
	return ""
}

// waitForFailedRecord polls `kubectl connaudit query --podname pod` until it
// shows pod's connect to addr:port, and checks that the trail says what the
// application saw: outcome want, never established.
func waitForFailedRecord(t *testing.T, kubectl kubectlCmd, pod, addr, port, want string) {
	t.Helper()
	var out string
	if !poll(3*time.Minute, 3*time.Second, func() bool {
		out = kubectl.must("connaudit", "query", "--podname", pod, "--since", "30m", "-o", "json")
		found := false
		for _, r := range records(out) {
			if fmt.Sprint(r["network.peer.address"]) != addr || fmt.Sprint(r["network.peer.port"]) != port {
				continue
			}
			if o := fmt.Sprint(r["connaudit.outcome"]); o != want {
				t.Fatalf("the trail shows %s's blocked connect to %s:%s as %s, the application saw %s:\n%s", pod, addr, port, o, want, out)
			}
			found = true
		}
		return found
	}) {
		t.Fatalf("kubectl connaudit query --podname %s: no connect to %s:%s:\n%s", pod, addr, port, out)
	}
}

// records parses `query -o json` output into its records.
func records(out string) []map[string]any {
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) == nil {
			recs = append(recs, r)
		}
	}
	return recs
}

// countRecords counts the records whose attributes have the wanted values.
func countRecords(recs []map[string]any, want map[string]string) int {
	n := 0
	for _, r := range recs {
		ok := true
		for k, v := range want {
			if fmt.Sprint(r[k]) != v {
				ok = false
				break
			}
		}
		if ok {
			n++
		}
	}
	return n
}

// waitForRecords polls `kubectl connaudit query --podname pod` until it
// shows want records with attributes attrs.
func waitForRecords(t *testing.T, kubectl kubectlCmd, pod string, attrs map[string]string, want int) {
	t.Helper()
	var out string
	if !poll(3*time.Minute, 3*time.Second, func() bool {
		out = kubectl.must("connaudit", "query", "--podname", pod, "--since", "30m", "-o", "json")
		return countRecords(records(out), attrs) == want
	}) {
		t.Fatalf("kubectl connaudit query --podname %s: want %d records with %v, have %d:\n%s",
			pod, want, attrs, countRecords(records(out), attrs), out)
	}
}

// waitForPod waits until pod (in default) runs and has an address.
func waitForPod(t *testing.T, n *kubenode.Node, name string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	if !poll(2*time.Minute, time.Second, func() bool {
		p, err := n.Client().CoreV1().Pods("default").Get(t.Context(), name, metav1.GetOptions{})
		if err != nil || p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" || len(p.Status.ContainerStatuses) == 0 {
			return false
		}
		pod = p
		return true
	}) {
		t.Fatalf("pod %s not running with an address in 2 minutes", name)
	}
	return pod
}

// policyEnforcedFor reports whether kube-router's chains send the traffic
// from podIP through the chain of the NetworkPolicy named policy: the
// FORWARD hook jumps from the pod's address to its firewall chain, and that
// chain runs through the policy's.
func policyEnforcedFor(podIP, policy string) bool {
	dump, err := outputOf("iptables-save", "-t", "filter")
	if err != nil {
		return false
	}
	fwChain := ""
	for _, line := range strings.Split(dump, "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && f[0] == "-A" && f[1] == "KUBE-ROUTER-FORWARD" && strings.Contains(line, "-s "+podIP+"/32 ") {
			for i := 2; i+1 < len(f); i++ {
				if f[i] == "-j" && strings.HasPrefix(f[i+1], "KUBE-POD-FW-") {
					fwChain = f[i+1]
				}
			}
		}
	}
	if fwChain == "" {
		return false
	}
	for _, line := range strings.Split(dump, "\n") {
		if strings.HasPrefix(line, "-A "+fwChain+" ") && strings.Contains(line, "run through nw policy "+policy+"\"") {
			return true
		}
	}
	return false
}

// execFetch runs `nettool fetch URL...` in pod's container (as kubectl exec
// would; this node's kubelet serves no exec), so the fetches start only
// once the test knows the policy is enforced for the pod, and reads their
// ATTEMPT lines from the pod's log (the pod itself, `get 0`, made none).
func execFetch(t *testing.T, n *kubenode.Node, pod *corev1.Pod, urls ...string) []attempt {
	t.Helper()
	_, cid, _ := strings.Cut(pod.Status.ContainerStatuses[0].ContainerID, "://")
	out, err := n.Exec(cid, append([]string{"/nettool", "fetch"}, urls...)...)
	if err != nil {
		t.Fatalf("nettool fetch in %s: %v\n%s", pod.Name, err, out)
	}
	var atts []attempt
	if !poll(30*time.Second, 200*time.Millisecond, func() bool {
		atts = parseAttempts(podLog(n, pod.Name))
		return len(atts) >= len(urls)
	}) || len(atts) != len(urls) {
		t.Fatalf("nettool fetch in %s: %d attempts in its log, want %d:\n%s", pod.Name, len(atts), len(urls), podLog(n, pod.Name))
	}
	return atts
}

// podLog is the log of pod (in default) on the node.
func podLog(n *kubenode.Node, pod string) string {
	files, _ := filepath.Glob(filepath.Join(n.PodLogDir(), "default_"+pod+"_*", pod, "*.log"))
	var b strings.Builder
	for _, f := range files {
		if data, err := os.ReadFile(f); err == nil {
			b.Write(data)
		}
	}
	return b.String()
}

// policyName is the name of the one NetworkPolicy in a manifest.
func policyName(t *testing.T, manifest string) string {
	t.Helper()
	inMeta := false
	for _, line := range strings.Split(manifest, "\n") {
		switch {
		case line == "metadata:":
			inMeta = true
		case inMeta && strings.HasPrefix(line, "  name: "):
			return strings.TrimSpace(strings.TrimPrefix(line, "  name: "))
		case inMeta && !strings.HasPrefix(line, " "):
			inMeta = false
		}
	}
	t.Fatalf("no metadata.name in the advised policy:\n%s", manifest)
	return ""
}

// adviseCheck runs `kubectl connaudit advise check -f file --since since`
// and returns its output and exit status.
func adviseCheck(t *testing.T, kubectl kubectlCmd, file, since string) (string, int) {
	t.Helper()
	out, errOut, err := kubectl.run("", "connaudit", "advise", "check", "-f", file, "--since", since)
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(interface{ ExitCode() int }); ok {
			code = ee.ExitCode()
		}
	}
	return out + errOut, code
}

// deniedRow reports whether advise check's table has a row for source pod,
// to addr:port, with outcome.
func deniedRow(out, pod, addr, port, outcome string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[0] == "default/pod/"+pod && f[1] == addr && f[2] == port && f[3] == outcome {
			return true
		}
	}
	return false
}

// enforceAdvisedPolicy is the walkthrough's second half on an enforcing
// node. Before the policy is applied, a pod with mypod's labels fetches a
// target the policy does not admit: `advise check` says the policy would
// deny that established connection (status 4). The policy is applied; a new
// pod with mypod's labels is refused by that target and still reaches an
// admitted one, the trail shows the failed connect, and `advise check`
// over the time since lists it as denied with none established (status 0).
func enforceAdvisedPolicy(t *testing.T, n *kubenode.Node, kubectl kubectlCmd, policy string) {
	t.Helper()
	out1 := kubenode.Outsides[0]
	other := "http://" + out1.Addr + ":" + otherPort + "/"
	allowed := "http://" + kubenode.Outsides[1].Addr + ":" + serverPort + "/"
	file := filepath.Join(t.TempDir(), "mypod-policy.yaml")
	writeFile(t, file, policy)
	name := policyName(t, policy)

	kubectl.must("run", "mypod-before", "--labels=run=mypod", "--image="+nettoolImage, "--image-pull-policy=Never",
		"--restart=Never", "--", "get", "1", other)
	waitForAttempts(t, n, "mypod-before", 1)
	waitForRecords(t, kubectl, "mypod-before", map[string]string{"network.peer.address": out1.Addr,
		"network.peer.port": otherPort, "connaudit.outcome": "established"}, 1)
	out, code := adviseCheck(t, kubectl, file, "30m")
	if code != exitWouldDeny || !deniedRow(out, "mypod-before", out1.Addr, otherPort, "established") ||
		!strings.Contains(out, "1 of them had been established") {
		t.Fatalf("advise check before applying the policy: status %d, want %d with mypod-before's established connect to %s:%s denied:\n%s",
			code, exitWouldDeny, out1.Addr, otherPort, out)
	}
	t.Logf("advise check -f mypod's policy, before applying it (status %d):\n%s", code, out)

	// The window of the second check starts at or before the policy (the
	// second it was applied, rounded down): mypod-before's connect is
	// seconds older (its record was queried and checked since).
	applied := time.Now().UTC().Truncate(time.Second).Format(time.RFC3339)
	if out, errOut, err := kubectl.run(policy, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply of the advised policy: %v\n%s%s\npolicy:\n%s", err, out, errOut, policy)
	}

	// A pod with mypod's labels that connects only once kube-router
	// enforces the policy for it.
	kubectl.must("run", "mypod-after", "--labels=run=mypod", "--image="+nettoolImage, "--image-pull-policy=Never",
		"--restart=Never", "--", "get", "0", allowed)
	pod := waitForPod(t, n, "mypod-after")
	if !poll(time.Minute, 500*time.Millisecond, func() bool { return policyEnforcedFor(pod.Status.PodIP, name) }) {
		t.Fatalf("kube-router did not put pod mypod-after (%s) under policy %s in a minute", pod.Status.PodIP, name)
	}
	atts := execFetch(t, n, pod, other, allowed)
	if !refused(atts[0]) {
		t.Fatalf("mypod-after's fetch of %s, which the policy does not admit: %s, want connection refused", other, atts[0].result)
	}
	if !strings.Contains(atts[1].result, "200 OK") {
		t.Fatalf("mypod-after's fetch of %s, which the policy admits: %s, want 200 OK", allowed, atts[1].result)
	}
	waitForFailedRecord(t, kubectl, "mypod-after", out1.Addr, otherPort, "refused")
	waitForRecords(t, kubectl, "mypod-after", map[string]string{"network.peer.address": kubenode.Outsides[1].Addr,
		"network.peer.port": serverPort, "network.local.port": atts[1].localPort, "connaudit.outcome": "established"}, 1)
	t.Logf("kubectl connaudit query --podname mypod-after -o wide:\n%s",
		kubectl.must("connaudit", "query", "--podname", "mypod-after", "--since", "30m", "-o", "wide"))

	out, code = adviseCheck(t, kubectl, file, applied)
	if code != 0 || !deniedRow(out, "mypod-after", out1.Addr, otherPort, "refused") ||
		!strings.Contains(out, "0 of them had been established") {
		t.Fatalf("advise check since the policy was applied: status %d, want 0 with mypod-after's refused connect to %s:%s denied:\n%s",
			code, out1.Addr, otherPort, out)
	}
	t.Logf("advise check -f mypod's policy, since it was applied (status %d):\n%s", code, out)
}

// shippedPoliciesEnforced checks k8s/deploy's NetworkPolicies: a pod in
// default is refused by VictoriaLogs' pod and by the gateway's OTLP ports,
// directly by address, and the trail shows those failed connects. (That
// queries through the API server's service proxy still work, and the agents
// still deliver, the rest of the test shows.)
func shippedPoliciesEnforced(t *testing.T, n *kubenode.Node, kubectl kubectlCmd) {
	t.Helper()
	type target struct{ addr, port string }
	var targets []target
	for _, c := range []struct{ app, port string }{
		{"victorialogs", "http"}, {"connaudit-collector", "otlp-grpc"}, {"connaudit-collector", "otlp-http"},
	} {
		pods, err := n.Client().CoreV1().Pods("connaudit").List(t.Context(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + c.app})
		if err != nil || len(pods.Items) != 1 || pods.Items[0].Status.PodIP == "" {
			t.Fatalf("pods of %s: %v, %v", c.app, pods, err)
		}
		p := pods.Items[0]
		port := int32(0)
		for _, ctr := range p.Spec.Containers {
			for _, cp := range ctr.Ports {
				if cp.Name == c.port {
					port = cp.ContainerPort
				}
			}
		}
		if port == 0 {
			t.Fatalf("pod %s has no port named %s", p.Name, c.port)
		}
		targets = append(targets, target{p.Status.PodIP, strconv.Itoa(int(port))})
	}
	var urls []string
	for _, tg := range targets {
		urls = append(urls, "http://"+tg.addr+":"+tg.port+"/")
	}
	kubectl.must(append([]string{"run", "intruder", "--image=" + nettoolImage, "--image-pull-policy=Never",
		"--restart=Never", "--", "get", "1"}, urls...)...)
	atts := readAttempts(t, n, "intruder", len(urls))
	for _, a := range atts {
		if blockedOutcome(a) == "" {
			t.Errorf("intruder's fetch of %s: %s, want it blocked (k8s/deploy's NetworkPolicies)", a.url, a.result)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	saw := map[string]string{}
	for _, a := range atts {
		saw[a.url] = blockedOutcome(a)
	}
	for _, tg := range targets {
		waitForFailedRecord(t, kubectl, "intruder", tg.addr, tg.port, saw["http://"+tg.addr+":"+tg.port+"/"])
	}
	t.Logf("kubectl connaudit query --podname intruder -o wide:\n%s",
		kubectl.must("connaudit", "query", "--podname", "intruder", "--since", "30m", "-o", "wide"))
}

func outputOf(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).Output()
	return string(out), err
}

// shippedPoliciesAgreeWithTrail replays the install's own trail since since
// against the NetworkPolicies in force in connaudit (k8s/deploy's, as the
// overlay applied them) with `advise check`. Every connection between
// pods that the install needs (agents to the gateway, the gateway to
// VictoriaLogs) is admitted; the intruder's refused connects are denied;
// the only established connections denied come from the node itself (the
// kubelet's probes, the API server's proxy, the host-network forger), which
// kube-router, like most enforcers, lets through whatever the policies say.
func shippedPoliciesAgreeWithTrail(t *testing.T, kubectl kubectlCmd, since string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "connaudit-policies.yaml")
	writeFile(t, file, kubectl.must("-n", "connaudit", "get", "networkpolicy", "-o", "yaml"))
	out, errOut, err := kubectl.run("", "connaudit", "advise", "check", "-f", file, "--since", since)
	t.Logf("kubectl connaudit advise check (k8s/deploy's policies over the install's trail):\n%s%s", out, errOut)
	if err != nil && !strings.Contains(err.Error(), "exit status 4") {
		t.Fatalf("advise check: %v", err)
	}
	intruderDenied := false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[0] == "SOURCE" || !strings.Contains(line, " of ") {
			continue
		}
		outcome := f[3]
		if f[0] == "host" || f[0] == "node" {
			continue // from the node: the source column is "host NODE ADDR"
		}
		switch {
		case f[0] == "default/pod/intruder" && outcome != "established":
			intruderDenied = true
		case f[0] == "default/pod/forger":
		case outcome == "established":
			t.Errorf("the shipped policies would deny an established connection between pods the install needs: %s", line)
		}
	}
	if !intruderDenied {
		t.Errorf("advise check does not list the intruder's blocked connects as denied:\n%s", out)
	}
}
