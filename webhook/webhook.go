// Package webhook signs and verifies webhooks in the Standard Webhooks
// format (https://www.standardwebhooks.com), the format meetsync delivers.
// Receivers import it to check that a request came from meetsync:
//
//	err := webhook.Verify(secret, r.Header, body)
//
// It depends only on the standard library.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// DefaultTolerance is how far a webhook's timestamp may be from now.
const DefaultTolerance = 5 * time.Minute

const secretPrefix = "whsec_"

// Errors returned by Verify.
var (
	ErrMissingHeaders   = errors.New("webhook: missing webhook-id, webhook-timestamp or webhook-signature header")
	ErrInvalidTimestamp = errors.New("webhook: invalid webhook-timestamp")
	ErrTooOld           = errors.New("webhook: timestamp too old")
	ErrTooNew           = errors.New("webhook: timestamp too far in the future")
	ErrNoMatch          = errors.New("webhook: no matching signature")
	ErrBadSecret        = errors.New("webhook: secret must be whsec_ followed by base64")
)

// Key is a decoded signing secret.
type Key []byte

// ParseSecret decodes a "whsec_…" secret (the prefix is optional).
func ParseSecret(secret string) (Key, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, secretPrefix))
	if err != nil || len(b) == 0 {
		return nil, ErrBadSecret
	}
	return b, nil
}

// Sign returns the signature "v1,<base64 HMAC-SHA256(id.timestamp.body)>".
func (k Key) Sign(id string, ts time.Time, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(k.mac(id, ts.Unix(), body))
}

func (k Key) mac(id string, ts int64, body []byte) []byte {
	m := hmac.New(sha256.New, k)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(nil, ts, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Sign signs a webhook with one secret.
func Sign(secret, id string, ts time.Time, body []byte) (string, error) {
	k, err := ParseSecret(secret)
	if err != nil {
		return "", err
	}
	return k.Sign(id, ts, body), nil
}

// SignatureHeader returns the webhook-signature value for several keys
// (space separated), as sent during a secret rotation.
func SignatureHeader(keys []Key, id string, ts time.Time, body []byte) string {
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k.Sign(id, ts, body)
	}
	return strings.Join(parts, " ")
}

// Verifier checks webhooks. The zero value uses DefaultTolerance and time.Now.
type Verifier struct {
	Tolerance time.Duration
	Now       func() time.Time
}

// Verify checks the headers and body of a webhook against secret with the
// default tolerance.
func Verify(secret string, h http.Header, body []byte) error {
	return Verifier{}.Verify(secret, h, body)
}

// Verify checks that one of the signatures in h is the HMAC of the body
// under secret and that the timestamp is within the tolerance.
func (v Verifier) Verify(secret string, h http.Header, body []byte) error {
	k, err := ParseSecret(secret)
	if err != nil {
		return err
	}
	id, tsText, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || tsText == "" || sigs == "" {
		return ErrMissingHeaders
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return ErrInvalidTimestamp
	}
	tol := v.Tolerance
	if tol <= 0 {
		tol = DefaultTolerance
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	switch d := now().Sub(time.Unix(ts, 0)); {
	case d > tol:
		return ErrTooOld
	case d < -tol:
		return ErrTooNew
	}
	want := k.mac(id, ts, body)
	for _, s := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(s, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return fmt.Errorf("%w (checked %d)", ErrNoMatch, len(strings.Fields(sigs)))
}
