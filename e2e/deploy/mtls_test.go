package deploy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connaudit/connaudit/internal/netnstest"
	"github.com/connaudit/connaudit/internal/teststack"
)

// testCA signs certificates for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err, "CA key")
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err, "CA certificate")
	cert, err := x509.ParseCertificate(der)
	must(t, err, "parse CA certificate")
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes <name>.crt and <name>.key into dir, signed by ca, for a
// server (127.0.0.1) or a client.
func (ca *testCA) issue(t *testing.T, dir, name string, usage x509.ExtKeyUsage) (crt, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err, "key")
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"connaudit-collector.connaudit.svc"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &k.PublicKey, ca.key)
	must(t, err, "certificate %s", name)
	keyDER, err := x509.MarshalPKCS8PrivateKey(k)
	must(t, err, "marshal key")
	crt = writeFile(t, dir, name+".crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	key = writeFile(t, dir, name+".key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
	return crt, key
}

// The mtls overlay for real: the gateway runs its rendered configuration
// (config.yaml merged with tls.yaml), and the agent presents its certificate
// through the OTEL_EXPORTER_OTLP_* variables the overlay sets. An agent
// with a certificate of another CA is refused; it keeps its records spooled
// and says why exports fail, and once it has a valid certificate they all
// arrive.
func TestMTLSOverlay(t *testing.T) {
	r := render(t, "k8s/deploy/overlays/mtls")
	dir := t.TempDir()
	config := writeFile(t, dir, "config.yaml", r.configMapData(t, "connaudit-collector", "config.yaml"))
	tlsConfig := writeFile(t, dir, "tls.yaml", r.configMapData(t, "connaudit-collector", "tls.yaml"))

	ca := newTestCA(t, "connaudit test CA")
	tlsDir := filepath.Join(dir, "collector-tls") // as the Secret connaudit-collector-tls is mounted
	must(t, os.Mkdir(tlsDir, 0o700), "mkdir")
	ca.issue(t, tlsDir, "tls", x509.ExtKeyUsageServerAuth)
	writeFile(t, tlsDir, "ca.crt", string(ca.pem))

	vl := teststack.StartVictoriaLogs(t)
	col, tokenEnv := startGateway(t, vl.URL(), []string{config, tlsConfig}, "CONNAUDIT_COLLECTOR_TLS_DIR="+tlsDir)

	// The agent's TLS environment as the overlay sets it, with the files
	// where this test keeps them.
	agentCtr := r.daemonSet(t, "connaudit-agent").Spec.Template.Spec.Containers[0]
	endpoint, _ := envOf(agentCtr, "OTEL_EXPORTER_OTLP_ENDPOINT")
	if !strings.HasPrefix(endpoint, "https://") {
		t.Fatalf("the mtls overlay exports to %q; want https", endpoint)
	}
	agentEnv := func(caFile, crt, key string) []string {
		files := map[string]string{"/etc/connaudit/tls/ca.crt": caFile, "/etc/connaudit/tls/tls.crt": crt, "/etc/connaudit/tls/tls.key": key}
		env := append([]string{"OTEL_EXPORTER_OTLP_ENDPOINT=https://" + col.HTTPAddr()}, tokenEnv...)
		for _, name := range []string{"OTEL_EXPORTER_OTLP_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_KEY"} {
			v, ok := envOf(agentCtr, name)
			if !ok || files[v] == "" {
				t.Fatalf("the mtls overlay sets %s=%q; want one of %v", name, v, files)
			}
			env = append(env, name+"="+files[v])
		}
		return env
	}
	caFile := writeFile(t, dir, "ca.crt", string(ca.pem))
	goodCrt, goodKey := ca.issue(t, dir, "agent", x509.ExtKeyUsageClientAuth)
	other := newTestCA(t, "some other CA")
	badCrt, badKey := other.issue(t, dir, "impostor", x509.ExtKeyUsageClientAuth)

	listener := netnstest.Listen(t, "tcp4", "127.0.0.1:0")
	connect := func() {
		c, err := net.Dial("tcp4", listener.String())
		must(t, err, "connect")
		c.Close()
	}

	// A valid client certificate: records arrive.
	good := teststack.StartAgent(t, col, agentEnv(caFile, goodCrt, goodKey)...)
	waitForRow(t, vl, fmt.Sprintf(`event_name:="tcp.connect" network.peer.port:=%d`, listener.Port()), connect)
	goodMetrics, err := good.Metrics()
	must(t, err, "agent metrics")
	good.Stop()
	keyPEM, err := os.ReadFile(goodKey)
	must(t, err, "read the client key")
	keyBody := strings.Split(string(keyPEM), "\n")[1] // a line of the key's base64
	if strings.Contains(good.LogTail(1<<20), keyBody) || strings.Contains(goodMetrics, keyBody) {
		t.Error("the agent's log or /metrics contains its client key")
	}

	// A certificate of another CA: refused in the handshake, kept in the spool.
	bad := teststack.StartAgent(t, col, agentEnv(caFile, badCrt, badKey)...)
	marker := netnstest.Listen(t, "tcp4", "127.0.0.1:0")
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp4", marker.String())
		must(t, err, "connect")
		c.Close()
	}
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(bad.LogTail(64<<10), "export failed") {
		if time.Now().After(deadline) {
			t.Fatalf("the agent with a wrong certificate never reported failing exports:\n%s", bad.LogTail(16<<10))
		}
		time.Sleep(200 * time.Millisecond)
	}
	// With TLS 1.3 the client learns of the refusal only when its request
	// write fails, so the agent says that exports fail and how; the gateway
	// says why.
	if line := lastLineWith(bad.LogTail(64<<10), "export failed"); !strings.Contains(line, `"err":"Post \"https://`+col.HTTPAddr()) {
		t.Errorf("the agent's log does not name the failing export and its error: %s", line)
	}
	if line := lastLineWith(col.LogTail(64<<10), "TLS handshake error"); !strings.Contains(line, "certificate") {
		t.Errorf("the gateway's log does not say the client certificate was refused: %q", line)
	}
	metrics, err := bad.Metrics()
	must(t, err, "agent metrics")
	if spooled := metricValue(metrics, "connaudit_spool_records"); spooled < 3 {
		t.Errorf("connaudit_spool_records = %v with exports refused; want the records kept", spooled)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	rows, err := vl.Query(ctx, fmt.Sprintf(`network.peer.port:=%d`, marker.Port()))
	cancel()
	must(t, err, "query")
	if len(rows) != 0 {
		t.Fatalf("%d records of the refused agent reached VictoriaLogs", len(rows))
	}
	bad.Stop()

	// Its spool, taken over by an agent with a valid certificate: nothing was lost.
	teststack.StartAgent(t, col, append(agentEnv(caFile, goodCrt, goodKey), "CONNAUDIT_SPOOL_DIR="+bad.SpoolDir)...)
	vl.WaitFor(t, fmt.Sprintf(`event_name:="tcp.connect" network.peer.port:=%d`, marker.Port()), 3, time.Minute)
}

func lastLineWith(log, s string) string {
	lines := strings.Split(log, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], s) {
			return lines[i]
		}
	}
	return ""
}

// metricValue returns the value of an unlabelled metric in Prometheus text.
func metricValue(text, name string) float64 {
	for line := range strings.SplitSeq(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return -1
}
