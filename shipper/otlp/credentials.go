package otlp

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
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
