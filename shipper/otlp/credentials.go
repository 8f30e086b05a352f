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

// reloaded is a value loaded from files and loaded again whenever one of
// them changes. While a change is half done (a file missing, unreadable or
// not yet whole) it keeps the last value that loaded; an error only when
// none has yet.
type reloaded[T any] struct {
	paths []string
	load  func() (T, error)

	mu   sync.Mutex
	seen []os.FileInfo
	val  T
	ok   bool
}

func newReloaded[T any](load func() (T, error), paths ...string) *reloaded[T] {
	return &reloaded[T]{paths: paths, load: load, seen: make([]os.FileInfo, len(paths))}
}

func (r *reloaded[T]) get() (T, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen, isNew := make([]os.FileInfo, len(r.paths)), !r.ok
	for i, p := range r.paths {
		fi, changedNow, err := changed(p, r.seen[i])
		if err != nil {
			return r.fallback(err)
		}
		seen[i], isNew = fi, isNew || changedNow
	}
	if !isNew {
		return r.val, nil
	}
	v, err := r.load()
	if err != nil {
		return r.fallback(err)
	}
	r.seen, r.val, r.ok = seen, v, true
	return v, nil
}

func (r *reloaded[T]) fallback(err error) (T, error) {
	if r.ok {
		return r.val, nil
	}
	var zero T
	return zero, err
}

// TokenFile is a bearer token read from a file and read again whenever the
// file changes, so that a rotated projected ServiceAccount token is used at
// once, with no restart.
type TokenFile struct{ r *reloaded[string] }

// NewTokenFile reads the token once, so that a missing or empty file is an
// error at start.
func NewTokenFile(path string) (*TokenFile, error) {
	t := &TokenFile{newReloaded(func() (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		token := strings.TrimSpace(string(b))
		if token == "" {
			return "", fmt.Errorf("%s is empty", path)
		}
		return token, nil
	}, path)}
	if _, err := t.Token(); err != nil {
		return nil, err
	}
	return t, nil
}

// Token returns the file's current token; mid-rotation, the last one, which
// is still valid for a while.
func (t *TokenFile) Token() (string, error) {
	token, err := t.r.get()
	if err != nil {
		return "", fmt.Errorf("bearer token: %w", err)
	}
	return token, nil
}

// newKeyPair is a client certificate that is loaded again whenever its files
// change (cert-manager renews it in place); while a renewal is half written,
// the previous pair.
func newKeyPair(certFile, keyFile string) (*reloaded[*tls.Certificate], error) {
	k := newReloaded(func() (*tls.Certificate, error) {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		return &pair, err
	}, certFile, keyFile)
	if _, err := k.get(); err != nil {
		return nil, err
	}
	return k, nil
}

// caPool is the CA bundle that verifies the gateway, read again whenever its
// file changes: the shipped gateway publishes its CA in a ConfigMap that
// kubelet mounts, possibly after the agent started, and replaces when the
// CA changes.
type caPool struct {
	name, path string // the variable that named the file, and the file
	r          *reloaded[*x509.CertPool]
}

// newCAPool checks a file that is there already. A file that is not there
// yet is no error until a handshake needs it, provided its directory exists:
// kubelet mounts an optional ConfigMap volume as an empty directory and adds
// the file when the ConfigMap appears, while a directory that does not exist
// is a wrong path, which waiting would not fix.
func newCAPool(name, path string) (*caPool, error) {
	c := &caPool{name: name, path: path, r: newReloaded(func() (*x509.CertPool, error) {
		pem, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", path)
		}
		return pool, nil
	}, path)}
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
	pool, err := c.r.get()
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("the gateway has not published its CA at %s (%s) yet; records wait in the spool: %w", c.path, c.name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.name, err)
	}
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
