package deploy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connaudit/connaudit/internal/kubetest"
	"github.com/connaudit/connaudit/internal/netnstest"
	"github.com/connaudit/connaudit/internal/teststack"
)

// The names of the gateway's Service, as the shipped configuration lists
// them, and the address the tests dial.
var servingNames = []string{"connaudit-collector", "connaudit-collector.connaudit", "connaudit-collector.connaudit.svc", "connaudit-collector.connaudit.svc.cluster.local"}

const gatewayCA = "connaudit-gateway-ca"

// shippedGatewayConfig writes the gateway configuration as k8s/deploy renders it.
func shippedGatewayConfig(t *testing.T) string {
	t.Helper()
	return writeFile(t, t.TempDir(), "config.yaml", render(t, "k8s/deploy").configMapData(t, "connaudit-collector", "config.yaml"))
}

// servedCertificate completes a handshake with addr, verifying against
// caFile for serverName, and returns the certificate the server presented.
func servedCertificate(t *testing.T, addr, caFile, serverName string) (*x509.Certificate, error) {
	t.Helper()
	caPEM, err := os.ReadFile(caFile)
	must(t, err, "read the published CA")
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// connects makes n connects to listener.
func connects(t *testing.T, listener string, n int) {
	t.Helper()
	for range n {
		conn, err := net.Dial("tcp4", listener)
		must(t, err, "connect")
		conn.Close()
	}
}

// The shipped gateway serves TLS with no cert-manager: its first start
// creates the CA Secret and publishes the CA certificate (and not the key)
// in a ConfigMap; its certificate names the Service; an agent that trusts
// the published CA delivers its records; a restart and a second replica
// sign with the same CA and leave both objects as they were; a client that
// does not trust the CA, and a plaintext client, are refused.
func TestGatewayServesTLSWithItsOwnCA(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{})
	auth := teststack.NewGatewayAuth(t, c)
	config := shippedGatewayConfig(t)
	vl := teststack.StartVictoriaLogs(t)
	col := teststack.StartGateway(t, vl.URL(), []string{config}, auth.Env...)
	if col.CAFile() == "" || !strings.HasPrefix(col.HTTPEndpoint(), "https://") {
		t.Fatalf("the shipped gateway wrote no serving certificate (endpoint %s)", col.HTTPEndpoint())
	}

	ctx := t.Context()
	secret, err := c.Client().CoreV1().Secrets(namespace).Get(ctx, gatewayCA, metav1.GetOptions{})
	must(t, err, "the CA's Secret")
	cm, err := c.Client().CoreV1().ConfigMaps(namespace).Get(ctx, gatewayCA, metav1.GetOptions{})
	must(t, err, "the published CA")
	if secret.Type != corev1.SecretTypeTLS || len(secret.Data["tls.key"]) == 0 || !bytes.Equal(secret.Data["tls.crt"], []byte(cm.Data["ca.crt"])) {
		t.Errorf("Secret %s (type %s, keys %v) and ConfigMap ca.crt disagree", gatewayCA, secret.Type, slices.Collect(maps.Keys(secret.Data)))
	}
	for k, v := range cm.Data {
		if k != "ca.crt" || strings.Contains(v, "PRIVATE KEY") {
			t.Errorf("the ConfigMap publishes %s: want ca.crt only, with no key", k)
		}
	}
	ca, err := x509.ParseCertificate(pemBlock(t, cm.Data["ca.crt"]))
	must(t, err, "parse the CA")
	if !ca.IsCA || ca.NotAfter.Sub(ca.NotBefore) < 5*365*24*time.Hour {
		t.Errorf("CA %s: IsCA %v, valid %s to %s; want a long-lived CA", ca.Subject, ca.IsCA, ca.NotBefore, ca.NotAfter)
	}

	// The certificate names every name of the Service, and is signed by
	// that CA; no other name.
	for _, name := range servingNames {
		leaf, err := servedCertificate(t, col.HTTPAddr(), col.CAFile(), name)
		if err != nil {
			t.Fatalf("handshake for %s: %v", name, err)
		}
		if !slices.Equal(leaf.DNSNames, servingNames) {
			t.Errorf("served certificate names %v; want %v", leaf.DNSNames, servingNames)
		}
	}
	if _, err := servedCertificate(t, col.HTTPAddr(), col.CAFile(), "victorialogs.connaudit.svc"); err == nil {
		t.Error("the served certificate is valid for victorialogs.connaudit.svc")
	}

	// An agent that trusts the published CA delivers over https.
	teststack.StartAgent(t, col, "CONNAUDIT_NODE_NAME=node-a", "CONNAUDIT_KUBERNETES=off",
		"CONNAUDIT_EXPORT_TOKEN_FILE="+auth.AgentToken("node-a"))
	listener := netnstest.Listen(t, "tcp4", "127.0.0.1:0")
	const n = 20
	connects(t, listener.String(), n)
	vl.WaitFor(t, fmt.Sprintf(`event_name:="tcp.connect" network.peer.port:=%d k8s.node.name:="node-a"`, listener.Port()), n, time.Minute)

	// An agent that starts before the CA is published (kubelet mounts the
	// optional ConfigMap volume empty) keeps its records, says why, and
	// delivers them once the file appears.
	late := filepath.Join(t.TempDir(), "ca.crt")
	waiting := teststack.StartAgent(t, col, "CONNAUDIT_NODE_NAME=node-b", "CONNAUDIT_KUBERNETES=off",
		"CONNAUDIT_EXPORT_TOKEN_FILE="+auth.AgentToken("node-b"), "OTEL_EXPORTER_OTLP_CERTIFICATE="+late)
	listenerB := netnstest.Listen(t, "tcp4", "127.0.0.1:0")
	connects(t, listenerB.String(), n)
	for i := 0; !strings.Contains(waiting.LogTail(64<<10), "has not published its CA at "+late); i++ {
		if i == 300 {
			t.Fatalf("the agent never said the CA is not published yet:\n%s", waiting.LogTail(4096))
		}
		time.Sleep(100 * time.Millisecond)
	}
	caPEM, err := os.ReadFile(col.CAFile())
	must(t, err, "read the published CA")
	writeFile(t, filepath.Dir(late), "ca.crt.new", string(caPEM))
	must(t, os.Rename(late+".new", late), "publish the CA to the waiting agent")
	vl.WaitFor(t, fmt.Sprintf(`event_name:="tcp.connect" network.peer.port:=%d k8s.node.name:="node-b"`, listenerB.Port()), n, time.Minute)

	// Refused: a client that trusts only the system's CAs, and plaintext
	// OTLP/HTTP and OTLP/gRPC.
	body := forged("node-a", "tls-test", "tcp.connect", 1, "tls-test")
	req, _ := http.NewRequest(http.MethodPost, col.HTTPEndpoint()+"/v1/logs", bytes.NewReader(body))
	if _, err := (&http.Client{Timeout: 10 * time.Second}).Do(req); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client that does not trust the gateway's CA: %v; want a certificate error", err)
	}
	token, err := os.ReadFile(auth.AgentToken("node-a"))
	must(t, err, "read the agent's token")
	req, _ = http.NewRequest(http.MethodPost, "http://"+col.HTTPAddr()+"/v1/logs", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Authorization", "Bearer "+string(token))
	if resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("plaintext OTLP/HTTP with a valid token: %s; want refused", resp.Status)
		}
	}
	grpcConn, err := net.DialTimeout("tcp", col.GRPCEndpoint(), 10*time.Second)
	must(t, err, "dial the gRPC port")
	grpcConn.SetDeadline(time.Now().Add(10 * time.Second))
	// The HTTP/2 preface in the clear: a TLS server answers with an alert
	// or closes; it never answers with HTTP/2 SETTINGS.
	_, _ = grpcConn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	answer := make([]byte, 9)
	if k, _ := grpcConn.Read(answer); k == 9 && answer[3] == 0x4 {
		t.Error("the gRPC port answered a plaintext HTTP/2 preface with SETTINGS")
	}
	grpcConn.Close()

	// A restart and a second replica: the same CA, the objects untouched.
	col.Stop()
	col.Start()
	second := teststack.StartGateway(t, vl.URL(), []string{config}, auth.Env...)
	for _, g := range []*teststack.Collector{col, second} {
		leaf, err := servedCertificate(t, g.HTTPAddr(), col.CAFile(), servingNames[2])
		if err != nil {
			t.Fatalf("after a restart or on a second replica, the first CA does not verify: %v", err)
		}
		if err := leaf.CheckSignatureFrom(ca); err != nil {
			t.Errorf("served certificate not signed by the first CA: %v", err)
		}
	}
	secret2, err := c.Client().CoreV1().Secrets(namespace).Get(ctx, gatewayCA, metav1.GetOptions{})
	must(t, err, "the CA's Secret")
	cm2, err := c.Client().CoreV1().ConfigMaps(namespace).Get(ctx, gatewayCA, metav1.GetOptions{})
	must(t, err, "the published CA")
	if secret2.ResourceVersion != secret.ResourceVersion || cm2.ResourceVersion != cm.ResourceVersion {
		t.Errorf("a restart or a second replica rewrote the CA's Secret (%s→%s) or ConfigMap (%s→%s)",
			secret.ResourceVersion, secret2.ResourceVersion, cm.ResourceVersion, cm2.ResourceVersion)
	}
}

