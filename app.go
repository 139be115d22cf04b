package meetsync

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"time"
)

// App is one business-system integration: a tenant. Every row of every
// other kind belongs to exactly one app, and nothing crosses apps.
type App struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// APIKey is an app's API key. The secret itself is shown once, when the key
// is created, and only its SHA-256 hash is stored: the key is 256 random
// bits, so a fast hash is as safe as a slow one and costs microseconds.
type APIKey struct {
	ID        string     `json:"id"`
	AppID     string     `json:"app_id"`
	Prefix    string     `json:"prefix"` // first characters, to recognise a key in lists
	Hash      []byte     `json:"-"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// Token prefixes.
const (
	APIKeyPrefix      = "msk_"
	ClientTokenPrefix = "mct_"
)

// NewAPIKey returns a fresh key for appID and its secret, which the caller
// shows once and never stores.
func NewAPIKey(appID string, now time.Time) (*APIKey, string) {
	secret := APIKeyPrefix + randomToken(32)
	return &APIKey{
		ID:        NewID("key"),
		AppID:     appID,
		Prefix:    secret[:len(APIKeyPrefix)+6],
		Hash:      HashSecret(secret),
		CreatedAt: now,
	}, secret
}

// HashSecret returns the SHA-256 of a high-entropy secret (API keys, client tokens).
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// SameAppName reports whether two app names are the same name: app names
// are unique regardless of case ("CRM" and "crm" would be told apart only
// by case in every command that names an app).
func SameAppName(a, b string) bool { return strings.EqualFold(a, b) }

// ValidAppName reports whether name is usable as an app name.
func ValidAppName(name string) error {
	if name == "" || len(name) > 64 || strings.TrimSpace(name) != name {
		return FieldErrorf("name", "app name must be 1–64 characters without surrounding spaces")
	}
	return checkIdent(name, "name", true)
}
