package deploy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"

	"github.com/connaudit/connaudit/internal/kubetest"
	"github.com/connaudit/connaudit/internal/netnstest"
	"github.com/connaudit/connaudit/internal/teststack"
)

// forged is one OTLP/HTTP request that only an agent should be able to make:
// a record naming node, event and seq, as a forger would write it to fill a
// seq hole, erase a coverage gap or plant a connect.
func forged(node, instance, event string, seq int64, marker string) []byte {
	str := func(k, v string) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
	}
	req := &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
			str("service.name", "connaudit"), str("service.instance.id", instance), str("k8s.node.name", node),
		}},
		ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{{
			TimeUnixNano: uint64(time.Now().UnixNano()),
			EventName:    event,
			Body:         &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: marker}},
			Attributes: []*commonpb.KeyValue{
				{Key: "connaudit.seq", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: seq}}},
				str("connaudit.capture.resumed", "true"),
			},
		}}}},
	}}}
	b, err := proto.Marshal(req)
	if err != nil {
		panic(err)
	}
	return b
}

// post sends body to the gateway with the token in tokenFile ("" for none)
// and returns the HTTP status and the start of the answer.
func post(t *testing.T, col *teststack.Collector, tokenFile string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, col.HTTPEndpoint()+"/v1/logs", bytes.NewReader(body))
	must(t, err, "request")
	req.Header.Set("Content-Type", "application/x-protobuf")
	if tokenFile != "" {
		token, err := os.ReadFile(tokenFile)
		must(t, err, "read token")
		req.Header.Set("Authorization", "Bearer "+string(token))
	}
	resp, err := col.HTTPClient().Do(req)
	must(t, err, "post to the gateway")
	defer resp.Body.Close()
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return resp.StatusCode, string(text)
}

// Only the agent of a node writes that node's trail, through the shipped
// gateway configuration and a real API server's TokenReview: the agent's
// own records arrive; nothing without an agent's token, with another
// ServiceAccount's, with a token for another audience, or naming another
// node than the token's pod runs on.
func TestOnlyANodesAgentWritesItsTrail(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{})
	applyAll(t, c) // the ServiceAccounts and bindings as shipped
	auth := teststack.NewGatewayAuth(t, c)
	r := render(t, "k8s/deploy")
	config := writeFile(t, t.TempDir(), "config.yaml", r.configMapData(t, "connaudit-collector", "config.yaml"))
	vl := teststack.StartVictoriaLogs(t)
	col := teststack.StartGateway(t, vl.URL(), []string{config}, auth.Env...)

	// The agent of node-a, with its pod's token, as the DaemonSet runs it.
	agentToken := auth.AgentToken("node-a")
	agent := teststack.StartAgent(t, col, "CONNAUDIT_NODE_NAME=node-a", "CONNAUDIT_KUBERNETES=off",
		"CONNAUDIT_EXPORT_TOKEN_FILE="+agentToken)
	listener := netnstest.Listen(t, "tcp4", "127.0.0.1:0")
	const connects = 20
	for i := 0; i < connects; i++ {
		conn, err := net.Dial("tcp4", listener.String())
		must(t, err, "connect")
		conn.Close()
	}
	vl.WaitFor(t, fmt.Sprintf(`event_name:="tcp.connect" network.peer.port:=%d k8s.node.name:="node-a"`, listener.Port()), connects, time.Minute)

	intruder := auth.Token("default", "app", "app-0", "node-a", teststack.GatewayAudience)
	wrongAudience := auth.Token(teststack.Namespace, teststack.AgentAccount, "connaudit-agent-node-a", "node-a", "https://kubernetes.default.svc.cluster.local")
	otherNode := auth.AgentToken("node-b")
	for _, tc := range []struct {
		name, token string
		body        []byte
		status      int
		says        string
	}{
		{"no token", "", forged("node-a", "forged-1", "connaudit.agent.start", 1, "forged-no-token"), http.StatusUnauthorized, "no bearer token"},
		{"another ServiceAccount's token", intruder, forged("node-a", "forged-2", "tcp.connect", 5, "forged-intruder"), http.StatusUnauthorized, "not a connaudit agent"},
		{"a token for another audience", wrongAudience, forged("node-a", "forged-3", "tcp.connect", 5, "forged-audience"), http.StatusUnauthorized, "token"},
		{"node-b's agent naming node-a", otherNode, forged("node-a", "forged-4", "tcp.connect", 5, "forged-other-node"), http.StatusForbidden, `records name node "node-a"`},
		{"node-a's token naming node-b", agentToken, forged("node-b", "forged-5", "connaudit.agent.start", 1, "forged-own-token"), http.StatusForbidden, "its own node's trail"},
	} {
		status, text := post(t, col, tc.token, tc.body)
		if status != tc.status || !strings.Contains(text, tc.says) {
			t.Errorf("%s: %d %q; want %d saying %q", tc.name, status, text, tc.status, tc.says)
		}
	}
	// And what an agent may write goes through the same door.
	if status, text := post(t, col, otherNode, forged("node-b", "real-b", "connaudit.agent.start", 1, "node-b-start")); status != http.StatusOK {
		t.Errorf("node-b's agent writing node-b's trail: %d %q", status, text)
	}
	vl.WaitFor(t, `"node-b-start"`, 1, time.Minute)
	rows, err := vl.Query(t.Context(), `"forged-"`)
	must(t, err, "query")
	if len(rows) != 0 {
		t.Errorf("forged records reached the trail: %v", rows)
	}
	if !agent.Ready() {
		t.Errorf("the agent of node-a is not ready: %s", agent.LogTail(2048))
	}
}
