package servingcertextension

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.uber.org/zap"

	"github.com/connaudit/connaudit/otel-collector/internal/kubeapi"
)

// issuer is the extension: it holds the CA in memory from Start on and
// issues the pod's serving certificates with it; only Start talks to the
// API server.
type issuer struct {
	cfg *Config
	log *zap.Logger
	now func() time.Time

	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	stop   context.CancelFunc
	wg     sync.WaitGroup
	notify chan struct{} // a certificate was written (tests)
}

func newIssuer(cfg *Config, log *zap.Logger) *issuer {
	return &issuer{cfg: cfg, log: log, now: time.Now}
}

// Start runs before the receivers start (the service starts extensions
// first), so the certificate file is there when they load it.
func (s *issuer) Start(ctx context.Context, _ component.Host) error {
	api, err := kubeapi.New(s.cfg.Config)
	if err != nil {
		return err
	}
	defer api.CloseIdleConnections()
	caPEM, err := s.loadOrCreateCA(ctx, api)
	if err != nil {
		return err
	}
	if err := s.publish(ctx, api, caPEM); err != nil {
		return err
	}
	renewAt, err := s.issue()
	if err != nil {
		return err
	}
	ctx, s.stop = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.renew(ctx, renewAt)
	return nil
}

func (s *issuer) Shutdown(context.Context) error {
	if s.stop != nil {
		s.stop()
	}
	s.wg.Wait()
	return nil
}

// renew issues a new certificate at two thirds of the current one's life.
// A failed write (a full disk) is retried soon, well before the current
// certificate expires.
func (s *issuer) renew(ctx context.Context, at time.Time) {
	defer s.wg.Done()
	retry := min(time.Minute, s.cfg.Validity/10)
	for {
		t := time.NewTimer(at.Sub(s.now()))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		next, err := s.issue()
		if err != nil {
			s.log.Error("cannot renew the gateway's serving certificate; retrying", zap.Error(err), zap.Duration("retry", retry))
			at = s.now().Add(retry)
			continue
		}
		at = next
	}
}

// issue writes a new serving certificate and returns when to renew it.
func (s *issuer) issue() (time.Time, error) {
	now := s.now()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return time.Time{}, err
	}
	notAfter := now.Add(s.cfg.Validity)
	if notAfter.After(s.ca.NotAfter) {
		notAfter = s.ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: s.commonName()},
		DNSNames:     s.cfg.DNSNames,
		// A minute back, for agents whose clock is a little behind.
		NotBefore:   now.Add(-time.Minute),
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, ip := range s.cfg.IPAddresses {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca, &key.PublicKey, s.caKey)
	if err != nil {
		return time.Time{}, fmt.Errorf("sign the serving certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return time.Time{}, err
	}
	var out bytes.Buffer
	_ = pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	_ = pem.Encode(&out, &pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := writeAtomic(s.cfg.Directory, CertFile, out.Bytes()); err != nil {
		return time.Time{}, fmt.Errorf("write the serving certificate: %w", err)
	}
	renewAt := now.Add(notAfter.Sub(now) * 2 / 3)
	s.log.Info("serving certificate written", zap.String("file", filepath.Join(s.cfg.Directory, CertFile)),
		zap.Strings("dns_names", s.cfg.DNSNames), zap.Strings("ip_addresses", s.cfg.IPAddresses),
		zap.Time("not_after", notAfter), zap.Time("renew_at", renewAt))
	if s.notify != nil {
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
	return renewAt, nil
}

func (s *issuer) commonName() string {
	if len(s.cfg.DNSNames) > 0 {
		return s.cfg.DNSNames[0]
	}
	return s.cfg.IPAddresses[0]
}

// writeAtomic replaces dir/name with data in one rename: a reader sees the
// old file or the new one, never half of one.
func writeAtomic(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+name+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after the rename, nothing to remove
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(dir, name))
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// newCA makes a self-signed ECDSA P-256 CA.
func newCA(now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "connaudit gateway CA", Organization: []string{"connaudit"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// parseCA reads a CA certificate and its ECDSA key.
func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, err
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("the key is a %T; the gateway signs with ECDSA keys only", pair.PrivateKey)
	}
	if !pair.Leaf.IsCA || pair.Leaf.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, nil, errors.New("tls.crt is not a CA certificate (basicConstraints CA:TRUE, keyUsage keyCertSign)")
	}
	return pair.Leaf, key, nil
}

// secret is the part of a Secret the extension reads and writes.
type secret struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   objectMeta        `json:"metadata"`
	Type       string            `json:"type,omitempty"`
	Data       map[string][]byte `json:"data,omitempty"` // base64 in JSON
}

type objectMeta struct {
	Name            string            `json:"name"`
	Namespace       string            `json:"namespace"`
	Labels          map[string]string `json:"labels,omitempty"`
	ResourceVersion string            `json:"resourceVersion,omitempty"`
}

// configMap is a ConfigMap: its data are plain strings.
type configMap struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   objectMeta        `json:"metadata"`
	Data       map[string]string `json:"data,omitempty"`
}

var labels = map[string]string{"app.kubernetes.io/name": "connaudit-collector", "app.kubernetes.io/part-of": "connaudit"}