// A serving certificate renewed every few seconds while an agent exports
// (and reconnects, after a restart) loses no record: every connect is in
// VictoriaLogs. The lifetime is the test's; the shipped one is 7 days.
func TestGatewayServingCertRenewalLosesNothing(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{})
	auth := teststack.NewGatewayAuth(t, c)
	short := writeFile(t, t.TempDir(), "short.yaml", `
extensions:
  connaudit_serving_cert:
    validity: 6s
receivers:
  otlp:
    protocols:
      grpc:
        tls: {reload_interval: 1s}
      http:
        tls: {reload_interval: 1s}
`)
	vl := teststack.StartVictoriaLogs(t)
	col := teststack.StartGateway(t, vl.URL(), []string{shippedGatewayConfig(t), short}, auth.Env...)
	agent := teststack.StartAgent(t, col, "CONNAUDIT_NODE_NAME=node-a", "CONNAUDIT_KUBERNETES=off",
		"CONNAUDIT_EXPORT_TOKEN_FILE="+auth.AgentToken("node-a"))
	listener := netnstest.Listen(t, "tcp4", "127.0.0.1:0")

	// Connect until the gateway has served three certificates (bounded in
	// rounds and in time); restart the agent after the first renewal, so
	// that it handshakes again with a renewed certificate.
	serials := map[string]bool{}
	total, restarted := 0, false
	deadline := time.Now().Add(2 * time.Minute)
	for round := 0; len(serials) < 3; round++ {
		if round == 600 || time.Now().After(deadline) {
			t.Fatalf("saw %d serving certificates in %d rounds; want 3", len(serials), round)
		}
		connects(t, listener.String(), 5)
		total += 5
		leaf, err := servedCertificate(t, col.HTTPAddr(), col.CAFile(), servingNames[2])
		if err != nil {
			t.Fatalf("round %d: handshake: %v", round, err)
		}
		serials[leaf.SerialNumber.String()] = true
		if len(serials) == 2 && !restarted {
			agent.Stop()
			agent.Start()
			restarted = true
		}
		time.Sleep(200 * time.Millisecond)
	}
	rows := vl.WaitFor(t, fmt.Sprintf(`event_name:="tcp.connect" network.peer.port:=%d k8s.node.name:="node-a"`, listener.Port()), total, 2*time.Minute)
	ports := map[string]bool{}
	for _, r := range rows {
		ports[r["network.local.port"]] = true
	}
	if len(ports) != total {
		t.Errorf("%d distinct connects in the trail; the test made %d", len(ports), total)
	}
}

