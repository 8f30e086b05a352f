package teststack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// StartGateway starts otelcol-connaudit with the given configuration files
// (merged in order, as repeated --config flags), such as the gateway
// configuration of k8s/deploy, exporting to victoriaLogsURL. It sets the
// listen addresses of k8s/deploy/base/collector-config.yaml to free ports of
// 127.0.0.1; env adds variables (e.g. CONNAUDIT_COLLECTOR_TLS_DIR).
//
// The shipped configuration serves TLS with a certificate from
// connaudit_serving_cert: StartGateway gives it a directory, adds 127.0.0.1
// to the certificate's names, and once the gateway is up reads the CA it
// published from the API server that env names (GatewayAuth.Env). Then
// HTTPEndpoint is https, HTTPClient trusts that CA, and StartAgent hands it
// to the agent as OTEL_EXPORTER_OTLP_CERTIFICATE.
func StartGateway(t testing.TB, victoriaLogsURL string, configs []string, env ...string) *Collector {
	t.Helper()
	c := &Collector{
		t:           t,
		grpcAddr:    fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		httpAddr:    fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		metricsPort: freePort(t),
		storageDir:  t.TempDir(),
	}
	certDir := t.TempDir()
	full := append(os.Environ(),
		"CONNAUDIT_COLLECTOR_GRPC_ENDPOINT="+c.grpcAddr,
		"CONNAUDIT_COLLECTOR_HTTP_ENDPOINT="+c.httpAddr,
		fmt.Sprintf("CONNAUDIT_COLLECTOR_HEALTH_ENDPOINT=127.0.0.1:%d", freePort(t)),
		"CONNAUDIT_COLLECTOR_METRICS_HOST=127.0.0.1",
		"CONNAUDIT_COLLECTOR_METRICS_PORT="+strconv.Itoa(c.metricsPort),
		"CONNAUDIT_COLLECTOR_STORAGE_DIR="+c.storageDir,
		"CONNAUDIT_COLLECTOR_SERVING_CERT_DIR="+certDir,
		"CONNAUDIT_VICTORIALOGS_URL="+victoriaLogsURL,
	)
	var args []string
	for _, cfg := range configs {
		args = append(args, "--config="+cfg)
	}
	// The agents of the tests dial 127.0.0.1, not the Service's names.
	loopback := filepath.Join(t.TempDir(), "serving-cert-loopback.yaml")
	if err := os.WriteFile(loopback, []byte("extensions:\n  connaudit_serving_cert:\n    ip_addresses: [127.0.0.1]\n"), 0o600); err != nil {
		t.Fatalf("teststack: %v", err)
	}
	args = append(args, "--config="+loopback)
	full = append(full, env...)
	c.proc = newProcess(t, "otelcol-connaudit", Binary(t, "otelcol-connaudit"), args, full)
	t.Cleanup(c.proc.cleanup)
	c.Start()
	if _, err := os.Stat(filepath.Join(certDir, "tls.pem")); err == nil {
		c.caFile = readServingCA(t, full, t.TempDir())
	}
	return c
}

// readServingCA reads the ConfigMap connaudit-gateway-ca as the gateway
// (the API server, CA and token of CONNAUDIT_COLLECTOR_API_* in env) and
// writes its ca.crt into dir.
func readServingCA(t testing.TB, env []string, dir string) string {
	t.Helper()
	cfg := &rest.Config{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "CONNAUDIT_COLLECTOR_API_SERVER":
			cfg.Host = v
		case "CONNAUDIT_COLLECTOR_API_CA_FILE":
			cfg.TLSClientConfig.CAFile = v
		case "CONNAUDIT_COLLECTOR_API_TOKEN_FILE":
			cfg.BearerTokenFile = v
		}
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("teststack: a client for the gateway's API server: %v", err)
	}
	cm, err := client.CoreV1().ConfigMaps(Namespace).Get(t.Context(), "connaudit-gateway-ca", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("teststack: the gateway's published CA: %v", err)
	}
	path := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(path, []byte(cm.Data["ca.crt"]), 0o600); err != nil {
		t.Fatalf("teststack: %v", err)
	}
	return path
}

