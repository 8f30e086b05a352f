// Package kubetest runs a real etcd and kube-apiserver for tests, built by
// `make k8s-bins`. No kubelet and no controllers run: tests create Pods (with
// spec.nodeName, status written through the status subresource), Services,
// EndpointSlices and the like themselves.
package kubetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/keyutil"

	"github.com/connaudit/connaudit/internal/ports"
)

// DefaultServiceCIDR is a documentation address block (RFC 5737), so that
// Service ClusterIPs can be real test hosts in network namespaces.
const DefaultServiceCIDR = "203.0.113.0/24"

const (
	startTimeout = 90 * time.Second
	stopGrace    = 15 * time.Second
	logTailLines = 60
)

// Options configures a Cluster.
type Options struct {
	// ServiceCIDR is the API server's --service-cluster-ip-range.
	// Default DefaultServiceCIDR.
	ServiceCIDR string
	// APIServerArgs are added to kube-apiserver's flags, e.g. an
	// --admission-control-config-file.
	APIServerArgs []string
}

// Cluster is a running etcd and kube-apiserver on free 127.0.0.1 ports. The
// client authenticates as a member of system:masters.
type Cluster struct {
	t          testing.TB
	etcd       *process
	apiserver  *process
	config     *rest.Config
	kubeconfig string
	client     kubernetes.Interface
}

// Start starts etcd and kube-apiserver in temporary directories and waits
// until the API server is ready. Both are stopped at t.Cleanup; if the test
// failed, the tails of their logs are logged first.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.ServiceCIDR == "" {
		opts.ServiceCIDR = DefaultServiceCIDR
	}
	bin := binDir(t)
	dir := t.TempDir()
	c := &Cluster{t: t}
	t.Cleanup(c.stop)

	ports, err := freePorts(3)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	apiPort := ports[2]

	c.etcd = &process{
		name:    "etcd",
		path:    filepath.Join(bin, "etcd"),
		logPath: filepath.Join(dir, "etcd.log"),
		args: []string{
			"--name=kubetest",
			"--data-dir=" + filepath.Join(dir, "etcd"),
			"--listen-client-urls=" + etcdURL,
			"--advertise-client-urls=" + etcdURL,
			"--listen-peer-urls=" + peerURL,
			"--initial-advertise-peer-urls=" + peerURL,
			"--initial-cluster=kubetest=" + peerURL,
			"--unsafe-no-fsync", // test data only
			"--log-level=warn",
		},
	}
	if err := c.etcd.start(); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	if err := waitHTTP(c.etcd, http.DefaultClient, etcdURL+"/health"); err != nil {
		c.fail("wait for etcd: %v", err)
	}

	token, err := randomHex(16)
	if err != nil {
		t.Fatalf("kubetest: make token: %v", err)
	}
	files, err := writeAuthFiles(dir, token)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	certDir := filepath.Join(dir, "certs")
	c.apiserver = &process{
		name:    "kube-apiserver",
		path:    filepath.Join(bin, "kube-apiserver"),
		logPath: filepath.Join(dir, "kube-apiserver.log"),
		args: []string{
			"--etcd-servers=" + etcdURL,
			"--secure-port=" + strconv.Itoa(apiPort),
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			// The endpoint reconciler refuses a loopback advertise address; the
			// "default/kubernetes" Service still exists, without endpoints.
			"--endpoint-reconciler-type=none",
			"--cert-dir=" + certDir,
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + files.saKey,
			"--service-account-signing-key-file=" + files.saKey,
			"--token-auth-file=" + files.tokens,
			"--authorization-mode=RBAC",
			"--service-cluster-ip-range=" + opts.ServiceCIDR,
			// No controller creates the "default" ServiceAccount, without which
			// the ServiceAccount admission plugin rejects every Pod.
			"--disable-admission-plugins=ServiceAccount",
		},
	}
	c.apiserver.args = append(c.apiserver.args, opts.APIServerArgs...)

	c.config = &rest.Config{
		Host:            "https://127.0.0.1:" + strconv.Itoa(apiPort),
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: filepath.Join(certDir, "apiserver.crt")},
		QPS:             -1, // no client-side rate limit in tests
	}
	c.StartAPIServer()

	c.client, err = kubernetes.NewForConfig(c.Config())
	if err != nil {
		t.Fatalf("kubetest: make client: %v", err)
	}
	c.kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(c.kubeconfig, c.config); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return c
}

