package checkpoint

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/connaudit/connaudit/trail/chain"
)

func TestSignedCheckpointVerifiesAndForgeriesDoNot(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherPub, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	c := Checkpoint{Instance: "i-1", First: 1, Last: 1000, Count: 998, Head: chain.Link{7}}
	sig := Sign(priv, c)
	key := EncodePublicKey(pub)
	if err := Verify(key, sig, c); err != nil {
		t.Fatalf("a genuine checkpoint: %v", err)
	}
	for name, forged := range map[string]Checkpoint{
		"other instance": {Instance: "i-2", First: 1, Last: 1000, Count: 998, Head: c.Head},
		"range widened":  {Instance: "i-1", First: 1, Last: 1001, Count: 998, Head: c.Head},
		"first moved":    {Instance: "i-1", First: 2, Last: 1000, Count: 998, Head: c.Head},
		"count raised":   {Instance: "i-1", First: 1, Last: 1000, Count: 1000, Head: c.Head},
		"head replaced":  {Instance: "i-1", First: 1, Last: 1000, Count: 998, Head: chain.Link{8}},
	} {
		if err := Verify(key, sig, forged); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: Verify = %v, want ErrBadSignature", name, err)
		}
	}
	// A verifier must not be talked into skipping the check (CVE-2023-31439):
	// empty, truncated and foreign signatures and keys all fail.
	for name, tc := range map[string]struct{ key, sig string }{
		"no signature":        {key, ""},
		"no key":              {"", sig},
		"truncated signature": {key, sig[:40]},
		"not base64":          {key, "!!" + sig[2:]},
		"zero signature":      {key, "AAAA" + sig[4:]},
		"other key":           {EncodePublicKey(otherPub), sig},
		"signed by another":   {key, Sign(otherPriv, c)},
		"key as signature":    {key, key},
	} {
		if err := Verify(tc.key, tc.sig, c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The length of the instance id is part of the message: moving bytes
// between it and the numbers after it gives another message.
func TestMessageIsUnambiguous(t *testing.T) {
	a := Checkpoint{Instance: "i\x00\x00\x00\x00\x00\x00\x00\x01", First: 2}
	b := Checkpoint{Instance: "i", First: 1}
	if string(a.Message()) == string(b.Message()) {
		t.Error("two checkpoints share a message")
	}
}

func TestLoadKeysFromOpenSSLFiles(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	dir := t.TempDir()
	p8, _ := x509.MarshalPKCS8PrivateKey(priv)
	pk, _ := x509.MarshalPKIXPublicKey(pub)
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	k, err := LoadPrivateKey(write("key.pem", "PRIVATE KEY", p8))
	if err != nil || !k.Equal(priv) {
		t.Fatalf("private key: %v", err)
	}
	p, err := LoadPublicKey(write("pub.pem", "PUBLIC KEY", pk))
	if err != nil || !p.Equal(pub) {
		t.Fatalf("public key: %v", err)
	}
	raw := filepath.Join(dir, "pub.b64")
	os.WriteFile(raw, []byte(EncodePublicKey(pub)+"\n"), 0o600)
	if p, err := LoadPublicKey(raw); err != nil || !p.Equal(pub) {
		t.Fatalf("base64 public key: %v", err)
	}
}