// CAFile is the CA that verifies the gateway's serving certificate, as
// published; empty when it serves plain OTLP.
func (c *Collector) CAFile() string { return c.caFile }

// HTTPClient returns a client for the collector's OTLP/HTTP port: one that
// trusts its published CA when it serves TLS.
func (c *Collector) HTTPClient() *http.Client {
	c.t.Helper()
	if c.caFile == "" {
		return httpClient
	}
	pem, err := os.ReadFile(c.caFile)
	if err != nil {
		c.t.Fatalf("teststack: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		c.t.Fatalf("teststack: %s holds no certificate", c.caFile)
	}
	return &http.Client{Timeout: httpClient.Timeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

// HTTPAddr returns the OTLP/HTTP listen address, "127.0.0.1:port".
func (c *Collector) HTTPAddr() string { return c.httpAddr }

// LogTail returns the last n bytes of the agent's output (its JSON log).
func (a *Agent) LogTail(n int64) string { return a.proc.logTail(n) }

// VictoriaLogsCluster is VictoriaLogs in cluster mode: storage nodes behind
// an insert and a select front end, all the victoria-logs binary.
type VictoriaLogsCluster struct {
	t         testing.TB
	storage   []*VictoriaLogs
	insertURL string
	selectVL  *VictoriaLogs // the select front end; Query flushes the storage nodes first
}

// StartVictoriaLogsCluster starts len(storageArgs) storage nodes, each with
// its arguments plus a data directory and listen address, and insert and
// select front ends with their arguments plus -storageNode and a listen
// address. Arguments that those replace (-storageDataPath, -httpListenAddr,
// -storageNode) are dropped.
func StartVictoriaLogsCluster(t testing.TB, storageArgs [][]string, insertArgs, selectArgs []string) *VictoriaLogsCluster {
	t.Helper()
	path := Binary(t, "victoria-logs")
	vc := &VictoriaLogsCluster{t: t}
	var nodes []string
	start := func(name string, args []string, extra ...string) *VictoriaLogs {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		args = append(dropFlags(args, "-storageDataPath", "-httpListenAddr", "-storageNode"), "-httpListenAddr="+addr, "-loggerLevel=WARN")
		args = append(args, extra...)
		v := &VictoriaLogs{t: t, proc: newProcess(t, name, path, args, nil), url: "http://" + addr}
		t.Cleanup(v.proc.cleanup)
		v.Start()
		return v
	}
	for i, args := range storageArgs {
		v := start(fmt.Sprintf("vlstorage-%d", i), args, "-storageDataPath="+t.TempDir())
		vc.storage = append(vc.storage, v)
		nodes = append(nodes, strings.TrimPrefix(v.url, "http://"))
	}
	storageNode := "-storageNode=" + strings.Join(nodes, ",")
	vc.insertURL = start("vlinsert", insertArgs, storageNode).url
	vc.selectVL = start("vlselect", selectArgs, storageNode)
	return vc
}

// InsertURL is the base URL of the insert front end.
func (vc *VictoriaLogsCluster) InsertURL() string { return vc.insertURL }

// SelectURL is the base URL of the select front end.
func (vc *VictoriaLogsCluster) SelectURL() string { return vc.selectVL.url }

// Storage returns the storage nodes, for queries of one node alone.
func (vc *VictoriaLogsCluster) Storage() []*VictoriaLogs { return vc.storage }

// Query flushes every storage node, then runs a LogsQL query through the
// select front end over HTTP.
func (vc *VictoriaLogsCluster) Query(ctx context.Context, logsql string) ([]map[string]string, error) {
	for _, s := range vc.storage {
		if err := s.post(ctx, "/internal/force_flush", nil); err != nil {
			return nil, err
		}
	}
	return vc.selectVL.queryNoFlush(ctx, logsql)
}

func dropFlags(args []string, flags ...string) []string {
	var kept []string
	for _, a := range args {
		name, _, _ := strings.Cut(a, "=")
		drop := false
		for _, f := range flags {
			drop = drop || name == f
		}
		if !drop {
			kept = append(kept, a)
		}
	}
	return kept
}

// LogTail returns the last n bytes of the collector's output.
func (c *Collector) LogTail(n int64) string { return c.proc.logTail(n) }
