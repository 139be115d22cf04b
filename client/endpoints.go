package client

import (
	"context"
	"net/url"
	"strconv"
	"time"

	"github.com/meetsync/meetsync"
)

// Endpoint is a webhook endpoint of the app.
type Endpoint struct {
	ID             string     `json:"id"`
	URL            string     `json:"url"`
	Description    string     `json:"description"`
	EventTypes     []string   `json:"event_types"`
	DebounceMS     int64      `json:"debounce_ms"`
	RateLimitPerS  int        `json:"rate_limit_per_s"`
	Enabled        bool       `json:"enabled"`
	DisabledReason string     `json:"disabled_reason,omitempty"`
	DisabledAt     *time.Time `json:"disabled_at,omitempty"`
	FailingSince   *time.Time `json:"failing_since,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	// Secret is the signing secret (whsec_…): set only by CreateEndpoint
	// and RotateSecret, the one time the server shows it.
	Secret string `json:"secret,omitempty"`
}

// EndpointParams are the fields of CreateEndpoint and UpdateEndpoint. A
// nil field takes its default (create) or keeps its value (update); URL is
// required to create.
type EndpointParams struct {
	URL         *string `json:"url,omitempty"`
	Description *string `json:"description,omitempty"`
	// EventTypes are exact type names and "prefix.*" patterns; empty: every event.
	EventTypes *[]string `json:"event_types,omitempty"`
	// DebounceMS is the status debounce window (default 300, 0 = off).
	DebounceMS *int64 `json:"debounce_ms,omitempty"`
	// RateLimitPerS caps requests per second to the endpoint (0 = none).
	RateLimitPerS *int  `json:"rate_limit_per_s,omitempty"`
	Enabled       *bool `json:"enabled,omitempty"`
}

// CreateEndpoint registers a webhook endpoint (POST /v1/endpoints, app
// key). The answer carries the signing secret, shown only here.
func (c *Client) CreateEndpoint(ctx context.Context, p EndpointParams) (*Endpoint, error) {
	var e Endpoint
	if err := c.do(ctx, request{method: "POST", path: "/v1/endpoints", body: p}, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// GetEndpoint returns an endpoint (GET /v1/endpoints/{id}). ENOTFOUND.
func (c *Client) GetEndpoint(ctx context.Context, id string) (*Endpoint, error) {
	var e Endpoint
	if err := c.do(ctx, request{method: "GET", path: "/v1/endpoints/" + escape(id), idempotent: true}, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// ListEndpoints lists the app's endpoints (GET /v1/endpoints).
func (c *Client) ListEndpoints(ctx context.Context) ([]Endpoint, error) {
	var out struct {
		Endpoints []Endpoint `json:"endpoints"`
	}
	if err := c.do(ctx, request{method: "GET", path: "/v1/endpoints", idempotent: true}, &out); err != nil {
		return nil, err
	}
	return out.Endpoints, nil
}

// UpdateEndpoint changes the non-nil fields of an endpoint (PATCH
// /v1/endpoints/{id}); Enabled turns it on or off. ENOTFOUND.
func (c *Client) UpdateEndpoint(ctx context.Context, id string, p EndpointParams) (*Endpoint, error) {
	var e Endpoint
	// Setting the same fields twice gives the same endpoint: idempotent.
	if err := c.do(ctx, request{method: "PATCH", path: "/v1/endpoints/" + escape(id), body: p, idempotent: true}, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// DeleteEndpoint deletes an endpoint (DELETE /v1/endpoints/{id}). ENOTFOUND.
func (c *Client) DeleteEndpoint(ctx context.Context, id string) error {
	return c.do(ctx, request{method: "DELETE", path: "/v1/endpoints/" + escape(id)}, nil)
}

// RotatedSecret is the answer of RotateSecret.
type RotatedSecret struct {
	Endpoint Endpoint `json:"endpoint"`
	// Secret is the new signing secret, shown only here.
	Secret string `json:"secret"`
	// PreviousExpiresAt is when the previous secrets stop being valid.
	PreviousExpiresAt time.Time `json:"previous_expires_at"`
}

// RotateSecret adds a new signing secret to an endpoint (POST
// /v1/endpoints/{id}/secrets/rotate). The previous secrets stay valid for
// grace (nil: the server's default, 24 h; 0 ends them now), and webhooks
// carry one signature per valid secret meanwhile.
func (c *Client) RotateSecret(ctx context.Context, id string, grace *time.Duration) (*RotatedSecret, error) {
	body := map[string]any{}
	if grace != nil {
		body["grace"] = grace.String()
	}
	var out RotatedSecret
	if err := c.do(ctx, request{method: "POST", path: "/v1/endpoints/" + escape(id) + "/secrets/rotate", body: body}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeliveryListParams selects a page of an endpoint's deliveries, newest first.
type DeliveryListParams struct {
	// Status is one of meetsync.DeliveryPending, DeliveryFailed,
	// DeliveryDelivered, DeliveryDead, DeliverySuperseded ("" for any).
	Status string
	// Limit is the most deliveries of the page (1–1000, default 100).
	Limit int
	// Cursor is the Next of the previous page.
	Cursor string
}

// DeliveryPage is one page of deliveries. Next is empty on the last page.
type DeliveryPage struct {
	Deliveries []meetsync.Delivery `json:"deliveries"`
	Next       string              `json:"next,omitempty"`
}

// ListDeliveries lists an endpoint's deliveries (GET
// /v1/endpoints/{id}/deliveries). ENOTFOUND for an unknown endpoint.
func (c *Client) ListDeliveries(ctx context.Context, endpointID string, p DeliveryListParams) (*DeliveryPage, error) {
	q := url.Values{}
	if p.Status != "" {
		q.Set("status", p.Status)
	}
	if p.Limit > 0 {
		q.Set("limit", strconv.Itoa(p.Limit))
	}
	if p.Cursor != "" {
		q.Set("cursor", p.Cursor)
	}
	path := "/v1/endpoints/" + escape(endpointID) + "/deliveries"
	if s := q.Encode(); s != "" {
		path += "?" + s
	}
	var out DeliveryPage
	if err := c.do(ctx, request{method: "GET", path: path, idempotent: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RecoverEndpoint puts every dead or failed delivery of an endpoint
// created at or after since back in its queue, in order per user (POST
// /v1/endpoints/{id}/recover), and returns how many.
func (c *Client) RecoverEndpoint(ctx context.Context, endpointID string, since time.Time) (int, error) {
	var out struct {
		Requeued int `json:"requeued"`
	}
	body := map[string]string{"since": since.UTC().Format(time.RFC3339Nano)}
	if err := c.do(ctx, request{method: "POST", path: "/v1/endpoints/" + escape(endpointID) + "/recover", body: body}, &out); err != nil {
		return 0, err
	}
	return out.Requeued, nil
}

// DeliveryDetail is a delivery with every attempt.
type DeliveryDetail struct {
	Delivery meetsync.Delivery  `json:"delivery"`
	Attempts []meetsync.Attempt `json:"attempts"`
}

// GetDelivery returns a delivery and its attempts (GET /v1/deliveries/{id}). ENOTFOUND.
func (c *Client) GetDelivery(ctx context.Context, id string) (*DeliveryDetail, error) {
	var out DeliveryDetail
	if err := c.do(ctx, request{method: "GET", path: "/v1/deliveries/" + escape(id), idempotent: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ReplayDelivery sends a delivery again (POST /v1/deliveries/{id}/replay)
// and returns how many deliveries were requeued. ENOTFOUND; ECONFLICT for
// a delivery in flight.
func (c *Client) ReplayDelivery(ctx context.Context, id string) (int, error) {
	var out struct {
		Requeued int `json:"requeued"`
	}
	if err := c.do(ctx, request{method: "POST", path: "/v1/deliveries/" + escape(id) + "/replay"}, &out); err != nil {
		return 0, err
	}
	return out.Requeued, nil
}

// EndpointTest is what a test webhook met: OK when the receiver answered
// 2xx; the attempt has its status code, latency, error and the start of
// its answer.
type EndpointTest struct {
	OK      bool             `json:"ok"`
	Attempt meetsync.Attempt `json:"attempt"`
}

// TestEndpoint sends an endpoint one signed test webhook now (type
// endpoint.test, outside its queue: nothing is stored) and returns what
// the receiver did (POST /v1/endpoints/{id}/test). ENOTFOUND; EUNAVAILABLE
// when the server runs no delivery.
func (c *Client) TestEndpoint(ctx context.Context, id string) (*EndpointTest, error) {
	var out EndpointTest
	if err := c.do(ctx, request{method: "POST", path: "/v1/endpoints/" + escape(id) + "/test"}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