// A gateway whose ServiceAccount lacks the Role does not start, and says
// which permission is missing and where it is granted.
func TestGatewayWithoutItsRoleSaysWhatIsMissing(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{})
	auth := teststack.NewGatewayAuth(t, c)
	ctx := t.Context()
	must(t, c.Client().RbacV1().RoleBindings(namespace).Delete(ctx, "connaudit-collector-serving-cert", metav1.DeleteOptions{}), "delete the gateway's RoleBinding")
	// RBAC takes effect through the API server's informers: wait (bounded)
	// until the gateway may no longer read the Secret.
	for i := 0; ; i++ {
		if ok, _ := accessReview(t, c, "system:serviceaccount:connaudit:connaudit-collector",
			&authorizationv1.ResourceAttributes{Namespace: namespace, Resource: "secrets", Verb: "get", Name: gatewayCA}); !ok {
			break
		}
		if i == 100 {
			t.Fatal("the gateway may still get its CA's Secret 10s after its RoleBinding was deleted")
		}
		time.Sleep(100 * time.Millisecond)
	}

	runCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(runCtx, teststack.Binary(t, "otelcol-connaudit"), "--config="+shippedGatewayConfig(t))
	cmd.Env = append(os.Environ(), auth.Env...)
	cmd.Env = append(cmd.Env,
		"CONNAUDIT_COLLECTOR_GRPC_ENDPOINT=127.0.0.1:0", "CONNAUDIT_COLLECTOR_HTTP_ENDPOINT=127.0.0.1:0",
		"CONNAUDIT_COLLECTOR_HEALTH_ENDPOINT=127.0.0.1:0", "CONNAUDIT_COLLECTOR_METRICS_HOST=127.0.0.1", "CONNAUDIT_COLLECTOR_METRICS_PORT=0",
		"CONNAUDIT_COLLECTOR_SERVING_CERT_DIR="+filepath.Join(t.TempDir(), "cert"), "CONNAUDIT_VICTORIALOGS_URL=http://127.0.0.1:1")
	out, err := cmd.CombinedOutput()
	if err == nil || runCtx.Err() != nil {
		t.Fatalf("the gateway without its Role: exit %v (context %v); want it to stop at once\n%s", err, runCtx.Err(), tail(out))
	}
	want := "forbidden: the gateway's ServiceAccount needs get, create and update on secrets named connaudit-gateway-ca in namespace connaudit (k8s/deploy/base/collector-rbac.yaml)"
	if !strings.Contains(string(out), want) {
		t.Errorf("the gateway's error does not say %q:\n%s", want, tail(out))
	}
	if _, err := c.Client().CoreV1().Secrets(namespace).Get(ctx, gatewayCA, metav1.GetOptions{}); err == nil {
		t.Error("a CA Secret exists although the gateway may not create it")
	}
}

func tail(b []byte) []byte {
	if len(b) > 4000 {
		return b[len(b)-4000:]
	}
	return b
}

func pemBlock(t *testing.T, s string) []byte {
	t.Helper()
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		t.Fatalf("no PEM block in %q", s)
	}
	return block.Bytes
}
