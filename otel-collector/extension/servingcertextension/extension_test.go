package servingcertextension

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestConfigValidate(t *testing.T) {
	valid := func() *Config {
		c := createDefaultConfig()
		c.Directory = "/run/cert"
		c.DNSNames = []string{"connaudit-collector.connaudit.svc"}
		return c
	}
	if err := valid().Validate(); err != nil {
		t.Fatalf("valid: %v", err)
	}
	if err := createDefaultConfig().Validate(); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("default without a directory: %v", err)
	}
	for _, tc := range []struct {
		mutate func(*Config)
		says   string
	}{
		{func(c *Config) { c.Namespace = "" }, "namespace"},
		{func(c *Config) { c.CASecret = "Not_A_Name" }, "ca_secret"},
		{func(c *Config) { c.CAConfigMap = "" }, "ca_configmap"},
		{func(c *Config) { c.DNSNames = nil }, "dns_names"},
		{func(c *Config) { c.IPAddresses = []string{"localhost"} }, "ip_addresses"},
		{func(c *Config) { c.Validity = time.Second }, "validity"},
		{func(c *Config) { c.CAValidity = c.Validity }, "ca_validity"},
		{func(c *Config) { c.TokenFile = "" }, "token_file"},
	} {
		c := valid()
		tc.mutate(c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("want an error naming %s, got %v", tc.says, err)
		}
	}
}

// testIssuer is an issuer with a fresh CA, as Start leaves it.
func testIssuer(t *testing.T, validity time.Duration) (*issuer, *x509.CertPool) {
	t.Helper()
	cfg := createDefaultConfig()
	cfg.Directory = filepath.Join(t.TempDir(), "cert")
	cfg.DNSNames = []string{"connaudit-collector", "connaudit-collector.connaudit.svc"}
	cfg.IPAddresses = []string{"127.0.0.1"}
	cfg.Validity = validity
	s := newIssuer(cfg, zap.NewNop())
	certPEM, keyPEM, err := newCA(time.Now(), cfg.CAValidity)
	if err != nil {
		t.Fatal(err)
	}
	if s.ca, s.caKey, err = parseCA(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(s.ca)
	return s, pool
}

// served loads tls.pem as configtls does (cert_file and key_file the same
// file) and verifies it for name against the CA.
func served(t *testing.T, s *issuer, pool *x509.CertPool, name string) *x509.Certificate {
	t.Helper()
	path := filepath.Join(s.cfg.Directory, CertFile)
	pair, err := tls.LoadX509KeyPair(path, path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("verify for %s: %v", name, err)
	}
	return pair.Leaf
}

func TestIssueNamesAndKey(t *testing.T) {
	s, pool := testIssuer(t, time.Hour)
	renewAt, err := s.issue()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"connaudit-collector", "connaudit-collector.connaudit.svc", "127.0.0.1"} {
		served(t, s, pool, name)
	}
	leaf := served(t, s, pool, "connaudit-collector")
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "other.example", Roots: pool}); err == nil {
		t.Error("the certificate is valid for a name it was not issued for")
	}
	if life, renew := leaf.NotAfter.Sub(time.Now()), time.Until(renewAt); renew <= 0 || renew >= life {
		t.Errorf("renewal in %s, expiry in %s", renew, life)
	}
	fi, err := os.Stat(filepath.Join(s.cfg.Directory, CertFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("tls.pem holds a key: want mode 0600, got %v %v", fi.Mode(), err)
	}
	entries, _ := os.ReadDir(s.cfg.Directory)
	if len(entries) != 1 {
		t.Errorf("the directory holds %d files; temporary files are left behind", len(entries))
	}
}

// TestRenewal: the renewal goroutine replaces the certificate before it
// expires, with another key, signed by the same CA.
func TestRenewal(t *testing.T) {
	s, pool := testIssuer(t, 3*time.Second)
	s.notify = make(chan struct{}, 1)
	renewAt, err := s.issue()
	if err != nil {
		t.Fatal(err)
	}
	<-s.notify
	first := served(t, s, pool, "connaudit-collector")
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.wg.Add(1)
	go s.renew(ctx, renewAt)
	defer s.Shutdown(context.Background())
	for i := range 2 {
		select {
		case <-s.notify:
		case <-time.After(30 * time.Second):
			t.Fatalf("renewal %d: no new certificate within 30s", i+1)
		}
		next := served(t, s, pool, "connaudit-collector")
		if next.SerialNumber.Cmp(first.SerialNumber) == 0 || !next.NotAfter.After(first.NotAfter) {
			t.Fatalf("renewal %d: same certificate, or no later expiry", i+1)
		}
		first = next
	}
}

func TestParseCARefusesALeaf(t *testing.T) {
	s, _ := testIssuer(t, time.Hour)
	if _, err := s.issue(); err != nil {
		t.Fatal(err)
	}
	leaf, err := os.ReadFile(filepath.Join(s.cfg.Directory, CertFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := parseCA(leaf, leaf); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("a serving certificate accepted as the CA: %v", err)
	}
}
