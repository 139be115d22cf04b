package meetsync

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
)

// sealedPrefix marks a value encrypted by a Sealer.
const sealedPrefix = "enc:v1:"

// SecretKeySize is the size of a Sealer's key (AES-256).
const SecretKeySize = 32

// Sealer encrypts the secrets meetsync keeps at rest (meeting platform
// tokens, the platform's app secret) with AES-256-GCM, so a copy of the
// database alone does not give them away. A nil *Sealer keeps values as
// they are.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer returns a Sealer with a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != SecretKeySize {
		return nil, fmt.Errorf("the secret key must be %d bytes, got %d", SecretKeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// NewSecretKey returns a random key for NewSealer.
func NewSecretKey() []byte {
	k := make([]byte, SecretKeySize)
	if _, err := rand.Read(k); err != nil {
		panic(err)
	}
	return k
}

// Seal encrypts v ("" stays "").
func (s *Sealer) Seal(v string) string {
	if s == nil || v == "" || strings.HasPrefix(v, sealedPrefix) {
		return v
	}
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(v)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic(err)
	}
	return sealedPrefix + base64.RawStdEncoding.EncodeToString(s.aead.Seal(nonce, nonce, []byte(v), nil))
}

// keyCheckText is what a key check value seals.
const keyCheckText = "meetsync secret key check v1"

// IsSealed reports whether v is a value sealed by a Sealer.
func IsSealed(v string) bool { return strings.HasPrefix(v, sealedPrefix) }

// CheckValue returns a key check value: a fixed text sealed with the key,
// stored beside the secrets so that a start with another key is refused
// (CheckMatches) before any secret fails to open.
func (s *Sealer) CheckValue() string { return s.Seal(keyCheckText) }

// CheckMatches reports whether check is a CheckValue of this key.
func (s *Sealer) CheckMatches(check string) bool {
	p, err := s.Open(check)
	return err == nil && p == keyCheckText
}

// Open decrypts a value sealed by Seal; a value without the sealed prefix
// (written before encryption was configured) is returned as it is.
func (s *Sealer) Open(v string) (string, error) {
	rest, ok := strings.CutPrefix(v, sealedPrefix)
	if !ok {
		return v, nil
	}
	if s == nil {
		return "", Errorf(EINTERNAL, "a secret is encrypted at rest but no secret key is configured")
	}
	b, err := base64.RawStdEncoding.DecodeString(rest)
	if err != nil || len(b) < s.aead.NonceSize() {
		return "", Errorf(EINTERNAL, "an encrypted secret is damaged")
	}
	n := s.aead.NonceSize()
	p, err := s.aead.Open(nil, b[:n], b[n:], nil)
	if err != nil {
		return "", Errorf(EINTERNAL, "an encrypted secret cannot be decrypted with this secret key (was the key changed?)")
	}
	return string(p), nil
}