// loadOrCreateCA gets the CA Secret, or creates it. When two replicas
// create it at once, the API server lets one win and tells the other
// AlreadyExists; that one reads the winner's.
func (s *issuer) loadOrCreateCA(ctx context.Context, api *kubeapi.Client) ([]byte, error) {
	path := "/api/v1/namespaces/" + s.cfg.Namespace + "/secrets"
	for range 3 {
		resp, err := api.Do(ctx, http.MethodGet, path+"/"+s.cfg.CASecret, nil)
		if err != nil {
			return nil, err
		}
		switch resp.Code {
		case http.StatusOK:
			var sec secret
			if err := json.Unmarshal(resp.Body, &sec); err != nil {
				return nil, fmt.Errorf("secret %s/%s: %w", s.cfg.Namespace, s.cfg.CASecret, err)
			}
			s.ca, s.caKey, err = parseCA(sec.Data["tls.crt"], sec.Data["tls.key"])
			if err != nil {
				return nil, fmt.Errorf("secret %s/%s (tls.crt, tls.key): %w; fix it, or delete it and the gateway creates a new CA",
					s.cfg.Namespace, s.cfg.CASecret, err)
			}
			s.log.Info("signing with the CA of the Secret", zap.String("secret", s.cfg.Namespace+"/"+s.cfg.CASecret),
				zap.String("subject", s.ca.Subject.String()), zap.Time("not_after", s.ca.NotAfter))
			return sec.Data["tls.crt"], nil
		case http.StatusNotFound:
		default:
			return nil, s.refused(resp, "get", "secrets")
		}
		certPEM, keyPEM, err := newCA(s.now(), s.cfg.CAValidity)
		if err != nil {
			return nil, err
		}
		resp, err = api.Do(ctx, http.MethodPost, path, secret{APIVersion: "v1", Kind: "Secret", Type: "kubernetes.io/tls",
			Metadata: objectMeta{Name: s.cfg.CASecret, Namespace: s.cfg.Namespace, Labels: labels},
			Data:     map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM}})
		if err != nil {
			return nil, err
		}
		switch resp.Code {
		case http.StatusCreated, http.StatusOK:
			s.log.Info("created the gateway's CA", zap.String("secret", s.cfg.Namespace+"/"+s.cfg.CASecret))
			s.ca, s.caKey, err = parseCA(certPEM, keyPEM)
			return certPEM, err
		case http.StatusConflict: // another replica created it first: read it
		default:
			return nil, s.refused(resp, "create", "secrets")
		}
	}
	return nil, fmt.Errorf("secret %s/%s: created and deleted by someone else, three times over", s.cfg.Namespace, s.cfg.CASecret)
}

// publish makes the ConfigMap hold exactly the CA certificate.
func (s *issuer) publish(ctx context.Context, api *kubeapi.Client, caPEM []byte) error {
	path := "/api/v1/namespaces/" + s.cfg.Namespace + "/configmaps"
	want := configMap{APIVersion: "v1", Kind: "ConfigMap",
		Metadata: objectMeta{Name: s.cfg.CAConfigMap, Namespace: s.cfg.Namespace, Labels: labels},
		Data:     map[string]string{"ca.crt": string(caPEM)}}
	for range 3 {
		resp, err := api.Do(ctx, http.MethodGet, path+"/"+s.cfg.CAConfigMap, nil)
		if err != nil {
			return err
		}
		// Create it, or update the one there; a conflict (another replica
		// came first, or it changed meanwhile) means look again.
		method, url, verb := http.MethodPost, path, "create"
		switch resp.Code {
		case http.StatusOK:
			var have configMap
			if err := json.Unmarshal(resp.Body, &have); err != nil {
				return fmt.Errorf("configmap %s/%s: %w", s.cfg.Namespace, s.cfg.CAConfigMap, err)
			}
			if have.Data["ca.crt"] == string(caPEM) {
				return nil
			}
			method, url, verb = http.MethodPut, path+"/"+s.cfg.CAConfigMap, "update"
			want.Metadata.ResourceVersion = have.Metadata.ResourceVersion
		case http.StatusNotFound:
			want.Metadata.ResourceVersion = ""
		default:
			return s.refused(resp, "get", "configmaps")
		}
		resp, err = api.Do(ctx, method, url, want)
		if err != nil {
			return err
		}
		switch resp.Code {
		case http.StatusOK, http.StatusCreated:
			s.log.Info("published the CA certificate", zap.String("configmap", s.cfg.Namespace+"/"+s.cfg.CAConfigMap))
			return nil
		case http.StatusConflict, http.StatusNotFound: // look again
		default:
			return s.refused(resp, verb, "configmaps")
		}
	}
	return fmt.Errorf("configmap %s/%s: changed by someone else while publishing, three times over", s.cfg.Namespace, s.cfg.CAConfigMap)
}

// refused explains an answer other than the expected ones: for 401 and
// 403, what the gateway's identity lacks.
func (s *issuer) refused(resp kubeapi.Response, verb, resource string) error {
	var st struct {
		Message string `json:"message"`
	}
	_ = json.Unmarshal(resp.Body, &st)
	name := s.cfg.CASecret
	if resource == "configmaps" {
		name = s.cfg.CAConfigMap
	}
	switch resp.Code {
	case http.StatusForbidden:
		return fmt.Errorf("forbidden: the gateway's ServiceAccount needs get, create and update on %s named %s in namespace %s (k8s/deploy/base/collector-rbac.yaml); the API server said: %s",
			resource, name, s.cfg.Namespace, st.Message)
	case http.StatusUnauthorized:
		return fmt.Errorf("unauthorized: the API server does not accept the gateway's token (token_file %s)", s.cfg.TokenFile)
	}
	return fmt.Errorf("%s %s %s/%s: HTTP %d: %s", verb, resource, s.cfg.Namespace, name, resp.Code, st.Message)
}
