package otlp

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// changed tells whether a file differs from the stat seen before (kubelet
// swaps projected tokens and Secret volumes with a symlink, so the target's
// mtime changes), and returns the new stat.
func changed(path string, seen os.FileInfo) (os.FileInfo, bool, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return seen, false, err
	}
	return fi, seen == nil || !fi.ModTime().Equal(seen.ModTime()) || fi.Size() != seen.Size(), nil
}

// TokenFile is a bearer token read from a file and read again whenever the
// file changes, so that a rotated projected ServiceAccount token is used at
// once, with no restart.
type TokenFile struct {
	path string

	mu    sync.Mutex
	seen  os.FileInfo
	token string
}

// NewTokenFile reads the token once, so that a missing or empty file is an
// error at start.
func NewTokenFile(path string) (*TokenFile, error) {
	t := &TokenFile{path: path}
	if _, err := t.Token(); err != nil {
		return nil, err
	}
	return t, nil
}

// Token returns the file's current token.
func (t *TokenFile) Token() (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fi, isNew, err := changed(t.path, t.seen)
	if err != nil {
		if t.token != "" {
			return t.token, nil // mid-rotation; the last token is still valid for a while
		}
		return "", fmt.Errorf("bearer token: %w", err)
	}
	if !isNew {
		return t.token, nil
	}
	b, err := os.ReadFile(t.path)
	if err != nil {
		return "", fmt.Errorf("bearer token: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("bearer token: %s is empty", t.path)
	}
	t.seen, t.token = fi, token
	return token, nil
}

// keyPair is a client certificate that is loaded again whenever its files
// change (cert-manager renews it in place).
type keyPair struct {
	certFile, keyFile string

	mu                sync.Mutex
	certSeen, keySeen os.FileInfo
	cert              *tls.Certificate
}

func newKeyPair(certFile, keyFile string) (*keyPair, error) {
	k := &keyPair{certFile: certFile, keyFile: keyFile}
	if _, err := k.certificate(); err != nil {
		return nil, err
	}
	return k, nil
}

// certificate returns the current pair; while a renewal is half written, the
// previous pair.
func (k *keyPair) certificate() (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	certSeen, certNew, err1 := changed(k.certFile, k.certSeen)
	keySeen, keyNew, err2 := changed(k.keyFile, k.keySeen)
	if err := errors.Join(err1, err2); err != nil {
		if k.cert != nil {
			return k.cert, nil
		}
		return nil, err
	}
	if !certNew && !keyNew && k.cert != nil {
		return k.cert, nil
	}
	pair, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		if k.cert != nil {
			return k.cert, nil
		}
		return nil, err
	}
	k.certSeen, k.keySeen, k.cert = certSeen, keySeen, &pair
	return k.cert, nil
}

// caPool is the CA bundle that verifies the gateway, read again whenever its
// file changes: the shipped gateway publishes its CA in a ConfigMap that
// kubelet mounts, possibly after the agent started, and replaces when the
// CA changes.
type caPool struct {
	name, path string // the variable that named the file, and the file

	mu   sync.Mutex
	seen os.FileInfo
	pool *x509.CertPool
}

// newCAPool checks a file that is there already. A file that is not there
// yet is no error until a handshake needs it, provided its directory exists:
// kubelet mounts an optional ConfigMap volume as an empty directory and adds
// the file when the ConfigMap appears, while a directory that does not exist
// is a wrong path, which waiting would not fix.
func newCAPool(name, path string) (*caPool, error) {
	c := &caPool{name: name, path: path}
	_, err := c.get()
	if errors.Is(err, os.ErrNotExist) {
		if fi, derr := os.Stat(filepath.Dir(path)); derr != nil || !fi.IsDir() {
			return nil, fmt.Errorf("%s=%s: neither the file nor its directory exists; mount the gateway's CA there (the ConfigMap connaudit-gateway-ca)", name, path)
		}
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// get returns the file's current pool; while it is being replaced, the
// previous one.
func (c *caPool) get() (*x509.CertPool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fi, isNew, err := changed(c.path, c.seen)
	if err != nil {
		if c.pool != nil {
			return c.pool, nil
		}
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("the gateway has not published its CA at %s (%s) yet; records wait in the spool: %w", c.path, c.name, err)
		}
		return nil, fmt.Errorf("%s: %w", c.name, err)
	}
	if !isNew {
		return c.pool, nil
	}
	pem, err := os.ReadFile(c.path)
	if err != nil {
		if c.pool != nil {
			return c.pool, nil
		}
		return nil, fmt.Errorf("%s: %w", c.name, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		if c.pool != nil {
			return c.pool, nil // half written; the next handshake reads it again
		}
		return nil, fmt.Errorf("%s: %s holds no PEM certificate", c.name, c.path)
	}
	c.seen, c.pool = fi, pool
	return pool, nil
}

// verify checks the server's chain, and that it is issued for host, against
// the current pool.
func (c *caPool) verify(host string, cs tls.ConnectionState) error {
	pool, err := c.get()
	if err != nil {
		return err
	}
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the server presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, cert := range cs.PeerCertificates[1:] {
		inter.AddCert(cert)
	}
	_, err = cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: host, Roots: pool, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		return fmt.Errorf("verify the gateway's certificate for %s against %s (%s): %w", host, c.path, c.name, err)
	}
	return nil
}
