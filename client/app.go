package client

import (
	"context"
	"time"

	"github.com/meetsync/meetsync"
)

// Session policies: what meetsync does with a session whose meeting side
// is not logged in by its deadline (docs/sessions.md).
const (
	// PolicyRollback logs the business side out too.
	PolicyRollback = meetsync.PolicyRollback
	// PolicyDegrade keeps the business session; meetings are unavailable.
	PolicyDegrade = meetsync.PolicyDegrade
)

// Duration is a time.Duration written as "60s" in JSON, as the app
// settings are (meetsync.Duration).
type Duration = meetsync.Duration

// App is the app the key belongs to, with its settings (GET /v1/app).
type App struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	// Provider is the meeting platform. Its AppSecret is never answered:
	// ProviderSecretSet says whether one is set.
	Provider       *AppProvider `json:"provider,omitempty"`
	SessionPolicy  string       `json:"session_policy,omitempty"`
	LoginDeadline  Duration     `json:"login_deadline,omitempty"`
	LogoutDeadline Duration     `json:"logout_deadline,omitempty"`
	ClientTokenTTL Duration     `json:"client_token_ttl,omitempty"`
	// ReconcileGrace is how long the platform's word that a user left a
	// meeting waits before it overrides a device that still says it is in one.
	ReconcileGrace Duration `json:"reconcile_grace,omitempty"`
	// Retention is how long events and delivery attempts are kept (0: forever).
	Retention Duration `json:"retention,omitempty"`
	// StrictEventTypes makes ingest refuse events of custom types that are
	// not registered (PutEventType).
	StrictEventTypes bool `json:"strict_event_types,omitempty"`
	// CallbackPaths are the paths, by provider kind, where the meeting
	// platform's callbacks for the app are received.
	CallbackPaths map[string]string `json:"callback_paths,omitempty"`
}

// AppProvider is the meeting platform of an app as the API shows it.
type AppProvider struct {
	Kind         string `json:"kind"` // meetsync.ProviderSim or ProviderNetEase
	AppKey       string `json:"app_key,omitempty"`
	BaseURL      string `json:"base_url,omitempty"`
	AppSecretSet bool   `json:"app_secret_set,omitempty"`
}

// AppParams are the settings UpdateApp changes: nil fields keep their
// value. The app's name is not a setting: it cannot be changed.
type AppParams struct {
	// Provider sets the meeting platform; its AppSecret is write-only.
	Provider       *meetsync.ProviderConfig `json:"provider,omitempty"`
	SessionPolicy  *string                  `json:"session_policy,omitempty"` // PolicyRollback or PolicyDegrade
	LoginDeadline  *Duration                `json:"login_deadline,omitempty"`
	LogoutDeadline *Duration                `json:"logout_deadline,omitempty"`
	ClientTokenTTL *Duration                `json:"client_token_ttl,omitempty"`
	ReconcileGrace *Duration                `json:"reconcile_grace,omitempty"` // 0 to 1h
	// Retention is 0 (keep forever) or between 1h and 87600h.
	Retention        *Duration `json:"retention,omitempty"`
	StrictEventTypes *bool     `json:"strict_event_types,omitempty"`
}

// GetApp returns the app and its settings (GET /v1/app, app key).
func (c *Client) GetApp(ctx context.Context) (*App, error) {
	var a App
	if err := c.do(ctx, request{method: "GET", path: "/v1/app", idempotent: true}, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// UpdateApp changes the app's settings (PATCH /v1/app, app key).
func (c *Client) UpdateApp(ctx context.Context, p AppParams) (*App, error) {
	var a App
	if err := c.do(ctx, request{method: "PATCH", path: "/v1/app", body: p, idempotent: true}, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// Key is an API key of the app. Key (the secret) is set only by CreateKey.
type Key struct {
	ID        string     `json:"id"`
	Prefix    string     `json:"prefix"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	// Current is true for the key the request was made with.
	Current bool   `json:"current,omitempty"`
	Key     string `json:"key,omitempty"`
}

// ListKeys lists the app's API keys, without their secrets (GET /v1/keys).
func (c *Client) ListKeys(ctx context.Context) ([]Key, error) {
	var out struct {
		Keys []Key `json:"keys"`
	}
	if err := c.do(ctx, request{method: "GET", path: "/v1/keys", idempotent: true}, &out); err != nil {
		return nil, err
	}
	return out.Keys, nil
}

// CreateKey creates an API key (POST /v1/keys); its secret (Key.Key) is
// shown only here.
func (c *Client) CreateKey(ctx context.Context) (*Key, error) {
	var k Key
	if err := c.do(ctx, request{method: "POST", path: "/v1/keys"}, &k); err != nil {
		return nil, err
	}
	return &k, nil
}

// RevokeKey revokes an API key (DELETE /v1/keys/{id}). ENOTFOUND.
func (c *Client) RevokeKey(ctx context.Context, id string) error {
	return c.do(ctx, request{method: "DELETE", path: "/v1/keys/" + escape(id)}, nil)
}
