package deploy

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connaudit/connaudit/internal/kubetest"
	"github.com/connaudit/connaudit/internal/netnstest"
	"github.com/connaudit/connaudit/internal/teststack"
)

// The agent's token rotates mid-load, as kubelet rotates a projected token
// (a new file swapped in by rename), to one bound to a new pod, and the old
// pod is deleted so that its token stops working: every connect still
// reaches the trail, with no restart. The gateway reviews tokens again every
// 2 s here (cache_ttl, as a user's overlay may set it), so that the old
// token fails during the test.
func TestTokenRotationMidLoadLosesNothing(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{})
	applyAll(t, c)
	auth := teststack.NewGatewayAuth(t, c)
	r := render(t, "k8s/deploy")
	dir := t.TempDir()
	config := writeFile(t, dir, "config.yaml", r.configMapData(t, "connaudit-collector", "config.yaml"))
	shortCache := writeFile(t, dir, "cache.yaml", "extensions:\n  connaudit_node_auth:\n    cache_ttl: 2s\n")
	vl := teststack.StartVictoriaLogs(t)
	col := teststack.StartGateway(t, vl.URL(), []string{config, shortCache}, auth.Env...)

	tokenFile := filepath.Join(dir, "token")
	swapIn := func(from string) {
		data, err := os.ReadFile(from)
		must(t, err, "read %s", from)
		tmp := tokenFile + ".new"
		must(t, os.WriteFile(tmp, data, 0o600), "write token")
		must(t, os.Rename(tmp, tokenFile), "swap token")
	}
	oldToken := auth.Token(teststack.Namespace, teststack.AgentAccount, "agent-a-1", "node-a", teststack.GatewayAudience)
	swapIn(oldToken)
	agent := teststack.StartAgent(t, col, "CONNAUDIT_NODE_NAME=node-a", "CONNAUDIT_KUBERNETES=off",
		"CONNAUDIT_EXPORT_TOKEN_FILE="+tokenFile)

	listener := netnstest.Listen(t, "tcp4", "127.0.0.1:0")
	total := 0
	load := func(d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end) && total < 20000; {
			for range 50 {
				conn, err := net.Dial("tcp4", listener.String())
				must(t, err, "connect")
				conn.Close()
				total++
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	load(3 * time.Second)
	swapIn(auth.Token(teststack.Namespace, teststack.AgentAccount, "agent-a-2", "node-a", teststack.GatewayAudience))
	load(time.Second)
	must(t, c.Client().CoreV1().Pods(teststack.Namespace).Delete(t.Context(), "agent-a-1", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}), "delete the old pod")
	load(8 * time.Second)
	if status, text := post(t, col, oldToken, forged("node-a", "old-token", "tcp.connect", 1, "old-token")); status != http.StatusUnauthorized {
		t.Fatalf("the old pod's token after the pod was deleted: %d %q, want 401 (else this test proves nothing)", status, text)
	}

	vl.WaitFor(t, fmt.Sprintf(`event_name:="tcp.connect" network.peer.port:=%d k8s.node.name:="node-a"`, listener.Port()), total, 2*time.Minute)
	rows, err := vl.Query(t.Context(), `event_name:="connaudit.loss"`)
	must(t, err, "query losses")
	if len(rows) != 0 {
		t.Errorf("loss records after a token rotation: %v", rows)
	}
	if !agent.Ready() {
		t.Errorf("the agent is not ready after its token rotated: %s", agent.LogTail(2048))
	}
	t.Logf("%d connects, all in the trail, across a token rotation to a new pod's token", total)
}