// Config returns a copy of the client configuration for the API server.
func (c *Cluster) Config() *rest.Config { return rest.CopyConfig(c.config) }

// Kubeconfig returns the path of a kubeconfig file for the API server, for
// kubectl and for code under test that loads one.
func (c *Cluster) Kubeconfig() string { return c.kubeconfig }

// Client returns a clientset for the API server.
func (c *Cluster) Client() kubernetes.Interface { return c.client }

// StopAPIServer stops the API server, leaving etcd running, for tests of
// what happens when the API server goes away.
func (c *Cluster) StopAPIServer() {
	c.t.Helper()
	c.apiserver.stop(stopGrace)
}

// StartAPIServer starts the API server again on the same port, with the same
// certificates and credentials, and waits until it is ready. A running API
// server is left alone.
func (c *Cluster) StartAPIServer() {
	c.t.Helper()
	if c.apiserver.cmd != nil {
		return
	}
	if err := c.apiserver.start(); err != nil {
		c.fail("%v", err)
	}
	if err := c.waitReady(); err != nil {
		c.fail("wait for kube-apiserver: %v", err)
	}
}

// waitReady polls /readyz until it returns 200. The serving certificate is
// created by the API server at start, so TLS is not verified while waiting.
func (c *Cluster) waitReady() error {
	insecure := rest.CopyConfig(c.config)
	insecure.TLSClientConfig = rest.TLSClientConfig{Insecure: true}
	transport, err := rest.TransportFor(insecure)
	if err != nil {
		return fmt.Errorf("make transport: %w", err)
	}
	return waitHTTP(c.apiserver, &http.Client{Transport: transport, Timeout: 5 * time.Second}, c.config.Host+"/readyz")
}

// fail dumps the component logs and fails the test.
func (c *Cluster) fail(format string, args ...any) {
	c.t.Helper()
	c.dumpLogs()
	c.t.Fatalf("kubetest: "+format, args...)
}

func (c *Cluster) dumpLogs() {
	c.t.Helper()
	for _, p := range []*process{c.apiserver, c.etcd} {
		if p != nil {
			p.dumpLog(c.t, logTailLines)
		}
	}
}

func (c *Cluster) stop() {
	if c.t.Failed() {
		c.dumpLogs()
	}
	if c.apiserver != nil {
		c.apiserver.stop(stopGrace)
	}
	if c.etcd != nil {
		c.etcd.stop(stopGrace)
	}
}

// waitHTTP polls url until it answers 200, failing early if p exits.
func waitHTTP(p *process, client *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var last error
	for {
		if exited, err := p.exited(); exited {
			return fmt.Errorf("%s exited: %v", p.name, err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %v", startTimeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// freePorts returns n distinct free TCP ports on 127.0.0.1, out of the
// ephemeral range, so that a restarted API server gets its port back.
func freePorts(n int) ([]int, error) {
	var free []int
	for i := 0; i < n; i++ {
		p, err := ports.Free()
		if err != nil {
			return nil, fmt.Errorf("find free port: %w", err)
		}
		free = append(free, p)
	}
	return free, nil
}

type authFiles struct{ saKey, tokens string }

// writeAuthFiles writes the service account key pair (one EC private key
// serves as both the signing key and the verification key) and the static
// token file that makes the token a member of system:masters.
func writeAuthFiles(dir, token string) (authFiles, error) {
	files := authFiles{saKey: filepath.Join(dir, "sa.key"), tokens: filepath.Join(dir, "tokens.csv")}
	key, err := keyutil.MakeEllipticPrivateKeyPEM()
	if err != nil {
		return files, fmt.Errorf("make service account key: %w", err)
	}
	if err := os.WriteFile(files.saKey, key, 0o600); err != nil {
		return files, fmt.Errorf("write service account key: %w", err)
	}
	line := token + ",kubetest-admin,kubetest-admin,system:masters\n"
	if err := os.WriteFile(files.tokens, []byte(line), 0o600); err != nil {
		return files, fmt.Errorf("write token file: %w", err)
	}
	return files, nil
}

// writeKubeconfig writes a kubeconfig with one context for cfg.
func writeKubeconfig(path string, cfg *rest.Config) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthority: cfg.CAFile}
	kc.AuthInfos["kubetest"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: "kubetest"}
	kc.CurrentContext = "kubetest"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
