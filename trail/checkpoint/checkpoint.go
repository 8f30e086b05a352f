// Package checkpoint signs and verifies an agent instance's checkpoints: the
// statement "instance I emitted seqs First..Last, Count of them reached its
// spool, and its chain head after Last is Head", signed with the instance's
// Ed25519 key, whose public half is in the instance's connaudit.agent.start
// record.
package checkpoint

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/connaudit/connaudit/trail/chain"
)

// Checkpoint is what a connaudit.checkpoint record states.
type Checkpoint struct {
	Instance    string // service.instance.id
	First, Last uint64 // the seqs covered; First > Last when none were emitted since the previous checkpoint
	Count       uint64 // records in First..Last that reached the spool
	Head        chain.Link
}

// domain separates these signatures from any other use of the key.
const domain = "connaudit.checkpoint.v1\x00"

// Message is the byte string that is signed.
func (c Checkpoint) Message() []byte {
	b := make([]byte, 0, len(domain)+len(c.Instance)+8+3*8+chain.Size)
	b = append(b, domain...)
	b = binary.BigEndian.AppendUint64(b, uint64(len(c.Instance)))
	b = append(b, c.Instance...)
	b = binary.BigEndian.AppendUint64(b, c.First)
	b = binary.BigEndian.AppendUint64(b, c.Last)
	b = binary.BigEndian.AppendUint64(b, c.Count)
	return append(b, c.Head[:]...)
}

// Sign returns the signature in the form records carry it (base64).
func Sign(key ed25519.PrivateKey, c Checkpoint) string {
	return base64.StdEncoding.EncodeToString(ed25519.Sign(key, c.Message()))
}

// ErrBadSignature is a signature that does not verify.
var ErrBadSignature = errors.New("checkpoint signature does not verify")

// Verify checks sig (base64) over c with the public key pub (base64, as the
// start record carries it). Every failure is an error: a missing key or
// signature is never taken as valid.
func Verify(pub, sig string, c Checkpoint) error {
	k, err := ParsePublicKey(pub)
	if err != nil {
		return err
	}
	s, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || len(s) != ed25519.SignatureSize {
		return fmt.Errorf("checkpoint signature %.100q is not a base64 Ed25519 signature: %w", sig, ErrBadSignature)
	}
	if !ed25519.Verify(k, c.Message(), s) {
		return ErrBadSignature
	}
	return nil
}

// EncodePublicKey is the form the start record carries (base64).
func EncodePublicKey(k ed25519.PublicKey) string { return base64.StdEncoding.EncodeToString(k) }

// ParsePublicKey reads a key written by EncodePublicKey.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(k) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("instance key %.100q is not a base64 Ed25519 public key", s)
	}
	return ed25519.PublicKey(k), nil
}

// LoadPrivateKey reads an Ed25519 private key from a PEM file in PKCS #8
// form, as `openssl genpkey -algorithm ed25519` writes it.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: a %T, not an Ed25519 key", path, k)
	}
	return ek, nil
}

// LoadPublicKey reads an Ed25519 public key from a file: PEM in PKIX form
// (`openssl pkey -pubout`), or the base64 form start records carry.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return ParsePublicKey(strings.TrimSpace(string(b)))
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: a %T, not an Ed25519 key", path, k)
	}
	return ek, nil
}
