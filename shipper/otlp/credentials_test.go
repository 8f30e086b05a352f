package otlp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rotate replaces path's content the way kubelet does: a new file renamed
// over the old one, with a new mtime.
func rotate(t *testing.T, path, content string, at time.Time) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tmp, at, at); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// A rotated token is sent from the next export on, with no restart.
func TestSendSendsTheCurrentToken(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
	}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "token")
	t0 := time.Now().Add(-time.Hour)
	rotate(t, path, "first\n", t0)
	token, err := NewTokenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	cfg, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Token = token
	x := New(cfg)
	_, req := testRequest(t)
	if err := x.Send(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	rotate(t, path, "second", t0.Add(time.Minute))
	if err := x.Send(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	// Between the removal of the old file and the new one, the last token.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := x.Send(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	want := []string{"Bearer first", "Bearer second", "Bearer second"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("Authorization headers %q, want %q", got, want)
	}
}

func TestTokenFileErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewTokenFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing token file was accepted")
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewTokenFile(empty); err == nil {
		t.Error("an empty token file was accepted")
	}
}

func writeKeyPair(t *testing.T, dir, cn string, at time.Time) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: at.Add(-time.Hour), NotAfter: at.Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	rotate(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), at)
	rotate(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})), at)
	return certFile, keyFile
}

// A renewed client certificate is presented at the next handshake.
func TestClientCertificateIsReloaded(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Now().Add(-time.Hour)
	certFile, keyFile := writeKeyPair(t, dir, "agent-1", t0)
	t.Setenv("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", certFile)
	t.Setenv("OTEL_EXPORTER_OTLP_CLIENT_KEY", keyFile)
	cfg, err := tlsFromEnv("gateway.example")
	if err != nil {
		t.Fatal(err)
	}
	subject := func() string {
		c, err := cfg.GetClientCertificate(&tls.CertificateRequestInfo{})
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.Subject.CommonName
	}
	if got := subject(); got != "agent-1" {
		t.Fatalf("certificate %q", got)
	}
	writeKeyPair(t, dir, "agent-1-renewed", t0.Add(time.Minute))
	if got := subject(); got != "agent-1-renewed" {
		t.Errorf("after renewal the certificate is %q", got)
	}
	// A half-written renewal (cert without its key) keeps the last good pair.
	rotate(t, keyFile, "garbage", t0.Add(2*time.Minute))
	if got := subject(); got != "agent-1-renewed" {
		t.Errorf("during a broken renewal the certificate is %q", got)
	}
}

// testCA is a CA that signs server certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return testCA{cert, key, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

// serve starts an OTLP/HTTP stand-in on 127.0.0.1 with ca.serverCert(dnsName).
func (ca testCA) serve(t *testing.T, dnsName string) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.serverCert(t, dnsName)}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// serverCert is a server certificate signed by ca that names dnsName (and
// 127.0.0.1 when dnsName is empty).
func (ca testCA) serverCert(t *testing.T, dnsName string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	if dnsName != "" {
		tmpl.DNSNames = []string{dnsName}
	} else {
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// The gateway's CA may be published after the agent started, and replaced:
// exports fail, saying why, until the file is there, and verify against its
// current content on every new connection, host name included.
func TestServerCAIsReadWhenItChanges(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	srv := ca.serve(t, "")
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", caFile)
	cfg, err := ConfigFromEnv()
	if err != nil {
		t.Fatalf("a CA file not published yet: %v", err)
	}
	export := func() error {
		x := New(cfg) // a new connection each time
		defer x.Shutdown(t.Context())
		_, req := testRequest(t)
		return x.Send(t.Context(), req)
	}
	if err := export(); err == nil || !strings.Contains(err.Error(), "has not published its CA at "+caFile) {
		t.Fatalf("export before the CA is published: %v", err)
	}
	t0 := time.Now().Add(-time.Hour)
	rotate(t, caFile, other.pem, t0)
	if err := export(); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("export to a server another CA signed: %v", err)
	}
	rotate(t, caFile, ca.pem, t0.Add(time.Minute))
	if err := export(); err != nil {
		t.Fatalf("export once the right CA is there: %v", err)
	}
	// Half written: the last good CA stays.
	rotate(t, caFile, "-----BEGIN", t0.Add(2*time.Minute))
	if err := export(); err != nil {
		t.Fatalf("export while the CA file is half written: %v", err)
	}

	// The host name is checked, although InsecureSkipVerify is set.
	wrongName := ca.serve(t, "someone-else.example")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", wrongName.URL)
	rotate(t, caFile, ca.pem, t0.Add(3*time.Minute))
	if cfg, err = ConfigFromEnv(); err != nil {
		t.Fatal(err)
	}
	if err := export(); err == nil || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("export to a certificate for another name: %v", err)
	}
}

func TestServerCAFileWithoutCertificate(t *testing.T) {
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", caFile)
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_CERTIFICATE") {
		t.Errorf("a CA file with no certificate: %v", err)
	}
}
