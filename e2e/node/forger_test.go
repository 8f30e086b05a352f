package node

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connaudit/connaudit/internal/kubenode"
)

// gatewayScheme is how the shipped gateway serves OTLP/HTTP: over TLS, with
// its own CA (connaudit_serving_cert); the forger does not verify it.
const gatewayScheme = "https"

// forgedConnect is an OTLP/JSON request with one tcp.connect record that
// plants finance/payroll-0 → 198.51.100.66 into this node's trail.
func forgedConnect(marker string) string {
	str := func(k, v string) string {
		return fmt.Sprintf(`{"key":%q,"value":{"stringValue":%q}}`, k, v)
	}
	return `{"resourceLogs":[{"resource":{"attributes":[` + strings.Join([]string{
		str("service.name", "connaudit"), str("service.instance.id", "forged-"+marker),
		str("k8s.node.name", kubenode.NodeName), str("k8s.namespace.name", "finance"), str("k8s.pod.name", "payroll-0"),
	}, ",") + `]},"scopeLogs":[{"logRecords":[{"timeUnixNano":"` + fmt.Sprint(time.Now().UnixNano()) +
		`","eventName":"tcp.connect","body":{"stringValue":` + fmt.Sprintf("%q", marker) + `},"attributes":[` +
		`{"key":"connaudit.seq","value":{"intValue":"5"}},` + str("network.peer.address", "198.51.100.66") + `]}]}]}]}`
}

// hostNetworkForgerRefused runs a pod on the host's network, where no
// NetworkPolicy applies to it, that posts a forged connect record naming
// this node to the gateway: once without a token, once with a token its
// own ServiceAccount got for the gateway's audience (any pod can ask for
// one). The gateway refuses both, and the forged record is not in the trail.
func hostNetworkForgerRefused(t *testing.T, n *kubenode.Node, kubectl kubectlCmd) {
	t.Helper()
	pods, err := n.Client().CoreV1().Pods("connaudit").List(t.Context(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=connaudit-collector"})
	if err != nil || len(pods.Items) != 1 || pods.Items[0].Status.PodIP == "" {
		t.Fatalf("the gateway's pod: %v, %v", pods, err)
	}
	url := gatewayScheme + "://" + pods.Items[0].Status.PodIP + ":4318/v1/logs"
	container := func(name, token string) string {
		return fmt.Sprintf(`
    - name: %s
      image: %s
      imagePullPolicy: Never
      args: [post, %q, %q, %q]
      volumeMounts: [{name: token, mountPath: /var/run/secrets/forger}]`, name, nettoolImage, url, token, forgedConnect(name))
	}
	manifest := `apiVersion: v1
kind: Pod
metadata: {name: forger, namespace: default}
spec:
  hostNetwork: true
  restartPolicy: Never
  containers:` + container("notoken", "-") + container("owntoken", "/var/run/secrets/forger/token") + `
  volumes:
    - name: token
      projected:
        sources:
          - serviceAccountToken: {audience: connaudit, path: token, expirationSeconds: 3600}
`
	if out, errOut, err := kubectl.run(manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply the forger pod: %v\n%s%s", err, out, errOut)
	}
	for _, c := range []struct{ name, status, says string }{
		{"notoken", "401 Unauthorized", "no bearer token"},
		{"owntoken", "401 Unauthorized", "not a connaudit agent"},
	} {
		line := postedBy(t, n, "forger", c.name)
		t.Logf("host-network forger, %s: %s", c.name, line)
		if !strings.Contains(line, `status="`+c.status+`"`) || !strings.Contains(line, c.says) {
			t.Errorf("host-network forger, %s: %s; want %s saying %q", c.name, line, c.status, c.says)
		}
	}
	if out := kubectl.must("connaudit", "query", "-n", "finance", "--since", "30m", "-o", "json"); strings.TrimSpace(out) != "" {
		t.Errorf("forged records reached the trail:\n%s", out)
	}
	kubectl.must("delete", "pod", "forger", "--wait=false")
}

var postedLine = regexp.MustCompile(`POSTED [^\n]*`)

// postedBy waits for the POSTED line of container in pod (in default).
func postedBy(t *testing.T, n *kubenode.Node, pod, container string) string {
	t.Helper()
	var log string
	if poll(2*time.Minute, time.Second, func() bool {
		files, _ := filepath.Glob(filepath.Join(n.PodLogDir(), "default_"+pod+"_*", container, "*.log"))
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil {
				log = string(b)
			}
		}
		return postedLine.MatchString(log)
	}) {
		return postedLine.FindString(log)
	}
	t.Fatalf("%s/%s posted nothing in 2 minutes; its log:\n%s", pod, container, log)
	return ""
}
